//! How a cluster that a BackendConfigPolicy governs connects to its endpoints: its
//! [`ConnectionPolicy`] (connect timeout, idle timeout, TCP keepalive, maximum connection age
//! and requests per connection, the circuit breaker's connection limits). Its connections are
//! counted by `counted::Counted`.
//!
//! A policy is built once per cluster compile and carried over (with the pools built from it
//! and their connections) while the cluster's connection settings stay the same. Clusters
//! without a policy never see any of this: they use the shared pools.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::client::legacy::connect::HttpConnector;
use prometheus_client::metrics::gauge::Gauge;
use tokio::net::TcpStream;

use super::counted::{ConnectionState, OpenConnection};
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

    /// Counts one more request on a connection; true when the connection must take no other
    /// (it carried `maxRequestsPerConnection` requests, or it is `maxConnectionDuration` old).
    pub fn retire_after_request(&self, state: &ConnectionState) -> bool {
        self.retires(state.count_request(), state.opened())
    }

    /// True when a connection that carried `carried` requests and was opened at `opened` must
    /// take no other (`maxRequestsPerConnection`, `maxConnectionDuration`). The clock is read
    /// only when the policy has a maximum age.
    pub fn retires(&self, carried: u32, opened: tokio::time::Instant) -> bool {
        self.max_requests_per_connection()
            .is_some_and(|max| carried >= max)
            || self.max_age().is_some_and(|max| opened.elapsed() >= max)
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
        OpenConnection::new(&self.open)
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
    use http::Uri;
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
        let old =
            ConnectionState::opened_at(tokio::time::Instant::now() - Duration::from_millis(1_000));
        assert!(policy.retire_after_request(&old));

        let default = ConnectionPolicy::new("ns/svc:80", &config(ConnectionIr::DEFAULT), &metrics);
        let day_old = tokio::time::Instant::now() - Duration::from_secs(86_400);
        assert!(!default.retires(u32::MAX, day_old));
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
