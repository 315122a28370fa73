//! TLSRoute, TCPRoute and UDPRoute: their one rule's backends, and the precedence between the
//! routes placed on one listener. Attachment and status are the shared loop's
//! ([`super::routes`]).
//!
//! Precedence. A TCP or UDP listener cannot tell connections apart, so of the routes attached
//! to it only the oldest (`metadata.creationTimestamp`, then `namespace/name`) receives
//! traffic, and every attached route stays `Accepted` (GEP-2644, "Multiple TCPRoutes
//! attaching to the same listener", which applies the `AllowedRoutes` precedence rules; UDP
//! listeners are the same case). A TLS listener tells connections apart by SNI: each
//! hostname goes to the oldest route that has it, by the same rules (the API design guide's
//! conflict rules: "the oldest Route based on creation timestamp", then alphabetical order).
//! A route that loses traffic this way stays `Accepted`, and the message of that condition names
//! the routes that take it and what they take.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use gantry_crds::gateway::experimental::tcproutes::TcpRoute;
use gantry_crds::gateway::experimental::udproutes::UdpRoute;
use gantry_crds::gateway::tlsroutes::TlsRoute;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::assemble::Collected;
use super::backend::{self, BackendRef, Referrer};
use super::backend_tls::{self, ClusterTls};
use super::conditions::{self as c, Problem};
use super::hostname;
use super::parent_ref::RouteResource;
use super::routes::{Placement, RuleProblems, TranslatedKind};
use crate::ir::{ClusterIr, L4BackendIr, L4RouteIr, RouteRef};
use crate::status::{ObjectStatus, StatusBody};
use crate::store::{ObjectKey, Store};

/// An L4 route's rule, translated once and placed on every listener that serves it.
#[derive(Clone, Debug, Default)]
pub struct TranslatedL4Route {
    kind: &'static str,
    /// TLSRoute `spec.hostnames`; empty for TCPRoute and UDPRoute.
    hostnames: Vec<String>,
    /// As a listener that originates TLS to covered backends sees them (TCP, TLS
    /// `Terminate`): a backend whose BackendTLSPolicy cannot be used has no cluster.
    backends: Vec<L4BackendIr>,
    /// Sorted by name (a list: see `http_route::TranslatedRoute::clusters`).
    clusters: Vec<Arc<ClusterIr>>,
    /// TLSRoute only, when a BackendTLSPolicy governs one of its backends: the backends and
    /// clusters a TLS `Passthrough` listener uses instead.
    passthrough: Option<Passthrough>,
    /// Services of backends made invalid because their BackendTLSPolicy cannot be used.
    unusable_tls_services: BTreeSet<ObjectKey>,
    problems: RuleProblems,
}

/// What a TLS `Passthrough` listener forwards a TLSRoute's connections to when a
/// BackendTLSPolicy governs some of its backends. Passthrough never originates TLS, so those
/// backends get plaintext clusters of their own ([`backend::passthrough_cluster_name`]) and
/// a policy that cannot be used does not make them invalid here. The IR then says exactly
/// what happens: a cluster with TLS settings is only ever reached over TLS.
#[derive(Clone, Debug)]
struct Passthrough {
    backends: Vec<L4BackendIr>,
    /// The plaintext clusters of the governed backends; the others use `clusters`.
    clusters: Vec<Arc<ClusterIr>>,
}

/// A route placed on a listener, competing with the others placed there.
#[derive(Clone, Debug)]
pub struct L4Candidate {
    route: L4RouteIr,
    created: Option<Time>,
}

impl TranslatedKind for TranslatedL4Route {
    fn hostnames(&self) -> &[String] {
        &self.hostnames
    }

    fn problems(&self) -> &RuleProblems {
        &self.problems
    }

    fn clusters(&self) -> &[Arc<ClusterIr>] {
        &self.clusters
    }

    fn clusters_mut(&mut self) -> &mut [Arc<ClusterIr>] {
        &mut self.clusters
    }

    fn passthrough_clusters(&self) -> Option<&[Arc<ClusterIr>]> {
        self.passthrough.as_ref().map(|p| &p.clusters[..])
    }

    fn services(&self) -> BTreeSet<ObjectKey> {
        let mut services: BTreeSet<ObjectKey> =
            self.clusters.iter().map(|c| c.service.clone()).collect();
        services.extend(self.unusable_tls_services.iter().cloned());
        services
    }

    fn place(&self, collected: &mut Collected, at: &Placement<'_>) {
        // TLSRoute hostnames: "any TLSRoute hostnames that do not match any Listener hostname
        // MUST be ignored"; what remains is the intersection. TCP and UDP listeners take
        // every connection.
        let hostnames = if self.kind == TlsRoute::KIND {
            hostname::intersect(at.listener.hostname.as_deref(), &self.hostnames)
        } else {
            Vec::new()
        };
        collected.add_l4(
            at.gateway,
            at.index,
            L4Candidate {
                route: L4RouteIr {
                    route: RouteRef::clone(at.route),
                    hostnames,
                    backends: match &self.passthrough {
                        Some(p) if at.listener.is_tls_passthrough() => p.backends.clone(),
                        _ => self.backends.clone(),
                    },
                },
                created: at.created.cloned(),
            },
        );
    }
}

impl TranslatedL4Route {
    /// Applies BackendTLSPolicy to the route's backends: `tls` says what governs each
    /// cluster's Service port.
    ///
    /// Which connections originate TLS (GEP-1897, "How a client behaves", leaves TLSRoute in
    /// `Terminate` mode and TCPRoute to implementations; GEP-2643, "TLSRoute + TLS
    /// Termination": "On a terminated TLSRoute, a BackendTLSPolicy can be used to re-encrypt
    /// the traffic to backends"): TCPRoute and TLSRoute on a `Terminate` listener do, with the
    /// policy's SNI and verification and no ALPN (the bytes are opaque TCP, and the API
    /// defines no ALPN for them). TLSRoute on a `Passthrough` listener never does ("Connect to
    /// backend with TLS? No"): the client's own TLS reaches the backend untouched. UDPRoute
    /// never does either: a policy does not attach to a UDP port (see `backend_tls::policy`).
    ///
    /// A backend whose policy cannot be used is rejected wherever TLS would be originated
    /// (never plaintext: TCPRoute and TLSRoute `backendRefs` reject connections to an invalid
    /// backend in proportion to its weight), and forwarded as before on a passthrough
    /// listener.
    pub fn with_backend_tls<'a>(mut self, tls: impl Fn(&ClusterIr) -> ClusterTls<'a>) -> Self {
        if self.kind == UdpRoute::KIND {
            return self;
        }
        let mut governed = Vec::new();
        let mut unusable = BTreeSet::new();
        for cluster in &mut self.clusters {
            match tls(cluster) {
                ClusterTls::None => continue,
                ClusterTls::Tls(settings) => Arc::make_mut(cluster).tls = Some(settings),
                ClusterTls::Unusable { policy, problem } => {
                    self.problems
                        .unresolved_when_originating
                        .push(backend_tls::unusable_problem(
                            cluster,
                            policy,
                            problem,
                            "connections given to it are closed, never forwarded in plaintext",
                        ));
                    unusable.insert(cluster.name.clone());
                    self.unusable_tls_services.insert(cluster.service.clone());
                }
            }
            governed.push(cluster.name.clone());
        }
        if governed.is_empty() {
            return self;
        }
        if self.kind == TlsRoute::KIND {
            let plain = |name: &String| backend::passthrough_cluster_name(name);
            self.passthrough = Some(Passthrough {
                backends: self
                    .backends
                    .iter()
                    .map(|b| L4BackendIr {
                        weight: b.weight,
                        cluster: b.cluster.as_ref().map(|name| {
                            if governed.contains(name) {
                                plain(name)
                            } else {
                                name.clone()
                            }
                        }),
                    })
                    .collect(),
                clusters: self
                    .clusters
                    .iter()
                    .filter(|c| governed.contains(&c.name))
                    .map(|c| {
                        Arc::new(ClusterIr {
                            name: plain(&c.name),
                            tls: None,
                            ..(**c).clone()
                        })
                    })
                    .collect(),
            });
        }
        if !unusable.is_empty() {
            for backend in &mut self.backends {
                if backend
                    .cluster
                    .as_ref()
                    .is_some_and(|n| unusable.contains(n))
                {
                    backend.cluster = None;
                }
            }
            self.clusters
                .retain(|cluster| !unusable.contains(&cluster.name));
        }
        self
    }
}

/// For each L4 route that an older route beats on some listener, what the older routes take
/// from it ("TLSRoute default/old takes hostname shop.example.com on listener
/// default/gw/tls"), in listener order. The beaten route stays `Accepted`; these notes go in
/// the message of its `Accepted` condition ([`note_superseded`]).
pub type Superseded = BTreeMap<RouteRef, Vec<String>>;

/// The routes of one listener that receive traffic: oldest first, each TLS hostname kept only
/// by the oldest route that has it, a TCP or UDP listener's connections all going to its
/// oldest route. Routes left with nothing are dropped. What each newer route loses, and to
/// whom, is added to `superseded` (`listener` is `namespace/gateway/listener`).
pub fn winners(
    mut candidates: Vec<L4Candidate>,
    listener: &str,
    superseded: &mut Superseded,
) -> Vec<L4RouteIr> {
    candidates.sort_by(|a, b| {
        oldest_first(a.created.as_ref(), b.created.as_ref())
            .then_with(|| route_key(&a.route.route).cmp(&route_key(&b.route.route)))
    });
    // Each hostname taken, with the route that took it.
    let mut taken: Vec<(String, RouteRef)> = Vec::new();
    let mut out: Vec<L4RouteIr> = Vec::new();
    for candidate in candidates {
        let mut route = candidate.route;
        if route.route.kind != TlsRoute::KIND {
            match out.first() {
                None => out.push(route),
                Some(winner) => note(
                    superseded,
                    &route.route,
                    &winner.route,
                    "all traffic",
                    listener,
                ),
            }
            continue;
        }
        route
            .hostnames
            .retain(|h| match taken.iter().find(|(host, _)| host == h) {
                Some((_, winner)) => {
                    note(
                        superseded,
                        &route.route,
                        winner,
                        &format!("hostname {h}"),
                        listener,
                    );
                    false
                }
                None => true,
            });
        if route.hostnames.is_empty() {
            continue;
        }
        route
            .hostnames
            .sort_by(|a, b| hostname::most_specific_first(a, b));
        taken.extend(
            route
                .hostnames
                .iter()
                .map(|h| (h.clone(), route.route.clone())),
        );
        out.push(route);
    }
    out
}

/// Records that `winner` takes `what` from `loser` on `listener`.
fn note(
    superseded: &mut Superseded,
    loser: &RouteRef,
    winner: &RouteRef,
    what: &str,
    listener: &str,
) {
    let note = format!(
        "{} {}/{} takes {what} on listener {listener}",
        winner.kind, winner.namespace, winner.name
    );
    match superseded.get_mut(loser) {
        Some(notes) => notes.push(note),
        None => {
            superseded.insert(loser.clone(), vec![note]);
        }
    }
}

/// Adds to the `Accepted` condition of every route in `superseded` what older routes take from
/// it: such a route is accepted (GEP-2644) but receives less traffic than it asks for, and the
/// message says which routes win. Done after every route is attached and placed, since it
/// depends on the other routes of the listeners (so it is never part of what the route cache
/// remembers of one route).
pub fn note_superseded(statuses: &mut [ObjectStatus], superseded: &Superseded) {
    if superseded.is_empty() {
        return;
    }
    for status in statuses {
        let StatusBody::Route(route_status) = &mut status.status else {
            continue;
        };
        let key = RouteRef {
            kind: status.kind.clone(),
            namespace: status.namespace.clone(),
            name: status.name.clone(),
        };
        let Some(notes) = superseded.get(&key) else {
            continue;
        };
        let message = format!(
            "Route is accepted; an older route wins where they overlap: {}",
            notes.join("; ")
        );
        for condition in std::sync::Arc::make_mut(route_status)
            .parents
            .iter_mut()
            .flat_map(|p| p.conditions.iter_mut())
            .filter(|c| c.type_ == c::ACCEPTED && c.status == "True")
        {
            condition.message = Cow::Owned(message.clone());
        }
    }
}

fn route_key(r: &RouteRef) -> (&str, &str) {
    (&r.namespace, &r.name)
}

/// Oldest first; a route without a creation timestamp counts as the newest, as in HTTPRoute
/// precedence.
fn oldest_first(a: Option<&Time>, b: Option<&Time>) -> Ordering {
    match (a, b) {
        (Some(a), Some(b)) => a.0.cmp(&b.0),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    }
}

/// A backendRef of any of the three kinds, as the translator reads it.
struct BackendSpec<'a> {
    reference: BackendRef<'a>,
    weight: Option<i32>,
}

/// The generated backendRef types of the three kinds have the same fields.
macro_rules! backend_specs {
    ($rule:expr) => {
        $rule
            .backend_refs
            .iter()
            .map(|b| BackendSpec {
                reference: BackendRef {
                    group: b.group.as_deref(),
                    kind: b.kind.as_deref(),
                    name: &b.name,
                    namespace: b.namespace.as_deref(),
                    port: b.port,
                },
                weight: b.weight,
            })
            .collect::<Vec<_>>()
    };
}

/// Translates a TCPRoute.
pub fn translate_tcp_route(store: &Store, namespace: &str, route: &TcpRoute) -> TranslatedL4Route {
    let rules: Vec<Vec<BackendSpec<'_>>> =
        route.spec.rules.iter().map(|r| backend_specs!(r)).collect();
    translate(store, namespace, TcpRoute::KIND, Vec::new(), &rules)
}

/// Translates a UDPRoute.
pub fn translate_udp_route(store: &Store, namespace: &str, route: &UdpRoute) -> TranslatedL4Route {
    let rules: Vec<Vec<BackendSpec<'_>>> =
        route.spec.rules.iter().map(|r| backend_specs!(r)).collect();
    translate(store, namespace, UdpRoute::KIND, Vec::new(), &rules)
}

/// Translates a TLSRoute.
pub fn translate_tls_route(store: &Store, namespace: &str, route: &TlsRoute) -> TranslatedL4Route {
    let rules: Vec<Vec<BackendSpec<'_>>> =
        route.spec.rules.iter().map(|r| backend_specs!(r)).collect();
    translate(
        store,
        namespace,
        TlsRoute::KIND,
        route.spec.hostnames.clone(),
        &rules,
    )
}

fn translate(
    store: &Store,
    namespace: &str,
    kind: &'static str,
    hostnames: Vec<String>,
    rules: &[Vec<BackendSpec<'_>>],
) -> TranslatedL4Route {
    let mut out = TranslatedL4Route {
        kind,
        hostnames,
        ..TranslatedL4Route::default()
    };
    let bad: Vec<&String> = out
        .hostnames
        .iter()
        .filter(|h| !hostname::is_valid(h))
        .collect();
    if !bad.is_empty() {
        out.problems.invalid = Some(Problem::new(
            c::REASON_UNSUPPORTED_VALUE,
            format!(
                "spec.hostnames {bad:?} are not valid DNS names (IP addresses are not allowed)"
            ),
        ));
        return out;
    }
    let Some((first, rest)) = rules.split_first() else {
        out.problems.invalid = Some(Problem::new(
            c::REASON_UNSUPPORTED_VALUE,
            format!("a {kind} needs one rule; spec.rules is empty"),
        ));
        return out;
    };
    out.problems.served = 1;
    // The v1 TCPRoute, UDPRoute and TLSRoute APIs allow exactly one rule
    // (`+kubebuilder:validation:MaxItems=1`): with no matches, a second rule could never be
    // chosen. Older API versions accept up to 16; the first is served and the rest dropped.
    for i in 1..=rest.len() {
        out.problems.dropped.push((
            i,
            Problem::new(
                c::REASON_UNSUPPORTED_VALUE,
                format!(
                    "a {kind} serves one rule, the first (Gateway API v1 allows exactly one); move these backendRefs into rule 0"
                ),
            ),
        ));
    }
    let referrer = Referrer {
        group: gantry_crds::GATEWAY_GROUP,
        kind,
        namespace,
    };
    let mut clusters = BTreeMap::new();
    for b in first {
        // BackendRef weight: "If unspecified, weight defaults to 1."
        let weight = b.weight.unwrap_or(1).max(0).unsigned_abs();
        let resolved = backend::resolve_stream(store, referrer, b.reference, &mut clusters);
        // An invalid backend keeps its weight with no cluster: "Connection rejections must
        // respect weight; if an invalid backend is requested to have 80% of connections, then
        // 80% of connections must be rejected instead."
        let cluster = match resolved {
            Ok(name) => Some(name),
            Err(problem) => {
                out.problems.unresolved.push(problem);
                None
            }
        };
        out.backends.push(L4BackendIr { weight, cluster });
    }
    out.clusters = clusters.into_values().map(Arc::new).collect();
    out
}
