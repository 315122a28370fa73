//! `spec.healthCheck`: Envoy Gateway's `HealthCheck` shape (active probes, passive outlier
//! detection, panic threshold).

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::DURATION_PATTERN;

/// Which endpoints are healthy enough to receive traffic.
///
/// Panic mode: when fewer than `panicThreshold` percent of a Service port's endpoints are
/// healthy (every endpoint unhealthy included), the proxy disregards health and spreads traffic
/// over all of them, so that a failure of the checks themselves cannot take the Service down.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HealthCheck {
    /// Probes the proxy sends to every endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<ActiveHealthCheck>,
    /// Ejection of endpoints whose responses fail (outlier detection).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passive: Option<PassiveHealthCheck>,
    /// Percentage of healthy endpoints below which health is disregarded (panic mode); `0`
    /// turns panic mode off, so that with no healthy endpoint requests get 503. Default: 50.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub panic_threshold: Option<i64>,
}

/// Probes sent to every endpoint of the targeted Service ports, from every proxy replica.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.type == 'HTTP' ? has(self.http) : !has(self.http)").message("healthCheck.active.http must be set when type is HTTP, and only then"),
    validation = Rule::new("has(self.tcp) ? self.type == 'TCP' : true").message("healthCheck.active.tcp can only be set when type is TCP"),
    validation = Rule::new("has(self.grpc) ? self.type == 'GRPC' : true").message("healthCheck.active.grpc can only be set when type is GRPC")
)]
pub struct ActiveHealthCheck {
    /// How long a probe may take before it counts as failed. Default: `1s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub timeout: Option<String>,
    /// Time between probes of one endpoint. Default: `3s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub interval: Option<String>,
    /// The first probe of an endpoint waits a random time up to this, so that probes of many
    /// endpoints spread out. Default: `0s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub initial_jitter: Option<String>,
    /// Failed probes in a row that make a healthy endpoint unhealthy. Default: 3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 4_294_967_295_i64))]
    pub unhealthy_threshold: Option<i64>,
    /// Successful probes in a row that make an unhealthy endpoint healthy. Default: 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 4_294_967_295_i64))]
    pub healthy_threshold: Option<i64>,
    /// The kind of probe.
    #[serde(rename = "type")]
    pub type_: ActiveHealthCheckerType,
    /// The HTTP request, with `type: HTTP`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpActiveHealthChecker>,
    /// What to send and expect, with `type: TCP`; without it a probe only connects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpActiveHealthChecker>,
    /// The service to ask about, with `type: GRPC`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc: Option<GrpcActiveHealthChecker>,
}

/// Kinds of active probe.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ActiveHealthCheckerType {
    /// An HTTP request; healthy when the status is expected.
    #[default]
    #[serde(rename = "HTTP")]
    Http,
    /// A TCP connection (and optionally a payload exchange); healthy when it succeeds.
    #[serde(rename = "TCP")]
    Tcp,
    /// A `grpc.health.v1.Health/Check` call; healthy when the answer is `SERVING`.
    #[serde(rename = "GRPC")]
    Grpc,
}

/// An HTTP probe.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HttpActiveHealthChecker {
    /// The request path, starting with `/`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(required, length(min = 1, max = 1024))]
    pub path: Option<String>,
    /// The request method. Default: `GET`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Response statuses that count as healthy, each from 100 to 599. Default: `[200]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub expected_statuses: Option<Vec<i64>>,
    /// The `Host` of the request. Default: the Service's name, `<name>.<namespace>.svc`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub hostname: Option<String>,
}

/// A TCP probe: connect, then optionally send `send` and expect `receive`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TcpActiveHealthChecker {
    /// Bytes written after connecting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send: Option<ActiveHealthCheckPayload>,
    /// Bytes the endpoint's answer must contain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receive: Option<ActiveHealthCheckPayload>,
}

/// Bytes of a TCP probe, as text or base64.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.type == 'Text' ? has(self.text) : !has(self.text)").message("payload.text must be set when type is Text, and only then"),
    validation = Rule::new("self.type == 'Binary' ? has(self.binary) : !has(self.binary)").message("payload.binary must be set when type is Binary, and only then")
)]
pub struct ActiveHealthCheckPayload {
    /// How the bytes are written.
    #[serde(rename = "type")]
    pub type_: ActiveHealthCheckPayloadType,
    /// The bytes as UTF-8 text, with `type: Text`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub text: Option<String>,
    /// The bytes in base64, with `type: Binary`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1368))]
    pub binary: Option<String>,
}

/// Encodings of a TCP probe payload.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ActiveHealthCheckPayloadType {
    /// UTF-8 text.
    #[default]
    Text,
    /// Base64-encoded bytes.
    Binary,
}

/// A gRPC probe (`grpc.health.v1.Health/Check`).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GrpcActiveHealthChecker {
    /// The service asked about. Default: empty, the health of the whole server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub service: Option<String>,
}

/// Outlier detection: endpoints whose responses fail in a row are ejected (receive no traffic)
/// for a while, then given another chance. Counted per proxy replica.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PassiveHealthCheck {
    /// Count failures to connect (and other failures of the proxy's side: timeouts, resets)
    /// apart from the endpoint's own errors, with their own threshold
    /// (`consecutiveLocalOriginFailures`). Default: false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split_external_local_origin_errors: Option<bool>,
    /// How often ejections are reconsidered. Default: `3s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub interval: Option<String>,
    /// Failures of the proxy's side in a row that eject an endpoint, with
    /// `splitExternalLocalOriginErrors`; `0` never ejects for them. Default: 5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 4_294_967_295_i64))]
    pub consecutive_local_origin_failures: Option<i64>,
    /// 502, 503 and 504 responses (and, unless split, failures to connect) in a row that eject
    /// an endpoint; `0` never ejects for them. Default: 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 4_294_967_295_i64))]
    pub consecutive_gateway_errors: Option<i64>,
    /// 5xx responses (and, unless split, failures to connect) in a row that eject an endpoint;
    /// `0` never ejects for them. Default: 5.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "consecutive5XxErrors"
    )]
    #[schemars(range(min = 0, max = 4_294_967_295_i64))]
    pub consecutive_5xx_errors: Option<i64>,
    /// How long an endpoint stays ejected the first time; each further ejection of it lasts
    /// this times the number of its ejections. Default: `30s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub base_ejection_time: Option<String>,
    /// At most this percentage of the endpoints is ejected at once. Default: 10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub max_ejection_percent: Option<i64>,
}
