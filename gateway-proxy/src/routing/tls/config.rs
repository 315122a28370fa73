//! Compiles a listener's TLS IR into a rustls `ServerConfig`, once per configuration: every
//! handshake on the listener shares it.

use std::sync::Arc;

use rustls::ServerConfig;
use rustls::sign::CertifiedKey;

use super::certificates::ListenerCertificates;
use super::client_auth;
use gantry_translate::ir::ListenerTlsIr;

/// ALPN protocols offered, most preferred first.
pub const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// The `ServerConfig` of a `Terminate` listener: TLS 1.3 and 1.2, ALPN h2 and http/1.1, the
/// listener's certificates chosen by SNI, and client validation when the Gateway asks.
pub fn server_config(tls: &ListenerTlsIr) -> Result<Arc<ServerConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut certificates = Vec::with_capacity(tls.certificates.len());
    for certificate in &tls.certificates {
        let key = certificate
            .private_key
            .der()
            .ok_or_else(|| format!("Secret {}: unreadable private key", certificate.secret))?;
        let certified = CertifiedKey::from_der(certificate.chain.der(), key, &provider)
            .map_err(|e| format!("Secret {}: {e}", certificate.secret))?;
        certificates.push((Arc::new(certified), certificate.dns_names.clone()));
    }
    if certificates.is_empty() {
        return Err("a Terminate listener without certificates".to_owned());
    }
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())?;
    let builder = match &tls.client_validation {
        Some(validation) => {
            builder.with_client_cert_verifier(client_auth::verifier(validation, &provider)?)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(Arc::new(ListenerCertificates::new(certificates)));
    config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}
