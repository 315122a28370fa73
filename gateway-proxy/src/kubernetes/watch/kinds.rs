//! The kinds the Kubernetes source watches, and where each lives in the [`Store`].

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;

use ::kube::Resource;
use gantry_crds::backend_config::BackendConfigPolicy;
use gantry_crds::gateway::backendtlspolicies::BackendTlsPolicy;
use gantry_crds::gateway::experimental::tcproutes::TcpRoute;
use gantry_crds::gateway::experimental::udproutes::UdpRoute;
use gantry_crds::gateway::experimental::xbackendtrafficpolicies::XBackendTrafficPolicy;
use gantry_crds::gateway::gatewayclasses::GatewayClass;
use gantry_crds::gateway::gateways::Gateway;
use gantry_crds::gateway::grpcroutes::GrpcRoute;
use gantry_crds::gateway::httproutes::HttpRoute;
use gantry_crds::gateway::listenersets::ListenerSet;
use gantry_crds::gateway::referencegrants::ReferenceGrant;
use gantry_crds::gateway::tlsroutes::TlsRoute;
use gantry_crds::{Consumer, RateLimitPolicy, SecurityPolicy};
use gantry_crds::{HttpComposition, HttpTransform};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde::de::DeserializeOwned;

use gantry_translate::store::{DEFAULT_NAMESPACE, ObjectKey, Store};

/// A kind the source watches: how to key it and which [`Store`] map holds it.
pub trait Watched:
    Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static
{
    type Key: Ord + Clone + Debug + Send + Sync + 'static;
    /// What the store holds: the type itself, or for a kind read at another version than its
    /// type's (`versions`), the type the store keeps.
    type Stored: Send + Sync + 'static;
    /// The object's key in its map.
    fn key(&self) -> Self::Key;
    /// The object as the store holds it.
    fn into_stored(self) -> Self::Stored;
    /// The map of the store that holds this kind.
    fn slot(store: &mut Store) -> &mut BTreeMap<Self::Key, Arc<Self::Stored>>;
    /// Whether a key is in a namespace (never, for cluster-scoped kinds).
    fn in_namespace(key: &Self::Key, namespace: &str) -> bool;
}

pub(super) fn namespaced_key(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> ObjectKey {
    ObjectKey::new(
        meta.namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE),
        meta.name.as_deref().unwrap_or_default(),
    )
}

macro_rules! cluster_scoped {
    ($($ty:ty => $field:ident),* $(,)?) => {$(
        impl Watched for $ty {
            type Key = String;
            type Stored = Self;
            fn key(&self) -> String {
                self.metadata.name.clone().unwrap_or_default()
            }
            fn into_stored(self) -> Self {
                self
            }
            fn slot(store: &mut Store) -> &mut BTreeMap<String, Arc<Self>> {
                &mut store.$field
            }
            fn in_namespace(_: &String, _: &str) -> bool {
                false
            }
        }
    )*};
}

macro_rules! namespaced {
    ($($ty:ty => $field:ident),* $(,)?) => {$(
        impl Watched for $ty {
            type Key = ObjectKey;
            type Stored = Self;
            fn key(&self) -> ObjectKey {
                namespaced_key(&self.metadata)
            }
            fn into_stored(self) -> Self {
                self
            }
            fn slot(store: &mut Store) -> &mut BTreeMap<ObjectKey, Arc<Self>> {
                &mut store.$field
            }
            fn in_namespace(key: &ObjectKey, namespace: &str) -> bool {
                key.namespace == namespace
            }
        }
    )*};
}

cluster_scoped! {
    Namespace => namespaces,
    GatewayClass => gateway_classes,
}

namespaced! {
    Gateway => gateways,
    ListenerSet => listener_sets,
    HttpRoute => http_routes,
    GrpcRoute => grpc_routes,
    TlsRoute => tls_routes,
    TcpRoute => tcp_routes,
    UdpRoute => udp_routes,
    ReferenceGrant => reference_grants,
    BackendTlsPolicy => backend_tls_policies,
    XBackendTrafficPolicy => backend_traffic_policies,
    HttpTransform => http_transforms,
    HttpComposition => http_compositions,
    BackendConfigPolicy => backend_config_policies,
    SecurityPolicy => security_policies,
    RateLimitPolicy => rate_limit_policies,
    Consumer => consumers,
    Service => services,
    EndpointSlice => endpoint_slices,
    Secret => secrets,
    ConfigMap => config_maps,
}
