//! `GatewayParameters` (gantry.dev/v1alpha1): how an infrastructure provider shapes gateway fleets.
//!
//! Every field is optional so that a GatewayClass's parameters and a Gateway's parameters can be
//! merged field by field over the built-in defaults (see `gantry_operator::params`).
//! The CEL rules below reject contradictions within one object; the operator checks the merged
//! result again, because a contradiction can also arise between the two levels.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, EnvVar, PodSecurityContext, ResourceRequirements, SecurityContext, Toleration,
    TopologySpreadConstraint,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Kind name of `GatewayParameters`, as used in a `parametersRef`.
pub const GATEWAY_PARAMETERS_KIND: &str = "GatewayParameters";

/// Parameters for the gateway fleets of a GatewayClass (via `spec.parametersRef`) or of a single
/// Gateway (via `spec.infrastructure.parametersRef`). Gateway values override class values, which
/// override the built-in defaults, field by field.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "gantry.dev",
    version = "v1alpha1",
    kind = "GatewayParameters",
    plural = "gatewayparameters",
    singular = "gatewayparameters",
    shortname = "gwparams",
    category = "gateway-api",
    doc = "GatewayParameters shapes the proxy fleets of a GatewayClass or of one Gateway.",
    namespaced,
    derive = "Default",
    derive = "PartialEq"
)]
#[serde(rename_all = "camelCase")]
pub struct GatewayParametersSpec {
    /// Dedicated: one fleet per Gateway, in the Gateway's namespace (default).
    /// Shared: one fleet per GatewayClass serving all its Gateways, in the namespace of the
    /// class's GatewayParameters. Only meaningful on the GatewayClass's parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topology: Option<Topology>,
    /// What runs the proxy pods: a Deployment (default) or a DaemonSet (one pod per node the
    /// pods may run on). `deployment` sets the container of either; its `replicas`, and
    /// `autoscaling`, apply to a Deployment only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<Workload>,
    /// The proxy Deployment and its container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<DeploymentParameters>,
    /// The proxy pods: scheduling, metadata and security context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<PodParameters>,
    /// A HorizontalPodAutoscaler (autoscaling/v2) for the fleet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<AutoscalingParameters>,
    /// A PodDisruptionBudget (policy/v1) for the fleet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_disruption_budget: Option<PodDisruptionBudgetParameters>,
    /// The Service that exposes the listeners.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<ServiceParameters>,
    /// Settings of the proxy process itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<ProxyParameters>,
    /// Certificate issuance for HTTPS listeners whose Secret does not exist: through
    /// cert-manager (`issuerRef`) or by the fleet itself from an ACME CA (`acme`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificates: Option<CertificateParameters>,
    /// Free-form patches of the rendered objects, for what no field above offers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlays: Option<Overlays>,
}

/// Patches applied to the objects the operator renders, per kind, after every field above:
/// the class's patches first, then the Gateway's. A patch that cannot be applied, or that
/// leaves an object the API server refuses, makes the parameters `InvalidParameters` with the
/// reason, and the fleet keeps its last good objects.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Overlays {
    /// Patches of the proxy Deployment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<Vec<Overlay>>,
    /// Patches of the proxy DaemonSet (`workload: DaemonSet`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daemon_set: Option<Vec<Overlay>>,
    /// Patches of the Service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<Vec<Overlay>>,
    /// Patches of the HorizontalPodAutoscaler (when autoscaling renders one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub horizontal_pod_autoscaler: Option<Vec<Overlay>>,
    /// Patches of the PodDisruptionBudget (when one is rendered).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_disruption_budget: Option<Vec<Overlay>>,
    /// Patches of the ServiceAccount.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<Vec<Overlay>>,
}

/// One patch (the shape of Envoy Gateway's `KubernetesPatchSpec`).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Overlay {
    /// How `value` is applied (default StrategicMerge).
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<OverlayType>,
    /// The patch: an object for StrategicMerge and JSONMerge, a list of operations for
    /// JSONPatch.
    #[schemars(schema_with = "any_json")]
    pub value: serde_json::Value,
}

/// How an overlay's value is applied.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
pub enum OverlayType {
    /// Kubernetes strategic merge patch: objects merge, lists of named items (containers, env,
    /// volumes, ports, ...) merge by their key, `$patch: delete` removes an item, `null`
    /// removes a field.
    #[default]
    StrategicMerge,
    /// JSON merge patch (RFC 7386): objects merge, lists are replaced, `null` removes.
    #[serde(rename = "JSONMerge")]
    JsonMerge,
    /// JSON patch (RFC 6902): a list of `add`, `remove`, `replace`, `move`, `copy` and `test`
    /// operations.
    #[serde(rename = "JSONPatch")]
    JsonPatch,
}

/// Any JSON value: a structural schema that keeps whatever is written.
fn any_json(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "x-kubernetes-preserve-unknown-fields": true
    })
}

/// The kind of workload that runs a fleet's proxy pods.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
pub enum Workload {
    /// An apps/v1 Deployment (replicas, or an HPA).
    #[default]
    Deployment,
    /// An apps/v1 DaemonSet: one proxy per node its scheduling settings allow.
    DaemonSet,
}

/// How Gateways of a class map to proxy fleets.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
pub enum Topology {
    /// One fleet per Gateway.
    #[default]
    Dedicated,
    /// One fleet per GatewayClass, serving every Gateway of the class.
    Shared,
}

/// The proxy Deployment and its container.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentParameters {
    /// Number of proxy replicas when autoscaling is off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub replicas: Option<i32>,
    /// Proxy container image; defaults to the operator's `--proxy-image`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub image: Option<String>,
    /// Image pull policy of the proxy container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<PullPolicy>,
    /// Compute resources of the proxy container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Extra environment variables of the proxy container (replaces the class list as a whole).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<EnvVar>>,
    /// Security context of the proxy container; defaults to a non-root, read-only, no-capability one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_security_context: Option<SecurityContext>,
    /// Seconds a terminating pod gets to drain its connections (default 30); more than
    /// `proxy.shutdown.drainDelay` plus `proxy.shutdown.drainTimeout`, by a second at least.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub termination_grace_period_seconds: Option<i64>,
}

/// Container image pull policy.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum PullPolicy {
    /// Always pull.
    Always,
    /// Pull only when the image is not present on the node.
    IfNotPresent,
    /// Never pull.
    Never,
}

/// The proxy pods.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PodParameters {
    /// Labels added to the proxy pods (merged key by key with the class's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// Annotations added to the proxy pods (merged key by key with the class's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// Node selector of the proxy pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<BTreeMap<String, String>>,
    /// Tolerations of the proxy pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerations: Option<Vec<Toleration>>,
    /// Affinity of the proxy pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// Topology spread constraints of the proxy pods. A `labelSelector` may be omitted: the
    /// operator fills in the fleet's own selector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topology_spread_constraints: Option<Vec<TopologySpreadConstraint>>,
    /// Pod security context; defaults to `runAsNonRoot` with the RuntimeDefault seccomp profile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_context: Option<PodSecurityContext>,
    /// Priority class of the proxy pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
    /// Run the proxy in the node's network namespace: listeners bind on the node's addresses
    /// (container ports become host ports, so two proxies of a fleet never share a node), DNS
    /// uses `ClusterFirstWithHostNet`, and rollouts replace a node's pod before starting its
    /// successor (`docs/reference/gatewayparameters.md#workload-and-hostnetwork`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_network: Option<bool>,
}

/// Horizontal autoscaling of the fleet.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.minReplicas) || !has(self.maxReplicas) || self.minReplicas <= self.maxReplicas").message("autoscaling.minReplicas must not exceed autoscaling.maxReplicas"))]
pub struct AutoscalingParameters {
    /// Whether an HPA is created. Set `false` at the Gateway level to opt out of a class default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Lower bound of replicas (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub min_replicas: Option<i32>,
    /// Upper bound of replicas (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_replicas: Option<i32>,
    /// Target average CPU utilization in percent of the request. When neither target is set, 80.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub target_cpu_utilization_percentage: Option<i32>,
    /// Target average memory utilization in percent of the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub target_memory_utilization_percentage: Option<i32>,
}

/// Disruption budget of the fleet.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(has(self.minAvailable) && has(self.maxUnavailable))").message("podDisruptionBudget: set minAvailable or maxUnavailable, not both"))]
pub struct PodDisruptionBudgetParameters {
    /// Whether a PDB is created. Set `false` at the Gateway level to opt out of a class default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Minimum available pods (number or percentage). When neither bound is set, 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_available: Option<IntOrString>,
    /// Maximum unavailable pods (number or percentage).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_unavailable: Option<IntOrString>,
}

/// The Service in front of the fleet.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!has(self.loadBalancerClass) || !has(self.type) || self.type == 'LoadBalancer'").message("service.loadBalancerClass requires service.type LoadBalancer"),
    validation = Rule::new("!has(self.loadBalancerSourceRanges) || !has(self.type) || self.type == 'LoadBalancer'").message("service.loadBalancerSourceRanges requires service.type LoadBalancer"),
    validation = Rule::new("!has(self.externalTrafficPolicy) || !has(self.type) || self.type != 'ClusterIP'").message("service.externalTrafficPolicy requires service.type NodePort or LoadBalancer"),
    validation = Rule::new("!has(self.nodePorts) || !has(self.type) || self.type != 'ClusterIP'").message("service.nodePorts requires service.type NodePort or LoadBalancer")
)]
pub struct ServiceParameters {
    /// Service type (default LoadBalancer).
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "type")]
    pub type_: Option<ServiceType>,
    /// Annotations of the Service (merged key by key with the class's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// External traffic policy (NodePort and LoadBalancer only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_traffic_policy: Option<ExternalTrafficPolicy>,
    /// Load balancer implementation class (LoadBalancer only; immutable once set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer_class: Option<String>,
    /// Client CIDRs allowed through the load balancer (LoadBalancer only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer_source_ranges: Option<Vec<String>>,
    /// Fixed node ports per listener port (NodePort and LoadBalancer only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_ports: Option<Vec<NodePort>>,
}

/// Kubernetes Service type.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ServiceType {
    /// Cluster-internal virtual IP.
    ClusterIP,
    /// A port on every node.
    NodePort,
    /// An external load balancer.
    LoadBalancer,
}

/// Service external traffic policy.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ExternalTrafficPolicy {
    /// Route to any ready endpoint in the cluster.
    Cluster,
    /// Route only to endpoints on the receiving node, keeping the client source IP.
    Local,
}

/// A fixed node port for one listener port.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NodePort {
    /// The listener port (as declared on the Gateway).
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// The node port to use for it.
    #[schemars(range(min = 1, max = 65535))]
    pub node_port: i32,
}

/// Settings of the proxy process.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ProxyParameters {
    /// Log level (`--log-level`, default info).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_level: Option<LogLevel>,
    /// Access log format (`--access-log-format`, default json).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_log_format: Option<AccessLogFormat>,
    /// Worker threads (`--worker-threads`); unset lets the proxy use one per CPU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1024))]
    pub worker_threads: Option<i32>,
    /// Offset added to listener ports below 1024 inside the pod (`--port-offset`, default 10000),
    /// so the proxy runs without NET_BIND_SERVICE. The Service keeps the declared port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 64000))]
    pub port_offset: Option<i32>,
    /// Limits and timeouts for clients and how their requests are read
    /// (`docs/security.md`); field names follow Envoy Gateway's ClientTrafficPolicy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_traffic: Option<ClientTrafficParameters>,
    /// How a proxy stops when its pod terminates (`docs/operations.md`). The drain delay plus
    /// the drain timeout must stay at least a second below
    /// `deployment.terminationGracePeriodSeconds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shutdown: Option<ShutdownParameters>,
    /// When a Gateway counts as `Programmed` (`docs/operations.md`): once enough ready replicas
    /// of its fleet serve its current generation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub programmed: Option<ProgrammedParameters>,
    /// OpenTelemetry tracing of requests (`docs/tracing.md`); unset traces nothing. Field
    /// names follow Envoy Gateway's EnvoyProxy `telemetry.tracing` where they agree.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracing: Option<TracingParameters>,
    /// Where the global rules of RateLimitPolicies are counted (`docs/rate-limits.md`); field
    /// names follow Envoy Gateway's `rateLimit.backend.redis`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimitParameters>,
}

/// The store every replica of the fleet counts global rate limits in.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RateLimitParameters {
    /// Redis (`--rate-limit-redis`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis: Option<RedisParameters>,
}

/// A Redis server.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RedisParameters {
    /// `redis://host:port[/db]`, or `rediss://` for TLS: `redis://redis.gantry-system:6379`.
    #[schemars(
        regex(pattern = r"^rediss?://[^\s/?#]+(/[0-9]+)?$"),
        length(max = 2048)
    )]
    pub url: String,
}

/// Where and how much the proxies trace: one SERVER span per sampled request, exported over
/// OTLP.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TracingParameters {
    /// The OTLP receiver, `http://host:port` (`--tracing-endpoint`), such as an OpenTelemetry
    /// Collector's Service: `http://otel-collector.observability:4318` for OTLP/HTTP, port
    /// 4317 for OTLP/gRPC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^http://[^\s/?#]+(/[^\s?#]*)?$"), length(max = 2048))]
    pub endpoint: Option<String>,
    /// `HTTP` (default) or `GRPC` (`--tracing-protocol`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<TracingProtocol>,
    /// Percentage of new traces sampled, 0 to 100 (`--tracing-sampling-ratio`, default 100); a
    /// request whose caller sent a valid `traceparent` follows the caller's decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub sampling_rate: Option<i32>,
    /// `service.name` of the spans (`--tracing-service-name`, default `gantry-proxy`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub service_name: Option<String>,
}

/// How spans are sent.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum TracingProtocol {
    /// OTLP/HTTP, protobuf bodies posted to `/v1/traces`.
    #[serde(rename = "HTTP")]
    Http,
    /// OTLP/gRPC over h2c.
    #[serde(rename = "GRPC")]
    Grpc,
}

/// `Programmed` means serving: a Gateway is `Programmed=True` only once this many ready
/// replicas of its fleet report that they serve its current generation; until then it is
/// `Programmed=False` with reason `Pending`, and with `NoResources` once the timeout has passed.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ProgrammedParameters {
    /// How many ready replicas must serve a Gateway's generation (`--programmed-min-replicas`).
    /// Default: every replica the fleet's Deployment wants (its `spec.replicas`, which an
    /// autoscaler changes), or every Pod of a DaemonSet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10000))]
    pub min_replicas: Option<i32>,
    /// How long a Gateway may stay `Pending` before the reason becomes `NoResources`
    /// (`--programmed-timeout`, default 60s), a Gateway API duration such as `2m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]{1,5}(h|m|s|ms)){1,4}$"))]
    pub timeout: Option<String>,
}

/// A proxy's graceful stop. On SIGTERM the proxy fails readiness and keeps serving for the
/// drain delay, so kube-proxy and load balancers stop sending it new connections, then stops
/// accepting and closes its connections within the drain timeout. Durations are Gateway API
/// durations (GEP-2257), such as `5s` or `1m30s`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ShutdownParameters {
    /// How long the proxy keeps serving, unready, after SIGTERM (`--drain-delay`, default
    /// 5s; `0s` stops accepting at once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]{1,5}(h|m|s|ms)){1,4}$"))]
    pub drain_delay: Option<String>,
    /// How long open connections may take to finish after the drain delay before they are
    /// dropped (`--drain-timeout`, default 20s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]{1,5}(h|m|s|ms)){1,4}$"))]
    pub drain_timeout: Option<String>,
}

/// Client-facing limits and request handling. Every field left unset keeps the proxy's default.
/// Durations are Gateway API durations (GEP-2257), such as `30s`, `500ms` or `1h2m`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ClientTrafficParameters {
    /// `%2F` and `%5C` in request paths (`--path-escaped-slashes`, default RejectRequest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escaped_slashes_action: Option<EscapedSlashesAction>,
    /// Keep runs of `/` in request paths instead of merging them (`--path-merge-slashes false`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable_merge_slashes: Option<bool>,
    /// Proxies in front whose X-Forwarded-* and Forwarded headers are trusted
    /// (`--trusted-proxy-hops`, default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 16))]
    pub num_trusted_hops: Option<i32>,
    /// Each request head, and the first after connecting, must arrive within this
    /// (`--client-header-timeout`, default 30s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]{1,5}(h|m|s|ms)){1,4}$"))]
    pub request_header_timeout: Option<String>,
    /// A connection with no request in flight is closed after this (`--client-idle-timeout`,
    /// default 60s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]{1,5}(h|m|s|ms)){1,4}$"))]
    pub idle_timeout: Option<String>,
    /// A connection whose responses stop moving is closed after this
    /// (`--client-stall-timeout`, default 300s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]{1,5}(h|m|s|ms)){1,4}$"))]
    pub stall_timeout: Option<String>,
    /// Longest wait for the next part of a request body (`--request-body-timeout`, default 60s;
    /// `0s` for none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]{1,5}(h|m|s|ms)){1,4}$"))]
    pub request_body_timeout: Option<String>,
    /// Request timeout of routes that set no `timeouts.request` (`--default-request-timeout`,
    /// default 60s; `0s` for none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]{1,5}(h|m|s|ms)){1,4}$"))]
    pub default_request_timeout: Option<String>,
    /// Client connections open at once per listener port (`--max-connections-per-listener`,
    /// default 10000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000000))]
    pub connection_limit: Option<i32>,
    /// Client connections open at once per proxy (`--max-connections`, default half the
    /// open-file limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000000))]
    pub max_connections: Option<i32>,
    /// Streams one HTTP/2 connection may have open (`--http2-max-concurrent-streams`,
    /// default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10000))]
    pub http2_max_concurrent_streams: Option<i32>,
}

/// What to do with encoded slashes in request paths (Envoy Gateway's names).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum EscapedSlashesAction {
    /// Answer 400.
    RejectRequest,
    /// Keep them encoded, as ordinary characters of a segment.
    KeepUnchanged,
}

/// Proxy log level.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Everything.
    Trace,
    /// Debugging detail.
    Debug,
    /// Normal operation.
    Info,
    /// Problems only.
    Warn,
    /// Failures only.
    Error,
}

/// Access log format.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AccessLogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable text.
    Text,
}

/// Certificate issuance: one of `issuerRef` and `acme`. A Gateway's parameters that set either
/// replace the class's choice as a whole.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(has(self.issuerRef) && has(self.acme))").message("certificates: set issuerRef or acme, not both"))]
pub struct CertificateParameters {
    /// cert-manager issuer used for HTTPS listeners whose certificateRef Secret does not exist yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer_ref: Option<IssuerRef>,
    /// The fleet obtains the certificates itself from an ACME (RFC 8555) CA such as Let's
    /// Encrypt (`docs/acme.md`): for each HTTPS listener whose certificateRef Secret in the
    /// Gateway's namespace does not exist, the fleet's leader orders a certificate for the
    /// listener's hostname, answers the CA's challenge and writes the Secret
    /// (`kubernetes.io/tls`); every replica serves it and it is renewed before it expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acme: Option<AcmeParameters>,
}

/// An ACME CA and how the fleet's account there obtains certificates.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AcmeParameters {
    /// The CA's ACME directory, an `https://` URL (`--acme-directory`), for example
    /// `https://acme-v02.api.letsencrypt.org/directory` (Let's Encrypt) or
    /// `https://acme-staging-v02.api.letsencrypt.org/directory` to try things out.
    #[schemars(regex(pattern = r"^https://[^\s/?#]+(/[^\s]*)?$"), length(max = 2048))]
    pub directory: String,
    /// Contact address of the ACME account (`--acme-email`); the CA writes there about
    /// expiring certificates and changes of its terms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[^\s@]+@[^\s@]+$"), length(max = 254))]
    pub email: Option<String>,
    /// A ConfigMap in the fleet's namespace holding the CA (PEM) to trust for the directory's
    /// HTTPS instead of the system's roots (`--acme-ca-file`): a private CA, or a test server
    /// such as pebble. Mounted read-only into the proxies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_certificate_ref: Option<AcmeCaCertificateRef>,
    /// External Account Binding, for CAs that require an account to be tied to one of theirs
    /// (`--acme-eab-kid`, `--acme-eab-hmac-file`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_account_binding: Option<ExternalAccountBinding>,
    /// How the CA validates a hostname (`--acme-challenge`, default HTTP01): `HTTP01` on the
    /// Gateway's HTTP listeners (port 80 for a public CA), `TLSALPN01` on the HTTPS listener's
    /// own port (443 for a public CA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub challenge: Option<AcmeChallenge>,
    /// The key of each certificate (`--acme-key-type`, default ECDSAP256).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_type: Option<AcmeKeyType>,
    /// Renew a certificate this long before it expires (`--acme-renew-before`, default `720h`,
    /// 30 days), a Gateway API duration such as `720h`; a certificate whose lifetime is shorter
    /// than three times this is renewed at two thirds of its lifetime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]{1,5}(h|m|s|ms)){1,4}$"))]
    pub renew_before: Option<String>,
}

/// A key of a ConfigMap in the fleet's namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AcmeCaCertificateRef {
    /// Name of the ConfigMap.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// The key holding the PEM certificates (default `ca.crt`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[-._a-zA-Z0-9]+$"), length(min = 1, max = 253))]
    pub key: Option<String>,
}

/// An ACME External Account Binding (RFC 8555 §7.3.4): the key id and HMAC key the CA gave.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ExternalAccountBinding {
    /// The key id the CA gave (`--acme-eab-kid`).
    #[serde(rename = "keyID")]
    #[schemars(length(min = 1, max = 1024))]
    pub key_id: String,
    /// A Secret in the fleet's namespace holding the HMAC key, base64url-encoded as the CA
    /// gives it (`--acme-eab-hmac-file`). Mounted read-only into the proxies.
    pub hmac_key_ref: SecretKeyRef,
}

/// A key of a Secret in the fleet's namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// The key within the Secret.
    #[schemars(regex(pattern = r"^[-._a-zA-Z0-9]+$"), length(min = 1, max = 253))]
    pub key: String,
}

/// How the ACME CA validates that the fleet serves a hostname (`--acme-challenge`, default
/// HTTP01): `HTTP01` on the Gateway's HTTP listeners (port 80 for a public CA), `TLSALPN01` on
/// the HTTPS listener's own port (443 for a public CA).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
pub enum AcmeChallenge {
    /// HTTP-01 (RFC 8555 §8.3): the CA fetches `/.well-known/acme-challenge/<token>` on port 80,
    /// answered on every HTTP listener of the Gateway.
    #[default]
    #[serde(rename = "HTTP01")]
    Http01,
    /// TLS-ALPN-01 (RFC 8737): the CA connects to port 443 offering the `acme-tls/1` protocol;
    /// the Gateway needs no HTTP listener.
    #[serde(rename = "TLSALPN01")]
    TlsAlpn01,
}

/// The key of each ACME certificate (`--acme-key-type`, default ECDSAP256): `ECDSAP256`, or
/// `RSA2048` for clients that cannot use ECDSA.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
pub enum AcmeKeyType {
    /// ECDSA on the P-256 curve.
    #[default]
    #[serde(rename = "ECDSAP256")]
    EcdsaP256,
    /// RSA, 2048 bits, for clients that cannot use ECDSA.
    #[serde(rename = "RSA2048")]
    Rsa2048,
}

/// A cert-manager issuer reference.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct IssuerRef {
    /// Name of the Issuer or ClusterIssuer.
    #[schemars(length(min = 1))]
    pub name: String,
    /// `Issuer` (namespaced, in the Gateway's namespace) or `ClusterIssuer` (default Issuer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<IssuerKind>,
    /// API group of the issuer (default cert-manager.io).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

/// cert-manager issuer kind.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum IssuerKind {
    /// A namespaced Issuer.
    Issuer,
    /// A cluster-wide ClusterIssuer.
    ClusterIssuer,
}
