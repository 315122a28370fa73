//! The Kubernetes source: watches only what the served Gateways need and publishes the
//! complete object set on the same channel as the file source.
//!
//! Together with the status writer (`status::writer`) and leader election (`leader`), this is
//! one of the three places that talk to the Kubernetes API; everything downstream reads a
//! [`Store`].
//!
//! Scope of the watches:
//! - GatewayClass: only the class given by `--gateway-class`, otherwise all (there are few).
//! - Gateway: only the one given by `--gateway` (a field selector), only those of the class
//!   with `--gateway-class`, otherwise all; several `--gateway`s are filtered client-side.
//! - Routes, ReferenceGrants, BackendTLSPolicies, Namespaces (for `allowedRoutes` selectors),
//!   Services and EndpointSlices: cluster-wide, since routes may attach from any namespace a
//!   listener admits.
//! - Secrets: only `type=kubernetes.io/tls` (what listener `certificateRefs` point at), so
//!   service-account tokens, Helm releases and other credentials are never read.
//! - ConfigMaps: all but the `kube-root-ca.crt` copy present in every namespace (CA bundles
//!   of BackendTLSPolicies). Narrowing both to the referenced objects is the next step.
//!
//! Nothing is published until every watch has listed once, so `/readyz` stays false until the
//! initial sync is complete; after that, every burst of watch events becomes one update.

mod kind_watch;
mod kinds;

use std::collections::BTreeSet;
use std::sync::Arc;

use ::kube::runtime::watcher;
use ::kube::{Api, Client};
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
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use self::kind_watch::{Change, Filter, WatchSpec};
pub use self::kinds::Watched;
use crate::runtime::SourceUpdate;
use crate::store::{ObjectKey, Store};

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

/// Why the source stopped.
#[derive(Debug, thiserror::Error)]
pub enum KubeSourceError {
    #[error("every watch of the Kubernetes source stopped")]
    Stopped,
}

/// Watches the cluster and publishes every change until `updates` has no receiver.
pub async fn run(
    client: Client,
    scope: Scope,
    updates: watch::Sender<Option<SourceUpdate>>,
) -> Result<(), KubeSourceError> {
    let (changes_tx, changes) = mpsc::unbounded_channel();
    let mut watches = JoinSet::new();
    let kinds = spawn_watches(&client, &scope, &changes_tx, &mut watches);
    drop(changes_tx);
    let result = publish(kinds, changes, &updates).await;
    watches.shutdown().await;
    result
}

/// Applies changes to the store and publishes it once every kind has listed, one update per
/// burst of changes.
async fn publish(
    kinds: BTreeSet<&'static str>,
    mut changes: mpsc::UnboundedReceiver<Change>,
    updates: &watch::Sender<Option<SourceUpdate>>,
) -> Result<(), KubeSourceError> {
    let mut store = Store::default();
    let mut unsynced = kinds;
    while let Some(change) = changes.recv().await {
        apply(&mut store, &mut unsynced, change);
        while let Ok(change) = changes.try_recv() {
            apply(&mut store, &mut unsynced, change);
        }
        if updates.is_closed() {
            return Ok(());
        }
        if unsynced.is_empty() {
            updates.send_replace(Some(SourceUpdate::Objects {
                store: Arc::new(store.clone()),
                warnings: Vec::new(),
            }));
        } else {
            tracing::debug!(waiting_for = ?unsynced, "initial sync in progress");
        }
    }
    Err(KubeSourceError::Stopped)
}

fn apply(store: &mut Store, unsynced: &mut BTreeSet<&'static str>, change: Change) {
    if change.synced && unsynced.remove(change.kind) && unsynced.is_empty() {
        tracing::info!("initial sync of every watched kind complete");
    }
    (change.apply)(store);
}

/// Starts one watch per kind; returns the kinds started.
fn spawn_watches(
    client: &Client,
    scope: &Scope,
    changes: &mpsc::UnboundedSender<Change>,
    set: &mut JoinSet<()>,
) -> BTreeSet<&'static str> {
    let mut kinds = BTreeSet::new();
    let all = watcher::Config::default;
    let mut spawn = |kind: &'static str, set: &mut JoinSet<()>, task| {
        kinds.insert(kind);
        set.spawn(task);
    };

    let class_config = match scope {
        Scope::Class(name) => all().fields(&format!("metadata.name={name}")),
        _ => all(),
    };
    spawn(
        "GatewayClass",
        set,
        watch_all::<GatewayClass>(client, "GatewayClass", class_config, None, changes),
    );
    let gateway_spec = gateway_watch(client, scope);
    spawn(
        "Gateway",
        set,
        Box::pin(kind_watch::run(gateway_spec, changes.clone())),
    );
    macro_rules! cluster_wide {
        ($($ty:ty => $kind:literal),* $(,)?) => {$(
            spawn($kind, set, watch_all::<$ty>(client, $kind, all(), None, changes));
        )*};
    }
    cluster_wide! {
        Namespace => "Namespace",
        HttpRoute => "HTTPRoute",
        GrpcRoute => "GRPCRoute",
        TlsRoute => "TLSRoute",
        TcpRoute => "TCPRoute",
        UdpRoute => "UDPRoute",
        ReferenceGrant => "ReferenceGrant",
        BackendTlsPolicy => "BackendTLSPolicy",
        Service => "Service",
        EndpointSlice => "EndpointSlice",
    }
    spawn(
        "Secret",
        set,
        watch_all::<Secret>(
            client,
            "Secret",
            all().fields("type=kubernetes.io/tls"),
            None,
            changes,
        ),
    );
    spawn(
        "ConfigMap",
        set,
        watch_all::<ConfigMap>(
            client,
            "ConfigMap",
            all().fields("metadata.name!=kube-root-ca.crt"),
            None,
            changes,
        ),
    );
    kinds
}

type Task = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

fn watch_all<K: Watched>(
    client: &Client,
    kind: &'static str,
    config: watcher::Config,
    filter: Option<Filter<K>>,
    changes: &mpsc::UnboundedSender<Change>,
) -> Task {
    let spec = WatchSpec {
        kind,
        api: Api::<K>::all(client.clone()),
        config,
        filter,
    };
    Box::pin(kind_watch::run(spec, changes.clone()))
}

/// The Gateway watch for a scope: a field selector for one Gateway, a filter otherwise.
fn gateway_watch(client: &Client, scope: &Scope) -> WatchSpec<Gateway> {
    let config = watcher::Config::default();
    match scope {
        Scope::Gateways(keys) if keys.len() == 1 => WatchSpec {
            kind: "Gateway",
            api: Api::namespaced(client.clone(), &keys[0].namespace),
            config: config.fields(&format!("metadata.name={}", keys[0].name)),
            filter: None,
        },
        Scope::Gateways(keys) => {
            let keys: BTreeSet<ObjectKey> = keys.iter().cloned().collect();
            WatchSpec {
                kind: "Gateway",
                api: Api::all(client.clone()),
                config,
                filter: Some(Arc::new(move |g: &Gateway| keys.contains(&g.key()))),
            }
        }
        Scope::Class(class) => {
            let class = class.clone();
            WatchSpec {
                kind: "Gateway",
                api: Api::all(client.clone()),
                config,
                filter: Some(Arc::new(move |g: &Gateway| {
                    g.spec.gateway_class_name == class
                })),
            }
        }
        Scope::All => WatchSpec {
            kind: "Gateway",
            api: Api::all(client.clone()),
            config,
            filter: None,
        },
    }
}
