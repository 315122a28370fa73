//! UDP listeners: one session per client address, each with its own upstream socket, closed
//! after an idle timeout.
//!
//! One task owns the listening socket and the session map, so the map needs no lock: it
//! receives client datagrams, creates sessions and forwards to their upstream sockets. Each
//! session has a task that relays the backend's replies to the client through the listening
//! socket and ends the session when nothing moved in either direction for the idle timeout.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::forward::{ForwardError, choose_endpoint};
use crate::routing::Snapshot;
use crate::server::Shared;
use crate::telemetry::l4::L4Metrics;

/// Largest UDP payload.
const MAX_DATAGRAM: usize = 65_535;

/// Binds a UDP socket with SO_REUSEADDR, like the TCP listeners.
pub fn bind(addr: SocketAddr) -> io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    UdpSocket::from_std(socket.into())
}

/// One client's session.
struct Session {
    /// Tells this session from a later one of the same client.
    id: u64,
    /// `None` when the session's connection was given to an invalid backendRef: its datagrams
    /// are dropped until it expires or the configuration changes.
    upstream: Option<Arc<UdpSocket>>,
    /// The configuration version the session was opened with.
    version: u64,
    activity: Arc<Activity>,
    relay: JoinHandle<()>,
    active: prometheus_client::metrics::gauge::Gauge,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.relay.abort();
        self.active.dec();
    }
}

/// When a session last moved a datagram, in milliseconds since the listener started.
struct Activity {
    start: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn new(start: Instant) -> Self {
        let activity = Self {
            start,
            last_ms: AtomicU64::new(0),
        };
        activity.touch();
        activity
    }

    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn idle_deadline(&self, idle: Duration) -> Instant {
        self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed)) + idle
    }
}

/// Receives datagrams on `socket` until `stopped`, then closes every session.
pub(crate) async fn run(
    socket: UdpSocket,
    port: u16,
    shared: Arc<Shared>,
    mut stopped: oneshot::Receiver<()>,
) {
    let socket = Arc::new(socket);
    let options = shared.options.l4.clone();
    let start = Instant::now();
    let (expired_tx, mut expired_rx) = mpsc::unbounded_channel::<(SocketAddr, u64)>();
    let mut sessions: HashMap<SocketAddr, Session> = HashMap::new();
    let mut next_id = 0u64;
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let metrics = &shared.metrics.l4;
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            Some((peer, id)) = expired_rx.recv() => {
                if sessions.get(&peer).is_some_and(|s| s.id == id) {
                    sessions.remove(&peer);
                }
            }
            received = socket.recv_from(&mut buf) => {
                let (len, peer) = match received {
                    Ok(received) => received,
                    Err(error) => {
                        tracing::debug!(%error, port, "UDP receive failed");
                        continue;
                    }
                };
                let snapshot = shared.snapshot.load();
                let stale = sessions
                    .get(&peer)
                    .is_some_and(|s| s.upstream.is_none() && s.version != snapshot.version);
                if stale {
                    // A rejection is decided again under a new configuration.
                    sessions.remove(&peer);
                }
                if !sessions.contains_key(&peer) {
                    if sessions.len() >= options.udp_max_sessions {
                        metrics.udp_datagrams_dropped.inc();
                        tracing::debug!(port, %peer, limit = options.udp_max_sessions, "UDP session limit reached; datagram dropped");
                        continue;
                    }
                    let upstream = match open_upstream(&snapshot, port, peer.ip()).await {
                        Ok(upstream) => Some(Arc::new(upstream)),
                        Err(ForwardError::InvalidBackend { route }) => {
                            tracing::info!(port, %peer, route, "UDP session given to an invalid backendRef; its datagrams are dropped");
                            None
                        }
                        Err(error) => {
                            metrics.udp_datagrams_dropped.inc();
                            tracing::info!(port, %peer, %error, "UDP datagram dropped");
                            continue;
                        }
                    };
                    next_id += 1;
                    let session = open_session(
                        next_id,
                        peer,
                        upstream,
                        snapshot.version,
                        &socket,
                        start,
                        options.udp_idle_timeout,
                        &expired_tx,
                        metrics,
                    );
                    sessions.insert(peer, session);
                }
                let Some(session) = sessions.get(&peer) else { continue };
                session.activity.touch();
                match &session.upstream {
                    Some(upstream) => {
                        if let Err(error) = upstream.send(&buf[..len]).await {
                            tracing::debug!(%error, port, %peer, "sending to the backend failed");
                        }
                    }
                    None => {
                        metrics.udp_datagrams_dropped.inc();
                    }
                }
            }
        }
    }
    tracing::debug!(port, sessions = sessions.len(), "UDP listener stopped");
}

/// Chooses a backend and an endpoint for a new session and opens a socket connected to it.
async fn open_upstream(
    snapshot: &Snapshot,
    port: u16,
    client: IpAddr,
) -> Result<UdpSocket, ForwardError> {
    let route = snapshot
        .ports
        .l4
        .udp_port(port)
        .and_then(|t| t.only_route())
        .map(AsRef::as_ref);
    let addr = choose_endpoint(snapshot, route, client)?;
    let connect_error = |source| ForwardError::Connect {
        endpoint: addr.to_string(),
        source,
    };
    let local = match addr.ip() {
        IpAddr::V4(_) => SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), 0),
        IpAddr::V6(_) => SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), 0),
    };
    let socket = UdpSocket::bind(local).await.map_err(connect_error)?;
    socket.connect(addr).await.map_err(connect_error)?;
    Ok(socket)
}

#[allow(clippy::too_many_arguments)]
fn open_session(
    id: u64,
    peer: SocketAddr,
    upstream: Option<Arc<UdpSocket>>,
    version: u64,
    listener: &Arc<UdpSocket>,
    start: Instant,
    idle: Duration,
    expired: &mpsc::UnboundedSender<(SocketAddr, u64)>,
    metrics: &L4Metrics,
) -> Session {
    let activity = Arc::new(Activity::new(start));
    let relay = tokio::spawn(relay_replies(
        upstream.clone(),
        listener.clone(),
        peer,
        activity.clone(),
        idle,
        expired.clone(),
        id,
        metrics.clone(),
    ));
    metrics.udp_sessions.inc();
    metrics.udp_sessions_active.inc();
    Session {
        id,
        upstream,
        version,
        activity,
        relay,
        active: metrics.udp_sessions_active.clone(),
    }
}

/// Sends the backend's replies to the client until the session has been idle for `idle`.
#[allow(clippy::too_many_arguments)]
async fn relay_replies(
    upstream: Option<Arc<UdpSocket>>,
    listener: Arc<UdpSocket>,
    peer: SocketAddr,
    activity: Arc<Activity>,
    idle: Duration,
    expired: mpsc::UnboundedSender<(SocketAddr, u64)>,
    id: u64,
    metrics: L4Metrics,
) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let deadline = activity.idle_deadline(idle);
        let reply = async {
            match &upstream {
                Some(upstream) => upstream.recv(&mut buf).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            received = reply => match received {
                Ok(len) => {
                    activity.touch();
                    if let Err(error) = listener.send_to(&buf[..len], peer).await {
                        tracing::debug!(%error, %peer, "sending to the client failed");
                    }
                }
                // An ICMP error from the backend (nothing listening): the session carries on,
                // as the next datagram may get through.
                Err(error) => tracing::debug!(%error, %peer, "receiving from the backend failed"),
            },
            () = tokio::time::sleep_until(deadline) => {
                if activity.idle_deadline(idle) <= Instant::now() {
                    metrics.udp_sessions_expired.inc();
                    tracing::debug!(%peer, ?idle, "UDP session expired");
                    let _ = expired.send((peer, id));
                    return;
                }
            }
        }
    }
}
