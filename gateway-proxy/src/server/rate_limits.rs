//! The request's RateLimitPolicy check ([`crate::rate_limit`]) and what it counts in metrics.

use std::net::IpAddr;

use http::request::Parts;
use http::{HeaderName, HeaderValue, StatusCode};

use super::{ProxyError, Shared};
use crate::rate_limit::{self, Checked, Limiter};
use crate::routing::{RouteEntry, Snapshot};

/// Checks the request against the route's policy: the `RateLimit` headers for the response
/// when it passes, the answer (429, 503, 500) when it does not.
pub(super) async fn check(
    shared: &Shared,
    snapshot: &Snapshot,
    entry: &RouteEntry,
    limiter: &Limiter,
    parts: &Parts,
    client: IpAddr,
) -> Result<Option<[(HeaderName, HeaderValue); 2]>, ProxyError> {
    let facts = rate_limit::Facts {
        parts,
        client,
        route: &entry.route,
    };
    let global = shared.global_rate_limits.as_deref();
    let metrics = &shared.metrics.rate_limit;
    match limiter
        .check(&snapshot.rate_limit_buckets, global, &facts)
        .await
    {
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
            Err(ProxyError::RateLimited(limited))
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
