//! Stamps `lastTransitionTime` on conditions, keeping the previous time when a condition's
//! status did not change (the Kubernetes condition convention).

use std::collections::HashMap;

use super::types::{Condition, ObjectStatus, StatusBody};

/// Fills every condition's `last_transition_time` in `next`: the time from `previous` when the
/// same object has a condition of the same type (and, for routes, the same parent) with the
/// same status, `now` otherwise.
///
/// Objects are matched by one map lookup each and conditions within an object by a short
/// scan, with no key built per condition: thousands of routes cost a few milliseconds.
pub fn stamp(previous: &[ObjectStatus], next: &mut [ObjectStatus], now: &str) {
    let old: HashMap<(&str, &str, &str), &StatusBody> = previous
        .iter()
        .map(|o| {
            (
                (o.kind.as_str(), o.namespace.as_str(), o.name.as_str()),
                &o.status,
            )
        })
        .collect();
    for object in next.iter_mut() {
        let before = old
            .get(&(
                object.kind.as_str(),
                object.namespace.as_str(),
                object.name.as_str(),
            ))
            .copied();
        stamp_body(before, &mut object.status, now);
    }
}

fn stamp_body(before: Option<&StatusBody>, body: &mut StatusBody, now: &str) {
    match body {
        StatusBody::GatewayClass(s) => {
            let old = match before {
                Some(StatusBody::GatewayClass(o)) => o.conditions.as_slice(),
                _ => &[],
            };
            stamp_conditions(old, &mut s.conditions, now);
        }
        StatusBody::Gateway(s) => {
            let old = match before {
                Some(StatusBody::Gateway(o)) => Some(o),
                _ => None,
            };
            stamp_conditions(
                old.map_or(&[][..], |o| o.conditions.as_slice()),
                &mut s.conditions,
                now,
            );
            for l in &mut s.listeners {
                let old_listener = old
                    .and_then(|o| o.listeners.iter().find(|x| x.name == l.name))
                    .map_or(&[][..], |x| x.conditions.as_slice());
                stamp_conditions(old_listener, &mut l.conditions, now);
            }
        }
        StatusBody::Route(s) => {
            let old = match before {
                Some(StatusBody::Route(o)) => o.parents.as_slice(),
                _ => &[],
            };
            for p in &mut s.parents {
                let old_parent = old
                    .iter()
                    .find(|x| x.parent_ref == p.parent_ref)
                    .map_or(&[][..], |x| x.conditions.as_slice());
                stamp_conditions(old_parent, &mut p.conditions, now);
            }
        }
        StatusBody::Policy(s) => {
            let old = match before {
                Some(StatusBody::Policy(o)) => o.ancestors.as_slice(),
                _ => &[],
            };
            for a in &mut s.ancestors {
                let old_ancestor = old
                    .iter()
                    .find(|x| x.ancestor_ref == a.ancestor_ref)
                    .map_or(&[][..], |x| x.conditions.as_slice());
                stamp_conditions(old_ancestor, &mut a.conditions, now);
            }
        }
    }
}

/// Each condition keeps the time of the old condition of the same type and status.
fn stamp_conditions(old: &[Condition], conditions: &mut [Condition], now: &str) {
    for condition in conditions {
        let time = old
            .iter()
            .find(|o| o.type_ == condition.type_ && o.status == condition.status)
            .and_then(|o| o.last_transition_time.as_deref())
            .unwrap_or(now);
        condition.last_transition_time = Some(time.to_owned());
    }
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

    fn route(accepted: [bool; 2]) -> ObjectStatus {
        use crate::status::types::{ParentReference, RouteParentStatus, RouteStatus};
        let parent = |name: &str, ok: bool| RouteParentStatus {
            parent_ref: ParentReference {
                group: None,
                kind: None,
                namespace: None,
                name: name.into(),
                section_name: None,
                port: None,
            },
            controller_name: "gantry.dev/gateway-controller".into(),
            conditions: vec![Condition::new("Accepted", ok, "R", "", 1)],
        };
        ObjectStatus {
            api_version: "gateway.networking.k8s.io/v1".into(),
            kind: "HTTPRoute".into(),
            namespace: "default".into(),
            name: "web".into(),
            status: StatusBody::Route(RouteStatus {
                parents: vec![parent("a", accepted[0]), parent("b", accepted[1])],
            }),
        }
    }

    fn parent_times(o: &ObjectStatus) -> Vec<Option<String>> {
        match &o.status {
            StatusBody::Route(s) => s
                .parents
                .iter()
                .map(|p| p.conditions[0].last_transition_time.clone())
                .collect(),
            _ => Vec::new(),
        }
    }

    #[test]
    fn each_parent_of_a_route_keeps_or_renews_its_own_times() {
        let mut first = vec![route([true, true])];
        stamp(&[], &mut first, "T1");
        let mut next = vec![route([true, false])];
        stamp(&first, &mut next, "T2");
        assert_eq!(
            parent_times(&next[0]),
            [Some("T1".to_owned()), Some("T2".to_owned())]
        );
    }
}
