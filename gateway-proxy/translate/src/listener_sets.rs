//! Which ListenerSets add listeners to a Gateway (GEP-1713), for the operator: it opens a
//! Service port and a container port for each listener a Gateway takes from the ListenerSets it
//! admits, and re-renders a Gateway's fleet when a ListenerSet naming it changes.
//!
//! These call the translator's own rules (`translate::listener_set`: the `parentRef`, the
//! Gateway's `spec.allowedListeners`, the precedence order), so the ports the operator exposes
//! and the listeners the proxy serves cannot drift apart.

use std::collections::BTreeSet;

use gantry_crds::gateway::gateways::{
    Gateway, GatewayAllowedListenersNamespacesFrom, GatewayListeners,
};
use gantry_crds::gateway::listenersets::ListenerSet;

use crate::store::{ObjectKey, Store};
use crate::translate::listener_set;

/// The listeners the Gateway `gw` (at `gateway`) takes from the ListenerSets in `store` that
/// name it and that its `allowedListeners` admits, in GEP-1713 precedence order. Namespace
/// labels (`from: Selector`) are read from `store.namespaces` when `namespace_labels` is set;
/// without it a selector admits nothing, as in a proxy that cannot read Namespaces
/// (`--watch-namespace`).
///
/// Admission only: whether a listener is valid, conflicts with another, or its Gateway is
/// accepted is the proxy's to decide (and to report in status), as for the Gateway's own
/// listeners, whose ports the operator opens whatever their validity.
pub fn admitted_listeners(
    store: &Store,
    gateway: &ObjectKey,
    gw: &Gateway,
    namespace_labels: bool,
) -> Vec<GatewayListeners> {
    let (candidates, _) = listener_set::for_gateway(store, gateway, gw, namespace_labels);
    candidates.into_iter().flat_map(|c| c.listeners).collect()
}

/// The namespaces of the ListenerSets in `store` that the Gateway `gw` (at `gateway`) admits,
/// by the same rule as [`admitted_listeners`]: where the listeners it takes from them name
/// their certificate Secrets.
pub fn admitted_namespaces(
    store: &Store,
    gateway: &ObjectKey,
    gw: &Gateway,
    namespace_labels: bool,
) -> BTreeSet<String> {
    let (candidates, _) = listener_set::for_gateway(store, gateway, gw, namespace_labels);
    candidates
        .into_iter()
        .map(|c| c.key.namespace.clone())
        .collect()
}

/// The Gateway a ListenerSet at `key` attaches to, if its `parentRef` names a Gateway (the
/// namespace defaults to the ListenerSet's).
pub fn parent_gateway(key: &ObjectKey, set: &ListenerSet) -> Option<ObjectKey> {
    listener_set::parent_of(key, set)
}

/// Whether the Gateway admits ListenerSets by their namespace's labels
/// (`allowedListeners.namespaces.from: Selector`): only then do Namespaces need to be read.
pub fn selects_namespaces_by_label(gw: &Gateway) -> bool {
    gw.spec
        .allowed_listeners
        .as_ref()
        .and_then(|a| a.namespaces.as_ref())
        .and_then(|n| n.from.as_ref())
        == Some(&GatewayAllowedListenersNamespacesFrom::Selector)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::load::load_store;

    const OBJECTS: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: team-a, labels: {listeners: allowed}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: infra}
spec:
  gatewayClassName: gantry
  ALLOWED
  listeners: [{name: http, protocol: HTTP, port: 80}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: ListenerSet
metadata: {name: same, namespace: infra, creationTimestamp: "2024-01-02T00:00:00Z"}
spec:
  parentRef: {name: gw}
  listeners: [{name: a, protocol: HTTPS, port: 9443, tls: {certificateRefs: [{name: c}]}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: ListenerSet
metadata: {name: labelled, namespace: team-a, creationTimestamp: "2024-01-01T00:00:00Z"}
spec:
  parentRef: {name: gw, namespace: infra}
  listeners: [{name: b, protocol: UDP, port: 53}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: ListenerSet
metadata: {name: unlabelled, namespace: team-b}
spec:
  parentRef: {name: gw, namespace: infra}
  listeners: [{name: c, protocol: TCP, port: 5432}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: ListenerSet
metadata: {name: elsewhere, namespace: infra}
spec:
  parentRef: {name: other}
  listeners: [{name: d, protocol: HTTP, port: 8081}]
"#;

    /// `(ListenerSet listener name, port)` of what the Gateway takes with `allowed` as its
    /// `allowedListeners` line.
    fn admitted(allowed: &str, namespace_labels: bool) -> Vec<(String, i32)> {
        let yaml = OBJECTS.replace("ALLOWED", allowed);
        let (store, _) = load_store([("t.yaml", yaml.as_str())]).expect("loads");
        let key = ObjectKey::new("infra", "gw");
        let gw = store.gateways.get(&key).expect("gateway");
        admitted_listeners(&store, &key, gw, namespace_labels)
            .into_iter()
            .map(|l| (l.name, l.port))
            .collect()
    }

    fn pairs(items: &[(&str, i32)]) -> Vec<(String, i32)> {
        items.iter().map(|(n, p)| ((*n).to_owned(), *p)).collect()
    }

    #[test]
    fn admitted_namespaces_are_those_of_the_listener_sets_a_gateway_takes_listeners_from() {
        let namespaces = |allowed: &str, namespace_labels: bool| {
            let yaml = OBJECTS.replace("ALLOWED", allowed);
            let (store, _) = load_store([("t.yaml", yaml.as_str())]).expect("loads");
            let key = ObjectKey::new("infra", "gw");
            let gw = store.gateways.get(&key).expect("gateway");
            admitted_namespaces(&store, &key, gw, namespace_labels)
                .into_iter()
                .collect::<Vec<_>>()
        };
        assert!(namespaces("# no allowedListeners", true).is_empty());
        assert_eq!(
            namespaces("allowedListeners: {namespaces: {from: Same}}", true),
            ["infra"]
        );
        assert_eq!(
            namespaces("allowedListeners: {namespaces: {from: All}}", true),
            ["infra", "team-a", "team-b"]
        );
        let selector = "allowedListeners: {namespaces: {from: Selector, selector: {matchLabels: {listeners: allowed}}}}";
        assert_eq!(namespaces(selector, true), ["team-a"]);
        assert!(namespaces(selector, false).is_empty());
    }

    #[test]
    fn the_gateways_allowed_listeners_decide_which_listener_sets_add_listeners() {
        // The default, and `from: None`: "Only listeners defined in the Gateway's spec".
        assert_eq!(admitted("# no allowedListeners", true), pairs(&[]));
        let none = "allowedListeners: {namespaces: {from: None}}";
        assert_eq!(admitted(none, true), pairs(&[]));
        let same = "allowedListeners: {namespaces: {from: Same}}";
        assert_eq!(admitted(same, true), pairs(&[("a", 9443)]));
        // Oldest first; a ListenerSet naming another Gateway never counts.
        let all = "allowedListeners: {namespaces: {from: All}}";
        assert_eq!(
            admitted(all, true),
            pairs(&[("b", 53), ("a", 9443), ("c", 5432)])
        );
        let selector = "allowedListeners: {namespaces: {from: Selector, selector: {matchLabels: {listeners: allowed}}}}";
        assert_eq!(admitted(selector, true), pairs(&[("b", 53)]));
        assert_eq!(
            admitted(selector, false),
            pairs(&[]),
            "labels that cannot be read select nothing"
        );
    }

    #[test]
    fn only_a_selector_needs_namespace_labels_and_the_parent_defaults_to_the_sets_namespace() {
        let yaml = OBJECTS.replace(
            "ALLOWED",
            "allowedListeners: {namespaces: {from: Selector}}",
        );
        let (store, _) = load_store([("t.yaml", yaml.as_str())]).expect("loads");
        let gw = store
            .gateways
            .get(&ObjectKey::new("infra", "gw"))
            .expect("gateway");
        assert!(selects_namespaces_by_label(gw));
        let same = OBJECTS.replace("ALLOWED", "allowedListeners: {namespaces: {from: All}}");
        let (store, _) = load_store([("t.yaml", same.as_str())]).expect("loads");
        let gw = store
            .gateways
            .get(&ObjectKey::new("infra", "gw"))
            .expect("gateway");
        assert!(!selects_namespaces_by_label(gw));
        let parents: Vec<(String, Option<ObjectKey>)> = store
            .listener_sets
            .iter()
            .map(|(key, set)| (key.name.clone(), parent_gateway(key, set)))
            .collect();
        assert_eq!(
            parents,
            [
                (
                    "elsewhere".to_owned(),
                    Some(ObjectKey::new("infra", "other"))
                ),
                ("same".to_owned(), Some(ObjectKey::new("infra", "gw"))),
                ("labelled".to_owned(), Some(ObjectKey::new("infra", "gw"))),
                ("unlabelled".to_owned(), Some(ObjectKey::new("infra", "gw"))),
            ]
        );
    }
}
