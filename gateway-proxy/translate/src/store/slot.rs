//! Where a parsed object goes in a [`Store`]: its kind's map, and its key there (a namespaced
//! object without a namespace is in `default`, as Kubernetes would put it).

use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::yaml::Object;
use super::{DEFAULT_NAMESPACE, ObjectKey, Store};

/// Runs `$namespaced` with `$map` bound to the store's map of `$object`'s kind (borrowed
/// `mut` when the brackets say so) and `$o` to the object, or `$cluster` for the
/// cluster-scoped kinds.
macro_rules! with_slot {
    ([$($mut:tt)?] $store:expr, $object:expr, |$map:ident, $o:ident| $namespaced:expr, |$cmap:ident, $co:ident| $cluster:expr) => {
        match $object {
            Object::Namespace($co) => {
                let $cmap = &$($mut)? $store.namespaces;
                $cluster
            }
            Object::GatewayClass($co) => {
                let $cmap = &$($mut)? $store.gateway_classes;
                $cluster
            }
            Object::Gateway($o) => {
                let $map = &$($mut)? $store.gateways;
                $namespaced
            }
            Object::ListenerSet($o) => {
                let $map = &$($mut)? $store.listener_sets;
                $namespaced
            }
            Object::GatewayParameters($o) => {
                let $map = &$($mut)? $store.gateway_parameters;
                $namespaced
            }
            Object::HttpTransform($o) => {
                let $map = &$($mut)? $store.http_transforms;
                $namespaced
            }
            Object::HttpComposition($o) => {
                let $map = &$($mut)? $store.http_compositions;
                $namespaced
            }
            Object::HttpRoute($o) => {
                let $map = &$($mut)? $store.http_routes;
                $namespaced
            }
            Object::GrpcRoute($o) => {
                let $map = &$($mut)? $store.grpc_routes;
                $namespaced
            }
            Object::TlsRoute($o) => {
                let $map = &$($mut)? $store.tls_routes;
                $namespaced
            }
            Object::TcpRoute($o) => {
                let $map = &$($mut)? $store.tcp_routes;
                $namespaced
            }
            Object::UdpRoute($o) => {
                let $map = &$($mut)? $store.udp_routes;
                $namespaced
            }
            Object::ReferenceGrant($o) => {
                let $map = &$($mut)? $store.reference_grants;
                $namespaced
            }
            Object::BackendTlsPolicy($o) => {
                let $map = &$($mut)? $store.backend_tls_policies;
                $namespaced
            }
            Object::XBackendTrafficPolicy($o) => {
                let $map = &$($mut)? $store.backend_traffic_policies;
                $namespaced
            }
            Object::BackendConfigPolicy($o) => {
                let $map = &$($mut)? $store.backend_config_policies;
                $namespaced
            }
            Object::SecurityPolicy($o) => {
                let $map = &$($mut)? $store.security_policies;
                $namespaced
            }
            Object::RateLimitPolicy($o) => {
                let $map = &$($mut)? $store.rate_limit_policies;
                $namespaced
            }
            Object::Consumer($o) => {
                let $map = &$($mut)? $store.consumers;
                $namespaced
            }
            Object::Service($o) => {
                let $map = &$($mut)? $store.services;
                $namespaced
            }
            Object::EndpointSlice($o) => {
                let $map = &$($mut)? $store.endpoint_slices;
                $namespaced
            }
            Object::Secret($o) => {
                let $map = &$($mut)? $store.secrets;
                $namespaced
            }
            Object::ConfigMap($o) => {
                let $map = &$($mut)? $store.config_maps;
                $namespaced
            }
        }
    };
}

/// Puts `object` in its place, replacing what was there. A namespaced object without a
/// namespace is copied to fill it in (the parsed object stays as written).
pub(super) fn insert(store: &mut Store, object: Object) {
    with_slot!(
        [mut] store,
        object,
        |map, o| {
            let mut o = o;
            if o.metadata.namespace.is_none() {
                Arc::make_mut(&mut o).metadata.namespace = Some(DEFAULT_NAMESPACE.to_owned());
            }
            map.insert(key_of(&o.metadata), o);
        },
        |map, o| {
            map.insert(o.metadata.name.clone().unwrap_or_default(), o);
        }
    );
}

/// Whether `object`'s place is taken.
pub(super) fn is_taken(store: &Store, object: &Object) -> bool {
    with_slot!(
        [] store,
        object,
        |map, o| map.contains_key(&key_of(&o.metadata)),
        |map, o| map.contains_key(o.metadata.name.as_deref().unwrap_or_default())
    )
}

/// Empties `object`'s place.
pub(super) fn remove(store: &mut Store, object: &Object) {
    with_slot!(
        [mut] store,
        object,
        |map, o| {
            map.remove(&key_of(&o.metadata));
        },
        |map, o| {
            map.remove(o.metadata.name.as_deref().unwrap_or_default());
        }
    );
}

fn key_of(meta: &ObjectMeta) -> ObjectKey {
    ObjectKey::new(
        meta.namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE),
        meta.name.as_deref().unwrap_or_default(),
    )
}
