//! A route policy's `targetRefs` resolved against the store: a Gateway, one of its listeners,
//! an HTTPRoute or GRPCRoute, or one rule of a route, all in the policy's namespace; or why the
//! reference does not attach.

use crate::store::{ObjectKey, Store};
use crate::translate::conditions::Problem;
pub use crate::translate::service_policy::target::{REASON_TARGET_NOT_FOUND, TargetRef};

/// What a target reference points at. Ordered from the least specific to the most specific
/// kind of target, which is the order of precedence reversed.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Target {
    Gateway(ObjectKey),
    /// A listener of the Gateway's own `spec.listeners`, by name.
    Listener(ObjectKey, String),
    /// `kind` is `HTTPRoute` or `GRPCRoute`.
    Route(&'static str, ObjectKey),
    /// A rule of a route, by its `name`.
    Rule(&'static str, ObjectKey, String),
}

impl Target {
    /// `Gateway ns/name`, `Gateway ns/name listener http`, `HTTPRoute ns/name rule a`.
    pub fn describe(&self) -> String {
        match self {
            Self::Gateway(g) => format!("Gateway {g}"),
            Self::Listener(g, l) => format!("Gateway {g} listener {l}"),
            Self::Route(kind, r) => format!("{kind} {r}"),
            Self::Rule(kind, r, rule) => format!("{kind} {r} rule {rule}"),
        }
    }
}

/// A target reference that does not attach, and the object it names (shown as the ancestor of
/// the `TargetNotFound` condition).
#[derive(Clone, Debug)]
pub struct TargetProblem {
    pub kind: String,
    pub object: ObjectKey,
    pub section_name: Option<String>,
    pub problem: Problem,
}

const HTTP_ROUTE: &str = "HTTPRoute";
const GRPC_ROUTE: &str = "GRPCRoute";

/// Resolves one reference of a policy in `namespace`. LocalPolicyTargetReferenceWithSectionName:
/// "If a SectionName is specified, but does not exist on the targeted object, the Policy must
/// fail to attach".
/// Every `targetRefs` entry of a policy in `namespace`, in order.
pub fn resolve_all(
    store: &Store,
    namespace: &str,
    refs: &[gantry_crds::backend_config::LocalPolicyTargetReferenceWithSectionName],
) -> Vec<Result<Target, Box<TargetProblem>>> {
    refs.iter()
        .map(|t| {
            resolve(
                store,
                namespace,
                TargetRef {
                    group: &t.group,
                    kind: &t.kind,
                    name: &t.name,
                    section_name: t.section_name.as_deref(),
                },
            )
        })
        .collect()
}

pub fn resolve(
    store: &Store,
    namespace: &str,
    t: TargetRef<'_>,
) -> Result<Target, Box<TargetProblem>> {
    let object = ObjectKey::new(namespace, t.name);
    let section = t.section_name.filter(|s| !s.is_empty()).map(str::to_owned);
    let fail = |message: String| {
        Box::new(TargetProblem {
            kind: t.kind.to_owned(),
            object: object.clone(),
            section_name: section.clone(),
            problem: Problem::new(REASON_TARGET_NOT_FOUND, message),
        })
    };
    if t.group != gantry_crds::GATEWAY_GROUP {
        return Err(fail(format!(
            "targetRef {} has group {:?}; only Gateways, HTTPRoutes and GRPCRoutes of group {} can be targeted",
            t.name,
            t.group,
            gantry_crds::GATEWAY_GROUP
        )));
    }
    match t.kind {
        "Gateway" => {
            let Some(gateway) = store.gateways.get(&object) else {
                return Err(fail(format!("targetRef Gateway {object} does not exist")));
            };
            let Some(listener) = section.clone() else {
                return Ok(Target::Gateway(object));
            };
            if gateway.spec.listeners.iter().any(|l| l.name == listener) {
                Ok(Target::Listener(object, listener))
            } else {
                Err(fail(format!(
                    "Gateway {object} has no listener named {listener:?}; sectionName names a listener"
                )))
            }
        }
        HTTP_ROUTE | GRPC_ROUTE => {
            let (kind, rule_names): (&'static str, Option<Vec<Option<String>>>) =
                if t.kind == HTTP_ROUTE {
                    let names = store.http_routes.get(&object).map(|r| {
                        r.spec
                            .rules
                            .iter()
                            .flatten()
                            .map(|rule| rule.name.clone())
                            .collect()
                    });
                    (HTTP_ROUTE, names)
                } else {
                    let names = store.grpc_routes.get(&object).map(|r| {
                        r.spec
                            .rules
                            .iter()
                            .flatten()
                            .map(|rule| rule.name.clone())
                            .collect()
                    });
                    (GRPC_ROUTE, names)
                };
            let Some(names) = rule_names else {
                return Err(fail(format!("targetRef {kind} {object} does not exist")));
            };
            let Some(rule) = section.clone() else {
                return Ok(Target::Route(kind, object));
            };
            if names.iter().flatten().any(|n| *n == rule) {
                Ok(Target::Rule(kind, object, rule))
            } else {
                Err(fail(format!(
                    "{kind} {object} has no rule named {rule:?}; sectionName names a rule by its name"
                )))
            }
        }
        other => Err(fail(format!(
            "targetRef {} has kind {other}; only Gateways, HTTPRoutes and GRPCRoutes can be targeted",
            t.name
        ))),
    }
}
