//! The live routes and policies as the writer reads them from the store: their version,
//! whether they carry an entry of ours, and whether anything it reads changed between two
//! stores. Typed, so that checking an unchanged object serializes nothing.

use std::collections::BTreeMap;
use std::sync::Arc;

use gantry_crds::gateway::backendtlspolicies::BackendTlsPolicy;
use gantry_crds::gateway::experimental::tcproutes::TcpRoute;
use gantry_crds::gateway::experimental::udproutes::UdpRoute;
use gantry_crds::gateway::grpcroutes::GrpcRoute;
use gantry_crds::gateway::httproutes::HttpRoute;
use gantry_crds::gateway::tlsroutes::TlsRoute;
use serde_json::Value;

use super::entries::{Kind, Served, is_served_gateway};
use crate::store::{ObjectKey, Store};

/// A route or policy in the store.
pub(super) trait LiveObject {
    fn resource_version(&self) -> Option<&str>;
    /// Whether its status has an entry of `controller` for a Gateway in `served`; a reference
    /// without a namespace is in the object's own `namespace`.
    fn has_entry_for(&self, controller: &str, served: &Served, namespace: &str) -> bool;
    /// The whole object as JSON, for a write.
    fn to_json(&self) -> Option<Value>;
}

macro_rules! live_object {
    ($($ty:ty => $list:ident . $reference:ident),* $(,)?) => {$(
        impl LiveObject for $ty {
            fn resource_version(&self) -> Option<&str> {
                self.metadata.resource_version.as_deref()
            }

            fn has_entry_for(&self, controller: &str, served: &Served, namespace: &str) -> bool {
                self.status.iter().flat_map(|s| &s.$list).any(|entry| {
                    let r = &entry.$reference;
                    entry.controller_name == controller
                        && is_served_gateway(
                            r.group.as_deref(),
                            r.kind.as_deref(),
                            r.namespace.as_deref().unwrap_or(namespace),
                            &r.name,
                            served,
                        )
                })
            }

            fn to_json(&self) -> Option<Value> {
                serde_json::to_value(self).ok()
            }
        }
    )*};
}

live_object!(
    HttpRoute => parents.parent_ref,
    GrpcRoute => parents.parent_ref,
    TlsRoute => parents.parent_ref,
    TcpRoute => parents.parent_ref,
    UdpRoute => parents.parent_ref,
    BackendTlsPolicy => ancestors.ancestor_ref,
);

/// Calls `visit` with every object of `kind` in the store, in key order.
pub(super) fn for_each_object<'s>(
    store: &'s Store,
    kind: Kind,
    mut visit: impl FnMut(&'s ObjectKey, &'s dyn LiveObject),
) {
    fn each<'s, T: LiveObject + 's>(
        map: &'s BTreeMap<ObjectKey, Arc<T>>,
        visit: &mut impl FnMut(&'s ObjectKey, &'s dyn LiveObject),
    ) {
        for (key, object) in map {
            visit(key, &**object);
        }
    }
    match kind {
        Kind::HttpRoute => each(&store.http_routes, &mut visit),
        Kind::GrpcRoute => each(&store.grpc_routes, &mut visit),
        Kind::TlsRoute => each(&store.tls_routes, &mut visit),
        Kind::TcpRoute => each(&store.tcp_routes, &mut visit),
        Kind::UdpRoute => each(&store.udp_routes, &mut visit),
        Kind::BackendTlsPolicy => each(&store.backend_tls_policies, &mut visit),
    }
}

/// Whether the two stores hold the very same Gateways, routes and policies (the objects the
/// writer reads). Sources keep the `Arc` of an object no event replaced, so this compares
/// pointers: a status written back, even our own, counts as a change.
pub(super) fn same_objects(a: &Store, b: &Store) -> bool {
    fn same<T>(a: &BTreeMap<ObjectKey, Arc<T>>, b: &BTreeMap<ObjectKey, Arc<T>>) -> bool {
        a.len() == b.len()
            && a.iter()
                .zip(b)
                .all(|((ka, va), (kb, vb))| Arc::ptr_eq(va, vb) && ka == kb)
    }
    same(&a.gateways, &b.gateways)
        && same(&a.http_routes, &b.http_routes)
        && same(&a.grpc_routes, &b.grpc_routes)
        && same(&a.tls_routes, &b.tls_routes)
        && same(&a.tcp_routes, &b.tcp_routes)
        && same(&a.udp_routes, &b.udp_routes)
        && same(&a.backend_tls_policies, &b.backend_tls_policies)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn route(name: &str, status: Value) -> Arc<HttpRoute> {
        Arc::new(
            serde_json::from_value(json!({
                "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
                "metadata": {"name": name, "namespace": "apps", "resourceVersion": "5"},
                "spec": {"parentRefs": [{"name": "gw", "namespace": "infra"}]},
                "status": status,
            }))
            .unwrap_or_else(|e| panic!("{e}")),
        )
    }

    fn parent(controller: &str, reference: Value) -> Value {
        json!({"parentRef": reference, "controllerName": controller, "conditions": []})
    }

    #[test]
    fn an_entry_is_ours_for_our_controller_and_a_served_gateway() {
        let served = Served::new(vec![
            ObjectKey::new("infra", "gw"),
            ObjectKey::new("apps", "local"),
        ]);
        let has = |status: Value| route("r", status).has_entry_for("us", &served, "apps");
        assert!(has(
            json!({"parents": [parent("us", json!({"name": "gw", "namespace": "infra"}))]})
        ));
        assert!(
            has(json!({"parents": [parent("us", json!({"name": "local"}))]})),
            "namespace defaults to the route's"
        );
        assert!(!has(
            json!({"parents": [parent("them", json!({"name": "gw", "namespace": "infra"}))]})
        ));
        assert!(
            !has(json!({"parents": [parent("us", json!({"name": "gw"}))]})),
            "apps/gw is not served"
        );
        assert!(!has(
            json!({"parents": [parent("us", json!({"name": "local", "kind": "Service", "group": ""}))]})
        ));
        assert!(!has(json!({"parents": []})));
        assert_eq!(
            route("r", json!({"parents": []})).resource_version(),
            Some("5")
        );
    }

    #[test]
    fn stores_differ_for_the_writer_only_when_a_gateway_route_or_policy_was_replaced() {
        let r1 = route("r1", json!({"parents": []}));
        let mut a = Store::default();
        a.http_routes
            .insert(ObjectKey::new("apps", "r1"), r1.clone());
        let mut b = a.clone();
        b.services.clear();
        b.endpoint_slices.clear();
        assert!(same_objects(&a, &b), "a clone shares every object");
        b.secrets
            .insert(ObjectKey::new("apps", "s"), Arc::default());
        assert!(same_objects(&a, &b), "the writer reads no Secret");
        // Our own status coming back replaces the route with an equal-looking one.
        b.http_routes.insert(
            ObjectKey::new("apps", "r1"),
            Arc::new(HttpRoute::clone(&r1)),
        );
        assert!(!same_objects(&a, &b));
        let mut c = a.clone();
        c.http_routes
            .insert(ObjectKey::new("apps", "r2"), r1.clone());
        assert!(!same_objects(&a, &c), "a route was added");
        let mut d = a.clone();
        d.gateways
            .insert(ObjectKey::new("infra", "gw"), Arc::default());
        assert!(!same_objects(&a, &d), "a Gateway was added");
    }
}
