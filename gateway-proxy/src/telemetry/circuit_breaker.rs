//! `gantry_circuit_breaker_rejections_total`: what a BackendConfigPolicy's circuit breaker
//! refused, by cluster and limit (as the API spells it: `maxParallelRequests`,
//! `maxParallelRetries`, ...). Recorded only when a limit refuses something.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

/// Labels of `circuit_breaker_rejections`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Labels {
    /// The cluster (`namespace/service:port`).
    cluster: String,
    limit: &'static str,
}

/// The circuit breaker's counter.
#[derive(Clone, Debug, Default)]
pub struct CircuitBreakerMetrics {
    rejections: Family<Labels, Counter>,
}

impl CircuitBreakerMetrics {
    /// Creates the counter and registers it.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "circuit_breaker_rejections",
            "Requests, retries or connections a BackendConfigPolicy circuit breaker refused, by \
             cluster and limit",
            m.rejections.clone(),
        );
        m
    }

    /// Counts one refusal by `limit` of `cluster`.
    pub fn rejected(&self, cluster: &str, limit: &'static str) {
        self.rejections
            .get_or_create(&Labels {
                cluster: cluster.to_owned(),
                limit,
            })
            .inc();
    }

    /// The count for one cluster and limit, for tests.
    pub fn rejections(&self, cluster: &str, limit: &'static str) -> u64 {
        self.rejections
            .get_or_create(&Labels {
                cluster: cluster.to_owned(),
                limit,
            })
            .get()
    }
}
