//! `gantry_circuit_breaker_rejections_total{cluster,limit}`: requests (and TCP/TLS route
//! connections) a BackendConfigPolicy `circuitBreaker` limit refused. Every limit records here,
//! on the rejection path only, so counting costs nothing while traffic stays under its limits.
//! `limit` is the limit's name as the API spells it (`maxConnections`, `maxPendingRequests`,
//! `maxParallelRequests`, `maxParallelRetries`), the value of the response's
//! `x-gantry-circuit-breaker` header.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

/// Labels of `circuit_breaker_rejections`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RejectionLabels {
    /// `namespace/service:port`.
    cluster: String,
    limit: &'static str,
}

/// The rejection counter. Cheap to clone: clones count into the same family.
#[derive(Clone, Debug, Default)]
pub struct CircuitBreakerMetrics {
    rejections: Family<RejectionLabels, Counter>,
}

impl CircuitBreakerMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "circuit_breaker_rejections",
            "Requests (and TCP/TLS route connections) refused by a BackendConfigPolicy circuit \
             breaker limit, by cluster (namespace/service:port) and limit (maxConnections, \
             maxPendingRequests, maxParallelRequests, maxParallelRetries)",
            metrics.rejections.clone(),
        );
        metrics
    }

    /// Counts one rejection of `cluster` by `limit`.
    pub fn rejected(&self, cluster: &str, limit: &'static str) {
        self.rejections
            .get_or_create(&RejectionLabels {
                cluster: cluster.to_owned(),
                limit,
            })
            .inc();
    }

    /// The count for one cluster and limit, for tests.
    pub fn rejections(&self, cluster: &str, limit: &'static str) -> u64 {
        self.rejections
            .get_or_create(&RejectionLabels {
                cluster: cluster.to_owned(),
                limit,
            })
            .get()
    }
}
