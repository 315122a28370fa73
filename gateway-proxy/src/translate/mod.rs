//! The translator: object store in, routing IR and statuses out.
//!
//! Invariant: it never fails and never does IO. Bad input becomes a status condition with the
//! spec's reason, and the bad part is dropped; everything else is still translated.

mod allowed_routes;
mod assemble;
mod backend;
mod backend_tls;
mod conditions;
mod filters;
mod gateway;
mod gateway_class;
mod hostname;
mod http_route;
mod listener;
mod matches;
mod parent_ref;
mod precedence;
mod reference_grant;
mod timeouts;

use std::collections::BTreeSet;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use self::assemble::{Collected, Placed};
use self::conditions::{self as c};
use self::parent_ref::{Attachment, RouteInfo};
use self::precedence::Ranked;
use crate::ir::{Ir, RouteEntryIr, RouteRef};
use crate::status::{ObjectStatus, RouteParentStatus, RouteStatus, StatusBody};
use crate::store::{ObjectKey, Store};

/// The `apiVersion` of every status we write.
const API_VERSION: &str = "gateway.networking.k8s.io/v1";

/// What to translate.
#[derive(Clone, Debug)]
pub struct TranslateOptions {
    /// GatewayClasses whose `spec.controllerName` equals this are ours.
    pub controller_name: String,
    /// When set, only these Gateways are served (`--gateway NS/NAME`); otherwise every Gateway
    /// of our classes.
    pub gateways: Option<Vec<ObjectKey>>,
}

impl Default for TranslateOptions {
    fn default() -> Self {
        Self {
            controller_name: gantry_crds::CONTROLLER_NAME.to_owned(),
            gateways: None,
        }
    }
}

/// The translator's output.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Translation {
    pub ir: Ir,
    /// Status of every object the proxy owns, sorted by kind, namespace and name.
    pub statuses: Vec<ObjectStatus>,
}

/// For a store that differs from the one `ir` was translated from only in EndpointSlices
/// ([`Store::differs_only_in_endpoint_slices`]): the same IR with every cluster's endpoints read
/// again. Costs one pass over the clusters instead of a translation of every route.
pub fn refresh_endpoints(store: &Store, ir: &Ir) -> Ir {
    Ir {
        ports: ir.ports.clone(),
        clusters: backend::refresh_endpoints(store, &ir.clusters),
    }
}

/// Translates the store. Pure and deterministic.
pub fn translate(store: &Store, options: &TranslateOptions) -> Translation {
    let (classes, mut statuses) = gateway_class::our_classes(store, options);
    let mut gateways = gateway::our_gateways(store, &classes, options);
    let mut backend_tls = backend_tls::BackendTls::resolve(store, &gateways);
    let mut ir = Ir::default();
    let mut collected = Collected::default();
    // (gateway, listener index, route): a route counts once per listener.
    let mut attached_count: BTreeSet<(ObjectKey, usize, ObjectKey)> = BTreeSet::new();
    let mut route_statuses = Vec::new();

    for (key, route) in &store.http_routes {
        let mut translated = http_route::translate_route(store, &key.namespace, route);
        let services = backend_tls.secure(store, &mut translated);
        let info = RouteInfo {
            kind: http_route::KIND,
            namespace: &key.namespace,
            hostnames: &translated.hostnames,
        };
        let generation = generation_of(&route.metadata);
        let rejection = translated.rejection();
        let mut parents = Vec::new();
        let mut placed = Placed::new();
        for parent in route.spec.parent_refs.iter().flatten() {
            let attachment = parent_ref::attach(store, &gateways, &info, parent);
            let accepted = match attachment {
                Attachment::NotOurs => continue,
                Attachment::Rejected(problem) => Err(problem),
                Attachment::Attached {
                    gateway,
                    attached,
                    served,
                    problem,
                } => {
                    attached_count
                        .extend(attached.iter().map(|&i| (gateway.clone(), i, key.clone())));
                    match problem.or_else(|| rejection.clone()) {
                        Some(p) => Err(p),
                        None => {
                            for i in served {
                                if placed.insert((gateway.clone(), i)) {
                                    place_route(
                                        &mut collected,
                                        &gateways,
                                        &gateway,
                                        i,
                                        key,
                                        route,
                                        &translated,
                                    );
                                }
                            }
                            Ok(())
                        }
                    }
                }
            };
            parents.push(RouteParentStatus {
                parent_ref: parent_ref::echo(parent),
                controller_name: options.controller_name.clone(),
                conditions: route_conditions(accepted, &translated, generation),
            });
        }
        if !placed.is_empty() {
            ir.clusters.extend(translated.clusters.clone());
            backend_tls.record_use(&services, placed.iter().map(|(gateway, _)| gateway));
        }
        if !parents.is_empty() {
            route_statuses.push(ObjectStatus {
                api_version: API_VERSION.to_owned(),
                kind: http_route::KIND.to_owned(),
                namespace: key.namespace.clone(),
                name: key.name.clone(),
                status: StatusBody::Route(RouteStatus { parents }),
            });
        }
    }

    for (gateway, index, _) in &attached_count {
        if let Some(l) = gateways
            .get_mut(gateway)
            .and_then(|g| g.listeners.get_mut(*index))
        {
            l.attached_routes += 1;
        }
    }
    statuses.extend(gateways.values().map(|g| backend_tls.gateway_status(g)));
    statuses.extend(route_statuses);
    statuses.extend(backend_tls.policy_statuses(&options.controller_name));
    ir.ports = collected.into_ports(&gateways);
    Translation { ir, statuses }
}

/// Adds every match of every served rule of a route to one listener, once per effective
/// hostname.
fn place_route(
    collected: &mut Collected,
    gateways: &std::collections::BTreeMap<ObjectKey, gateway::GatewayState>,
    gateway: &ObjectKey,
    listener: usize,
    key: &ObjectKey,
    route: &gantry_crds::gateway::httproutes::HttpRoute,
    translated: &http_route::TranslatedRoute,
) {
    let Some(l) = gateways
        .get(gateway)
        .and_then(|g| g.listeners.get(listener))
    else {
        return;
    };
    let route_ref = RouteRef {
        kind: http_route::KIND.to_owned(),
        namespace: key.namespace.clone(),
        name: key.name.clone(),
    };
    for host in hostname::intersect(l.hostname.as_deref(), &translated.hostnames) {
        for rule in &translated.rules {
            for (match_index, m) in rule.matches.iter().enumerate() {
                collected.add(
                    gateway,
                    listener,
                    &host,
                    Ranked {
                        entry: RouteEntryIr {
                            route: route_ref.clone(),
                            rule_index: rule.index,
                            matches: m.clone(),
                            rule: rule.rule.clone(),
                        },
                        created: route.metadata.creation_timestamp.clone(),
                        match_index,
                    },
                );
            }
        }
    }
}

/// `Accepted`, `ResolvedRefs` and, when rules were dropped, `PartiallyInvalid`.
fn route_conditions(
    accepted: Result<(), c::Problem>,
    translated: &http_route::TranslatedRoute,
    generation: i64,
) -> Vec<crate::status::Condition> {
    let mut out = vec![match accepted {
        Ok(()) => c::ok(
            c::ACCEPTED,
            c::REASON_ACCEPTED,
            "Route is accepted",
            generation,
        ),
        Err(p) => c::not_ok(c::ACCEPTED, &p, generation),
    }];
    out.push(match translated.unresolved.first() {
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
                &c::Problem::new(first.reason, message),
                generation,
            )
        }
    });
    if let Some(p) = translated.partially_invalid() {
        out.push(crate::status::Condition::new(
            c::PARTIALLY_INVALID,
            true,
            p.reason,
            p.message,
            generation,
        ));
    }
    out
}

/// `metadata.generation`, 0 when absent.
fn generation_of(meta: &ObjectMeta) -> i64 {
    meta.generation.unwrap_or(0)
}
