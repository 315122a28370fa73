//! Listener TLS compiled with the snapshot: per TLS port, the listeners by SNI hostname, each
//! with its rustls `ServerConfig` (certificates chosen by SNI, client-certificate validation).
//!
//! Compiled off the hot path with the rest of the [`Snapshot`](super::Snapshot); a listener whose
//! TLS settings did not change keeps its configuration, so a rotated certificate is used by the
//! next handshake and nothing else is rebuilt. `server::tls` performs the handshakes.

mod certificates;
mod client_auth;
mod config;
mod table;

pub use table::{TlsAction, TlsListener, TlsPort, TlsPorts};
