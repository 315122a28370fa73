//! Routes meant for the listener that are not on it: not accepted by the Gateway (the reason
//! is the translator's, from the route's status), or accepted elsewhere but not here (the
//! listener's allowed kinds, allowed namespaces or hostname exclude it, by the translator's
//! own rules).

use std::collections::BTreeSet;

use gantry_crds::GATEWAY_GROUP;
use gantry_translate::ir::ListenerIr;
use gantry_translate::status::{ObjectStatus, ParentReference, StatusBody};
use gantry_translate::store::{ObjectKey, Store};
use gantry_translate::translate::attachment::{AllowedNamespaces, intersect_hostnames};

use super::report::{Candidate, Why};

/// A route's parentRef and what the explanation needs of the route.
struct Route<'a> {
    kind: &'static str,
    key: &'a ObjectKey,
    hostnames: Vec<String>,
    parents: Vec<ParentReference>,
}

/// Every HTTPRoute and GRPCRoute with a parentRef that selects `listener` but no entry on it
/// (`on_listener`: `kind namespace/name` of the routes that have entries), with why.
pub fn not_attached(
    store: &Store,
    statuses: &[ObjectStatus],
    listener: &ListenerIr,
    port: u16,
    on_listener: &BTreeSet<(String, String)>,
) -> Vec<Candidate> {
    let mut routes: Vec<Route<'_>> = Vec::new();
    macro_rules! collect {
        ($map:expr, $kind:literal) => {
            for (key, route) in &$map {
                routes.push(Route {
                    kind: $kind,
                    key,
                    hostnames: route.spec.hostnames.clone().unwrap_or_default(),
                    parents: route
                        .spec
                        .parent_refs
                        .iter()
                        .flatten()
                        .map(|p| ParentReference {
                            group: p.group.clone(),
                            kind: p.kind.clone(),
                            namespace: p.namespace.clone(),
                            name: p.name.clone(),
                            section_name: p.section_name.clone(),
                            port: p.port,
                        })
                        .collect(),
                });
            }
        };
    }
    collect!(store.http_routes, "HTTPRoute");
    collect!(store.grpc_routes, "GRPCRoute");
    let mut out = Vec::new();
    for route in routes {
        if on_listener.contains(&(route.kind.to_owned(), route.key.to_string())) {
            continue;
        }
        let Some(parent) = route
            .parents
            .iter()
            .find(|p| selects(p, &route.key.namespace, listener, port))
        else {
            continue;
        };
        let message = match accepted(statuses, &route, parent) {
            Some(Err(why)) => why,
            Some(Ok(())) => why_not_here(store, statuses, &route, listener),
            None => "it has no status from this proxy (its parentRef names no Gateway this \
                     proxy serves)"
                .to_owned(),
        };
        out.push(Candidate {
            kind: route.kind.to_owned(),
            namespace: route.key.namespace.clone(),
            name: route.key.name.clone(),
            rule: None,
            match_index: None,
            matched: None,
            hostname: None,
            reason: Why::NotAttached,
            message,
        });
    }
    out
}

/// Whether a parentRef reaches the listener: its Gateway (or ListenerSet), with no
/// sectionName or the listener's, and no port or the listener's (GEP-1713: a Gateway
/// parentRef reaches only the Gateway's own listeners).
fn selects(parent: &ParentReference, route_ns: &str, listener: &ListenerIr, port: u16) -> bool {
    if parent.group.as_deref().unwrap_or(GATEWAY_GROUP) != GATEWAY_GROUP {
        return false;
    }
    let namespace = parent.namespace.as_deref().unwrap_or(route_ns);
    let (owner, name) = match &listener.listener_set {
        None => (&listener.gateway, listener.name.as_str()),
        Some(set) => (&set.listener_set, set.name.as_str()),
    };
    let kind_ok = match parent.kind.as_deref().unwrap_or("Gateway") {
        "Gateway" => listener.listener_set.is_none(),
        "ListenerSet" | "XListenerSet" => listener.listener_set.is_some(),
        _ => false,
    };
    kind_ok
        && owner.namespace == namespace
        && owner.name == parent.name
        && parent.section_name.as_deref().is_none_or(|s| s == name)
        && parent.port.is_none_or(|p| p == i32::from(port))
}

/// The route's `Accepted` condition for this parentRef: `Ok` when true, `Err(reason and
/// message)` otherwise; `None` when it has no status for it.
fn accepted(
    statuses: &[ObjectStatus],
    route: &Route<'_>,
    parent: &ParentReference,
) -> Option<Result<(), String>> {
    let status = statuses.iter().find(|s| {
        s.kind == route.kind && s.namespace == route.key.namespace && s.name == route.key.name
    })?;
    let StatusBody::Route(body) = &status.status else {
        return None;
    };
    let entry = body.parents.iter().find(|p| *p.parent_ref == *parent)?;
    let condition = entry.conditions.iter().find(|c| c.type_ == "Accepted")?;
    Some(if condition.status == "True" {
        Ok(())
    } else {
        Err(format!(
            "not accepted: Accepted={} {}: {}",
            condition.status, condition.reason, condition.message
        ))
    })
}

/// Why a route accepted by its parent is not served on this listener.
fn why_not_here(
    store: &Store,
    statuses: &[ObjectStatus],
    route: &Route<'_>,
    listener: &ListenerIr,
) -> String {
    let prefix = "accepted by the Gateway, but not on this listener";
    let supported = listener
        .listener_set
        .is_none()
        .then(|| supported_kinds(statuses, listener))
        .flatten();
    if let Some(kinds) = &supported
        && !kinds.iter().any(|k| k == route.kind)
    {
        return format!(
            "{prefix}: the listener takes only {} (allowedRoutes.kinds)",
            kinds.join(", ")
        );
    }
    if listener.listener_set.is_none()
        && let Some(spec) = store
            .gateways
            .get(&listener.gateway)
            .and_then(|g| g.spec.listeners.iter().find(|l| l.name == listener.name))
    {
        let allowed = AllowedNamespaces::from_spec(
            spec.allowed_routes
                .as_ref()
                .and_then(|a| a.namespaces.as_ref()),
        );
        if !allowed.allows(&listener.gateway.namespace, &route.key.namespace, store) {
            return format!(
                "{prefix}: its allowedRoutes.namespaces does not admit namespace {}",
                route.key.namespace
            );
        }
    }
    if intersect_hostnames(listener.hostname.as_deref(), &route.hostnames).is_empty() {
        return format!(
            "{prefix}: none of its hostnames {:?} matches the listener's hostname {}",
            route.hostnames,
            listener.hostname.as_deref().unwrap_or("*")
        );
    }
    format!("{prefix}: none of its rules could be served (see the route's conditions)")
}

/// The kinds the listener's status says it supports.
fn supported_kinds(statuses: &[ObjectStatus], listener: &ListenerIr) -> Option<Vec<String>> {
    let status = statuses.iter().find(|s| {
        s.kind == "Gateway"
            && s.namespace == listener.gateway.namespace
            && s.name == listener.gateway.name
    })?;
    let StatusBody::Gateway(gateway) = &status.status else {
        return None;
    };
    let l = gateway.listeners.iter().find(|l| l.name == listener.name)?;
    Some(l.supported_kinds.iter().map(|k| k.kind.clone()).collect())
}
