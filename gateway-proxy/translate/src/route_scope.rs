//! Which routes a proxy needs to translate: those that name a Gateway it serves, directly or
//! through a ListenerSet of one, and those still carrying a `status.parents[]` entry of its
//! controller for one (so that the status writer removes the entry once the route detached).
//!
//! A fleet scoped to some Gateways watches routes cluster-wide (a route may attach from any
//! namespace a listener admits), but drops every other route before translating
//! ([`retain_served_routes`]): routes of other Gateways, of another fleet or another class, never
//! reach the translator, so a change to them costs the fleet nothing. The translator would
//! ignore them anyway ("Implementations of this API can only populate Route status for the
//! Gateways/parent resources they are responsible for"), so the result is the same.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::store::{ObjectKey, Store};
use crate::translate::listener_set::{self, parent_of};
use crate::translate::parent_ref::{ParentRef, RouteResource};

const GATEWAY_GROUP: &str = gantry_crds::GATEWAY_GROUP;

/// The parents a route may name that this store's translation serves.
struct Served {
    gateways: BTreeSet<ObjectKey>,
    listener_sets: BTreeSet<ObjectKey>,
}

impl Served {
    /// Gateways of a class with `controller_name`, and the ListenerSets that name one of them.
    fn of(store: &Store, controller_name: &str) -> Self {
        let gateways: BTreeSet<ObjectKey> = store
            .gateways
            .iter()
            .filter(|(_, g)| {
                store
                    .gateway_classes
                    .get(&g.spec.gateway_class_name)
                    .is_some_and(|c| c.spec.controller_name == controller_name)
            })
            .map(|(k, _)| k.clone())
            .collect();
        let listener_sets = store
            .listener_sets
            .iter()
            .filter(|(k, s)| parent_of(k, s).is_some_and(|p| gateways.contains(&p)))
            .map(|(k, _)| k.clone())
            .collect();
        Self {
            gateways,
            listener_sets,
        }
    }

    /// Whether `parent`, written in a route of `namespace`, names a served Gateway or
    /// ListenerSet (the namespace defaults to the route's, the group and kind to Gateway's).
    fn names(&self, namespace: &str, parent: &ParentRef) -> bool {
        if parent.group.as_deref().unwrap_or(GATEWAY_GROUP) != GATEWAY_GROUP {
            return false;
        }
        let key = ObjectKey::new(
            parent
                .namespace
                .as_deref()
                .filter(|n| !n.is_empty())
                .unwrap_or(namespace),
            parent.name.as_str(),
        );
        match parent.kind.as_deref().unwrap_or("Gateway") {
            "Gateway" => self.gateways.contains(&key),
            listener_set::KIND => self.listener_sets.contains(&key),
            _ => false,
        }
    }
}

/// A route's `status.parents[]` entries written by `controller_name`, as parentRefs.
trait StatusParents: RouteResource {
    fn status_parents(&self, controller_name: &str) -> Vec<ParentRef>;
}

macro_rules! status_parents {
    ($($route:ty),* $(,)?) => {$(
        impl StatusParents for $route {
            fn status_parents(&self, controller_name: &str) -> Vec<ParentRef> {
                self.status
                    .iter()
                    .flat_map(|s| s.parents.iter())
                    .filter(|p| p.controller_name == controller_name)
                    .map(|p| ParentRef {
                        group: p.parent_ref.group.clone(),
                        kind: p.parent_ref.kind.clone(),
                        namespace: p.parent_ref.namespace.clone(),
                        name: p.parent_ref.name.clone(),
                        section_name: None,
                        port: None,
                    })
                    .collect()
            }
        }
    )*};
}

status_parents! {
    gantry_crds::gateway::httproutes::HttpRoute,
    gantry_crds::gateway::grpcroutes::GrpcRoute,
    gantry_crds::gateway::tlsroutes::TlsRoute,
    gantry_crds::gateway::experimental::tcproutes::TcpRoute,
    gantry_crds::gateway::experimental::udproutes::UdpRoute,
}

fn retain<R: StatusParents>(
    routes: &mut BTreeMap<ObjectKey, Arc<R>>,
    served: &Served,
    controller_name: &str,
) {
    routes.retain(|key, route| {
        route
            .parent_refs()
            .iter()
            .chain(route.status_parents(controller_name).iter())
            .any(|p| served.names(&key.namespace, p))
    });
}

/// `store` without the routes that neither name a Gateway served by `controller_name` (of a
/// class in the store with that controller), or a ListenerSet of one, nor carry a
/// `status.parents[]` entry of that controller for one. Every object kept is the same `Arc`,
/// so a store published from this keeps pointer equality with the last one where nothing
/// relevant changed.
pub fn retain_served_routes(mut store: Store, controller_name: &str) -> Store {
    let served = Served::of(&store, controller_name);
    retain(&mut store.http_routes, &served, controller_name);
    retain(&mut store.grpc_routes, &served, controller_name);
    retain(&mut store.tls_routes, &served, controller_name);
    retain(&mut store.tcp_routes, &served, controller_name);
    retain(&mut store.udp_routes, &served, controller_name);
    store
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::load::load_store;

    const CONTROLLER: &str = "gantry.dev/gateway-controller";

    const OBJECTS: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: gantry}
spec: {controllerName: gantry.dev/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: other}
spec: {controllerName: example.com/other}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: dmz, namespace: edge}
spec:
  gatewayClassName: gantry
  allowedListeners: {namespaces: {from: All}}
  listeners: [{name: http, port: 80, protocol: HTTP, allowedRoutes: {namespaces: {from: All}}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: internal, namespace: edge}
spec:
  gatewayClassName: other
  listeners: [{name: http, port: 80, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: ListenerSet
metadata: {name: team, namespace: apps}
spec:
  parentRef: {name: dmz, namespace: edge}
  listeners: [{name: extra, port: 8080, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: direct, namespace: apps}
spec:
  parentRefs: [{name: internal, namespace: edge}, {name: dmz, namespace: edge}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: through-set, namespace: apps}
spec:
  parentRefs: [{kind: ListenerSet, name: team}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: internal-only, namespace: apps}
spec:
  parentRefs: [{name: internal, namespace: edge}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: same-name-elsewhere, namespace: apps}
spec:
  parentRefs: [{name: dmz}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: grpc-internal, namespace: apps}
spec:
  parentRefs: [{name: internal, namespace: edge}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: grpc-dmz, namespace: edge}
spec:
  parentRefs: [{name: dmz}]
"#;

    fn load(yaml: &str) -> Store {
        load_store([("t.yaml", yaml)]).expect("loads").0
    }

    fn names<T>(map: &BTreeMap<ObjectKey, Arc<T>>) -> Vec<String> {
        map.keys().map(ToString::to_string).collect()
    }

    #[test]
    fn only_routes_naming_a_served_gateway_or_its_listener_set_are_kept() {
        let store = load(OBJECTS);
        let kept = retain_served_routes(store.clone(), CONTROLLER);
        assert_eq!(
            names(&kept.http_routes),
            ["apps/direct", "apps/through-set"]
        );
        assert_eq!(names(&kept.grpc_routes), ["edge/grpc-dmz"]);
        // The same objects: nothing copied.
        let key = ObjectKey::new("apps", "direct");
        assert!(Arc::ptr_eq(
            &kept.http_routes[&key],
            &store.http_routes[&key]
        ));
        // Everything else is untouched.
        assert_eq!(kept.gateways.len(), 2);
        assert_eq!(kept.listener_sets.len(), 1);
    }

    #[test]
    fn a_route_that_detached_is_kept_while_it_carries_an_entry_of_ours() {
        let mut store = load(OBJECTS);
        let key = ObjectKey::new("apps", "internal-only");
        let mut route = (*store.http_routes[&key]).clone();
        let status = |controller: &str| {
            serde_json::from_value(serde_json::json!({"parents": [{
                "controllerName": controller,
                "parentRef": {"name": "dmz", "namespace": "edge"},
                "conditions": [],
            }]}))
            .expect("a route status")
        };
        route.status = Some(status("example.com/other"));
        store
            .http_routes
            .insert(key.clone(), Arc::new(route.clone()));
        let kept = retain_served_routes(store.clone(), CONTROLLER);
        assert!(
            !kept.http_routes.contains_key(&key),
            "another controller's entry"
        );

        route.status = Some(status(CONTROLLER));
        store.http_routes.insert(key.clone(), Arc::new(route));
        let kept = retain_served_routes(store, CONTROLLER);
        assert!(kept.http_routes.contains_key(&key), "our stale entry");
    }
}
