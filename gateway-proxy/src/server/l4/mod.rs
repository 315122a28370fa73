//! Layer-4 forwarding: TCP listeners (TCPRoute), UDP listeners (UDPRoute) and the stream
//! forwarder TLS listeners call for TLSRoute (passthrough and terminate).
//!
//! A connection or UDP session picks its backend with the configuration current when it
//! starts and keeps it: configuration changes never cut an established connection.

mod forward;
mod stream;
mod tcp;
pub(crate) mod udp;

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};

pub use forward::{ForwardError, Origination};
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
    /// A `Passthrough` listener: the proxy never originates TLS to the backend.
    pub passthrough: bool,
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
/// handshake with the client, and the proxy never originates TLS. For a `Terminate` listener,
/// `client` is the decrypted stream and `prefix` is empty: the backend receives the bytes over
/// plain TCP, or over TLS the proxy originates where a BackendTLSPolicy covers it (GEP-2643:
/// "On a terminated TLSRoute, a BackendTLSPolicy can be used to re-encrypt the traffic to
/// backends"). A connection no route serves, one given to an invalid backendRef, and one whose
/// TLS to the backend fails are closed. Draining (`until`) closes the connection.
pub(crate) async fn forward_tls<S>(
    shared: &Shared,
    conn: TlsConnection<'_>,
    client: S,
    prefix: &[u8],
    until: impl Future<Output = ()>,
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
    let origination = if conn.passthrough {
        Origination::Never
    } else {
        Origination::AsConfigured {
            gateway: conn.gateway,
        }
    };
    let opened = forward::open_backend(
        &snapshot,
        &shared.metrics,
        route.as_deref(),
        conn.peer.ip(),
        origination,
    )
    .await;
    drop(snapshot);
    let route = route.as_ref().map(|r| &*r.name);
    match opened {
        Ok((upstream, _in_flight)) => {
            let (sent, received) =
                forward::relay(&shared.metrics, client, upstream, prefix, until).await;
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
        plane_with(backend, None)
    }

    /// [`plane`], with `tls` as the cluster's BackendTLSPolicy settings.
    fn plane_with(
        backend: std::net::SocketAddr,
        tls: Option<Arc<gantry_translate::ir::UpstreamTlsIr>>,
    ) -> DataPlane {
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
                    tls,
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
            passthrough: true,
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
                std::future::pending(),
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

    /// BackendTLSPolicy settings verifying `backend.internal` against `ca`.
    fn policy(ca: &gantry_testkit::certs::Ca) -> Arc<gantry_translate::ir::UpstreamTlsIr> {
        use gantry_translate::ir::{PemCertificates, TrustIr, UpstreamTlsIr};
        Arc::new(UpstreamTlsIr {
            policy: ObjectKey::new("ns", "policy"),
            sni: "backend.internal".into(),
            subject_alt_names: Vec::new(),
            trust: TrustIr::CaCertificates {
                sources: vec![ObjectKey::new("ns", "ca")],
                certificates: PemCertificates(ca.cert_pem.clone()),
            },
            client_certificates: BTreeMap::new(),
        })
    }

    /// A terminated connection to a cluster with TLS settings: the proxy completes a verified
    /// handshake with the policy's SNI and no ALPN, and the bytes flow over it both ways.
    #[tokio::test]
    async fn forward_tls_originates_tls_where_the_cluster_has_settings() {
        use gantry_testkit::stream_echo::{TlsBackend, TlsGreeting, spawn_tls_backend};
        let ca = gantry_testkit::certs::Ca::new("backend CA");
        let leaf = ca.server(&["backend.internal"]);
        let (backend, _task) = spawn_tls_backend(TlsBackend {
            name: "secure",
            leaf: &leaf,
            client_ca: None,
            require_sni: Some("backend.internal"),
        })
        .await;
        let plane = plane_with(backend, Some(policy(&ca)));
        let (client, far_end) = tokio::io::duplex(1024);
        let forward = tokio::spawn(async move {
            let conn = TlsConnection {
                passthrough: false,
                ..conn(Some("a.example.com"))
            };
            forward_tls(&plane.shared, conn, client, &[], std::future::pending()).await;
            plane
        });
        let mut far_end = tokio::io::BufReader::new(far_end);
        let mut line = String::new();
        tokio::io::AsyncBufReadExt::read_line(&mut far_end, &mut line)
            .await
            .unwrap();
        let greeting = TlsGreeting::parse(&line).expect("a greeting");
        assert_eq!(greeting.name, "secure");
        assert_eq!(greeting.tls.sni.as_deref(), Some("backend.internal"));
        assert_eq!(greeting.tls.alpn, None, "no ALPN for opaque bytes");
        far_end.get_mut().write_all(b"ping").await.unwrap();
        far_end.get_mut().shutdown().await.unwrap();
        let mut echoed = Vec::new();
        far_end.read_to_end(&mut echoed).await.unwrap();
        assert_eq!(echoed, b"ping", "half-close reaches the backend over TLS");
        let plane = forward.await.unwrap();
        assert_eq!(plane.shared.metrics.l4.connections.get(), 1);
    }

    /// A backend whose certificate does not chain to the policy's CA: the client is closed,
    /// and the metrics say why.
    #[tokio::test]
    async fn forward_tls_closes_the_client_when_the_backend_does_not_verify() {
        use gantry_testkit::stream_echo::{TlsBackend, spawn_tls_backend};
        let ca = gantry_testkit::certs::Ca::new("backend CA");
        let other = gantry_testkit::certs::Ca::new("another CA");
        let leaf = other.server(&["backend.internal"]);
        let (backend, _task) = spawn_tls_backend(TlsBackend {
            name: "impostor",
            leaf: &leaf,
            client_ca: None,
            require_sni: None,
        })
        .await;
        let plane = plane_with(backend, Some(policy(&ca)));
        let (client, mut far_end) = tokio::io::duplex(1024);
        let conn = TlsConnection {
            passthrough: false,
            ..conn(Some("a.example.com"))
        };
        forward_tls(&plane.shared, conn, client, &[], std::future::pending()).await;
        let mut got = Vec::new();
        far_end.read_to_end(&mut got).await.unwrap();
        assert!(got.is_empty());
        let metrics = &plane.shared.metrics;
        assert_eq!(metrics.l4.connections_rejected.get(), 1);
        assert_eq!(metrics.l4.backend_tls_errors("unknown_issuer"), 1);
        assert_eq!(metrics.upstream_connect_errors.get(), 1);
    }

    /// A passthrough listener never originates TLS, even to a cluster with TLS settings: the
    /// client's bytes (its own ClientHello first) reach the backend as they are.
    #[tokio::test]
    async fn forward_tls_never_originates_tls_for_passthrough() {
        let ca = gantry_testkit::certs::Ca::new("backend CA");
        let backend = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let plane = plane_with(backend.local_addr().unwrap(), Some(policy(&ca)));
        let (client, mut far_end) = tokio::io::duplex(1024);
        let forward = tokio::spawn(async move {
            forward_tls(
                &plane.shared,
                conn(Some("a.example.com")),
                client,
                b"HELLO ",
                std::future::pending(),
            )
            .await;
        });
        let (mut upstream, _) = backend.accept().await.unwrap();
        far_end.write_all(b"world").await.unwrap();
        far_end.shutdown().await.unwrap();
        let mut got = Vec::new();
        upstream.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"HELLO world");
        drop(upstream);
        forward.await.unwrap();
    }

    /// No route for the SNI, or an invalid backendRef: the client is closed and the
    /// rejection counted.
    #[tokio::test]
    async fn forward_tls_closes_what_no_valid_backend_serves() {
        let backend = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let plane = plane(backend.local_addr().unwrap());
        for sni in [Some("other.example.com"), None, Some("invalid.example.com")] {
            let (client, mut far_end) = tokio::io::duplex(1024);
            forward_tls(
                &plane.shared,
                conn(sni),
                client,
                b"HELLO",
                std::future::pending(),
            )
            .await;
            let mut got = Vec::new();
            far_end.read_to_end(&mut got).await.unwrap();
            assert!(got.is_empty(), "{sni:?}");
        }
        assert_eq!(plane.shared.metrics.l4.connections_rejected.get(), 3);
        assert_eq!(plane.shared.metrics.l4.connections.get(), 0);
    }
}
