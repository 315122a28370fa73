//! Token buckets as GCRA (the generic cell rate algorithm): one atomic "theoretical arrival
//! time" per bucket, in a lock-free map. A bucket of `requests` per `unit` lets `requests`
//! through at once and then one every `unit / requests`, exactly as a token bucket of that
//! size refilled continuously; taking is one compare-and-swap, and an idle bucket needs no
//! timer.
//!
//! A bucket whose arrival time has passed is full: it is the same as no bucket, so such
//! entries are swept now and then without changing any decision.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

// The key is hashed on every request: foldhash rather than SipHash (a bucket key is no secret
// an attacker can probe; the map's seed is still random). The policy group of
// `e2e/bench/run.sh --instructions-only` counts it.
use foldhash::fast::RandomState;

/// How many takes on one thread between two sweeps of full buckets.
const SWEEP_EVERY: u64 = 4096;

thread_local! {
    /// Takes on this thread since it started, for the sweep: counted per thread so that
    /// threads taking from the same buckets do not write one shared counter on every request
    /// (a cache line passed between cores; the policy scenario of `e2e/bench/run.sh` measures
    /// it under load).
    static TAKES: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// A limit: `requests` per `unit`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    pub requests: u32,
    pub unit: Duration,
}

impl Rate {
    /// Nanoseconds one request's worth of the bucket takes to refill.
    fn emission(self) -> u64 {
        nanos(self.unit) / u64::from(self.requests.max(1))
    }
}

/// What a take decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Taken {
    pub allowed: bool,
    /// Requests that could still pass now.
    pub remaining: u64,
    /// Until the bucket is full again (allowed), or until this request would pass (refused).
    pub wait: Duration,
}

/// Every bucket of the process. Shared by every snapshot, so a reload keeps the counts.
#[derive(Debug)]
pub struct Buckets {
    origin: Instant,
    map: papaya::HashMap<String, AtomicU64, RandomState>,
}

impl Default for Buckets {
    fn default() -> Self {
        Self {
            origin: Instant::now(),
            map: papaya::HashMap::with_hasher(RandomState::default()),
        }
    }
}

impl Buckets {
    /// Takes `cost` from the bucket `key` of `rate` at `now` (the request's arrival, read
    /// once by the caller); a refusal takes nothing.
    pub fn take(&self, key: &str, rate: Rate, cost: u32, now: Instant) -> Taken {
        let now = nanos(now.saturating_duration_since(self.origin));
        self.take_at(key, rate, cost, now)
    }

    fn take_at(&self, key: &str, rate: Rate, cost: u32, now: u64) -> Taken {
        let emission = rate.emission();
        let tolerance = nanos(rate.unit);
        let increment = emission.saturating_mul(u64::from(cost));
        let map = self.map.pin();
        let tat = match map.get(key) {
            Some(tat) => tat,
            None => map.get_or_insert_with(key.to_owned(), || AtomicU64::new(0)),
        };
        let taken = loop {
            let current = tat.load(Ordering::Acquire);
            let base = current.max(now);
            let next = base.saturating_add(increment);
            if next - now > tolerance {
                // Refused: it would pass once the bucket has refilled this much.
                break Taken {
                    allowed: false,
                    remaining: (now + tolerance).saturating_sub(base) / emission.max(1),
                    wait: Duration::from_nanos(next - now - tolerance),
                };
            }
            let allowed = Taken {
                allowed: true,
                remaining: (now + tolerance - next) / emission.max(1),
                wait: Duration::from_nanos(next - now),
            };
            if tat
                .compare_exchange_weak(current, next, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                break allowed;
            }
        };
        drop(map);
        let takes = TAKES.with(|t| {
            let takes = t.get().wrapping_add(1);
            t.set(takes);
            takes
        });
        if takes.is_multiple_of(SWEEP_EVERY) {
            self.sweep(now);
        }
        taken
    }

    /// Removes full buckets (arrival time passed): the same as absent.
    fn sweep(&self, now: u64) {
        self.map
            .pin()
            .retain(|_, tat| tat.load(Ordering::Acquire) > now);
    }

    /// Buckets held (for tests and the sweep's sake).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u64 = 1_000_000_000;

    fn rate(requests: u32, seconds: u64) -> Rate {
        Rate {
            requests,
            unit: Duration::from_secs(seconds),
        }
    }

    #[test]
    fn a_full_bucket_lets_its_size_through_then_one_per_emission_interval() {
        let buckets = Buckets::default();
        let r = rate(3, 3);
        let at = |now| buckets.take_at("k", r, 1, now);
        assert!(at(10 * SECOND).allowed);
        assert!(at(10 * SECOND).allowed);
        let third = at(10 * SECOND);
        assert!(third.allowed);
        assert_eq!(third.remaining, 0);
        assert_eq!(third.wait, Duration::from_secs(3), "full again in 3 s");
        let refused = at(10 * SECOND);
        assert!(!refused.allowed);
        assert_eq!(
            refused.wait,
            Duration::from_secs(1),
            "one request refills in 1 s"
        );
        assert!(!at(10 * SECOND + SECOND - 1).allowed);
        assert!(at(11 * SECOND).allowed);
        assert!(!at(11 * SECOND).allowed);
    }

    #[test]
    fn cost_takes_several_and_a_refusal_takes_nothing() {
        let buckets = Buckets::default();
        let r = rate(10, 10);
        assert!(buckets.take_at("k", r, 6, SECOND).allowed);
        let refused = buckets.take_at("k", r, 6, SECOND);
        assert!(!refused.allowed);
        assert_eq!(refused.remaining, 4);
        assert!(buckets.take_at("k", r, 4, SECOND).allowed);
    }

    #[test]
    fn keys_are_separate() {
        let buckets = Buckets::default();
        let r = rate(1, 60);
        assert!(buckets.take_at("a", r, 1, SECOND).allowed);
        assert!(!buckets.take_at("a", r, 1, SECOND).allowed);
        assert!(buckets.take_at("b", r, 1, SECOND).allowed);
    }

    #[test]
    fn takes_sweep_full_buckets_now_and_then() {
        let buckets = Buckets::default();
        for i in 0..100u64 {
            buckets.take_at(&format!("k{i}"), rate(2, 1), 1, SECOND);
        }
        // Within one sweep interval of takes on this thread, the buckets that are full again
        // by then are gone.
        let busy = rate(1_000_000, 1);
        for _ in 0..SWEEP_EVERY {
            buckets.take_at("busy", busy, 1, 100 * SECOND);
        }
        assert_eq!(buckets.len(), 1);
    }

    #[test]
    fn sweeping_full_buckets_changes_no_decision() {
        let buckets = Buckets::default();
        let r = rate(2, 1);
        for i in 0..100u64 {
            buckets.take_at(&format!("k{i}"), r, 1, SECOND);
        }
        buckets.take_at("busy", r, 2, 5 * SECOND);
        buckets.sweep(5 * SECOND);
        assert_eq!(buckets.len(), 1, "only the bucket still refilling stays");
        assert!(!buckets.take_at("busy", r, 1, 5 * SECOND).allowed);
        assert!(buckets.take_at("k1", r, 2, 5 * SECOND).allowed);
    }
}
