//! backendRefs: Service references resolved to clusters, and the clusters' ready endpoints.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::ServicePort;

use super::conditions::{self as c, Problem};
use super::reference_grant::{self, From, To};
use crate::ir::{ClusterIr, UpstreamProtocol};
use crate::store::{ObjectKey, Store};

/// A `BackendObjectReference` as written in a route (any of the generated copies).
#[derive(Clone, Copy, Debug)]
pub struct BackendRef<'a> {
    pub group: Option<&'a str>,
    pub kind: Option<&'a str>,
    pub name: &'a str,
    pub namespace: Option<&'a str>,
    pub port: Option<i32>,
}

/// Who refers to the backend (for ReferenceGrant checks).
#[derive(Clone, Copy, Debug)]
pub struct Referrer<'a> {
    /// `gateway.networking.k8s.io` for routes, `gantry.dev` for Gantry's policies.
    pub group: &'a str,
    pub kind: &'a str,
    pub namespace: &'a str,
}

/// Resolves a reference to a Service port, adding the cluster to `clusters`. Returns the
/// cluster name, or the spec's reason why the reference is invalid.
///
/// Checks run in the order a person fixes them: kind (`InvalidKind`), cross-namespace
/// permission (`RefNotPermitted`), existence and port (`BackendNotFound`), then the port's
/// `appProtocol` (`UnsupportedProtocol`).
pub fn resolve(
    store: &Store,
    referrer: Referrer<'_>,
    r: BackendRef<'_>,
    clusters: &mut BTreeMap<String, ClusterIr>,
) -> Result<String, Problem> {
    resolve_for(store, referrer, r, clusters, Traffic::Http)
}

/// [`resolve`] for a TCPRoute, UDPRoute or TLSRoute backend: bytes are forwarded as they are,
/// so the port's `appProtocol` does not matter.
pub fn resolve_stream(
    store: &Store,
    referrer: Referrer<'_>,
    r: BackendRef<'_>,
    clusters: &mut BTreeMap<String, ClusterIr>,
) -> Result<String, Problem> {
    resolve_for(store, referrer, r, clusters, Traffic::Stream)
}

/// What the backend will carry.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Traffic {
    Http,
    Stream,
}

fn resolve_for(
    store: &Store,
    referrer: Referrer<'_>,
    r: BackendRef<'_>,
    clusters: &mut BTreeMap<String, ClusterIr>,
    traffic: Traffic,
) -> Result<String, Problem> {
    let group = r.group.unwrap_or("");
    let kind = r.kind.unwrap_or("Service");
    if !group.is_empty() || kind != "Service" {
        let shown = if group.is_empty() {
            kind.to_owned()
        } else {
            format!("{group}/{kind}")
        };
        return Err(Problem::new(
            c::REASON_INVALID_KIND,
            format!(
                "backendRef {} has kind {shown}; only core Services (group \"\", kind Service) are supported",
                r.name
            ),
        ));
    }
    let namespace = r.namespace.unwrap_or(referrer.namespace);
    let key = ObjectKey::new(namespace, r.name);
    let permitted = reference_grant::permits(
        store,
        &From {
            group: referrer.group,
            kind: referrer.kind,
            namespace: referrer.namespace,
        },
        &To {
            group: "",
            kind: "Service",
            namespace,
            name: r.name,
        },
    );
    if !permitted {
        return Err(Problem::new(
            c::REASON_REF_NOT_PERMITTED,
            format!(
                "backendRef to Service {key} crosses namespaces and no ReferenceGrant in {namespace} allows {} from {}; add one",
                referrer.kind, referrer.namespace
            ),
        ));
    }
    let Some(port) = r.port else {
        return Err(Problem::new(
            c::REASON_BACKEND_NOT_FOUND,
            format!("backendRef to Service {key} has no port; a Service reference needs one"),
        ));
    };
    let Some(service) = store.services.get(&key) else {
        return Err(Problem::new(
            c::REASON_BACKEND_NOT_FOUND,
            format!("Service {key} does not exist"),
        ));
    };
    let ports = service
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_deref())
        .unwrap_or_default();
    let Some(service_port) = ports.iter().find(|p| p.port == port) else {
        let known: Vec<String> = ports.iter().map(|p| p.port.to_string()).collect();
        return Err(Problem::new(
            c::REASON_BACKEND_NOT_FOUND,
            format!(
                "Service {key} has no port {port} (its ports: {})",
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            ),
        ));
    };
    // A GRPCRoute's backends are spoken to with HTTP/2 whatever the port's `appProtocol`
    // says (the rule carries `grpc`), so any value, `grpc` included, is fine for it. L4 routes
    // forward bytes: the cluster's HTTP protocol is never used for them.
    let protocol = match (upstream_protocol(service_port), traffic) {
        (Some(protocol), _) => Some(protocol),
        (None, Traffic::Stream) => Some(UpstreamProtocol::Http1),
        (None, Traffic::Http) => {
            (referrer.kind == super::grpc_route::KIND).then_some(UpstreamProtocol::H2c)
        }
    };
    let protocol = protocol.ok_or_else(|| {
        Problem::new(
            "UnsupportedProtocol",
            format!(
                "Service {key} port {port} has appProtocol {}, which this proxy cannot speak; use kubernetes.io/h2c, kubernetes.io/ws, http or none (or HTTPS or kubernetes.io/wss with a BackendTLSPolicy)",
                service_port.app_protocol.as_deref().unwrap_or_default()
            ),
        )
    })?;
    let name = cluster_name(&key, port);
    if !clusters.contains_key(&name) {
        let cluster = ClusterIr {
            name: name.clone(),
            service: key.clone(),
            // Checked above: `port` is a Service port, which Kubernetes keeps in 1..=65535.
            port: u16::try_from(port).unwrap_or(0),
            protocol,
            // Read for the clusters in use at the end of a translation (see `route_cache`).
            endpoints: Vec::new(),
            tls: None,
            retry_budget: None,
            backend_config: None,
        };
        clusters.insert(name.clone(), cluster);
    }
    Ok(name)
}

/// The clusters of `clusters` with their endpoints read from `store`: at the end of each
/// translation, and alone for a change that touched only EndpointSlices (Services, and so
/// cluster names, ports and protocols, are as they were when `clusters` was translated).
pub fn refresh_endpoints(
    store: &Store,
    clusters: &BTreeMap<String, ClusterIr>,
) -> BTreeMap<String, ClusterIr> {
    clusters
        .iter()
        .map(|(name, cluster)| {
            let port = store
                .services
                .get(&cluster.service)
                .and_then(|s| s.spec.as_ref())
                .and_then(|s| s.ports.as_ref())
                .and_then(|ports| ports.iter().find(|p| p.port == i32::from(cluster.port)));
            let endpoints = port
                .map(|port| ready_endpoints(store, &cluster.service, port))
                .unwrap_or_default();
            (
                name.clone(),
                ClusterIr {
                    endpoints,
                    ..cluster.clone()
                },
            )
        })
        .collect()
}

/// `namespace/service:port`.
pub fn cluster_name(service: &ObjectKey, port: i32) -> String {
    format!("{service}:{port}")
}

/// The cluster a TLS `Passthrough` listener uses for a Service port that a BackendTLSPolicy
/// governs (`namespace/service:port/passthrough`): the same endpoints, never TLS from the proxy
/// (see `l4_routes::Passthrough`). No Service name contains `/`, so it names no other cluster.
pub fn passthrough_cluster_name(cluster: &str) -> String {
    format!("{cluster}/passthrough")
}

/// The upstream protocol from the port's `appProtocol` (KEP-3726 standard names). `None`
/// when it names a protocol the proxy cannot speak to a backend (the route then gets
/// `ResolvedRefs=False, UnsupportedProtocol`, as BackendRef requires).
fn upstream_protocol(port: &ServicePort) -> Option<UpstreamProtocol> {
    match port.app_protocol.as_deref() {
        None | Some("" | "http" | "HTTP" | "kubernetes.io/ws") => Some(UpstreamProtocol::Http1),
        // HTTP/1.1 (WebSocket) over TLS: served only where a BackendTLSPolicy covers the port,
        // which `backend_tls::BackendTls::secure` checks.
        Some(p) if tls_app_protocol(Some(p)) => Some(UpstreamProtocol::Http1),
        Some("kubernetes.io/h2c") => Some(UpstreamProtocol::H2c),
        Some(_) => None,
    }
}

/// Whether a Service port's `appProtocol` says it speaks TLS (`HTTPS`, `kubernetes.io/wss`):
/// usable only with a BackendTLSPolicy for the port.
pub fn tls_app_protocol(app_protocol: Option<&str>) -> bool {
    matches!(app_protocol, Some("https" | "HTTPS" | "kubernetes.io/wss"))
}

/// Ready endpoints of a Service port, from its EndpointSlices as kube-proxy reads them: the
/// slice port is matched by *name* to the Service port (both unnamed is a match), and an
/// endpoint counts unless `conditions.ready` is `false` (absent means ready). FQDN slices
/// are skipped. Sorted and de-duplicated so translation is deterministic.
fn ready_endpoints(store: &Store, service: &ObjectKey, port: &ServicePort) -> Vec<String> {
    let port_name = port.name.as_deref().unwrap_or("");
    let mut out = BTreeSet::new();
    for slice in store.endpoint_slices_for(service) {
        let ipv6 = match slice.address_type.as_str() {
            "IPv4" => false,
            "IPv6" => true,
            _ => continue,
        };
        let Some(target) = slice
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref().unwrap_or("") == port_name)
            .and_then(|p| p.port)
        else {
            continue;
        };
        for endpoint in &slice.endpoints {
            let ready = endpoint
                .conditions
                .as_ref()
                .and_then(|c| c.ready)
                .unwrap_or(true);
            if !ready {
                continue;
            }
            for address in &endpoint.addresses {
                out.insert(if ipv6 {
                    format!("[{address}]:{target}")
                } else {
                    format!("{address}:{target}")
                });
            }
        }
    }
    out.into_iter().collect()
}
