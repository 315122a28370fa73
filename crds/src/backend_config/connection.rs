//! `spec.circuitBreaker`, `spec.timeout`, `spec.tcpKeepalive` and `spec.http2`: Envoy
//! Gateway's `CircuitBreaker`, `Timeout`, `TCPKeepalive` and `HTTP2Settings` shapes.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use super::DURATION_PATTERN;

/// Limits on what one proxy replica sends to the endpoints of a Service port. A request over
/// a limit is answered 503 at once, with an `x-gantry-circuit-breaker` header naming the limit.
/// Once `circuitBreaker` is set, each limit it does not set is 1024 (`maxRequestsPerConnection`:
/// none).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CircuitBreaker {
    /// Connections open to the endpoints at once. Default: 1024.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 4_294_967_295_i64))]
    pub max_connections: Option<i64>,
    /// Requests waiting for a connection at once. Default: 1024.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 4_294_967_295_i64))]
    pub max_pending_requests: Option<i64>,
    /// Requests in flight at once. Default: 1024.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 4_294_967_295_i64))]
    pub max_parallel_requests: Option<i64>,
    /// Retries in flight at once. Default: 1024.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 4_294_967_295_i64))]
    pub max_parallel_retries: Option<i64>,
    /// Requests one connection carries before it is closed. Default: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 4_294_967_295_i64))]
    pub max_requests_per_connection: Option<i64>,
}

/// Upstream timeouts.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Timeout {
    /// TCP connection timeouts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpTimeout>,
    /// HTTP connection timeouts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpTimeout>,
}

/// TCP connection timeouts.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TcpTimeout {
    /// How long a new connection to an endpoint may take. Default: `5s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub connect_timeout: Option<String>,
}

/// HTTP connection timeouts.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HttpTimeout {
    /// A pooled connection with no request in flight for this long is closed. Default: `90s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub connection_idle_timeout: Option<String>,
    /// A connection is closed once this old (after its requests in flight). Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub max_connection_duration: Option<String>,
}

/// TCP keepalive probes on upstream connections (whole seconds; a fraction is dropped).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TcpKeepalive {
    /// Unanswered probes after which the connection is dropped, 1 to 127. Default: 9.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 127))]
    pub probes: Option<i64>,
    /// Idle time before the first probe, 1s to 32767s. Default: `2h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub idle_time: Option<String>,
    /// Time between probes, 1s to 32767s. Default: `75s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub interval: Option<String>,
}

/// HTTP/2 settings of upstream connections.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Http2Settings {
    /// Streams (requests) one connection carries at once; more open another connection.
    /// Default: as many as the endpoint allows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 2_147_483_647))]
    pub max_concurrent_streams: Option<i64>,
}
