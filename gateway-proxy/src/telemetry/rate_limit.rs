//! `gantry_rate_limited_total{route, policy, rule, mode}`: requests a RateLimitPolicy rule
//! refused (`mode="enforced"`, answered 429) or would have refused (`mode="shadow"`), and
//! `gantry_rate_limit_uncounted_total{policy, rule, outcome}`: global rules Redis did not
//! answer.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LimitedLabels {
    /// `namespace/name` of the route.
    route: String,
    /// `namespace/name` of the policy.
    policy: String,
    rule: String,
    /// `enforced` or `shadow`.
    mode: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UncountedLabels {
    policy: String,
    rule: String,
    /// `allowed` (the policy fails open) or `refused` (it fails closed: 503).
    outcome: &'static str,
}

/// The families. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct RateLimitMetrics {
    limited: Family<LimitedLabels, Counter>,
    uncounted: Family<UncountedLabels, Counter>,
}

impl RateLimitMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "rate_limited",
            "Requests a RateLimitPolicy rule refused (mode enforced, answered 429) or would have \
             refused (mode shadow), by route, policy and rule",
            metrics.limited.clone(),
        );
        registry.register(
            "rate_limit_uncounted",
            "Requests a global RateLimitPolicy rule could not count because Redis did not answer, \
             by policy, rule and outcome (allowed: the policy fails open; refused: 503)",
            metrics.uncounted.clone(),
        );
        metrics
    }

    pub fn uncounted(&self, policy: &str, rule: &str, refused: bool) {
        self.uncounted
            .get_or_create(&UncountedLabels {
                policy: policy.to_owned(),
                rule: rule.to_owned(),
                outcome: if refused { "refused" } else { "allowed" },
            })
            .inc();
    }

    pub fn limited(&self, route: &str, policy: &str, rule: &str, shadow: bool) {
        self.limited
            .get_or_create(&LimitedLabels {
                route: route.to_owned(),
                policy: policy.to_owned(),
                rule: rule.to_owned(),
                mode: if shadow { "shadow" } else { "enforced" },
            })
            .inc();
    }
}
