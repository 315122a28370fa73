//! `spec.circuitBreaker`, `spec.timeout`, `spec.tcpKeepalive` and `spec.http2` into
//! [`CircuitBreakerIr`] and [`ConnectionIr`].

use gantry_crds::backend_config::{CircuitBreaker, Http2Settings, TcpKeepalive, Timeout};

use super::check::Check;
use crate::ir::{CircuitBreakerIr, ConnectionIr, TcpKeepaliveIr};

/// Each circuit breaker limit the policy does not set (Envoy's and Envoy Gateway's default).
const DEFAULT_CIRCUIT_BREAKER_LIMIT: u32 = 1024;
/// `tcpKeepalive` defaults (Linux's, which Envoy Gateway documents).
const DEFAULT_KEEPALIVE_PROBES: u32 = 9;
const DEFAULT_KEEPALIVE_IDLE_MS: u64 = 7_200_000;
const DEFAULT_KEEPALIVE_INTERVAL_MS: u64 = 75_000;
/// Linux's limits: `TCP_KEEPCNT` up to 127, `TCP_KEEPIDLE` and `TCP_KEEPINTVL` up to 32767 s.
const MAX_KEEPALIVE_PROBES: u32 = 127;
const MAX_KEEPALIVE_SECS: u64 = 32_767;

pub fn circuit_breaker(check: &mut Check, cb: &CircuitBreaker) -> CircuitBreakerIr {
    let field = "circuitBreaker";
    let mut limit = |name: &str, value: Option<i64>| {
        check.integer(
            &format!("{field}.{name}"),
            value,
            DEFAULT_CIRCUIT_BREAKER_LIMIT,
            0,
            u32::MAX,
        )
    };
    CircuitBreakerIr {
        max_connections: limit("maxConnections", cb.max_connections),
        max_pending_requests: limit("maxPendingRequests", cb.max_pending_requests),
        max_parallel_requests: limit("maxParallelRequests", cb.max_parallel_requests),
        max_parallel_retries: limit("maxParallelRetries", cb.max_parallel_retries),
        max_requests_per_connection: cb.max_requests_per_connection.map(|n| {
            check.integer(
                &format!("{field}.maxRequestsPerConnection"),
                Some(n),
                0,
                0,
                u32::MAX,
            )
        }),
    }
}

pub fn connection(
    check: &mut Check,
    timeout: Option<&Timeout>,
    keepalive: Option<&TcpKeepalive>,
    http2: Option<&Http2Settings>,
) -> ConnectionIr {
    let defaults = ConnectionIr::DEFAULT;
    let tcp = timeout.and_then(|t| t.tcp.as_ref());
    let http = timeout.and_then(|t| t.http.as_ref());
    ConnectionIr {
        connect_timeout_ms: check.duration_ms(
            "timeout.tcp.connectTimeout",
            tcp.and_then(|t| t.connect_timeout.as_deref()),
            defaults.connect_timeout_ms,
            1,
        ),
        idle_timeout_ms: check.duration_ms(
            "timeout.http.connectionIdleTimeout",
            http.and_then(|h| h.connection_idle_timeout.as_deref()),
            defaults.idle_timeout_ms,
            1,
        ),
        max_connection_duration_ms: http
            .and_then(|h| h.max_connection_duration.as_deref())
            .map(|d| check.duration_ms("timeout.http.maxConnectionDuration", Some(d), 0, 1)),
        tcp_keepalive: keepalive.map(|k| tcp_keepalive(check, k)),
        http2_max_concurrent_streams: http2
            .and_then(|h| h.max_concurrent_streams)
            .map(|n| check.integer("http2.maxConcurrentStreams", Some(n), 0, 1, 2_147_483_647)),
    }
}

fn tcp_keepalive(check: &mut Check, k: &TcpKeepalive) -> TcpKeepaliveIr {
    let mut secs = |name: &str, text: Option<&str>, default_ms: u64| {
        let field = format!("tcpKeepalive.{name}");
        let ms = check.duration_ms(&field, text, default_ms, 1_000);
        let secs = ms / 1_000;
        if secs > MAX_KEEPALIVE_SECS {
            check.fail(format!(
                "{field} {:?} must be at most {MAX_KEEPALIVE_SECS}s",
                text.unwrap_or_default()
            ));
        }
        u32::try_from(secs.min(MAX_KEEPALIVE_SECS)).unwrap_or(u32::MAX)
    };
    TcpKeepaliveIr {
        idle_time_secs: secs(
            "idleTime",
            k.idle_time.as_deref(),
            DEFAULT_KEEPALIVE_IDLE_MS,
        ),
        interval_secs: secs(
            "interval",
            k.interval.as_deref(),
            DEFAULT_KEEPALIVE_INTERVAL_MS,
        ),
        probes: check.integer(
            "tcpKeepalive.probes",
            k.probes,
            DEFAULT_KEEPALIVE_PROBES,
            1,
            MAX_KEEPALIVE_PROBES,
        ),
    }
}
