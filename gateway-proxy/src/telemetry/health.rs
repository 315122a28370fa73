//! Metrics of endpoint health (BackendConfigPolicy `healthCheck`). Series are labelled by
//! cluster and endpoint, so they exist only for the endpoints of clusters with health checks,
//! and an endpoint's series go when the last configuration listing it goes.

// The owner count's lock is taken when a configuration is compiled or dropped, never per request.
#![allow(clippy::disallowed_types)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Labels of per-endpoint series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointLabels {
    /// `namespace/service:port`.
    pub cluster: String,
    /// `address:port`.
    pub endpoint: String,
}

/// Labels of per-cluster series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClusterLabels {
    pub cluster: String,
}

/// Labels of the probe counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProbeLabels {
    pub cluster: String,
    /// `success` or `failure`.
    pub result: &'static str,
}

/// Health metrics, shared by every cluster with health checks.
#[derive(Clone, Debug, Default)]
pub struct HealthMetrics {
    endpoint_healthy: Family<EndpointLabels, Gauge>,
    probes: Family<ProbeLabels, Counter>,
    ejections: Family<ClusterLabels, Counter>,
    panic: Family<ClusterLabels, Gauge>,
    /// How many live configurations hold each endpoint series (and each cluster's): a series
    /// is removed when its count drops to 0.
    owners: Arc<Mutex<HashMap<EndpointLabels, usize>>>,
}

impl HealthMetrics {
    /// Creates the metrics and registers them.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "upstream_endpoint_healthy",
            "1 while an endpoint of a cluster with health checks may receive requests (its active \
             checks pass and outlier detection has not ejected it), else 0",
            m.endpoint_healthy.clone(),
        );
        registry.register(
            "health_check_probes",
            "Active health check probes sent, by cluster and result (success, failure)",
            m.probes.clone(),
        );
        registry.register(
            "outlier_ejections",
            "Endpoints ejected by outlier detection (passive health checks), by cluster",
            m.ejections.clone(),
        );
        registry.register(
            "upstream_panic_mode",
            "1 while a cluster is in panic mode (too few healthy endpoints: health is disregarded)",
            m.panic.clone(),
        );
        m
    }

    /// Sets whether an endpoint may receive requests.
    pub fn set_healthy(&self, labels: &EndpointLabels, healthy: bool) {
        self.endpoint_healthy
            .get_or_create(labels)
            .set(i64::from(healthy));
    }

    /// Counts one probe.
    pub fn probe(&self, cluster: &str, success: bool) {
        let result = if success { "success" } else { "failure" };
        self.probes
            .get_or_create(&ProbeLabels {
                cluster: cluster.to_owned(),
                result,
            })
            .inc();
    }

    /// Counts one ejection.
    pub fn ejected(&self, cluster: &str) {
        self.ejections
            .get_or_create(&ClusterLabels {
                cluster: cluster.to_owned(),
            })
            .inc();
    }

    /// Sets whether a cluster is in panic mode.
    pub fn set_panic(&self, cluster: &str, panic: bool) {
        self.panic
            .get_or_create(&ClusterLabels {
                cluster: cluster.to_owned(),
            })
            .set(i64::from(panic));
    }

    /// One more holder of `labels`' series.
    pub fn hold(&self, labels: &EndpointLabels) {
        let mut owners = self.owners.lock().unwrap_or_else(PoisonError::into_inner);
        *owners.entry(labels.clone()).or_default() += 1;
    }

    /// One holder fewer: the last removes the endpoint's series, and the cluster's once no
    /// endpoint of it is held.
    pub fn release(&self, labels: &EndpointLabels) {
        let mut owners = self.owners.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(count) = owners.get_mut(labels) else {
            return;
        };
        *count -= 1;
        if *count > 0 {
            return;
        }
        owners.remove(labels);
        self.endpoint_healthy.remove(labels);
        if !owners.keys().any(|l| l.cluster == labels.cluster) {
            let cluster = ClusterLabels {
                cluster: labels.cluster.clone(),
            };
            self.ejections.remove(&cluster);
            self.panic.remove(&cluster);
            for result in ["success", "failure"] {
                self.probes.remove(&ProbeLabels {
                    cluster: labels.cluster.clone(),
                    result,
                });
            }
        }
    }
}
