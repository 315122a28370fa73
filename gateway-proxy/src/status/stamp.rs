//! Stamps `lastTransitionTime` on conditions, keeping the previous time when a condition's
//! status did not change (the Kubernetes condition convention).

use std::collections::HashMap;

use super::types::{Condition, ObjectStatus, StatusBody};

/// Fills every condition's `last_transition_time` in `next`: the time from `previous` when the
/// same object has a condition of the same type (and, for routes, the same parent) with the
/// same status, `now` otherwise.
pub fn stamp(previous: &[ObjectStatus], next: &mut [ObjectStatus], now: &str) {
    let mut old: HashMap<String, &str> = HashMap::new();
    for object in previous {
        for (scope, condition) in conditions(object) {
            if let Some(time) = &condition.last_transition_time {
                old.insert(key(object, &scope, condition), time);
            }
        }
    }
    for object in next.iter_mut() {
        let (head, body) = split(object);
        for_each_condition_mut(body, |scope, condition| {
            let k = key_parts(&head, scope, condition);
            let time = old.get(&k).copied().unwrap_or(now);
            condition.last_transition_time = Some(time.to_owned());
        });
    }
}

/// The current time in the Kubernetes timestamp format.
pub fn now() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

fn split(object: &mut ObjectStatus) -> (String, &mut StatusBody) {
    (
        format!("{}/{}/{}", object.kind, object.namespace, object.name),
        &mut object.status,
    )
}

fn key(object: &ObjectStatus, scope: &str, condition: &Condition) -> String {
    let head = format!("{}/{}/{}", object.kind, object.namespace, object.name);
    key_parts(&head, scope, condition)
}

fn key_parts(head: &str, scope: &str, condition: &Condition) -> String {
    format!("{head}|{scope}|{}|{}", condition.type_, condition.status)
}

/// Every condition of an object with the scope it lives in (the object, a listener, a parent).
fn conditions(object: &ObjectStatus) -> Vec<(String, &Condition)> {
    let mut out = Vec::new();
    match &object.status {
        StatusBody::GatewayClass(s) => out.extend(s.conditions.iter().map(|c| (String::new(), c))),
        StatusBody::Gateway(s) => {
            out.extend(s.conditions.iter().map(|c| (String::new(), c)));
            for l in &s.listeners {
                out.extend(
                    l.conditions
                        .iter()
                        .map(|c| (format!("listener:{}", l.name), c)),
                );
            }
        }
        StatusBody::Route(s) => {
            for p in &s.parents {
                let scope = parent_scope(p);
                out.extend(p.conditions.iter().map(|c| (scope.clone(), c)));
            }
        }
        StatusBody::Policy(s) => {
            for a in &s.ancestors {
                let scope = reference_scope("ancestor", &a.ancestor_ref);
                out.extend(a.conditions.iter().map(|c| (scope.clone(), c)));
            }
        }
    }
    out
}

fn for_each_condition_mut(body: &mut StatusBody, mut f: impl FnMut(&str, &mut Condition)) {
    match body {
        StatusBody::GatewayClass(s) => s.conditions.iter_mut().for_each(|c| f("", c)),
        StatusBody::Gateway(s) => {
            s.conditions.iter_mut().for_each(|c| f("", c));
            for l in &mut s.listeners {
                let scope = format!("listener:{}", l.name);
                l.conditions.iter_mut().for_each(|c| f(&scope, c));
            }
        }
        StatusBody::Route(s) => {
            for p in &mut s.parents {
                let scope = parent_scope(p);
                p.conditions.iter_mut().for_each(|c| f(&scope, c));
            }
        }
        StatusBody::Policy(s) => {
            for a in &mut s.ancestors {
                let scope = reference_scope("ancestor", &a.ancestor_ref);
                a.conditions.iter_mut().for_each(|c| f(&scope, c));
            }
        }
    }
}

fn parent_scope(p: &super::types::RouteParentStatus) -> String {
    reference_scope("parent", &p.parent_ref)
}

fn reference_scope(what: &str, r: &super::types::ParentReference) -> String {
    format!(
        "{what}:{}/{}/{}/{}/{:?}/{:?}",
        r.group.as_deref().unwrap_or(""),
        r.kind.as_deref().unwrap_or(""),
        r.namespace.as_deref().unwrap_or(""),
        r.name,
        r.section_name,
        r.port
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::types::GatewayClassStatus;

    fn class(status: bool) -> ObjectStatus {
        ObjectStatus {
            api_version: "gateway.networking.k8s.io/v1".into(),
            kind: "GatewayClass".into(),
            namespace: String::new(),
            name: "gantry".into(),
            status: StatusBody::GatewayClass(GatewayClassStatus {
                conditions: vec![Condition::new("Accepted", status, "Accepted", "", 1)],
            }),
        }
    }

    fn time_of(o: &ObjectStatus) -> Option<String> {
        match &o.status {
            StatusBody::GatewayClass(s) => s.conditions[0].last_transition_time.clone(),
            _ => None,
        }
    }

    #[test]
    fn unchanged_condition_keeps_its_time_and_a_flip_gets_a_new_one() {
        let mut first = vec![class(true)];
        stamp(&[], &mut first, "T1");
        assert_eq!(time_of(&first[0]).as_deref(), Some("T1"));

        let mut same = vec![class(true)];
        stamp(&first, &mut same, "T2");
        assert_eq!(time_of(&same[0]).as_deref(), Some("T1"));

        let mut flipped = vec![class(false)];
        stamp(&same, &mut flipped, "T3");
        assert_eq!(time_of(&flipped[0]).as_deref(), Some("T3"));
    }
}
