//! Comparing statuses the way the API server should see them: times aside, and carrying the
//! time of a condition that did not change over to the status written.

use std::sync::Arc;

use serde::Serialize;
use serde_json::{Value, json};

use super::OWNED_GATEWAY_CONDITIONS;
use gantry_translate::status::types::{Condition, GatewayStatus, ListenerStatus, TransitionTime};

/// What the proxy wants on a Gateway, without times.
pub(super) fn gateway_wish(desired: &GatewayStatus) -> Value {
    let programmed: Vec<&Condition> = desired
        .conditions
        .iter()
        .filter(|c| OWNED_GATEWAY_CONDITIONS.contains(&&*c.type_))
        .collect();
    json!({
        "conditions": strip(&programmed),
        "listeners": strip(&desired.listeners),
        "attachedListenerSets": desired.attached_listener_sets,
    })
}

/// What the proxy wants on a ListenerSet (all of its status), without times.
pub(super) fn listener_set_wish(desired: &GatewayStatus) -> Value {
    json!({ "conditions": strip(&desired.conditions), "listeners": strip(&desired.listeners) })
}

/// Parses each element on its own, skipping those that are not in our shape.
pub(super) fn parse_list<T: serde::de::DeserializeOwned>(list: &Value) -> Vec<T> {
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| serde_json::from_value(v.clone()).ok())
        .collect()
}

/// Sets each condition's time: the old time when the same type had the same status, `now`
/// otherwise.
pub(super) fn keep_times(conditions: &mut [Condition], old: &[Condition], now: &str) {
    for condition in conditions {
        let previous = old
            .iter()
            .find(|o| o.type_ == condition.type_ && o.status == condition.status)
            .and_then(|o| o.last_transition_time.get().cloned());
        condition.last_transition_time =
            TransitionTime::at(previous.unwrap_or_else(|| Arc::from(now)));
    }
}

fn timeless(conditions: &[Condition]) -> Vec<Condition> {
    let mut out: Vec<Condition> = conditions
        .iter()
        .cloned()
        .map(|mut c| {
            c.last_transition_time = TransitionTime::unset();
            c
        })
        .collect();
    out.sort_by(|a, b| a.type_.cmp(&b.type_));
    out
}

/// The same conditions in any order, times aside.
pub(super) fn same_conditions(a: &[Condition], b: &[Condition]) -> bool {
    timeless(a) == timeless(b)
}

pub(super) fn same_listeners(a: &[ListenerStatus], b: &[ListenerStatus]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.name == y.name
                && x.attached_routes == y.attached_routes
                && x.supported_kinds == y.supported_kinds
                && same_conditions(&x.conditions, &y.conditions)
        })
}

/// The status without times, to compare what was wished for.
fn strip<T: Serialize + ?Sized>(value: &T) -> Value {
    let mut v = serde_json::to_value(value).unwrap_or(Value::Null);
    remove_times(&mut v);
    v
}

fn remove_times(v: &mut Value) {
    match v {
        Value::Object(map) => {
            map.remove("lastTransitionTime");
            map.values_mut().for_each(remove_times);
        }
        Value::Array(items) => items.iter_mut().for_each(remove_times),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cond(type_: &'static str, ok: bool, time: Option<&str>) -> Condition {
        let mut c = Condition::new(type_, ok, "R", "m", 1);
        c.last_transition_time = time.map_or_else(TransitionTime::unset, TransitionTime::at);
        c
    }

    #[test]
    fn an_unchanged_condition_keeps_its_time_and_a_flipped_one_gets_now() {
        let old = [
            cond("Accepted", true, Some("T1")),
            cond("ResolvedRefs", true, Some("T1")),
        ];
        let mut next = [
            cond("Accepted", true, None),
            cond("ResolvedRefs", false, None),
        ];
        keep_times(&mut next, &old, "T2");
        assert_eq!(next[0].last_transition_time.as_deref(), Some("T1"));
        assert_eq!(next[1].last_transition_time.as_deref(), Some("T2"));
    }

    #[test]
    fn conditions_compare_without_times_or_order() {
        let a = [cond("A", true, Some("T1")), cond("B", true, Some("T1"))];
        let b = [cond("B", true, Some("T9")), cond("A", true, None)];
        assert!(same_conditions(&a, &b));
        assert!(!same_conditions(
            &a,
            &[cond("A", false, None), cond("B", true, None)]
        ));
    }
}
