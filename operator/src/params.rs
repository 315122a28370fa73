//! Merges GatewayParameters (built-in defaults < GatewayClass < Gateway) into resolved fleet settings.
//!
//! Merge rule: scalars and Kubernetes-typed values (resources, affinity, security contexts, lists)
//! are replaced as a whole by the more specific level; string maps (labels, annotations,
//! nodeSelector) are merged key by key. The merged result is checked again for contradictions,
//! because each level may be valid on its own (the CRD's CEL rules see one object only).

use std::collections::BTreeMap;

use crate::infra::overlay::OverlaySet;
use crate::skew;
use gantry_crds::params::{
    AccessLogFormat, AcmeChallenge, AcmeKeyType, AcmeParameters, AutoscalingParameters,
    CertificateParameters, ClientTrafficParameters, DeploymentParameters, ExternalTrafficPolicy,
    GatewayParametersSpec, IssuerRef, LogLevel, NodePort, Overlays, PodDisruptionBudgetParameters,
    PodParameters, ProgrammedParameters, ProxyParameters, PullPolicy, RateLimitParameters,
    ServiceParameters, ServiceType, ShutdownParameters, Topology, TracingParameters, Workload,
};
use gantry_translate::ports;
use k8s_openapi::api::core::v1::{
    Capabilities, EnvVar, PodSecurityContext, ResourceRequirements, SeccompProfile, SecurityContext,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// Defaults that come from the operator's command line rather than from the code.
#[derive(Clone, Debug, PartialEq)]
pub struct OperatorDefaults {
    /// Proxy image used when no parameters name one.
    pub proxy_image: String,
    /// The roles, installed with the operator, that fleets are bound to.
    pub proxy_roles: ProxyRoles,
}

/// The roles that hold what proxy fleets may do. The chart installs them; the operator only
/// binds them (RBAC `bind` on these names), so it never needs to hold what it grants and never
/// creates or edits a role. `<prefix>`: reads of Gateway API objects, Services and
/// EndpointSlices (and Namespaces, cluster-wide only), and status writes;
/// `<prefix>-leader-election`: Leases (a RoleBinding in the fleet's namespace);
/// `<prefix>-secrets` and `<prefix>-configmaps`: reads (a RoleBinding in each namespace whose
/// Secrets or ConfigMaps the fleet's Gateways reference); `<prefix>-acme`: Secrets written and
/// Events recorded by a fleet that obtains certificates itself (`certificates.acme`; a
/// RoleBinding in the fleet's namespace and in each namespace of its Gateways and their
/// ListenerSets).
///
/// Cluster-wide installs bind ClusterRoles (`<prefix>` with one ClusterRoleBinding per class);
/// a namespace-scoped install (`namespace` set) binds Roles of the same names in that namespace,
/// with RoleBindings only, and its fleets watch only that namespace (`--watch-namespace`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxyRoles {
    /// `--proxy-role-prefix`.
    pub prefix: String,
    /// `--namespace`: the roles are Roles in this namespace, and fleets only watch it.
    pub namespace: Option<String>,
}

impl Default for ProxyRoles {
    fn default() -> Self {
        Self {
            prefix: "gantry-proxy".to_string(),
            namespace: None,
        }
    }
}

impl ProxyRoles {
    /// Reads of Gateway API objects, Services and EndpointSlices, and status writes:
    /// cluster-wide (a ClusterRole), or in the install's namespace (a Role).
    pub fn cluster(&self) -> String {
        self.prefix.clone()
    }

    /// `ClusterRole`, or `Role` in a namespace-scoped install: the kind of every roleRef.
    pub fn kind(&self) -> &'static str {
        if self.namespace.is_some() {
            "Role"
        } else {
            "ClusterRole"
        }
    }

    /// Leases, for the status writer's leader election.
    pub fn leader_election(&self) -> String {
        format!("{}-leader-election", self.prefix)
    }

    /// Reads of Secrets in one namespace.
    pub fn secrets(&self) -> String {
        format!("{}-secrets", self.prefix)
    }

    /// Reads of ConfigMaps in one namespace.
    pub fn config_maps(&self) -> String {
        format!("{}-configmaps", self.prefix)
    }

    /// ACME issuance in one namespace: Secrets read, created and patched (certificates, and the
    /// fleet's ACME state in its own namespace), Events recorded.
    pub fn acme(&self) -> String {
        format!("{}-acme", self.prefix)
    }
}

/// Settings of one fleet after merging every level; nothing left to default.
#[derive(Clone, Debug, PartialEq)]
pub struct FleetParameters {
    /// Dedicated or shared.
    pub topology: Topology,
    /// Deployment or DaemonSet.
    pub workload: Workload,
    /// Replicas when autoscaling is off.
    pub replicas: i32,
    /// Proxy image.
    pub image: String,
    /// Pull policy.
    pub image_pull_policy: PullPolicy,
    /// Container resources.
    pub resources: ResourceRequirements,
    /// Extra environment.
    pub env: Vec<EnvVar>,
    /// Container security context.
    pub container_security_context: SecurityContext,
    /// Drain time.
    pub termination_grace_period_seconds: i64,
    /// Pod scheduling and metadata (maps merged; security context resolved below).
    pub pod: PodParameters,
    /// Pod security context.
    pub pod_security_context: PodSecurityContext,
    /// HPA settings, when enabled.
    pub autoscaling: Option<Autoscaling>,
    /// PDB settings, when enabled.
    pub pod_disruption_budget: Option<DisruptionBudget>,
    /// Service settings.
    pub service: ServiceSettings,
    /// Proxy process flags.
    pub proxy: ProxySettings,
    /// cert-manager issuer, when issuance is configured.
    pub issuer_ref: Option<IssuerRef>,
    /// The fleet's own ACME issuance (`certificates.acme`), when configured.
    pub acme: Option<AcmeSettings>,
    /// `overlays`, class first then Gateway, applied to the rendered objects.
    pub overlays: OverlaySet,
    /// The ClusterRoles the fleet is bound to.
    pub roles: ProxyRoles,
}

/// Resolved autoscaling.
#[derive(Clone, Debug, PartialEq)]
pub struct Autoscaling {
    /// Lower bound.
    pub min_replicas: i32,
    /// Upper bound.
    pub max_replicas: i32,
    /// CPU utilization target, percent.
    pub cpu: Option<i32>,
    /// Memory utilization target, percent.
    pub memory: Option<i32>,
}

/// Resolved disruption budget: exactly one bound.
#[derive(Clone, Debug, PartialEq)]
pub enum DisruptionBudget {
    /// `minAvailable`.
    MinAvailable(IntOrString),
    /// `maxUnavailable`.
    MaxUnavailable(IntOrString),
}

/// Resolved Service settings.
#[derive(Clone, Debug, PartialEq)]
pub struct ServiceSettings {
    /// Service type.
    pub type_: ServiceType,
    /// Service annotations.
    pub annotations: BTreeMap<String, String>,
    /// External traffic policy.
    pub external_traffic_policy: Option<ExternalTrafficPolicy>,
    /// Load balancer class.
    pub load_balancer_class: Option<String>,
    /// Source ranges.
    pub load_balancer_source_ranges: Vec<String>,
    /// Fixed node ports.
    pub node_ports: Vec<NodePort>,
}

/// Resolved proxy flags.
#[derive(Clone, Debug, PartialEq)]
pub struct ProxySettings {
    /// `--log-level`.
    pub log_level: LogLevel,
    /// `--access-log-format`.
    pub access_log_format: AccessLogFormat,
    /// `--worker-threads`, when set.
    pub worker_threads: Option<i32>,
    /// `--port-offset`, checked by the rule the proxy binds with
    /// ([`gantry_translate::ports::port_offset`]).
    pub port_offset: u16,
    /// Client limits and timeouts; each set field becomes a flag (durations in milliseconds).
    pub client_traffic: ClientTrafficParameters,
    /// `--drain-delay`, in milliseconds.
    pub drain_delay_ms: u128,
    /// `--drain-timeout`, in milliseconds.
    pub drain_timeout_ms: u128,
    /// `--programmed-min-replicas`, when set.
    pub programmed_min_replicas: Option<i32>,
    /// `--programmed-timeout`, in milliseconds.
    pub programmed_timeout_ms: u128,
    /// `proxy.tracing`, when it names an endpoint: the `--tracing-*` flags.
    pub tracing: Option<TracingParameters>,
    /// `proxy.rateLimit.redis.url`: `--rate-limit-redis`.
    pub rate_limit_redis: Option<String>,
}

/// Resolved `certificates.acme`: what the `--acme-*` flags say, and the ConfigMap and Secret
/// keys mounted for the files they name.
#[derive(Clone, Debug, PartialEq)]
pub struct AcmeSettings {
    /// `--acme-directory`.
    pub directory: String,
    /// `--acme-email`, when set.
    pub email: Option<String>,
    /// The ConfigMap (in the fleet's namespace) and key of `--acme-ca-file`, when set.
    pub ca_certificate: Option<(String, String)>,
    /// `--acme-eab-kid`, and the Secret (in the fleet's namespace) and key of
    /// `--acme-eab-hmac-file`, when set.
    pub external_account_binding: Option<AcmeBinding>,
    /// `--acme-challenge`.
    pub challenge: AcmeChallenge,
    /// `--acme-key-type`.
    pub key_type: AcmeKeyType,
    /// `--acme-renew-before`, in milliseconds.
    pub renew_before_ms: u128,
}

/// A resolved External Account Binding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AcmeBinding {
    /// The key id.
    pub key_id: String,
    /// The Secret holding the HMAC key.
    pub secret: String,
    /// Its key.
    pub key: String,
}

/// Default of `certificates.acme.renewBefore` (the proxy's own default, 30 days).
pub const DEFAULT_ACME_RENEW_BEFORE: &str = "720h";
/// Default of `certificates.acme.caCertificateRef.key`.
pub const DEFAULT_ACME_CA_KEY: &str = "ca.crt";

/// Default of `proxy.programmed.timeout` (the proxy's own default, `--programmed-timeout`).
pub const DEFAULT_PROGRAMMED_TIMEOUT: &str = "60s";

/// Default of `proxy.shutdown.drainDelay` (the proxy's own default, `--drain-delay`).
pub const DEFAULT_DRAIN_DELAY: &str = "5s";
/// Default of `proxy.shutdown.drainTimeout` (the proxy's own default, `--drain-timeout`).
pub const DEFAULT_DRAIN_TIMEOUT: &str = "20s";
/// Default of `deployment.terminationGracePeriodSeconds` (Kubernetes' own default).
pub const DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS: i64 = 30;
/// What the grace period must leave beyond the drain delay and timeout: the proxy's own stop
/// (the Lease handed back, the process exiting) happens after them.
pub const STOP_MARGIN_MS: u128 = 1000;

/// Default offset for listener ports below 1024.
pub const DEFAULT_PORT_OFFSET: u16 = 10000;
/// UID of the distroless `nonroot` user the proxy image runs as.
pub const PROXY_UID: i64 = 65532;

/// Overlays `over` onto `base`, field by field.
pub fn merge(base: &GatewayParametersSpec, over: &GatewayParametersSpec) -> GatewayParametersSpec {
    GatewayParametersSpec {
        topology: pick(&base.topology, &over.topology),
        workload: pick(&base.workload, &over.workload),
        deployment: nested(&base.deployment, &over.deployment, merge_deployment),
        pod: nested(&base.pod, &over.pod, merge_pod),
        autoscaling: nested(&base.autoscaling, &over.autoscaling, |b, o| {
            AutoscalingParameters {
                enabled: pick(&b.enabled, &o.enabled),
                min_replicas: pick(&b.min_replicas, &o.min_replicas),
                max_replicas: pick(&b.max_replicas, &o.max_replicas),
                target_cpu_utilization_percentage: pick(
                    &b.target_cpu_utilization_percentage,
                    &o.target_cpu_utilization_percentage,
                ),
                target_memory_utilization_percentage: pick(
                    &b.target_memory_utilization_percentage,
                    &o.target_memory_utilization_percentage,
                ),
            }
        }),
        pod_disruption_budget: nested(
            &base.pod_disruption_budget,
            &over.pod_disruption_budget,
            merge_pdb,
        ),
        service: nested(&base.service, &over.service, merge_service),
        proxy: nested(&base.proxy, &over.proxy, |b, o| ProxyParameters {
            log_level: pick(&b.log_level, &o.log_level),
            access_log_format: pick(&b.access_log_format, &o.access_log_format),
            worker_threads: pick(&b.worker_threads, &o.worker_threads),
            port_offset: pick(&b.port_offset, &o.port_offset),
            client_traffic: nested(&b.client_traffic, &o.client_traffic, |b, o| {
                ClientTrafficParameters {
                    escaped_slashes_action: pick(
                        &b.escaped_slashes_action,
                        &o.escaped_slashes_action,
                    ),
                    disable_merge_slashes: pick(&b.disable_merge_slashes, &o.disable_merge_slashes),
                    num_trusted_hops: pick(&b.num_trusted_hops, &o.num_trusted_hops),
                    request_header_timeout: pick(
                        &b.request_header_timeout,
                        &o.request_header_timeout,
                    ),
                    idle_timeout: pick(&b.idle_timeout, &o.idle_timeout),
                    stall_timeout: pick(&b.stall_timeout, &o.stall_timeout),
                    request_body_timeout: pick(&b.request_body_timeout, &o.request_body_timeout),
                    default_request_timeout: pick(
                        &b.default_request_timeout,
                        &o.default_request_timeout,
                    ),
                    connection_limit: pick(&b.connection_limit, &o.connection_limit),
                    max_connections: pick(&b.max_connections, &o.max_connections),
                    http2_max_concurrent_streams: pick(
                        &b.http2_max_concurrent_streams,
                        &o.http2_max_concurrent_streams,
                    ),
                }
            }),
            shutdown: nested(&b.shutdown, &o.shutdown, |b, o| ShutdownParameters {
                drain_delay: pick(&b.drain_delay, &o.drain_delay),
                drain_timeout: pick(&b.drain_timeout, &o.drain_timeout),
            }),
            programmed: nested(&b.programmed, &o.programmed, |b, o| ProgrammedParameters {
                min_replicas: pick(&b.min_replicas, &o.min_replicas),
                timeout: pick(&b.timeout, &o.timeout),
            }),
            tracing: nested(&b.tracing, &o.tracing, |b, o| TracingParameters {
                endpoint: pick(&b.endpoint, &o.endpoint),
                protocol: pick(&b.protocol, &o.protocol),
                sampling_rate: pick(&b.sampling_rate, &o.sampling_rate),
                service_name: pick(&b.service_name, &o.service_name),
            }),
            rate_limit: nested(&b.rate_limit, &o.rate_limit, |b, o| RateLimitParameters {
                redis: pick(&b.redis, &o.redis),
            }),
        }),
        certificates: nested(&base.certificates, &over.certificates, merge_certificates),
        // Patches accumulate: the class's apply first, then the Gateway's.
        overlays: nested(&base.overlays, &over.overlays, |b, o| Overlays {
            deployment: concat(&b.deployment, &o.deployment),
            daemon_set: concat(&b.daemon_set, &o.daemon_set),
            service: concat(&b.service, &o.service),
            horizontal_pod_autoscaler: concat(
                &b.horizontal_pod_autoscaler,
                &o.horizontal_pod_autoscaler,
            ),
            pod_disruption_budget: concat(&b.pod_disruption_budget, &o.pod_disruption_budget),
            service_account: concat(&b.service_account, &o.service_account),
        }),
    }
}

fn concat<T: Clone>(base: &Option<Vec<T>>, over: &Option<Vec<T>>) -> Option<Vec<T>> {
    match (base, over) {
        (Some(b), Some(o)) => Some(b.iter().chain(o).cloned().collect()),
        _ => pick(base, over),
    }
}

fn merge_deployment(b: &DeploymentParameters, o: &DeploymentParameters) -> DeploymentParameters {
    DeploymentParameters {
        replicas: pick(&b.replicas, &o.replicas),
        image: pick(&b.image, &o.image),
        image_pull_policy: pick(&b.image_pull_policy, &o.image_pull_policy),
        resources: pick(&b.resources, &o.resources),
        env: pick(&b.env, &o.env),
        container_security_context: pick(
            &b.container_security_context,
            &o.container_security_context,
        ),
        termination_grace_period_seconds: pick(
            &b.termination_grace_period_seconds,
            &o.termination_grace_period_seconds,
        ),
    }
}

fn merge_pod(b: &PodParameters, o: &PodParameters) -> PodParameters {
    PodParameters {
        labels: merge_maps(&b.labels, &o.labels),
        annotations: merge_maps(&b.annotations, &o.annotations),
        node_selector: merge_maps(&b.node_selector, &o.node_selector),
        tolerations: pick(&b.tolerations, &o.tolerations),
        affinity: pick(&b.affinity, &o.affinity),
        topology_spread_constraints: pick(
            &b.topology_spread_constraints,
            &o.topology_spread_constraints,
        ),
        security_context: pick(&b.security_context, &o.security_context),
        priority_class_name: pick(&b.priority_class_name, &o.priority_class_name),
        host_network: pick(&b.host_network, &o.host_network),
    }
}

/// An issuer chosen at the more specific level (`issuerRef` or `acme`) replaces the other
/// level's choice as a whole, so a Gateway can move from cert-manager to ACME (or back) without a
/// contradiction; each is one issuer, never merged field by field.
fn merge_certificates(
    b: &CertificateParameters,
    o: &CertificateParameters,
) -> CertificateParameters {
    if o.issuer_ref.is_some() || o.acme.is_some() {
        o.clone()
    } else {
        b.clone()
    }
}

/// A bound set at the more specific level replaces both bounds of the less specific one, so a
/// Gateway can switch from `minAvailable` to `maxUnavailable` without a contradiction.
fn merge_pdb(
    b: &PodDisruptionBudgetParameters,
    o: &PodDisruptionBudgetParameters,
) -> PodDisruptionBudgetParameters {
    let over_sets_bound = o.min_available.is_some() || o.max_unavailable.is_some();
    let (min_available, max_unavailable) = if over_sets_bound {
        (o.min_available.clone(), o.max_unavailable.clone())
    } else {
        (b.min_available.clone(), b.max_unavailable.clone())
    };
    PodDisruptionBudgetParameters {
        enabled: pick(&b.enabled, &o.enabled),
        min_available,
        max_unavailable,
    }
}

fn merge_service(b: &ServiceParameters, o: &ServiceParameters) -> ServiceParameters {
    ServiceParameters {
        type_: pick(&b.type_, &o.type_),
        annotations: merge_maps(&b.annotations, &o.annotations),
        external_traffic_policy: pick(&b.external_traffic_policy, &o.external_traffic_policy),
        load_balancer_class: pick(&b.load_balancer_class, &o.load_balancer_class),
        load_balancer_source_ranges: pick(
            &b.load_balancer_source_ranges,
            &o.load_balancer_source_ranges,
        ),
        node_ports: pick(&b.node_ports, &o.node_ports),
    }
}

fn pick<T: Clone>(base: &Option<T>, over: &Option<T>) -> Option<T> {
    over.clone().or_else(|| base.clone())
}

fn nested<T: Clone>(base: &Option<T>, over: &Option<T>, f: impl Fn(&T, &T) -> T) -> Option<T> {
    match (base, over) {
        (Some(b), Some(o)) => Some(f(b, o)),
        _ => pick(base, over),
    }
}

fn merge_maps(
    base: &Option<BTreeMap<String, String>>,
    over: &Option<BTreeMap<String, String>>,
) -> Option<BTreeMap<String, String>> {
    match (base, over) {
        (Some(b), Some(o)) => {
            let mut merged = b.clone();
            merged.extend(o.iter().map(|(k, v)| (k.clone(), v.clone())));
            Some(merged)
        }
        _ => pick(base, over),
    }
}

/// Resolves a merged spec into fleet settings, or lists every contradiction found in it.
pub fn resolve(
    spec: &GatewayParametersSpec,
    defaults: &OperatorDefaults,
) -> Result<FleetParameters, Vec<String>> {
    let overlays = OverlaySet::from_levels(spec.overlays.as_ref());
    let mut problems = contradictions(spec);
    problems.extend(overlays.problems());
    if !problems.is_empty() {
        return Err(problems);
    }
    let port_offset = port_offset(spec.proxy.as_ref()).map_err(|problem| vec![problem])?;
    let drain = drain(spec)?;
    let programmed = programmed(spec)?;
    let deployment = spec.deployment.clone().unwrap_or_default();
    let image = deployment
        .image
        .clone()
        .unwrap_or_else(|| defaults.proxy_image.clone());
    let operator = semver::Version::parse(skew::OPERATOR_VERSION).expect("a semver crate version");
    if let Some(problem) = skew::unsupported(&image, &operator) {
        return Err(vec![problem]);
    }
    let pod = spec.pod.clone().unwrap_or_default();
    let service = spec.service.clone().unwrap_or_default();
    let proxy = spec.proxy.clone().unwrap_or_default();
    Ok(FleetParameters {
        roles: defaults.proxy_roles.clone(),
        topology: spec.topology.unwrap_or_default(),
        workload: spec.workload.unwrap_or_default(),
        replicas: deployment.replicas.unwrap_or(1),
        image,
        image_pull_policy: deployment
            .image_pull_policy
            .unwrap_or(PullPolicy::IfNotPresent),
        resources: deployment.resources.unwrap_or_else(default_resources),
        env: deployment.env.unwrap_or_default(),
        container_security_context: deployment
            .container_security_context
            .unwrap_or_else(default_container_security_context),
        termination_grace_period_seconds: deployment
            .termination_grace_period_seconds
            .unwrap_or(DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS),
        pod_security_context: pod
            .security_context
            .clone()
            .unwrap_or_else(default_pod_security_context),
        pod,
        autoscaling: spec
            .autoscaling
            .as_ref()
            .filter(|a| a.enabled.unwrap_or(true))
            .map(|a| {
                let memory = a.target_memory_utilization_percentage;
                let cpu = a.target_cpu_utilization_percentage.or(if memory.is_none() {
                    Some(80)
                } else {
                    None
                });
                Autoscaling {
                    min_replicas: a.min_replicas.unwrap_or(1),
                    max_replicas: a
                        .max_replicas
                        .unwrap_or(10)
                        .max(a.min_replicas.unwrap_or(1)),
                    cpu,
                    memory,
                }
            }),
        pod_disruption_budget: spec
            .pod_disruption_budget
            .as_ref()
            .filter(|p| p.enabled.unwrap_or(true))
            .map(|p| match (&p.min_available, &p.max_unavailable) {
                (_, Some(max)) => DisruptionBudget::MaxUnavailable(max.clone()),
                (Some(min), None) => DisruptionBudget::MinAvailable(min.clone()),
                (None, None) => DisruptionBudget::MinAvailable(IntOrString::Int(1)),
            }),
        service: ServiceSettings {
            type_: service.type_.unwrap_or(ServiceType::LoadBalancer),
            annotations: service.annotations.unwrap_or_default(),
            external_traffic_policy: service.external_traffic_policy,
            load_balancer_class: service.load_balancer_class,
            load_balancer_source_ranges: service.load_balancer_source_ranges.unwrap_or_default(),
            node_ports: service.node_ports.unwrap_or_default(),
        },
        proxy: ProxySettings {
            log_level: proxy.log_level.unwrap_or(LogLevel::Info),
            access_log_format: proxy.access_log_format.unwrap_or(AccessLogFormat::Json),
            worker_threads: proxy.worker_threads,
            port_offset,
            client_traffic: proxy.client_traffic.unwrap_or_default(),
            drain_delay_ms: drain.delay_ms,
            drain_timeout_ms: drain.timeout_ms,
            programmed_min_replicas: programmed.min_replicas,
            programmed_timeout_ms: programmed.timeout_ms,
            tracing: proxy.tracing.filter(|t| t.endpoint.is_some()),
            rate_limit_redis: proxy.rate_limit.and_then(|r| r.redis).map(|r| r.url),
        },
        issuer_ref: spec
            .certificates
            .as_ref()
            .and_then(|c| c.issuer_ref.clone()),
        acme: spec
            .certificates
            .as_ref()
            .and_then(|c| c.acme.as_ref())
            .map(acme_settings),
        overlays,
    })
}

/// Contradictions in a merged spec, and values the proxy would refuse on its command line, each
/// as a sentence naming the fields involved.
pub fn contradictions(spec: &GatewayParametersSpec) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some(a) = &spec.autoscaling
        && a.enabled.unwrap_or(true)
        && let (Some(min), Some(max)) = (a.min_replicas, a.max_replicas)
        && min > max
    {
        problems.push(format!(
            "autoscaling.minReplicas ({min}) exceeds autoscaling.maxReplicas ({max})"
        ));
    }
    if let Some(p) = &spec.pod_disruption_budget
        && p.min_available.is_some()
        && p.max_unavailable.is_some()
    {
        problems.push(
            "podDisruptionBudget sets both minAvailable and maxUnavailable; set one".to_string(),
        );
    }
    if let Some(s) = &spec.service {
        let type_ = s.type_.unwrap_or(ServiceType::LoadBalancer);
        let lb_only = [
            ("loadBalancerClass", s.load_balancer_class.is_some()),
            (
                "loadBalancerSourceRanges",
                s.load_balancer_source_ranges.is_some(),
            ),
        ];
        for (field, set) in lb_only {
            if set && type_ != ServiceType::LoadBalancer {
                problems.push(format!(
                    "service.{field} requires service.type LoadBalancer, not {type_:?}"
                ));
            }
        }
        let external = [
            ("externalTrafficPolicy", s.external_traffic_policy.is_some()),
            ("nodePorts", s.node_ports.is_some()),
        ];
        for (field, set) in external {
            if set && type_ == ServiceType::ClusterIP {
                problems.push(format!(
                    "service.{field} requires service.type NodePort or LoadBalancer, not ClusterIP"
                ));
            }
        }
    }
    if let Err(problem) = port_offset(spec.proxy.as_ref()) {
        problems.push(problem);
    }
    if let Some(threads) = spec.proxy.as_ref().and_then(|p| p.worker_threads)
        && threads < 1
    {
        problems.push(format!(
            "proxy.workerThreads must be at least 1, not {threads} (leave it unset for one thread \
             per CPU)"
        ));
    }
    if let Some(traffic) = spec.proxy.as_ref().and_then(|p| p.client_traffic.as_ref()) {
        problems.extend(client_traffic_problems(traffic));
    }
    if let Err(drain_problems) = drain(spec) {
        problems.extend(drain_problems);
    }
    if let Err(programmed_problems) = programmed(spec) {
        problems.extend(programmed_problems);
    }
    if let Some(i) = spec
        .certificates
        .as_ref()
        .and_then(|c| c.issuer_ref.as_ref())
        && i.name.is_empty()
    {
        problems.push("certificates.issuerRef.name must not be empty".to_string());
    }
    if let Some(c) = &spec.certificates {
        if c.issuer_ref.is_some() && c.acme.is_some() {
            problems.push(
                "certificates sets both issuerRef (cert-manager) and acme (the fleet's own ACME \
                 client); set one"
                    .to_string(),
            );
        }
        if let Some(acme) = &c.acme {
            problems.extend(acme_problems(acme));
        }
    }
    problems
}

/// Values of `certificates.acme` the proxy would refuse, or that could never work (the schema
/// checks most too; this catches what reaches the operator another way).
fn acme_problems(acme: &AcmeParameters) -> Vec<String> {
    let mut problems = Vec::new();
    let host = acme.directory.strip_prefix("https://").unwrap_or_default();
    if host.is_empty() || host.starts_with('/') || acme.directory.contains(char::is_whitespace) {
        problems.push(format!(
            "certificates.acme.directory must be an https:// URL such as \
             \"https://acme-v02.api.letsencrypt.org/directory\", not {:?}",
            acme.directory
        ));
    }
    if let Some(value) = &acme.renew_before {
        match gateway_duration_ms(value) {
            Ok(0) => problems.push(format!(
                "certificates.acme.renewBefore must be more than 0s, not {value:?} (leave it unset \
                 for {DEFAULT_ACME_RENEW_BEFORE})"
            )),
            Ok(_) => {}
            Err(error) => problems.push(format!(
                "certificates.acme.renewBefore {value:?} is not a duration such as \"720h\": {error}"
            )),
        }
    }
    if let Some(ca) = &acme.ca_certificate_ref
        && (ca.name.is_empty() || ca.key.as_deref() == Some(""))
    {
        problems.push(
            "certificates.acme.caCertificateRef needs a ConfigMap name (and a key, when set, \
             that is not empty)"
                .to_string(),
        );
    }
    if let Some(eab) = &acme.external_account_binding
        && (eab.key_id.is_empty()
            || eab.hmac_key_ref.name.is_empty()
            || eab.hmac_key_ref.key.is_empty())
    {
        problems.push(
            "certificates.acme.externalAccountBinding needs a keyID and an hmacKeyRef with a \
             Secret name and key"
                .to_string(),
        );
    }
    problems
}

/// `certificates.acme`, checked by [`acme_problems`], with its defaults filled in.
fn acme_settings(acme: &AcmeParameters) -> AcmeSettings {
    let renew_before = acme
        .renew_before
        .as_deref()
        .unwrap_or(DEFAULT_ACME_RENEW_BEFORE);
    AcmeSettings {
        directory: acme.directory.clone(),
        email: acme.email.clone(),
        ca_certificate: acme.ca_certificate_ref.as_ref().map(|ca| {
            (
                ca.name.clone(),
                ca.key
                    .clone()
                    .unwrap_or_else(|| DEFAULT_ACME_CA_KEY.to_string()),
            )
        }),
        external_account_binding: acme
            .external_account_binding
            .as_ref()
            .map(|eab| AcmeBinding {
                key_id: eab.key_id.clone(),
                secret: eab.hmac_key_ref.name.clone(),
                key: eab.hmac_key_ref.key.clone(),
            }),
        challenge: acme.challenge.unwrap_or_default(),
        key_type: acme.key_type.unwrap_or_default(),
        // Checked above; the default is a valid duration.
        renew_before_ms: gateway_duration_ms(renew_before).unwrap_or(30 * 24 * 3_600_000),
    }
}

/// Values of `proxy.clientTraffic` the proxy would refuse: durations that are not Gateway API
/// durations, numbers out of range (the schema checks both too; this catches what reaches the
/// operator another way).
fn client_traffic_problems(t: &ClientTrafficParameters) -> Vec<String> {
    let mut problems = Vec::new();
    let durations = [
        ("requestHeaderTimeout", &t.request_header_timeout),
        ("idleTimeout", &t.idle_timeout),
        ("stallTimeout", &t.stall_timeout),
        ("requestBodyTimeout", &t.request_body_timeout),
        ("defaultRequestTimeout", &t.default_request_timeout),
    ];
    for (field, value) in durations {
        if let Some(value) = value
            && let Err(error) = gateway_duration_ms(value)
        {
            problems.push(format!(
                "proxy.clientTraffic.{field} {value:?} is not a duration such as \"30s\": {error}"
            ));
        }
    }
    let numbers = [
        ("numTrustedHops", t.num_trusted_hops, 0),
        ("connectionLimit", t.connection_limit, 1),
        ("maxConnections", t.max_connections, 1),
        (
            "http2MaxConcurrentStreams",
            t.http2_max_concurrent_streams,
            1,
        ),
    ];
    for (field, value, min) in numbers {
        if let Some(value) = value
            && value < min
        {
            problems.push(format!(
                "proxy.clientTraffic.{field} must be at least {min}, not {value}"
            ));
        }
    }
    problems
}

/// A Gateway API duration (GEP-2257) in milliseconds.
pub fn gateway_duration_ms(value: &str) -> Result<u128, String> {
    use std::str::FromStr;
    gantry_crds::gateway::Duration::from_str(value)
        .map(|d| d.as_millis())
        .map_err(|e| e.to_string())
}

/// `proxy.programmed`, resolved.
struct Programmed {
    min_replicas: Option<i32>,
    timeout_ms: u128,
}

/// `proxy.programmed`, or the defaults, checked: a timeout of at least a second, and a
/// minimum the fleet can reach (at most `deployment.replicas`, or the autoscaler's
/// `maxReplicas`), or no Gateway of the fleet could ever be `Programmed`.
fn programmed(spec: &GatewayParametersSpec) -> Result<Programmed, Vec<String>> {
    let programmed = spec.proxy.as_ref().and_then(|p| p.programmed.as_ref());
    let mut problems = Vec::new();
    let timeout = programmed
        .and_then(|p| p.timeout.as_deref())
        .unwrap_or(DEFAULT_PROGRAMMED_TIMEOUT);
    let timeout_ms = match gateway_duration_ms(timeout) {
        Ok(ms) if ms >= 1000 => ms,
        Ok(_) => {
            problems.push(format!(
                "proxy.programmed.timeout {timeout:?} must be at least 1s: replicas need time \
                 to apply a new configuration"
            ));
            0
        }
        Err(error) => {
            problems.push(format!(
                "proxy.programmed.timeout {timeout:?} is not a duration such as \"60s\": {error}"
            ));
            0
        }
    };
    let min_replicas = programmed.and_then(|p| p.min_replicas);
    if let Some(min) = min_replicas {
        // As resolved below: autoscaling on unless disabled, up to 10 replicas by default;
        // otherwise `deployment.replicas`, default 1.
        let most = match spec
            .autoscaling
            .as_ref()
            .filter(|a| a.enabled.unwrap_or(true))
        {
            Some(a) => a
                .max_replicas
                .unwrap_or(10)
                .max(a.min_replicas.unwrap_or(1)),
            None => spec
                .deployment
                .as_ref()
                .and_then(|d| d.replicas)
                .unwrap_or(1),
        };
        if min < 1 {
            problems.push(format!(
                "proxy.programmed.minReplicas must be at least 1, not {min} (leave it unset to \
                 wait for every replica)"
            ));
        } else if spec.workload != Some(Workload::DaemonSet) && min > most {
            problems.push(format!(
                "proxy.programmed.minReplicas ({min}) is more than the fleet can have ({most}): \
                 no Gateway of it could ever be Programmed"
            ));
        }
    }
    if problems.is_empty() {
        Ok(Programmed {
            min_replicas,
            timeout_ms,
        })
    } else {
        Err(problems)
    }
}

/// The drain delay and timeout, resolved.
struct Drain {
    delay_ms: u128,
    timeout_ms: u128,
}

/// `proxy.shutdown`, or the defaults, checked: each a Gateway API duration, and together
/// within the termination grace period with [`STOP_MARGIN_MS`] to spare. The kubelet sends
/// SIGKILL when the grace period ends, so a proxy still draining then drops what is open, and
/// one still in its drain delay drops connections it has just accepted.
fn drain(spec: &GatewayParametersSpec) -> Result<Drain, Vec<String>> {
    let shutdown = spec.proxy.as_ref().and_then(|p| p.shutdown.as_ref());
    let duration = |field: &str, value: Option<&String>, default: &str| {
        let value = value.map_or(default, String::as_str);
        gateway_duration_ms(value).map_err(|error| {
            format!("proxy.shutdown.{field} {value:?} is not a duration such as \"5s\": {error}")
        })
    };
    let delay = duration(
        "drainDelay",
        shutdown.and_then(|s| s.drain_delay.as_ref()),
        DEFAULT_DRAIN_DELAY,
    );
    let timeout = duration(
        "drainTimeout",
        shutdown.and_then(|s| s.drain_timeout.as_ref()),
        DEFAULT_DRAIN_TIMEOUT,
    );
    let (delay_ms, timeout_ms) = match (delay, timeout) {
        (Ok(delay), Ok(timeout)) => (delay, timeout),
        (delay, timeout) => {
            return Err([delay.err(), timeout.err()].into_iter().flatten().collect());
        }
    };
    let grace = spec
        .deployment
        .as_ref()
        .and_then(|d| d.termination_grace_period_seconds)
        .unwrap_or(DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS);
    let grace_ms = u128::try_from(grace).unwrap_or(0).saturating_mul(1000);
    if grace_ms < delay_ms + timeout_ms + STOP_MARGIN_MS {
        let shown = |ms: u128| {
            if ms.is_multiple_of(1000) {
                format!("{}s", ms / 1000)
            } else {
                format!("{ms}ms")
            }
        };
        return Err(vec![format!(
            "deployment.terminationGracePeriodSeconds ({grace}) must exceed \
             proxy.shutdown.drainDelay ({}) plus proxy.shutdown.drainTimeout ({}) by at least \
             {}: the kubelet kills the proxy when the grace period ends, before it has drained",
            shown(delay_ms),
            shown(timeout_ms),
            shown(STOP_MARGIN_MS),
        )]);
    }
    Ok(Drain {
        delay_ms,
        timeout_ms,
    })
}

/// `proxy.portOffset`, or the default, checked by the rule the proxy binds with: an offset that
/// is negative or moves port 1023 past 65535 would render a Deployment whose proxy refuses its
/// command line or whose Service targets no port.
fn port_offset(proxy: Option<&ProxyParameters>) -> Result<u16, String> {
    match proxy.and_then(|p| p.port_offset) {
        None => Ok(DEFAULT_PORT_OFFSET),
        Some(offset) => ports::port_offset(i64::from(offset))
            .map_err(|error| format!("proxy.portOffset is invalid: {error}")),
    }
}

fn default_resources() -> ResourceRequirements {
    let q = |s: &str| Quantity(s.to_string());
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_string(), q("100m")),
            ("memory".to_string(), q("128Mi")),
        ])),
        limits: Some(BTreeMap::from([("memory".to_string(), q("512Mi"))])),
        ..Default::default()
    }
}

fn default_container_security_context() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_string()]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn default_pod_security_context() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(PROXY_UID),
        run_as_group: Some(PROXY_UID),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".to_string(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn defaults() -> OperatorDefaults {
        OperatorDefaults {
            proxy_image: "gantry-proxy:test".into(),
            proxy_roles: ProxyRoles::default(),
        }
    }

    #[test]
    fn gateway_values_override_class_values_field_by_field() {
        let class = GatewayParametersSpec {
            deployment: Some(DeploymentParameters {
                replicas: Some(3),
                image: Some("class:1".into()),
                ..Default::default()
            }),
            pod: Some(PodParameters {
                labels: Some(BTreeMap::from([
                    ("a".into(), "class".into()),
                    ("b".into(), "class".into()),
                ])),
                ..Default::default()
            }),
            ..Default::default()
        };
        let gateway = GatewayParametersSpec {
            deployment: Some(DeploymentParameters {
                replicas: Some(5),
                ..Default::default()
            }),
            pod: Some(PodParameters {
                labels: Some(BTreeMap::from([("b".into(), "gateway".into())])),
                ..Default::default()
            }),
            ..Default::default()
        };
        let merged = resolve(&merge(&class, &gateway), &defaults()).unwrap();
        assert_eq!(merged.replicas, 5);
        assert_eq!(merged.image, "class:1");
        let labels = merged.pod.labels.unwrap();
        assert_eq!(labels["a"], "class");
        assert_eq!(labels["b"], "gateway");
    }

    #[test]
    fn defaults_fill_everything_unset() {
        let p = resolve(&GatewayParametersSpec::default(), &defaults()).unwrap();
        assert_eq!(p.image, "gantry-proxy:test");
        assert_eq!(p.topology, Topology::Dedicated);
        assert_eq!(p.service.type_, ServiceType::LoadBalancer);
        assert_eq!(p.proxy.port_offset, DEFAULT_PORT_OFFSET);
        assert!(p.autoscaling.is_none());
        assert!(p.pod_disruption_budget.is_none());
    }

    #[test]
    fn gateway_can_turn_off_class_autoscaling() {
        let class = GatewayParametersSpec {
            autoscaling: Some(AutoscalingParameters {
                max_replicas: Some(4),
                ..Default::default()
            }),
            ..Default::default()
        };
        let gateway = GatewayParametersSpec {
            autoscaling: Some(AutoscalingParameters {
                enabled: Some(false),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(resolve(&class, &defaults()).unwrap().autoscaling.is_some());
        let merged = resolve(&merge(&class, &gateway), &defaults()).unwrap();
        assert!(merged.autoscaling.is_none());
    }

    fn proxy(port_offset: Option<i32>, worker_threads: Option<i32>) -> GatewayParametersSpec {
        GatewayParametersSpec {
            proxy: Some(ProxyParameters {
                port_offset,
                worker_threads,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn port_offsets_that_keep_port_1023_within_65535_are_accepted() {
        for offset in [0, 1, 8000, 64512] {
            let p = resolve(&proxy(Some(offset), None), &defaults()).unwrap();
            assert_eq!(i32::from(p.proxy.port_offset), offset);
        }
    }

    #[test]
    fn negative_or_overflowing_port_offsets_are_invalid_parameters() {
        assert_eq!(
            resolve(&proxy(Some(-1), None), &defaults()).unwrap_err(),
            vec!["proxy.portOffset is invalid: port offset -1 is negative (use 0 to 64512)"]
        );
        assert_eq!(
            resolve(&proxy(Some(64513), None), &defaults()).unwrap_err(),
            vec![
                "proxy.portOffset is invalid: port offset 64513 would move port 1023 past \
                 65535 (use 0 to 64512)"
            ]
        );
        assert!(resolve(&proxy(Some(i32::MAX), None), &defaults()).is_err());
        assert!(resolve(&proxy(Some(i32::MIN), None), &defaults()).is_err());
    }

    #[test]
    fn worker_threads_below_one_are_invalid_parameters() {
        assert_eq!(
            resolve(&proxy(None, Some(0)), &defaults()).unwrap_err(),
            vec![
                "proxy.workerThreads must be at least 1, not 0 (leave it unset for one thread \
                 per CPU)"
            ]
        );
        assert!(resolve(&proxy(None, Some(-4)), &defaults()).is_err());
        assert!(resolve(&proxy(None, Some(1)), &defaults()).is_ok());
    }

    fn shutdown(
        delay: Option<&str>,
        timeout: Option<&str>,
        grace: Option<i64>,
    ) -> GatewayParametersSpec {
        GatewayParametersSpec {
            proxy: Some(ProxyParameters {
                shutdown: Some(ShutdownParameters {
                    drain_delay: delay.map(Into::into),
                    drain_timeout: timeout.map(Into::into),
                }),
                ..Default::default()
            }),
            deployment: Some(DeploymentParameters {
                termination_grace_period_seconds: grace,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn the_default_drain_fits_the_default_grace_period() {
        let p = resolve(&GatewayParametersSpec::default(), &defaults()).unwrap();
        assert_eq!(p.proxy.drain_delay_ms, 5000);
        assert_eq!(p.proxy.drain_timeout_ms, 20_000);
        assert_eq!(p.termination_grace_period_seconds, 30);
    }

    #[test]
    fn the_drain_must_end_a_second_before_the_grace_period() {
        let p = resolve(&shutdown(Some("10s"), Some("49s"), Some(60)), &defaults()).unwrap();
        assert_eq!(
            (p.proxy.drain_delay_ms, p.proxy.drain_timeout_ms),
            (10_000, 49_000)
        );
        assert_eq!(
            resolve(&shutdown(Some("10s"), Some("50s"), Some(60)), &defaults()).unwrap_err(),
            vec![
                "deployment.terminationGracePeriodSeconds (60) must exceed \
                 proxy.shutdown.drainDelay (10s) plus proxy.shutdown.drainTimeout (50s) by at \
                 least 1s: the kubelet kills the proxy when the grace period ends, before it has \
                 drained"
            ]
        );
        // The defaults count: a shorter grace period alone breaks them.
        assert!(resolve(&shutdown(None, None, Some(25)), &defaults()).is_err());
        assert!(resolve(&shutdown(Some("0s"), None, Some(25)), &defaults()).is_ok());
    }

    #[test]
    fn drain_durations_must_be_gateway_api_durations() {
        let problems =
            resolve(&shutdown(Some("soon"), Some("-1s"), None), &defaults()).unwrap_err();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems[0].starts_with("proxy.shutdown.drainDelay \"soon\""),
            "{problems:?}"
        );
        assert!(
            problems[1].starts_with("proxy.shutdown.drainTimeout \"-1s\""),
            "{problems:?}"
        );
    }

    fn programmed(min: Option<i32>, timeout: Option<&str>) -> GatewayParametersSpec {
        GatewayParametersSpec {
            proxy: Some(ProxyParameters {
                programmed: Some(ProgrammedParameters {
                    min_replicas: min,
                    timeout: timeout.map(Into::into),
                }),
                ..Default::default()
            }),
            autoscaling: Some(AutoscalingParameters {
                enabled: Some(false),
                ..Default::default()
            }),
            deployment: Some(DeploymentParameters {
                replicas: Some(3),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn programmed_defaults_to_every_replica_within_a_minute() {
        let p = resolve(&GatewayParametersSpec::default(), &defaults()).unwrap();
        assert_eq!(p.proxy.programmed_min_replicas, None);
        assert_eq!(p.proxy.programmed_timeout_ms, 60_000);
        let p = resolve(&programmed(Some(2), Some("2m")), &defaults()).unwrap();
        assert_eq!(p.proxy.programmed_min_replicas, Some(2));
        assert_eq!(p.proxy.programmed_timeout_ms, 120_000);
    }

    #[test]
    fn programmed_must_be_reachable() {
        assert_eq!(
            resolve(&programmed(Some(4), None), &defaults()).unwrap_err(),
            vec![
                "proxy.programmed.minReplicas (4) is more than the fleet can have (3): no \
                 Gateway of it could ever be Programmed"
            ]
        );
        assert!(resolve(&programmed(Some(3), None), &defaults()).is_ok());
        let problems = resolve(&programmed(Some(0), Some("500ms")), &defaults()).unwrap_err();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems[0].starts_with("proxy.programmed.timeout \"500ms\" must be at least 1s"),
            "{problems:?}"
        );
        assert!(
            problems[1].starts_with("proxy.programmed.minReplicas must be at least 1"),
            "{problems:?}"
        );
        let problems = resolve(&programmed(None, Some("soon")), &defaults()).unwrap_err();
        assert!(
            problems[0].starts_with("proxy.programmed.timeout \"soon\" is not a duration"),
            "{problems:?}"
        );
    }

    #[test]
    fn the_drain_merges_field_by_field() {
        let class = shutdown(Some("15s"), None, Some(60));
        let gateway = shutdown(None, Some("40s"), None);
        let p = resolve(&merge(&class, &gateway), &defaults()).unwrap();
        assert_eq!(
            (p.proxy.drain_delay_ms, p.proxy.drain_timeout_ms),
            (15_000, 40_000)
        );
        assert_eq!(p.termination_grace_period_seconds, 60);
    }

    fn certificates(value: serde_json::Value) -> GatewayParametersSpec {
        serde_json::from_value(serde_json::json!({ "certificates": value })).unwrap()
    }

    #[test]
    fn acme_defaults_and_files() {
        let p = resolve(
            &certificates(serde_json::json!({"acme": {
                "directory": "https://acme.example.com/dir",
                "caCertificateRef": {"name": "ca"},
                "externalAccountBinding": {"keyID": "k", "hmacKeyRef": {"name": "eab", "key": "hmac"}},
            }})),
            &defaults(),
        )
        .unwrap();
        let acme = p.acme.unwrap();
        assert_eq!(acme.challenge, AcmeChallenge::Http01);
        assert_eq!(acme.key_type, AcmeKeyType::EcdsaP256);
        assert_eq!(acme.renew_before_ms, 30 * 24 * 3_600_000);
        assert_eq!(acme.ca_certificate, Some(("ca".into(), "ca.crt".into())));
        assert_eq!(
            acme.external_account_binding,
            Some(AcmeBinding {
                key_id: "k".into(),
                secret: "eab".into(),
                key: "hmac".into()
            })
        );
        assert!(p.issuer_ref.is_none());
    }

    #[test]
    fn a_gateway_replaces_the_class_issuer_as_a_whole() {
        let class = certificates(serde_json::json!({"acme": {
            "directory": "https://acme.example.com/dir",
            "email": "ops@example.com",
        }}));
        // cert-manager at the Gateway: no ACME left, no contradiction.
        let gateway = certificates(serde_json::json!({"issuerRef": {"name": "letsencrypt"}}));
        let p = resolve(&merge(&class, &gateway), &defaults()).unwrap();
        assert!(p.acme.is_none());
        assert_eq!(p.issuer_ref.unwrap().name, "letsencrypt");
        // Another CA at the Gateway: none of the class's ACME fields carried over.
        let gateway = certificates(serde_json::json!({"acme": {
            "directory": "https://other.example.com/dir",
        }}));
        let acme = resolve(&merge(&class, &gateway), &defaults())
            .unwrap()
            .acme
            .unwrap();
        assert_eq!(acme.directory, "https://other.example.com/dir");
        assert_eq!(acme.email, None);
        // And the other way round: ACME at the Gateway replaces the class's issuer.
        let p = resolve(
            &merge(
                &certificates(serde_json::json!({"issuerRef": {"name": "letsencrypt"}})),
                &class,
            ),
            &defaults(),
        )
        .unwrap();
        assert!(p.issuer_ref.is_none() && p.acme.is_some());
        // A Gateway that says nothing of certificates keeps the class's.
        let p = resolve(
            &merge(&class, &certificates(serde_json::json!({}))),
            &defaults(),
        )
        .unwrap();
        assert!(p.acme.is_some());
    }

    #[test]
    fn issuer_ref_and_acme_together_and_unusable_acme_values_are_invalid_parameters() {
        let both = certificates(serde_json::json!({
            "issuerRef": {"name": "letsencrypt"},
            "acme": {"directory": "https://acme.example.com/dir"},
        }));
        assert_eq!(
            resolve(&both, &defaults()).unwrap_err(),
            vec![
                "certificates sets both issuerRef (cert-manager) and acme (the fleet's own ACME \
                 client); set one"
            ]
        );
        for (acme, problem) in [
            (
                serde_json::json!({"directory": "http://acme.example.com/dir"}),
                "certificates.acme.directory must be an https:// URL",
            ),
            (
                serde_json::json!({"directory": "https:///dir"}),
                "certificates.acme.directory must be an https:// URL",
            ),
            (
                serde_json::json!({"directory": "https://a.example/d", "renewBefore": "0s"}),
                "certificates.acme.renewBefore must be more than 0s",
            ),
            (
                serde_json::json!({"directory": "https://a.example/d", "renewBefore": "30d"}),
                "certificates.acme.renewBefore \"30d\" is not a duration",
            ),
            (
                serde_json::json!({"directory": "https://a.example/d",
                    "externalAccountBinding": {"keyID": "", "hmacKeyRef": {"name": "s", "key": "k"}}}),
                "certificates.acme.externalAccountBinding needs a keyID",
            ),
        ] {
            let problems = resolve(
                &certificates(serde_json::json!({ "acme": acme })),
                &defaults(),
            )
            .unwrap_err();
            assert!(
                problems.len() == 1 && problems[0].starts_with(problem),
                "{problems:?}"
            );
        }
    }

    #[test]
    fn contradiction_across_levels_is_reported() {
        let class = GatewayParametersSpec {
            service: Some(ServiceParameters {
                load_balancer_class: Some("example.com/lb".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let gateway = GatewayParametersSpec {
            service: Some(ServiceParameters {
                type_: Some(ServiceType::ClusterIP),
                ..Default::default()
            }),
            ..Default::default()
        };
        let problems = resolve(&merge(&class, &gateway), &defaults()).unwrap_err();
        assert_eq!(
            problems,
            vec!["service.loadBalancerClass requires service.type LoadBalancer, not ClusterIP"]
        );
    }
}
