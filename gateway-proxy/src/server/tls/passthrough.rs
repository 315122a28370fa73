//! TLS `Passthrough` listeners: where the encrypted stream, ClientHello included, is handed
//! to the L4 forwarder of TLSRoutes.

use tokio::net::TcpStream;

use super::Prefixed;
use crate::server::drain::Watcher;
use crate::server::listener::ConnectionInfo;
use crate::server::{Shared, l4};

/// Forwards a `Passthrough` listener's connection to the TLSRoute serving its SNI: the peeked
/// ClientHello is sent to the backend first, then the rest of the stream, so the backend does
/// the handshake with the client.
pub(super) async fn forward(
    stream: Prefixed<TcpStream>,
    (gateway, listener): (&str, &str),
    sni: Option<&str>,
    info: &ConnectionInfo,
    shared: &Shared,
    drain: Watcher,
) {
    let (hello, socket) = stream.into_parts();
    let conn = l4::TlsConnection {
        port: info.port,
        gateway,
        listener,
        sni,
        peer: info.peer,
        passthrough: true,
    };
    l4::forward_tls(shared, conn, socket, &hello, drain.into_signaled()).await;
}
