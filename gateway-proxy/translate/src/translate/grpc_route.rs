//! GRPCRoute rules: method and header matches, filters and weighted backends into IR rules.
//!
//! A GRPCRoute rule is served like an HTTPRoute rule (the same [`TranslatedRoute`], the same
//! IR), with three differences: its matches are gRPC method matches on the request path
//! ([`super::grpc_matches`]), only the filters GRPCRoute defines exist (RequestHeaderModifier,
//! ResponseHeaderModifier, RequestMirror, ExtensionRef), and its rules are marked `grpc` so
//! the data plane speaks HTTP/2 to the backends. GRPCRoute filters and backendRefs have the
//! very shape of HTTPRoute's, so they are converted and go through the HTTPRoute translation:
//! the same validation, the same conditions, weights with invalid backends kept.

use std::collections::BTreeMap;
use std::sync::Arc;

use gantry_crds::gateway::grpcroutes::{GrpcRoute, GrpcRouteRules};
use gantry_crds::gateway::httproutes::HttpRouteRules;

use super::backend::{BackendRef, Referrer};
use super::conditions::{self as c, Problem};
use super::grpc_matches::translate_grpc_matches;
use super::http_route::{
    TranslatedRoute, TranslatedRule, invalid_hostnames, missing_services, translate_rule,
};
use super::parent_ref::RouteResource;
use crate::store::Store;

/// `GRPCRoute`.
pub const KIND: &str = <GrpcRoute as RouteResource>::KIND;

/// Translates every rule of a GRPCRoute. Never fails: invalid rules are dropped and recorded.
pub fn translate_route(store: &Store, namespace: &str, route: &GrpcRoute) -> TranslatedRoute {
    let mut out = TranslatedRoute {
        hostnames: route.spec.hostnames.clone().unwrap_or_default(),
        ..TranslatedRoute::default()
    };
    if let Some(problem) = invalid_hostnames(&out.hostnames) {
        out.problems.invalid = Some(problem);
        return out;
    }
    let referrer = Referrer {
        group: gantry_crds::GATEWAY_GROUP,
        kind: KIND,
        namespace,
    };
    // Unlike HTTPRoute's, GRPCRoute `rules` has no default: a route without rules serves
    // nothing (its calls find no route: UNIMPLEMENTED).
    let rules = route.spec.rules.as_deref().unwrap_or_default();
    let mut all_clusters = BTreeMap::new();
    for (index, rule) in rules.iter().enumerate() {
        let mut clusters = BTreeMap::new();
        match translate_grpc_rule(store, referrer, rule, &mut clusters) {
            Ok((mut translated, unresolved)) => {
                let name = route.metadata.name.as_deref().unwrap_or_default();
                if let Some(ir) = Arc::get_mut(&mut translated.rule) {
                    super::session_persistence::bind(ir, KIND, namespace, name, index);
                }
                out.missing_services.extend(missing_services(
                    store,
                    namespace,
                    rule.backend_refs.iter().flatten().map(|b| BackendRef {
                        group: b.group.as_deref(),
                        kind: b.kind.as_deref(),
                        name: &b.name,
                        namespace: b.namespace.as_deref(),
                        port: b.port,
                    }),
                ));
                out.problems.served += 1;
                out.problems.unresolved.extend(unresolved);
                all_clusters.extend(clusters);
                out.rules.push(TranslatedRule {
                    index,
                    ..translated
                });
            }
            Err(problem) => out.problems.dropped.push((index, problem)),
        }
    }
    out.clusters = all_clusters.into_values().map(Arc::new).collect();
    out.shrink_to_fit();
    out
}

fn translate_grpc_rule(
    store: &Store,
    referrer: Referrer<'_>,
    rule: &GrpcRouteRules,
    clusters: &mut BTreeMap<String, crate::ir::ClusterIr>,
) -> Result<(TranslatedRule, Vec<Problem>), Problem> {
    let matches = translate_grpc_matches(rule.matches.as_deref())?;
    let as_http = HttpRouteRules {
        name: rule.name.clone(),
        filters: convert(&rule.filters, "filters")?,
        backend_refs: convert(&rule.backend_refs, "backendRefs")?,
        session_persistence: convert(&rule.session_persistence, "sessionPersistence")?,
        ..HttpRouteRules::default()
    };
    let (mut ir, _, unresolved) = translate_rule(store, referrer, &as_http, clusters)?;
    ir.grpc = true;
    let (matches, grpc_ranks) = matches
        .into_iter()
        .map(|m| (Arc::new(m.ir), m.rank))
        .unzip();
    Ok((
        TranslatedRule {
            index: 0,
            matches,
            grpc_ranks,
            rule: Arc::new(ir),
        },
        unresolved,
    ))
}

/// A GRPCRoute list converted to its HTTPRoute twin (same fields, a subset of the filter
/// types), through their shared JSON shape.
fn convert<T, U>(value: &Option<T>, what: &str) -> Result<Option<U>, Problem>
where
    T: serde::Serialize,
    U: serde::de::DeserializeOwned,
{
    value
        .as_ref()
        .map(|v| serde_json::to_value(v).and_then(serde_json::from_value))
        .transpose()
        .map_err(|e| {
            Problem::new(
                c::REASON_UNSUPPORTED_VALUE,
                format!("rule {what} cannot be read: {e}"),
            )
        })
}
