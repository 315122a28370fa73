//! The state machines of endpoint health, free of I/O and clocks: the caller passes the time
//! (milliseconds on a monotonic clock) and the outcome, so every rule is tested by explicit
//! calls. The contract is `gantry_translate::ir::backend_config`'s documentation.

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
    /// The proxy's side failed: no connection, a reset before the response, a timeout.
    LocalFailure,
}

/// Passive checking of one endpoint: consecutive failure counters and ejections.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OutlierState {
    consecutive_5xx: u32,
    consecutive_gateway: u32,
    consecutive_local: u32,
    /// Times ejected so far (the ejection time grows with it).
    pub ejections: u32,
    /// While ejected: when (ms) the endpoint returns.
    pub ejected_until: Option<u64>,
}

impl OutlierState {
    /// Counts `outcome`; true when a counter reached its threshold (the caller then ejects,
    /// if the maximum percentage allows). An ejected endpoint counts nothing.
    pub fn record(&mut self, outcome: Outcome, settings: &OutlierDetectionIr) -> bool {
        if self.ejected_until.is_some() {
            return false;
        }
        let (server_error, gateway_error) = match outcome {
            Outcome::Status(status) => ((500..600).contains(&status), matches!(status, 502..=504)),
            Outcome::LocalFailure if settings.split_external_local_origin_errors => {
                self.consecutive_local = self.consecutive_local.saturating_add(1);
                return reached(
                    self.consecutive_local,
                    settings.consecutive_local_origin_failures,
                );
            }
            // Not split: a local failure counts as a 503.
            Outcome::LocalFailure => (true, true),
        };
        if matches!(outcome, Outcome::Status(_)) && settings.split_external_local_origin_errors {
            // A response means the connection worked.
            self.consecutive_local = 0;
        }
        bump(&mut self.consecutive_5xx, server_error);
        bump(&mut self.consecutive_gateway, gateway_error);
        reached(self.consecutive_5xx, settings.consecutive_5xx_errors)
            || reached(
                self.consecutive_gateway,
                settings.consecutive_gateway_errors,
            )
    }

    /// Ejects the endpoint at `now`: it returns at the first review (every `interval_ms` on the
    /// same clock) at least `base_ejection_time_ms` × (its number of ejections) later.
    pub fn eject(&mut self, now: u64, settings: &OutlierDetectionIr) {
        self.ejections = self.ejections.saturating_add(1);
        let due = now.saturating_add(
            settings
                .base_ejection_time_ms
                .saturating_mul(u64::from(self.ejections)),
        );
        let interval = settings.interval_ms.max(1);
        self.ejected_until = Some(due.div_ceil(interval).saturating_mul(interval));
        self.reset();
    }

    /// At a review at `now`: returns the endpoint when its time is up, with its counters
    /// reset; true when it returned.
    pub fn review(&mut self, now: u64) -> bool {
        match self.ejected_until {
            Some(until) if now >= until => {
                self.ejected_until = None;
                self.reset();
                true
            }
            _ => false,
        }
    }

    fn reset(&mut self) {
        self.consecutive_5xx = 0;
        self.consecutive_gateway = 0;
        self.consecutive_local = 0;
    }
}

fn bump(counter: &mut u32, failed: bool) {
    *counter = if failed { counter.saturating_add(1) } else { 0 };
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
        let mut state = OutlierState::default();
        assert!(!state.record(Outcome::Status(500), &settings));
        assert!(!state.record(Outcome::Status(500), &settings));
        assert!(!state.record(Outcome::Status(200), &settings), "reset");
        assert!(!state.record(Outcome::Status(503), &settings));
        assert!(
            state.record(Outcome::Status(504), &settings),
            "2 gateway errors"
        );

        // 500, 502, 501: three 5xx in a row.
        let mut state = OutlierState::default();
        for status in [500, 502] {
            assert!(!state.record(Outcome::Status(status), &settings));
        }
        assert!(state.record(Outcome::Status(501), &settings));
        // A 4xx is a success for both counters.
        let mut state = OutlierState::default();
        state.record(Outcome::Status(503), &settings);
        state.record(Outcome::Status(404), &settings);
        assert!(!state.record(Outcome::Status(503), &settings));
    }

    #[test]
    fn local_failures_count_as_503_unless_split() {
        let settings = passive(0, 2, 5, false);
        let mut state = OutlierState::default();
        assert!(!state.record(Outcome::LocalFailure, &settings));
        assert!(state.record(Outcome::LocalFailure, &settings));

        let settings = passive(0, 2, 2, true);
        let mut state = OutlierState::default();
        assert!(!state.record(Outcome::LocalFailure, &settings));
        assert!(
            !state.record(Outcome::Status(503), &settings),
            "resets local"
        );
        assert!(!state.record(Outcome::LocalFailure, &settings));
        assert!(state.record(Outcome::LocalFailure, &settings));

        // Thresholds of 0 never eject.
        let settings = passive(0, 0, 0, true);
        let mut state = OutlierState::default();
        for _ in 0..10 {
            assert!(!state.record(Outcome::Status(503), &settings));
            assert!(!state.record(Outcome::LocalFailure, &settings));
        }
    }

    #[test]
    fn ejection_time_grows_with_each_ejection_and_ends_at_a_review() {
        let settings = passive(1, 0, 0, false);
        let mut state = OutlierState::default();
        assert!(state.record(Outcome::Status(500), &settings));
        state.eject(1_050, &settings);
        // 1050 + 1000 = 2050, reviewed at 2100.
        assert_eq!(state.ejected_until, Some(2_100));
        assert!(!state.record(Outcome::Status(500), &settings), "ejected");
        assert!(!state.review(2_099));
        assert!(state.review(2_100));
        assert_eq!(state.ejected_until, None);
        assert!(state.record(Outcome::Status(500), &settings));
        state.eject(3_000, &settings);
        assert_eq!(state.ejected_until, Some(5_000), "twice the base time");
        assert!(state.review(5_000));
        state.eject(6_000, &settings);
        assert_eq!(state.ejected_until, Some(9_000), "three times");
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
