//! ACME (RFC 8555) certificates for HTTPS listeners: an account and orders against a CA's
//! directory (`client`), what is kept on disk between runs (`store`), and the challenge
//! answers the listeners serve while a CA validates (`challenges`).

pub mod challenges;
pub mod client;
pub mod schedule;
pub mod store;

pub use challenges::{Challenges, HTTP01_PREFIX, TLS_ALPN01_PROTOCOL};
pub use client::{AcmeClient, AcmeConfig, AcmeError, ChallengeKind, Issued};
pub use store::{AcmeStore, StoredCertificate};
