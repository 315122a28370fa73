//! Route parentRefs: which of our Gateway listeners a route attaches to, or why it does not.

use std::collections::BTreeMap;

use gantry_crds::gateway::httproutes::HttpRouteParentRefs;

use super::conditions::{self as c, Problem};
use super::gateway::GatewayState;
use super::hostname;
use super::listener::GATEWAY_GROUP;
use crate::status::ParentReference;
use crate::store::{ObjectKey, Store};

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
        /// Listener indexes the route attaches to (counted in `attachedRoutes`).
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
/// policy admits the route's namespace; that alone is attachment (ListenerStatus
/// `attachedRoutes`: "based solely on the combination of the AllowedRoutes field ... and the
/// Route's ParentRefs field"). The route is then served on attached listeners whose
/// hostname intersects the route's hostnames.
pub fn attach(
    store: &Store,
    gateways: &BTreeMap<ObjectKey, GatewayState>,
    route: &RouteInfo<'_>,
    parent: &HttpRouteParentRefs,
) -> Attachment {
    if parent.group.as_deref().unwrap_or(GATEWAY_GROUP) != GATEWAY_GROUP
        || parent.kind.as_deref().unwrap_or("Gateway") != "Gateway"
    {
        return Attachment::NotOurs;
    }
    let key = ObjectKey::new(
        parent.namespace.as_deref().unwrap_or(route.namespace),
        parent.name.as_str(),
    );
    let Some(gateway) = gateways.get(&key) else {
        return Attachment::NotOurs;
    };
    let reject = |reason, message: String| Attachment::Rejected(Problem::new(reason, message));
    let candidates: Vec<usize> = gateway
        .listeners
        .iter()
        .enumerate()
        .filter(|(_, l)| {
            parent.section_name.as_deref().is_none_or(|s| s == l.name)
                && parent.port.is_none_or(|p| p == i32::from(l.port))
        })
        .map(|(i, _)| i)
        .collect();
    if candidates.is_empty() {
        let mut what = Vec::new();
        if let Some(s) = &parent.section_name {
            what.push(format!("named {s}"));
        }
        if let Some(p) = parent.port {
            what.push(format!("on port {p}"));
        }
        return reject(
            c::REASON_NO_MATCHING_PARENT,
            format!("Gateway {key} has no listener {}", what.join(" and ")),
        );
    }
    let attached: Vec<usize> = candidates
        .iter()
        .copied()
        .filter(|&i| {
            let l = &gateway.listeners[i];
            l.supports_kind(GATEWAY_GROUP, route.kind)
                && l.allowed_namespaces
                    .allows(&key.namespace, route.namespace, store)
        })
        .collect();
    if attached.is_empty() {
        return reject(
            c::REASON_NOT_ALLOWED_BY_LISTENERS,
            format!(
                "no listener of Gateway {key} allows {} from namespace {} (see allowedRoutes)",
                route.kind, route.namespace
            ),
        );
    }
    let matching: Vec<usize> = attached
        .iter()
        .copied()
        .filter(|&i| {
            !hostname::intersect(gateway.listeners[i].hostname.as_deref(), route.hostnames)
                .is_empty()
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
                "no listener of Gateway {key} has a hostname matching {:?}",
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
                "listeners {} of Gateway {key} are not programmed; see the Gateway's listener conditions",
                names.join(", ")
            ),
        ))
    } else {
        None
    };
    Attachment::Attached {
        gateway: key,
        attached,
        served,
        problem,
    }
}

/// The parentRef exactly as written, for `status.parents[].parentRef`.
pub fn echo(parent: &HttpRouteParentRefs) -> ParentReference {
    ParentReference {
        group: parent.group.clone(),
        kind: parent.kind.clone(),
        namespace: parent.namespace.clone(),
        name: parent.name.clone(),
        section_name: parent.section_name.clone(),
        port: parent.port,
    }
}
