//! Kinds served at more than one version across Gateway API releases: the watch reads the
//! newest version the API server serves.
//!
//! TCPRoute and UDPRoute are served at `v1` from Gateway API v1.6 (standard channel, where
//! `v1alpha2` has `served: false`) and at `v1alpha2` before. The typed objects are the same at
//! both versions, so a wrapper type that names `v1` reads them into the store's `v1alpha2`
//! type. Which version to watch is found when the watch starts, by listing one object at each
//! version from the newest ([`gantry_translate::features::OPTIONAL_KINDS`]); a kind served at
//! none is watched at its newest version, which reports it missing once and picks it up when
//! its CRD is installed.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use ::kube::api::ListParams;
use ::kube::{Api, Client, Resource};
use gantry_crds::gateway::experimental::tcproutes::TcpRoute;
use gantry_crds::gateway::experimental::udproutes::UdpRoute;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::watcher;
use serde::Deserialize;
use tokio::sync::mpsc;

use super::kind_watch::{self, Change, WatchSpec};
use super::kinds::{Watched, namespaced_key};
use crate::kubernetes::metrics::KubeMetrics;
use gantry_translate::store::{ObjectKey, Store};

/// A route kind read at `v1` into the store's type of another version.
macro_rules! at_v1 {
    ($name:ident, $inner:ty, $field:ident) => {
        #[doc = concat!("`", stringify!($inner), "` read at `gateway.networking.k8s.io/v1`.")]
        #[derive(Clone, Debug, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub $inner);

        impl Resource for $name {
            type DynamicType = ();
            type Scope = k8s_openapi::NamespaceResourceScope;

            fn kind(dt: &()) -> Cow<'_, str> {
                <$inner>::kind(dt)
            }
            fn group(dt: &()) -> Cow<'_, str> {
                <$inner>::group(dt)
            }
            fn version(_: &()) -> Cow<'_, str> {
                Cow::Borrowed("v1")
            }
            fn api_version(_: &()) -> Cow<'_, str> {
                Cow::Borrowed("gateway.networking.k8s.io/v1")
            }
            fn plural(dt: &()) -> Cow<'_, str> {
                <$inner>::plural(dt)
            }
            fn meta(&self) -> &ObjectMeta {
                &self.0.metadata
            }
            fn meta_mut(&mut self) -> &mut ObjectMeta {
                &mut self.0.metadata
            }
        }

        impl Watched for $name {
            type Key = ObjectKey;
            type Stored = $inner;
            fn key(&self) -> ObjectKey {
                namespaced_key(&self.0.metadata)
            }
            fn into_stored(self) -> $inner {
                self.0
            }
            fn slot(store: &mut Store) -> &mut BTreeMap<ObjectKey, Arc<$inner>> {
                &mut store.$field
            }
            fn in_namespace(key: &ObjectKey, namespace: &str) -> bool {
                key.namespace == namespace
            }
        }
    };
}

at_v1!(TcpRouteV1, TcpRoute, tcp_routes);
at_v1!(UdpRouteV1, UdpRoute, udp_routes);

/// Where a versioned watch looks: every namespace, or one.
#[derive(Clone, Debug)]
pub enum Place {
    All,
    Namespace(String),
}

impl Place {
    fn api<K>(&self, client: &Client) -> Api<K>
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
    {
        match self {
            Place::All => Api::all(client.clone()),
            Place::Namespace(ns) => Api::namespaced(client.clone(), ns),
        }
    }

    fn namespace(&self) -> Option<String> {
        match self {
            Place::All => None,
            Place::Namespace(ns) => Some(ns.clone()),
        }
    }
}

/// Whether the API server serves `K`'s version: a list of at most one object answers (any
/// answer but `404` counts: the watch reports other errors itself).
async fn served<K>(api: &Api<K>) -> bool
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    !matches!(
        api.list(&ListParams::default().limit(1)).await,
        Err(::kube::Error::Api(status)) if status.code == 404
    )
}

/// Watches `V1` where `v1` is served, else `Old` (the type's own version).
async fn newest<V1, Old>(
    client: Client,
    place: Place,
    name: String,
    changes: mpsc::UnboundedSender<Change>,
    metrics: KubeMetrics,
) where
    V1: Watched + Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    Old: Watched<Key = ObjectKey, Stored = <V1 as Watched>::Stored>
        + Resource<Scope = k8s_openapi::NamespaceResourceScope>,
{
    let v1: Api<V1> = place.api(&client);
    let old: Api<Old> = place.api(&client);
    // Neither served: watch v1, the version a CRD installed later will serve.
    let use_v1 = served(&v1).await || !served(&old).await;
    let (config, namespace) = (watcher::Config::default(), place.namespace());
    if use_v1 {
        tracing::info!(watch = %name, version = "v1", "watching");
        let spec = WatchSpec {
            name,
            api: v1,
            namespace,
            config,
            filter: None,
            forbidden_is_empty: false,
        };
        kind_watch::run(spec, changes, metrics).await;
    } else {
        tracing::info!(watch = %name, version = %Old::version(&()), "v1 not served; watching an older version");
        let spec = WatchSpec {
            name,
            api: old,
            namespace,
            config,
            filter: None,
            forbidden_is_empty: false,
        };
        kind_watch::run(spec, changes, metrics).await;
    }
}

/// The TCPRoute watch, at the newest version served.
pub async fn tcp_routes(
    client: Client,
    place: Place,
    changes: mpsc::UnboundedSender<Change>,
    metrics: KubeMetrics,
) {
    newest::<TcpRouteV1, TcpRoute>(client, place, "TCPRoute".to_owned(), changes, metrics).await;
}

/// The UDPRoute watch, at the newest version served.
pub async fn udp_routes(
    client: Client,
    place: Place,
    changes: mpsc::UnboundedSender<Change>,
    metrics: KubeMetrics,
) {
    newest::<UdpRouteV1, UdpRoute>(client, place, "UDPRoute".to_owned(), changes, metrics).await;
}
