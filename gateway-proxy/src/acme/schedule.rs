//! When to renew a certificate and how long to wait after a failed order; pure, so the
//! manager that drives orders (and its tests) need no clock of their own.

use std::time::{Duration, SystemTime};

/// The default `--acme-renew-before`: 30 days before expiry, as Let's Encrypt advises for its
/// 90-day certificates.
pub const DEFAULT_RENEW_BEFORE: Duration = Duration::from_secs(30 * 24 * 60 * 60);

/// First and longest wait after a failed order.
const FIRST_BACKOFF: Duration = Duration::from_secs(60);
const MAX_BACKOFF: Duration = Duration::from_secs(6 * 60 * 60);

/// When to start renewing a certificate valid from `not_before` to `not_after`:
/// `renew_before` ahead of expiry, or a third of the lifetime for certificates so short that
/// `renew_before` would be more than that (renewing at once, for ever).
pub fn renew_at(
    not_before: SystemTime,
    not_after: SystemTime,
    renew_before: Duration,
) -> SystemTime {
    let lifetime = not_after
        .duration_since(not_before)
        .unwrap_or(Duration::ZERO);
    let ahead = renew_before.min(lifetime / 3);
    not_after.checked_sub(ahead).unwrap_or(not_before)
}

/// The wait before attempt `failures + 1` after `failures` failed orders in a row: doubling
/// from a minute up to six hours, and at least the CA's `Retry-After` when it gave one
/// (a `rateLimited` answer, RFC 8555 §6.6).
pub fn backoff(failures: u32, retry_after: Option<Duration>) -> Duration {
    let doubled = FIRST_BACKOFF
        .checked_mul(1u32 << failures.saturating_sub(1).min(16))
        .unwrap_or(MAX_BACKOFF)
        .min(MAX_BACKOFF);
    retry_after.map_or(doubled, |after| after.max(doubled))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(24 * 60 * 60);

    #[test]
    fn long_certificates_renew_renew_before_ahead() {
        let start = SystemTime::UNIX_EPOCH + DAY * 1000;
        let end = start + DAY * 90;
        assert_eq!(renew_at(start, end, DEFAULT_RENEW_BEFORE), end - DAY * 30);
    }

    #[test]
    fn short_certificates_renew_at_two_thirds_of_their_lifetime() {
        let start = SystemTime::UNIX_EPOCH + DAY;
        let end = start + Duration::from_secs(90);
        assert_eq!(
            renew_at(start, end, DEFAULT_RENEW_BEFORE),
            start + Duration::from_secs(60)
        );
    }

    #[test]
    fn backoff_doubles_caps_and_honours_retry_after() {
        assert_eq!(backoff(1, None), Duration::from_secs(60));
        assert_eq!(backoff(2, None), Duration::from_secs(120));
        assert_eq!(backoff(3, None), Duration::from_secs(240));
        assert_eq!(backoff(40, None), MAX_BACKOFF);
        assert_eq!(
            backoff(1, Some(Duration::from_secs(3600))),
            Duration::from_secs(3600)
        );
        assert_eq!(
            backoff(3, Some(Duration::from_secs(1))),
            Duration::from_secs(240)
        );
    }
}
