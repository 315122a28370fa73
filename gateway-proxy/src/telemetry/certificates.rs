//! `gantry_listener_certificate_expiry_timestamp_seconds{gateway,listener,secret}`: the
//! `notAfter` of every certificate a listener serves, set from each configuration applied, so
//! an alert can fire well before a certificate (from a Secret, cert-manager or a file) expires.
//! A certificate no listener serves any more loses its series.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use gantry_translate::ir::Ir;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CertificateLabels {
    /// `namespace/name` of the Gateway.
    gateway: String,
    listener: String,
    /// `namespace/name` of the Secret.
    secret: String,
}

/// The gauge family. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct CertificateMetrics {
    expiry: Family<CertificateLabels, Gauge>,
}

impl CertificateMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "listener_certificate_expiry_timestamp_seconds",
            "notAfter of each certificate a listener serves, in seconds since the Unix epoch, by \
             gateway, listener and secret",
            metrics.expiry.clone(),
        );
        metrics
    }

    /// Replaces the series with the certificates of `ir`'s listeners (once per configuration
    /// applied, never per request).
    pub fn observe(&self, ir: &Ir) {
        self.expiry.clear();
        let listeners = ir.ports.iter().flat_map(|p| &p.listeners);
        for listener in listeners {
            let Some(tls) = &listener.tls else { continue };
            for certificate in &tls.certificates {
                self.expiry
                    .get_or_create(&CertificateLabels {
                        gateway: listener.gateway.to_string(),
                        listener: listener.name.clone(),
                        secret: certificate.secret.to_string(),
                    })
                    .set(certificate.not_after);
            }
        }
    }
}
