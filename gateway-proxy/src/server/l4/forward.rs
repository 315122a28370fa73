//! The stream forwarder: one client stream to one backend endpoint, bytes copied both ways
//! until both sides have closed. Where a BackendTLSPolicy covers the backend and the listener
//! is not a TLS passthrough one, the proxy first completes a verified TLS handshake with the
//! backend, with the same code and settings HTTP requests to that cluster use.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use http::uri::Authority;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::stream::{BackendIo, BackendStream, Counted};
use crate::routing::Snapshot;
use crate::routing::l4::L4Route;
use crate::telemetry::Metrics;
use crate::telemetry::l4::L4Metrics;
use crate::upstream::Cluster;
use crate::upstream::balancer::RequestKey;
use crate::upstream::close::close_both;
use crate::upstream::health::Outcome;
use crate::upstream::in_flight::Slot;
use crate::upstream::limits::{Limit, Overflow};
use crate::upstream::tls;

/// How long a backend connection may take to open (without a BackendConfigPolicy; with one,
/// its `connectTimeout`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the TLS handshake with a backend may take, once connected.
const BACKEND_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether a forwarded connection may originate TLS to its backend.
#[derive(Clone, Copy, Debug)]
pub enum Origination<'a> {
    /// A TLS `Passthrough` listener: the client's own TLS goes to the backend untouched and the
    /// proxy never originates any (GEP-1897, "How a client behaves": TLSRoute on a Passthrough
    /// listener, "Connect to backend with TLS? No"). The translator gives such listeners
    /// plaintext clusters anyway; this keeps a double encryption impossible.
    Never,
    /// TCPRoute and terminated TLSRoute: TLS to a cluster that has TLS settings
    /// (BackendTLSPolicy), presenting the backend client certificate of Gateway `gateway`
    /// (`namespace/name`) when it has one.
    AsConfigured { gateway: &'a str },
}

/// Why a client stream was closed without reaching a backend.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("no route serves this connection")]
    NoRoute,
    #[error("route {route} has no backend with weight")]
    NoBackend { route: String },
    #[error("route {route}: the backendRef chosen for this connection is invalid")]
    InvalidBackend { route: String },
    #[error("cluster {cluster} has no ready endpoint")]
    NoEndpoint { cluster: String },
    #[error("cannot connect to {endpoint}: {source}")]
    Connect { endpoint: String, source: io::Error },
    /// The cluster's circuit breaker `maxConnections` are all open (BackendConfigPolicy); a
    /// connection never waits for one.
    #[error("cluster {cluster}: circuit breaker maxConnections reached")]
    CircuitBreaker { cluster: String },
    #[error("TLS to {endpoint} of cluster {cluster} failed ({reason}): {source}")]
    BackendTls {
        cluster: String,
        endpoint: String,
        /// A short label, as in `gantry_l4_backend_tls_errors_total`.
        reason: &'static str,
        source: io::Error,
    },
}

/// Opens a connection to a backend of `route` chosen by weight, then to an endpoint of it
/// chosen by the cluster's load balancer (in turn without a BackendConfigPolicy; a consistent
/// hash on anything but the client's address chooses at random). The endpoint's in-flight
/// count (least request) comes back with the stream, to be held while the connection lives. On failure the connection is counted as rejected; the caller closes the client.
///
/// A connection given to an invalid backendRef, or to a backend with no ready endpoint, is
/// rejected: TCPRoute and TLSRoute `backendRefs` say the implementation "MUST actively reject
/// connection attempts to this backend", in proportion to its weight.
///
/// A failed TLS handshake with the backend is counted as a connect error (as it is for HTTP
/// requests) and in `l4_backend_tls_errors` by reason; the client is closed, never forwarded
/// in plaintext.
pub async fn open_backend(
    snapshot: &Snapshot,
    metrics: &Metrics,
    route: Option<&L4Route>,
    client: IpAddr,
    origination: Origination<'_>,
) -> Result<(BackendStream, Option<Slot>), ForwardError> {
    match connect(snapshot, route, client, origination).await {
        Ok(upstream) => {
            metrics.l4.connections.inc();
            Ok(upstream)
        }
        Err(error) => {
            match &error {
                ForwardError::Connect { .. } => {
                    metrics.upstream_connect_errors.inc();
                }
                ForwardError::BackendTls { reason, .. } => {
                    metrics.upstream_connect_errors.inc();
                    metrics.l4.backend_tls_error(reason);
                }
                _ => {}
            }
            metrics.l4.connections_rejected.inc();
            Err(error)
        }
    }
}

/// Copies bytes both ways between `client` and `upstream` until both have closed. `prefix`
/// holds bytes already read from the client (a ClientHello read to find the SNI); they are
/// sent first. Half-closes are passed on: when one side finishes writing, the other side's
/// write half is shut down and the opposite direction keeps flowing. When `until` resolves
/// first (the proxy drains), both sides are closed ([`close_both`]). Returns the bytes sent to
/// the backend and to the client (those before a drain's close are not counted).
pub async fn relay<S, U>(
    metrics: &Metrics,
    mut client: S,
    mut upstream: U,
    prefix: &[u8],
    until: impl Future<Output = ()>,
) -> (u64, u64)
where
    S: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let _active = ActiveConnection::new(&metrics.l4);
    if !prefix.is_empty()
        && let Err(error) = upstream.write_all(prefix).await
    {
        tracing::debug!(%error, "backend closed before the client's first bytes were sent");
        return (0, 0);
    }
    let sent_prefix = prefix.len() as u64;
    let copied = tokio::select! {
        copied = tokio::io::copy_bidirectional(&mut client, &mut upstream) => Some(copied),
        () = until => None,
    };
    match copied {
        Some(Ok((to_backend, to_client))) => (to_backend + sent_prefix, to_client),
        Some(Err(error)) => {
            // A reset on either side ends the connection; there is nothing to tell the client.
            tracing::debug!(%error, "forwarded connection ended with an error");
            (sent_prefix, 0)
        }
        None => {
            tracing::debug!("draining: closing a forwarded connection");
            close_both(&mut client, &mut upstream).await;
            (sent_prefix, 0)
        }
    }
}

/// Closes a client whose connection was rejected.
pub async fn reject<S: AsyncWrite + Unpin>(mut client: S) {
    let _ = client.shutdown().await;
}

/// Chooses a backend of `route` by weight, then one of its endpoints, as a socket address.
pub(super) fn choose_endpoint(
    snapshot: &Snapshot,
    route: Option<&L4Route>,
    client: IpAddr,
) -> Result<SocketAddr, ForwardError> {
    choose(snapshot, route, client).map(|chosen| chosen.addr)
}

/// An endpoint chosen for a connection.
struct Chosen<'s> {
    addr: SocketAddr,
    endpoint: &'s Authority,
    cluster: &'s Arc<Cluster>,
    slot: Option<Slot>,
}

/// [`choose_endpoint`], with the endpoint's cluster.
fn choose<'s>(
    snapshot: &'s Snapshot,
    route: Option<&L4Route>,
    client: IpAddr,
) -> Result<Chosen<'s>, ForwardError> {
    let route = route.ok_or(ForwardError::NoRoute)?;
    let backend = route
        .choose_backend()
        .ok_or_else(|| ForwardError::NoBackend {
            route: route.name.to_string(),
        })?;
    let name = backend
        .cluster
        .as_deref()
        .ok_or_else(|| ForwardError::InvalidBackend {
            route: route.name.to_string(),
        })?;
    let no_endpoint = || ForwardError::NoEndpoint {
        cluster: name.to_owned(),
    };
    let cluster = snapshot.cluster(name).ok_or_else(no_endpoint)?;
    let picked = cluster
        .pick_for(&RequestKey::connection(client))
        .ok_or_else(no_endpoint)?;
    let endpoint = picked.endpoint;
    let addr = endpoint
        .as_str()
        .parse()
        .map_err(|_| ForwardError::Connect {
            endpoint: endpoint.to_string(),
            source: io::Error::new(io::ErrorKind::InvalidInput, "not an IP address and port"),
        })?;
    Ok(Chosen {
        addr,
        endpoint,
        cluster,
        slot: picked.slot,
    })
}

/// Chooses a backend and an endpoint and connects to it, over TLS where `origination` allows
/// it and the cluster has TLS settings.
async fn connect(
    snapshot: &Snapshot,
    route: Option<&L4Route>,
    client: IpAddr,
    origination: Origination<'_>,
) -> Result<(BackendStream, Option<Slot>), ForwardError> {
    let Chosen {
        addr,
        endpoint,
        cluster,
        slot,
    } = choose(snapshot, route, client)?;
    let result = open(addr, cluster, slot, origination).await;
    // Outlier detection (BackendConfigPolicy passive health checks) counts connect and TLS
    // handshake failures of TCP and TLS routes as local-origin failures, as Envoy's TCP proxy
    // does; a circuit breaker refusal is not the endpoint's doing.
    match &result {
        Ok(_) => cluster.observe(endpoint, Outcome::Connected),
        Err(ForwardError::Connect { .. } | ForwardError::BackendTls { .. }) => {
            cluster.observe(endpoint, Outcome::LocalFailure);
        }
        Err(_) => {}
    }
    result
}

/// Connects to the chosen endpoint.
async fn open(
    addr: SocketAddr,
    cluster: &Cluster,
    slot: Option<Slot>,
    origination: Origination<'_>,
) -> Result<(BackendStream, Option<Slot>), ForwardError> {
    let endpoint = addr.to_string();
    let tls_error = |reason, source| ForwardError::BackendTls {
        cluster: cluster.name.to_string(),
        endpoint: endpoint.clone(),
        reason,
        source,
    };
    let handshake = match (origination, cluster.tls()) {
        (Origination::AsConfigured { gateway }, Some(tls)) => {
            // Settings that cannot be used fail every connection before one is opened, as for
            // HTTP requests: never plaintext.
            match &tls.clients(gateway).stream {
                Ok(handshake) => Some(handshake),
                Err(why) => {
                    let error = tls::unusable(why, &cluster.name, &endpoint);
                    return Err(tls_error("unusable_settings", error));
                }
            }
        }
        _ => None,
    };
    let connect_error = |source| ForwardError::Connect {
        endpoint: endpoint.clone(),
        source,
    };
    // A cluster with a BackendConfigPolicy: its connect timeout, keepalive and maxConnections.
    let policy = cluster.connection();
    let held = match policy.and_then(|p| Some((p, p.limits()?))) {
        Some((policy, limits)) => match limits.try_acquire() {
            Some(held) => Some(held),
            None => {
                policy.rejected(Overflow {
                    limit: Limit::MaxConnections,
                });
                return Err(ForwardError::CircuitBreaker {
                    cluster: cluster.name.to_string(),
                });
            }
        },
        None => None,
    };
    let stream = match policy {
        Some(policy) => policy.connect_tcp(addr).await.map_err(connect_error)?,
        None => {
            let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
                .await
                .map_err(|_| connect_error(io::Error::new(io::ErrorKind::TimedOut, "timed out")))?
                .map_err(connect_error)?;
            let _ = stream.set_nodelay(true);
            stream
        }
    };
    let counted = policy.map(|policy| Counted::new(held, policy.count_open()));
    let Some(handshake) = handshake else {
        return Ok((BackendStream::new(BackendIo::Plain(stream), counted), slot));
    };
    let connecting = handshake.connect(stream, &cluster.name, &endpoint);
    match tokio::time::timeout(BACKEND_HANDSHAKE_TIMEOUT, connecting).await {
        Ok(Ok(tls)) => Ok((
            BackendStream::new(BackendIo::Tls(Box::new(tls)), counted),
            slot,
        )),
        Ok(Err(error)) => Err(tls_error(tls::failure_reason(&error), error)),
        Err(_) => Err(tls_error(
            "timeout",
            io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"),
        )),
    }
}

/// Counts a forwarded connection in `l4_connections_active` while it lives.
struct ActiveConnection(prometheus_client::metrics::gauge::Gauge);

impl ActiveConnection {
    fn new(metrics: &L4Metrics) -> Self {
        metrics.connections_active.inc();
        Self(metrics.connections_active.clone())
    }
}

impl Drop for ActiveConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}
