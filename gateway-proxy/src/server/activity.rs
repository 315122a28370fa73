//! Per-connection activity and the watchdog that closes connections doing nothing.
//!
//! A connection is **idle** while no request is waiting for its response and no response body
//! is being sent. An idle connection is closed gracefully (HTTP/2 GOAWAY, HTTP/1 close) once it
//! stays idle for the idle timeout, or, before its first request, for the header timeout (a
//! client that connects and sends nothing). An idle HTTP/1 connection is waiting for its next
//! request head, so the header timeout bounds it too: a client that sends part of a head and
//! stops is closed like one that sends nothing. (hyper's parser can time each head itself, but
//! it boxes a timer per request and registers it with the runtime's timer wheel; see
//! `http_version.rs`.) Bytes alone do not count as activity: HTTP/2 PINGs and SETTINGS keep no
//! connection open.
//!
//! A connection is **stalled** while response bodies are open, no request is waiting for its
//! response, and no body data has moved for the stall timeout: a client that stopped reading
//! (an HTTP/2 window held at zero). A stalled connection is closed at once, which frees its
//! buffers and its upstream connections.
//!
//! The watchdog ticks at a quarter of the shortest timeout, so a connection is closed between
//! its timeout and a quarter more.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

/// What one connection's requests are doing; shared by its requests and its watchdog.
#[derive(Debug, Default)]
pub struct Activity {
    /// Requests started on the connection.
    started: AtomicU64,
    /// Requests whose response head has not been produced yet.
    pending: AtomicUsize,
    /// Response bodies still being sent.
    streaming: AtomicUsize,
    /// Data frames sent from response bodies.
    progress: AtomicU64,
    /// An HTTP/1 request was served: between requests the connection waits for a head.
    http1: AtomicBool,
}

impl Activity {
    /// Marks a request as started (`http1`: an HTTP/1 request); it is pending until the guard
    /// drops.
    pub fn request(self: &Arc<Self>, http1: bool) -> PendingGuard {
        if http1 {
            self.http1.store(true, Ordering::Relaxed);
        }
        self.started.fetch_add(1, Ordering::Relaxed);
        self.pending.fetch_add(1, Ordering::Relaxed);
        PendingGuard(self.clone())
    }

    /// Wraps a response body so the watchdog sees it open and sees its data move.
    pub fn track<B>(self: &Arc<Self>, body: B) -> TrackedBody<B> {
        self.streaming.fetch_add(1, Ordering::Relaxed);
        TrackedBody {
            inner: body,
            activity: self.clone(),
        }
    }
}

/// Held while a request waits for its response head.
#[derive(Debug)]
pub struct PendingGuard(Arc<Activity>);

impl Drop for PendingGuard {
    fn drop(&mut self) {
        self.0.pending.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A response body the watchdog can see.
pub struct TrackedBody<B> {
    inner: B,
    activity: Arc<Activity>,
}

impl<B> Drop for TrackedBody<B> {
    fn drop(&mut self) {
        self.activity.streaming.fetch_sub(1, Ordering::Relaxed);
    }
}

impl<B> Body for TrackedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(_))) = &polled {
            this.activity.progress.fetch_add(1, Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The timeouts the watchdog applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// Before the first request, and between HTTP/1 requests (for the next head).
    pub header: Duration,
    /// Between requests.
    pub idle: Duration,
    /// Response bodies open and not moving.
    pub stall: Duration,
}

/// What the watchdog found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Idle,
    Stalled,
}

/// Ticks and decides; one per connection, polled by the task serving it.
#[derive(Debug)]
pub struct Watchdog {
    activity: Arc<Activity>,
    timeouts: Timeouts,
    tick: Duration,
    /// `started` and `progress` at the previous tick.
    seen: (u64, u64),
    idle_for: Duration,
    stalled_for: Duration,
}

impl Watchdog {
    pub fn new(activity: Arc<Activity>, timeouts: Timeouts) -> Self {
        let shortest = timeouts.header.min(timeouts.idle).min(timeouts.stall);
        Self {
            activity,
            timeouts,
            tick: (shortest / 4).max(Duration::from_millis(50)),
            seen: (0, 0),
            idle_for: Duration::ZERO,
            stalled_for: Duration::ZERO,
        }
    }

    /// Waits for the connection to become idle or stalled past its timeout.
    pub async fn verdict(&mut self) -> Verdict {
        loop {
            tokio::time::sleep(self.tick).await;
            if let Some(verdict) = self.check() {
                return verdict;
            }
        }
    }

    /// One tick's decision.
    fn check(&mut self) -> Option<Verdict> {
        let activity = &self.activity;
        let started = activity.started.load(Ordering::Relaxed);
        let progress = activity.progress.load(Ordering::Relaxed);
        let pending = activity.pending.load(Ordering::Relaxed);
        let streaming = activity.streaming.load(Ordering::Relaxed);
        let moved = (started, progress) != self.seen;
        self.seen = (started, progress);
        if moved || pending > 0 {
            self.idle_for = Duration::ZERO;
            self.stalled_for = Duration::ZERO;
            return None;
        }
        if streaming > 0 {
            self.idle_for = Duration::ZERO;
            self.stalled_for += self.tick;
            return (self.stalled_for >= self.timeouts.stall).then_some(Verdict::Stalled);
        }
        self.stalled_for = Duration::ZERO;
        self.idle_for += self.tick;
        let limit = if started == 0 {
            self.timeouts.header
        } else if activity.http1.load(Ordering::Relaxed) {
            self.timeouts.idle.min(self.timeouts.header)
        } else {
            self.timeouts.idle
        };
        (self.idle_for >= limit).then_some(Verdict::Idle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watchdog() -> (Arc<Activity>, Watchdog) {
        let activity = Arc::new(Activity::default());
        let timeouts = Timeouts {
            header: Duration::from_secs(2),
            idle: Duration::from_secs(4),
            stall: Duration::from_secs(8),
        };
        (activity.clone(), Watchdog::new(activity, timeouts))
    }

    /// How many ticks until a verdict (at most 100).
    fn ticks(dog: &mut Watchdog) -> (usize, Option<Verdict>) {
        for n in 1..=100 {
            if let Some(verdict) = dog.check() {
                return (n, Some(verdict));
            }
        }
        (100, None)
    }

    #[test]
    fn a_connection_that_never_sends_a_request_is_idle_after_the_header_timeout() {
        let (_, mut dog) = watchdog();
        // Ticks are a quarter of the shortest timeout (2 s): 4 ticks.
        assert_eq!(ticks(&mut dog), (4, Some(Verdict::Idle)));
    }

    #[test]
    fn between_requests_the_idle_timeout_applies_and_for_http1_the_header_timeout() {
        // HTTP/2: the idle timeout (4 s), 8 ticks. HTTP/1 waits for the next head: the
        // header timeout (2 s), 4 ticks.
        for (http1, want) in [(false, 8), (true, 4)] {
            let (activity, mut dog) = watchdog();
            drop(activity.request(http1));
            assert_eq!(dog.check(), None);
            assert_eq!(
                ticks(&mut dog),
                (want, Some(Verdict::Idle)),
                "http1: {http1}"
            );
        }
    }

    #[test]
    fn a_pending_request_is_never_idle_or_stalled() {
        let (activity, mut dog) = watchdog();
        let _pending = activity.request(false);
        let _body = activity.track(http_body_util::Empty::<Bytes>::new());
        assert_eq!(ticks(&mut dog), (100, None));
    }

    #[test]
    fn a_body_that_does_not_move_stalls() {
        let (activity, mut dog) = watchdog();
        let pending = activity.request(false);
        let body = activity.track(http_body_util::Empty::<Bytes>::new());
        drop(pending);
        assert_eq!(dog.check(), None);
        assert_eq!(ticks(&mut dog), (16, Some(Verdict::Stalled)));
        drop(body);
        assert_eq!(ticks(&mut dog), (8, Some(Verdict::Idle)));
    }
}
