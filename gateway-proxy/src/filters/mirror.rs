//! RequestMirror: a fire-and-forget copy of the request to another cluster.
//!
//! Mirroring needs the body twice, so when a mirror applies the body is buffered up to
//! [`MIRROR_BODY_LIMIT`]; a larger body is streamed to the main upstream as usual and the
//! mirror is skipped. The mirror's response is discarded and never delays the main request.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::Request;
use http::request::Parts;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;

use crate::upstream::Cluster;
use crate::upstream::{self, BoxError, ProxyBody, Upstreams};
use gantry_translate::ir::{MirrorIr, UpstreamProtocol};

/// Largest request body copied to a mirror.
pub const MIRROR_BODY_LIMIT: usize = 1024 * 1024;
/// A mirrored request is abandoned after this.
const MIRROR_TIMEOUT: Duration = Duration::from_secs(30);

/// A validated RequestMirror.
#[derive(Debug)]
pub struct Mirror {
    /// `None` when the mirror backendRef is invalid: nothing is mirrored.
    pub cluster: Option<Arc<str>>,
    numerator: u32,
    denominator: u32,
}

impl Mirror {
    pub fn compile(ir: &MirrorIr) -> Self {
        Self {
            cluster: ir.cluster.as_deref().map(Arc::from),
            numerator: ir.numerator,
            denominator: ir.denominator,
        }
    }

    /// Whether this request is in the mirrored share.
    pub fn sampled(&self) -> bool {
        if self.cluster.is_none() || self.numerator == 0 || self.denominator == 0 {
            return false;
        }
        self.numerator >= self.denominator || fastrand::u32(0..self.denominator) < self.numerator
    }
}

/// A request body after trying to buffer it.
pub enum Buffered {
    /// The whole body; it can be sent any number of times.
    Complete(Bytes),
    /// Larger than the limit (or failed): what was read, followed by the rest of the stream.
    Streaming(ProxyBody),
}

/// Reads `body` into memory up to `limit` bytes.
pub async fn buffer(mut body: ProxyBody, limit: usize) -> Buffered {
    let mut buf = BytesMut::new();
    loop {
        match body.frame().await {
            None => return Buffered::Complete(buf.freeze()),
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => {
                    buf.extend_from_slice(&data);
                    if buf.len() > limit {
                        return Buffered::Streaming(upstream::stream(Replay {
                            head: Some(buf.freeze()),
                            rest: body,
                        }));
                    }
                }
                // Trailers end the body; a buffered copy does not carry them.
                Err(_trailers) => return Buffered::Complete(buf.freeze()),
            },
            Some(Err(error)) => {
                return Buffered::Streaming(upstream::stream(Replay {
                    head: Some(buf.freeze()),
                    rest: upstream::stream(Failed(Some(error))),
                }));
            }
        }
    }
}

/// Sends a copy of the request to `cluster` in the background and drops the response.
/// `gateway` (`namespace/name`) is the Gateway the request came through.
pub fn spawn(
    upstreams: &Upstreams,
    cluster: Arc<Cluster>,
    protocol: UpstreamProtocol,
    gateway: Arc<str>,
    request: &Parts,
    body: Bytes,
) {
    let Some(endpoint) = cluster.pick().cloned() else {
        tracing::debug!(cluster = %cluster.name, "mirror cluster has no endpoints");
        return;
    };
    let mut copy = Request::new(upstream::full(body));
    *copy.method_mut() = request.method.clone();
    *copy.uri_mut() = request.uri.clone();
    *copy.headers_mut() = request.headers.clone();
    let upstreams = upstreams.clone();
    tokio::spawn(async move {
        let send = upstreams.send_via(cluster.via(&gateway, protocol), &endpoint, copy);
        match tokio::time::timeout(MIRROR_TIMEOUT, send).await {
            Ok(Ok(response)) => {
                // Drain so the pooled connection can be reused.
                let _ = response.into_body().collect().await;
            }
            Ok(Err(error)) => tracing::debug!(%error, "mirrored request failed"),
            Err(_) => tracing::debug!(cluster = %cluster.name, "mirrored request timed out"),
        }
    });
}

/// Already-read bytes followed by the rest of a body.
struct Replay {
    head: Option<Bytes>,
    rest: ProxyBody,
}

impl Body for Replay {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(head) = self.head.take() {
            return Poll::Ready(Some(Ok(Frame::data(head))));
        }
        Pin::new(&mut self.rest).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.head.is_none() && self.rest.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let mut hint = self.rest.size_hint();
        let head = self.head.as_ref().map_or(0, |h| h.len() as u64);
        hint.set_lower(hint.lower() + head);
        if let Some(upper) = hint.upper() {
            hint.set_upper(upper + head);
        }
        hint
    }
}

/// A body that yields one error: keeps a read failure visible to the main upstream.
struct Failed(Option<BoxError>);

impl Body for Failed {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Poll::Ready(self.0.take().map(Err))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_respects_the_fraction() {
        let always = Mirror::compile(&MirrorIr {
            cluster: Some("c".into()),
            numerator: 100,
            denominator: 100,
        });
        assert!((0..100).all(|_| always.sampled()));
        let never = Mirror::compile(&MirrorIr {
            cluster: Some("c".into()),
            numerator: 0,
            denominator: 100,
        });
        assert!((0..100).all(|_| !never.sampled()));
        let invalid = Mirror::compile(&MirrorIr {
            cluster: None,
            numerator: 100,
            denominator: 100,
        });
        assert!(!invalid.sampled());
        let half = Mirror::compile(&MirrorIr {
            cluster: Some("c".into()),
            numerator: 1,
            denominator: 2,
        });
        let hits = (0..10_000).filter(|_| half.sampled()).count();
        assert!((3_000..7_000).contains(&hits), "{hits}");
    }

    #[tokio::test]
    async fn small_bodies_are_buffered_and_large_ones_replayed() {
        match buffer(upstream::full("hello"), 10).await {
            Buffered::Complete(bytes) => assert_eq!(bytes, "hello"),
            Buffered::Streaming(_) => panic!("should be complete"),
        }
        match buffer(upstream::full("hello world, longer"), 10).await {
            Buffered::Complete(_) => panic!("should stream"),
            Buffered::Streaming(body) => {
                let bytes = body.collect().await.unwrap().to_bytes();
                assert_eq!(bytes, "hello world, longer");
            }
        }
    }
}
