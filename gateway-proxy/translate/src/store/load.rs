//! Loads parsed objects into a [`Store`], refusing duplicates and naming both places.

use std::collections::hash_map::{DefaultHasher, Entry, HashMap};
use std::collections::{BTreeMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use gantry_crds::backend_config::BackendConfigPolicy;
use gantry_crds::gateway::backendtlspolicies::BackendTlsPolicy;
use gantry_crds::gateway::experimental::tcproutes::TcpRoute;
use gantry_crds::gateway::experimental::udproutes::UdpRoute;
use gantry_crds::gateway::experimental::xbackendtrafficpolicies::XBackendTrafficPolicy;
use gantry_crds::gateway::gateways::Gateway;
use gantry_crds::gateway::grpcroutes::GrpcRoute;
use gantry_crds::gateway::httproutes::HttpRoute;
use gantry_crds::gateway::listenersets::ListenerSet;
use gantry_crds::gateway::referencegrants::ReferenceGrant;
use gantry_crds::gateway::tlsroutes::TlsRoute;
use gantry_crds::params::GatewayParameters;
use gantry_crds::{Consumer, HttpComposition, HttpTransform, RateLimitPolicy, SecurityPolicy};
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;

use super::yaml::{CrdValidation, Object, ParseIssue, Parsed, parse_documents_with};
use crate::store::{DEFAULT_NAMESPACE, ObjectKey, Store};

/// Why a bundle of objects could not be loaded into a [`Store`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Parse(#[from] ParseIssue),
    #[error(
        "{kind} {key} is defined twice, at {first} and at {second}; delete or rename one of them"
    )]
    Duplicate {
        kind: &'static str,
        key: String,
        first: String,
        second: String,
    },
}

/// Parses every `(origin, text)` pair and loads the objects into a [`Store`]. Warnings are
/// returned with the store; any error fails the load and all errors are reported.
pub fn load_store<O, T>(
    sources: impl IntoIterator<Item = (O, T)>,
) -> Result<(Store, Vec<ParseIssue>), Vec<LoadError>>
where
    O: AsRef<str>,
    T: AsRef<str>,
{
    ParseCache::default().load(sources)
}

/// Parsed files kept between loads, so that a change re-parses only the files whose text
/// changed; loading the rest is a copy of already parsed objects.
#[derive(Debug, Default)]
pub struct ParseCache {
    files: HashMap<String, ParsedFile>,
    validation: CrdValidation,
}

#[derive(Debug)]
struct ParsedFile {
    text_hash: u64,
    objects: Vec<Parsed>,
    issues: Vec<ParseIssue>,
}

impl ParseCache {
    /// A cache that checks only the types, not the CRDs' validation ([`CrdValidation::Off`]).
    pub fn without_crd_validation() -> Self {
        Self {
            files: HashMap::new(),
            validation: CrdValidation::Off,
        }
    }

    /// Like [`load_store`], reusing the parse of every file whose text is unchanged since the
    /// last call. Files not given this time are forgotten.
    pub fn load<O, T>(
        &mut self,
        sources: impl IntoIterator<Item = (O, T)>,
    ) -> Result<(Store, Vec<ParseIssue>), Vec<LoadError>>
    where
        O: AsRef<str>,
        T: AsRef<str>,
    {
        let mut loader = Loader::default();
        let mut warnings = Vec::new();
        let mut errors = Vec::new();
        let mut seen = HashSet::new();
        for (origin, text) in sources {
            let (origin, text) = (origin.as_ref(), text.as_ref());
            let text_hash = hash(text);
            let file = match self.files.entry(origin.to_owned()) {
                Entry::Occupied(e) if e.get().text_hash == text_hash => e.into_mut(),
                entry => {
                    let (objects, issues) = parse_documents_with(text, origin, self.validation);
                    let parsed = ParsedFile {
                        text_hash,
                        objects,
                        issues,
                    };
                    match entry {
                        Entry::Occupied(mut e) => {
                            e.insert(parsed);
                            e.into_mut()
                        }
                        Entry::Vacant(e) => e.insert(parsed),
                    }
                }
            };
            seen.insert(origin.to_owned());
            for issue in &file.issues {
                if issue.is_warning() {
                    warnings.push(issue.clone());
                } else {
                    errors.push(LoadError::Parse(issue.clone()));
                }
            }
            for parsed in &file.objects {
                if let Err(e) = loader.insert(parsed.clone()) {
                    errors.push(e);
                }
            }
        }
        self.files.retain(|origin, _| seen.contains(origin));
        if errors.is_empty() {
            Ok((loader.store, warnings))
        } else {
            Err(errors)
        }
    }
}

fn hash(text: &str) -> u64 {
    let mut h = DefaultHasher::new();
    text.hash(&mut h);
    h.finish()
}

/// Inserts parsed objects into a store, remembering where each came from to report
/// duplicates.
#[derive(Default)]
struct Loader {
    store: Store,
    origins: HashMap<(&'static str, String), String>,
}

impl Loader {
    fn insert(&mut self, parsed: Parsed) -> Result<(), LoadError> {
        let Parsed { object, origin } = parsed;
        let kind = object.kind();
        let key = object.key_string();
        match self.origins.entry((kind, key.clone())) {
            Entry::Occupied(first) => {
                return Err(LoadError::Duplicate {
                    kind,
                    key,
                    first: first.get().clone(),
                    second: origin,
                });
            }
            Entry::Vacant(slot) => {
                slot.insert(origin);
            }
        }
        let s = &mut self.store;
        match object {
            Object::Namespace(o) => {
                s.namespaces.insert(name_of(&o.metadata), o);
            }
            Object::GatewayClass(o) => {
                s.gateway_classes.insert(name_of(&o.metadata), o);
            }
            Object::Gateway(o) => insert_namespaced(&mut s.gateways, o),
            Object::ListenerSet(o) => insert_namespaced(&mut s.listener_sets, o),
            Object::GatewayParameters(o) => insert_namespaced(&mut s.gateway_parameters, o),
            Object::HttpTransform(o) => insert_namespaced(&mut s.http_transforms, o),
            Object::HttpComposition(o) => insert_namespaced(&mut s.http_compositions, o),
            Object::HttpRoute(o) => insert_namespaced(&mut s.http_routes, o),
            Object::GrpcRoute(o) => insert_namespaced(&mut s.grpc_routes, o),
            Object::TlsRoute(o) => insert_namespaced(&mut s.tls_routes, o),
            Object::TcpRoute(o) => insert_namespaced(&mut s.tcp_routes, o),
            Object::UdpRoute(o) => insert_namespaced(&mut s.udp_routes, o),
            Object::ReferenceGrant(o) => {
                insert_namespaced(&mut s.reference_grants, o);
            }
            Object::BackendTlsPolicy(o) => {
                insert_namespaced(&mut s.backend_tls_policies, o);
            }
            Object::XBackendTrafficPolicy(o) => {
                insert_namespaced(&mut s.backend_traffic_policies, o);
            }
            Object::SecurityPolicy(o) => insert_namespaced(&mut s.security_policies, o),
            Object::RateLimitPolicy(o) => insert_namespaced(&mut s.rate_limit_policies, o),
            Object::Consumer(o) => insert_namespaced(&mut s.consumers, o),
            Object::BackendConfigPolicy(o) => {
                insert_namespaced(&mut s.backend_config_policies, o);
            }
            Object::Service(o) => insert_namespaced(&mut s.services, o),
            Object::EndpointSlice(o) => {
                insert_namespaced(&mut s.endpoint_slices, o);
            }
            Object::Secret(o) => insert_namespaced(&mut s.secrets, o),
            Object::ConfigMap(o) => insert_namespaced(&mut s.config_maps, o),
        }
        Ok(())
    }
}

fn name_of(meta: &ObjectMeta) -> String {
    meta.name.clone().unwrap_or_default()
}

/// Inserts a namespaced object, filling in the default namespace as Kubernetes would (copying
/// the object only when it has none).
fn insert_namespaced<T: Clone + WithMeta>(
    map: &mut BTreeMap<ObjectKey, Arc<T>>,
    mut object: Arc<T>,
) {
    if object.meta().namespace.is_none() {
        Arc::make_mut(&mut object).meta_mut().namespace = Some(DEFAULT_NAMESPACE.to_owned());
    }
    let m = object.meta();
    let key = ObjectKey::new(m.namespace.clone().unwrap_or_default(), name_of(m));
    map.insert(key, object);
}

/// Access to `metadata` of every namespaced kind the store holds.
trait WithMeta {
    fn meta(&self) -> &ObjectMeta;
    fn meta_mut(&mut self) -> &mut ObjectMeta;
}

macro_rules! with_meta {
    ($($t:ty),* $(,)?) => {$(
        impl WithMeta for $t {
            fn meta(&self) -> &ObjectMeta {
                &self.metadata
            }
            fn meta_mut(&mut self) -> &mut ObjectMeta {
                &mut self.metadata
            }
        }
    )*};
}

with_meta!(
    Gateway,
    HttpRoute,
    GrpcRoute,
    TlsRoute,
    TcpRoute,
    UdpRoute,
    ReferenceGrant,
    BackendTlsPolicy,
    XBackendTrafficPolicy,
    BackendConfigPolicy,
    SecurityPolicy,
    RateLimitPolicy,
    Consumer,
    ListenerSet,
    GatewayParameters,
    HttpTransform,
    HttpComposition,
    Service,
    EndpointSlice,
    Secret,
    ConfigMap,
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_name_both_places() {
        let doc = "apiVersion: v1\nkind: Service\nmetadata:\n  name: s\n";
        let errors = load_store([("a.yaml", doc), ("b.yaml", doc)]).expect_err("duplicate");
        assert_eq!(errors.len(), 1);
        let message = errors[0].to_string();
        assert!(
            message.contains("a.yaml:1") && message.contains("b.yaml:1"),
            "{message}"
        );
    }

    #[test]
    fn the_cache_reparses_only_changed_files_and_forgets_removed_ones() {
        let svc =
            |name: &str| format!("apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n");
        let mut cache = ParseCache::default();
        let (store, _) = cache
            .load([("a.yaml", svc("a")), ("b.yaml", svc("b"))])
            .expect("loads");
        assert_eq!(store.services.len(), 2);
        let (store, _) = cache
            .load([("a.yaml", svc("a")), ("b.yaml", svc("c"))])
            .expect("loads");
        let names: Vec<&str> = store.services.keys().map(|k| k.name.as_str()).collect();
        assert_eq!(names, ["a", "c"]);
        let (store, _) = cache.load([("a.yaml", svc("a"))]).expect("loads");
        assert_eq!(store.services.len(), 1);
        assert_eq!(cache.files.len(), 1);
        // A broken file is an error every time it is loaded, cached or not.
        assert!(cache.load([("a.yaml", "kind: [".to_owned())]).is_err());
        assert!(cache.load([("a.yaml", "kind: [".to_owned())]).is_err());
    }

    #[test]
    fn objects_without_namespace_are_in_default() {
        let doc = "apiVersion: v1\nkind: Service\nmetadata:\n  name: s\n";
        let (store, warnings) = load_store([("a.yaml", doc)]).expect("loads");
        assert!(warnings.is_empty());
        assert!(store.services.contains_key(&ObjectKey::new("default", "s")));
    }
}
