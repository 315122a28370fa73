//! One request-timeout timer per HTTP/1.1 connection, shared by its requests in turn.
//!
//! A timer of its own for each request is registered in tokio's timer wheel when the request
//! starts and removed when it ends, each under the wheel's lock. An HTTP/1.1 connection serves
//! one request at a time, so its requests take turns on one timer: each moves the deadline
//! forward, which tokio does with one atomic store while the timer is armed for an earlier
//! instant. That saved about 200 instructions per request (`gantry-bench --instructions-only`,
//! docs/benchmarks.md). HTTP/2 requests run side by side and keep a timer each, as does a
//! request that finds the connection's timer taken.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use parking_lot::Mutex;
use tokio::time::{Instant, Sleep};

/// A connection's request timer; made on first use.
#[derive(Debug, Default)]
pub struct RequestTimer {
    sleep: Mutex<Option<Pin<Box<Sleep>>>>,
    /// Set while a request holds the timer.
    taken: AtomicBool,
}

impl RequestTimer {
    /// The timer, set to fire at `deadline`, for one request; `None` while another request
    /// holds it.
    pub fn take(&self, deadline: Instant) -> Option<Deadline<'_>> {
        if self.taken.swap(true, Ordering::Acquire) {
            return None;
        }
        let mut sleep = self.sleep.lock();
        match sleep.as_mut() {
            // Later than the instant the timer is armed for (the usual case): an atomic store.
            Some(sleep) => sleep.as_mut().reset(deadline),
            None => *sleep = Some(Box::pin(tokio::time::sleep_until(deadline))),
        }
        Some(Deadline { timer: self })
    }
}

/// A request's hold on its connection's timer: ready once the deadline passes. Dropping it
/// frees the timer for the connection's next request; the timer stays armed, and is moved
/// forward by that request or fires once, harmlessly, on an idle connection.
#[derive(Debug)]
pub struct Deadline<'a> {
    timer: &'a RequestTimer,
}

impl Future for Deadline<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match self.timer.sleep.lock().as_mut() {
            Some(sleep) => sleep.as_mut().poll(cx),
            None => Poll::Pending,
        }
    }
}

impl Drop for Deadline<'_> {
    fn drop(&mut self) {
        self.timer.taken.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn in_secs(secs: u64) -> Instant {
        Instant::now() + Duration::from_secs(secs)
    }

    #[tokio::test]
    async fn one_request_at_a_time_holds_the_timer() {
        let timer = RequestTimer::default();
        let first = timer.take(in_secs(30)).expect("free");
        assert!(timer.take(in_secs(30)).is_none());
        drop(first);
        assert!(timer.take(in_secs(30)).is_some());
    }

    #[tokio::test]
    async fn each_request_gets_its_own_deadline() {
        let timer = RequestTimer::default();
        // A long deadline first, then a short one: the timer must fire at the short one even
        // though it was armed for later.
        drop(timer.take(in_secs(3600)).expect("free"));
        let short = timer
            .take(Instant::now() + Duration::from_millis(10))
            .expect("free");
        tokio::time::timeout(Duration::from_secs(30), short)
            .await
            .expect("the short deadline fires before the outer timeout");
        // And a later deadline after it fired re-arms it: not ready at once.
        let again = timer.take(in_secs(3600)).expect("free");
        let mut again = std::pin::pin!(again);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(again.as_mut().poll(&mut cx).is_pending());
    }
}
