//! The data plane: binds listener ports, serves HTTP/1.1 and HTTP/2, routes each request through
//! the current compiled snapshot.
//!
//! Invariant: the request path takes no lock. A request does one `ArcSwap::load_full` and
//! keeps that snapshot to the end; `apply` compiles off the hot path and publishes with one
//! `store`. Only `apply` and `shutdown` take the (async) listener lock.

mod access_log;
pub mod activity;
mod body_transform;
mod client_body;
mod drain;
pub mod errors;
pub mod grpc_status;
pub mod headers;
mod http_version;
pub mod l4;
mod listener;
mod pipeline;
mod rate_limits;
pub mod request_checks;
mod request_timer;
mod retry;
pub mod tls;
pub mod trim;
mod wake_gate;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;

use self::drain::Drain;
use self::http_version::HttpBuilders;
use self::l4::Transport;
use self::listener::PortListener;
use crate::routing::Snapshot;
use crate::routing::normalize::PathOptions;
use crate::telemetry::Metrics;
use crate::upstream::Upstreams;
use crate::upstream::session::SessionKey;
use gantry_translate::ir::Ir;
use gantry_translate::status::unbound::UnboundPort;

pub use errors::ProxyError;

/// HTTP/2 PING interval on idle client connections.
const HTTP2_KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(30);

/// Settings fixed for the life of the process.
#[derive(Clone, Debug)]
pub struct DataPlaneOptions {
    /// Address every listener binds (`--bind-address`).
    pub bind_address: IpAddr,
    /// Added to every listener port below 1024 (`--port-offset`).
    pub port_offset: u16,
    /// How long SIGTERM waits for in-flight requests.
    pub drain_timeout: Duration,
    /// Emit one access-log line per request.
    pub access_log: bool,
    /// TCP, UDP and TLS-route forwarding.
    pub l4: l4::L4Options,
    /// Request handling: paths, forwarding headers, timeouts.
    pub http: HttpOptions,
    /// Client connections: limits and timeouts.
    pub connections: ConnectionOptions,
}

/// Bounds on client connections. Every default is documented in `docs/security.md`.
#[derive(Clone, Debug)]
pub struct ConnectionOptions {
    /// Client connections open at once on one listener port (`--max-connections-per-listener`).
    pub per_listener: usize,
    /// Client connections open at once in the process (`--max-connections`).
    pub process: usize,
    /// Header, idle and stall timeouts ([`activity`]).
    pub timeouts: activity::Timeouts,
    /// Streams one HTTP/2 connection may have open (`--http2-max-concurrent-streams`); also
    /// the most upstream requests one client connection can have in flight.
    pub http2_max_streams: u32,
}

impl Default for ConnectionOptions {
    fn default() -> Self {
        Self {
            per_listener: DEFAULT_MAX_CONNECTIONS_PER_LISTENER,
            process: default_max_connections(),
            timeouts: activity::Timeouts {
                header: DEFAULT_HEADER_TIMEOUT,
                idle: DEFAULT_IDLE_TIMEOUT,
                stall: DEFAULT_STALL_TIMEOUT,
            },
            http2_max_streams: DEFAULT_HTTP2_MAX_STREAMS,
        }
    }
}

/// Default of `--max-connections-per-listener`.
pub const DEFAULT_MAX_CONNECTIONS_PER_LISTENER: usize = 10_000;
/// Default of `--client-header-timeout`: the first request's head, and each head, must arrive
/// within it.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// Default of `--client-idle-timeout`.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default of `--client-stall-timeout`.
pub const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(300);
/// Default of `--http2-max-concurrent-streams`.
pub const DEFAULT_HTTP2_MAX_STREAMS: u32 = 100;
/// Response bytes one HTTP/2 stream buffers beyond what the client's window lets through.
const HTTP2_MAX_SEND_BUFFER: usize = 16 * 1024;
/// Largest HTTP/2 header list a client may send (as HTTP/1's head limit, 64 KiB).
const HTTP2_MAX_HEADER_LIST: u32 = 64 * 1024;

/// The default process-wide connection limit: half the open-file limit (the other half is for
/// upstream connections, listeners, the admin server and files), and at least 64.
pub fn default_max_connections() -> usize {
    (open_file_limit() / 2).saturating_sub(32).max(64)
}

/// The soft limit on open files (`ulimit -n`), from `/proc/self/limits`; 1024 when unknown.
fn open_file_limit() -> usize {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|limits| {
            limits
                .lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|soft| soft.parse().ok())
        })
        .unwrap_or(1024)
}

/// How HTTP requests are checked and bounded. Every default is documented in
/// `docs/security.md`.
#[derive(Clone, Debug)]
pub struct HttpOptions {
    /// Path normalisation (`--path-merge-slashes`, `--path-escaped-slashes`).
    pub paths: PathOptions,
    /// Proxies in front whose X-Forwarded-* and `Forwarded` headers are kept
    /// (`--trusted-proxy-hops`).
    pub trusted_proxy_hops: u32,
    /// The longest wait for the next part of a request body (`--request-body-timeout`).
    pub request_body_timeout: Option<Duration>,
    /// The request timeout of routes that set none (`--default-request-timeout`).
    pub default_request_timeout: Option<Duration>,
    /// What session persistence tokens are signed with (`--session-key-file`, else random).
    pub session_key: Arc<SessionKey>,
}

impl Default for HttpOptions {
    fn default() -> Self {
        Self {
            paths: PathOptions::default(),
            trusted_proxy_hops: 0,
            request_body_timeout: Some(DEFAULT_REQUEST_BODY_TIMEOUT),
            default_request_timeout: Some(DEFAULT_REQUEST_TIMEOUT),
            session_key: Arc::new(SessionKey::random()),
        }
    }
}

/// Default of `--request-body-timeout`.
pub const DEFAULT_REQUEST_BODY_TIMEOUT: Duration = Duration::from_secs(60);
/// Default of `--default-request-timeout`.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a configuration was not applied. The previous one keeps serving.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("cannot bind {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("invalid configuration: {0}")]
    Compile(String),
}

/// What [`DataPlane::apply`] could not do while applying the rest.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// Ports of the configuration that are not bound, in port order.
    pub unbound: Vec<UnboundPort>,
}

/// State shared by the accept loops, connections and requests.
pub(crate) struct Shared {
    options: DataPlaneOptions,
    metrics: Arc<Metrics>,
    /// The one pointer through which configuration reaches requests.
    snapshot: ArcSwap<Snapshot>,
    upstreams: Upstreams,
    http: HttpBuilders,
    drain: Drain,
    /// Places under the process-wide connection limit.
    connections: Arc<tokio::sync::Semaphore>,
    /// OpenTelemetry tracing, when an endpoint is configured.
    tracer: Option<crate::telemetry::trace::Tracer>,
    /// ACME challenge answers (HTTP-01 on HTTP ports, TLS-ALPN-01 on TLS ports), when an
    /// ACME issuer is configured.
    acme: Option<crate::acme::Challenges>,
    /// Redis for global RateLimitPolicy rules (`--rate-limit-redis`).
    global_rate_limits: Option<Arc<crate::rate_limit::global::GlobalBuckets>>,
}

/// What a data plane may have besides its options.
#[derive(Default)]
pub struct Extras {
    /// OpenTelemetry tracing: requests are traced when it names a receiver (starts the
    /// exporter task).
    pub tracing: Option<crate::telemetry::trace::TracingOptions>,
    /// ACME challenge answers, given ahead of routing.
    pub acme: Option<crate::acme::Challenges>,
    /// Redis for global rate limits.
    pub global_rate_limits: Option<Arc<crate::rate_limit::global::GlobalBuckets>>,
}

/// The running data plane.
pub struct DataPlane {
    shared: Arc<Shared>,
    /// Accept loops (TCP) and receive loops (UDP) by socket kind and IR port. Only `apply` and
    /// `shutdown` touch it, never a request.
    listeners: tokio::sync::Mutex<HashMap<(Transport, u16), PortListener>>,
    applied: AtomicBool,
    shutting_down: AtomicBool,
}

impl fmt::Debug for DataPlane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataPlane")
            .field("options", &self.shared.options)
            .field("version", &self.shared.snapshot.load().version)
            .field("applied", &self.applied)
            .finish_non_exhaustive()
    }
}

impl DataPlane {
    pub fn new(options: DataPlaneOptions, metrics: Arc<Metrics>) -> Self {
        Self::with_tracing(options, metrics, None)
    }

    /// [`DataPlane::new`], tracing requests when `tracing` names a receiver (starts the
    /// exporter task).
    pub fn with_tracing(
        options: DataPlaneOptions,
        metrics: Arc<Metrics>,
        tracing: Option<crate::telemetry::trace::TracingOptions>,
    ) -> Self {
        Self::with_extras(
            options,
            metrics,
            Extras {
                tracing,
                ..Extras::default()
            },
        )
    }

    /// [`DataPlane::new`] with the optional parts of [`Extras`].
    pub fn with_extras(options: DataPlaneOptions, metrics: Arc<Metrics>, extras: Extras) -> Self {
        let Extras {
            tracing,
            acme,
            global_rate_limits,
        } = extras;
        let tracer =
            tracing.map(|t| crate::telemetry::trace::Tracer::start(t, metrics.tracing.clone()));
        let limits = &options.connections;
        let http = HttpBuilders::new(limits);
        let connections = Arc::new(tokio::sync::Semaphore::new(limits.process));
        let shared = Shared {
            connections,
            snapshot: ArcSwap::from_pointee(Snapshot::empty(&metrics)),
            upstreams: Upstreams::new(&metrics),
            options,
            metrics,
            http,
            drain: Drain::default(),
            tracer,
            acme,
            global_rate_limits,
        };
        Self {
            shared: Arc::new(shared),
            listeners: tokio::sync::Mutex::new(HashMap::new()),
            applied: AtomicBool::new(false),
            shutting_down: AtomicBool::new(false),
        }
    }

    /// Compiles `ir`, binds the ports it adds, publishes it with one atomic swap and closes the
    /// ports it no longer has. On error nothing changes; ports that could not be bound are
    /// returned, and the rest is served.
    pub async fn apply(&self, ir: Arc<Ir>, version: u64) -> Result<Applied, ApplyError> {
        let metrics = &self.shared.metrics;
        let mut listeners = self.listeners.lock().await;
        if self.shutting_down.load(Ordering::Acquire) {
            tracing::debug!(version, "shutting down; configuration not applied");
            return Ok(Applied::default());
        }
        let previous = self.shared.snapshot.load_full();
        // The control loop counts applied and rejected configurations: it knows whether this
        // is a new configuration or the one in use applied again to bind its ports.
        let snapshot = Snapshot::compile(ir, version, metrics, Some(&previous))
            .map_err(|e| ApplyError::Compile(e.to_string()))?;

        // Bind every new port. One that cannot be bound (in use, not permitted) does not hold
        // back the others: it is reported in `Applied::unbound` (its listeners' status says
        // so) and tried again by the next apply. A port keeps its socket across changes of
        // protocol that use the same kind of socket (HTTP, TLS and TCP ports accept TCP
        // connections and look the port's protocol up per connection).
        let wanted: HashSet<(Transport, u16)> = snapshot
            .ir
            .ports
            .iter()
            .map(|p| (Transport::of(p.protocol), p.port))
            .collect();
        let mut bound = Vec::new();
        let mut unbound = Vec::new();
        for &(transport, port) in &wanted {
            if listeners.contains_key(&(transport, port)) {
                continue;
            }
            let addr = self.listen_addr(port);
            match listener::Bound::bind(transport, addr) {
                Ok(socket) => bound.push((port, addr, socket)),
                Err(error) => {
                    tracing::warn!(port, %addr, %error, "cannot bind a listener port; its listeners are not served");
                    unbound.push(UnboundPort {
                        port,
                        address: addr,
                        error: error.to_string(),
                    });
                }
            }
        }

        let snapshot = Arc::new(snapshot);
        self.shared.snapshot.store(snapshot.clone());
        for (port, addr, socket) in bound {
            let transport = socket.transport();
            tracing::info!(port, %addr, ?transport, "listening");
            let running = PortListener::start(socket, addr, port, self.shared.clone());
            listeners.insert((transport, port), running);
        }
        let gone: Vec<(Transport, u16)> = listeners
            .keys()
            .copied()
            .filter(|key| !wanted.contains(key))
            .collect();
        for key in gone {
            if let Some(running) = listeners.remove(&key) {
                tracing::info!(port = key.1, addr = %running.addr, transport = ?key.0, "no longer listening");
                running.stop().await;
            }
        }

        previous.forget_removed_routes(&snapshot, metrics);
        self.applied.store(true, Ordering::Release);
        Ok(Applied { unbound })
    }

    /// True once a configuration is applied, until shutdown starts. Ports that could not be
    /// bound do not make it false: they are reported in `Applied::unbound` (and on their
    /// listeners' status) while every other port serves.
    pub fn ready(&self) -> bool {
        self.applied.load(Ordering::Acquire) && !self.shutting_down.load(Ordering::Acquire)
    }

    /// The first step of a graceful stop, for the drain delay: everything keeps being served,
    /// but HTTP/1.1 responses ask their clients to reconnect (`Connection: close`), so that
    /// keep-alive connections move to another replica while this one is still in the load
    /// balancers' rotation.
    pub fn announce_shutdown(&self) {
        self.shared.drain.announce();
    }

    /// Stops accepting on every port (UDP sessions end with their port) and asks every open
    /// connection to finish: HTTP/2 gets GOAWAY, HTTP/1.1 closes after the response in flight
    /// (at once when idle), upgraded (WebSocket) and TCP and TLS route connections are closed.
    /// Returns the connections still open; [`DataPlane::closed`] resolves when none is.
    pub async fn close(&self) -> usize {
        self.shutting_down.store(true, Ordering::Release);
        let mut listeners = self.listeners.lock().await;
        for (_, running) in listeners.drain() {
            running.stop().await;
        }
        drop(listeners);
        self.shared.drain.signal();
        self.shared.drain.open()
    }

    /// Sends the spans still queued, waiting at most until `deadline`.
    pub async fn flush_traces(&self, deadline: tokio::time::Instant) {
        if let Some(tracer) = &self.shared.tracer {
            tracer.shutdown(deadline).await;
        }
    }

    /// Resolves once every connection has closed.
    pub async fn closed(&self) {
        self.shared.drain.drained().await;
    }

    /// Connections open.
    pub fn open_connections(&self) -> usize {
        self.shared.drain.open()
    }

    /// [`DataPlane::close`], then waits for the connections up to the drain timeout.
    pub async fn shutdown(&self) {
        self.close().await;
        let timeout = self.shared.options.drain_timeout;
        if tokio::time::timeout(timeout, self.closed()).await.is_err() {
            tracing::warn!(
                open = self.open_connections(),
                ?timeout,
                "drain timeout elapsed with connections still open"
            );
        }
    }

    /// How long a drain may wait for connections to close (`--drain-timeout`).
    pub fn drain_timeout(&self) -> Duration {
        self.shared.options.drain_timeout
    }

    /// The configuration in use.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.shared.snapshot.load_full()
    }

    /// The socket address a listener port binds: `--bind-address` and the port the shared
    /// rule gives (below 1024, the port plus `--port-offset`; the operator's Service targets it).
    pub fn listen_addr(&self, port: u16) -> SocketAddr {
        let options = &self.shared.options;
        // No offset `--port-offset` accepts passes 65535; were one to, the declared port is
        // tried, and a failed bind is reported on the listener like any other.
        let bound = gantry_translate::ports::bound_port(port, options.port_offset).unwrap_or(port);
        SocketAddr::new(options.bind_address, bound)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_send_sync<T: Send + Sync>(_: &T) {}
    fn is_send<T: Send>(_: &T) {}

    /// The runtime shares the data plane between tasks and spawns its futures.
    #[tokio::test]
    async fn data_plane_is_shareable_and_its_futures_are_send() {
        let plane = DataPlane::new(
            DataPlaneOptions {
                bind_address: std::net::Ipv4Addr::LOCALHOST.into(),
                port_offset: 8000,
                drain_timeout: Duration::from_secs(1),
                access_log: false,
                l4: l4::L4Options::default(),
                http: HttpOptions::default(),
                connections: ConnectionOptions::default(),
            },
            Arc::new(Metrics::new()),
        );
        is_send_sync(&plane);
        is_send(&plane.apply(Arc::new(Ir::default()), 1));
        is_send(&plane.shutdown());
        assert_eq!(plane.listen_addr(80).port(), 8080);
        assert_eq!(plane.listen_addr(8443).port(), 8443);
        assert!(!plane.ready());
        plane.apply(Arc::new(Ir::default()), 1).await.unwrap();
        assert!(plane.ready());
        plane.shutdown().await;
        assert!(!plane.ready());
    }
}
