//! Kubernetes mode's metrics: watch relists and errors per kind, status writes per kind and
//! result, and whether this replica leads. Families only get series once used, so standalone
//! mode exports none of them.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Labels of per-kind watch series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// `HTTPRoute`, `Secret`, ...
    pub kind: String,
}

/// What became of one status the writer looked at.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)] // label values, as Prometheus shows them
pub enum WriteResult {
    /// The status differed from the live object and was written.
    written,
    /// The live object already had it; nothing was sent.
    unchanged,
    /// A write met a concurrent change (`409 Conflict`); the object was read again and the
    /// write retried.
    conflict_retried,
    /// The write failed (an API error, or conflicts on every attempt); retried later.
    failed,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WriteLabels {
    pub kind: String,
    pub result: WriteResult,
}

/// What one pass of the status writer's loop did.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)] // label values, as Prometheus shows them
pub enum ReconcileOutcome {
    /// Every status it looked at is settled (written or already live).
    ok,
    /// Some writes failed; the pass is retried.
    failed,
    /// Statuses or objects changed while another replica leads: nothing was looked at.
    not_leader,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReconcileLabels {
    pub outcome: ReconcileOutcome,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LeaseLabels {
    /// `namespace/name` of the Lease.
    pub lease: String,
}

/// Cheap to clone: clones share the series.
#[derive(Clone, Debug, Default)]
pub struct KubeMetrics {
    relists: Family<KindLabels, Counter>,
    watch_errors: Family<KindLabels, Counter>,
    status_writes: Family<WriteLabels, Counter>,
    status_reconciles: Family<ReconcileLabels, Counter>,
    leader: Family<LeaseLabels, Gauge>,
}

impl KubeMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "kube_relists",
            "Complete lists of a kind (the first one, then each relist after 410 Gone or a watch that could not resume)",
            self.relists.clone(),
        );
        registry.register(
            "kube_watch_errors",
            "Failed list or watch requests of a kind; each restarts the watch after a backoff",
            self.watch_errors.clone(),
        );
        registry.register(
            "kube_status_writes",
            "Statuses the writer settled, by kind and result (written, unchanged, conflict_retried, failed)",
            self.status_writes.clone(),
        );
        registry.register(
            "kube_status_reconciles",
            "Passes of the status writer over changed statuses or objects, by outcome (ok, failed, not_leader)",
            self.status_reconciles.clone(),
        );
        registry.register(
            "kube_leader",
            "1 while this replica holds the Lease and writes status, 0 otherwise",
            self.leader.clone(),
        );
    }

    pub fn relisted(&self, kind: &str) {
        self.relists.get_or_create(&kind_labels(kind)).inc();
    }

    pub fn watch_failed(&self, kind: &str) {
        self.watch_errors.get_or_create(&kind_labels(kind)).inc();
    }

    pub fn status_write(&self, kind: &str, result: WriteResult) {
        let labels = WriteLabels {
            kind: kind.to_owned(),
            result,
        };
        self.status_writes.get_or_create(&labels).inc();
    }

    pub fn status_reconciled(&self, outcome: ReconcileOutcome) {
        self.status_reconciles
            .get_or_create(&ReconcileLabels { outcome })
            .inc();
    }

    pub fn leading(&self, lease: &str, leading: bool) {
        let labels = LeaseLabels {
            lease: lease.to_owned(),
        };
        self.leader.get_or_create(&labels).set(i64::from(leading));
    }
}

fn kind_labels(kind: &str) -> KindLabels {
    KindLabels {
        kind: kind.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::Metrics;

    #[test]
    fn kubernetes_series_show_up_only_once_used() {
        let kube = KubeMetrics::default();
        let metrics = Metrics::with(|registry| kube.register(registry));
        assert!(!metrics.encode().contains("gantry_kube_relists_total{"));
        kube.relisted("HTTPRoute");
        kube.watch_failed("Service");
        kube.status_write("HTTPRoute", WriteResult::conflict_retried);
        kube.leading("ns/lease", true);
        let text = metrics.encode();
        for line in [
            r#"gantry_kube_relists_total{kind="HTTPRoute"} 1"#,
            r#"gantry_kube_watch_errors_total{kind="Service"} 1"#,
            r#"gantry_kube_status_writes_total{kind="HTTPRoute",result="conflict_retried"} 1"#,
            r#"gantry_kube_leader{lease="ns/lease"} 1"#,
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
    }
}
