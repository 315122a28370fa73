//! `BackendConfigPolicy` (gantry.dev/v1alpha1): how the proxy balances, checks, limits and
//! connects to the endpoints of a Service, or of one of its ports.
//!
//! A Direct policy (GEP-713) attached to core Services, like kgateway's policy of the same name;
//! its field shapes follow Envoy Gateway's `BackendTrafficPolicy` (`loadBalancer`,
//! `healthCheck`, `circuitBreaker`, `timeout`, `tcpKeepalive`, `http2`). Every field is
//! optional; the translator fills in the defaults (see `docs/policies.md`) and checks every
//! value again, so a policy loaded from a file without an API server is held to the same rules
//! as the CEL rules below.

mod connection;
mod health_check;
mod load_balancer;

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

pub use self::connection::{
    CircuitBreaker, Http2Settings, HttpTimeout, TcpKeepalive, TcpTimeout, Timeout,
};
pub use self::health_check::{
    ActiveHealthCheck, ActiveHealthCheckPayload, ActiveHealthCheckPayloadType,
    ActiveHealthCheckerType, GrpcActiveHealthChecker, HealthCheck, HttpActiveHealthChecker,
    PassiveHealthCheck, TcpActiveHealthChecker,
};
pub use self::load_balancer::{
    ConsistentHash, ConsistentHashType, Cookie, Header, LoadBalancer, LoadBalancerType, QueryParam,
    SlowStart,
};

/// Kind name of `BackendConfigPolicy`.
pub const BACKEND_CONFIG_POLICY_KIND: &str = "BackendConfigPolicy";

/// A GEP-2257 duration (`1h2m3s4ms`): up to four numbers of up to five digits, each followed by
/// `h`, `m`, `s` or `ms`.
pub(crate) const DURATION_PATTERN: &str = r"^([0-9]{1,5}(h|m|s|ms)){1,4}$";

/// Traffic settings for the endpoints of the Services (or Service ports) it targets: load
/// balancing, active and passive health checks, circuit breaking and upstream connections.
///
/// When two policies target the same Service port, the one naming the port (`sectionName`)
/// takes precedence over one naming the whole Service; between equals the oldest wins, then the
/// first by `namespace/name`. Fields never merge across policies: the policy that takes
/// precedence decides every field, its unset fields taking their defaults.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "gantry.dev",
    version = "v1alpha1",
    kind = "BackendConfigPolicy",
    plural = "backendconfigpolicies",
    singular = "backendconfigpolicy",
    shortname = "bcp",
    category = "gateway-api",
    doc = "BackendConfigPolicy sets load balancing, health checks, circuit breaking and upstream connection settings for Services.",
    namespaced,
    status = "BackendConfigPolicyStatus",
    derive = "Default",
    derive = "PartialEq",
    printcolumn = r#"{"name":"Accepted","type":"string","jsonPath":".status.ancestors[*].conditions[?(@.type=='Accepted')].status","description":"Whether the policy is accepted, per Gateway using its Services"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct BackendConfigPolicySpec {
    /// The Services the policy applies to, in the policy's namespace. `sectionName` names one
    /// port of the Service (by its `name`), so that ports can have different settings; without
    /// it the policy applies to every port.
    #[schemars(length(min = 1, max = 16))]
    #[x_kube(
        validation = Rule::new("self.all(r, r.group == '' && r.kind == 'Service')").message("targetRefs: only core Services (group \"\", kind Service) can be targeted"),
        validation = Rule::new("self.all(a, self.exists_one(b, a.group == b.group && a.kind == b.kind && a.name == b.name && (has(a.sectionName) ? (has(b.sectionName) && a.sectionName == b.sectionName) : !has(b.sectionName))))").message("targetRefs: each Service (and sectionName) may be targeted once")
    )]
    pub target_refs: Vec<LocalPolicyTargetReferenceWithSectionName>,
    /// How a request (or connection) picks an endpoint. Default: `RoundRobin`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<LoadBalancer>,
    /// Active health checks (probes), passive ones (outlier detection), and the panic
    /// threshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
    /// Limits on connections and requests to the endpoints; over a limit the proxy answers 503
    /// at once. Without it, no limit applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circuit_breaker: Option<CircuitBreaker>,
    /// Upstream connection timeouts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Timeout>,
    /// TCP keepalive probes on upstream connections. Without it, the operating system's
    /// settings apply (normally no probes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_keepalive: Option<TcpKeepalive>,
    /// HTTP/2 settings of upstream connections (Service ports with `appProtocol:
    /// kubernetes.io/h2c`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http2: Option<Http2Settings>,
}

/// GEP-713 `LocalPolicyTargetReferenceWithSectionName`: an object in the policy's namespace,
/// and optionally one section of it (for a Service, a port name).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct LocalPolicyTargetReferenceWithSectionName {
    /// The group of the target; `""` (the core group) for a Service.
    #[schemars(
        length(max = 253),
        regex(pattern = r"^$|^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub group: String,
    /// The kind of the target: `Service`.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$")
    )]
    pub kind: String,
    /// The name of the target.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// The name of one port of the Service (`spec.ports[].name`). When unset the policy
    /// targets every port. A name the Service does not have makes the target not found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub section_name: Option<String>,
}

/// GEP-713 `PolicyStatus`: one entry per Gateway whose routes use a targeted Service, written by
/// the controller of that Gateway.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BackendConfigPolicyStatus {
    /// The Gateways (ancestors) the policy is relevant to, each with its `Accepted` condition.
    /// At most 16.
    #[serde(default)]
    #[schemars(length(max = 16))]
    pub ancestors: Vec<PolicyAncestorStatus>,
}

/// GEP-713 `PolicyAncestorStatus`, the Gateway API's own type.
pub type PolicyAncestorStatus = gateway_api::backendtlspolicies::BackendTlsPolicyStatusAncestors;
