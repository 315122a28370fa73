//! `gantry_upstream_connections_open{cluster}`: connections open to the endpoints of each
//! cluster that a BackendConfigPolicy governs (HTTP/1.1, HTTP/2 and TCP/TLS route
//! connections). Clusters without a policy use the shared pools and have no series.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClusterLabels {
    /// `namespace/service:port`.
    cluster: String,
}

/// The gauge family. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct UpstreamConnectionMetrics {
    open: Family<ClusterLabels, Gauge>,
}

impl UpstreamConnectionMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "upstream_connections_open",
            "Connections open to the endpoints of a cluster a BackendConfigPolicy governs, by \
             cluster (namespace/service:port)",
            metrics.open.clone(),
        );
        metrics
    }

    /// The gauge of `cluster`; taken once when a cluster's clients are built.
    pub fn open(&self, cluster: &str) -> Gauge {
        self.open
            .get_or_create(&ClusterLabels {
                cluster: cluster.to_owned(),
            })
            .clone()
    }
}
