//! The circuit breaker's connection limits of one cluster (BackendConfigPolicy
//! `circuitBreaker.maxConnections` and `maxPendingRequests`), per proxy replica.
//!
//! A request takes a connection from [`ConnectionLimits::acquire`] before it needs one: over
//! HTTP/1.1, where a connection carries one request at a time, every request holds one while it
//! is sent and its response body streams; over HTTP/2 the connect of a new connection holds one
//! for as long as that connection stays open; a TCP/TLS route connection holds one for its life.
//! When every connection is taken the request waits (it is pending) until one is given back,
//! unless `max_pending` requests already wait: then it is refused at once. Nothing waits when
//! either limit is 0 ("a limit of 0 lets nothing through").

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use tokio::sync::Notify;

/// A limit that refused a request: the value of the `x-gantry-circuit-breaker` header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    MaxConnections,
    MaxPendingRequests,
    /// Requests in flight (see `upstream::in_flight`).
    MaxParallelRequests,
}

impl Limit {
    /// The limit's name as the API spells it.
    pub fn name(self) -> &'static str {
        match self {
            Self::MaxConnections => "maxConnections",
            Self::MaxPendingRequests => "maxPendingRequests",
            Self::MaxParallelRequests => super::in_flight::MAX_PARALLEL_REQUESTS,
        }
    }
}

/// A request refused by a circuit breaker limit (answered 503).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("circuit breaker: {} reached", .limit.name())]
pub struct Overflow {
    pub limit: Limit,
}

/// The counts of one cluster.
#[derive(Debug)]
pub struct ConnectionLimits {
    max_connections: u32,
    max_pending: u32,
    in_use: AtomicU32,
    pending: AtomicU32,
    /// Told when a connection is given back.
    freed: Notify,
}

/// One connection taken; given back when dropped.
#[derive(Debug)]
pub struct Held(Arc<ConnectionLimits>);

impl ConnectionLimits {
    pub fn new(max_connections: u32, max_pending: u32) -> Arc<Self> {
        Arc::new(Self {
            max_connections,
            max_pending,
            in_use: AtomicU32::new(0),
            pending: AtomicU32::new(0),
            freed: Notify::new(),
        })
    }

    /// A connection when one is free now; never waits (TCP/TLS route connections).
    pub fn try_acquire(self: &Arc<Self>) -> Option<Held> {
        increment_below(&self.in_use, self.max_connections).then(|| Held(self.clone()))
    }

    /// A connection, waiting for one as a pending request when every connection is taken.
    /// Refused at once when nothing may wait: `maxConnections` when no request may wait at all
    /// (either limit is 0), `maxPendingRequests` when the pending requests are at their limit.
    /// The wait ends when a connection is given back, or when the caller gives up (the request
    /// timeout, the client leaving).
    pub async fn acquire(self: &Arc<Self>) -> Result<Held, Overflow> {
        if let Some(held) = self.try_acquire() {
            return Ok(held);
        }
        if self.max_connections == 0 || self.max_pending == 0 {
            return Err(Overflow {
                limit: Limit::MaxConnections,
            });
        }
        if !increment_below(&self.pending, self.max_pending) {
            return Err(Overflow {
                limit: Limit::MaxPendingRequests,
            });
        }
        let _pending = Pending(self);
        loop {
            let notified = self.freed.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            if let Some(held) = self.try_acquire() {
                return Ok(held);
            }
            notified.await;
        }
    }

    /// Connections taken now.
    pub fn in_use(&self) -> u32 {
        self.in_use.load(Ordering::Relaxed)
    }

    /// Requests waiting now.
    pub fn pending(&self) -> u32 {
        self.pending.load(Ordering::Relaxed)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.0.in_use.fetch_sub(1, Ordering::AcqRel);
        self.0.freed.notify_one();
    }
}

/// A pending request, counted while it waits.
struct Pending<'a>(&'a ConnectionLimits);

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        self.0.pending.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Adds one to `counter` unless that would pass `max`.
fn increment_below(counter: &AtomicU32, max: u32) -> bool {
    counter
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < max).then_some(n + 1)
        })
        .is_ok()
}

#[cfg(test)]
mod tests {
    use futures::FutureExt;

    use super::*;

    #[tokio::test]
    async fn connections_then_pending_then_refused() {
        let limits = ConnectionLimits::new(1, 1);
        let first = limits.acquire().await.expect("a free connection");
        assert_eq!(limits.in_use(), 1);
        let mut waiting = Box::pin(limits.acquire());
        assert!((&mut waiting).now_or_never().is_none(), "pending");
        assert_eq!(limits.pending(), 1);
        assert_eq!(
            limits.acquire().await.err(),
            Some(Overflow {
                limit: Limit::MaxPendingRequests
            })
        );
        assert!(limits.try_acquire().is_none());
        drop(first);
        let second = waiting.await.expect("the freed connection");
        assert_eq!((limits.in_use(), limits.pending()), (1, 0));
        drop(second);
        assert_eq!(limits.in_use(), 0);
    }

    #[tokio::test]
    async fn a_waiter_that_gives_up_stops_counting() {
        let limits = ConnectionLimits::new(1, 1);
        let _first = limits.acquire().await.expect("a free connection");
        let mut waiting = Box::pin(limits.acquire());
        assert!((&mut waiting).now_or_never().is_none());
        drop(waiting);
        assert_eq!(limits.pending(), 0);
    }

    #[tokio::test]
    async fn zero_lets_nothing_through_and_nothing_wait() {
        let refused = |limit| Some(Overflow { limit });
        let none = ConnectionLimits::new(0, 10);
        assert_eq!(none.acquire().await.err(), refused(Limit::MaxConnections));
        let no_queue = ConnectionLimits::new(1, 0);
        let _only = no_queue.acquire().await.expect("a free connection");
        assert_eq!(
            no_queue.acquire().await.err(),
            refused(Limit::MaxConnections)
        );
    }
}
