//! The stream forwarder: one client stream to one backend endpoint, bytes copied both ways
//! until both sides have closed.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::routing::Snapshot;
use crate::routing::l4::L4Route;
use crate::telemetry::Metrics;
use crate::telemetry::l4::L4Metrics;

/// How long a backend connection may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

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
}

/// Opens a connection to a backend of `route` chosen by weight, then to an endpoint of it in
/// turn. On failure the connection is counted as rejected; the caller closes the client.
///
/// A connection given to an invalid backendRef, or to a backend with no ready endpoint, is
/// rejected: TCPRoute and TLSRoute `backendRefs` say the implementation "MUST actively reject
/// connection attempts to this backend", in proportion to its weight.
pub async fn open_backend(
    snapshot: &Snapshot,
    metrics: &Metrics,
    route: Option<&L4Route>,
) -> Result<TcpStream, ForwardError> {
    match connect(snapshot, route).await {
        Ok(upstream) => {
            metrics.l4.connections.inc();
            Ok(upstream)
        }
        Err(error) => {
            if matches!(error, ForwardError::Connect { .. }) {
                metrics.upstream_connect_errors.inc();
            }
            metrics.l4.connections_rejected.inc();
            Err(error)
        }
    }
}

/// Copies bytes both ways between `client` and `upstream` until both have closed. `prefix`
/// holds bytes already read from the client (a ClientHello read to find the SNI); they are
/// sent first. Half-closes are passed on: when one side finishes writing, the other side's
/// write half is shut down and the opposite direction keeps flowing. Returns the bytes sent
/// to the backend and to the client.
pub async fn relay<S>(
    metrics: &Metrics,
    mut client: S,
    mut upstream: TcpStream,
    prefix: &[u8],
) -> (u64, u64)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let _active = ActiveConnection::new(&metrics.l4);
    if !prefix.is_empty()
        && let Err(error) = upstream.write_all(prefix).await
    {
        tracing::debug!(%error, "backend closed before the client's first bytes were sent");
        return (0, 0);
    }
    let sent_prefix = prefix.len() as u64;
    match tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
        Ok((to_backend, to_client)) => (to_backend + sent_prefix, to_client),
        Err(error) => {
            // A reset on either side ends the connection; there is nothing to tell the client.
            tracing::debug!(%error, "forwarded connection ended with an error");
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
) -> Result<SocketAddr, ForwardError> {
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
    let endpoint = snapshot
        .cluster(name)
        .and_then(|c| c.pick())
        .ok_or_else(no_endpoint)?;
    endpoint
        .as_str()
        .parse()
        .map_err(|_| ForwardError::Connect {
            endpoint: endpoint.to_string(),
            source: io::Error::new(io::ErrorKind::InvalidInput, "not an IP address and port"),
        })
}

/// Chooses a backend and an endpoint and connects to it.
async fn connect(snapshot: &Snapshot, route: Option<&L4Route>) -> Result<TcpStream, ForwardError> {
    let addr = choose_endpoint(snapshot, route)?;
    let connect_error = |source| ForwardError::Connect {
        endpoint: addr.to_string(),
        source,
    };
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| connect_error(io::Error::new(io::ErrorKind::TimedOut, "timed out")))?
        .map_err(connect_error)?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
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
