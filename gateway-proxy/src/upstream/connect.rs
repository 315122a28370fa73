//! How a cluster that a BackendConfigPolicy governs connects to its endpoints: its
//! [`ConnectionPolicy`] (connect timeout, idle timeout, TCP keepalive, maximum connection age
//! and requests per connection, the circuit breaker's connection limits) and [`Counted`], the
//! connector wrapper that counts its open connections and tells the pools each connection's age
//! and request count.
//!
//! A policy is built once per cluster compile and carried over (with the pools built from it
//! and their connections) while the cluster's connection settings stay the same. Clusters
//! without a policy never see any of this: they use the shared pools.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use http::Uri;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{
    CaptureConnection, Connected, Connection, HttpConnector,
};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use prometheus_client::metrics::gauge::Gauge;
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::BoxError;
use super::limits::{ConnectionLimits, Overflow};
use crate::telemetry::Metrics;
use crate::telemetry::circuit_breaker::CircuitBreakerMetrics;
use gantry_translate::ir::{BackendConfigIr, ConnectionIr, TcpKeepaliveIr};

/// The connection settings of one cluster with a policy.
#[derive(Debug)]
pub struct ConnectionPolicy {
    /// `namespace/service:port`, for metrics and logs.
    pub cluster: Arc<str>,
    /// What it was built from: a new configuration with the same settings reuses it.
    built_from: Settings,
    limits: Option<Arc<ConnectionLimits>>,
    open: Gauge,
    rejections: CircuitBreakerMetrics,
}

/// The parts of a [`BackendConfigIr`] this module acts on.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Settings {
    connection: ConnectionIr,
    max_requests_per_connection: Option<u32>,
    /// `maxConnections`, `maxPendingRequests`.
    limits: Option<(u32, u32)>,
}

impl Settings {
    fn of(config: &BackendConfigIr) -> Self {
        let breaker = config.circuit_breaker.as_ref();
        Self {
            connection: config.connection.clone(),
            max_requests_per_connection: breaker.and_then(|c| c.max_requests_per_connection),
            limits: breaker.map(|c| (c.max_connections, c.max_pending_requests)),
        }
    }
}

impl ConnectionPolicy {
    pub fn new(cluster: &str, config: &BackendConfigIr, metrics: &Metrics) -> Arc<Self> {
        let built_from = Settings::of(config);
        Arc::new(Self {
            cluster: Arc::from(cluster),
            limits: built_from
                .limits
                .map(|(connections, pending)| ConnectionLimits::new(connections, pending)),
            built_from,
            open: metrics.upstream_connections.open(cluster),
            rejections: metrics.circuit_breaker.clone(),
        })
    }

    /// True when this was built from the same connection settings as `config`'s.
    pub fn is_built_from(&self, config: &BackendConfigIr) -> bool {
        self.built_from == Settings::of(config)
    }

    pub fn connection(&self) -> &ConnectionIr {
        &self.built_from.connection
    }

    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connection().connect_timeout_ms)
    }

    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.connection().idle_timeout_ms)
    }

    /// How old a connection may get before it takes no new request.
    pub fn max_age(&self) -> Option<Duration> {
        self.connection()
            .max_connection_duration_ms
            .map(Duration::from_millis)
    }

    pub fn max_requests_per_connection(&self) -> Option<u32> {
        self.built_from.max_requests_per_connection
    }

    /// Streams one HTTP/2 connection carries at once.
    pub fn max_streams(&self) -> Option<u32> {
        self.connection().http2_max_concurrent_streams
    }

    /// The circuit breaker's connection limits, when the policy has a circuit breaker.
    pub fn limits(&self) -> Option<&Arc<ConnectionLimits>> {
        self.limits.as_ref()
    }

    /// Counts a request (or TCP/TLS route connection) a limit refused.
    pub fn rejected(&self, overflow: Overflow) {
        self.rejections
            .rejected(&self.cluster, overflow.limit.name());
    }

    /// True when connections may have to be retired after a request (a maximum age or request
    /// count), so the HTTP/1.1 client must be able to find the connection a request used.
    pub fn retires_connections(&self) -> bool {
        self.max_age().is_some() || self.max_requests_per_connection().is_some()
    }

    /// Counts one more request on a connection; true when the connection must take no other
    /// (it carried `maxRequestsPerConnection` requests, or it is `maxConnectionDuration` old).
    pub fn retire_after_request(&self, state: &ConnectionState) -> bool {
        let carried = state
            .requests
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        self.max_requests_per_connection()
            .is_some_and(|max| carried >= max)
            || self
                .max_age()
                .is_some_and(|age| state.opened.elapsed() >= age)
    }

    /// The TCP connector of the cluster's HTTP clients: the policy's connect timeout and TCP
    /// keepalive.
    pub fn http_connector(&self) -> HttpConnector {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(self.connect_timeout()));
        if let Some(keepalive) = &self.connection().tcp_keepalive {
            connector.set_keepalive(Some(Duration::from_secs(keepalive.idle_time_secs.into())));
            connector
                .set_keepalive_interval(Some(Duration::from_secs(keepalive.interval_secs.into())));
            connector.set_keepalive_retries(Some(keepalive.probes));
        }
        connector
    }

    /// The cluster's HTTP/1.1 client builder: idle pooled connections closed after the
    /// policy's idle timeout.
    pub fn client_builder(&self) -> hyper_util::client::legacy::Builder {
        let mut builder = Client::builder(TokioExecutor::new());
        builder
            .pool_idle_timeout(self.idle_timeout())
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new());
        builder
    }

    /// Opens a TCP connection to `addr` (a TCP or TLS route's backend) with the policy's
    /// connect timeout and keepalive.
    pub async fn connect_tcp(&self, addr: std::net::SocketAddr) -> io::Result<TcpStream> {
        let stream = tokio::time::timeout(self.connect_timeout(), TcpStream::connect(addr))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
        let _ = stream.set_nodelay(true);
        if let Some(keepalive) = &self.connection().tcp_keepalive {
            set_keepalive(&stream, keepalive)?;
        }
        Ok(stream)
    }

    /// Counts an open connection in the cluster's gauge while the guard lives.
    pub fn count_open(&self) -> OpenConnection {
        self.open.inc();
        OpenConnection(self.open.clone())
    }
}

/// Sets `SO_KEEPALIVE`, `TCP_KEEPIDLE`, `TCP_KEEPINTVL` and `TCP_KEEPCNT` on `stream`.
pub fn set_keepalive(stream: &TcpStream, keepalive: &TcpKeepaliveIr) -> io::Result<()> {
    let settings = socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(keepalive.idle_time_secs.into()))
        .with_interval(Duration::from_secs(keepalive.interval_secs.into()))
        .with_retries(keepalive.probes);
    socket2::SockRef::from(stream).set_tcp_keepalive(&settings)
}

/// One connection counted in its cluster's `upstream_connections_open` gauge.
#[derive(Debug)]
pub struct OpenConnection(Gauge);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// What one connection knows about itself: its age and the requests it carried. HTTP/1.1
/// responses carry it in their extensions (hyper-util's `Connected::extra`).
pub struct ConnectionState {
    opened: Instant,
    requests: AtomicU32,
    /// An HTTP/1.1 connection's handle in hyper-util's pool, from its first response: what
    /// poisons it (it is not pooled again) once it gets too old. Taken out when the connection
    /// closes (the handle refers back to this state).
    pool_entry: ArcSwapOption<CaptureConnection>,
    /// Too old (`maxConnectionDuration`): takes no new request.
    expired: AtomicBool,
}

impl std::fmt::Debug for ConnectionState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionState")
            .field("opened", &self.opened)
            .field("requests", &self.requests)
            .field("expired", &self.expired)
            .finish_non_exhaustive()
    }
}

impl ConnectionState {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            opened: Instant::now(),
            requests: AtomicU32::new(0),
            pool_entry: ArcSwapOption::empty(),
            expired: AtomicBool::new(false),
        })
    }

    /// Keeps the pool handle of the HTTP/1.1 connection this state is of, from a response it
    /// carried, so it can be poisoned when it gets too old; poisons it at once when it already
    /// is (or `retire`).
    pub fn remember(&self, entry: CaptureConnection, retire: bool) {
        if retire || self.expired.load(Ordering::Acquire) {
            poison(&entry);
            return;
        }
        // The first response's handle is kept; later ones are of the same connection.
        if self.pool_entry.load().is_none() {
            self.pool_entry.store(Some(Arc::new(entry)));
        }
        // It may have expired meanwhile.
        if self.expired.load(Ordering::Acquire) {
            self.expire();
        }
    }

    /// Marks the connection too old: a pooled HTTP/1.1 connection is poisoned, so hyper-util
    /// does not hand it out again and closes it.
    fn expire(&self) {
        self.expired.store(true, Ordering::Release);
        if let Some(entry) = self.pool_entry.swap(None) {
            poison(&entry);
        }
    }

    fn forget_pool_entry(&self) {
        self.pool_entry.store(None);
    }
}

fn poison(entry: &CaptureConnection) {
    if let Some(connection) = entry.connection_metadata().as_ref() {
        connection.poison();
    }
}

/// A connector that counts the connections it opens for a cluster with a policy (`None`: a
/// cluster without one; the connection passes through untouched).
#[derive(Clone, Debug)]
pub struct Counted<C> {
    inner: C,
    policy: Option<Arc<ConnectionPolicy>>,
}

impl<C> Counted<C> {
    pub fn new(inner: C, policy: Option<Arc<ConnectionPolicy>>) -> Self {
        Self { inner, policy }
    }
}

impl<C> tower_service::Service<Uri> for Counted<C>
where
    C: tower_service::Service<Uri> + Send + 'static,
    C::Future: Send + 'static,
    C::Error: Into<BoxError>,
{
    type Response = CountedIo<C::Response>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connecting = self.inner.call(uri);
        let policy = self.policy.clone();
        Box::pin(async move {
            let io = connecting.await.map_err(Into::into)?;
            let counted = policy.map(|policy| {
                let state = ConnectionState::new();
                if let Some(age) = policy.max_age() {
                    // Too old at `age`: not pooled again from then on.
                    let state = Arc::downgrade(&state);
                    tokio::spawn(async move {
                        tokio::time::sleep(age).await;
                        if let Some(state) = state.upgrade() {
                            state.expire();
                        }
                    });
                }
                (state, policy.count_open())
            });
            Ok(CountedIo { io, counted })
        })
    }
}

/// A connection opened by [`Counted`].
#[derive(Debug)]
pub struct CountedIo<T> {
    io: T,
    counted: Option<(Arc<ConnectionState>, OpenConnection)>,
}

impl<T> Drop for CountedIo<T> {
    fn drop(&mut self) {
        if let Some((state, _)) = &self.counted {
            state.forget_pool_entry();
        }
    }
}

impl<T: Connection> Connection for CountedIo<T> {
    fn connected(&self) -> Connected {
        let connected = self.io.connected();
        match &self.counted {
            Some((state, _)) => connected.extra(state.clone()),
            None => connected,
        }
    }
}

impl<T: Read + Unpin> Read for CountedIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: Write + Unpin> Write for CountedIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
}

/// True when `error` (or one of its causes) is a connect that timed out.
pub fn is_timeout(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(error) = next {
        next = error.source();
        if let Some(io) = error.downcast_ref::<io::Error>() {
            if io.kind() == io::ErrorKind::TimedOut {
                return true;
            }
            // An `io::Error` wrapping another error does not list it as its source.
            if let Some(inner) = io.get_ref() {
                next = Some(inner);
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use gantry_translate::ir::{CircuitBreakerIr, LoadBalancerIr};
    use hyper_util::rt::TokioIo;
    use tokio::net::TcpListener;
    use tower_service::Service;

    use super::*;

    fn config(connection: ConnectionIr) -> BackendConfigIr {
        BackendConfigIr {
            policy: "ns/p".into(),
            load_balancer: LoadBalancerIr::RoundRobin {
                slow_start_window_ms: None,
            },
            health_check: None,
            circuit_breaker: None,
            connection,
        }
    }

    fn keepalive() -> ConnectionIr {
        ConnectionIr {
            tcp_keepalive: Some(TcpKeepaliveIr {
                probes: 4,
                idle_time_secs: 31,
                interval_secs: 7,
            }),
            ..ConnectionIr::DEFAULT
        }
    }

    /// (SO_KEEPALIVE, TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT) as the kernel has them.
    fn keepalive_options(stream: &TcpStream) -> (bool, u64, u64, u32) {
        let socket = socket2::SockRef::from(stream);
        let read = || {
            Ok::<_, io::Error>((
                socket.keepalive()?,
                socket.tcp_keepalive_time()?.as_secs(),
                socket.tcp_keepalive_interval()?.as_secs(),
                socket.tcp_keepalive_retries()?,
            ))
        };
        read().expect("getsockopt")
    }

    #[tokio::test]
    async fn http_and_tcp_connections_carry_the_keepalive_settings() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let policy = ConnectionPolicy::new("ns/svc:80", &config(keepalive()), &Metrics::new());

        let mut http = policy.http_connector();
        let uri: Uri = format!("http://{addr}/").parse().expect("uri");
        let io: TokioIo<TcpStream> = http.call(uri).await.expect("connected");
        assert_eq!(keepalive_options(io.inner()), (true, 31, 7, 4));

        let tcp = policy.connect_tcp(addr).await.expect("connected");
        assert_eq!(keepalive_options(&tcp), (true, 31, 7, 4));

        // Without `tcpKeepalive`, the operating system's settings: no probes.
        let plain =
            ConnectionPolicy::new("ns/svc:80", &config(ConnectionIr::DEFAULT), &Metrics::new());
        let tcp = plain.connect_tcp(addr).await.expect("connected");
        assert!(!keepalive_options(&tcp).0);
    }

    #[tokio::test]
    async fn connections_retire_after_their_requests_or_their_age() {
        let metrics = Metrics::new();
        let mut settings = config(ConnectionIr::DEFAULT);
        settings.circuit_breaker = Some(CircuitBreakerIr {
            max_connections: 10,
            max_pending_requests: 10,
            max_parallel_requests: 10,
            max_parallel_retries: 10,
            max_requests_per_connection: Some(3),
        });
        let policy = ConnectionPolicy::new("ns/svc:80", &settings, &metrics);
        assert!(policy.retires_connections());
        let state = ConnectionState::new();
        let retired: Vec<bool> = (0..3)
            .map(|_| policy.retire_after_request(&state))
            .collect();
        assert_eq!(retired, [false, false, true]);

        let mut aging = config(ConnectionIr {
            max_connection_duration_ms: Some(1_000),
            ..ConnectionIr::DEFAULT
        });
        aging.circuit_breaker = None;
        let policy = ConnectionPolicy::new("ns/svc:80", &aging, &metrics);
        assert!(!policy.retire_after_request(&ConnectionState::new()));
        let old = ConnectionState {
            opened: Instant::now() - Duration::from_millis(1_000),
            requests: AtomicU32::new(0),
            pool_entry: ArcSwapOption::empty(),
            expired: AtomicBool::new(false),
        };
        assert!(policy.retire_after_request(&old));

        let default = ConnectionPolicy::new("ns/svc:80", &config(ConnectionIr::DEFAULT), &metrics);
        assert!(!default.retires_connections());
    }

    #[test]
    fn a_policy_is_reused_only_for_the_same_connection_settings() {
        let metrics = Metrics::new();
        let base = config(ConnectionIr::DEFAULT);
        let policy = ConnectionPolicy::new("ns/svc:80", &base, &metrics);
        // Other parts of the policy are not this module's business.
        let mut balanced = base.clone();
        balanced.load_balancer = LoadBalancerIr::Random;
        balanced.policy = "ns/other".into();
        assert!(policy.is_built_from(&balanced));
        assert!(!policy.is_built_from(&config(keepalive())));
        let mut limited = base.clone();
        limited.circuit_breaker = Some(CircuitBreakerIr {
            max_connections: 1,
            max_pending_requests: 1,
            max_parallel_requests: 1,
            max_parallel_retries: 1,
            max_requests_per_connection: None,
        });
        assert!(!policy.is_built_from(&limited));
        let mut requests_only = limited.clone();
        if let Some(breaker) = requests_only.circuit_breaker.as_mut() {
            breaker.max_parallel_requests = 7;
        }
        let limited_policy = ConnectionPolicy::new("ns/svc:80", &limited, &metrics);
        assert!(limited_policy.is_built_from(&requests_only));
    }

    #[test]
    fn timeouts_are_found_in_error_chains() {
        let timed_out = io::Error::new(io::ErrorKind::TimedOut, "connect timed out");
        assert!(is_timeout(&timed_out));
        let wrapped = io::Error::other(timed_out);
        assert!(is_timeout(&wrapped));
        assert!(!is_timeout(&io::Error::from(
            io::ErrorKind::ConnectionRefused
        )));
    }
}
