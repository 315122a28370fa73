//! ListenerSet changes as reconcile triggers: a ListenerSet adds listeners to the Gateway its
//! `parentRef` names, so a change re-renders that Gateway's fleet (its Service and container
//! ports), dedicated or shared. The ListenerSet CRD may not be installed: the watch then says so
//! once and keeps retrying, so a CRD installed later is picked up.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use gantry_crds::gateway::listenersets::ListenerSet;
use gantry_translate::listener_sets::parent_gateway;
use gantry_translate::store::ObjectKey;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;

use super::Context;
use super::objects::key;
use crate::infra::apply::is_not_found;

/// The Gateways ListenerSet events concern: the Gateway a ListenerSet names now and the one it
/// named before (its `parentRef` changed, or it was deleted), so both fleets are re-rendered.
#[derive(Debug, Default)]
pub struct Parents {
    /// The parent of every ListenerSet seen, as last seen.
    known: BTreeMap<ObjectKey, ObjectKey>,
    /// The parents seen during a relist in progress.
    relist: BTreeMap<ObjectKey, ObjectKey>,
}

impl Parents {
    /// The Gateways to reconcile after `event`. A completed relist concerns the parents of
    /// every ListenerSet listed and of every one known before (some may have gone while the
    /// watch was down, without a delete event).
    pub fn on(&mut self, event: &watcher::Event<ListenerSet>) -> BTreeSet<ObjectKey> {
        let mut concerned = BTreeSet::new();
        match event {
            watcher::Event::Init => self.relist.clear(),
            watcher::Event::InitApply(set) => {
                let key = key(set);
                if let Some(parent) = parent_gateway(&key, set) {
                    self.relist.insert(key, parent);
                }
            }
            watcher::Event::InitDone => {
                let listed = std::mem::take(&mut self.relist);
                concerned.extend(self.known.values().cloned());
                concerned.extend(listed.values().cloned());
                self.known = listed;
            }
            watcher::Event::Apply(set) => {
                let key = key(set);
                let before = match parent_gateway(&key, set) {
                    Some(parent) => {
                        concerned.insert(parent.clone());
                        self.known.insert(key, parent)
                    }
                    None => self.known.remove(&key),
                };
                concerned.extend(before);
            }
            watcher::Event::Delete(set) => {
                let key = key(set);
                concerned.extend(parent_gateway(&key, set));
                concerned.extend(self.known.remove(&key));
            }
        }
        concerned
    }
}

/// The Gateways (namespace and name) to reconcile as ListenerSets change, from a watch in the
/// operator's scope.
pub fn parent_changes(ctx: Arc<Context>) -> impl Stream<Item = ObjectKey> + Send + 'static {
    let api: Api<ListenerSet> = match ctx.namespace() {
        Some(ns) => Api::namespaced(ctx.client.clone(), ns),
        None => Api::all(ctx.client.clone()),
    };
    let mut parents = Parents::default();
    optional_events(api, "ListenerSet", ctx)
        .flat_map(move |event| futures::stream::iter(parents.on(&event)))
}

/// The events of a watch of an optional kind. While the API server does not serve the kind
/// (`404`: the CRD is not installed) that is said once ([`Context::not_served`]); the watcher
/// retries with backoff meanwhile, as it does after any other error, which is logged.
pub fn optional_events<K>(
    api: Api<K>,
    kind: &'static str,
    ctx: Arc<Context>,
) -> impl Stream<Item = watcher::Event<K>> + Send + 'static
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    watcher(api, watcher::Config::default())
        .default_backoff()
        .filter_map(move |event| {
            let event = match event {
                Ok(event) => Some(event),
                Err(watcher::Error::InitialListFailed(e)) if is_not_found(&e) => {
                    ctx.not_served(kind);
                    None
                }
                Err(error) => {
                    tracing::warn!(kind, %error, "watch failed; retrying");
                    None
                }
            };
            futures::future::ready(event)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn set(namespace: &str, name: &str, parent: serde_json::Value) -> ListenerSet {
        serde_json::from_value(json!({
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "ListenerSet",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"parentRef": parent, "listeners": [{"name": "l", "port": 9443, "protocol": "HTTP"}]},
        }))
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn keys(items: &[(&str, &str)]) -> BTreeSet<ObjectKey> {
        items
            .iter()
            .map(|(ns, n)| ObjectKey::new(*ns, *n))
            .collect()
    }

    #[test]
    fn a_change_concerns_the_gateway_named_now_and_the_one_named_before() {
        let mut parents = Parents::default();
        let to_a = set("apps", "ls", json!({"name": "a"}));
        assert_eq!(
            parents.on(&watcher::Event::Apply(to_a.clone())),
            keys(&[("apps", "a")])
        );
        assert_eq!(
            parents.on(&watcher::Event::Apply(to_a)),
            keys(&[("apps", "a")])
        );
        let to_b = set("apps", "ls", json!({"name": "b", "namespace": "infra"}));
        assert_eq!(
            parents.on(&watcher::Event::Apply(to_b.clone())),
            keys(&[("apps", "a"), ("infra", "b")]),
            "the parentRef moved: the Gateway it left loses the ports"
        );
        let not_a_gateway = set("apps", "ls", json!({"name": "x", "kind": "Other"}));
        assert_eq!(
            parents.on(&watcher::Event::Apply(not_a_gateway)),
            keys(&[("infra", "b")])
        );
        assert_eq!(
            parents.on(&watcher::Event::Delete(to_b)),
            keys(&[("infra", "b")])
        );
    }

    #[test]
    fn a_relist_concerns_the_parents_listed_and_those_of_sets_gone_meanwhile() {
        let mut parents = Parents::default();
        parents.on(&watcher::Event::Apply(set(
            "apps",
            "gone",
            json!({"name": "a"}),
        )));
        assert!(parents.on(&watcher::Event::Init).is_empty());
        let kept = set("apps", "kept", json!({"name": "b"}));
        assert!(parents.on(&watcher::Event::InitApply(kept)).is_empty());
        assert_eq!(
            parents.on(&watcher::Event::InitDone),
            keys(&[("apps", "a"), ("apps", "b")])
        );
        let gone = set("apps", "gone", json!({"name": "x", "kind": "Other"}));
        assert!(
            parents.on(&watcher::Event::Apply(gone)).is_empty(),
            "forgotten at the relist: no Gateway named before"
        );
        let moved = set("apps", "kept", json!({"name": "c"}));
        assert_eq!(
            parents.on(&watcher::Event::Apply(moved)),
            keys(&[("apps", "b"), ("apps", "c")])
        );
    }
}
