//! `gantry_rate_limited_total{route, policy, rule, mode}`: requests a RateLimitPolicy rule
//! refused (`mode="enforced"`, answered 429) or would have refused (`mode="shadow"`).

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

/// The family. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct RateLimitMetrics {
    limited: Family<LimitedLabels, Counter>,
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
        metrics
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
