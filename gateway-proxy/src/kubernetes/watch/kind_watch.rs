//! One watch per kind: list, then watch, turning events into [`Change`]s for the store.
//!
//! A relist (first start, `410 Gone`, a watch that cannot resume) is buffered and replaces the
//! kind's map in one change when it completes, so the store never goes empty meanwhile.

use std::collections::BTreeMap;
use std::sync::Arc;

use ::kube::runtime::WatchStreamExt;
use ::kube::runtime::watcher::{self, Event};
use ::kube::{Api, Resource};
use futures::StreamExt;
use tokio::sync::mpsc;

use super::kinds::Watched;
use crate::kubernetes::metrics::KubeMetrics;
use gantry_translate::store::Store;

/// Decides whether an object belongs in the store (e.g. only Gateways of our class).
pub type Filter<K> = Arc<dyn Fn(&K) -> bool + Send + Sync>;

/// An edit of the store from one kind's watch.
pub struct Change {
    /// The watch it comes from ([`WatchSpec::name`]).
    pub watch: String,
    /// True when this change completes a (re)list: the kind is in sync.
    pub synced: bool,
    pub apply: Box<dyn FnOnce(&mut Store) + Send>,
}

impl std::fmt::Debug for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Change")
            .field("watch", &self.watch)
            .field("synced", &self.synced)
            .finish_non_exhaustive()
    }
}

/// What to watch for one kind.
pub struct WatchSpec<K: Watched> {
    /// Names the watch in changes and logs: the kind, plus the namespace when scoped.
    pub name: String,
    pub api: Api<K>,
    /// When set, the watch covers only this namespace: a relist replaces only its objects.
    pub namespace: Option<String>,
    pub config: watcher::Config,
    pub filter: Option<Filter<K>>,
    /// A first list the API server forbids (`403`) counts as an empty list, retried with
    /// backoff: for the per-namespace Secret and ConfigMap watches, whose RoleBindings the
    /// operator creates as references appear, so one namespace not granted yet never holds
    /// back the rest. Cluster-wide watches keep waiting: without them nothing can be served.
    pub forbidden_is_empty: bool,
}

/// Runs the watch until the receiver of `changes` is dropped. Errors are logged, counted and
/// retried with kube's default backoff; the last good objects stay in the store meanwhile.
#[tracing::instrument(skip_all, fields(watch = %spec.name))]
pub async fn run<K: Watched>(
    spec: WatchSpec<K>,
    changes: mpsc::UnboundedSender<Change>,
    metrics: KubeMetrics,
) {
    let WatchSpec {
        name,
        api,
        namespace,
        config,
        filter,
        forbidden_is_empty,
    } = spec;
    let name = name.as_str();
    // Per-namespace watches ("Secret in ns") count under their kind.
    let kind = name.split(" in ").next().unwrap_or(name);
    let keep = move |o: &K| filter.as_ref().is_none_or(|f| f(o));
    let mut events = watcher::watcher(api, config).default_backoff().boxed();
    let mut relist: Option<BTreeMap<K::Key, Arc<K::Stored>>> = None;
    // Whether the kind has been listed (or found missing) once.
    let mut listed = false;
    while let Some(event) = events.next().await {
        let change = match event {
            Ok(Event::Init) => {
                relist = Some(BTreeMap::new());
                continue;
            }
            Ok(Event::InitApply(object)) => {
                if keep(&object) {
                    let object = trimmed(object);
                    relist
                        .get_or_insert_with(BTreeMap::new)
                        .insert(object.key(), Arc::new(object.into_stored()));
                }
                continue;
            }
            Ok(Event::InitDone) => {
                listed = true;
                metrics.relisted(kind);
                let objects = relist.take().unwrap_or_default();
                tracing::debug!(watch = name, count = objects.len(), "listed");
                relisted::<K>(name, namespace.clone(), objects)
            }
            Ok(Event::Apply(object)) => {
                let key = object.key();
                if keep(&object) {
                    let object = trimmed(object);
                    Change {
                        watch: name.to_owned(),
                        synced: false,
                        apply: Box::new(move |store: &mut Store| {
                            K::slot(store).insert(key, Arc::new(object.into_stored()));
                        }),
                    }
                } else {
                    // It may have stopped matching (a Gateway moved to another class).
                    removal::<K>(name, key)
                }
            }
            Ok(Event::Delete(object)) => removal::<K>(name, object.key()),
            Err(watcher::Error::InitialListFailed(::kube::Error::Api(status)))
                if status.code == 404 && !listed =>
            {
                // The kind is not served (an optional CRD, e.g. an experimental route kind, is
                // not installed): count it as listed and empty so the proxy can become ready,
                // and keep retrying so it is picked up once installed.
                listed = true;
                metrics.watch_failed(kind);
                let disabled: Vec<&str> = gantry_translate::features::FEATURES
                    .iter()
                    .filter(|f| f.kinds.contains(&kind))
                    .map(|f| f.name)
                    .collect();
                tracing::warn!(
                    watch = name,
                    features = %disabled.join(", "),
                    "not served by the API server (CRD not installed?); treated as empty until it is, and these features do not work meanwhile"
                );
                relisted::<K>(name, namespace.clone(), BTreeMap::new())
            }
            Err(watcher::Error::InitialListFailed(::kube::Error::Api(status)))
                if status.code == 404 =>
            {
                // Still not served: said once above; keep trying without repeating it.
                metrics.watch_failed(kind);
                tracing::debug!(watch = name, "still not served");
                continue;
            }
            Err(watcher::Error::InitialListFailed(::kube::Error::Api(status)))
                if status.code == 403 && forbidden_is_empty && !listed =>
            {
                listed = true;
                metrics.watch_failed(kind);
                tracing::warn!(
                    watch = name,
                    "reading is forbidden (the operator has not granted it yet?); treated as empty until it is allowed"
                );
                relisted::<K>(name, namespace.clone(), BTreeMap::new())
            }
            Err(error) => {
                metrics.watch_failed(kind);
                tracing::warn!(watch = name, %error, "watch failed; retrying, the last good objects keep serving");
                continue;
            }
        };
        if changes.send(change).is_err() {
            return;
        }
    }
}

/// A complete list of the kind (within `namespace`, when the watch is scoped to one): it
/// replaces what the store held for that scope in one step.
fn relisted<K: Watched>(
    watch: &str,
    namespace: Option<String>,
    objects: BTreeMap<K::Key, Arc<K::Stored>>,
) -> Change {
    Change {
        watch: watch.to_owned(),
        synced: true,
        apply: Box::new(move |store: &mut Store| {
            let slot = K::slot(store);
            match &namespace {
                Some(ns) => {
                    slot.retain(|key, _| !K::in_namespace(key, ns));
                    slot.extend(objects);
                }
                None => *slot = objects,
            }
        }),
    }
}

fn removal<K: Watched>(watch: &str, key: K::Key) -> Change {
    Change {
        watch: watch.to_owned(),
        synced: false,
        apply: Box::new(move |store: &mut Store| {
            K::slot(store).remove(&key);
        }),
    }
}

/// The annotation in which a client-side `kubectl apply` keeps the whole object it applied.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Drops what nothing reads and what can dwarf the object: `managedFields`, and the copy of
/// the whole object that `kubectl apply` keeps in an annotation (every rule of a route again;
/// a TLS Secret's certificate and key again). Other annotations stay (some are read: an ACME
/// issuer's, a Gateway's ACME directory).
fn trimmed<K: Resource>(mut object: K) -> K {
    let meta = object.meta_mut();
    meta.managed_fields = None;
    if let Some(annotations) = &mut meta.annotations
        && annotations.remove(LAST_APPLIED).is_some()
        && annotations.is_empty()
    {
        meta.annotations = None;
    }
    object
}

#[cfg(test)]
mod tests {
    use gantry_crds::gateway::httproutes::HttpRoute;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;

    use super::*;

    fn route(annotations: &[(&str, &str)]) -> HttpRoute {
        let mut route: HttpRoute = serde_json::from_value(serde_json::json!({
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": {"name": "r", "namespace": "default"},
            "spec": {"hostnames": ["a.example"]},
        }))
        .expect("route");
        route.metadata.managed_fields = Some(vec![ManagedFieldsEntry::default()]);
        route.metadata.annotations = (!annotations.is_empty()).then(|| {
            annotations
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        });
        route
    }

    #[test]
    fn what_nothing_reads_is_dropped_and_the_rest_kept() {
        let applied = serde_json::to_string(&route(&[])).expect("json");
        let kept = trimmed(route(&[
            (LAST_APPLIED, &applied),
            ("example.com/team", "a"),
        ]));
        assert_eq!(kept.metadata.managed_fields, None);
        assert_eq!(
            kept.metadata.annotations,
            Some([("example.com/team".to_owned(), "a".to_owned())].into())
        );
        let bare = trimmed(route(&[(LAST_APPLIED, &applied)]));
        assert_eq!(bare.metadata.annotations, None);
        assert_eq!(bare.spec, route(&[]).spec);
    }
}
