//! ACME: `gantry_acme_orders_total{result}` (`issued`, `failed`) and
//! `gantry_acme_certificate_expiry_timestamp_seconds{secret,hostname}`, the `notAfter` of
//! each certificate the ACME client manages, so an alert fires when renewal keeps failing.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OrderLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ExpiryLabels {
    /// `namespace/name` of the listener's certificate Secret.
    secret: String,
    hostname: String,
}

/// The ACME families. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct AcmeMetrics {
    orders: Family<OrderLabels, Counter>,
    expiry: Family<ExpiryLabels, Gauge>,
}

impl AcmeMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "acme_orders",
            "ACME orders finished, by result (issued, failed)",
            metrics.orders.clone(),
        );
        registry.register(
            "acme_certificate_expiry_timestamp_seconds",
            "notAfter of each certificate obtained by ACME, in seconds since the Unix epoch, by \
             secret and hostname",
            metrics.expiry.clone(),
        );
        metrics
    }

    pub fn order_finished(&self, issued: bool) {
        let result = if issued { "issued" } else { "failed" };
        self.orders.get_or_create(&OrderLabels { result }).inc();
    }

    pub fn set_expiry(&self, secret: &str, hostname: &str, not_after: i64) {
        self.expiry
            .get_or_create(&ExpiryLabels {
                secret: secret.to_owned(),
                hostname: hostname.to_owned(),
            })
            .set(not_after);
    }

    pub fn remove_expiry(&self, secret: &str, hostname: &str) {
        self.expiry.remove(&ExpiryLabels {
            secret: secret.to_owned(),
            hostname: hostname.to_owned(),
        });
    }
}
