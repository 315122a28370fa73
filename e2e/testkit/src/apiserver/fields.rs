//! Field paths of objects as server-side apply sees them: which lists merge by key, the set of fields an object sets, FieldsV1 encoding, and merging or removing fields.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;

use serde_json::{Map, Value};

/// One step of a field path: a map field, or the item of a list-map with these key values.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Element {
    /// `f:name`.
    Field(String),
    /// `k:{"type":"Ready"}`: the key fields of a list-map item, as a JSON object.
    Key(String),
}

/// A field of an object, from its root.
pub type Path = Vec<Element>;

/// The fields a manager owns, or an object sets.
pub type FieldSet = BTreeSet<Path>;

/// The key fields of the list at `names` (the map fields leading to it, list items skipped), or
/// `None` for an atomic list, as the Kubernetes and Gateway API schemas declare them
/// (`x-kubernetes-list-type: map`, `patchMergeKey`).
pub fn list_keys(names: &[String]) -> Option<&'static [&'static str]> {
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    match names.as_slice() {
        // metav1.Condition lists, wherever they are (Gateway, listener, route parent, ...).
        [.., "conditions"] => Some(&["type"]),
        ["status", "listeners"] => Some(&["name"]),
        ["status", "supportedFeatures"] => Some(&["name"]),
        ["metadata", "ownerReferences"] => Some(&["uid"]),
        [.., "containers" | "initContainers" | "volumes" | "env"] => Some(&["name"]),
        [.., "containers" | "initContainers", "ports"] => Some(&["containerPort", "protocol"]),
        [.., "volumeMounts"] => Some(&["mountPath"]),
        ["spec", "ports"] => Some(&["port", "protocol"]),
        // Everything else, Gateway `status.addresses` and route `status.parents` included.
        _ => None,
    }
}

/// The key of a list-map item: its key fields as a JSON object (sorted, absent ones null).
fn item_key(item: &Value, keys: &[&str]) -> String {
    let key: Map<String, Value> = keys
        .iter()
        .map(|k| {
            (
                (*k).to_owned(),
                item.get(*k).cloned().unwrap_or(Value::Null),
            )
        })
        .collect();
    Value::Object(key).to_string()
}

/// Fields the server sets or reads from the URL; never owned by a manager.
fn untracked(path: &Path) -> bool {
    match path.as_slice() {
        [Element::Field(f)] => f == "apiVersion" || f == "kind",
        [Element::Field(m), Element::Field(f)] if m == "metadata" => matches!(
            f.as_str(),
            "name"
                | "namespace"
                | "resourceVersion"
                | "uid"
                | "generation"
                | "managedFields"
                | "creationTimestamp"
                | "deletionTimestamp"
        ),
        _ => false,
    }
}

/// Every field `object` sets: leaves, atomic lists, and list-map items (with their fields).
pub fn set_of(object: &Value) -> FieldSet {
    let mut out = FieldSet::new();
    collect(object, &mut Vec::new(), &mut Vec::new(), &mut out);
    out
}

fn collect(value: &Value, path: &mut Path, names: &mut Vec<String>, out: &mut FieldSet) {
    if untracked(path) {
        return;
    }
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                path.push(Element::Field(k.clone()));
                names.push(k.clone());
                collect(v, path, names, out);
                names.pop();
                path.pop();
            }
        }
        Value::Array(items) if list_keys(names).is_some() => {
            let keys = list_keys(names).unwrap_or_default();
            for item in items {
                path.push(Element::Key(item_key(item, keys)));
                out.insert(path.clone());
                collect(item, path, names, out);
                path.pop();
            }
        }
        Value::Null => {}
        _ if !path.is_empty() => {
            out.insert(path.clone());
        }
        _ => {}
    }
}

/// The value at `path`, if `object` has it.
pub fn value_at<'a>(object: &'a Value, path: &[Element]) -> Option<&'a Value> {
    let mut at = object;
    let mut names: Vec<String> = Vec::new();
    for element in path {
        at = match element {
            Element::Field(f) => {
                names.push(f.clone());
                at.get(f)?
            }
            Element::Key(k) => {
                let keys = list_keys(&names)?;
                at.as_array()?.iter().find(|i| item_key(i, keys) == *k)?
            }
        };
    }
    Some(at)
}

/// Whether `a` and `b` hold different things at `path`. A list-map item is the same item
/// whatever its fields (those are paths of their own).
pub fn differs(a: &Value, b: &Value, path: &[Element]) -> bool {
    let (x, y) = (value_at(a, path), value_at(b, path));
    match path.last() {
        Some(Element::Key(_)) => x.is_some() != y.is_some(),
        _ => x != y,
    }
}

/// Removes the field at `path` (a list-map item entirely); nothing when it is absent.
pub fn remove(object: &mut Value, path: &[Element]) {
    let Some((last, parent)) = path.split_last() else {
        return;
    };
    let names: Vec<String> = parent
        .iter()
        .filter_map(|e| match e {
            Element::Field(f) => Some(f.clone()),
            Element::Key(_) => None,
        })
        .collect();
    let Some(at) = value_at_mut(object, parent) else {
        return;
    };
    match last {
        Element::Field(f) => {
            if let Some(map) = at.as_object_mut() {
                map.remove(f);
            }
        }
        Element::Key(k) => {
            if let (Some(keys), Some(items)) = (list_keys(&names), at.as_array_mut()) {
                items.retain(|i| item_key(i, keys) != *k);
            }
        }
    }
}

fn value_at_mut<'a>(object: &'a mut Value, path: &[Element]) -> Option<&'a mut Value> {
    let mut at = object;
    let mut names: Vec<String> = Vec::new();
    for element in path {
        at = match element {
            Element::Field(f) => {
                names.push(f.clone());
                at.get_mut(f)?
            }
            Element::Key(k) => {
                let keys = list_keys(&names)?;
                at.as_array_mut()?
                    .iter_mut()
                    .find(|i| item_key(i, keys) == *k)?
            }
        };
    }
    Some(at)
}

/// Merges an applied configuration into `live`: maps field by field, list-maps item by item
/// (matched by key), anything else (scalars, atomic lists) replaced.
pub fn merge_applied(live: &mut Value, config: &Value) {
    merge_at(live, config, &mut Vec::new());
}

fn merge_at(live: &mut Value, config: &Value, names: &mut Vec<String>) {
    match config {
        Value::Object(fields) => {
            if !live.is_object() {
                *live = Value::Object(Map::new());
            }
            if let Some(map) = live.as_object_mut() {
                for (k, v) in fields {
                    if v.is_null() {
                        continue;
                    }
                    names.push(k.clone());
                    merge_at(map.entry(k.clone()).or_insert(Value::Null), v, names);
                    names.pop();
                }
            }
        }
        Value::Array(items) if list_keys(names).is_some() && live.is_array() => {
            let keys = list_keys(names).unwrap_or_default();
            if let Some(list) = live.as_array_mut() {
                *list = merge_list(list, items, keys, names);
            }
        }
        other => *live = other.clone(),
    }
}

/// A list-map merged as kube-apiserver's structured merge does: the applied items in the
/// applied order, each merged into its live item; live items the configuration does not hold
/// stay where they were relative to the items around them.
fn merge_list(
    live: &[Value],
    applied: &[Value],
    keys: &[&str],
    names: &mut Vec<String>,
) -> Vec<Value> {
    let live_keys: Vec<String> = live.iter().map(|i| item_key(i, keys)).collect();
    let applied_keys: Vec<String> = applied.iter().map(|i| item_key(i, keys)).collect();
    // The items in both lists, in the applied order: a live item held by both waits for its
    // turn in this order.
    let mut shared: VecDeque<&String> = applied_keys
        .iter()
        .filter(|k| live_keys.contains(k))
        .collect();
    let mut merged: Vec<&String> = Vec::new();
    let mut out = Vec::with_capacity(live.len() + applied.len());
    let take = |key: &String, item: &Value, names: &mut Vec<String>| match live_keys
        .iter()
        .position(|k| k == key)
    {
        Some(at) => {
            let mut existing = live[at].clone();
            merge_at(&mut existing, item, names);
            existing
        }
        None => item.clone(),
    };
    let (mut l, mut r) = (0, 0);
    while l < live.len() || r < applied.len() {
        if l < live.len() && r < applied.len() {
            let key = &live_keys[l];
            if *key == applied_keys[r] {
                out.push(take(key, &applied[r], names));
                merged.push(key);
                if shared.front() == Some(&key) {
                    shared.pop_front();
                }
                l += 1;
                r += 1;
                continue;
            }
            if applied_keys.contains(key) && shared.front().is_some_and(|next| *next != key) {
                // A shared item, not the next one in the applied order.
                l += 1;
                continue;
            }
        }
        if l < live.len() {
            let key = &live_keys[l];
            if !applied_keys.contains(key) {
                out.push(live[l].clone());
                l += 1;
                continue;
            }
            if merged.contains(&key) {
                l += 1;
                continue;
            }
        }
        if r < applied.len() {
            let key = &applied_keys[r];
            out.push(take(key, &applied[r], names));
            merged.push(key);
            if shared.front() == Some(&key) {
                shared.pop_front();
            }
            r += 1;
        }
    }
    out
}

/// `fieldsV1` of a managedFields entry.
pub fn encode(set: &FieldSet) -> Value {
    let mut root = Map::new();
    for path in set {
        insert(&mut root, path);
    }
    Value::Object(root)
}

fn insert(node: &mut Map<String, Value>, path: &[Element]) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    let entry = node
        .entry(first.to_string())
        .or_insert_with(|| Value::Object(Map::new()));
    if let Some(child) = entry.as_object_mut() {
        if rest.is_empty() {
            if matches!(first, Element::Key(_)) {
                child.insert(".".to_owned(), Value::Object(Map::new()));
            }
        } else {
            insert(child, rest);
        }
    }
}

/// The set a `fieldsV1` value describes.
pub fn decode(fields: &Value) -> FieldSet {
    let mut out = FieldSet::new();
    decode_at(fields, &mut Vec::new(), &mut out);
    out
}

fn decode_at(node: &Value, path: &mut Path, out: &mut FieldSet) {
    let Some(children) = node.as_object() else {
        return;
    };
    for (name, child) in children {
        let element = if let Some(f) = name.strip_prefix("f:") {
            Element::Field(f.to_owned())
        } else if let Some(k) = name.strip_prefix("k:") {
            Element::Key(k.to_owned())
        } else {
            continue;
        };
        path.push(element);
        let grandchildren = child.as_object();
        if grandchildren.is_none_or(Map::is_empty)
            || grandchildren.is_some_and(|c| c.contains_key("."))
        {
            out.insert(path.clone());
        }
        decode_at(child, path, out);
        path.pop();
    }
}

impl fmt::Display for Element {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Element::Field(name) => write!(f, "f:{name}"),
            Element::Key(key) => write!(f, "k:{key}"),
        }
    }
}

/// `.status.conditions[type="Accepted"].status`, as the API server names a field in a conflict.
pub fn display(path: &[Element]) -> String {
    let mut out = String::new();
    for element in path {
        match element {
            Element::Field(f) => {
                out.push('.');
                out.push_str(f);
            }
            Element::Key(k) => {
                let key: BTreeMap<String, Value> = serde_json::from_str(k).unwrap_or_default();
                let parts: Vec<String> = key.iter().map(|(n, v)| format!("{n}={v}")).collect();
                out.push_str(&format!("[{}]", parts.join(",")));
            }
        }
    }
    out
}

/// Whether `path` is a key field of a list-map item (`type` of a condition).
pub fn is_key_field(path: &[Element]) -> bool {
    match path {
        [.., Element::Key(key), Element::Field(field)] => {
            serde_json::from_str::<Map<String, Value>>(key).is_ok_and(|k| k.contains_key(field))
        }
        _ => false,
    }
}

/// Whether `path` lies under the top-level field `top`.
pub fn under(path: &[Element], top: &str) -> bool {
    matches!(path.first(), Some(Element::Field(f)) if f == top)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::*;

    fn f(name: &str) -> Element {
        Element::Field(name.to_owned())
    }

    #[test]
    fn conditions_are_items_by_type_and_addresses_one_atomic_field() {
        let set = set_of(&json!({
            "apiVersion": "v1", "kind": "Gateway", "metadata": {"name": "gw", "labels": {"a": "b"}},
            "status": {
                "conditions": [{"type": "Accepted", "status": "True"}],
                "addresses": [{"value": "10.0.0.1"}, {"value": "10.0.0.2"}],
            },
        }));
        let accepted = Element::Key(r#"{"type":"Accepted"}"#.to_owned());
        let expected: FieldSet = [
            vec![f("metadata"), f("labels"), f("a")],
            vec![f("status"), f("addresses")],
            vec![f("status"), f("conditions"), accepted.clone()],
            vec![f("status"), f("conditions"), accepted.clone(), f("status")],
            vec![f("status"), f("conditions"), accepted, f("type")],
        ]
        .into_iter()
        .collect();
        assert_eq!(set, expected);
        assert_eq!(decode(&encode(&set)), set, "fieldsV1 round trip");
    }

    #[test]
    fn fields_v1_has_the_api_servers_shape() {
        let set = set_of(&json!({"status": {"conditions": [{"type": "Programmed"}]}}));
        assert_eq!(
            encode(&set),
            json!({"f:status": {"f:conditions": {"k:{\"type\":\"Programmed\"}": {
                ".": {}, "f:type": {}}}}})
        );
    }

    #[test]
    fn merging_keeps_other_items_and_replaces_atomic_lists() {
        let mut live = json!({"status": {
            "conditions": [{"type": "Accepted", "status": "True"}],
            "addresses": [{"value": "a"}],
        }});
        merge_applied(
            &mut live,
            &json!({"status": {
                "conditions": [{"type": "Programmed", "status": "True"}],
                "addresses": [{"value": "b"}],
            }}),
        );
        assert_eq!(
            live,
            json!({"status": {
                "conditions": [{"type": "Accepted", "status": "True"},
                               {"type": "Programmed", "status": "True"}],
                "addresses": [{"value": "b"}],
            }})
        );
    }

    #[test]
    fn merged_list_items_take_the_applied_order_and_others_keep_their_place() {
        let names = |list: &Value| -> Vec<String> {
            list["status"]["listeners"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["name"].as_str().unwrap().to_owned())
                .collect()
        };
        let listeners = |names: &[&str]| {
            let items: Vec<Value> = names.iter().map(|n| json!({"name": n})).collect();
            json!({"status": {"listeners": items}})
        };
        for (live, applied, expected) in [
            (
                &["http"][..],
                &["https", "http"][..],
                &["https", "http"][..],
            ),
            (&["b", "a"], &["a", "b"], &["a", "b"]),
            (&["x", "a", "y", "b"], &["b", "a"], &["x", "y", "b", "a"]),
            (&["a", "x"], &["c", "a"], &["c", "a", "x"]),
        ] {
            let mut merged = listeners(live);
            merge_applied(&mut merged, &listeners(applied));
            assert_eq!(
                names(&merged),
                expected,
                "{live:?} with {applied:?} applied"
            );
        }
        let mut live =
            json!({"status": {"listeners": [{"name": "a", "attachedRoutes": 1, "x": 1}]}});
        merge_applied(
            &mut live,
            &json!({"status": {"listeners": [{"name": "b"}, {"name": "a", "attachedRoutes": 2}]}}),
        );
        assert_eq!(
            live["status"]["listeners"],
            json!([{"name": "b"}, {"name": "a", "attachedRoutes": 2, "x": 1}]),
            "an item merges into its live item"
        );
    }

    #[test]
    fn removing_an_item_leaves_its_siblings() {
        let mut live = json!({"status": {"listeners": [{"name": "a"}, {"name": "b"}]}});
        remove(
            &mut live,
            &[
                f("status"),
                f("listeners"),
                Element::Key(r#"{"name":"a"}"#.to_owned()),
            ],
        );
        assert_eq!(live, json!({"status": {"listeners": [{"name": "b"}]}}));
        assert_eq!(
            display(&[
                f("status"),
                f("listeners"),
                Element::Key(r#"{"name":"b"}"#.to_owned()),
                f("attachedRoutes"),
            ]),
            r#".status.listeners[name="b"].attachedRoutes"#
        );
    }
}
