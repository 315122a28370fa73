//! A request body that can be sent again, buffered lazily.
//!
//! A request without a body costs nothing: every attempt gets an empty body. A body the proxy
//! already holds whole (a mirrored one) is shared by every attempt. Otherwise the body streams
//! to the first attempt as it arrives, and the chunks it passes on are kept (a `Bytes` handle
//! each, not a copy) up to [`RETRY_BUFFER_LIMIT`]; past that nothing is kept and the request
//! cannot be retried. When an attempt fails, its body hands back what it kept and what it did
//! not read yet ([`Remnant`]), and the next attempt replays the kept chunks, then reads on.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use tokio::sync::oneshot;

use crate::upstream::{BoxError, ProxyBody, empty, full};

/// The most request body a retry can replay: 64 KiB. A larger body streams to its first
/// attempt and is never retried (the access log says so).
pub const RETRY_BUFFER_LIMIT: usize = 64 * 1024;

/// The shortest time a retry waits for the failed attempt to hand its body back (it usually
/// has before the backoff is over).
const RECOVER_AT_LEAST: Duration = Duration::from_millis(50);

/// Why a body cannot be sent again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotReplayable {
    /// Larger than [`RETRY_BUFFER_LIMIT`].
    OverLimit,
    /// The failed attempt did not hand the body back in time (the connection still held it).
    Unavailable,
}

/// The body of a request that may be retried.
#[derive(Debug)]
pub enum Replayable {
    /// No body.
    Empty,
    /// The whole body, already in memory.
    Full(Bytes),
    /// What earlier attempts read (kept) and the rest of the client's body.
    Stream(Kept),
    /// Lent to an attempt, which gives it back when it ends.
    Lent(oneshot::Receiver<Kept>),
    /// Cannot be sent again.
    Gone(NotReplayable),
}

/// A body as far as it was read: the chunks read (while under the limit), and what is left.
#[derive(Debug, Default)]
pub struct Kept {
    chunks: Vec<Bytes>,
    size: usize,
    over_limit: bool,
    trailers: Option<HeaderMap>,
    /// The unread rest; `None` once the body ended.
    rest: Option<ProxyBody>,
}

impl Replayable {
    /// A streamed body, nothing read yet.
    pub fn stream(body: ProxyBody) -> Self {
        Self::Stream(Kept {
            rest: Some(body),
            ..Kept::default()
        })
    }

    /// The body for the next attempt. A streamed body is lent to it; [`Replayable::recover`]
    /// takes it back after the attempt.
    pub fn next_attempt(&mut self) -> ProxyBody {
        match std::mem::replace(self, Self::Gone(NotReplayable::Unavailable)) {
            Self::Empty => {
                *self = Self::Empty;
                empty()
            }
            Self::Full(bytes) => {
                *self = Self::Full(bytes.clone());
                full(bytes)
            }
            Self::Stream(kept) => {
                let (lend, back) = oneshot::channel();
                *self = Self::Lent(back);
                ProxyBody::new(Tee::new(kept, lend))
            }
            gone @ (Self::Lent(_) | Self::Gone(_)) => {
                *self = gone;
                empty()
            }
        }
    }

    /// After a failed attempt: takes the body back, waiting at most `wait` (at least
    /// [`RECOVER_AT_LEAST`]) for the attempt to release it. `Err` when it cannot be sent again.
    pub async fn recover(&mut self, wait: Duration) -> Result<(), NotReplayable> {
        if let Self::Lent(back) = self {
            let wait = wait.max(RECOVER_AT_LEAST);
            *self = match tokio::time::timeout(wait, back).await {
                Ok(Ok(kept)) if kept.over_limit => Self::Gone(NotReplayable::OverLimit),
                Ok(Ok(kept)) => Self::Stream(kept),
                Ok(Err(_)) | Err(_) => Self::Gone(NotReplayable::Unavailable),
            };
        }
        match self {
            Self::Gone(why) => Err(*why),
            _ => Ok(()),
        }
    }
}

/// The body of one attempt: the kept chunks again, then the rest of the client's body, kept as
/// it passes (under the limit). Gives everything back when it ends or is dropped.
struct Tee {
    replay: VecDeque<Bytes>,
    kept: Kept,
    lend: Option<oneshot::Sender<Kept>>,
}

impl Tee {
    fn new(kept: Kept, lend: oneshot::Sender<Kept>) -> Self {
        Self {
            replay: kept.chunks.iter().cloned().collect(),
            kept,
            lend: Some(lend),
        }
    }

    fn keep(&mut self, chunk: &Bytes) {
        if self.kept.over_limit {
            return;
        }
        if self.kept.size + chunk.len() > RETRY_BUFFER_LIMIT {
            self.kept.over_limit = true;
            self.kept.chunks = Vec::new();
            return;
        }
        self.kept.size += chunk.len();
        self.kept.chunks.push(chunk.clone());
    }

    /// Hands the body back (once).
    fn give_back(&mut self) {
        if let Some(lend) = self.lend.take() {
            let _ = lend.send(std::mem::take(&mut self.kept));
        }
    }
}

impl Body for Tee {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let Some(chunk) = this.replay.pop_front() {
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        let Some(rest) = this.kept.rest.as_mut() else {
            if let Some(trailers) = this.kept.trailers.clone() {
                this.give_back();
                return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
            }
            this.give_back();
            return Poll::Ready(None);
        };
        match Pin::new(rest).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(chunk) = frame.data_ref() {
                    let chunk = chunk.clone();
                    this.keep(&chunk);
                } else if let Some(trailers) = frame.trailers_ref() {
                    this.kept.trailers = Some(trailers.clone());
                    // Trailers end the body: sent now, not again by the arm above.
                    this.kept.rest = None;
                    let trailers = trailers.clone();
                    this.give_back();
                    return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(None) => {
                this.kept.rest = None;
                this.give_back();
                Poll::Ready(None)
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.replay.is_empty() && self.kept.rest.is_none() && self.kept.trailers.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        let replay: u64 = self.replay.iter().map(|c| c.len() as u64).sum();
        let rest = self
            .kept
            .rest
            .as_ref()
            .map(Body::size_hint)
            .unwrap_or_else(|| SizeHint::with_exact(0));
        let mut hint = SizeHint::new();
        hint.set_lower(rest.lower().saturating_add(replay));
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper.saturating_add(replay));
        }
        hint
    }
}

impl Drop for Tee {
    /// An attempt that ends early (a connect failure, an early answer, a reset) still gives
    /// back what it read and what it did not: the chunks it did not replay are among the kept
    /// ones.
    fn drop(&mut self) {
        self.give_back();
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;
    use crate::upstream::stream;

    fn chunks(parts: &[&'static str]) -> ProxyBody {
        let frames: Vec<Result<Frame<Bytes>, BoxError>> = parts
            .iter()
            .map(|p| Ok(Frame::data(Bytes::from_static(p.as_bytes()))))
            .collect();
        stream(http_body_util::StreamBody::new(futures::stream::iter(
            frames,
        )))
    }

    async fn read(body: ProxyBody) -> Bytes {
        body.collect().await.unwrap().to_bytes()
    }

    #[tokio::test]
    async fn a_body_read_whole_is_replayed_whole() {
        let mut body = Replayable::stream(chunks(&["ab", "cd", "ef"]));
        assert_eq!(read(body.next_attempt()).await, "abcdef");
        body.recover(Duration::ZERO).await.unwrap();
        assert_eq!(read(body.next_attempt()).await, "abcdef");
        body.recover(Duration::ZERO).await.unwrap();
        assert_eq!(read(body.next_attempt()).await, "abcdef");
    }

    #[tokio::test]
    async fn a_body_dropped_half_read_is_replayed_then_read_on() {
        let mut body = Replayable::stream(chunks(&["ab", "cd", "ef"]));
        let mut first = body.next_attempt();
        let frame = first.frame().await.unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), "ab");
        drop(first); // the attempt failed after sending one chunk
        body.recover(Duration::ZERO).await.unwrap();
        assert_eq!(read(body.next_attempt()).await, "abcdef");
    }

    #[tokio::test]
    async fn a_body_never_polled_is_given_back_untouched() {
        let mut body = Replayable::stream(chunks(&["x"]));
        drop(body.next_attempt()); // a connect failure
        body.recover(Duration::ZERO).await.unwrap();
        assert_eq!(read(body.next_attempt()).await, "x");
    }

    #[tokio::test]
    async fn a_body_over_the_limit_streams_once_and_is_not_replayed() {
        let big: &'static str = Box::leak("y".repeat(RETRY_BUFFER_LIMIT).into_boxed_str());
        let mut body = Replayable::stream(chunks(&["x", big]));
        assert_eq!(
            read(body.next_attempt()).await.len(),
            RETRY_BUFFER_LIMIT + 1
        );
        assert_eq!(
            body.recover(Duration::ZERO).await,
            Err(NotReplayable::OverLimit)
        );
        assert_eq!(
            body.recover(Duration::ZERO).await,
            Err(NotReplayable::OverLimit),
            "and stays so"
        );
    }

    #[tokio::test]
    async fn a_body_still_held_elsewhere_is_unavailable() {
        let mut body = Replayable::stream(chunks(&["x"]));
        let held = body.next_attempt();
        assert_eq!(
            body.recover(Duration::ZERO).await,
            Err(NotReplayable::Unavailable)
        );
        drop(held);
    }

    #[tokio::test]
    async fn empty_and_full_bodies_need_nothing_back() {
        let mut body = Replayable::Empty;
        assert!(body.next_attempt().is_end_stream());
        body.recover(Duration::ZERO).await.unwrap();
        let mut body = Replayable::Full(Bytes::from_static(b"whole"));
        assert_eq!(read(body.next_attempt()).await, "whole");
        body.recover(Duration::ZERO).await.unwrap();
        assert_eq!(read(body.next_attempt()).await, "whole");
    }
}
