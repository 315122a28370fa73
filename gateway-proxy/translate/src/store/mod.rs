//! The object store: every Kubernetes object the translator may read, keyed and ordered.
//!
//! Both sources (files and, later, the Kubernetes watch) fill a [`Store`]; the translator only
//! ever reads one. Maps are `BTreeMap`s so iteration order, and therefore translation, is
//! deterministic.

mod acme;
pub mod field_path;
pub mod load;
pub mod schema;
mod secret;
mod slot;
pub mod yaml;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, OnceLock};

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
use gantry_crds::params::GatewayParameters;
use gantry_crds::{Consumer, HttpComposition, HttpTransform, RateLimitPolicy, SecurityPolicy};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};

pub use self::acme::AcmeCertificate;

/// Namespace used for objects that do not name one, as in Kubernetes.
pub const DEFAULT_NAMESPACE: &str = "default";

/// `namespace/name` of a namespaced object.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ObjectKey {
    pub namespace: String,
    pub name: String,
}

impl ObjectKey {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// Parses `NS/NAME`; a bare `NAME` is in the default namespace.
    pub fn parse(s: &str) -> Option<Self> {
        match s.split_once('/') {
            Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
                Some(Self::new(ns, name))
            }
            None if !s.is_empty() => Some(Self::new(DEFAULT_NAMESPACE, s)),
            _ => None,
        }
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Every object the translator may read. Cluster-scoped kinds are keyed by name. Objects are
/// shared (`Arc`), so building a new store from mostly unchanged objects copies pointers.
#[derive(Clone, Debug, Default)]
pub struct Store {
    pub namespaces: BTreeMap<String, Arc<Namespace>>,
    pub gateway_classes: BTreeMap<String, Arc<GatewayClass>>,
    pub gateways: BTreeMap<ObjectKey, Arc<Gateway>>,
    pub listener_sets: BTreeMap<ObjectKey, Arc<ListenerSet>>,
    /// Gantry's GatewayParameters, which a Gateway's `spec.infrastructure.parametersRef`
    /// names (standalone mode; in Kubernetes mode the operator checks them).
    pub gateway_parameters: BTreeMap<ObjectKey, Arc<GatewayParameters>>,
    /// Gantry's ExtensionRef filters: HTTPTransform and HTTPComposition.
    pub http_transforms: BTreeMap<ObjectKey, Arc<HttpTransform>>,
    pub http_compositions: BTreeMap<ObjectKey, Arc<HttpComposition>>,
    pub http_routes: BTreeMap<ObjectKey, Arc<HttpRoute>>,
    pub grpc_routes: BTreeMap<ObjectKey, Arc<GrpcRoute>>,
    pub tls_routes: BTreeMap<ObjectKey, Arc<TlsRoute>>,
    pub tcp_routes: BTreeMap<ObjectKey, Arc<TcpRoute>>,
    pub udp_routes: BTreeMap<ObjectKey, Arc<UdpRoute>>,
    pub reference_grants: BTreeMap<ObjectKey, Arc<ReferenceGrant>>,
    pub backend_tls_policies: BTreeMap<ObjectKey, Arc<BackendTlsPolicy>>,
    pub backend_traffic_policies: BTreeMap<ObjectKey, Arc<XBackendTrafficPolicy>>,
    /// Gantry's BackendConfigPolicies: load balancing, health checks, circuit breaking and
    /// connection settings of the clusters of the Services they target.
    pub backend_config_policies: BTreeMap<ObjectKey, Arc<BackendConfigPolicy>>,
    /// Gantry's SecurityPolicies (Gateways, listeners, routes, route rules) and the Consumers
    /// they select.
    pub security_policies: BTreeMap<ObjectKey, Arc<SecurityPolicy>>,
    /// Gantry's RateLimitPolicies (Gateways, listeners, routes, route rules).
    pub rate_limit_policies: BTreeMap<ObjectKey, Arc<RateLimitPolicy>>,
    pub consumers: BTreeMap<ObjectKey, Arc<Consumer>>,
    pub services: BTreeMap<ObjectKey, Arc<Service>>,
    pub endpoint_slices: BTreeMap<ObjectKey, Arc<EndpointSlice>>,
    pub secrets: BTreeMap<ObjectKey, Arc<Secret>>,
    pub config_maps: BTreeMap<ObjectKey, Arc<ConfigMap>>,
    /// Listener certificate Secrets that do not exist yet because the proxy's ACME client is
    /// obtaining them (never read from a source: the ACME manager adds them), so a listener
    /// says why it waits. An issued certificate is an ordinary entry of `secrets`.
    pub acme_certificates: BTreeMap<ObjectKey, AcmeCertificate>,
    /// Built lazily by [`Store::endpoint_slices_for`]; never set it.
    pub slices_by_service: SliceIndex,
}

/// What changed between two stores, as far as translation is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Difference {
    /// Nothing the translator reads: only statuses, resourceVersions or managedFields (our own
    /// status writes come back this way). The configuration in use stays.
    Nothing,
    /// Only EndpointSlices: routes and statuses stay, clusters' endpoints change.
    EndpointSlices,
    /// Anything else: translate again.
    Objects,
}

impl Store {
    /// How `next` differs from `self`. Objects are compared by pointer first (sources keep the
    /// `Arc` of an unchanged object), so the cost is a walk over the keys plus a comparison of
    /// the few objects that were replaced.
    pub fn difference(&self, next: &Store) -> Difference {
        // Every kind but EndpointSlices: the routes, what routes and Gateways read, and the
        // policies applied to clusters once routes are translated.
        let others_same = self.same_routes(next)
            && self.same_rule_inputs(next)
            && self.same_namespaces(next)
            && self.same_cluster_policies(next);
        if !others_same {
            Difference::Objects
        } else if same(&self.endpoint_slices, &next.endpoint_slices) {
            Difference::Nothing
        } else {
            Difference::EndpointSlices
        }
    }

    /// True when `other` holds the same objects as `self` (statuses and versions aside) in
    /// every kind a route's rules read when translated besides the route itself: Services,
    /// ReferenceGrants, BackendTLSPolicies and the ConfigMaps and Secrets they reference,
    /// HTTPTransforms and HTTPCompositions (ExtensionRef filters),
    /// Gateways and GatewayClasses (a Gateway's backend client certificate), and the ACME
    /// certificates listeners wait for (what their parents say). See
    /// `translate::route_cache`.
    pub fn same_rule_inputs(&self, other: &Store) -> bool {
        same(&self.services, &other.services)
            && same(&self.reference_grants, &other.reference_grants)
            && same(&self.backend_tls_policies, &other.backend_tls_policies)
            && same(
                &self.backend_traffic_policies,
                &other.backend_traffic_policies,
            )
            && same(&self.config_maps, &other.config_maps)
            && same(&self.secrets, &other.secrets)
            && same(&self.gateways, &other.gateways)
            && same(&self.listener_sets, &other.listener_sets)
            && same(&self.gateway_parameters, &other.gateway_parameters)
            && same(&self.http_transforms, &other.http_transforms)
            && same(&self.http_compositions, &other.http_compositions)
            && same(&self.gateway_classes, &other.gateway_classes)
            && self.acme_certificates == other.acme_certificates
    }

    /// True when `other` holds the very same objects as `self` (the same `Arc`s, statuses
    /// included): nothing at all changed, not even a status a writer reads. Sources keep the
    /// `Arc` of an unchanged object, so a source may skip publishing such a store.
    pub fn identical(&self, other: &Store) -> bool {
        fn ptr<K: Ord, T>(a: &BTreeMap<K, Arc<T>>, b: &BTreeMap<K, Arc<T>>) -> bool {
            a.len() == b.len()
                && a.iter()
                    .zip(b)
                    .all(|((ka, va), (kb, vb))| ka == kb && Arc::ptr_eq(va, vb))
        }
        ptr(&self.namespaces, &other.namespaces)
            && ptr(&self.gateway_classes, &other.gateway_classes)
            && ptr(&self.gateways, &other.gateways)
            && ptr(&self.listener_sets, &other.listener_sets)
            && ptr(&self.gateway_parameters, &other.gateway_parameters)
            && ptr(&self.http_transforms, &other.http_transforms)
            && ptr(&self.http_compositions, &other.http_compositions)
            && ptr(&self.http_routes, &other.http_routes)
            && ptr(&self.grpc_routes, &other.grpc_routes)
            && ptr(&self.tls_routes, &other.tls_routes)
            && ptr(&self.tcp_routes, &other.tcp_routes)
            && ptr(&self.udp_routes, &other.udp_routes)
            && ptr(&self.reference_grants, &other.reference_grants)
            && ptr(&self.backend_tls_policies, &other.backend_tls_policies)
            && ptr(
                &self.backend_traffic_policies,
                &other.backend_traffic_policies,
            )
            && ptr(
                &self.backend_config_policies,
                &other.backend_config_policies,
            )
            && ptr(&self.security_policies, &other.security_policies)
            && ptr(&self.rate_limit_policies, &other.rate_limit_policies)
            && ptr(&self.consumers, &other.consumers)
            && ptr(&self.services, &other.services)
            && ptr(&self.endpoint_slices, &other.endpoint_slices)
            && ptr(&self.secrets, &other.secrets)
            && ptr(&self.config_maps, &other.config_maps)
            && self.acme_certificates == other.acme_certificates
    }

    /// True when `other` holds the same routes of every kind as `self`.
    fn same_routes(&self, other: &Store) -> bool {
        same(&self.http_routes, &other.http_routes)
            && same(&self.grpc_routes, &other.grpc_routes)
            && same(&self.tls_routes, &other.tls_routes)
            && same(&self.tcp_routes, &other.tcp_routes)
            && same(&self.udp_routes, &other.udp_routes)
    }

    /// True when `other` holds the same BackendConfigPolicies as `self`. Route rules never read
    /// them (they are applied to the clusters in use after routes are translated), so they are
    /// not rule inputs: a change to them keeps the route cache.
    pub fn same_cluster_policies(&self, other: &Store) -> bool {
        same(
            &self.backend_config_policies,
            &other.backend_config_policies,
        ) && same(&self.security_policies, &other.security_policies)
            && same(&self.rate_limit_policies, &other.rate_limit_policies)
            && same(&self.consumers, &other.consumers)
    }

    /// True when `other` holds the same Namespaces as `self` (labels select routes).
    pub fn same_namespaces(&self, other: &Store) -> bool {
        same(&self.namespaces, &other.namespaces)
    }

    /// EndpointSlices that belong to a Service (label `kubernetes.io/service-name`). The
    /// first call builds an index of the whole store, so resolving every Service costs one
    /// pass over the slices rather than one per Service.
    pub fn endpoint_slices_for<'a>(
        &'a self,
        service: &ObjectKey,
    ) -> impl Iterator<Item = &'a EndpointSlice> + 'a {
        let index = self.slices_by_service.0.get_or_init(|| {
            let mut index: HashMap<ObjectKey, Vec<ObjectKey>> = HashMap::new();
            for (key, slice) in &self.endpoint_slices {
                if let Some(svc) = slice
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(SERVICE_NAME_LABEL))
                {
                    index
                        .entry(ObjectKey::new(key.namespace.clone(), svc.clone()))
                        .or_default()
                        .push(key.clone());
                }
            }
            index
        });
        index
            .get(service)
            .into_iter()
            .flatten()
            .filter_map(|key| self.endpoint_slices.get(key))
            .map(AsRef::as_ref)
    }
}

/// Same keys, and each object the same `Arc` or equal apart from what the translator never
/// reads ([`Translated`]).
fn same<K: Ord, T: Translated>(a: &BTreeMap<K, Arc<T>>, b: &BTreeMap<K, Arc<T>>) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|((ka, va), (kb, vb))| ka == kb && (Arc::ptr_eq(va, vb) || va.same_input(vb)))
}

/// An object as the translator reads it: everything but its status, resourceVersion and
/// managedFields.
pub trait Translated: Clone + PartialEq {
    /// Equal as the translator reads them.
    fn same_input(&self, other: &Self) -> bool;
}

macro_rules! translated {
    (with status: $($ty:ty),*; without: $($plain:ty),*) => {
        $(impl Translated for $ty {
            fn same_input(&self, other: &Self) -> bool {
                // Compared in place: a status write makes every route a new object that the
                // translator's route cache compares with the one it translated.
                // Every field named, so that a new one cannot be forgotten here.
                let Self {
                    metadata,
                    spec,
                    status: _,
                } = self;
                *spec == other.spec && same_meta(metadata, &other.metadata)
            }
        })*
        $(impl Translated for $plain {
            fn same_input(&self, other: &Self) -> bool {
                let (mut a, mut b) = (self.clone(), other.clone());
                forget_versions(&mut a.metadata);
                forget_versions(&mut b.metadata);
                a == b
            }
        })*
    };
}

translated!(
    with status: Namespace, GatewayClass, Gateway, HttpRoute, GrpcRoute, TlsRoute, TcpRoute,
        UdpRoute, BackendTlsPolicy, XBackendTrafficPolicy, BackendConfigPolicy, ListenerSet,
        Service, SecurityPolicy, RateLimitPolicy;
    without: ReferenceGrant, EndpointSlice, Secret, ConfigMap, GatewayParameters,
        HttpTransform, HttpComposition, Consumer
);

/// Equal but for `resourceVersion` and `managedFields` (what [`forget_versions`] clears).
fn same_meta(a: &ObjectMeta, b: &ObjectMeta) -> bool {
    let ObjectMeta {
        annotations,
        creation_timestamp,
        deletion_grace_period_seconds,
        deletion_timestamp,
        finalizers,
        generate_name,
        generation,
        labels,
        managed_fields: _,
        name,
        namespace,
        owner_references,
        resource_version: _,
        self_link,
        uid,
    } = a;
    *name == b.name
        && *namespace == b.namespace
        && *generation == b.generation
        && *uid == b.uid
        && *labels == b.labels
        && *annotations == b.annotations
        && *creation_timestamp == b.creation_timestamp
        && *deletion_grace_period_seconds == b.deletion_grace_period_seconds
        && *deletion_timestamp == b.deletion_timestamp
        && *finalizers == b.finalizers
        && *generate_name == b.generate_name
        && *owner_references == b.owner_references
        && *self_link == b.self_link
}

fn forget_versions(meta: &mut ObjectMeta) {
    meta.resource_version = None;
    meta.managed_fields = None;
}

/// EndpointSlice keys by Service, built on first use. A copy of the store starts without it
/// (the copy may be changed), so it can never be stale.
#[derive(Debug, Default)]
pub struct SliceIndex(OnceLock<HashMap<ObjectKey, Vec<ObjectKey>>>);

impl Clone for SliceIndex {
    fn clone(&self) -> Self {
        Self::default()
    }
}

/// The EndpointSlice label naming its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

#[cfg(test)]
mod tests {
    use super::*;

    fn slice(namespace: &str, name: &str, service: &str) -> Arc<EndpointSlice> {
        let mut s = EndpointSlice::default();
        s.metadata.namespace = Some(namespace.to_owned());
        s.metadata.name = Some(name.to_owned());
        s.metadata.labels = Some([(SERVICE_NAME_LABEL.to_owned(), service.to_owned())].into());
        Arc::new(s)
    }

    #[test]
    fn endpoint_slices_are_found_by_service_label_and_namespace() {
        let mut store = Store::default();
        for (ns, name, svc) in [
            ("a", "web-1", "web"),
            ("a", "web-2", "web"),
            ("a", "other-1", "other"),
            ("b", "web-1", "web"),
            ("a", "unlabelled", ""),
        ] {
            store
                .endpoint_slices
                .insert(ObjectKey::new(ns, name), slice(ns, name, svc));
        }
        let names = |store: &Store, ns: &str, svc: &str| -> Vec<String> {
            store
                .endpoint_slices_for(&ObjectKey::new(ns, svc))
                .filter_map(|s| s.metadata.name.clone())
                .collect()
        };
        assert_eq!(names(&store, "a", "web"), ["web-1", "web-2"]);
        assert_eq!(names(&store, "b", "web"), ["web-1"]);
        assert!(names(&store, "c", "web").is_empty());

        // A copy starts without the index, so changes to it are seen.
        let mut copy = store.clone();
        copy.endpoint_slices
            .insert(ObjectKey::new("a", "web-3"), slice("a", "web-3", "web"));
        assert_eq!(names(&copy, "a", "web"), ["web-1", "web-2", "web-3"]);
    }

    #[test]
    fn a_difference_is_classified_by_what_the_translator_reads() {
        use gantry_crds::gateway::httproutes::{
            HttpRouteStatus, HttpRouteStatusParents, HttpRouteStatusParentsParentRef,
        };

        let mut route = HttpRoute::default();
        route.metadata.name = Some("web".into());
        route.metadata.resource_version = Some("1".into());
        let key = ObjectKey::new("default", "web");
        let mut store = Store::default();
        store
            .http_routes
            .insert(key.clone(), Arc::new(route.clone()));
        store.endpoint_slices.insert(
            ObjectKey::new("default", "web-1"),
            slice("default", "web-1", "web"),
        );
        assert_eq!(store.difference(&store.clone()), Difference::Nothing);

        // A status written (and read back with a new resourceVersion): nothing to translate.
        let mut written = route.clone();
        written.metadata.resource_version = Some("2".into());
        written.status = Some(HttpRouteStatus {
            parents: vec![HttpRouteStatusParents {
                controller_name: "gantry.dev/gateway-controller".into(),
                parent_ref: HttpRouteStatusParentsParentRef {
                    name: "gw".into(),
                    ..Default::default()
                },
                conditions: Vec::new(),
            }],
        });
        let mut next = store.clone();
        next.http_routes.insert(key.clone(), Arc::new(written));
        assert_eq!(store.difference(&next), Difference::Nothing);

        // Endpoints only.
        let mut next = store.clone();
        next.endpoint_slices.insert(
            ObjectKey::new("default", "web-2"),
            slice("default", "web-2", "web"),
        );
        assert_eq!(store.difference(&next), Difference::EndpointSlices);

        // A spec change, or a new generation.
        let mut edited = route;
        edited.metadata.generation = Some(2);
        let mut next = store.clone();
        next.http_routes.insert(key, Arc::new(edited));
        assert_eq!(store.difference(&next), Difference::Objects);
    }

    /// `same_input` of an object with a status, compared in place, agrees with comparing
    /// copies whose status, resourceVersion and managedFields are cleared, over edits of
    /// each part.
    #[test]
    fn same_input_ignores_status_and_versions_and_nothing_else() {
        use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec, ServiceStatus};
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;
        fn by_copies(a: &Service, b: &Service) -> bool {
            let (mut a, mut b) = (a.clone(), b.clone());
            a.status = None;
            b.status = None;
            forget_versions(&mut a.metadata);
            forget_versions(&mut b.metadata);
            a == b
        }
        let mut base = Service::default();
        base.metadata.name = Some("s".into());
        base.metadata.namespace = Some("default".into());
        base.metadata.generation = Some(1);
        base.spec = Some(ServiceSpec {
            ports: Some(vec![ServicePort {
                port: 80,
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        });
        type Edit = Box<dyn Fn(&mut Service)>;
        let edits: Vec<(&str, bool, Edit)> = vec![
            (
                "status",
                true,
                Box::new(|s| s.status = Some(ServiceStatus::default())),
            ),
            (
                "resourceVersion",
                true,
                Box::new(|s| s.metadata.resource_version = Some("9".into())),
            ),
            (
                "managedFields",
                true,
                Box::new(|s| s.metadata.managed_fields = Some(vec![ManagedFieldsEntry::default()])),
            ),
            ("spec", false, Box::new(|s| s.spec = None)),
            (
                "generation",
                false,
                Box::new(|s| s.metadata.generation = Some(2)),
            ),
            (
                "labels",
                false,
                Box::new(|s| s.metadata.labels = Some([("a".into(), "b".into())].into())),
            ),
            (
                "annotations",
                false,
                Box::new(|s| s.metadata.annotations = Some([("a".into(), "b".into())].into())),
            ),
            (
                "name",
                false,
                Box::new(|s| s.metadata.name = Some("t".into())),
            ),
            (
                "uid",
                false,
                Box::new(|s| s.metadata.uid = Some("u".into())),
            ),
        ];
        for (what, same, edit) in &edits {
            let mut edited = base.clone();
            edit(&mut edited);
            assert_eq!(base.same_input(&edited), *same, "{what}");
            assert_eq!(edited.same_input(&base), *same, "{what}");
            assert_eq!(
                base.same_input(&edited),
                by_copies(&base, &edited),
                "{what}"
            );
        }
    }
}
