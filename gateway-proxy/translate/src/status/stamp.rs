//! Stamps `lastTransitionTime` on conditions, keeping the previous time when a condition's
//! status did not change (the Kubernetes condition convention).

use std::collections::HashMap;

use std::sync::Arc;

use super::types::{
    Condition, ObjectStatus, RouteParentStatus, RouteStatus, StatusBody, TransitionTime,
};

/// Fills every condition's `last_transition_time` in `next`: the time from `previous` when the
/// same object has a condition of the same type (and, for routes, the same parent) with the
/// same status, `now` otherwise.
///
/// Objects are matched by one map lookup each and conditions within an object by a short
/// scan, with no key built per condition: thousands of routes cost a few milliseconds.
pub fn stamp(previous: &[ObjectStatus], next: &mut [ObjectStatus], now: &str) {
    // foldhash, not SipHash: with thousands of routes, hashing the keys was half of the
    // stamp (`docs/benchmarks.md`, "Route propagation at 5,000 routes: the cost of each
    // change").
    let mut old: HashMap<(&str, &str, &str), &StatusBody, foldhash::fast::RandomState> =
        HashMap::with_capacity_and_hasher(previous.len(), Default::default());
    old.extend(
        previous
            .iter()
            .map(|o| ((&*o.kind, o.namespace.as_str(), o.name.as_str()), &o.status)),
    );
    // One time for every condition that changes now, shared rather than copied into each.
    let now: Arc<str> = Arc::from(now);
    for object in next.iter_mut() {
        let before = old
            .get(&(
                &*object.kind,
                object.namespace.as_str(),
                object.name.as_str(),
            ))
            .copied();
        stamp_body(before, &mut object.status, &now);
    }
}

fn stamp_body(before: Option<&StatusBody>, body: &mut StatusBody, now: &Arc<str>) {
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
                Some(StatusBody::Route(o)) => {
                    if stamps_to(o, s, now) {
                        // An unchanged route: its last status, shared rather than copied.
                        *s = o.clone();
                        return;
                    }
                    o.parents.as_slice()
                }
                _ => &[],
            };
            let old_of = |p: &RouteParentStatus| {
                old.iter()
                    .find(|x| x.parent_ref == p.parent_ref)
                    .map_or(&[][..], |x| x.conditions.as_slice())
            };
            let fresh = s
                .parents
                .iter()
                .flat_map(|p| &p.conditions)
                .all(|c| c.last_transition_time.is_unset());
            if fresh {
                // As the translator made it, shared with its route cache entry: stamped in
                // place, so that the cache replays the stamped status and no copy is made.
                for p in &s.parents {
                    for condition in &p.conditions {
                        let time = stamp_time(old_of(p), condition, now);
                        condition.last_transition_time.set_once(time);
                    }
                }
            } else {
                for p in &mut Arc::make_mut(s).parents {
                    let old_parent = old_of(p);
                    stamp_conditions(old_parent, &mut p.conditions, now);
                }
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
fn stamp_conditions(old: &[Condition], conditions: &mut [Condition], now: &Arc<str>) {
    for condition in conditions {
        let time = stamp_time(old, condition, now);
        condition.last_transition_time = TransitionTime::at(time.clone());
    }
}

/// The `lastTransitionTime` [`stamp_conditions`] gives `condition`.
fn stamp_time<'a>(old: &'a [Condition], condition: &Condition, now: &'a Arc<str>) -> &'a Arc<str> {
    old.iter()
        .find(|o| o.type_ == condition.type_ && o.status == condition.status)
        .and_then(|o| o.last_transition_time.get())
        .unwrap_or(now)
}

/// Whether stamping `next` against `old` gives `old` again, field for field: what a route
/// whose status did not change gives. Checked without building the stamped copy.
fn stamps_to(old: &RouteStatus, next: &RouteStatus, now: &Arc<str>) -> bool {
    old.parents.len() == next.parents.len()
        && old.parents.iter().zip(&next.parents).all(|(o, n)| {
            // Every field named, so that a new one cannot be forgotten here.
            let RouteParentStatus {
                parent_ref,
                controller_name,
                conditions,
            } = o;
            let old_conditions = old
                .parents
                .iter()
                .find(|x| x.parent_ref == n.parent_ref)
                .map_or(&[][..], |x| x.conditions.as_slice());
            *parent_ref == n.parent_ref
                && *controller_name == n.controller_name
                && conditions.len() == n.conditions.len()
                && conditions.iter().zip(&n.conditions).all(|(oc, nc)| {
                    let Condition {
                        type_,
                        status,
                        reason,
                        message,
                        observed_generation,
                        last_transition_time,
                    } = oc;
                    *type_ == nc.type_
                        && *status == nc.status
                        && *reason == nc.reason
                        && *message == nc.message
                        && *observed_generation == nc.observed_generation
                        && last_transition_time.as_deref()
                            == Some(&**stamp_time(old_conditions, nc, now))
                })
        })
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
            StatusBody::GatewayClass(s) => s.conditions[0]
                .last_transition_time
                .as_deref()
                .map(str::to_owned),
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
            parent_ref: Arc::new(ParentReference {
                group: None,
                kind: None,
                namespace: None,
                name: name.into(),
                section_name: None,
                port: None,
            }),
            controller_name: "gantry.dev/gateway-controller".into(),
            conditions: vec![Condition::new("Accepted", ok, "R", "", 1)],
        };
        ObjectStatus {
            api_version: "gateway.networking.k8s.io/v1".into(),
            kind: "HTTPRoute".into(),
            namespace: "default".into(),
            name: "web".into(),
            status: StatusBody::Route(Arc::new(RouteStatus {
                parents: vec![parent("a", accepted[0]), parent("b", accepted[1])],
            })),
        }
    }

    fn parent_times(o: &ObjectStatus) -> Vec<Option<String>> {
        match &o.status {
            StatusBody::Route(s) => s
                .parents
                .iter()
                .map(|p| {
                    p.conditions[0]
                        .last_transition_time
                        .as_deref()
                        .map(str::to_owned)
                })
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

    /// The stamping of one route without the shortcut: every condition of `next` stamped
    /// against the parent of `old` with the same parentRef.
    fn stamped_in_full(old: &RouteStatus, next: &RouteStatus, now: &str) -> RouteStatus {
        let now: Arc<str> = Arc::from(now);
        let mut stamped = next.clone();
        for p in &mut stamped.parents {
            let old_parent = old
                .parents
                .iter()
                .find(|x| x.parent_ref == p.parent_ref)
                .map_or(&[][..], |x| x.conditions.as_slice());
            stamp_conditions(old_parent, &mut p.conditions, &now);
        }
        stamped
    }

    fn route_status(o: &ObjectStatus) -> &Arc<RouteStatus> {
        match &o.status {
            StatusBody::Route(s) => s,
            _ => panic!("not a route"),
        }
    }

    /// Over variants of a route's status (each field of a parent and of a condition changed,
    /// parents reordered, repeated or dropped, a condition without a time), stamping gives what
    /// stamping in full gives, and shares the old status exactly when that equals it.
    #[test]
    fn an_unchanged_route_shares_its_last_status_and_any_change_is_stamped_in_full() {
        let base = route([true, true]);
        let mut variants: Vec<ObjectStatus> = vec![base.clone(), route([true, false])];
        let edit = |f: &dyn Fn(&mut RouteStatus)| {
            let mut o = base.clone();
            if let StatusBody::Route(s) = &mut o.status {
                f(Arc::make_mut(s));
            }
            o
        };
        variants.push(edit(&|s| {
            Arc::make_mut(&mut s.parents[1].parent_ref).name = "c".into()
        }));
        variants.push(edit(&|s| s.parents[0].controller_name = "other".into()));
        variants.push(edit(&|s| s.parents[0].conditions[0].reason = "X".into()));
        variants.push(edit(&|s| s.parents[0].conditions[0].message = "m".into()));
        variants.push(edit(&|s| {
            s.parents[0].conditions[0].observed_generation = 2
        }));
        variants.push(edit(&|s| s.parents[0].conditions[0].type_ = "Other".into()));
        variants.push(edit(&|s| s.parents.swap(0, 1)));
        variants.push(edit(&|s| s.parents.truncate(1)));
        variants.push(edit(&|s| {
            let first = s.parents[0].clone();
            s.parents.push(first);
        }));
        variants.push(edit(&|s| {
            let first = s.parents[0].conditions[0].clone();
            s.parents[0].conditions.push(first);
        }));
        variants.push(edit(&|s| {
            s.parents[1].conditions[0] = Condition::new("ResolvedRefs", true, "R", "", 1);
        }));
        let mut checked = (0, 0);
        for before in &variants {
            for first_time in ["T0", ""] {
                let mut old = vec![before.clone()];
                stamp(&[], &mut old, "T1");
                if first_time.is_empty() {
                    // A previous status without times (never stamped).
                    if let StatusBody::Route(s) = &mut old[0].status {
                        for p in &mut Arc::make_mut(s).parents {
                            for c in &mut p.conditions {
                                c.last_transition_time = TransitionTime::unset();
                            }
                        }
                    }
                }
                for after in &variants {
                    let mut next = vec![after.clone()];
                    stamp(&old, &mut next, "T2");
                    let expected =
                        stamped_in_full(route_status(&old[0]), route_status(after), "T2");
                    assert_eq!(**route_status(&next[0]), expected);
                    let shared = Arc::ptr_eq(route_status(&next[0]), route_status(&old[0]));
                    assert_eq!(shared, expected == **route_status(&old[0]));
                    if shared {
                        checked.0 += 1;
                    } else {
                        checked.1 += 1;
                    }
                }
            }
        }
        assert!(
            checked.0 >= variants.len() && checked.1 > checked.0,
            "{checked:?}"
        );
    }
}
