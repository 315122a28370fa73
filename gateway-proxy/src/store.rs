//! The object store: every Kubernetes object the translator may read, keyed and ordered.
//!
//! Both sources (files and, later, the Kubernetes watch) fill a [`Store`]; the translator only
//! ever reads one. Maps are `BTreeMap`s so iteration order, and therefore translation, is
//! deterministic.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use gantry_crds::gateway::backendtlspolicies::BackendTlsPolicy;
use gantry_crds::gateway::experimental::tcproutes::TcpRoute;
use gantry_crds::gateway::experimental::udproutes::UdpRoute;
use gantry_crds::gateway::gatewayclasses::GatewayClass;
use gantry_crds::gateway::gateways::Gateway;
use gantry_crds::gateway::grpcroutes::GrpcRoute;
use gantry_crds::gateway::httproutes::HttpRoute;
use gantry_crds::gateway::referencegrants::ReferenceGrant;
use gantry_crds::gateway::tlsroutes::TlsRoute;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde::{Deserialize, Serialize};

/// Namespace used for objects that do not name one, as in Kubernetes.
pub const DEFAULT_NAMESPACE: &str = "default";

/// `namespace/name` of a namespaced object.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
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
    pub http_routes: BTreeMap<ObjectKey, Arc<HttpRoute>>,
    pub grpc_routes: BTreeMap<ObjectKey, Arc<GrpcRoute>>,
    pub tls_routes: BTreeMap<ObjectKey, Arc<TlsRoute>>,
    pub tcp_routes: BTreeMap<ObjectKey, Arc<TcpRoute>>,
    pub udp_routes: BTreeMap<ObjectKey, Arc<UdpRoute>>,
    pub reference_grants: BTreeMap<ObjectKey, Arc<ReferenceGrant>>,
    pub backend_tls_policies: BTreeMap<ObjectKey, Arc<BackendTlsPolicy>>,
    pub services: BTreeMap<ObjectKey, Arc<Service>>,
    pub endpoint_slices: BTreeMap<ObjectKey, Arc<EndpointSlice>>,
    pub secrets: BTreeMap<ObjectKey, Arc<Secret>>,
    pub config_maps: BTreeMap<ObjectKey, Arc<ConfigMap>>,
}

impl Store {
    /// EndpointSlices that belong to a Service (label `kubernetes.io/service-name`).
    pub fn endpoint_slices_for<'a>(
        &'a self,
        service: &'a ObjectKey,
    ) -> impl Iterator<Item = &'a EndpointSlice> + 'a {
        self.endpoint_slices
            .range(ObjectKey::new(service.namespace.clone(), String::new())..)
            .take_while(move |(k, _)| k.namespace == service.namespace)
            .filter(move |(_, slice)| {
                slice
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(SERVICE_NAME_LABEL))
                    .is_some_and(|svc| *svc == service.name)
            })
            .map(|(_, slice)| slice.as_ref())
    }
}

/// The EndpointSlice label naming its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
