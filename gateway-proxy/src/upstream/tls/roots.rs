//! Trust anchors of a TLS cluster: the policy's CA bundle, or the system trust store.
//!
//! `wellKnownCACertificates: System` means the operating system's store, as the GEP intends
//! ("these certificates are obtained from the underlying operating system"): it is read with
//! `rustls-native-certs` (which also honours `SSL_CERT_FILE` and `SSL_CERT_DIR`), once per
//! process, when the first configuration that needs it is compiled.

use std::sync::{Arc, OnceLock};

use rustls::RootCertStore;

use gantry_translate::ir::TrustIr;

/// The root store for `trust`, or why there is none (every handshake then fails).
pub fn root_store(trust: &TrustIr) -> Result<Arc<RootCertStore>, String> {
    match trust {
        TrustIr::CaCertificates {
            certificates,
            sources,
        } => {
            let mut roots = RootCertStore::empty();
            for cert in certificates.der() {
                roots
                    .add(cert)
                    .map_err(|e| format!("CA certificate is not usable: {e}"))?;
            }
            if roots.is_empty() {
                let names: Vec<String> = sources.iter().map(ToString::to_string).collect();
                return Err(format!(
                    "no CA certificate in ConfigMaps {}",
                    names.join(", ")
                ));
            }
            Ok(Arc::new(roots))
        }
        TrustIr::System => system().clone(),
    }
}

/// The system trust store, read once.
fn system() -> &'static Result<Arc<RootCertStore>, String> {
    static SYSTEM: OnceLock<Result<Arc<RootCertStore>, String>> = OnceLock::new();
    SYSTEM.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        for error in &found.errors {
            tracing::warn!(%error, "a system CA certificate could not be read");
        }
        let mut roots = RootCertStore::empty();
        let (added, ignored) = roots.add_parsable_certificates(found.certs);
        tracing::info!(added, ignored, "system CA certificates loaded");
        if roots.is_empty() {
            Err("no system CA certificates were found (looked in the operating system's trust store, SSL_CERT_FILE and SSL_CERT_DIR); install them (e.g. the ca-certificates package) or use caCertificateRefs".to_owned())
        } else {
            Ok(Arc::new(roots))
        }
    })
}
