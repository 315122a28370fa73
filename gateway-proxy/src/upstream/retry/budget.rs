//! A Service's retry budget (XBackendTrafficPolicy `retryConstraint`, GEP-3388): "the
//! percentage of incoming traffic composed of retries over a given time interval. Once the
//! budget is exceeded, additional retries will be rejected." Shared by every cluster of the
//! Service and kept across configuration swaps while its settings do not change.
//!
//! Counts live in sliding windows of [`SLOTS`] time slots, each one atomic word (slot epoch and
//! count), so counting takes no lock. The windows are approximate by at most one slot's
//! worth of time, and concurrent retries may overshoot the budget by the few decided at the
//! same instant.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use gantry_translate::ir::RetryBudgetIr;

/// Slots per window.
const SLOTS: u64 = 10;

/// Retries allowed to a Service, against the requests it received.
#[derive(Debug)]
pub struct RetryBudget {
    settings: RetryBudgetIr,
    /// Every attempt sent to the Service (first attempts and retries), over `budget.interval`.
    requests: Window,
    /// Retries over `budget.interval`.
    retries: Window,
    /// Retries over `minRetryRate.interval`.
    recent_retries: Window,
}

impl RetryBudget {
    pub fn new(settings: &RetryBudgetIr) -> Self {
        Self {
            requests: Window::new(settings.interval_ms),
            retries: Window::new(settings.interval_ms),
            recent_retries: Window::new(settings.min_retry_interval_ms),
            settings: settings.clone(),
        }
    }

    /// Whether this budget was built from `settings` (a new configuration keeps the budget, and
    /// its counts, while they are the same).
    pub fn is_built_from(&self, settings: &RetryBudgetIr) -> bool {
        self.settings == *settings
    }

    /// The settings it was built from.
    pub fn settings(&self) -> &RetryBudgetIr {
        &self.settings
    }

    /// Counts one attempt sent to the Service.
    pub fn record_request(&self) {
        self.requests.add(now_ms());
    }

    /// Decides one retry: allowed, and counted, while retries stay within `percent` of the
    /// requests of the interval ("if ... there have been 1000 active requests in the past 10
    /// seconds, and the allowed percentage of requests that can be retried is 20% ..., then
    /// 200 of those requests may be composed of retries"), or while fewer than
    /// `minRetryRate.count` retries were made in its interval ("This ensures that requests can
    /// still be retried during periods of low traffic").
    pub fn try_retry(&self) -> bool {
        self.try_retry_at(now_ms())
    }

    fn try_retry_at(&self, now: u64) -> bool {
        let requests = self.requests.sum(now);
        let retries = self.retries.sum(now);
        let within_budget = (retries + 1).saturating_mul(100)
            <= requests.saturating_mul(u64::from(self.settings.percent));
        let within_minimum =
            self.recent_retries.sum(now) < u64::from(self.settings.min_retry_count);
        if within_budget || within_minimum {
            self.retries.add(now);
            self.recent_retries.add(now);
            true
        } else {
            false
        }
    }
}

/// Milliseconds since the first use, from a monotonic clock.
fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = *START.get_or_init(Instant::now);
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Counts over the last `SLOTS` slots of `slot_ms` each.
#[derive(Debug)]
struct Window {
    slot_ms: u64,
    /// Per slot: the slot's epoch (`time / slot_ms`) in the high 32 bits, its count in the low.
    slots: [AtomicU64; SLOTS as usize],
}

impl Window {
    fn new(interval_ms: u64) -> Self {
        Self {
            slot_ms: (interval_ms / SLOTS).max(1),
            slots: Default::default(),
        }
    }

    fn epoch(&self, now: u64) -> u64 {
        (now / self.slot_ms) & u64::from(u32::MAX)
    }

    fn slot(&self, epoch: u64) -> &AtomicU64 {
        // `epoch % SLOTS` is below SLOTS, the array's length.
        &self.slots[usize::try_from(epoch % SLOTS).unwrap_or(0)]
    }

    fn add(&self, now: u64) {
        let epoch = self.epoch(now);
        let slot = self.slot(epoch);
        let mut current = slot.load(Ordering::Relaxed);
        loop {
            let next = if current >> 32 == epoch {
                current.saturating_add(1)
            } else {
                (epoch << 32) | 1
            };
            match slot.compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return,
                Err(seen) => current = seen,
            }
        }
    }

    fn sum(&self, now: u64) -> u64 {
        let epoch = self.epoch(now);
        self.slots
            .iter()
            .map(|slot| slot.load(Ordering::Relaxed))
            .filter(|v| epoch.wrapping_sub(v >> 32) & u64::from(u32::MAX) < SLOTS)
            .map(|v| v & u64::from(u32::MAX))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(percent: u32, min_retry_count: u32) -> RetryBudget {
        RetryBudget::new(&RetryBudgetIr {
            policy: "ns/p".into(),
            percent,
            interval_ms: 10_000,
            min_retry_count,
            min_retry_interval_ms: 1_000,
        })
    }

    #[test]
    fn retries_stay_within_the_percentage_of_requests() {
        let b = budget(20, 0);
        for _ in 0..100 {
            b.requests.add(5);
        }
        let allowed = (0..100).filter(|_| b.try_retry_at(5)).count();
        assert_eq!(allowed, 20, "20% of 100 requests");
    }

    #[test]
    fn the_minimum_rate_allows_retries_at_low_traffic_and_refills_with_time() {
        let b = budget(20, 3);
        let allowed = (0..10).filter(|_| b.try_retry_at(0)).count();
        assert_eq!(allowed, 3, "no requests: only the minimum");
        // A second later the minimum's window has moved on.
        let later = (0..10).filter(|_| b.try_retry_at(1_100)).count();
        assert_eq!(later, 3);
    }

    #[test]
    fn a_window_forgets_what_is_older_than_its_interval() {
        let w = Window::new(1_000);
        for t in [0, 50, 950] {
            w.add(t);
        }
        assert_eq!(w.sum(999), 3);
        assert_eq!(w.sum(1_050), 1, "the first two slots have gone");
        assert_eq!(w.sum(5_000), 0);
        w.add(5_000);
        assert_eq!(w.sum(5_000), 1, "a reused slot starts from zero");
    }

    #[test]
    fn a_zero_percent_budget_with_no_minimum_allows_nothing() {
        let b = budget(0, 0);
        b.requests.add(0);
        assert!(!b.try_retry_at(0));
    }
}
