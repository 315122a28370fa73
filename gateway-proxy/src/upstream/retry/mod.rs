//! What retrying an upstream request needs, compiled once and used per request: the rule's
//! policy ([`RetryPolicy`], HTTPRoute `retry`), a Service's budget ([`RetryBudget`],
//! XBackendTrafficPolicy `retryConstraint`) and a request body that can be sent again
//! ([`replay`]). The attempt loop itself is the server's (`server::retry`), since it answers
//! with the server's errors.

mod budget;
pub mod replay;

use std::time::Duration;

pub use crate::telemetry::{RetryReason, SkipReason};
pub use budget::RetryBudget;
use gantry_translate::ir::RetryIr;

/// The backoff never grows past this many times its base ("MAY cap the delay at an
/// implementation-defined maximum, which SHOULD NOT be less than the base interval").
const BACKOFF_CAP_FACTOR: u32 = 10;

/// A rule's `retry`, ready to be asked per attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (at least 1).
    pub attempts: u32,
    /// Retried status codes, one bit per code from 400 to 599.
    codes: [u64; 4],
    /// Base of the backoff.
    pub backoff: Duration,
}

impl RetryPolicy {
    pub fn compile(ir: &RetryIr) -> Self {
        let mut codes = [0u64; 4];
        for &code in &ir.codes {
            if let Some(bit) = code.checked_sub(400).filter(|b| *b < 200) {
                codes[usize::from(bit / 64)] |= 1 << (bit % 64);
            }
        }
        Self {
            attempts: ir.attempts,
            codes,
            backoff: Duration::from_millis(ir.backoff_ms),
        }
    }

    /// Whether a response with `status` is retried.
    pub fn retries_status(&self, status: u16) -> bool {
        match status.checked_sub(400).filter(|b| *b < 200) {
            Some(bit) => self.codes[usize::from(bit / 64)] & (1 << (bit % 64)) != 0,
            None => false,
        }
    }

    /// How long to wait before retry number `retry` (1 for the first): exponential from the
    /// base (base × 2^(retry−1), at most [`BACKOFF_CAP_FACTOR`] × base), with jitter between
    /// the base and that value, so no retry comes sooner than the base ("as long as
    /// unsuccessful backend requests are not retried before the configured minimum duration").
    pub fn backoff(&self, retry: u32) -> Duration {
        let base = self.backoff;
        if base.is_zero() {
            return base;
        }
        let factor = 1u32
            .checked_shl(retry.saturating_sub(1))
            .unwrap_or(u32::MAX)
            .min(BACKOFF_CAP_FACTOR);
        let ceiling = base.saturating_mul(factor);
        let spread = u64::try_from((ceiling - base).as_micros()).unwrap_or(u64::MAX);
        base + Duration::from_micros(fastrand::u64(0..=spread))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(codes: &[u16], backoff_ms: u64) -> RetryPolicy {
        RetryPolicy::compile(&RetryIr {
            attempts: 2,
            codes: codes.to_vec(),
            backoff_ms,
        })
    }

    #[test]
    fn only_the_listed_codes_are_retried() {
        let p = policy(&[400, 429, 503, 599], 25);
        for code in [400, 429, 503, 599] {
            assert!(p.retries_status(code), "{code}");
        }
        for code in [200, 399, 401, 500, 502, 600, 0, u16::MAX] {
            assert!(!p.retries_status(code), "{code}");
        }
    }

    #[test]
    fn backoff_grows_exponentially_with_jitter_never_below_the_base_nor_above_the_cap() {
        let p = policy(&[], 100);
        let base = Duration::from_millis(100);
        assert_eq!(p.backoff(1), base, "the first retry waits the base");
        for retry in 1..=40 {
            let wait = p.backoff(retry);
            let ceiling = base * (1u32 << (retry - 1).min(4)).min(BACKOFF_CAP_FACTOR);
            assert!(wait >= base && wait <= ceiling, "{retry}: {wait:?}");
        }
        assert!(
            (0..200).any(|_| p.backoff(3) != p.backoff(3)),
            "later retries are jittered"
        );
        assert_eq!(policy(&[], 0).backoff(5), Duration::ZERO);
    }
}
