//! The live routes and policies as the writer reads them from the store: their version,
//! whether they carry an entry of ours, and which of them changed between two stores. Typed,
//! so that checking an unchanged object serializes nothing.

use std::collections::BTreeMap;
use std::sync::Arc;

use gantry_crds::backend_config::BackendConfigPolicy;
use gantry_crds::gateway::backendtlspolicies::BackendTlsPolicy;
use gantry_crds::gateway::experimental::tcproutes::TcpRoute;
use gantry_crds::gateway::experimental::udproutes::UdpRoute;
use gantry_crds::gateway::experimental::xbackendtrafficpolicies::XBackendTrafficPolicy;
use gantry_crds::gateway::grpcroutes::GrpcRoute;
use gantry_crds::gateway::httproutes::HttpRoute;
use gantry_crds::gateway::tlsroutes::TlsRoute;
use gantry_crds::{RateLimitPolicy, SecurityPolicy};
use serde_json::Value;

use super::entries::{Kind, Served, is_served_gateway};
use gantry_translate::store::{ObjectKey, Store};

/// A route or policy in the store.
pub(super) trait LiveObject: Sync {
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
    XBackendTrafficPolicy => ancestors.ancestor_ref,
    BackendConfigPolicy => ancestors.ancestor_ref,
    SecurityPolicy => ancestors.ancestor_ref,
    RateLimitPolicy => ancestors.ancestor_ref,
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
        Kind::XBackendTrafficPolicy => each(&store.backend_traffic_policies, &mut visit),
        Kind::BackendConfigPolicy => each(&store.backend_config_policies, &mut visit),
        Kind::SecurityPolicy => each(&store.security_policies, &mut visit),
        Kind::RateLimitPolicy => each(&store.rate_limit_policies, &mut visit),
    }
}

/// Every route and policy that `store` added or replaced since `previous` (`Some`), and every
/// one it no longer has (`None`), kind by kind in key order. Sources keep the `Arc` of an
/// object no event replaced, so an unchanged object costs a pointer comparison; a status
/// written back, even our own, counts as a change.
pub(super) fn changes<'s>(
    previous: &'s Store,
    store: &'s Store,
) -> Vec<(Kind, &'s ObjectKey, Option<&'s dyn LiveObject>)> {
    fn diff<'s, T: LiveObject + 's>(
        kind: Kind,
        before: &'s BTreeMap<ObjectKey, Arc<T>>,
        after: &'s BTreeMap<ObjectKey, Arc<T>>,
        out: &mut Vec<(Kind, &'s ObjectKey, Option<&'s dyn LiveObject>)>,
    ) {
        let mut old = before.iter().peekable();
        for (key, object) in after {
            while let Some((gone, _)) = old.next_if(|(k, _)| *k < key) {
                out.push((kind, gone, None));
            }
            let same = old
                .next_if(|(k, _)| *k == key)
                .is_some_and(|(_, o)| Arc::ptr_eq(o, object));
            if !same {
                out.push((kind, key, Some(&**object as &dyn LiveObject)));
            }
        }
        out.extend(old.map(|(gone, _)| (kind, gone, None)));
    }
    let mut out = Vec::new();
    for kind in Kind::ALL {
        match kind {
            Kind::HttpRoute => diff(kind, &previous.http_routes, &store.http_routes, &mut out),
            Kind::GrpcRoute => diff(kind, &previous.grpc_routes, &store.grpc_routes, &mut out),
            Kind::TlsRoute => diff(kind, &previous.tls_routes, &store.tls_routes, &mut out),
            Kind::TcpRoute => diff(kind, &previous.tcp_routes, &store.tcp_routes, &mut out),
            Kind::UdpRoute => diff(kind, &previous.udp_routes, &store.udp_routes, &mut out),
            Kind::BackendTlsPolicy => diff(
                kind,
                &previous.backend_tls_policies,
                &store.backend_tls_policies,
                &mut out,
            ),
            Kind::XBackendTrafficPolicy => diff(
                kind,
                &previous.backend_traffic_policies,
                &store.backend_traffic_policies,
                &mut out,
            ),
            Kind::BackendConfigPolicy => diff(
                kind,
                &previous.backend_config_policies,
                &store.backend_config_policies,
                &mut out,
            ),
            Kind::SecurityPolicy => diff(
                kind,
                &previous.security_policies,
                &store.security_policies,
                &mut out,
            ),
            Kind::RateLimitPolicy => diff(
                kind,
                &previous.rate_limit_policies,
                &store.rate_limit_policies,
                &mut out,
            ),
        }
    }
    out
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
    fn changes_are_the_routes_and_policies_added_replaced_or_removed() {
        let key = |name: &str| ObjectKey::new("apps", name);
        let mut before = Store::default();
        for name in ["a", "b", "c"] {
            before
                .http_routes
                .insert(key(name), route(name, json!({"parents": []})));
        }
        let mut after = before.clone();
        after.services.clear();
        after.secrets.insert(key("s"), Arc::default());
        assert!(
            changes(&before, &after).is_empty(),
            "only what the writer does not read"
        );

        // Our own status coming back replaces a route with an equal-looking one.
        after.http_routes.insert(
            key("b"),
            Arc::new(HttpRoute::clone(&before.http_routes[&key("b")])),
        );
        after.http_routes.remove(&key("a"));
        after
            .http_routes
            .insert(key("d"), route("d", json!({"parents": []})));
        after.backend_tls_policies.remove(&key("none"));
        let seen: Vec<(Kind, &str, bool)> = changes(&before, &after)
            .into_iter()
            .map(|(kind, key, object)| (kind, key.name.as_str(), object.is_some()))
            .collect();
        assert_eq!(
            seen,
            [
                (Kind::HttpRoute, "a", false),
                (Kind::HttpRoute, "b", true),
                (Kind::HttpRoute, "d", true),
            ]
        );
        let empty = Store::default();
        let seen: Vec<(&str, bool)> = changes(&after, &empty)
            .into_iter()
            .map(|(_, key, object)| (key.name.as_str(), object.is_some()))
            .collect();
        assert_eq!(seen, [("b", false), ("c", false), ("d", false)]);
    }
}
