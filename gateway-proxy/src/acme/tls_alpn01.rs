//! The TLS-ALPN-01 answer (RFC 8737) a TLS port gives a validation handshake: one offering
//! only the `acme-tls/1` protocol.

use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::{Challenges, TLS_ALPN01_PROTOCOL};

/// How long the CA's validation handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A validation handshake: RFC 8737 §3, "the ACME server … MUST provide an ALPN extension
/// with the single protocol name `acme-tls/1`".
pub fn is_validation(alpn: &[Vec<u8>]) -> bool {
    matches!(alpn, [only] if only == TLS_ALPN01_PROTOCOL)
}

#[derive(Debug)]
struct ChallengeCertificate(Arc<CertifiedKey>);

impl ResolvesServerCert for ChallengeCertificate {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// Completes the handshake with the challenge certificate for `server_name` and closes: no
/// application data is exchanged (RFC 8737 §3). Fails when no challenge is pending for the
/// name.
pub async fn answer<S>(
    stream: S,
    server_name: Option<&str>,
    challenges: &Challenges,
) -> Result<(), String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let name = server_name.ok_or("a TLS-ALPN-01 handshake without SNI")?;
    let certificate = challenges
        .tls_alpn01_cert(name)
        .ok_or_else(|| format!("no TLS-ALPN-01 challenge pending for {name}"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    // RFC 8737 §4: TLS 1.2 or later.
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(ChallengeCertificate(certificate)));
    config.alpn_protocols = vec![TLS_ALPN01_PROTOCOL.to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let mut tls = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream))
        .await
        .map_err(|_| "the TLS-ALPN-01 handshake timed out".to_owned())?
        .map_err(|e| e.to_string())?;
    let _ = tls.shutdown().await;
    Ok(())
}
