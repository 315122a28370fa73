//! TLSRoute, TCPRoute and UDPRoute: attachment, backends, the precedence between routes on one
//! listener, and their status.
//!
//! Precedence. A TCP or UDP listener cannot tell connections apart, so of the routes attached
//! to it only the oldest (`metadata.creationTimestamp`, then `namespace/name`) receives
//! traffic, and every attached route stays `Accepted` (GEP-2644, "Multiple TCPRoutes
//! attaching to the same listener", which applies the `AllowedRoutes` precedence rules; UDP
//! listeners are the same case). A TLS listener tells connections apart by SNI: each
//! hostname goes to the oldest route that has it, by the same rules (the API design guide's
//! conflict rules: "the oldest Route based on creation timestamp", then alphabetical order).

use std::collections::{BTreeMap, BTreeSet};

use gantry_crds::gateway::experimental::tcproutes::TcpRoute;
use gantry_crds::gateway::experimental::udproutes::UdpRoute;
use gantry_crds::gateway::httproutes::HttpRouteParentRefs;
use gantry_crds::gateway::tlsroutes::TlsRoute;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

use super::backend::{self, BackendRef, Referrer};
use super::conditions::{self as c, Problem};
use super::gateway::GatewayState;
use super::hostname;
use super::parent_ref::{self, Attachment, RouteInfo};
use super::{API_VERSION, generation_of};
use crate::ir::{ClusterIr, L4BackendIr, L4RouteIr, RouteRef};
use crate::status::{Condition, ObjectStatus, RouteParentStatus, RouteStatus, StatusBody};
use crate::store::{ObjectKey, Store};

pub const TLS_ROUTE: &str = "TLSRoute";
pub const TCP_ROUTE: &str = "TCPRoute";
pub const UDP_ROUTE: &str = "UDPRoute";

/// What the L4 routes add to the translation.
#[derive(Default)]
pub struct L4Translation {
    /// Route statuses: TCPRoutes, then TLSRoutes, then UDPRoutes, each by `namespace/name`.
    pub statuses: Vec<ObjectStatus>,
    /// `(gateway, listener, route)` for `attachedRoutes`.
    pub attached: Vec<(ObjectKey, usize, ObjectKey)>,
    /// The routes that receive traffic, per `(gateway, listener)`.
    pub routes: BTreeMap<(ObjectKey, usize), Vec<L4RouteIr>>,
    /// Clusters of those routes.
    pub clusters: BTreeMap<String, ClusterIr>,
}

/// One route of any of the three kinds, as the translator needs it.
struct Route<'a> {
    kind: &'static str,
    key: &'a ObjectKey,
    meta: &'a ObjectMeta,
    /// TLSRoute `spec.hostnames`; empty for TCPRoute and UDPRoute.
    hostnames: Vec<String>,
    parent_refs: Vec<HttpRouteParentRefs>,
    /// Per rule, its backendRefs.
    rules: Vec<Vec<BackendSpec>>,
}

/// A backendRef of any of the three kinds.
struct BackendSpec {
    group: Option<String>,
    kind: Option<String>,
    name: String,
    namespace: Option<String>,
    port: Option<i32>,
    weight: Option<i32>,
}

macro_rules! backend_spec {
    ($b:expr) => {
        BackendSpec {
            group: $b.group.clone(),
            kind: $b.kind.clone(),
            name: $b.name.clone(),
            namespace: $b.namespace.clone(),
            port: $b.port,
            weight: $b.weight,
        }
    };
}

macro_rules! parent_spec {
    ($p:expr) => {
        HttpRouteParentRefs {
            group: $p.group.clone(),
            kind: $p.kind.clone(),
            name: $p.name.clone(),
            namespace: $p.namespace.clone(),
            port: $p.port,
            section_name: $p.section_name.clone(),
        }
    };
}

fn tcp_route<'a>(key: &'a ObjectKey, r: &'a TcpRoute) -> Route<'a> {
    Route {
        kind: TCP_ROUTE,
        key,
        meta: &r.metadata,
        hostnames: Vec::new(),
        parent_refs: r.spec.parent_refs.iter().flatten().map(|p| parent_spec!(p)).collect(),
        rules: r
            .spec
            .rules
            .iter()
            .map(|rule| rule.backend_refs.iter().map(|b| backend_spec!(b)).collect())
            .collect(),
    }
}

fn udp_route<'a>(key: &'a ObjectKey, r: &'a UdpRoute) -> Route<'a> {
    Route {
        kind: UDP_ROUTE,
        key,
        meta: &r.metadata,
        hostnames: Vec::new(),
        parent_refs: r.spec.parent_refs.iter().flatten().map(|p| parent_spec!(p)).collect(),
        rules: r
            .spec
            .rules
            .iter()
            .map(|rule| rule.backend_refs.iter().map(|b| backend_spec!(b)).collect())
            .collect(),
    }
}

fn tls_route<'a>(key: &'a ObjectKey, r: &'a TlsRoute) -> Route<'a> {
    Route {
        kind: TLS_ROUTE,
        key,
        meta: &r.metadata,
        hostnames: r.spec.hostnames.clone(),
        parent_refs: r.spec.parent_refs.iter().flatten().map(|p| parent_spec!(p)).collect(),
        rules: r
            .spec
            .rules
            .iter()
            .map(|rule| rule.backend_refs.iter().map(|b| backend_spec!(b)).collect())
            .collect(),
    }
}

/// A route's rule, translated once and shared by every listener it is placed on.
struct Translated {
    backends: Vec<L4BackendIr>,
    clusters: BTreeMap<String, ClusterIr>,
    /// References that did not resolve (`ResolvedRefs=False`).
    unresolved: Vec<Problem>,
    /// Rules after the first, dropped (`PartiallyInvalid`).
    dropped: Vec<(usize, Problem)>,
    /// Why no parent can accept the route, if none can.
    invalid: Option<Problem>,
}

fn translate_rules(store: &Store, route: &Route<'_>) -> Translated {
    let mut out = Translated {
        backends: Vec::new(),
        clusters: BTreeMap::new(),
        unresolved: Vec::new(),
        dropped: Vec::new(),
        invalid: None,
    };
    let bad: Vec<&String> = route
        .hostnames
        .iter()
        .filter(|h| !hostname::is_valid(h))
        .collect();
    if !bad.is_empty() {
        out.invalid = Some(Problem::new(
            c::REASON_UNSUPPORTED_VALUE,
            format!(
                "spec.hostnames {bad:?} are not valid DNS names (IP addresses are not allowed)"
            ),
        ));
        return out;
    }
    let Some((first, rest)) = route.rules.split_first() else {
        out.invalid = Some(Problem::new(
            c::REASON_UNSUPPORTED_VALUE,
            format!("a {} needs one rule; spec.rules is empty", route.kind),
        ));
        return out;
    };
    // The v1 TCPRoute, UDPRoute and TLSRoute APIs allow exactly one rule
    // (`+kubebuilder:validation:MaxItems=1`): with no matches, a second rule could never be
    // chosen. Older API versions accept up to 16; the first is served.
    for (i, _) in rest.iter().enumerate() {
        out.dropped.push((
            i + 1,
            Problem::new(
                c::REASON_UNSUPPORTED_VALUE,
                format!(
                    "a {} serves one rule, the first (Gateway API v1 allows exactly one); move these backendRefs into rule 0",
                    route.kind
                ),
            ),
        ));
    }
    let referrer = Referrer {
        kind: route.kind,
        namespace: &route.key.namespace,
    };
    for b in first {
        // BackendRef weight: "If unspecified, weight defaults to 1."
        let weight = b.weight.unwrap_or(1).max(0).unsigned_abs();
        let resolved = backend::resolve_stream(
            store,
            referrer,
            BackendRef {
                group: b.group.as_deref(),
                kind: b.kind.as_deref(),
                name: &b.name,
                namespace: b.namespace.as_deref(),
                port: b.port,
            },
            &mut out.clusters,
        );
        // An invalid backend keeps its weight with no cluster: "Connection rejections must
        // respect weight".
        let cluster = match resolved {
            Ok(name) => Some(name),
            Err(problem) => {
                out.unresolved.push(problem);
                None
            }
        };
        out.backends.push(L4BackendIr { weight, cluster });
    }
    out
}

/// A route placed on a listener, competing with the others placed there.
struct Candidate {
    /// Index into the translated routes.
    route: usize,
    /// Effective hostnames on the listener (TLS); `*` alone for TCP and UDP.
    hostnames: Vec<String>,
    created: Option<Time>,
}

/// A route read and translated, with its attachment outcome per parentRef.
struct Pending<'a> {
    route: Route<'a>,
    translated: Translated,
    /// Per parentRef we answer for: the parentRef and its outcome.
    parents: Vec<(HttpRouteParentRefs, Result<Vec<(ObjectKey, usize)>, Problem>)>,
}

/// Translates every TCPRoute, TLSRoute and UDPRoute.
pub fn translate_all(
    store: &Store,
    gateways: &BTreeMap<ObjectKey, GatewayState>,
    controller_name: &str,
) -> L4Translation {
    let routes: Vec<Route<'_>> = store
        .tcp_routes
        .iter()
        .map(|(k, r)| tcp_route(k, r))
        .chain(store.tls_routes.iter().map(|(k, r)| tls_route(k, r)))
        .chain(store.udp_routes.iter().map(|(k, r)| udp_route(k, r)))
        .collect();
    let mut out = L4Translation::default();
    let mut pending = Vec::with_capacity(routes.len());
    for route in routes {
        let translated = translate_rules(store, &route);
        let parents = attach_route(store, gateways, &route, &translated, &mut out.attached);
        pending.push(Pending {
            route,
            translated,
            parents,
        });
    }

    // Every listener's candidates, in route order; a route reaching one listener through two
    // parentRefs competes once.
    let mut candidates: BTreeMap<(ObjectKey, usize), Vec<Candidate>> = BTreeMap::new();
    let mut placed: BTreeSet<(ObjectKey, usize, usize)> = BTreeSet::new();
    for (i, p) in pending.iter().enumerate() {
        for (_, outcome) in &p.parents {
            for (gateway, listener) in outcome.iter().flatten() {
                if !placed.insert((gateway.clone(), *listener, i)) {
                    continue;
                }
                let Some(l) = gateways.get(gateway).and_then(|g| g.listeners.get(*listener))
                else {
                    continue;
                };
                let hostnames = if p.route.kind == TLS_ROUTE {
                    hostname::intersect(l.hostname.as_deref(), &p.route.hostnames)
                } else {
                    vec![hostname::ANY.to_owned()]
                };
                candidates
                    .entry((gateway.clone(), *listener))
                    .or_default()
                    .push(Candidate {
                        route: i,
                        hostnames,
                        created: p.route.meta.creation_timestamp.clone(),
                    });
            }
        }
    }

    // Per listener, each hostname goes to the oldest route that has it.
    let mut superseded: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for (listener, mut list) in candidates {
        list.sort_by(|a, b| {
            oldest_first(&a.created, &b.created)
                .then_with(|| pending[a.route].route.key.cmp(pending[b.route].route.key))
        });
        let mut taken: BTreeMap<String, usize> = BTreeMap::new();
        let mut served = Vec::new();
        for candidate in list {
            let p = &pending[candidate.route];
            let mut won = Vec::new();
            for host in candidate.hostnames {
                match taken.get(&host) {
                    Some(&winner) => superseded.entry(candidate.route).or_default().push(format!(
                        "{} {} takes {} on listener {}/{}",
                        pending[winner].route.kind,
                        pending[winner].route.key,
                        describe_host(&host, p.route.kind),
                        listener.0,
                        gateways
                            .get(&listener.0)
                            .and_then(|g| g.listeners.get(listener.1))
                            .map_or("", |l| l.name.as_str()),
                    )),
                    None => {
                        taken.insert(host.clone(), candidate.route);
                        won.push(host);
                    }
                }
            }
            if won.is_empty() {
                continue;
            }
            won.sort_by(|a, b| hostname::most_specific_first(a, b));
            out.clusters.extend(p.translated.clusters.clone());
            served.push(L4RouteIr {
                route: RouteRef {
                    kind: p.route.kind.to_owned(),
                    namespace: p.route.key.namespace.clone(),
                    name: p.route.key.name.clone(),
                },
                hostnames: if p.route.kind == TLS_ROUTE {
                    won
                } else {
                    Vec::new()
                },
                backends: p.translated.backends.clone(),
            });
        }
        out.routes.insert(listener, served);
    }

    for (i, p) in pending.into_iter().enumerate() {
        if p.parents.is_empty() {
            continue;
        }
        let generation = generation_of(p.route.meta);
        let note = superseded.get(&i);
        let parents = p
            .parents
            .into_iter()
            .map(|(parent, outcome)| RouteParentStatus {
                parent_ref: parent_ref::echo(&parent),
                controller_name: controller_name.to_owned(),
                conditions: conditions(outcome.map(|_| ()), &p.translated, note, generation),
            })
            .collect();
        out.statuses.push(ObjectStatus {
            api_version: API_VERSION.to_owned(),
            kind: p.route.kind.to_owned(),
            namespace: p.route.key.namespace.clone(),
            name: p.route.key.name.clone(),
            status: StatusBody::Route(RouteStatus { parents }),
        });
    }
    out
}

/// Resolves every parentRef of a route. Returns, per parentRef we answer for, the listeners
/// the route is served on or why it is not accepted; records attachments in `attached`.
fn attach_route(
    store: &Store,
    gateways: &BTreeMap<ObjectKey, GatewayState>,
    route: &Route<'_>,
    translated: &Translated,
    attached: &mut Vec<(ObjectKey, usize, ObjectKey)>,
) -> Vec<(HttpRouteParentRefs, Result<Vec<(ObjectKey, usize)>, Problem>)> {
    let info = RouteInfo {
        kind: route.kind,
        namespace: &route.key.namespace,
        hostnames: &route.hostnames,
    };
    let mut out = Vec::new();
    for parent in &route.parent_refs {
        // A parentRef naming a listener of another protocol gets NotAllowedByListeners from
        // the shared attachment rules, as GEP-2644 asks of a TCPRoute on a UDP listener.
        let outcome = match parent_ref::attach(store, gateways, &info, parent) {
            Attachment::NotOurs => continue,
            Attachment::Rejected(problem) => Err(problem),
            Attachment::Attached {
                gateway,
                attached: listeners,
                served,
                problem,
            } => {
                attached.extend(
                    listeners
                        .iter()
                        .map(|&i| (gateway.clone(), i, route.key.clone())),
                );
                // An invalid hostname is the route's own fault: say so rather than that no
                // listener matches it.
                match translated.invalid.clone().or(problem) {
                    Some(problem) => Err(problem),
                    None => Ok(served.into_iter().map(|i| (gateway.clone(), i)).collect()),
                }
            }
        };
        out.push((parent.clone(), outcome));
    }
    out
}

/// `Accepted`, `ResolvedRefs` and, when rules were dropped, `PartiallyInvalid`: the same
/// conditions as HTTPRoute's. A route that receives no traffic because older routes take its
/// listeners' connections is still accepted (GEP-2644); the message says who takes them.
fn conditions(
    accepted: Result<(), Problem>,
    translated: &Translated,
    superseded: Option<&Vec<String>>,
    generation: i64,
) -> Vec<Condition> {
    let accepted = match accepted {
        Ok(()) => {
            let message = match superseded {
                None => "Route is accepted".to_owned(),
                Some(notes) => format!(
                    "Route is accepted; an older route wins where they overlap: {}",
                    notes.join("; ")
                ),
            };
            c::ok(c::ACCEPTED, c::REASON_ACCEPTED, message, generation)
        }
        Err(p) => c::not_ok(c::ACCEPTED, &p, generation),
    };
    let resolved = match translated.unresolved.first() {
        None => c::ok(
            c::RESOLVED_REFS,
            c::REASON_RESOLVED_REFS,
            "All references are resolved",
            generation,
        ),
        Some(first) => {
            let message = translated
                .unresolved
                .iter()
                .map(|p| p.message.as_str())
                .collect::<Vec<_>>()
                .join("; ");
            c::not_ok(
                c::RESOLVED_REFS,
                &Problem::new(first.reason, message),
                generation,
            )
        }
    };
    let mut out = vec![accepted, resolved];
    if translated.invalid.is_none() && !translated.dropped.is_empty() {
        // RouteConditionPartiallyInvalid: the message "MUST start with the prefix "Dropped
        // Rule"".
        let dropped = translated
            .dropped
            .iter()
            .map(|(i, p)| format!("rule {i}: {}", p.message))
            .collect::<Vec<_>>()
            .join("; ");
        out.push(Condition::new(
            c::PARTIALLY_INVALID,
            true,
            c::REASON_UNSUPPORTED_VALUE,
            format!("Dropped Rule(s): {dropped}"),
            generation,
        ));
    }
    out
}

/// Oldest first; a route without a creation timestamp counts as newest.
fn oldest_first(a: &Option<Time>, b: &Option<Time>) -> std::cmp::Ordering {
    match (a, b) {
        (Some(a), Some(b)) => a.0.cmp(&b.0),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => std::cmp::Ordering::Equal,
    }
}

fn describe_host(host: &str, kind: &str) -> String {
    if kind == TLS_ROUTE {
        format!("hostname {host}")
    } else {
        "all traffic".to_owned()
    }
}
