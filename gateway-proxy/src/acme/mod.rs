//! ACME (RFC 8555) certificates for HTTPS listeners: an account and orders against a CA's
//! directory (`client`), what is kept between runs (`store`: a directory, or the cluster), the
//! challenge answers the listeners serve while a CA validates (`challenges`, `http01`,
//! `tls_alpn01`), and the certificate's key and CSR (`key`).
//! What orders certificates for listeners is `crate::acme_manager`, above the source.

pub mod args;
pub mod challenges;
pub mod client;
pub mod http01;
pub mod key;
pub mod schedule;
pub mod store;
pub mod tls_alpn01;

pub use challenges::{Challenges, HTTP01_PREFIX, TLS_ALPN01_PROTOCOL};
pub use client::{AcmeClient, AcmeConfig, AcmeError, ChallengeKind, Issued};
pub use key::KeyType;
pub use store::{AcmeStore, SharedState, StoredCertificate};

/// The ACME issuer (`--acme-*`).
#[derive(Clone, Debug)]
pub struct AcmeOptions {
    pub config: AcmeConfig,
    /// The storage directory (standalone mode; in Kubernetes mode the state is the fleet's
    /// Secret).
    pub dir: Option<std::path::PathBuf>,
    /// How long before expiry a certificate is renewed.
    pub renew_before: std::time::Duration,
}
