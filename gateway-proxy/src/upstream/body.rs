//! The body type the proxy streams in both directions.

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};

/// Errors carried by proxied bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A streamed request or response body: an upstream's or client's body passed through, or one
/// the proxy made (errors, redirects, buffered mirror copies).
pub type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

pub fn full(bytes: impl Into<Bytes>) -> ProxyBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

pub fn empty() -> ProxyBody {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// Wraps any body whose errors convert into [`BoxError`] (e.g. `hyper::body::Incoming`).
pub fn stream<B>(body: B) -> ProxyBody
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed_unsync()
}

/// An upstream response's body. For a cluster with a BackendConfigPolicy it holds what its
/// request took of the cluster's limits (over HTTP/1.1 a circuit breaker connection, as one
/// connection carries one response at a time; over HTTP/2 a stream of a connection with
/// `maxConcurrentStreams`) until the body ends or is dropped. Over HTTP/1.1 it
/// holds the connection it came on, given back to the pool once the body has ended (and
/// closed if the body is dropped before its end).
#[derive(Debug)]
pub struct UpstreamBody {
    inner: hyper::body::Incoming,
    held: Option<std::sync::Arc<super::limits::Held>>,
    lent: Option<super::http1_pool::Lent>,
}

impl UpstreamBody {
    pub(super) fn new(
        inner: hyper::body::Incoming,
        held: Option<std::sync::Arc<super::limits::Held>>,
        lent: Option<super::http1_pool::Lent>,
    ) -> Self {
        Self { inner, held, lent }
    }

    /// The body has ended: its connection goes back to the pool.
    fn ended(&mut self) {
        if let Some(lent) = self.lent.take() {
            lent.give_back();
        }
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        // An empty body (204, 304, a HEAD's answer) may be dropped without being read.
        if self.lent.is_some() && http_body::Body::is_end_stream(&self.inner) {
            self.ended();
        }
    }
}

impl http_body::Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let frame = std::pin::Pin::new(&mut this.inner).poll_frame(cx);
        // Given back as soon as the body is over (its last frame, its end or an error).
        if this.held.is_some()
            && let std::task::Poll::Ready(read) = &frame
            && (read.is_none() || matches!(read, Some(Err(_))) || this.inner.is_end_stream())
        {
            this.held = None;
        }
        if this.lent.is_some()
            && let std::task::Poll::Ready(read) = &frame
        {
            match read {
                None => this.ended(),
                Some(Ok(_)) if this.inner.is_end_stream() => this.ended(),
                // Not reusable: it closes with the body.
                Some(Err(_)) => this.lent = None,
                Some(Ok(_)) => {}
            }
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
