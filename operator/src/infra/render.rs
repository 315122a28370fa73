//! Pure rendering: resolved parameters and Gateways in, the fleet's desired objects out; no IO.

use std::collections::{BTreeMap, BTreeSet};

use gantry_crds::gateway::gateways::{Gateway, GatewayListeners};
use gantry_crds::params::{
    AccessLogFormat, AcmeChallenge, AcmeKeyType, ClientTrafficParameters, EscapedSlashesAction,
    IssuerKind, LogLevel, PullPolicy, ServiceType, TracingProtocol, Workload,
};
use gantry_translate::listener_sets;
use gantry_translate::ports::bound_port;
use gantry_translate::store::{ObjectKey, Store};
use k8s_openapi::api::apps::v1::{
    DaemonSet, DaemonSetSpec, DaemonSetUpdateStrategy, Deployment, DeploymentSpec,
    DeploymentStrategy, RollingUpdateDaemonSet, RollingUpdateDeployment,
};
use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HorizontalPodAutoscaler, HorizontalPodAutoscalerSpec, MetricSpec,
    MetricTarget, ResourceMetricSource,
};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource,
    HTTPGetAction, KeyToPath, ObjectFieldSelector, PodSpec, PodTemplateSpec, Probe,
    SecretVolumeSource, Service, ServiceAccount, ServicePort, ServiceSpec, Volume, VolumeMount,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::Serialize;
use serde_json::{Value, json};

use super::kind::Kind;
use super::names::{
    self, FLEET_LABEL, FLEET_NAMESPACE_LABEL, GATEWAY_CLASS_NAME_LABEL, GATEWAY_NAME_LABEL,
    GATEWAY_NAMESPACE_LABEL, GRANT_LABEL, MANAGED_BY, MANAGED_BY_LABEL,
};
use crate::params::{
    AcmeSettings, DisruptionBudget, FleetParameters, ProxyRoles, gateway_duration_ms,
};

/// The proxy's admin port on the pod IP: `/healthz`, `/readyz`, `/metrics` (probes, scrapers).
pub const ADMIN_PORT: i32 = 9901;
/// The proxy's debug port on the pod's loopback interface: `/status`, `/config` (reached with
/// `kubectl port-forward`, never from the network).
pub const ADMIN_DEBUG_PORT: i32 = 9902;

/// Where the ConfigMap of `certificates.acme.caCertificateRef` is mounted (its one key only).
pub const ACME_CA_DIR: &str = "/etc/gantry/acme/ca";
/// `--acme-ca-file`: the ConfigMap's key, under [`ACME_CA_DIR`].
pub const ACME_CA_FILE: &str = "/etc/gantry/acme/ca/ca.crt";
/// Where the Secret of `certificates.acme.externalAccountBinding.hmacKeyRef` is mounted (its
/// one key only).
pub const ACME_EAB_DIR: &str = "/etc/gantry/acme/eab";
/// `--acme-eab-hmac-file`: the Secret's key, under [`ACME_EAB_DIR`].
pub const ACME_EAB_HMAC_FILE: &str = "/etc/gantry/acme/eab/hmac-key";

/// One object the operator wants to exist, ready for server-side apply.
#[derive(Clone, Debug, PartialEq)]
pub struct DesiredObject {
    /// What it is (and so which API endpoint takes it).
    pub kind: Kind,
    /// Namespace, for namespaced kinds.
    pub namespace: Option<String>,
    /// Name.
    pub name: String,
    /// The full apply body, with apiVersion and kind.
    pub body: Value,
}

/// Which Gateways a fleet serves.
#[derive(Clone, Copy, Debug)]
pub enum Target<'a> {
    /// One Gateway (`--gateway NS/NAME`).
    Dedicated(&'a Gateway),
    /// All Gateways of the class (`--gateway-class NAME`).
    Shared(&'a [Gateway]),
}

/// Everything needed to render one fleet.
#[derive(Clone, Debug)]
pub struct Fleet<'a> {
    /// Fleet name: names the Deployment, Service, ServiceAccount, Role, HPA and PDB.
    pub name: String,
    /// Namespace the fleet runs in.
    pub namespace: String,
    /// GatewayClass name.
    pub class: &'a str,
    /// The Gateways it serves.
    pub target: Target<'a>,
    /// Resolved parameters.
    pub params: &'a FleetParameters,
    /// The Gateway (dedicated) or the GatewayClass (shared).
    pub owner: OwnerReference,
    /// The ListenerSets in the operator's scope (and, when a Gateway selects ListenerSet
    /// namespaces by label, the Namespaces): the listeners the Gateways take from those they
    /// admit get ports too. Other kinds in the store are ignored.
    pub listener_sets: &'a Store,
}

impl Fleet<'_> {
    fn gateways(&self) -> &[Gateway] {
        match self.target {
            Target::Dedicated(gateway) => std::slice::from_ref(gateway),
            Target::Shared(gateways) => gateways,
        }
    }

    fn labels(&self) -> BTreeMap<String, String> {
        let mut labels = BTreeMap::new();
        if let Target::Dedicated(gateway) = self.target {
            // GEP-1867: spec.infrastructure labels go on every generated resource. They come
            // first so they can never replace the labels the operator and selectors rely on.
            if let Some(infra) = gateway
                .spec
                .infrastructure
                .as_ref()
                .and_then(|i| i.labels.as_ref())
            {
                labels.extend(infra.clone());
            }
            labels.insert(
                GATEWAY_NAME_LABEL.to_string(),
                names::label_value(&gateway.metadata.name.clone().unwrap_or_default()),
            );
        }
        labels.insert(
            GATEWAY_CLASS_NAME_LABEL.to_string(),
            names::label_value(self.class),
        );
        labels.insert(MANAGED_BY_LABEL.to_string(), MANAGED_BY.to_string());
        labels.insert(
            "app.kubernetes.io/name".to_string(),
            "gantry-proxy".to_string(),
        );
        labels.insert(FLEET_LABEL.to_string(), names::label_value(&self.name));
        labels
    }

    fn annotations(&self) -> Option<BTreeMap<String, String>> {
        match self.target {
            Target::Dedicated(gateway) => gateway
                .spec
                .infrastructure
                .as_ref()
                .and_then(|i| i.annotations.clone())
                .filter(|a| !a.is_empty()),
            Target::Shared(_) => None,
        }
    }

    fn meta(&self, name: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(self.namespace.clone()),
            labels: Some(self.labels()),
            annotations: self.annotations(),
            owner_references: Some(vec![self.owner.clone()]),
            ..Default::default()
        }
    }
}

/// A listener port as the Service exposes it and as the container binds it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PortMapping {
    /// Port the Gateway declares (Service port).
    pub port: i32,
    /// `TCP` or `UDP`.
    pub protocol: &'static str,
    /// Port the proxy binds inside the pod: [`gantry_translate::ports::bound_port`], the rule
    /// the proxy binds with (`port + offset` below 1024).
    pub container_port: i32,
}

impl PortMapping {
    /// Name shared by the container port and the Service port (an IANA_SVC_NAME, ≤ 15 chars).
    pub fn name(&self) -> String {
        format!("{}-{}", self.protocol.to_ascii_lowercase(), self.port)
    }
}

/// One mapping per distinct listener port and protocol across the fleet's Gateways: their own
/// listeners and those they take from the ListenerSets they admit
/// ([`gantry_translate::listener_sets::admitted_listeners`], the rule the proxy merges them by;
/// `namespace_labels` as the fleet's proxy has them). Listeners sharing a port and protocol
/// share one mapping. `offset` is a checked one (at most
/// [`gantry_translate::ports::MAX_PORT_OFFSET`]), so every port in 1–65535 has a bound port; a
/// port outside that range, which the CRDs reject, is kept as declared.
pub fn port_mappings(
    gateways: &[Gateway],
    listener_sets: &Store,
    namespace_labels: bool,
    offset: u16,
) -> Vec<PortMapping> {
    let from_sets: Vec<GatewayListeners> = gateways
        .iter()
        .flat_map(|g| {
            let key = ObjectKey::new(
                g.metadata.namespace.as_deref().unwrap_or_default(),
                g.metadata.name.as_deref().unwrap_or_default(),
            );
            listener_sets::admitted_listeners(listener_sets, &key, g, namespace_labels)
        })
        .collect();
    let set: BTreeSet<PortMapping> = gateways
        .iter()
        .flat_map(|g| g.spec.listeners.iter())
        .chain(&from_sets)
        .map(|l| PortMapping {
            port: l.port,
            protocol: if l.protocol == "UDP" { "UDP" } else { "TCP" },
            container_port: u16::try_from(l.port)
                .ok()
                .and_then(|port| bound_port(port, offset))
                .map_or(l.port, i32::from),
        })
        .collect();
    set.into_iter().collect()
}

/// The fleet: ServiceAccount, the RoleBinding granting it Leases, its Lease, Service,
/// Deployment, and HPA/PDB when enabled, in the order they should be applied.
pub fn render_fleet(fleet: &Fleet<'_>) -> Vec<DesiredObject> {
    // A namespace-scoped fleet reads no Namespace (`--watch-namespace`): there a selector
    // admits no ListenerSet, so it opens no port for one.
    let namespace_labels = fleet.params.roles.namespace.is_none();
    let ports = port_mappings(
        fleet.gateways(),
        fleet.listener_sets,
        namespace_labels,
        fleet.params.proxy.port_offset,
    );
    let mut objects = vec![
        object(
            Kind::ServiceAccount,
            fleet,
            &ServiceAccount {
                metadata: fleet.meta(&fleet.name),
                ..Default::default()
            },
        ),
        DesiredObject {
            kind: Kind::RoleBinding,
            namespace: Some(fleet.namespace.clone()),
            name: names::leader_election_binding(&fleet.name),
            body: to_value(&leader_election_binding(fleet)),
        },
        // The Lease the proxies elect their status writer with, as an owned object without a
        // spec: the proxies hold it, and it goes with the fleet (garbage collection, pruning).
        DesiredObject {
            kind: Kind::Lease,
            namespace: Some(fleet.namespace.clone()),
            name: lease_name(fleet),
            body: to_value(&Lease {
                metadata: fleet.meta(&lease_name(fleet)),
                spec: None,
            }),
        },
    ];
    if fleet.params.roles.namespace.is_some() {
        // Namespace-scoped install: no ClusterRoleBinding per class; each fleet is bound to
        // the `<prefix>` Role of its namespace by a RoleBinding of its own.
        objects.push(DesiredObject {
            kind: Kind::RoleBinding,
            namespace: Some(fleet.namespace.clone()),
            name: names::fleet_reads_binding(&fleet.name),
            body: to_value(&fleet_reads_binding(fleet)),
        });
    }
    if !ports.is_empty() {
        objects.push(object(Kind::Service, fleet, &service(fleet, &ports)));
    }
    match fleet.params.workload {
        Workload::Deployment => {
            objects.push(object(Kind::Deployment, fleet, &deployment(fleet, &ports)));
            if let Some(hpa) = autoscaler(fleet) {
                objects.push(object(Kind::HorizontalPodAutoscaler, fleet, &hpa));
            }
        }
        // One pod per node: no replica count, nothing to autoscale.
        Workload::DaemonSet => {
            objects.push(object(Kind::DaemonSet, fleet, &daemon_set(fleet, &ports)));
        }
    }
    if let Some(pdb) = disruption_budget(fleet) {
        objects.push(object(Kind::PodDisruptionBudget, fleet, &pdb));
    }
    objects
}

fn object<T: Serialize>(kind: Kind, fleet: &Fleet<'_>, typed: &T) -> DesiredObject {
    DesiredObject {
        kind,
        namespace: Some(fleet.namespace.clone()),
        name: fleet.name.clone(),
        body: to_value(typed),
    }
}

/// k8s-openapi types serialize infallibly (plain structs, string-keyed maps); a failure would be
/// a bug in that crate, so it degrades to `null`, which the API server rejects loudly.
fn to_value<T: Serialize>(typed: &T) -> Value {
    serde_json::to_value(typed).unwrap_or(Value::Null)
}

/// The name the fleet's proxies give their Lease: after the Gateway (dedicated) or the class
/// (shared) they serve.
fn lease_name(fleet: &Fleet<'_>) -> String {
    match fleet.target {
        Target::Dedicated(gateway) => names::dedicated_lease(
            gateway.metadata.namespace.as_deref().unwrap_or_default(),
            gateway.metadata.name.as_deref().unwrap_or_default(),
        ),
        Target::Shared(_) => names::shared_lease(fleet.class),
    }
}

/// Leases in the fleet's own namespace, through the `<prefix>-leader-election` role.
fn leader_election_binding(fleet: &Fleet<'_>) -> RoleBinding {
    let roles = &fleet.params.roles;
    RoleBinding {
        metadata: fleet.meta(&names::leader_election_binding(&fleet.name)),
        role_ref: role_ref(roles, roles.leader_election()),
        subjects: Some(vec![service_account_subject(&fleet.namespace, &fleet.name)]),
    }
}

/// Namespace-scoped installs only: the fleet's reads of Gateway API objects, Services and
/// EndpointSlices (and status writes) in its namespace, through the `<prefix>` Role.
fn fleet_reads_binding(fleet: &Fleet<'_>) -> RoleBinding {
    let roles = &fleet.params.roles;
    RoleBinding {
        metadata: fleet.meta(&names::fleet_reads_binding(&fleet.name)),
        role_ref: role_ref(roles, roles.cluster()),
        subjects: Some(vec![service_account_subject(&fleet.namespace, &fleet.name)]),
    }
}

/// A reference to one of the proxies' roles: a ClusterRole, or in a namespace-scoped install a
/// Role of the binding's namespace.
fn role_ref(roles: &ProxyRoles, name: String) -> RoleRef {
    RoleRef {
        api_group: "rbac.authorization.k8s.io".to_string(),
        kind: roles.kind().to_string(),
        name,
    }
}

fn service_account_subject(namespace: &str, name: &str) -> Subject {
    Subject {
        kind: "ServiceAccount".to_string(),
        name: name.to_string(),
        namespace: Some(namespace.to_string()),
        api_group: None,
    }
}

/// Per-class ClusterRoleBinding of the `<prefix>` ClusterRole (cluster-wide reads of Gateway API
/// objects, Namespaces, Services and EndpointSlices; status writes; never Secrets or ConfigMaps)
/// naming the ServiceAccount of every fleet of the class (`subjects` as namespace and name).
/// Cluster-scoped objects may only be owned by cluster-scoped owners, so it is owned by the
/// GatewayClass, not by a Gateway.
pub fn render_class_rbac(
    class: &str,
    owner: &OwnerReference,
    roles: &ProxyRoles,
    subjects: &BTreeSet<(String, String)>,
) -> Vec<DesiredObject> {
    let name = names::class_cluster_role_binding(class);
    let binding = ClusterRoleBinding {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            labels: Some(BTreeMap::from([
                (
                    GATEWAY_CLASS_NAME_LABEL.to_string(),
                    names::label_value(class),
                ),
                (MANAGED_BY_LABEL.to_string(), MANAGED_BY.to_string()),
            ])),
            owner_references: Some(vec![owner.clone()]),
            ..Default::default()
        },
        role_ref: role_ref(roles, roles.cluster()),
        subjects: Some(
            subjects
                .iter()
                .map(|(ns, sa)| service_account_subject(ns, sa))
                .collect(),
        ),
    };
    vec![DesiredObject {
        kind: Kind::ClusterRoleBinding,
        namespace: None,
        name,
        body: to_value(&binding),
    }]
}

/// A fleet and the namespaces whose Secrets and ConfigMaps its Gateways reference
/// ([`gantry_translate::references`]).
#[derive(Clone, Debug, PartialEq)]
pub struct FleetReferences {
    /// The fleet's namespace.
    pub namespace: String,
    /// The fleet's name (and its ServiceAccount's).
    pub name: String,
    /// What its Gateways reference.
    pub referenced: gantry_translate::references::Referenced,
    /// Where it obtains certificates itself (`certificates.acme`): its own namespace (the ACME
    /// state Secret) and those of its Gateways and of the ListenerSets they admit (certificate
    /// Secrets, Events); empty without `acme`.
    pub acme: BTreeSet<String>,
    /// The owner of its RoleBindings: the GatewayClass; in a namespace-scoped install (which
    /// never reads the class) the fleet's Gateway, or the class's GatewayParameters for a
    /// shared fleet, all in the same namespace as the bindings.
    pub owner: OwnerReference,
}

/// One RoleBinding per fleet and referenced namespace and kind, binding the `<prefix>-secrets`
/// or `<prefix>-configmaps` role there: the fleet reads Secrets and ConfigMaps only in
/// those namespaces; and for a fleet with `certificates.acme`, one binding the `<prefix>-acme`
/// role in each namespace of [`FleetReferences::acme`]. Owned by [`FleetReferences::owner`] (an owner in another namespace would
/// be invalid) and labelled so that the class controller finds and prunes those no longer referenced.
pub fn render_reference_bindings(
    class: &str,
    roles: &ProxyRoles,
    fleets: &[FleetReferences],
) -> Vec<DesiredObject> {
    let mut objects = Vec::new();
    for fleet in fleets {
        let grants = [
            ("secrets", roles.secrets(), &fleet.referenced.secrets),
            (
                "configmaps",
                roles.config_maps(),
                &fleet.referenced.config_maps,
            ),
            ("acme", roles.acme(), &fleet.acme),
        ];
        for (grant, role, namespaces) in grants {
            for namespace in namespaces {
                let name = names::reference_binding(&fleet.namespace, &fleet.name, grant);
                let binding = RoleBinding {
                    metadata: ObjectMeta {
                        name: Some(name.clone()),
                        namespace: Some(namespace.clone()),
                        labels: Some(BTreeMap::from([
                            (
                                GATEWAY_CLASS_NAME_LABEL.to_string(),
                                names::label_value(class),
                            ),
                            (MANAGED_BY_LABEL.to_string(), MANAGED_BY.to_string()),
                            (FLEET_LABEL.to_string(), names::label_value(&fleet.name)),
                            (
                                FLEET_NAMESPACE_LABEL.to_string(),
                                names::label_value(&fleet.namespace),
                            ),
                            (GRANT_LABEL.to_string(), grant.to_string()),
                        ])),
                        owner_references: Some(vec![fleet.owner.clone()]),
                        ..Default::default()
                    },
                    role_ref: role_ref(roles, role.clone()),
                    subjects: Some(vec![service_account_subject(&fleet.namespace, &fleet.name)]),
                };
                objects.push(DesiredObject {
                    kind: Kind::RoleBinding,
                    namespace: Some(namespace.clone()),
                    name,
                    body: to_value(&binding),
                });
            }
        }
    }
    objects
}

fn service(fleet: &Fleet<'_>, ports: &[PortMapping]) -> Service {
    let s = &fleet.params.service;
    let mut meta = fleet.meta(&fleet.name);
    if !s.annotations.is_empty() {
        let mut annotations = meta.annotations.unwrap_or_default();
        annotations.extend(s.annotations.clone());
        meta.annotations = Some(annotations);
    }
    let node_ports: BTreeMap<i32, i32> =
        s.node_ports.iter().map(|n| (n.port, n.node_port)).collect();
    let exposes_nodes = s.type_ != ServiceType::ClusterIP;
    let (load_balancer_ip, external_ips) = static_addresses(fleet, s.type_);
    Service {
        metadata: meta,
        spec: Some(ServiceSpec {
            type_: Some(service_type(s.type_).to_string()),
            selector: Some(names::selector(&fleet.name)),
            ports: Some(
                ports
                    .iter()
                    .map(|p| ServicePort {
                        name: Some(p.name()),
                        port: p.port,
                        protocol: Some(p.protocol.to_string()),
                        target_port: Some(IntOrString::Int(p.container_port)),
                        node_port: node_ports.get(&p.port).copied().filter(|_| exposes_nodes),
                        ..Default::default()
                    })
                    .collect(),
            ),
            external_traffic_policy: s
                .external_traffic_policy
                .map(|p| format!("{p:?}"))
                .filter(|_| exposes_nodes),
            load_balancer_class: s.load_balancer_class.clone(),
            load_balancer_source_ranges: Some(s.load_balancer_source_ranges.clone())
                .filter(|r| !r.is_empty()),
            load_balancer_ip,
            external_ips,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A dedicated fleet's Gateway `spec.addresses` (type `IPAddress` with a value) on its Service:
/// the one address of a LoadBalancer Service as `loadBalancerIP`, which load balancer
/// controllers honour; several addresses, or any on a ClusterIP or NodePort Service, as
/// `externalIPs`. Other types and malformed values are left out: the proxy refuses them with
/// `UnsupportedAddress` or `AddressNotUsable`. A shared fleet's Service is every Gateway's, so
/// it takes none (the proxy reports `AddressNotAssigned`).
fn static_addresses(
    fleet: &Fleet<'_>,
    type_: ServiceType,
) -> (Option<String>, Option<Vec<String>>) {
    let Target::Dedicated(gateway) = fleet.target else {
        return (None, None);
    };
    let ips: Vec<String> = gateway
        .spec
        .addresses
        .iter()
        .flatten()
        .filter(|a| a.r#type.as_deref().is_none_or(|t| t == "IPAddress"))
        .filter_map(|a| a.value.as_deref()?.parse::<std::net::IpAddr>().ok())
        .map(|ip| ip.to_string())
        .collect();
    match (type_, ips.as_slice()) {
        (_, []) => (None, None),
        (ServiceType::LoadBalancer, [one]) => (Some(one.clone()), None),
        _ => (None, Some(ips)),
    }
}

fn service_type(t: ServiceType) -> &'static str {
    match t {
        ServiceType::ClusterIP => "ClusterIP",
        ServiceType::NodePort => "NodePort",
        ServiceType::LoadBalancer => "LoadBalancer",
    }
}

/// The environment variable holding the pod IP (downward API `status.podIP`), which the kubelet
/// expands in the proxy's arguments.
pub const POD_IP_ENV: &str = "POD_IP";

/// The proxy's command line (after the image's `gantry-proxy` entrypoint).
pub fn proxy_args(fleet: &Fleet<'_>) -> Vec<String> {
    let p = &fleet.params.proxy;
    let mut args = vec!["run".to_string(), "--kubernetes".to_string()];
    match fleet.target {
        Target::Dedicated(gateway) => {
            args.push("--gateway".to_string());
            args.push(format!(
                "{}/{}",
                gateway.metadata.namespace.clone().unwrap_or_default(),
                gateway.metadata.name.clone().unwrap_or_default()
            ));
        }
        Target::Shared(_) => {
            args.push("--gateway-class".to_string());
            args.push(fleet.class.to_string());
        }
    }
    if let Some(namespace) = &fleet.params.roles.namespace {
        // Namespace-scoped install: the fleet may read only its namespace, and no GatewayClass,
        // so it watches only that namespace and is told its class (a dedicated fleet too).
        if let Target::Dedicated(_) = fleet.target {
            args.push("--gateway-class".to_string());
            args.push(fleet.class.to_string());
        }
        args.push("--watch-namespace".to_string());
        args.push(namespace.clone());
    }
    // Probes and scrapers reach the pod IP; `/status` and `/config` stay on loopback.
    args.push("--admin-addr".to_string());
    args.push(format!("$({POD_IP_ENV}):{ADMIN_PORT}"));
    args.push("--admin-debug-addr".to_string());
    args.push(format!("127.0.0.1:{ADMIN_DEBUG_PORT}"));
    args.push("--port-offset".to_string());
    args.push(p.port_offset.to_string());
    args.push("--log-level".to_string());
    args.push(log_level(p.log_level).to_string());
    args.push("--access-log-format".to_string());
    args.push(
        match p.access_log_format {
            AccessLogFormat::Json => "json",
            AccessLogFormat::Text => "text",
        }
        .to_string(),
    );
    if let Some(threads) = p.worker_threads {
        args.push("--worker-threads".to_string());
        args.push(threads.to_string());
    }
    client_traffic_args(&p.client_traffic, &mut args);
    args.push("--drain-delay".to_string());
    args.push(format!("{}ms", p.drain_delay_ms));
    args.push("--drain-timeout".to_string());
    args.push(format!("{}ms", p.drain_timeout_ms));
    // Each replica reports what it serves on its Pod, and the status writer counts the fleet's
    // ready replicas before it says `Programmed` (the Pods carry `gantry.dev/fleet: <name>`).
    args.push("--fleet".to_string());
    args.push(fleet.name.clone());
    if let Some(min) = p.programmed_min_replicas {
        args.push("--programmed-min-replicas".to_string());
        args.push(min.to_string());
    }
    args.push("--programmed-timeout".to_string());
    args.push(format!("{}ms", p.programmed_timeout_ms));
    // Rendered only when set, so a fleet one minor older (which may not know the flags) runs
    // unchanged unless tracing is asked for.
    if let Some(tracing) = &p.tracing
        && let Some(endpoint) = &tracing.endpoint
    {
        args.push("--tracing-endpoint".to_string());
        args.push(endpoint.clone());
        if let Some(protocol) = tracing.protocol {
            args.push("--tracing-protocol".to_string());
            args.push(
                match protocol {
                    TracingProtocol::Http => "http",
                    TracingProtocol::Grpc => "grpc",
                }
                .to_string(),
            );
        }
        if let Some(rate) = tracing.sampling_rate {
            args.push("--tracing-sampling-ratio".to_string());
            args.push(format!("{}", f64::from(rate.clamp(0, 100)) / 100.0));
        }
        if let Some(name) = &tracing.service_name {
            args.push("--tracing-service-name".to_string());
            args.push(name.clone());
        }
    }
    // Likewise only when set.
    if let Some(url) = &p.rate_limit_redis {
        args.push("--rate-limit-redis".to_string());
        args.push(url.clone());
    }
    if let Some(acme) = &fleet.params.acme {
        acme_args(acme, &mut args);
    }
    args
}

/// `certificates.acme` as flags. No `--acme-dir`: in Kubernetes mode the fleet keeps its ACME
/// state in a Secret of its namespace, not on a volume. The CA and the HMAC key are files of
/// the volumes [`acme_volumes`] mounts.
fn acme_args(acme: &AcmeSettings, args: &mut Vec<String>) {
    let mut flag = |name: &str, value: String| {
        args.push(name.to_string());
        args.push(value);
    };
    flag("--acme-directory", acme.directory.clone());
    if let Some(email) = &acme.email {
        flag("--acme-email", email.clone());
    }
    let challenge = match acme.challenge {
        AcmeChallenge::Http01 => "http-01",
        AcmeChallenge::TlsAlpn01 => "tls-alpn-01",
    };
    flag("--acme-challenge", challenge.to_string());
    let key_type = match acme.key_type {
        AcmeKeyType::EcdsaP256 => "ecdsa-p256",
        AcmeKeyType::Rsa2048 => "rsa-2048",
    };
    flag("--acme-key-type", key_type.to_string());
    flag(
        "--acme-renew-before",
        humantime_duration(acme.renew_before_ms),
    );
    if acme.ca_certificate.is_some() {
        flag("--acme-ca-file", ACME_CA_FILE.to_string());
    }
    if let Some(eab) = &acme.external_account_binding {
        flag("--acme-eab-kid", eab.key_id.clone());
        flag("--acme-eab-hmac-file", ACME_EAB_HMAC_FILE.to_string());
    }
}

/// A duration in the largest of `h`, `m`, `s` and `ms` that divides it: `720h`, `90m`, as
/// `humantime` (the proxy's parser of `--acme-renew-before`) reads it.
fn humantime_duration(ms: u128) -> String {
    for (unit, size) in [("h", 3_600_000), ("m", 60_000), ("s", 1000)] {
        if ms > 0 && ms.is_multiple_of(size) {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

/// The volumes (and their read-only mounts in the proxy container) holding the files the
/// `--acme-*` flags name: the CA ConfigMap and the External Account Binding Secret, in the
/// fleet's namespace, each with only the one key named.
fn acme_volumes(acme: &AcmeSettings) -> (Vec<Volume>, Vec<VolumeMount>) {
    let mut volumes = Vec::new();
    let mut mounts = Vec::new();
    let file_of = |path: &str| path.rsplit('/').next().unwrap_or(path).to_string();
    if let Some((config_map, key)) = &acme.ca_certificate {
        volumes.push(Volume {
            name: "acme-ca".to_string(),
            config_map: Some(ConfigMapVolumeSource {
                name: config_map.clone(),
                items: Some(vec![KeyToPath {
                    key: key.clone(),
                    path: file_of(ACME_CA_FILE),
                    mode: None,
                }]),
                ..Default::default()
            }),
            ..Default::default()
        });
        mounts.push(VolumeMount {
            name: "acme-ca".to_string(),
            mount_path: ACME_CA_DIR.to_string(),
            read_only: Some(true),
            ..Default::default()
        });
    }
    if let Some(eab) = &acme.external_account_binding {
        volumes.push(Volume {
            name: "acme-eab".to_string(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(eab.secret.clone()),
                items: Some(vec![KeyToPath {
                    key: eab.key.clone(),
                    path: file_of(ACME_EAB_HMAC_FILE),
                    mode: None,
                }]),
                ..Default::default()
            }),
            ..Default::default()
        });
        mounts.push(VolumeMount {
            name: "acme-eab".to_string(),
            mount_path: ACME_EAB_DIR.to_string(),
            read_only: Some(true),
            ..Default::default()
        });
    }
    (volumes, mounts)
}

/// `proxy.clientTraffic` as flags; unset fields keep the proxy's defaults.
fn client_traffic_args(t: &ClientTrafficParameters, args: &mut Vec<String>) {
    let mut flag = |name: &str, value: String| {
        args.push(name.to_string());
        args.push(value);
    };
    if let Some(action) = t.escaped_slashes_action {
        let value = match action {
            EscapedSlashesAction::RejectRequest => "reject",
            EscapedSlashesAction::KeepUnchanged => "keep",
        };
        flag("--path-escaped-slashes", value.to_string());
    }
    if t.disable_merge_slashes == Some(true) {
        flag("--path-merge-slashes", "false".to_string());
    }
    if let Some(hops) = t.num_trusted_hops {
        flag("--trusted-proxy-hops", hops.to_string());
    }
    let durations = [
        ("--client-header-timeout", &t.request_header_timeout),
        ("--client-idle-timeout", &t.idle_timeout),
        ("--client-stall-timeout", &t.stall_timeout),
        ("--request-body-timeout", &t.request_body_timeout),
        ("--default-request-timeout", &t.default_request_timeout),
    ];
    for (name, value) in durations {
        // Checked by `params::resolve`; a value that does not parse is never rendered.
        if let Some(ms) = value.as_deref().and_then(|v| gateway_duration_ms(v).ok()) {
            flag(name, format!("{ms}ms"));
        }
    }
    if let Some(limit) = t.connection_limit {
        flag("--max-connections-per-listener", limit.to_string());
    }
    if let Some(limit) = t.max_connections {
        flag("--max-connections", limit.to_string());
    }
    if let Some(streams) = t.http2_max_concurrent_streams {
        flag("--http2-max-concurrent-streams", streams.to_string());
    }
}

fn log_level(level: LogLevel) -> &'static str {
    match level {
        LogLevel::Trace => "trace",
        LogLevel::Debug => "debug",
        LogLevel::Info => "info",
        LogLevel::Warn => "warn",
        LogLevel::Error => "error",
    }
}

/// The proxy pods, as a Deployment or a DaemonSet runs them.
fn pod_template(fleet: &Fleet<'_>, ports: &[PortMapping]) -> PodTemplateSpec {
    let params = fleet.params;
    let host_network = params.pod.host_network.unwrap_or(false);
    let selector = names::selector(&fleet.name);
    let mut pod_labels = params.pod.labels.clone().unwrap_or_default();
    pod_labels.extend(fleet.labels());
    let mut pod_annotations = fleet.annotations().unwrap_or_default();
    pod_annotations.extend(params.pod.annotations.clone().unwrap_or_default());

    let mut container_ports = vec![ContainerPort {
        name: Some("admin".to_string()),
        container_port: ADMIN_PORT,
        protocol: Some("TCP".to_string()),
        ..Default::default()
    }];
    container_ports.extend(ports.iter().map(|p| ContainerPort {
        name: Some(p.name()),
        container_port: p.container_port,
        protocol: Some(p.protocol.to_string()),
        ..Default::default()
    }));
    if host_network {
        // In the node's network namespace every container port is a host port; declaring it
        // lets the scheduler keep two pods that bind the same ports off one node.
        for port in &mut container_ports {
            port.host_port = Some(port.container_port);
        }
    }

    let probe = |path: &str, period: i32, failures: i32| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_string()),
            port: IntOrString::String("admin".to_string()),
            ..Default::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        ..Default::default()
    };
    let field_env = |name: &str, path: &str| EnvVar {
        name: name.to_string(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.to_string(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut env = vec![
        field_env("POD_NAME", "metadata.name"),
        field_env("POD_NAMESPACE", "metadata.namespace"),
        field_env(POD_IP_ENV, "status.podIP"),
    ];
    env.extend(params.env.clone());
    let mut volumes = vec![Volume {
        name: "tmp".to_string(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Default::default()
    }];
    let mut volume_mounts = vec![VolumeMount {
        name: "tmp".to_string(),
        mount_path: "/tmp".to_string(),
        ..Default::default()
    }];
    if let Some(acme) = &params.acme {
        let (acme_volumes, acme_mounts) = acme_volumes(acme);
        volumes.extend(acme_volumes);
        volume_mounts.extend(acme_mounts);
    }

    let container = Container {
        name: "proxy".to_string(),
        image: Some(params.image.clone()),
        image_pull_policy: Some(
            match params.image_pull_policy {
                PullPolicy::Always => "Always",
                PullPolicy::IfNotPresent => "IfNotPresent",
                PullPolicy::Never => "Never",
            }
            .to_string(),
        ),
        args: Some(proxy_args(fleet)),
        ports: Some(container_ports),
        env: Some(env),
        resources: Some(params.resources.clone()),
        readiness_probe: Some(probe("/readyz", 5, 2)),
        liveness_probe: Some(probe("/healthz", 10, 3)),
        // No preStop hook: on SIGTERM the proxy itself fails readiness and keeps serving for
        // its drain delay (`--drain-delay`) before it stops accepting, which is what a preStop
        // sleep used to buy; the grace period covers the delay and the drain timeout
        // (`params::resolve` checks it).
        security_context: Some(params.container_security_context.clone()),
        volume_mounts: Some(volume_mounts),
        ..Default::default()
    };

    let spread = params
        .pod
        .topology_spread_constraints
        .clone()
        .map(|constraints| {
            constraints
                .into_iter()
                .map(|mut c| {
                    if c.label_selector.is_none() {
                        c.label_selector = Some(LabelSelector {
                            match_labels: Some(selector.clone()),
                            ..Default::default()
                        });
                    }
                    c
                })
                .collect()
        });

    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(pod_labels),
            annotations: Some(pod_annotations).filter(|a| !a.is_empty()),
            ..Default::default()
        }),
        spec: Some(PodSpec {
            service_account_name: Some(fleet.name.clone()),
            containers: vec![container],
            termination_grace_period_seconds: Some(params.termination_grace_period_seconds),
            security_context: Some(params.pod_security_context.clone()),
            node_selector: params.pod.node_selector.clone().filter(|m| !m.is_empty()),
            tolerations: params.pod.tolerations.clone(),
            affinity: params.pod.affinity.clone(),
            topology_spread_constraints: spread,
            priority_class_name: params.pod.priority_class_name.clone(),
            host_network: host_network.then_some(true),
            // Cluster DNS still resolves Services from the node's network namespace.
            dns_policy: host_network.then(|| "ClusterFirstWithHostNet".to_string()),
            volumes: Some(volumes),
            ..Default::default()
        }),
    }
}

fn deployment(fleet: &Fleet<'_>, ports: &[PortMapping]) -> Deployment {
    let params = fleet.params;
    Deployment {
        metadata: fleet.meta(&fleet.name),
        spec: Some(DeploymentSpec {
            // With an HPA the replica count is the autoscaler's: leaving it out of the apply
            // releases the field instead of resetting it on every reconcile.
            replicas: if params.autoscaling.is_some() {
                None
            } else {
                Some(params.replicas)
            },
            selector: LabelSelector {
                match_labels: Some(names::selector(&fleet.name)),
                ..Default::default()
            },
            // A new pod is ready before an old one goes (host ports included: the scheduler
            // puts the surge pod on a node whose ports are free).
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".to_string()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(IntOrString::String("25%".to_string())),
                    max_unavailable: Some(IntOrString::Int(0)),
                }),
            }),
            template: pod_template(fleet, ports),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn daemon_set(fleet: &Fleet<'_>, ports: &[PortMapping]) -> DaemonSet {
    // A node's new pod starts before its old one stops (surge), unless both would bind the
    // node's own ports (hostNetwork): then the old one drains first, one node at a time.
    let rolling_update = if fleet.params.pod.host_network.unwrap_or(false) {
        RollingUpdateDaemonSet {
            max_surge: Some(IntOrString::Int(0)),
            max_unavailable: Some(IntOrString::Int(1)),
        }
    } else {
        RollingUpdateDaemonSet {
            max_surge: Some(IntOrString::Int(1)),
            max_unavailable: Some(IntOrString::Int(0)),
        }
    };
    DaemonSet {
        metadata: fleet.meta(&fleet.name),
        spec: Some(DaemonSetSpec {
            selector: LabelSelector {
                match_labels: Some(names::selector(&fleet.name)),
                ..Default::default()
            },
            update_strategy: Some(DaemonSetUpdateStrategy {
                type_: Some("RollingUpdate".to_string()),
                rolling_update: Some(rolling_update),
            }),
            template: pod_template(fleet, ports),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn autoscaler(fleet: &Fleet<'_>) -> Option<HorizontalPodAutoscaler> {
    let a = fleet.params.autoscaling.as_ref()?;
    let metric = |resource: &str, percent: i32| MetricSpec {
        type_: "Resource".to_string(),
        resource: Some(ResourceMetricSource {
            name: resource.to_string(),
            target: MetricTarget {
                type_: "Utilization".to_string(),
                average_utilization: Some(percent),
                ..Default::default()
            },
        }),
        ..Default::default()
    };
    let metrics = [("cpu", a.cpu), ("memory", a.memory)]
        .into_iter()
        .filter_map(|(r, p)| p.map(|p| metric(r, p)))
        .collect();
    Some(HorizontalPodAutoscaler {
        metadata: fleet.meta(&fleet.name),
        spec: Some(HorizontalPodAutoscalerSpec {
            scale_target_ref: CrossVersionObjectReference {
                api_version: Some("apps/v1".to_string()),
                kind: "Deployment".to_string(),
                name: fleet.name.clone(),
            },
            min_replicas: Some(a.min_replicas),
            max_replicas: a.max_replicas,
            metrics: Some(metrics),
            ..Default::default()
        }),
        ..Default::default()
    })
}

fn disruption_budget(fleet: &Fleet<'_>) -> Option<PodDisruptionBudget> {
    let budget = fleet.params.pod_disruption_budget.as_ref()?;
    let (min_available, max_unavailable) = match budget {
        DisruptionBudget::MinAvailable(v) => (Some(v.clone()), None),
        DisruptionBudget::MaxUnavailable(v) => (None, Some(v.clone())),
    };
    Some(PodDisruptionBudget {
        metadata: fleet.meta(&fleet.name),
        spec: Some(PodDisruptionBudgetSpec {
            selector: Some(LabelSelector {
                match_labels: Some(names::selector(&fleet.name)),
                ..Default::default()
            }),
            min_available,
            max_unavailable,
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// What the operator knows about a Secret named by an HTTPS listener.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretState {
    /// It does not exist: issue it.
    Missing,
    /// It exists; `issued_by` is its `cert-manager.io/certificate-name` annotation, if any.
    Present {
        /// The Certificate that issued it.
        issued_by: Option<String>,
    },
}

/// Same-namespace Secrets named by the Gateway's HTTPS listeners in Terminate mode, with the
/// listener hostnames that use each. Cross-namespace references are left alone: a Certificate
/// there could not be owned by the Gateway.
pub fn https_secrets(gateway: &Gateway) -> BTreeMap<String, BTreeSet<String>> {
    let mut secrets: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let namespace = gateway.metadata.namespace.clone().unwrap_or_default();
    for listener in &gateway.spec.listeners {
        let Some(tls) = listener
            .tls
            .as_ref()
            .filter(|_| listener.protocol == "HTTPS")
        else {
            continue;
        };
        for reference in tls.certificate_refs.iter().flatten() {
            let is_secret = reference.group.as_deref().unwrap_or("").is_empty()
                && reference.kind.as_deref().unwrap_or("Secret") == "Secret";
            let local = reference
                .namespace
                .as_deref()
                .is_none_or(|ns| ns == namespace);
            if is_secret && local {
                let hosts = secrets.entry(reference.name.clone()).or_default();
                hosts.extend(listener.hostname.clone());
            }
        }
    }
    secrets
}

/// One cert-manager Certificate per Secret (named by HTTPS listeners) that is missing or was
/// issued by this Gateway's Certificate before. Keeping the latter desired keeps renewals going
/// once cert-manager has created the Secret. Listeners without a hostname give no DNS name;
/// a Secret with no hostname at all is not issued.
pub fn render_certificates(
    gateway: &Gateway,
    params: &FleetParameters,
    secrets: &BTreeMap<String, SecretState>,
    owner: &OwnerReference,
) -> Vec<DesiredObject> {
    let Some(issuer) = params.issuer_ref.as_ref() else {
        return Vec::new();
    };
    let gateway_name = gateway.metadata.name.clone().unwrap_or_default();
    let namespace = gateway.metadata.namespace.clone().unwrap_or_default();
    let class = &gateway.spec.gateway_class_name;
    https_secrets(gateway)
        .into_iter()
        .filter(|(_, hosts)| !hosts.is_empty())
        .filter_map(|(secret, hosts)| {
            let name = names::certificate(&gateway_name, &secret);
            let wanted = match secrets.get(&secret) {
                Some(SecretState::Missing) => true,
                Some(SecretState::Present { issued_by }) => issued_by.as_deref() == Some(&name),
                None => false,
            };
            wanted.then(|| DesiredObject {
                kind: Kind::Certificate,
                namespace: Some(namespace.clone()),
                name: name.clone(),
                body: json!({
                    "apiVersion": "cert-manager.io/v1",
                    "kind": "Certificate",
                    "metadata": {
                        "name": name,
                        "namespace": namespace,
                        "labels": {
                            GATEWAY_NAME_LABEL: names::label_value(&gateway_name),
                            GATEWAY_NAMESPACE_LABEL: names::label_value(&namespace),
                            GATEWAY_CLASS_NAME_LABEL: names::label_value(class),
                            MANAGED_BY_LABEL: MANAGED_BY,
                        },
                        "ownerReferences": [owner],
                    },
                    "spec": {
                        "secretName": secret,
                        "dnsNames": hosts,
                        "issuerRef": {
                            "name": issuer.name,
                            "kind": match issuer.kind.unwrap_or(IssuerKind::Issuer) {
                                IssuerKind::Issuer => "Issuer",
                                IssuerKind::ClusterIssuer => "ClusterIssuer",
                            },
                            "group": issuer.group.clone().unwrap_or_else(|| "cert-manager.io".to_string()),
                        },
                    },
                }),
            })
        })
        .collect()
}
