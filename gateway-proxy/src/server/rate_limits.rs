//! What a RateLimitPolicy check ([`crate::rate_limit`]) decided for a request, and what it
//! counts in metrics.

use http::StatusCode;

use super::{ProxyError, Shared};
use crate::rate_limit::{Checked, Limiter, RateHeaders};
use crate::routing::RouteEntry;

/// The `RateLimit` headers for the response.
type Headers<'r> = Option<RateHeaders<'r>>;

/// What the route's policy decided for the request ([`Limiter::check_now`], and
/// [`Limiter::resume`] when a take went to Redis), counted in metrics: the `RateLimit`
/// headers for the response when it passes, the answer (429, 503, 500) when it does not.
pub(super) fn outcome<'r>(
    shared: &Shared,
    entry: &RouteEntry,
    limiter: &Limiter,
    checked: Checked<'r>,
) -> Result<Headers<'r>, ProxyError> {
    let metrics = &shared.metrics.rate_limit;
    match checked {
        Checked::Passed(passed) => {
            for rule in &passed.unanswered {
                metrics.uncounted(limiter.policy(), rule, false);
            }
            for rule in &passed.shadow_limited {
                metrics.limited(&entry.route, limiter.policy(), rule, true);
            }
            Ok(passed.headers)
        }
        Checked::Limited(limited) => {
            metrics.limited(&entry.route, &limited.policy, &limited.rule, false);
            Err(ProxyError::RateLimited(Box::new(limited)))
        }
        Checked::Unavailable { rule, message } => {
            metrics.uncounted(limiter.policy(), &rule, true);
            Err(ProxyError::Denied(crate::security::Denial {
                status: StatusCode::SERVICE_UNAVAILABLE,
                reason: "rate_limit_unavailable",
                message,
                challenge: None,
            }))
        }
        Checked::Refused(message) => {
            shared
                .metrics
                .security_denied(&entry.route, "invalid_rate_limit_policy");
            Err(ProxyError::Denied(crate::security::Denial {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                reason: "invalid_rate_limit_policy",
                message,
                challenge: None,
            }))
        }
    }
}
