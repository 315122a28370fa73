//! TLS `Passthrough` listeners: where the encrypted stream, ClientHello included, is handed
//! to the L4 forwarder of TLSRoutes.

use tokio::net::TcpStream;

use super::{Prefixed, TlsListener};
use crate::server::Shared;
use crate::server::listener::ConnectionInfo;

/// Extension point for TLSRoute passthrough: `stream` replays the peeked ClientHello first
/// ([`Prefixed::into_parts`] gives the bytes and the socket to a forwarder that copies
/// both). No forwarder exists yet, so the connection is closed with a log line.
pub(super) async fn forward(
    stream: Prefixed<TcpStream>,
    listener: &TlsListener,
    info: &ConnectionInfo,
    shared: &Shared,
) {
    shared
        .metrics
        .tls_handshake_error(info.port, "passthrough_not_served");
    tracing::warn!(
        port = info.port,
        peer = %info.peer,
        gateway = %listener.gateway,
        listener = %listener.name,
        "TLS passthrough is not served yet; connection closed"
    );
    drop(stream);
}
