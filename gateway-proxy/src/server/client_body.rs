//! The client's request body on its way upstream: a body-read timeout, and a record of how it
//! failed, so a broken or abandoned body is answered as the client's error (400, 408, 499)
//! rather than as a 502 against the route.

use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::Version;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::time::{Instant, Sleep};

use super::errors::ClientBodyError;
use crate::upstream::BoxError;

/// How the body ended, readable after the upstream call failed.
pub type Outcome = Arc<OnceLock<ClientBodyError>>;

/// `Incoming` with a timeout between frames and its failure recorded in an [`Outcome`].
pub struct ClientBody {
    inner: Incoming,
    version: Version,
    timeout: Option<(Duration, Pin<Box<Sleep>>)>,
    outcome: Outcome,
}

impl ClientBody {
    pub fn new(inner: Incoming, version: Version, timeout: Option<Duration>) -> (Self, Outcome) {
        let outcome = Outcome::default();
        let timeout = timeout.map(|t| (t, Box::pin(tokio::time::sleep(t))));
        let body = Self {
            inner,
            version,
            timeout,
            outcome: outcome.clone(),
        };
        (body, outcome)
    }

    fn fail(&self, error: ClientBodyError) {
        let _ = self.outcome.set(error);
    }
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some((limit, sleep)) = &mut this.timeout {
                    sleep.as_mut().reset(Instant::now() + *limit);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => {
                // An HTTP/2 body fails only when the client resets its stream; an HTTP/1 body
                // when the connection closes early or the chunked framing is invalid.
                let kind = if this.version == Version::HTTP_2 || is_abort(&error) {
                    ClientBodyError::Aborted
                } else {
                    ClientBodyError::Invalid
                };
                this.fail(kind);
                Poll::Ready(Some(Err(error.into())))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                let Some((_, sleep)) = &mut this.timeout else {
                    return Poll::Pending;
                };
                ready!(sleep.as_mut().poll(cx));
                this.fail(ClientBodyError::Timeout);
                Poll::Ready(Some(Err(ClientBodyError::Timeout.into())))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Whether the body failed because the connection went away (rather than bad framing).
fn is_abort(error: &hyper::Error) -> bool {
    use std::io::ErrorKind;
    if error.is_incomplete_message() || error.is_closed() {
        return true;
    }
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                ErrorKind::UnexpectedEof
                    | ErrorKind::ConnectionReset
                    | ErrorKind::ConnectionAborted
                    | ErrorKind::BrokenPipe
            );
        }
        source = cause.source();
    }
    false
}
