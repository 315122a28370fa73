//! The request's RateLimitPolicy check ([`crate::rate_limit`]) and what it counts in metrics.

use http::{HeaderName, HeaderValue, StatusCode};

use super::{ProxyError, Shared};
use crate::rate_limit::{self, Checked, Limiter};
use crate::routing::{RouteEntry, Snapshot};

/// The `RateLimit` headers for the response.
type Headers = Option<[(HeaderName, HeaderValue); 2]>;

/// Checks the request against the route's policy: the `RateLimit` headers for the response
/// when it passes, the answer (429, 503, 500) when it does not.
pub(super) async fn check(
    shared: &Shared,
    snapshot: &Snapshot,
    entry: &RouteEntry,
    limiter: &Limiter,
    facts: &rate_limit::Facts<'_>,
) -> Result<Headers, ProxyError> {
    let global = shared.global_rate_limits.as_deref();
    let checked = limiter
        .check(&snapshot.rate_limit_buckets, global, facts)
        .await;
    outcome(shared, entry, limiter, checked)
}

/// [`check`] for a policy whose rules are all counted on this replica
/// ([`Limiter::is_local`]): nothing to wait for.
pub(super) fn check_local(
    shared: &Shared,
    snapshot: &Snapshot,
    entry: &RouteEntry,
    limiter: &Limiter,
    facts: &rate_limit::Facts<'_>,
) -> Result<Headers, ProxyError> {
    let checked = limiter.check_local(&snapshot.rate_limit_buckets, facts);
    outcome(shared, entry, limiter, checked)
}

/// What a check decided, counted in metrics.
fn outcome(
    shared: &Shared,
    entry: &RouteEntry,
    limiter: &Limiter,
    checked: Checked,
) -> Result<Headers, ProxyError> {
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
