//! ACME (RFC 8555) certificates for HTTPS listeners: an account and orders against a CA's
//! directory (`client`), what is kept on disk between runs (`store`), and the challenge
//! answers the listeners serve while a CA validates (`challenges`).

pub mod args;
pub mod challenges;
pub mod client;
pub mod http01;
pub mod manager;
pub mod schedule;
pub mod store;
pub mod tls_alpn01;

pub use challenges::{Challenges, HTTP01_PREFIX, TLS_ALPN01_PROTOCOL};
pub use client::{AcmeClient, AcmeConfig, AcmeError, ChallengeKind, Issued};
pub use manager::{AcmeOptions, Manager};
pub use store::{AcmeStore, StoredCertificate};
