//! Which routes (and EndpointSlices, [`retain_served_endpoints`]) a proxy needs to translate: those that name a Gateway it serves, directly or
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

const GATEWAY_GROUP: &str = gantry_crds::GATEWAY_GROUP;

/// The parents a route may name that this store's translation serves: Gateways and
/// ListenerSets, by namespace then name. Looked up for every parentRef of every route on every
/// watch event, with borrowed strings (an `ObjectKey` per lookup was two copies).
struct Served {
    gateways: ByNamespace,
    listener_sets: ByNamespace,
}

/// Object names by namespace.
type ByNamespace = BTreeMap<String, BTreeSet<String>>;

fn by_namespace<'a>(keys: impl Iterator<Item = &'a ObjectKey>) -> ByNamespace {
    let mut out = ByNamespace::new();
    for key in keys {
        out.entry(key.namespace.clone())
            .or_default()
            .insert(key.name.clone());
    }
    out
}

fn contains(keys: &ByNamespace, namespace: &str, name: &str) -> bool {
    keys.get(namespace)
        .is_some_and(|names| names.contains(name))
}

impl Served {
    /// Gateways of a class with `controller_name`, and the ListenerSets that name one of them.
    fn of(store: &Store, controller_name: &str) -> Self {
        let gateways = by_namespace(
            store
                .gateways
                .iter()
                .filter(|(_, g)| {
                    store
                        .gateway_classes
                        .get(&g.spec.gateway_class_name)
                        .is_some_and(|c| c.spec.controller_name == controller_name)
                })
                .map(|(k, _)| k),
        );
        let listener_sets = by_namespace(
            store
                .listener_sets
                .iter()
                .filter(|(k, s)| {
                    parent_of(k, s).is_some_and(|p| contains(&gateways, &p.namespace, &p.name))
                })
                .map(|(k, _)| k),
        );
        Self {
            gateways,
            listener_sets,
        }
    }

    /// Whether `parent`, written in a route of `namespace`, names a served Gateway or
    /// ListenerSet (the namespace defaults to the route's, the group and kind to Gateway's).
    fn names(&self, namespace: &str, parent: ParentFields<'_>) -> bool {
        if parent.group.unwrap_or(GATEWAY_GROUP) != GATEWAY_GROUP {
            return false;
        }
        let namespace = parent
            .namespace
            .filter(|n| !n.is_empty())
            .unwrap_or(namespace);
        match parent.kind.unwrap_or("Gateway") {
            "Gateway" => contains(&self.gateways, namespace, parent.name),
            listener_set::KIND => contains(&self.listener_sets, namespace, parent.name),
            _ => false,
        }
    }
}

/// The fields of a parentRef that say which object it names, borrowed.
#[derive(Clone, Copy)]
struct ParentFields<'a> {
    group: Option<&'a str>,
    kind: Option<&'a str>,
    namespace: Option<&'a str>,
    name: &'a str,
}

/// Whether a route names a served Gateway or ListenerSet, in `spec.parentRefs` or in a
/// `status.parents[]` entry written by `controller_name`; read in place, nothing copied.
trait NamesServed {
    fn names_served(&self, namespace: &str, served: &Served, controller_name: &str) -> bool;
}

/// The [`ParentFields`] of a generated parentRef type (every route kind's spec and status
/// parentRefs have the same fields).
macro_rules! parent_fields {
    ($parent:expr) => {
        ParentFields {
            group: $parent.group.as_deref(),
            kind: $parent.kind.as_deref(),
            namespace: $parent.namespace.as_deref(),
            name: &$parent.name,
        }
    };
}

macro_rules! names_served {
    ($($route:ty),* $(,)?) => {$(
        impl NamesServed for $route {
            fn names_served(&self, namespace: &str, served: &Served, controller_name: &str) -> bool {
                self.spec
                    .parent_refs
                    .iter()
                    .flatten()
                    .any(|p| served.names(namespace, parent_fields!(p)))
                    || self
                        .status
                        .iter()
                        .flat_map(|s| s.parents.iter())
                        .filter(|p| p.controller_name == controller_name)
                        .any(|p| served.names(namespace, parent_fields!(p.parent_ref)))
            }
        }
    )*};
}

names_served! {
    gantry_crds::gateway::httproutes::HttpRoute,
    gantry_crds::gateway::grpcroutes::GrpcRoute,
    gantry_crds::gateway::tlsroutes::TlsRoute,
    gantry_crds::gateway::experimental::tcproutes::TcpRoute,
    gantry_crds::gateway::experimental::udproutes::UdpRoute,
}

fn retain<R: NamesServed>(
    routes: &mut BTreeMap<ObjectKey, Arc<R>>,
    served: &Served,
    controller_name: &str,
) {
    routes.retain(|key, route| route.names_served(&key.namespace, served, controller_name));
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

/// The namespaces whose EndpointSlices a translation of `store` can read: a backend is a
/// Service in its referrer's namespace (a route, or the HTTPComposition a route's ExtensionRef
/// names, always in the route's namespace) or in the namespace a reference names. Every such
/// namespace of the routes in `store` (after [`retain_served_routes`]) and of the
/// HTTPCompositions in theirs. Wider than the Services really used, never narrower; the
/// differential test (`tests/scope_differential.rs`) translates every golden case both ways.
///
/// Borrowed from `store`: it runs on every watch event, and copied a namespace for each route
/// and backend.
pub fn backend_namespaces(store: &Store) -> BTreeSet<&str> {
    fn named<'s>(out: &mut BTreeSet<&'s str>, referrer: &'s str, namespace: Option<&'s String>) {
        out.insert(
            namespace
                .filter(|n| !n.is_empty())
                .map_or(referrer, String::as_str),
        );
    }
    let mut namespaces = BTreeSet::new();
    // HTTPRoute and GRPCRoute rules: backendRefs, and mirrors in the rule's and in each
    // backendRef's filters (the two kinds' types differ, their shape does not).
    macro_rules! request_routes {
        ($($routes:expr),*) => {$(
            for (key, route) in $routes {
                named(&mut namespaces, &key.namespace, None);
                for rule in route.spec.rules.iter().flatten() {
                    for filter in rule.filters.iter().flatten() {
                        if let Some(mirror) = &filter.request_mirror {
                            named(&mut namespaces, &key.namespace, mirror.backend_ref.namespace.as_ref());
                        }
                    }
                    for backend in rule.backend_refs.iter().flatten() {
                        named(&mut namespaces, &key.namespace, backend.namespace.as_ref());
                        for filter in backend.filters.iter().flatten() {
                            if let Some(mirror) = &filter.request_mirror {
                                named(&mut namespaces, &key.namespace, mirror.backend_ref.namespace.as_ref());
                            }
                        }
                    }
                }
            }
        )*};
    }
    // TLSRoute, TCPRoute and UDPRoute rules: backendRefs only.
    macro_rules! stream_routes {
        ($($routes:expr),*) => {$(
            for (key, route) in $routes {
                named(&mut namespaces, &key.namespace, None);
                for backend in route.spec.rules.iter().flat_map(|r| &r.backend_refs) {
                    named(&mut namespaces, &key.namespace, backend.namespace.as_ref());
                }
            }
        )*};
    }
    request_routes!(&store.http_routes, &store.grpc_routes);
    // HTTPRoute's ExternalAuth filters (GEP-1494; GRPCRoute has none).
    for (key, route) in &store.http_routes {
        for rule in route.spec.rules.iter().flatten() {
            let backend_filters = rule.backend_refs.iter().flatten().flat_map(|b| {
                b.filters.iter().flatten().filter_map(|f| {
                    f.external_auth
                        .as_ref()
                        .map(|a| a.backend_ref.namespace.as_ref())
                })
            });
            let rule_filters = rule.filters.iter().flatten().filter_map(|f| {
                f.external_auth
                    .as_ref()
                    .map(|a| a.backend_ref.namespace.as_ref())
            });
            for namespace in rule_filters.chain(backend_filters) {
                named(&mut namespaces, &key.namespace, namespace);
            }
        }
    }
    stream_routes!(&store.tls_routes, &store.tcp_routes, &store.udp_routes);
    let route_namespaces = namespaces.clone();
    for (key, composition) in &store.http_compositions {
        if route_namespaces.contains(key.namespace.as_str()) {
            for part in &composition.spec.parts {
                named(
                    &mut namespaces,
                    &key.namespace,
                    part.backend_ref.namespace.as_ref(),
                );
            }
        }
    }
    // SecurityPolicies fetch JWKS through Services of their own namespace, and ask external
    // authorization services of any (with a ReferenceGrant).
    for (key, policy) in &store.security_policies {
        if let Some(auth) = &policy.spec.ext_auth {
            let grpc = auth.grpc.iter().flat_map(|g| &g.backend_refs);
            let http = auth.http.iter().flat_map(|h| &h.backend_refs);
            for r in grpc.chain(http) {
                named(&mut namespaces, &key.namespace, r.namespace.as_ref());
            }
        }
        let through_service = policy.spec.jwt.iter().flat_map(|j| &j.providers).any(|p| {
            p.remote_jwks
                .as_ref()
                .is_some_and(|r| !r.backend_refs.is_empty())
        });
        if through_service {
            namespaces.insert(key.namespace.as_str());
        }
    }
    namespaces
}

/// `store` (after [`retain_served_routes`]) without the EndpointSlices of namespaces no
/// backend of its routes can be in ([`backend_namespaces`]): endpoint churn there is not
/// published, and a fleet holds no endpoints of other teams' namespaces in its config.
pub fn retain_served_endpoints(mut store: Store) -> Store {
    let mut slices = std::mem::take(&mut store.endpoint_slices);
    let namespaces = backend_namespaces(&store);
    slices.retain(|key, _| namespaces.contains(key.namespace.as_str()));
    drop(namespaces);
    store.endpoint_slices = slices;
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

    #[test]
    fn external_authorization_services_keep_their_namespaces_endpoints() {
        let store = load(
            r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: filtered, namespace: apps}
spec:
  parentRefs: [{name: dmz, namespace: edge}]
  rules:
  - filters: [{type: ExternalAuth, externalAuth: {protocol: HTTP, backendRef: {name: a, namespace: filter-auth, port: 80}}}]
---
apiVersion: gantry.dev/v1alpha1
kind: SecurityPolicy
metadata: {name: p, namespace: policies}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: dmz}]
  extAuth: {grpc: {backendRefs: [{name: a, namespace: policy-auth, port: 80}]}}
"#,
        );
        let namespaces: Vec<_> = backend_namespaces(&store).into_iter().collect();
        assert_eq!(namespaces, ["apps", "filter-auth", "policy-auth"]);
    }
}
