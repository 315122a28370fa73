//! Requests in flight: per endpoint (for least request) and per cluster (for the circuit
//! breaker's `maxParallelRequests` and `maxParallelRetries`).
//!
//! A request takes its counts when its endpoint is picked and holds them in an [`InFlight`]
//! until its response body is finished or dropped (not when the response headers arrive):
//! the pipeline moves the guard into the body it returns. Only clusters whose policy needs a
//! count have one; for the others the guard is empty and costs nothing.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use super::body::{BoxError, ProxyBody};
use gantry_translate::ir::CircuitBreakerIr;

/// The circuit breaker limit names, as the API spells them: the value of
/// `x-gantry-circuit-breaker` and the `limit` label of `gantry_circuit_breaker_rejections_total`.
pub const MAX_PARALLEL_REQUESTS: &str = "maxParallelRequests";
pub const MAX_PARALLEL_RETRIES: &str = "maxParallelRetries";

/// One count held: decremented when dropped.
#[derive(Debug)]
pub struct Slot(Arc<AtomicU32>);

impl Slot {
    /// Counts one more on `counter`, whatever its value.
    pub fn take(counter: &Arc<AtomicU32>) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        Self(counter.clone())
    }

    /// Counts one more on `counter` when it is below `max`.
    fn try_take(counter: &Arc<AtomicU32>, max: u32) -> Option<Self> {
        counter
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Self(counter.clone()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A cluster-wide limit and its count, kept across configuration reloads (requests in flight
/// from before a reload still count).
#[derive(Debug)]
struct Limit {
    max: u32,
    count: Arc<AtomicU32>,
}

/// The circuit breaker's request limits of one cluster.
#[derive(Debug, Default)]
pub struct RequestLimits {
    requests: Option<Limit>,
    retries: Option<Limit>,
}

impl RequestLimits {
    /// The limits `settings` set, counting on where `previous` (the same cluster's limits
    /// before a reload) counted.
    pub fn new(settings: Option<&CircuitBreakerIr>, previous: Option<&RequestLimits>) -> Self {
        let Some(settings) = settings else {
            return Self::default();
        };
        let limit = |max, old: Option<&Limit>| Limit {
            max,
            count: old.map(|l| l.count.clone()).unwrap_or_default(),
        };
        Self {
            requests: Some(limit(
                settings.max_parallel_requests,
                previous.and_then(|p| p.requests.as_ref()),
            )),
            retries: Some(limit(
                settings.max_parallel_retries,
                previous.and_then(|p| p.retries.as_ref()),
            )),
        }
    }

    /// A request admitted: its count held, or the name of the limit it is over.
    pub fn admit(&self) -> Result<InFlight, &'static str> {
        let mut in_flight = InFlight::default();
        if let Some(limit) = &self.requests {
            in_flight.request =
                Some(Slot::try_take(&limit.count, limit.max).ok_or(MAX_PARALLEL_REQUESTS)?);
        }
        Ok(in_flight)
    }

    /// A retry admitted into `in_flight` (replacing the count of its previous retry), or the
    /// name of the limit it is over.
    pub fn admit_retry(&self, in_flight: &mut InFlight) -> Result<(), &'static str> {
        in_flight.retry = None;
        if let Some(limit) = &self.retries {
            in_flight.retry =
                Some(Slot::try_take(&limit.count, limit.max).ok_or(MAX_PARALLEL_RETRIES)?);
        }
        Ok(())
    }

    /// Requests in flight now, when counted (for tests and `/config`).
    pub fn requests_in_flight(&self) -> Option<u32> {
        self.requests
            .as_ref()
            .map(|l| l.count.load(Ordering::Relaxed))
    }
}

/// The counts one request holds.
#[derive(Debug, Default)]
pub struct InFlight {
    request: Option<Slot>,
    retry: Option<Slot>,
    endpoint: Option<Slot>,
}

impl InFlight {
    /// Holds the count of the endpoint the request (or its retry) goes to now.
    pub fn set_endpoint(&mut self, slot: Option<Slot>) {
        self.endpoint = slot;
    }

    /// Whether nothing is counted (a cluster without a policy that counts).
    pub fn is_empty(&self) -> bool {
        self.request.is_none() && self.retry.is_none() && self.endpoint.is_none()
    }

    /// `body`, holding these counts until it ends or is dropped.
    pub fn hold(self, body: ProxyBody) -> HeldBody {
        HeldBody {
            inner: body,
            held: Some(self),
        }
    }
}

/// A response body that releases its request's counts when it ends or is dropped.
pub struct HeldBody {
    inner: ProxyBody,
    held: Option<InFlight>,
}

impl Body for HeldBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None | Some(Err(_)))) || self.inner.is_end_stream() {
            self.held = None;
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

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;
    use crate::upstream::full;

    fn limits(requests: u32, retries: u32) -> RequestLimits {
        RequestLimits::new(
            Some(&CircuitBreakerIr {
                max_connections: 1024,
                max_pending_requests: 1024,
                max_parallel_requests: requests,
                max_parallel_retries: retries,
                max_requests_per_connection: None,
            }),
            None,
        )
    }

    #[test]
    fn requests_over_the_limit_are_refused_until_one_finishes() {
        let limits = limits(2, 1);
        let first = limits.admit().expect("first");
        let _second = limits.admit().expect("second");
        assert_eq!(limits.admit().err(), Some(MAX_PARALLEL_REQUESTS));
        drop(first);
        assert!(limits.admit().is_ok());
        // Carried over to the next configuration's cluster.
        let next = RequestLimits::new(
            Some(&CircuitBreakerIr {
                max_connections: 1024,
                max_pending_requests: 1024,
                max_parallel_requests: 2,
                max_parallel_retries: 1,
                max_requests_per_connection: None,
            }),
            Some(&limits),
        );
        assert_eq!(next.requests_in_flight(), Some(1));
        assert_eq!(next.admit().map(|_| ()).err(), None);
    }

    #[test]
    fn a_limit_of_zero_lets_nothing_through_and_no_policy_counts_nothing() {
        assert_eq!(limits(0, 0).admit().err(), Some(MAX_PARALLEL_REQUESTS));
        let none = RequestLimits::new(None, None);
        let mut in_flight = none.admit().expect("no limit");
        assert!(in_flight.is_empty());
        assert!(none.admit_retry(&mut in_flight).is_ok());
        assert!(in_flight.is_empty());
    }

    #[test]
    fn a_retry_replaces_its_own_count() {
        let limits = limits(10, 1);
        let mut one = limits.admit().expect("request");
        assert!(limits.admit_retry(&mut one).is_ok());
        // The same request's next retry: its previous retry count is released first.
        assert!(limits.admit_retry(&mut one).is_ok());
        let mut other = limits.admit().expect("request");
        assert_eq!(limits.admit_retry(&mut other), Err(MAX_PARALLEL_RETRIES));
        drop(one);
        assert!(limits.admit_retry(&mut other).is_ok());
    }

    #[tokio::test]
    async fn the_count_is_held_until_the_body_ends() {
        let limits = limits(1, 1);
        let mut held = limits.admit().expect("admitted").hold(full("hello"));
        assert_eq!(limits.requests_in_flight(), Some(1));
        let frame = held.frame().await.and_then(Result::ok);
        assert_eq!(
            frame.and_then(|f| f.into_data().ok()).unwrap_or_default(),
            "hello"
        );
        // The body is finished (still alive): released.
        assert_eq!(limits.requests_in_flight(), Some(0));
        drop(held);
        assert_eq!(limits.requests_in_flight(), Some(0));
        // Dropped unread: released too.
        let held = limits.admit().expect("admitted").hold(full("x"));
        drop(held);
        assert_eq!(limits.requests_in_flight(), Some(0));
    }
}
