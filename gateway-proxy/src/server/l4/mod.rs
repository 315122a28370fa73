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
use gantry_translate::ir::PortProtocol;

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

/// Whether the listener `gateway`/`listener` of TLS port `port` is a `TLS` listener, whose
/// terminated connections go to [`forward_tls`] rather than to HTTP.
pub(crate) fn serves_tls_routes(
    snapshot: &crate::routing::Snapshot,
    port: u16,
    gateway: &str,
    listener: &str,
) -> bool {
    snapshot
        .ports
        .l4
        .port(port)
        .and_then(|t| t.listener(gateway, listener))
        .is_some_and(|l| l.serves_tls_routes)
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;
    use crate::routing::Snapshot;
    use crate::server::{DataPlane, DataPlaneOptions};
    use crate::telemetry::Metrics;
    use gantry_translate::ir::{
        ClusterIr, Ir, L4BackendIr, L4RouteIr, ListenerIr, ListenerTlsIr, PortIr, RouteRef,
        TlsModeIr, UpstreamProtocol,
    };
    use gantry_translate::store::ObjectKey;

    /// A data plane whose configuration has TLS port 8443 with listener `tls` routing
    /// `a.example.com` to `backend`, and `invalid.example.com` to an invalid backendRef.
    fn plane(backend: std::net::SocketAddr) -> DataPlane {
        let route = |name: &str, host: &str, cluster: Option<&str>| L4RouteIr {
            route: RouteRef {
                kind: "TLSRoute".into(),
                namespace: "ns".into(),
                name: name.into(),
            },
            hostnames: vec![host.into()],
            backends: vec![L4BackendIr {
                weight: 1,
                cluster: cluster.map(Into::into),
            }],
        };
        let ir = Ir {
            ports: vec![PortIr {
                port: 8443,
                protocol: PortProtocol::Tls,
                listeners: vec![ListenerIr {
                    gateway: ObjectKey::new("ns", "gw"),
                    name: "tls".into(),
                    hostname: None,
                    virtual_hosts: vec![],
                    tls: Some(Arc::new(ListenerTlsIr {
                        mode: TlsModeIr::Passthrough,
                        certificates: vec![],
                        client_validation: None,
                    })),
                    l4_routes: vec![
                        route("a", "a.example.com", Some("ns/a:443")),
                        route("broken", "invalid.example.com", None),
                    ],
                    serves_tls_routes: true,
                    listener_set: None,
                }],
            }],
            clusters: BTreeMap::from([(
                "ns/a:443".to_owned(),
                ClusterIr {
                    name: "ns/a:443".into(),
                    service: ObjectKey::new("ns", "a"),
                    port: 443,
                    protocol: UpstreamProtocol::Http1,
                    endpoints: vec![backend.to_string()],
                    tls: None,
                    retry_budget: None,
                    backend_config: None,
                },
            )]),
        };
        let metrics = Arc::new(Metrics::new());
        let plane = DataPlane::new(
            DataPlaneOptions {
                bind_address: std::net::Ipv4Addr::LOCALHOST.into(),
                port_offset: 0,
                drain_timeout: Duration::from_secs(1),
                access_log: false,
                l4: L4Options::default(),
                http: Default::default(),
                connections: Default::default(),
            },
            metrics.clone(),
        );
        let snapshot = Snapshot::compile(Arc::new(ir), 1, &metrics, None).unwrap();
        plane.shared.snapshot.store(Arc::new(snapshot));
        plane
    }

    fn conn<'a>(sni: Option<&'a str>) -> TlsConnection<'a> {
        TlsConnection {
            port: 8443,
            gateway: "ns/gw",
            listener: "tls",
            sni,
            peer: "127.0.0.1:1".parse().unwrap(),
        }
    }

    /// Passthrough: the bytes already read (the ClientHello) reach the backend first, then the
    /// rest of the stream, and the backend's answer comes back.
    #[tokio::test]
    async fn forward_tls_sends_the_bytes_already_read_first() {
        let backend = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let plane = plane(backend.local_addr().unwrap());
        let (client, mut far_end) = tokio::io::duplex(1024);
        let forward = tokio::spawn(async move {
            forward_tls(
                &plane.shared,
                conn(Some("a.example.com")),
                client,
                b"HELLO ",
            )
            .await;
            plane
        });
        let (mut upstream, _) = backend.accept().await.unwrap();
        far_end.write_all(b"world").await.unwrap();
        far_end.shutdown().await.unwrap();
        let mut got = Vec::new();
        upstream.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"HELLO world");
        upstream.write_all(b"reply").await.unwrap();
        upstream.shutdown().await.unwrap();
        let mut reply = Vec::new();
        far_end.read_to_end(&mut reply).await.unwrap();
        assert_eq!(reply, b"reply");
        let plane = forward.await.unwrap();
        assert_eq!(plane.shared.metrics.l4.connections.get(), 1);
    }

    /// No route for the SNI, or an invalid backendRef: the client is closed and the
    /// rejection counted.
    #[tokio::test]
    async fn forward_tls_closes_what_no_valid_backend_serves() {
        let backend = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let plane = plane(backend.local_addr().unwrap());
        for sni in [Some("other.example.com"), None, Some("invalid.example.com")] {
            let (client, mut far_end) = tokio::io::duplex(1024);
            forward_tls(&plane.shared, conn(sni), client, b"HELLO").await;
            let mut got = Vec::new();
            far_end.read_to_end(&mut got).await.unwrap();
            assert!(got.is_empty(), "{sni:?}");
        }
        assert_eq!(plane.shared.metrics.l4.connections_rejected.get(), 3);
        assert_eq!(plane.shared.metrics.l4.connections.get(), 0);
    }
}
