//! HTTPRoute rule `retry` (GEP-1731, Standard since Gateway API v1.7): validated into
//! [`RetryIr`]. GRPCRoute rules have no `retry` field in the API, so only HTTPRoute rules
//! retry.
//!
//! The API text this follows (`HTTPRouteRetry`, `HTTPRouteRetryStatusCode`):
//! - `attempts`: "the maximum number of times an individual request from the Gateway to a
//!   backend should be retried in addition to the initial request. ... If unspecified, the
//!   number of attempts MAY be an implementation-specific default, including none. An explicit
//!   zero value MUST disable retries." Gantry's default is [`DEFAULT_ATTEMPTS`] retry.
//! - `codes`: "Implementations MUST support the following status codes as retriable: 500, 502,
//!   503, 504. Implementations MAY support specifying additional discrete values in the
//!   500-599 range. Implementations MAY support specifying discrete values in the 400-499
//!   range". Gantry supports every code from 400 to 599 (the API's `Minimum`/`Maximum`); a
//!   value outside that range makes the rule invalid. Without `codes`, no status is retried:
//!   "Implementations SHOULD retry when a retry stanza is configured and the connection could
//!   not be established", which a `retry` with no codes still does.
//! - `backoff`: "the base interval for a backoff strategy between retry attempts ...
//!   Implementations MAY add random jitter and MAY cap the delay at an implementation-defined
//!   maximum, which SHOULD NOT be less than the base interval." Unset, the base is
//!   [`DEFAULT_BACKOFF_MS`].

use std::str::FromStr;

use gantry_crds::gateway::Duration;
use gantry_crds::gateway::httproutes::HttpRouteRulesRetry;

use super::conditions::{self as c, Problem};
use crate::ir::RetryIr;

/// Retries after the first attempt when `attempts` is unset (Envoy's `num_retries` default).
pub const DEFAULT_ATTEMPTS: u32 = 1;
/// Backoff base when `backoff` is unset (Envoy's default base interval).
pub const DEFAULT_BACKOFF_MS: u64 = 25;
/// The most retries a rule may ask for. The API sets no maximum; a larger value is refused
/// (`UnsupportedValue`) rather than silently capped, so what runs is what was written.
pub const MAX_ATTEMPTS: u32 = 10;

/// Validates a rule's `retry`. `Ok(None)` when there is none or it disables retries
/// (`attempts: 0`); an invalid value makes the rule invalid (`UnsupportedValue`), as an invalid
/// `timeouts` does.
pub fn translate_retry(retry: Option<&HttpRouteRulesRetry>) -> Result<Option<RetryIr>, Problem> {
    let Some(retry) = retry else {
        return Ok(None);
    };
    let attempts = match retry.attempts {
        None => DEFAULT_ATTEMPTS,
        Some(n) => u32::try_from(n)
            .ok()
            .filter(|&n| n <= MAX_ATTEMPTS)
            .ok_or_else(|| {
                unsupported(format!(
                    "retry.attempts {n} is out of range; this proxy retries 0 to {MAX_ATTEMPTS} times after the first attempt"
                ))
            })?,
    };
    let mut codes = Vec::new();
    for &code in retry.codes.iter().flatten() {
        match u16::try_from(code) {
            Ok(code @ 400..=599) => codes.push(code),
            _ => {
                return Err(unsupported(format!(
                    "retry.codes {code} is not an HTTP status code from 400 to 599 (HTTPRouteRetryStatusCode)"
                )));
            }
        }
    }
    codes.sort_unstable();
    codes.dedup();
    let backoff_ms = match retry.backoff.as_deref() {
        None => DEFAULT_BACKOFF_MS,
        Some(text) => {
            let d = Duration::from_str(text).map_err(|e| {
                unsupported(format!(
                    "retry.backoff {text:?} is not a Gateway API duration such as \"100ms\" or \"1s\": {e}"
                ))
            })?;
            u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
        }
    };
    // "An explicit zero value MUST disable retries."
    if attempts == 0 {
        return Ok(None);
    }
    Ok(Some(RetryIr {
        attempts,
        codes,
        backoff_ms,
    }))
}

fn unsupported(message: String) -> Problem {
    Problem::new(c::REASON_UNSUPPORTED_VALUE, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retry(attempts: Option<i64>, codes: &[i64], backoff: Option<&str>) -> HttpRouteRulesRetry {
        HttpRouteRulesRetry {
            attempts,
            codes: (!codes.is_empty()).then(|| codes.to_vec()),
            backoff: backoff.map(str::to_owned),
        }
    }

    #[test]
    fn defaults_apply_to_an_empty_retry() {
        assert_eq!(
            translate_retry(Some(&retry(None, &[], None))).unwrap(),
            Some(RetryIr {
                attempts: DEFAULT_ATTEMPTS,
                codes: vec![],
                backoff_ms: DEFAULT_BACKOFF_MS,
            })
        );
        assert_eq!(translate_retry(None).unwrap(), None);
    }

    #[test]
    fn zero_attempts_disable_retries() {
        assert_eq!(
            translate_retry(Some(&retry(Some(0), &[503], Some("1s")))).unwrap(),
            None
        );
    }

    #[test]
    fn codes_are_sorted_and_limited_to_400_to_599() {
        let ir = translate_retry(Some(&retry(Some(3), &[504, 500, 504, 429], Some("100ms"))))
            .unwrap()
            .unwrap();
        assert_eq!(ir.codes, [429, 500, 504]);
        assert_eq!((ir.attempts, ir.backoff_ms), (3, 100));
        for bad in [399, 600, -1] {
            let problem = translate_retry(Some(&retry(None, &[bad], None))).unwrap_err();
            assert_eq!(problem.reason, c::REASON_UNSUPPORTED_VALUE);
        }
    }

    #[test]
    fn attempts_and_backoff_out_of_range_are_refused() {
        assert!(translate_retry(Some(&retry(Some(-1), &[], None))).is_err());
        assert!(translate_retry(Some(&retry(Some(11), &[], None))).is_err());
        assert!(translate_retry(Some(&retry(Some(10), &[], None))).is_ok());
        assert!(translate_retry(Some(&retry(None, &[], Some("soon")))).is_err());
    }
}
