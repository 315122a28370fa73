//! Route parentRefs: which of our Gateway listeners a route attaches to, or why it does not.
//! A parentRef names a Gateway (its own listeners) or a ListenerSet attached to one (that
//! ListenerSet's listeners, GEP-1713).

use std::collections::BTreeMap;

use gantry_crds::gateway::experimental::tcproutes::{TcpRoute, TcpRouteParentRefs};
use gantry_crds::gateway::experimental::udproutes::{UdpRoute, UdpRouteParentRefs};
use gantry_crds::gateway::grpcroutes::{GrpcRoute, GrpcRouteParentRefs};
use gantry_crds::gateway::httproutes::{HttpRoute, HttpRouteParentRefs};
use gantry_crds::gateway::tlsroutes::{TlsRoute, TlsRouteParentRefs};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::allowed_routes::AllowedNamespaces;
use super::conditions::{self as c, Problem};
use super::gateway::GatewayState;
use super::hostname;
use super::listener::GATEWAY_GROUP;
use super::listener_set;
use crate::status::ParentReference;
use crate::store::{ObjectKey, Store};

/// A route's `spec.parentRefs[]` entry; every route kind has the same fields.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ParentRef {
    pub group: Option<String>,
    pub kind: Option<String>,
    pub namespace: Option<String>,
    pub name: String,
    pub section_name: Option<String>,
    pub port: Option<i32>,
}

/// A route object of any kind: its kind, metadata and parentRefs.
pub trait RouteResource {
    /// The kind as written in `kind:` and in status, e.g. `HTTPRoute`.
    const KIND: &'static str;
    fn meta(&self) -> &ObjectMeta;
    fn parent_refs(&self) -> Vec<ParentRef>;
}

/// Every route kind's generated types have the same parentRefs fields.
macro_rules! route_resource {
    ($($route:ty => $kind:literal, $parent:ty;)*) => {$(
        impl From<&$parent> for ParentRef {
            fn from(p: &$parent) -> Self {
                Self {
                    group: p.group.clone(),
                    kind: p.kind.clone(),
                    namespace: p.namespace.clone(),
                    name: p.name.clone(),
                    section_name: p.section_name.clone(),
                    port: p.port,
                }
            }
        }

        impl RouteResource for $route {
            const KIND: &'static str = $kind;

            fn meta(&self) -> &ObjectMeta {
                &self.metadata
            }

            fn parent_refs(&self) -> Vec<ParentRef> {
                self.spec.parent_refs.iter().flatten().map(ParentRef::from).collect()
            }
        }
    )*};
}

route_resource! {
    HttpRoute => "HTTPRoute", HttpRouteParentRefs;
    GrpcRoute => "GRPCRoute", GrpcRouteParentRefs;
    TlsRoute => "TLSRoute", TlsRouteParentRefs;
    TcpRoute => "TCPRoute", TcpRouteParentRefs;
    UdpRoute => "UDPRoute", UdpRouteParentRefs;
}

impl ParentRef {
    /// The parentRef exactly as written, for `status.parents[].parentRef`.
    pub fn echo(&self) -> ParentReference {
        ParentReference {
            group: self.group.clone(),
            kind: self.kind.clone(),
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            section_name: self.section_name.clone(),
            port: self.port,
        }
    }
}

/// The outcome of one parentRef.
#[derive(Clone, Debug)]
pub enum Attachment {
    /// Not a Gateway we serve: we write no status for it ("Implementations of this API can
    /// only populate Route status for the Gateways/parent resources they are responsible
    /// for").
    NotOurs,
    Rejected(Problem),
    Attached {
        gateway: ObjectKey,
        /// Listener indexes the route attaches to (counted in `attachedRoutes`): selected by
        /// the parentRef, admitting the route by `allowedRoutes`, sharing a hostname with it.
        attached: Vec<usize>,
        /// Of those, the listeners that also share a hostname with the route and are
        /// programmed: where the route is served.
        served: Vec<usize>,
        /// Why the route is served nowhere, if it is not.
        problem: Option<Problem>,
    },
}

/// The route being attached.
pub struct RouteInfo<'a> {
    pub kind: &'a str,
    pub namespace: &'a str,
    pub hostnames: &'a [String],
}

/// Resolves one parentRef against the Gateways we serve.
///
/// ParentReference: `sectionName` names a listener and `port` selects listeners on that
/// port (both must match when both are set; neither selects every listener). A listener
/// admits the route if its `allowedRoutes` kinds include the route's kind and its namespace
/// policy admits the route's namespace. Of those, the listeners whose hostname intersects the
/// route's hostnames count it in `attachedRoutes` (only routes accepted there count) and serve
/// it where they are programmed.
pub fn attach(
    store: &Store,
    gateways: &BTreeMap<ObjectKey, GatewayState>,
    route: &RouteInfo<'_>,
    parent: &ParentRef,
) -> Attachment {
    if parent.group.as_deref().unwrap_or(GATEWAY_GROUP) != GATEWAY_GROUP {
        return Attachment::NotOurs;
    }
    let namespace = parent.namespace.as_deref().unwrap_or(route.namespace);
    let parent_key = ObjectKey::new(namespace, parent.name.as_str());
    let (key, gateway, origin) = match parent.kind.as_deref().unwrap_or("Gateway") {
        "Gateway" => match gateways.get(&parent_key) {
            Some(gateway) => (parent_key, gateway, None),
            None => return Attachment::NotOurs,
        },
        listener_set::KIND => {
            // A ListenerSet is ours when its parentRef names a Gateway we serve.
            let Some((gateway, set)) = gateways.values().find_map(|g| {
                g.listener_sets
                    .iter()
                    .find(|s| s.key == parent_key)
                    .map(|s| (g, s))
            }) else {
                return Attachment::NotOurs;
            };
            if let Some(problem) = &set.rejected {
                return Attachment::Rejected(Problem::new(
                    c::REASON_NO_MATCHING_PARENT,
                    format!(
                        "ListenerSet {parent_key} is not attached to Gateway {}: {}",
                        gateway.key, problem.message
                    ),
                ));
            }
            (gateway.key.clone(), gateway, Some(&set.key))
        }
        _ => return Attachment::NotOurs,
    };
    // GEP-1713 "Route Attachment": "Routes attach to all relevant Listeners in their direct
    // Parent object": a Gateway parentRef (with or without sectionName or port) reaches only
    // the Gateway's own listeners, a ListenerSet parentRef only that ListenerSet's.
    let what = match origin {
        Some(set) => format!("ListenerSet {set}"),
        None => format!("Gateway {key}"),
    };
    let reject = |reason, message: String| Attachment::Rejected(Problem::new(reason, message));
    let candidates: Vec<usize> = gateway
        .listeners
        .iter()
        .enumerate()
        .filter(|(_, l)| {
            l.origin.as_ref() == origin
                && parent.section_name.as_deref().is_none_or(|s| s == l.name)
                && parent.port.is_none_or(|p| p == i32::from(l.port))
        })
        .map(|(i, _)| i)
        .collect();
    if candidates.is_empty() {
        let mut wanted = Vec::new();
        if let Some(s) = &parent.section_name {
            wanted.push(format!("named {s}"));
        }
        if let Some(p) = parent.port {
            wanted.push(format!("on port {p}"));
        }
        return reject(
            c::REASON_NO_MATCHING_PARENT,
            format!("{what} has no listener {}", wanted.join(" and ")),
        );
    }
    let attached: Vec<usize> = candidates
        .iter()
        .copied()
        .filter(|&i| {
            let l = &gateway.listeners[i];
            l.supports_kind(GATEWAY_GROUP, route.kind)
                && l.allowed_namespaces
                    .allows(l.owner_namespace(&key), route.namespace, store)
        })
        .collect();
    if attached.is_empty() {
        let unreadable = candidates.iter().any(|&i| {
            gateway.listeners[i].allowed_namespaces == AllowedNamespaces::LabelsUnreadable
        });
        let why = if unreadable {
            "; a listener selects namespaces by label, which this proxy cannot read (it \
             watches one namespace with Roles only): use allowedRoutes.namespaces.from Same"
        } else {
            " (see allowedRoutes)"
        };
        return reject(
            c::REASON_NOT_ALLOWED_BY_LISTENERS,
            format!(
                "no listener of {what} allows {} from namespace {}{why}",
                route.kind, route.namespace
            ),
        );
    }
    // A listener that shares no hostname with the route does not count it either. The route
    // is not accepted there ("If both the Listener and HTTPRoute have specified hostnames, and
    // none match ..., then the HTTPRoute is not accepted"), and `ListenerStatus.attachedRoutes`
    // "represents the number of Routes with the Accepted condition set to "True" that have
    // been attached to this Listener. Routes with any other value for the Accepted condition
    // MUST NOT be included in this count."
    let matching: Vec<usize> = attached
        .iter()
        .copied()
        .filter(|&i| {
            hostname::intersections(gateway.listeners[i].hostname.as_deref(), route.hostnames)
                .next()
                .is_some()
        })
        .collect();
    let served: Vec<usize> = matching
        .iter()
        .copied()
        .filter(|&i| gateway.listeners[i].programmed())
        .collect();
    let problem = if matching.is_empty() {
        Some(Problem::new(
            c::REASON_NO_MATCHING_LISTENER_HOSTNAME,
            format!(
                "no listener of {what} has a hostname matching {:?}",
                route.hostnames
            ),
        ))
    } else if served.is_empty() {
        let names: Vec<&str> = matching
            .iter()
            .map(|&i| gateway.listeners[i].name.as_str())
            .collect();
        Some(Problem::new(
            c::REASON_NO_MATCHING_PARENT,
            format!(
                "listeners {} of {what} are not programmed; see the {} listener conditions",
                names.join(", "),
                if origin.is_some() {
                    "ListenerSet's"
                } else {
                    "Gateway's"
                }
            ),
        ))
    } else {
        None
    };
    Attachment::Attached {
        gateway: key,
        attached: matching,
        served,
        problem,
    }
}
