//! Which conditions of a translation are problems, and how each is named.

use serde::Serialize;

use gantry_translate::status::{Condition, ObjectStatus, ParentReference, StatusBody};
use gantry_translate::store::ObjectKey;

/// How bad a finding is: an error makes `validate` exit non-zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// One problem: a condition that is not healthy, or what the loader said of a file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    pub severity: Severity,
    /// `file:line` of the object's document, when known. For loader findings the message
    /// names the file and line itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// The object (kind, namespace, name); absent for loader findings about a file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object: Option<ObjectRef>,
    /// Which part of the object the condition belongs to: `listener NAME`, `parent KIND
    /// NS/NAME[/SECTION]` or `ancestor KIND NS/NAME[/SECTION]`; absent for the object's own
    /// conditions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub condition: Option<ConditionRef>,
    pub message: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectRef {
    pub kind: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    pub name: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConditionRef {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: String,
    pub reason: String,
}

impl Finding {
    /// A finding of the loader (a file that cannot be read or parsed, a skipped kind).
    pub fn source(severity: Severity, message: String) -> Self {
        Self {
            severity,
            origin: None,
            object: None,
            scope: None,
            condition: None,
            message,
        }
    }
}

/// A route that no Gateway this proxy serves has as a parent: a warning, since a route meant
/// for another controller's Gateway is not a mistake.
pub fn unattached_route(kind: &str, key: &ObjectKey, origin: Option<String>) -> Finding {
    Finding {
        severity: Severity::Warning,
        origin,
        object: Some(ObjectRef {
            kind: kind.to_owned(),
            namespace: key.namespace.clone(),
            name: key.name.clone(),
        }),
        scope: None,
        condition: None,
        message: "no parentRef names a Gateway (or ListenerSet) this proxy would serve, so the \
                  route is not used and gets no status; check the parentRefs' names and \
                  namespaces and the Gateway's class"
            .to_owned(),
    }
}

/// Conditions whose `True` is the problem. Every other condition type the translator writes
/// (`Accepted`, `ResolvedRefs`, `Programmed`, `Attached`...) is healthy when `True`.
///
/// `Conflicted` and `OverlappingTLSConfig` are abnormal-true ("False when the condition is
/// not present", GEP-1364 and the Listener and Gateway condition docs); so is the route
/// condition `PartiallyInvalid`, "True when some rules were dropped".
const TRUE_IS_A_PROBLEM: &[&str] = &["Conflicted", "OverlappingTLSConfig", "PartiallyInvalid"];

/// A condition that says the object does not work as written.
fn unhealthy(condition: &Condition) -> bool {
    let problem_when = if TRUE_IS_A_PROBLEM.contains(&&*condition.type_) {
        "True"
    } else {
        "False"
    };
    condition.status == problem_when || condition.status == "Unknown"
}

/// The findings of one object's status, in the order the status lists them.
pub fn of_object(object: &ObjectStatus, origin: Option<String>) -> Vec<Finding> {
    let mut found = Vec::new();
    let mut add = |scope: Option<String>, conditions: &[Condition]| {
        for condition in conditions.iter().filter(|c| unhealthy(c)) {
            found.push(Finding {
                severity: Severity::Error,
                origin: origin.clone(),
                object: Some(ObjectRef {
                    kind: object.kind.to_string(),
                    namespace: object.namespace.clone(),
                    name: object.name.clone(),
                }),
                scope: scope.clone(),
                condition: Some(ConditionRef {
                    type_: condition.type_.to_string(),
                    status: condition.status.to_string(),
                    reason: condition.reason.to_string(),
                }),
                message: condition.message.to_string(),
            });
        }
    };
    match &object.status {
        StatusBody::GatewayClass(class) => add(None, &class.conditions),
        StatusBody::Gateway(gateway) => {
            add(None, &gateway.conditions);
            for listener in &gateway.listeners {
                add(
                    Some(format!("listener {}", listener.name)),
                    &listener.conditions,
                );
            }
        }
        StatusBody::Route(route) => {
            for parent in &route.parents {
                add(
                    Some(format!("parent {}", reference(&parent.parent_ref, object))),
                    &parent.conditions,
                );
            }
        }
        StatusBody::Policy(policy) => {
            for ancestor in &policy.ancestors {
                add(
                    Some(format!(
                        "ancestor {}",
                        reference(&ancestor.ancestor_ref, object)
                    )),
                    &ancestor.conditions,
                );
            }
        }
    }
    found
}

/// `KIND NS/NAME[/SECTION][:PORT]`, the namespace defaulting to the object's own as the API
/// defaults it.
fn reference(to: &ParentReference, from: &ObjectStatus) -> String {
    let kind = to.kind.as_deref().unwrap_or("Gateway");
    let namespace = to.namespace.as_deref().unwrap_or(&from.namespace);
    let mut text = format!("{kind} {namespace}/{}", to.name);
    if let Some(section) = &to.section_name {
        text.push('/');
        text.push_str(section);
    }
    if let Some(port) = to.port {
        text.push_str(&format!(":{port}"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_translate::status::{GatewayStatus, ListenerStatus};

    fn condition(type_: &'static str, ok: bool, reason: &'static str) -> Condition {
        Condition::new(type_, ok, reason, format!("{type_} {reason}"), 1)
    }

    #[test]
    fn problems_are_false_conditions_and_true_abnormal_ones() {
        let gateway = ObjectStatus {
            api_version: "gateway.networking.k8s.io/v1".into(),
            kind: "Gateway".into(),
            namespace: "ns".into(),
            name: "gw".into(),
            status: StatusBody::Gateway(Box::new(GatewayStatus {
                conditions: vec![
                    condition("Accepted", true, "Accepted"),
                    condition("Programmed", false, "Invalid"),
                ],
                listeners: vec![ListenerStatus {
                    name: "https".into(),
                    supported_kinds: Vec::new(),
                    attached_routes: 0,
                    conditions: vec![
                        condition("Accepted", true, "Accepted"),
                        condition("Conflicted", true, "HostnameConflict"),
                        condition("OverlappingTLSConfig", false, "NoOverlap"),
                    ],
                }],
                ..GatewayStatus::default()
            })),
        };
        let found = of_object(&gateway, Some("gw.yaml:3".into()));
        let named: Vec<_> = found
            .iter()
            .map(|f| {
                (
                    f.scope.clone(),
                    f.condition.as_ref().map(|c| c.reason.clone()),
                    f.origin.clone(),
                )
            })
            .collect();
        assert_eq!(
            named,
            [
                (None, Some("Invalid".into()), Some("gw.yaml:3".into())),
                (
                    Some("listener https".into()),
                    Some("HostnameConflict".into()),
                    Some("gw.yaml:3".into())
                ),
            ]
        );
        assert!(found.iter().all(|f| f.severity == Severity::Error));
    }

    #[test]
    fn references_default_the_kind_and_namespace() {
        let route = ObjectStatus {
            api_version: "".into(),
            kind: "HTTPRoute".into(),
            namespace: "team".into(),
            name: "r".into(),
            status: StatusBody::Route(Default::default()),
        };
        let parent = ParentReference {
            group: None,
            kind: None,
            namespace: None,
            name: "gw".into(),
            section_name: Some("http".into()),
            port: Some(80),
        };
        assert_eq!(reference(&parent, &route), "Gateway team/gw/http:80");
    }
}
