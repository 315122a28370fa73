//! Layer-4 forwarding: TCP listeners (TCPRoute), UDP listeners (UDPRoute) and the stream
//! forwarder TLS listeners call for TLSRoute (passthrough and terminate).
//!
//! A connection or UDP session picks its backend with the configuration current when it
//! starts and keeps it: configuration changes never cut an established connection.

mod forward;
mod tcp;
pub(crate) mod udp;

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};

pub use forward::ForwardError;
pub(crate) use tcp::serve_tcp;

use super::Shared;
use crate::ir::PortProtocol;

/// How long a UDP session lives without a datagram in either direction, by default.
pub const DEFAULT_UDP_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// UDP sessions one port keeps at most, by default.
pub const DEFAULT_UDP_MAX_SESSIONS: usize = 16_384;

/// Settings of L4 forwarding.
#[derive(Clone, Debug)]
pub struct L4Options {
    /// A UDP session with no datagram in either direction for this long is closed
    /// (`--udp-session-idle-timeout`).
    pub udp_idle_timeout: Duration,
    /// Datagrams from new clients are dropped while a UDP port has this many sessions
    /// (`--udp-max-sessions`).
    pub udp_max_sessions: usize,
}

impl Default for L4Options {
    fn default() -> Self {
        Self {
            udp_idle_timeout: DEFAULT_UDP_IDLE_TIMEOUT,
            udp_max_sessions: DEFAULT_UDP_MAX_SESSIONS,
        }
    }
}

/// The kind of socket a port binds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Transport {
    /// A listening TCP socket: HTTP, TLS and TCP ports.
    Tcp,
    /// A UDP socket: UDP ports.
    Udp,
}

impl Transport {
    pub fn of(protocol: PortProtocol) -> Self {
        match protocol {
            PortProtocol::Udp => Self::Udp,
            PortProtocol::Http | PortProtocol::Tls | PortProtocol::Tcp => Self::Tcp,
        }
    }
}

/// Which TLS listener a connection was given to, and what it asked for.
#[derive(Clone, Copy, Debug)]
pub struct TlsConnection<'a> {
    /// The port the Gateway listener declares (the IR port).
    pub port: u16,
    /// `namespace/name` of the listener's Gateway.
    pub gateway: &'a str,
    /// The listener's name.
    pub listener: &'a str,
    /// The ClientHello's server name, lower case; `None` when the client sent none.
    pub sni: Option<&'a str>,
    pub peer: std::net::SocketAddr,
}

/// Forwards a connection of a TLS listener to the TLSRoute serving its SNI.
///
/// For a `Passthrough` listener, `client` is the raw TCP stream and `prefix` the bytes already
/// read from it (the ClientHello): they are sent to the backend first, so the backend does the
/// handshake with the client. For a `Terminate` listener, `client` is the decrypted stream and
/// `prefix` is empty: the backend receives plain TCP. A connection no route serves, or one given
/// to an invalid backendRef, is closed.
pub(crate) async fn forward_tls<S>(
    shared: &Shared,
    conn: TlsConnection<'_>,
    client: S,
    prefix: &[u8],
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let snapshot = shared.snapshot.load_full();
    let route = snapshot
        .ports
        .l4
        .port(conn.port)
        .and_then(|t| t.listener(conn.gateway, conn.listener))
        .and_then(|l| l.route_for_sni(conn.sni))
        .cloned();
    let opened = forward::open_backend(&snapshot, &shared.metrics, route.as_deref()).await;
    drop(snapshot);
    let route = route.as_ref().map(|r| &*r.name);
    match opened {
        Ok(upstream) => {
            let (sent, received) = forward::relay(&shared.metrics, client, upstream, prefix).await;
            tracing::debug!(port = conn.port, peer = %conn.peer, sni = conn.sni, route, sent, received, "TLS connection closed");
        }
        Err(error) => {
            tracing::info!(port = conn.port, peer = %conn.peer, sni = conn.sni, route, %error, "TLS connection rejected");
            forward::reject(client).await;
        }
    }
}
