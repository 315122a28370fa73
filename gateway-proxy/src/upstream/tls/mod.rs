//! TLS to backends: one rustls client configuration per TLS cluster (and per Gateway client
//! certificate), built when a configuration is compiled, never per request and never per
//! connection. HTTP requests use its pooled clients; TCPRoute and terminated TLSRoute
//! connections use its [`TlsClients::stream`] handshake.
//!
//! Each configuration gets its own pooled client, so a connection verified under one
//! policy is never reused under another, and a TLS cluster's pool is kept across
//! configuration swaps as long as its settings do not change. Plaintext pools are separate
//! and untouched by any of this. A cluster that a BackendConfigPolicy governs builds its TLS
//! clients with the policy's connection settings (`super::connect`), and keeps them while both
//! its TLS and its connection settings stay.

mod connector;
mod roots;
mod verifier;

use std::collections::HashMap;
use std::sync::Arc;

use http::uri::Scheme;
use rustls::ClientConfig;
use rustls::client::WebPkiServerVerifier;
use rustls_pki_types::ServerName;

pub use self::connector::{Handshake, TlsConnection, TlsConnector, failure_reason, unusable};
pub use self::roots::root_store;
pub use self::verifier::SubjectAltNameVerifier;
use super::connect::ConnectionPolicy;
use super::counted::Counted;
use super::{Http1Pool, Http2Pool, POOL_IDLE_TIMEOUT, http_connector};
use gantry_translate::ir::{CertificateIr, UpstreamTlsIr};

/// ALPN protocol IDs.
const ALPN_H2: &[u8] = b"h2";
const ALPN_HTTP1: &[u8] = b"http/1.1";

/// The pooled clients of one TLS cluster.
#[derive(Debug)]
pub struct TlsUpstream {
    /// What it was built from: a new configuration with the same settings reuses it.
    ir: Arc<UpstreamTlsIr>,
    /// The connection settings it was built with, when a policy governs the cluster.
    policy: Option<Arc<ConnectionPolicy>>,
    /// For Gateways that present no client certificate.
    anonymous: TlsClients,
    /// By Gateway (`namespace/name`), for those that present one.
    by_gateway: HashMap<String, TlsClients>,
}

/// Clients sharing one verification and client identity.
#[derive(Clone, Debug)]
pub struct TlsClients {
    /// ALPN `http/1.1`: HTTP/1.1 requests, including upgrades.
    pub http1: Http1Pool<Counted<TlsConnector>>,
    /// ALPN `h2`, HTTP/2 only: requests to a port that speaks HTTP/2 (`appProtocol:
    /// kubernetes.io/h2c`) and gRPC.
    pub h2: Http2Pool<Counted<TlsConnector>>,
    /// The cluster's connection settings, when a policy governs it.
    pub policy: Option<Arc<ConnectionPolicy>>,
    /// No ALPN: the connections of TCPRoutes and terminated TLSRoutes, whose bytes are opaque
    /// (the Gateway API defines no ALPN for them). Not pooled: one handshake per connection.
    pub stream: Result<Handshake, Arc<str>>,
}

impl TlsUpstream {
    /// Builds the clients of cluster `name`. Never fails: settings that cannot be turned
    /// into a configuration make every connection fail with the reason logged.
    /// With `policy`, connections follow its settings; without, the proxy's defaults.
    pub fn build(
        name: &str,
        ir: &Arc<UpstreamTlsIr>,
        policy: Option<&Arc<ConnectionPolicy>>,
    ) -> Self {
        let cluster: Arc<str> = Arc::from(name);
        let clients = |certificate: Option<&CertificateIr>| {
            TlsClients::build(&cluster, ir, certificate, policy)
        };
        Self {
            ir: ir.clone(),
            policy: policy.cloned(),
            anonymous: clients(None),
            by_gateway: ir
                .client_certificates
                .iter()
                .map(|(gateway, cert)| (gateway.clone(), clients(Some(cert))))
                .collect(),
        }
    }

    /// True when this was built from exactly these settings (the same connection policy, or
    /// none).
    pub fn is_built_from(
        &self,
        ir: &UpstreamTlsIr,
        policy: Option<&Arc<ConnectionPolicy>>,
    ) -> bool {
        *self.ir == *ir
            && match (&self.policy, policy) {
                (None, None) => true,
                (Some(mine), Some(theirs)) => Arc::ptr_eq(mine, theirs),
                _ => false,
            }
    }

    /// The settings this was built from.
    pub fn built_from(&self) -> &UpstreamTlsIr {
        &self.ir
    }

    /// The clients for requests that came through `gateway` (`namespace/name`).
    pub fn clients(&self, gateway: &str) -> &TlsClients {
        self.by_gateway.get(gateway).unwrap_or(&self.anonymous)
    }
}

impl TlsClients {
    fn build(
        cluster: &Arc<str>,
        ir: &UpstreamTlsIr,
        certificate: Option<&CertificateIr>,
        policy: Option<&Arc<ConnectionPolicy>>,
    ) -> Self {
        let base = ServerName::try_from(ir.sni.clone())
            .map_err(|e| format!("hostname {:?} cannot be sent as SNI: {e}", ir.sni))
            .and_then(|name| Ok((client_config(ir, certificate)?, name)))
            .map_err(|why| {
                tracing::warn!(%cluster, policy = %ir.policy, reason = %why, "backend TLS settings cannot be used; connections to this cluster will fail");
                Arc::<str>::from(why)
            });
        let handshake = |alpn: &[&[u8]]| {
            base.clone().map(|(config, server_name)| {
                let mut config = config.clone();
                config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
                Handshake {
                    config: Arc::new(config),
                    server_name,
                }
            })
        };
        let connector = |alpn: &[u8]| {
            let settings = handshake(&[alpn]);
            let mut http = policy.map_or_else(http_connector, |p| p.http_connector());
            http.enforce_http(false);
            Counted::new(
                TlsConnector::new(http, settings, cluster.clone()),
                policy.cloned(),
            )
        };
        let (http1, h2) = match policy {
            Some(policy) => (
                Http1Pool::with_policy(connector(ALPN_HTTP1), Scheme::HTTPS, policy.clone()),
                Http2Pool::with_policy(connector(ALPN_H2), Scheme::HTTPS, policy.clone()),
            ),
            None => (
                Http1Pool::new(connector(ALPN_HTTP1), Scheme::HTTPS, POOL_IDLE_TIMEOUT),
                Http2Pool::new(connector(ALPN_H2), Scheme::HTTPS, POOL_IDLE_TIMEOUT),
            ),
        };
        Self {
            http1,
            h2,
            stream: handshake(&[]),
            policy: policy.cloned(),
        }
    }
}

/// The client configuration for `ir`, presenting `certificate` when given.
fn client_config(
    ir: &UpstreamTlsIr,
    certificate: Option<&CertificateIr>,
) -> Result<ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let roots = roots::root_store(&ir.trust)?;
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = if ir.subject_alt_names.is_empty() {
        // Hostname "MUST be used for authentication and MUST match the certificate served
        // by the matching backend": webpki's own verifier does exactly that.
        let verifier = WebPkiServerVerifier::builder_with_provider(roots, provider)
            .build()
            .map_err(|e| format!("cannot verify backend certificates: {e}"))?;
        builder.with_webpki_verifier(verifier)
    } else {
        let verifier = SubjectAltNameVerifier::new(roots, ir.subject_alt_names.clone(), provider);
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
    };
    match certificate {
        None => Ok(builder.with_no_client_auth()),
        Some(cert) => {
            let chain = cert.chain.der();
            let key = cert
                .private_key
                .der()
                .ok_or_else(|| format!("client key from Secret {} is not PEM", cert.secret))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("client certificate from Secret {}: {e}", cert.secret))
        }
    }
}
