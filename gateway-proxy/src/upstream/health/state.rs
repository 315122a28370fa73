//! The state machines of endpoint health, free of I/O and clocks: the caller passes the time
//! (milliseconds on a monotonic clock) and the outcome, so every rule is tested by explicit
//! calls. The contract is `gantry_translate::ir::backend_config`'s documentation.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use gantry_translate::ir::{ActiveHealthCheckIr, OutlierDetectionIr};

/// Active checking of one endpoint: consecutive probe results against the thresholds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActiveState {
    /// A newly listed endpoint starts healthy (it passed its readiness probe).
    pub healthy: bool,
    successes: u32,
    failures: u32,
}

impl Default for ActiveState {
    fn default() -> Self {
        Self {
            healthy: true,
            successes: 0,
            failures: 0,
        }
    }
}

impl ActiveState {
    /// Records one probe; true when the endpoint's health changed.
    pub fn record(&mut self, success: bool, settings: &ActiveHealthCheckIr) -> bool {
        if success {
            self.failures = 0;
            self.successes = self.successes.saturating_add(1);
            if !self.healthy && self.successes >= settings.healthy_threshold {
                self.healthy = true;
                return true;
            }
        } else {
            self.successes = 0;
            self.failures = self.failures.saturating_add(1);
            if self.healthy && self.failures >= settings.unhealthy_threshold {
                self.healthy = false;
                return true;
            }
        }
        false
    }
}

/// How one request to an endpoint ended, for outlier detection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The endpoint answered with this status.
    Status(u16),
    /// The proxy's side failed: no connection, a reset before the response, a timeout, a
    /// failed TLS handshake.
    LocalFailure,
    /// A connection of a TCP or TLS route opened (and its TLS handshake, if any, completed):
    /// a local-origin success.
    Connected,
}

/// `ejected_until` while the endpoint is not ejected.
const NOT_EJECTED: u64 = u64::MAX;

/// Passive checking of one endpoint: consecutive failure counters and ejections. Every field
/// is an atomic, so counting a request's outcome takes no lock; the caller serializes
/// [`OutlierState::eject`] (the maximum ejection percentage counts the ejected).
#[derive(Debug)]
pub struct OutlierState {
    consecutive_5xx: AtomicU32,
    consecutive_gateway: AtomicU32,
    consecutive_local: AtomicU32,
    /// Times ejected so far (the ejection time grows with it).
    ejections: AtomicU32,
    /// While ejected: when (ms) the endpoint returns; [`NOT_EJECTED`] otherwise.
    ejected_until: AtomicU64,
}

impl Default for OutlierState {
    fn default() -> Self {
        Self {
            consecutive_5xx: AtomicU32::new(0),
            consecutive_gateway: AtomicU32::new(0),
            consecutive_local: AtomicU32::new(0),
            ejections: AtomicU32::new(0),
            ejected_until: AtomicU64::new(NOT_EJECTED),
        }
    }
}

impl OutlierState {
    /// Counts `outcome`; true when a counter reached its threshold (the caller then ejects,
    /// if the maximum percentage allows, or calls [`OutlierState::reset`]). An ejected
    /// endpoint counts nothing.
    ///
    /// As Envoy's outlier detection (which Envoy Gateway's `passive` fields configure): with
    /// `splitExternalLocalOriginErrors` off a local failure counts as a 503 and an opened
    /// connection as a success; with it on they count apart, in
    /// `consecutiveLocalOriginFailures`, and any response resets that count.
    pub fn record(&self, outcome: Outcome, settings: &OutlierDetectionIr) -> bool {
        if self.ejected_until().is_some() {
            return false;
        }
        let split = settings.split_external_local_origin_errors;
        let (server_error, gateway_error) = match outcome {
            Outcome::Status(status) => {
                if split {
                    // A response means the connection worked.
                    bump(&self.consecutive_local, false);
                }
                ((500..600).contains(&status), matches!(status, 502..=504))
            }
            Outcome::LocalFailure if split => {
                let count = bump(&self.consecutive_local, true);
                return reached(count, settings.consecutive_local_origin_failures);
            }
            Outcome::Connected if split => {
                bump(&self.consecutive_local, false);
                return false;
            }
            Outcome::LocalFailure => (true, true),
            Outcome::Connected => (false, false),
        };
        let five = bump(&self.consecutive_5xx, server_error);
        let gateway = bump(&self.consecutive_gateway, gateway_error);
        reached(five, settings.consecutive_5xx_errors)
            || reached(gateway, settings.consecutive_gateway_errors)
    }

    /// Ejects the endpoint at `now`: it returns at the first review (every `interval_ms` on the
    /// same clock) at least `base_ejection_time_ms` × (its number of ejections) later.
    pub fn eject(&self, now: u64, settings: &OutlierDetectionIr) {
        let ejections = self
            .ejections
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        let due = now.saturating_add(
            settings
                .base_ejection_time_ms
                .saturating_mul(u64::from(ejections)),
        );
        let interval = settings.interval_ms.max(1);
        let until = due
            .div_ceil(interval)
            .saturating_mul(interval)
            .min(NOT_EJECTED - 1);
        self.reset();
        self.ejected_until.store(until, Ordering::Release);
    }

    /// At a review at `now`: returns the endpoint when its time is up, with its counters
    /// reset; true when it returned.
    pub fn review(&self, now: u64) -> bool {
        match self.ejected_until() {
            Some(until) if now >= until => {
                self.reset();
                self.ejected_until
                    .compare_exchange(until, NOT_EJECTED, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
            }
            _ => false,
        }
    }

    /// While ejected: when (ms) the endpoint returns.
    pub fn ejected_until(&self) -> Option<u64> {
        let until = self.ejected_until.load(Ordering::Acquire);
        (until != NOT_EJECTED).then_some(until)
    }

    /// Times ejected so far.
    pub fn ejections(&self) -> u32 {
        self.ejections.load(Ordering::Relaxed)
    }

    /// Starts every consecutive count again (Envoy does so after each ejection attempt, made or
    /// refused by the maximum percentage, so a run of failures is counted afresh).
    pub fn reset(&self) {
        for counter in [
            &self.consecutive_5xx,
            &self.consecutive_gateway,
            &self.consecutive_local,
        ] {
            bump(counter, false);
        }
    }
}

/// Counts one more failure, or resets the count on a success; the new count. A count already
/// 0 is not written, so successes leave the cache line alone.
fn bump(counter: &AtomicU32, failed: bool) -> u32 {
    if failed {
        counter.fetch_add(1, Ordering::Relaxed).saturating_add(1)
    } else {
        if counter.load(Ordering::Relaxed) != 0 {
            counter.store(0, Ordering::Relaxed);
        }
        0
    }
}

/// A threshold of 0 is never reached.
fn reached(count: u32, threshold: u32) -> bool {
    threshold > 0 && count >= threshold
}

/// Whether one more of `total` endpoints may be ejected while `ejected` are: the ejected may be
/// at most `max_percent` percent of all, rounded down but at least one; 0 % ejects nothing.
pub fn may_eject(ejected: usize, total: usize, max_percent: u32) -> bool {
    if max_percent == 0 || total == 0 {
        return false;
    }
    let allowed = (total.saturating_mul(max_percent.min(100) as usize) / 100).max(1);
    ejected < allowed
}

/// Which endpoints a request may go to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Selection {
    /// The healthy ones.
    Healthy,
    /// Panic mode: every endpoint, healthy or not.
    Panic,
    /// None (no healthy endpoint and a panic threshold of 0): 503.
    Nothing,
}

/// Panic mode: healthy endpoints fewer than `threshold_percent` percent of all.
pub fn selection(healthy: usize, total: usize, threshold_percent: u32) -> Selection {
    if healthy.saturating_mul(100) < total.saturating_mul(threshold_percent as usize) {
        Selection::Panic
    } else if healthy == 0 {
        Selection::Nothing
    } else {
        Selection::Healthy
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_translate::ir::HealthProbeIr;

    fn active(unhealthy: u32, healthy: u32) -> ActiveHealthCheckIr {
        ActiveHealthCheckIr {
            timeout_ms: 100,
            interval_ms: 100,
            initial_jitter_ms: 0,
            unhealthy_threshold: unhealthy,
            healthy_threshold: healthy,
            probe: HealthProbeIr::Tcp {
                send: None,
                receive: None,
            },
        }
    }

    fn passive(five: u32, gateway: u32, local: u32, split: bool) -> OutlierDetectionIr {
        OutlierDetectionIr {
            consecutive_5xx_errors: five,
            consecutive_gateway_errors: gateway,
            consecutive_local_origin_failures: local,
            split_external_local_origin_errors: split,
            interval_ms: 100,
            base_ejection_time_ms: 1_000,
            max_ejection_percent: 50,
        }
    }

    #[test]
    fn active_thresholds_count_results_in_a_row() {
        let settings = active(3, 2);
        let mut state = ActiveState::default();
        assert!(state.healthy, "new endpoints start healthy");
        assert!(!state.record(false, &settings));
        assert!(!state.record(false, &settings));
        assert!(!state.record(true, &settings), "a success breaks the run");
        assert!(!state.record(false, &settings));
        assert!(!state.record(false, &settings));
        assert!(state.record(false, &settings), "third failure in a row");
        assert!(!state.healthy);
        assert!(!state.record(false, &settings));
        assert!(!state.record(true, &settings));
        assert!(!state.record(false, &settings), "a failure breaks the run");
        assert!(!state.record(true, &settings));
        assert!(state.record(true, &settings), "second success in a row");
        assert!(state.healthy);
    }

    #[test]
    fn consecutive_5xx_and_gateway_errors() {
        let settings = passive(3, 2, 0, false);
        let state = OutlierState::default();
        assert!(!state.record(Outcome::Status(500), &settings));
        assert!(!state.record(Outcome::Status(500), &settings));
        assert!(!state.record(Outcome::Status(200), &settings), "reset");
        assert!(!state.record(Outcome::Status(503), &settings));
        assert!(
            state.record(Outcome::Status(504), &settings),
            "2 gateway errors"
        );

        // 500, 502, 501: three 5xx in a row.
        let state = OutlierState::default();
        for status in [500, 502] {
            assert!(!state.record(Outcome::Status(status), &settings));
        }
        assert!(state.record(Outcome::Status(501), &settings));
        // A 4xx is a success for both counters.
        let state = OutlierState::default();
        state.record(Outcome::Status(503), &settings);
        state.record(Outcome::Status(404), &settings);
        assert!(!state.record(Outcome::Status(503), &settings));
    }

    #[test]
    fn local_failures_count_as_503_unless_split() {
        let settings = passive(0, 2, 5, false);
        let state = OutlierState::default();
        assert!(!state.record(Outcome::LocalFailure, &settings));
        assert!(state.record(Outcome::LocalFailure, &settings));

        let settings = passive(0, 2, 2, true);
        let state = OutlierState::default();
        assert!(!state.record(Outcome::LocalFailure, &settings));
        assert!(
            !state.record(Outcome::Status(503), &settings),
            "resets local"
        );
        assert!(!state.record(Outcome::LocalFailure, &settings));
        assert!(state.record(Outcome::LocalFailure, &settings));

        // An opened connection (TCP and TLS routes) is a success: it breaks a run of local
        // failures, counted apart or as 503s.
        let state = OutlierState::default();
        assert!(!state.record(Outcome::LocalFailure, &settings));
        assert!(!state.record(Outcome::Connected, &settings));
        assert!(!state.record(Outcome::LocalFailure, &settings));
        let settings = passive(0, 2, 5, false);
        let state = OutlierState::default();
        assert!(!state.record(Outcome::LocalFailure, &settings));
        assert!(!state.record(Outcome::Connected, &settings));
        assert!(!state.record(Outcome::LocalFailure, &settings));
        assert!(state.record(Outcome::LocalFailure, &settings));

        // Thresholds of 0 never eject.
        let settings = passive(0, 0, 0, true);
        let state = OutlierState::default();
        for _ in 0..10 {
            assert!(!state.record(Outcome::Status(503), &settings));
            assert!(!state.record(Outcome::LocalFailure, &settings));
        }
    }

    #[test]
    fn ejection_time_grows_with_each_ejection_and_ends_at_a_review() {
        let settings = passive(1, 0, 0, false);
        let state = OutlierState::default();
        assert!(state.record(Outcome::Status(500), &settings));
        state.eject(1_050, &settings);
        // 1050 + 1000 = 2050, reviewed at 2100.
        assert_eq!(state.ejected_until(), Some(2_100));
        assert!(!state.record(Outcome::Status(500), &settings), "ejected");
        assert!(!state.review(2_099));
        assert!(state.review(2_100));
        assert_eq!(state.ejected_until(), None);
        assert!(state.record(Outcome::Status(500), &settings));
        state.eject(3_000, &settings);
        assert_eq!(state.ejected_until(), Some(5_000), "twice the base time");
        assert!(state.review(5_000));
        state.eject(6_000, &settings);
        assert_eq!(state.ejected_until(), Some(9_000), "three times");
    }

    #[test]
    fn max_ejection_percent_rounds_down_but_allows_one() {
        assert!(may_eject(0, 3, 10), "10% of 3 rounds to 0: still one");
        assert!(!may_eject(1, 3, 10));
        assert!(may_eject(1, 4, 50));
        assert!(!may_eject(2, 4, 50));
        assert!(!may_eject(2, 5, 50), "2.5 rounds down to 2");
        assert!(may_eject(4, 5, 100));
        assert!(!may_eject(0, 5, 0), "0% ejects nothing");
        assert!(!may_eject(0, 0, 100));
    }

    #[test]
    fn panic_mode_below_the_threshold() {
        assert_eq!(selection(1, 4, 50), Selection::Panic, "25% < 50%");
        assert_eq!(selection(2, 4, 50), Selection::Healthy, "50% is not below");
        assert_eq!(selection(0, 4, 1), Selection::Panic, "none healthy");
        assert_eq!(selection(0, 4, 0), Selection::Nothing, "threshold 0: 503");
        assert_eq!(selection(4, 4, 100), Selection::Healthy);
        assert_eq!(selection(3, 4, 100), Selection::Panic);
        assert_eq!(selection(0, 0, 50), Selection::Nothing, "no endpoints");
    }
}
