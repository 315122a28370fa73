//! The Kubernetes source: watches only what the served Gateways need and publishes the
//! complete object set on the same channel as the file source.
//!
//! Together with the status writer and leader election beside it in `kubernetes`, this is
//! where the proxy talks to the Kubernetes API; everything downstream reads a [`Store`].
//!
//! Scope of the watches:
//! - GatewayClass: only the class given by `--gateway-class`, otherwise all (there are few).
//! - Gateway: only the one given by `--gateway` (a field selector), only those of the class
//!   with `--gateway-class`, otherwise all; several `--gateway`s are filtered client-side.
//! - Routes, ReferenceGrants, BackendTLSPolicies, XBackendTrafficPolicies,
//!   BackendConfigPolicies, HTTPTransforms and HTTPCompositions (Gantry's ExtensionRef
//!   filters), Namespaces (for `allowedRoutes` selectors), Services and EndpointSlices:
//!   cluster-wide, since routes may attach from any namespace a listener admits.
//!   A kind the API server does not serve (its CRD not installed) counts as listed and empty,
//!   and is picked up once it is installed (`kind_watch`).
//! - Secrets and ConfigMaps: only in the namespaces that a served Gateway (listener
//!   `certificateRefs`, `spec.tls`) or a BackendTLSPolicy (`caCertificateRefs`) references
//!   ([`gantry_translate::references`]: across namespaces only where a ReferenceGrant permits
//!   it, the rule the operator grants read access by), one watch per namespace, started and
//!   stopped as references come and go; Secrets further narrowed to `type=kubernetes.io/tls`,
//!   so service-account tokens and other credentials are never read. A namespace whose read
//!   the API server forbids (the operator has not granted it yet) counts as empty, so the rest
//!   serves, and is retried with backoff until the grant arrives.
//!
//! - With `--watch-namespace NS` (a namespace-scoped install, Roles only): every watch above is
//!   namespaced to NS, and nothing cluster-scoped is listed or watched. The GatewayClass comes
//!   from the command line instead (a GatewayClass of our controller put into the store), and
//!   Namespaces are not watched: `allowedRoutes` selectors then admit nothing
//!   ([`TranslateOptions::namespace_labels`]). Secrets and ConfigMaps are watched only in NS.
//!
//! - Routes: every route is watched, but only those that name a served Gateway (or a
//!   ListenerSet of one), or still carry a `parents[]` entry of ours for one, are published
//!   ([`gantry_translate::route_scope`]); a burst that changes only other routes publishes
//!   nothing, so routes of other Gateways never reach the translator or the status writer.
//! - EndpointSlices: likewise watched everywhere, but only those of namespaces a published
//!   route's backends can be in (its own, those its backendRefs, mirrors and HTTPCompositions
//!   name) are published (`route_scope::retain_served_endpoints`), so endpoint churn in other
//!   teams' namespaces costs the fleet nothing.
//!
//! Nothing is published until every watch has listed once (including those of newly
//! referenced namespaces), so `/readyz` stays false until the initial sync is complete; after
//! that, every burst of watch events becomes one update. Endpoint-only changes are translated
//! like any other (the data plane then reuses its compiled port tables).

mod kind_watch;
mod kinds;
mod versions;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use ::kube::runtime::watcher;
use ::kube::{Api, Client};
use gantry_crds::backend_config::BackendConfigPolicy;
use gantry_crds::gateway::backendtlspolicies::BackendTlsPolicy;
use gantry_crds::gateway::experimental::xbackendtrafficpolicies::XBackendTrafficPolicy;
use gantry_crds::gateway::gatewayclasses::{GatewayClass, GatewayClassSpec};
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
use tokio::sync::{mpsc, watch};
use tokio::task::{AbortHandle, JoinSet};
use tracing::instrument;

use self::kind_watch::{Change, Filter, WatchSpec};
pub use self::kinds::Watched;
use super::metrics::KubeMetrics;
use crate::source::SourceUpdate;
use crate::telemetry::Metrics;
use gantry_translate::references;
use gantry_translate::route_scope;
use gantry_translate::store::{ObjectKey, Store};
use gantry_translate::translate::TranslateOptions;

/// Which Gateways this proxy serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// `--gateway NS/NAME`, repeatable.
    Gateways(Vec<ObjectKey>),
    /// `--gateway-class NAME`: every Gateway of the class.
    Class(String),
    /// Every Gateway of every class that names our controller.
    All,
}

/// A proxy of a namespace-scoped install (`--watch-namespace`): it may read only `namespace`
/// (Roles only), and serves Gateways of `class`, which it cannot read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Namespaced {
    /// The one namespace watched.
    pub namespace: String,
    /// The GatewayClass served (`--gateway-class`), taken to name our controller.
    pub class: String,
}

impl Namespaced {
    /// The GatewayClass the store holds in place of the cluster's: ours, named `class`.
    fn gateway_class(&self, controller_name: &str) -> GatewayClass {
        GatewayClass::new(
            &self.class,
            GatewayClassSpec {
                controller_name: controller_name.to_owned(),
                description: None,
                parameters_ref: None,
            },
        )
    }
}

/// Why the source stopped.
#[derive(Debug, thiserror::Error)]
pub enum KubeSourceError {
    #[error("every watch of the Kubernetes source stopped")]
    Stopped,
}

/// Watches the cluster and publishes every change until `updates` has no receiver; counts
/// relists, watch errors and the time from a burst's first event to its update in `metrics`.
pub async fn run(
    client: Client,
    scope: Scope,
    updates: watch::Sender<Option<SourceUpdate>>,
    metrics: Arc<Metrics>,
    kube: KubeMetrics,
) -> Result<(), KubeSourceError> {
    run_in(client, scope, None, updates, metrics, kube).await
}

/// [`run`], in one namespace only when `namespaced` is given (`--watch-namespace`).
pub async fn run_in(
    client: Client,
    scope: Scope,
    namespaced: Option<Namespaced>,
    updates: watch::Sender<Option<SourceUpdate>>,
    metrics: Arc<Metrics>,
    kube: KubeMetrics,
) -> Result<(), KubeSourceError> {
    let (changes_tx, changes) = mpsc::unbounded_channel();
    let mut watches = JoinSet::new();
    let kinds = spawn_watches(
        &client,
        &scope,
        namespaced.as_ref(),
        &changes_tx,
        &kube,
        &mut watches,
    );
    let mut store = Store::default();
    if let Some(namespaced) = &namespaced {
        let controller_name = TranslateOptions::default().controller_name;
        store.gateway_classes.insert(
            namespaced.class.clone(),
            Arc::new(namespaced.gateway_class(&controller_name)),
        );
    }
    let mut source = Publisher {
        client,
        metrics,
        kube,
        changes: changes_tx,
        tasks: watches,
        namespace: namespaced.map(|n| n.namespace),
        store,
        active: kinds.iter().cloned().collect(),
        unsynced: kinds,
        scoped: BTreeMap::new(),
        controller_name: TranslateOptions::default().controller_name,
        published: None,
    };
    let result = source.run(changes, &updates).await;
    source.tasks.shutdown().await;
    result
}

/// The store being built, and the watches feeding it.
struct Publisher {
    client: Client,
    metrics: Arc<Metrics>,
    kube: KubeMetrics,
    changes: mpsc::UnboundedSender<Change>,
    /// `--watch-namespace`: Secrets and ConfigMaps are watched only there.
    namespace: Option<String>,
    /// Every watch task; dropping the set stops them all.
    tasks: JoinSet<()>,
    store: Store,
    /// Watches whose changes are applied.
    active: BTreeSet<String>,
    /// Watches that have not listed yet.
    unsynced: BTreeSet<String>,
    /// Per-namespace Secret and ConfigMap watches, by watch name.
    scoped: BTreeMap<String, AbortHandle>,
    /// Our controller name: routes are published only for Gateways of its classes.
    controller_name: String,
    /// The store published last.
    published: Option<Arc<Store>>,
}

impl Publisher {
    /// Applies changes and publishes the store once every watch has listed, one update per
    /// burst of changes.
    async fn run(
        &mut self,
        mut changes: mpsc::UnboundedReceiver<Change>,
        updates: &watch::Sender<Option<SourceUpdate>>,
    ) -> Result<(), KubeSourceError> {
        while let Some(change) = changes.recv().await {
            let first_event = std::time::Instant::now();
            self.apply(change);
            while let Ok(change) = changes.try_recv() {
                self.apply(change);
            }
            self.follow_references();
            if updates.is_closed() {
                return Ok(());
            }
            if self.unsynced.is_empty() {
                let store = route_scope::retain_served_endpoints(
                    route_scope::retain_served_routes(self.store.clone(), &self.controller_name),
                );
                if self
                    .published
                    .as_ref()
                    .is_some_and(|last| last.identical(&store))
                {
                    tracing::debug!("only objects this proxy does not serve changed");
                    continue;
                }
                let store = Arc::new(store);
                self.published = Some(store.clone());
                updates.send_replace(Some(SourceUpdate::Objects {
                    store,
                    warnings: Vec::new(),
                }));
                self.metrics.observe_stage("source", first_event.elapsed());
            } else {
                tracing::debug!(waiting_for = ?self.unsynced, "sync in progress");
            }
        }
        Err(KubeSourceError::Stopped)
    }

    fn apply(&mut self, change: Change) {
        if !self.active.contains(&change.watch) {
            return; // from a watch stopped meanwhile
        }
        if change.synced && self.unsynced.remove(&change.watch) && self.unsynced.is_empty() {
            tracing::info!("every watch is in sync");
        }
        (change.apply)(&mut self.store);
    }

    /// Starts and stops the per-namespace Secret and ConfigMap watches to match what the
    /// served objects reference.
    #[instrument(skip_all)]
    fn follow_references(&mut self) {
        let referenced = references::referenced(&self.store);
        // Only namespaced objects are watched with --watch-namespace, so only ReferenceGrants
        // of that namespace are known and nothing elsewhere is referenced; the filter makes
        // sure of it.
        let readable = |ns: &&String| self.namespace.as_ref().is_none_or(|only| only == *ns);
        let mut wanted: BTreeMap<String, (&str, String)> = BTreeMap::new();
        for ns in referenced.secrets.iter().filter(readable) {
            wanted.insert(format!("Secret in {ns}"), (SECRET, ns.clone()));
        }
        for ns in referenced.config_maps.iter().filter(readable) {
            wanted.insert(format!("ConfigMap in {ns}"), (CONFIG_MAP, ns.clone()));
        }
        let stale: Vec<String> = self
            .scoped
            .keys()
            .filter(|name| !wanted.contains_key(*name))
            .cloned()
            .collect();
        // Reap stopped watches so the set does not grow.
        while self.tasks.try_join_next().is_some() {}
        for name in stale {
            if let Some(handle) = self.scoped.remove(&name) {
                handle.abort();
            }
            self.active.remove(&name);
            self.unsynced.remove(&name);
            if let Some((kind, ns)) = name.split_once(" in ") {
                match kind {
                    SECRET => self.store.secrets.retain(|k, _| k.namespace != ns),
                    _ => self.store.config_maps.retain(|k, _| k.namespace != ns),
                }
            }
            tracing::info!(watch = %name, "no longer referenced; stopped watching");
        }
        for (name, (kind, ns)) in wanted {
            if self.scoped.contains_key(&name) {
                continue;
            }
            let task: Task = if kind == SECRET {
                Box::pin(kind_watch::run(
                    WatchSpec::<Secret> {
                        name: name.clone(),
                        api: Api::namespaced(self.client.clone(), &ns),
                        namespace: Some(ns.clone()),
                        config: watcher::Config::default().fields("type=kubernetes.io/tls"),
                        filter: None,
                        forbidden_is_empty: true,
                    },
                    self.changes.clone(),
                    self.kube.clone(),
                ))
            } else {
                Box::pin(kind_watch::run(
                    WatchSpec::<ConfigMap> {
                        name: name.clone(),
                        api: Api::namespaced(self.client.clone(), &ns),
                        namespace: Some(ns.clone()),
                        config: watcher::Config::default(),
                        filter: None,
                        forbidden_is_empty: true,
                    },
                    self.changes.clone(),
                    self.kube.clone(),
                ))
            };
            tracing::info!(watch = %name, "referenced; watching");
            self.scoped.insert(name.clone(), self.tasks.spawn(task));
            self.active.insert(name.clone());
            self.unsynced.insert(name);
        }
    }
}

const SECRET: &str = "Secret";
const CONFIG_MAP: &str = "ConfigMap";

/// Starts one cluster-wide (or scope-narrowed) watch per kind, or with `namespaced` one
/// namespaced watch per namespaced kind; returns their names.
fn spawn_watches(
    client: &Client,
    scope: &Scope,
    namespaced: Option<&Namespaced>,
    changes: &mpsc::UnboundedSender<Change>,
    metrics: &KubeMetrics,
    set: &mut JoinSet<()>,
) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let all = watcher::Config::default;
    let mut spawn = |name: &str, set: &mut JoinSet<()>, task| {
        names.insert(name.to_owned());
        set.spawn(task);
    };
    let namespace = namespaced.map(|n| n.namespace.as_str());

    if namespace.is_none() {
        let class_config = match scope {
            Scope::Class(name) => all().fields(&format!("metadata.name={name}")),
            _ => all(),
        };
        spawn(
            "GatewayClass",
            set,
            watch_all::<GatewayClass>(client, "GatewayClass", class_config, changes, metrics),
        );
        spawn(
            "Namespace",
            set,
            watch_all::<Namespace>(client, "Namespace", all(), changes, metrics),
        );
    }
    let gateway_spec = gateway_watch(client, scope, namespace);
    spawn(
        "Gateway",
        set,
        Box::pin(kind_watch::run(
            gateway_spec,
            changes.clone(),
            metrics.clone(),
        )),
    );
    macro_rules! cluster_wide {
        ($($ty:ty => $kind:literal),* $(,)?) => {$(
            let task = match namespace {
                Some(ns) => watch_in::<$ty>(client, ns, $kind, changes, metrics),
                None => watch_all::<$ty>(client, $kind, all(), changes, metrics),
            };
            spawn($kind, set, task);
        )*};
    }
    let place = match namespace {
        Some(ns) => versions::Place::Namespace(ns.to_owned()),
        None => versions::Place::All,
    };
    spawn(
        "TCPRoute",
        set,
        Box::pin(versions::tcp_routes(
            client.clone(),
            place.clone(),
            changes.clone(),
            metrics.clone(),
        )),
    );
    spawn(
        "UDPRoute",
        set,
        Box::pin(versions::udp_routes(
            client.clone(),
            place,
            changes.clone(),
            metrics.clone(),
        )),
    );
    cluster_wide! {
        HttpRoute => "HTTPRoute",
        GrpcRoute => "GRPCRoute",
        TlsRoute => "TLSRoute",
        ReferenceGrant => "ReferenceGrant",
        BackendTlsPolicy => "BackendTLSPolicy",
        XBackendTrafficPolicy => "XBackendTrafficPolicy",
        BackendConfigPolicy => "BackendConfigPolicy",
        SecurityPolicy => "SecurityPolicy",
        RateLimitPolicy => "RateLimitPolicy",
        Consumer => "Consumer",
        // Gantry's ExtensionRef filters.
        HttpTransform => "HTTPTransform",
        HttpComposition => "HTTPComposition",
        ListenerSet => "ListenerSet",
        Service => "Service",
        EndpointSlice => "EndpointSlice",
    }
    names
}

type Task = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

fn watch_all<K: Watched>(
    client: &Client,
    name: &str,
    config: watcher::Config,
    changes: &mpsc::UnboundedSender<Change>,
    metrics: &KubeMetrics,
) -> Task {
    let spec = WatchSpec {
        name: name.to_owned(),
        api: Api::<K>::all(client.clone()),
        namespace: None,
        config,
        filter: None,
        forbidden_is_empty: false,
    };
    Box::pin(kind_watch::run(spec, changes.clone(), metrics.clone()))
}

/// A watch of the kind in `namespace` only.
fn watch_in<K>(
    client: &Client,
    namespace: &str,
    name: &str,
    changes: &mpsc::UnboundedSender<Change>,
    metrics: &KubeMetrics,
) -> Task
where
    K: Watched + ::kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
{
    let spec = WatchSpec {
        name: name.to_owned(),
        api: Api::<K>::namespaced(client.clone(), namespace),
        namespace: Some(namespace.to_owned()),
        config: watcher::Config::default(),
        filter: None,
        forbidden_is_empty: false,
    };
    Box::pin(kind_watch::run(spec, changes.clone(), metrics.clone()))
}

/// The Gateway watch for a scope: a field selector for one Gateway, a filter otherwise; in
/// `namespace` only when given.
fn gateway_watch(client: &Client, scope: &Scope, namespace: Option<&str>) -> WatchSpec<Gateway> {
    let many = || match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let config = watcher::Config::default();
    let spec = |api, config, filter| WatchSpec {
        name: "Gateway".to_owned(),
        api,
        namespace: None,
        config,
        filter,
        forbidden_is_empty: false,
    };
    match scope {
        Scope::Gateways(keys) if keys.len() == 1 => spec(
            Api::namespaced(client.clone(), &keys[0].namespace),
            config.fields(&format!("metadata.name={}", keys[0].name)),
            None,
        ),
        Scope::Gateways(keys) => {
            let keys: BTreeSet<ObjectKey> = keys.iter().cloned().collect();
            let filter: Filter<Gateway> = Arc::new(move |g: &Gateway| keys.contains(&g.key()));
            spec(many(), config, Some(filter))
        }
        Scope::Class(class) => {
            let class = class.clone();
            let filter: Filter<Gateway> =
                Arc::new(move |g: &Gateway| g.spec.gateway_class_name == class);
            spec(many(), config, Some(filter))
        }
        Scope::All => spec(many(), config, None),
    }
}
