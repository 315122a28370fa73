//! Writes the proxy's statuses to the API server (Kubernetes mode).
//!
//! Besides the Kubernetes source and leader election, this is the only code that talks to the
//! API server. What it writes, and how:
//! - Gateway: the `Programmed` condition and `listeners[]`, by server-side apply with the field
//!   manager [`FIELD_MANAGER`]; `Accepted` and `addresses` belong to the operator.
//! - Routes: only `parents[]` entries of our controller for Gateways this proxy serves, by a
//!   merge patch carrying the resourceVersion it was computed from; other controllers' entries
//!   are copied back untouched, and a `409 Conflict` re-reads the route and tries again.
//!   Entries for Gateways a route no longer references are removed.
//!
//! A write happens only when the status differs from the live object, ignoring
//! `lastTransitionTime`; a condition whose status did not change keeps its time. Only the
//! leader writes ([`run`] takes a leadership signal).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use ::kube::api::{ApiResource, DynamicObject, Patch, PatchParams};
use ::kube::{Api, Client};
use futures::StreamExt;
use gantry_crds::gateway::experimental::tcproutes::TcpRoute;
use gantry_crds::gateway::experimental::udproutes::UdpRoute;
use gantry_crds::gateway::grpcroutes::GrpcRoute;
use gantry_crds::gateway::httproutes::HttpRoute;
use gantry_crds::gateway::tlsroutes::TlsRoute;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::watch;
use tracing::instrument;

use super::stamp;
use super::types::{
    Condition, GatewayStatus, ListenerStatus, ObjectStatus, RouteParentStatus, StatusBody,
};
use crate::runtime::SourceUpdate;
use crate::store::{ObjectKey, Store};
use crate::telemetry::kube::{KubeMetrics, WriteResult};

/// The field manager of everything the proxy applies.
pub const FIELD_MANAGER: &str = "gantry-proxy";
/// The Gateway condition the proxy owns.
const PROGRAMMED: &str = "Programmed";
const GATEWAY_GROUP: &str = "gateway.networking.k8s.io";
/// Attempts at a route status write that keeps conflicting.
const MAX_ATTEMPTS: usize = 5;
/// Route status writes in flight at once.
const WRITE_CONCURRENCY: usize = 16;
/// Delay before writes that failed are tried again.
const RETRY_AFTER: Duration = Duration::from_secs(2);

/// Why a status could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("writing the status of {kind} {key}: {source}")]
    Api {
        kind: String,
        key: ObjectKey,
        source: Box<::kube::Error>,
    },
    #[error(
        "the status of {kind} {key} changed under every one of {MAX_ATTEMPTS} attempts to write it"
    )]
    Conflicts { kind: String, key: ObjectKey },
}

/// A status known to be in place for one version of an object: the resourceVersion read and
/// the status wanted (without times). Until the store shows another version, the same wish is
/// neither compared nor sent again, so a lagging store causes no repeated writes and an
/// unchanged object costs one lookup.
type Settled = (String, Wish);

/// What was wished for an object, without times: a route's wish stays typed, so checking the
/// thousands of unchanged routes of a reconcile costs comparisons, not serialization.
#[derive(Clone, Debug)]
enum Wish {
    Gateway(Value),
    Route(Vec<RouteParentStatus>),
}

/// Writes statuses; remembers what is settled (see [`Settled`]).
pub struct StatusWriter {
    client: Client,
    controller_name: String,
    /// Gateways served even when the translation shows none (`--gateway`).
    configured: Vec<ObjectKey>,
    /// By kind (`Gateway` or a route kind), then object: looked up without building a key.
    settled: HashMap<&'static str, HashMap<ObjectKey, Settled>>,
    metrics: KubeMetrics,
}

/// A route status to compare with the live route and write: kind, route, the live route,
/// the desired parents. (The kind is owned: a borrowed one in the stream of write futures
/// trips the compiler's `Send` check of the spawned task.)
type Job = (String, ObjectKey, Value, Vec<RouteParentStatus>);

/// Counts of one reconcile.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Written {
    pub gateways: usize,
    pub routes: usize,
}

impl StatusWriter {
    pub fn new(client: Client, controller_name: String, configured: Vec<ObjectKey>) -> Self {
        Self {
            client,
            controller_name,
            configured,
            settled: HashMap::new(),
            metrics: KubeMetrics::default(),
        }
    }

    /// Counts every status settled in `metrics` (`gantry_kube_status_writes_total`).
    pub fn with_metrics(mut self, metrics: KubeMetrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// Brings the API server in line with `desired`, reading live statuses from `store`.
    /// Every object is attempted; the errors of those that failed are returned together.
    #[instrument(skip_all, fields(objects = desired.len()))]
    pub async fn reconcile(
        &mut self,
        store: &Store,
        desired: &[ObjectStatus],
    ) -> Result<Written, Vec<WriteError>> {
        let mut served: BTreeSet<ObjectKey> = self.configured.iter().cloned().collect();
        let mut gateways = Vec::new();
        // By route kind, then route: the desired parents (empty for a route that detached).
        let mut routes: BTreeMap<&'static str, BTreeMap<ObjectKey, &[RouteParentStatus]>> =
            BTreeMap::new();
        for object in desired {
            let key = ObjectKey::new(object.namespace.clone(), object.name.clone());
            match &object.status {
                StatusBody::Gateway(status) => {
                    served.insert(key.clone());
                    gateways.push((key, status));
                }
                StatusBody::Route(status) => {
                    if let Some(kind) = route_kind(&object.kind) {
                        routes.entry(kind).or_default().insert(key, &status.parents);
                    }
                }
                StatusBody::GatewayClass(_) => {} // the operator's
            }
        }
        // Routes that carry an entry of ours but got none this time: they detached.
        for kind in ROUTE_KINDS {
            let wanted = routes.get(kind);
            let skip = |key: &ObjectKey| wanted.is_some_and(|m| m.contains_key(key));
            let candidates = routes_with_entries_of(store, kind, &self.controller_name, skip);
            for (key, live) in candidates {
                if parents_of(&live)
                    .iter()
                    .any(|p| self.is_ours(p, &key.namespace, &served))
                {
                    routes.entry(kind).or_default().insert(key, &[]);
                }
            }
        }

        // Forget objects that are no longer ours to write.
        for (kind, settled) in &mut self.settled {
            if *kind == GATEWAY {
                settled.retain(|key, _| served.contains(key));
            } else {
                let wanted = routes.get(kind);
                settled.retain(|key, _| wanted.is_some_and(|m| m.contains_key(key)));
            }
        }

        let mut written = Written::default();
        let mut errors = Vec::new();
        for (key, status) in gateways {
            let version = store
                .gateways
                .get(&key)
                .and_then(|g| g.metadata.resource_version.as_deref());
            let wish = gateway_wish(status);
            if matches!(self.settled_wish(GATEWAY, &key, version), Some(Wish::Gateway(w)) if *w == wish)
            {
                continue;
            }
            match self.gateway(store, &key, status).await {
                Ok(true) => {
                    written.gateways += 1;
                    self.metrics.status_write("Gateway", WriteResult::written);
                }
                Ok(false) => self.metrics.status_write("Gateway", WriteResult::unchanged),
                Err(error) => {
                    self.metrics.status_write("Gateway", WriteResult::failed);
                    errors.push(error);
                }
            }
        }
        let mut jobs: Vec<Job> = Vec::new();
        for (kind, keys) in routes {
            for (key, parents) in keys {
                let version = route_version(store, kind, &key);
                if matches!(self.settled_wish(kind, &key, version), Some(Wish::Route(w)) if same_wish(w, parents))
                {
                    continue;
                }
                let Some(live) = live_route(store, kind, &key) else {
                    continue; // deleted since it was translated
                };
                jobs.push((kind.to_owned(), key, live, parents.to_vec()));
            }
        }
        // Routes are independent: write several at once (a first start may have thousands).
        let this = &*self;
        let served = &served;
        let results: Vec<_> = futures::stream::iter(jobs)
            .map(|(kind, key, live, parents): Job| async move {
                let result = this.route(&kind, &key, live, &parents, served).await;
                (kind, key, result)
            })
            .buffer_unordered(WRITE_CONCURRENCY)
            .collect()
            .await;
        for (kind, key, result) in results {
            match result {
                Ok((wrote, settled)) => {
                    written.routes += usize::from(wrote);
                    let result = if wrote {
                        WriteResult::written
                    } else {
                        WriteResult::unchanged
                    };
                    self.metrics.status_write(&kind, result);
                    if let Some(kind) = route_kind(&kind) {
                        self.settled.entry(kind).or_default().insert(key, settled);
                    }
                }
                Err(error) => {
                    self.metrics.status_write(&kind, WriteResult::failed);
                    errors.push(error);
                }
            }
        }
        if errors.is_empty() {
            Ok(written)
        } else {
            Err(errors)
        }
    }

    /// Applies `Programmed` and `listeners[]` when they differ from the live Gateway.
    #[instrument(skip(self, store, desired), fields(gateway = %key))]
    async fn gateway(
        &mut self,
        store: &Store,
        key: &ObjectKey,
        desired: &GatewayStatus,
    ) -> Result<bool, WriteError> {
        let Some(live) = store.gateways.get(key).and_then(to_value) else {
            return Ok(false);
        };
        let status = &live["status"];
        let live_conditions: Vec<Condition> = parse_list(&status["conditions"]);
        let live_programmed: Vec<Condition> = live_conditions
            .into_iter()
            .filter(|c| c.type_ == PROGRAMMED)
            .collect();
        let live_listeners: Option<Vec<ListenerStatus>> =
            serde_json::from_value(status["listeners"].clone()).ok();
        let now = stamp::now();
        let mut programmed: Vec<Condition> = desired
            .conditions
            .iter()
            .filter(|c| c.type_ == PROGRAMMED)
            .cloned()
            .collect();
        keep_times(&mut programmed, &live_programmed, &now);
        let mut listeners = desired.listeners.clone();
        for listener in &mut listeners {
            let old = live_listeners
                .iter()
                .flatten()
                .find(|l| l.name == listener.name)
                .map(|l| l.conditions.as_slice())
                .unwrap_or_default();
            keep_times(&mut listener.conditions, old, &now);
        }
        let unchanged = same_conditions(&programmed, &live_programmed)
            && live_listeners
                .as_ref()
                .is_some_and(|live| same_listeners(&listeners, live));
        let wish = Wish::Gateway(gateway_wish(desired));
        if unchanged {
            self.settle("Gateway", key, &live, wish);
            return Ok(false);
        }
        let body = json!({
            "apiVersion": format!("{GATEWAY_GROUP}/v1"),
            "kind": "Gateway",
            "metadata": { "name": key.name, "namespace": key.namespace },
            "status": { "conditions": programmed, "listeners": listeners },
        });
        let api: Api<DynamicObject> = Api::namespaced_with(
            self.client.clone(),
            &key.namespace,
            &ApiResource::erase::<gantry_crds::gateway::gateways::Gateway>(&()),
        );
        let params = PatchParams::apply(FIELD_MANAGER).force();
        api.patch_status(&key.name, &params, &Patch::Apply(&body))
            .await
            .map_err(|source| WriteError::Api {
                kind: "Gateway".into(),
                key: key.clone(),
                source: Box::new(source),
            })?;
        self.settle("Gateway", key, &live, wish);
        tracing::info!("Gateway status written");
        Ok(true)
    }

    /// Replaces our `parents[]` entries of one route with `desired`, keeping every other entry,
    /// guarded by the resourceVersion they were read at; retried on conflict.
    #[instrument(skip(self, live, desired, served), fields(route = %key))]
    async fn route(
        &self,
        kind: &str,
        key: &ObjectKey,
        mut live: Value,
        desired: &[RouteParentStatus],
        served: &BTreeSet<ObjectKey>,
    ) -> Result<(bool, Settled), WriteError> {
        let wish = Wish::Route(desired.to_vec());
        let Some(resource) = route_resource(kind) else {
            return Ok((false, settled_at(&live, wish)));
        };
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), &key.namespace, &resource);
        let api_error = |source| WriteError::Api {
            kind: kind.to_owned(),
            key: key.clone(),
            source: Box::new(source),
        };
        for attempt in 1..=MAX_ATTEMPTS {
            let (foreign, ours): (Vec<Value>, Vec<Value>) = parents_of(&live)
                .into_iter()
                .partition(|p| !self.is_ours(p, &key.namespace, served));
            let ours: Option<Vec<RouteParentStatus>> = ours
                .into_iter()
                .map(|p| serde_json::from_value(p).ok())
                .collect();
            let now = stamp::now();
            let mut next = desired.to_vec();
            for parent in &mut next {
                let old = ours
                    .iter()
                    .flatten()
                    .find(|o| o.parent_ref == parent.parent_ref)
                    .map(|o| o.conditions.as_slice())
                    .unwrap_or_default();
                keep_times(&mut parent.conditions, old, &now);
            }
            if ours.as_ref().is_some_and(|ours| same_parents(&next, ours)) {
                return Ok((false, settled_at(&live, wish)));
            }
            let resource_version = live["metadata"]["resourceVersion"].clone();
            let mut parents = foreign;
            parents.extend(next.iter().filter_map(|p| serde_json::to_value(p).ok()));
            let body = json!({
                "metadata": { "resourceVersion": resource_version },
                "status": { "parents": parents },
            });
            match api
                .patch_status(&key.name, &PatchParams::default(), &Patch::Merge(&body))
                .await
            {
                Ok(_) => {
                    tracing::info!(attempt, "route status written");
                    return Ok((true, settled_at(&live, wish)));
                }
                Err(::kube::Error::Api(status)) if status.is_conflict() => {
                    tracing::debug!(attempt, "route changed meanwhile; reading it again");
                    self.metrics
                        .status_write(kind, WriteResult::conflict_retried);
                    let fresh = api.get(&key.name).await.map_err(api_error)?;
                    live = serde_json::to_value(fresh).unwrap_or(Value::Null);
                }
                Err(error) => return Err(api_error(error)),
            }
        }
        Err(WriteError::Conflicts {
            kind: kind.to_owned(),
            key: key.clone(),
        })
    }

    /// An entry of ours: our controller, for a Gateway this proxy serves.
    fn is_ours(&self, parent: &Value, route_namespace: &str, served: &BTreeSet<ObjectKey>) -> bool {
        if parent["controllerName"].as_str() != Some(self.controller_name.as_str()) {
            return false;
        }
        let r = &parent["parentRef"];
        let group = r["group"].as_str().unwrap_or(GATEWAY_GROUP);
        let kind = r["kind"].as_str().unwrap_or("Gateway");
        let namespace = r["namespace"].as_str().unwrap_or(route_namespace);
        let name = r["name"].as_str().unwrap_or_default();
        group == GATEWAY_GROUP
            && kind == "Gateway"
            && served.contains(&ObjectKey::new(namespace, name))
    }

    /// The wish settled for this version of the object, if any.
    fn settled_wish(&self, kind: &str, key: &ObjectKey, version: Option<&str>) -> Option<&Wish> {
        let version = version?;
        self.settled
            .get(kind)?
            .get(key)
            .filter(|(v, _)| v == version)
            .map(|(_, wish)| wish)
    }

    fn settle(&mut self, kind: &'static str, key: &ObjectKey, live: &Value, wish: Wish) {
        self.settled
            .entry(kind)
            .or_default()
            .insert(key.clone(), settled_at(live, wish));
    }
}

/// Writes statuses whenever they, the live objects or leadership change, while this replica
/// leads. Returns when the runtime is gone.
pub async fn run(
    mut writer: StatusWriter,
    mut statuses: watch::Receiver<Arc<Vec<ObjectStatus>>>,
    mut objects: watch::Receiver<Option<SourceUpdate>>,
    mut leader: watch::Receiver<bool>,
) {
    // Before the first translation the statuses are empty, which would read as "every route
    // detached"; wait for a real one.
    let mut translated = !statuses.borrow().is_empty();
    let mut store: Option<Arc<Store>> = None;
    loop {
        let leading = *leader.borrow_and_update();
        if let Some(SourceUpdate::Objects { store: s, .. }) = &*objects.borrow_and_update() {
            store = Some(s.clone());
        }
        let desired = statuses.borrow_and_update().clone();
        let mut retry = false;
        if let (true, true, Some(store)) = (leading, translated, &store)
            && let Err(errors) = writer.reconcile(store, &desired).await
        {
            for error in &errors {
                tracing::warn!(%error, "status not written; retrying");
            }
            retry = true;
        }
        tokio::select! {
            changed = statuses.changed() => {
                if changed.is_err() { return; }
                translated = true;
            }
            changed = objects.changed() => if changed.is_err() { return; },
            changed = leader.changed() => if changed.is_err() { return; },
            () = tokio::time::sleep(RETRY_AFTER), if retry => {}
        }
    }
}

/// The wish settled at the live object's resourceVersion.
fn settled_at(live: &Value, wish: Wish) -> Settled {
    let version = live["metadata"]["resourceVersion"].as_str().unwrap_or("");
    (version.to_owned(), wish)
}

const GATEWAY: &str = "Gateway";
const ROUTE_KINDS: [&str; 5] = ["HTTPRoute", "GRPCRoute", "TLSRoute", "TCPRoute", "UDPRoute"];

/// The route kind named `kind`, as one of [`ROUTE_KINDS`].
fn route_kind(kind: &str) -> Option<&'static str> {
    ROUTE_KINDS.into_iter().find(|k| *k == kind)
}

fn route_resource(kind: &str) -> Option<ApiResource> {
    Some(match kind {
        "HTTPRoute" => ApiResource::erase::<HttpRoute>(&()),
        "GRPCRoute" => ApiResource::erase::<GrpcRoute>(&()),
        "TLSRoute" => ApiResource::erase::<TlsRoute>(&()),
        "TCPRoute" => ApiResource::erase::<TcpRoute>(&()),
        "UDPRoute" => ApiResource::erase::<UdpRoute>(&()),
        _ => return None,
    })
}

fn live_route(store: &Store, kind: &str, key: &ObjectKey) -> Option<Value> {
    match kind {
        "HTTPRoute" => store.http_routes.get(key).and_then(to_value),
        "GRPCRoute" => store.grpc_routes.get(key).and_then(to_value),
        "TLSRoute" => store.tls_routes.get(key).and_then(to_value),
        "TCPRoute" => store.tcp_routes.get(key).and_then(to_value),
        "UDPRoute" => store.udp_routes.get(key).and_then(to_value),
        _ => None,
    }
}

/// Routes of one kind with a `parents[]` entry of `controller`, as JSON, except those `skip`
/// names (only the rest are serialized).
fn routes_with_entries_of(
    store: &Store,
    kind: &str,
    controller: &str,
    skip: impl Fn(&ObjectKey) -> bool,
) -> Vec<(ObjectKey, Value)> {
    macro_rules! with_entries {
        ($map:expr) => {
            $map.iter()
                .filter(|(k, _)| !skip(k))
                .filter(|(_, r)| {
                    r.status
                        .as_ref()
                        .is_some_and(|s| s.parents.iter().any(|p| p.controller_name == controller))
                })
                .filter_map(|(k, r)| to_value(r).map(|v| (k.clone(), v)))
                .collect()
        };
    }
    match kind {
        "HTTPRoute" => with_entries!(store.http_routes),
        "GRPCRoute" => with_entries!(store.grpc_routes),
        "TLSRoute" => with_entries!(store.tls_routes),
        "TCPRoute" => with_entries!(store.tcp_routes),
        "UDPRoute" => with_entries!(store.udp_routes),
        _ => Vec::new(),
    }
}

/// The resourceVersion of a route in the store.
fn route_version<'s>(store: &'s Store, kind: &str, key: &ObjectKey) -> Option<&'s str> {
    macro_rules! version {
        ($map:expr) => {
            $map.get(key)
                .and_then(|r| r.metadata.resource_version.as_deref())
        };
    }
    match kind {
        "HTTPRoute" => version!(store.http_routes),
        "GRPCRoute" => version!(store.grpc_routes),
        "TLSRoute" => version!(store.tls_routes),
        "TCPRoute" => version!(store.tcp_routes),
        "UDPRoute" => version!(store.udp_routes),
        _ => None,
    }
}

/// What the proxy wants on a Gateway, without times.
fn gateway_wish(desired: &GatewayStatus) -> Value {
    let programmed: Vec<&Condition> = desired
        .conditions
        .iter()
        .filter(|c| c.type_ == PROGRAMMED)
        .collect();
    json!({ "conditions": strip(&programmed), "listeners": strip(&desired.listeners) })
}

fn to_value<T: Serialize>(object: &T) -> Option<Value> {
    serde_json::to_value(object).ok()
}

fn parents_of(route: &Value) -> Vec<Value> {
    route["status"]["parents"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Parses each element on its own, skipping those that are not in our shape.
fn parse_list<T: serde::de::DeserializeOwned>(list: &Value) -> Vec<T> {
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| serde_json::from_value(v.clone()).ok())
        .collect()
}

/// Sets each condition's time: the old time when the same type had the same status, `now`
/// otherwise.
fn keep_times(conditions: &mut [Condition], old: &[Condition], now: &str) {
    for condition in conditions {
        let previous = old
            .iter()
            .find(|o| o.type_ == condition.type_ && o.status == condition.status)
            .and_then(|o| o.last_transition_time.clone());
        condition.last_transition_time = Some(previous.unwrap_or_else(|| now.to_owned()));
    }
}

fn timeless(conditions: &[Condition]) -> Vec<Condition> {
    let mut out: Vec<Condition> = conditions
        .iter()
        .cloned()
        .map(|mut c| {
            c.last_transition_time = None;
            c
        })
        .collect();
    out.sort_by(|a, b| a.type_.cmp(&b.type_));
    out
}

fn same_conditions(a: &[Condition], b: &[Condition]) -> bool {
    timeless(a) == timeless(b)
}

fn same_listeners(a: &[ListenerStatus], b: &[ListenerStatus]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.name == y.name
                && x.attached_routes == y.attached_routes
                && x.supported_kinds == y.supported_kinds
                && same_conditions(&x.conditions, &y.conditions)
        })
}

fn same_parents(a: &[RouteParentStatus], b: &[RouteParentStatus]) -> bool {
    a.len() == b.len()
        && a.iter().all(|x| {
            b.iter().any(|y| {
                x.parent_ref == y.parent_ref
                    && x.controller_name == y.controller_name
                    && same_conditions(&x.conditions, &y.conditions)
            })
        })
}

/// The same parents with the same conditions in the same order, times aside.
fn same_wish(a: &[RouteParentStatus], b: &[RouteParentStatus]) -> bool {
    let same_condition = |x: &Condition, y: &Condition| {
        x.type_ == y.type_
            && x.status == y.status
            && x.reason == y.reason
            && x.message == y.message
            && x.observed_generation == y.observed_generation
    };
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.parent_ref == y.parent_ref
                && x.controller_name == y.controller_name
                && x.conditions.len() == y.conditions.len()
                && x.conditions
                    .iter()
                    .zip(&y.conditions)
                    .all(|(c, d)| same_condition(c, d))
        })
}

/// The status without times, to compare what was wished for.
fn strip<T: Serialize + ?Sized>(value: &T) -> Value {
    let mut v = serde_json::to_value(value).unwrap_or(Value::Null);
    remove_times(&mut v);
    v
}

fn remove_times(v: &mut Value) {
    match v {
        Value::Object(map) => {
            map.remove("lastTransitionTime");
            map.values_mut().for_each(remove_times);
        }
        Value::Array(items) => items.iter_mut().for_each(remove_times),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cond(type_: &str, ok: bool, time: Option<&str>) -> Condition {
        let mut c = Condition::new(type_, ok, "R", "m", 1);
        c.last_transition_time = time.map(str::to_owned);
        c
    }

    #[test]
    fn an_unchanged_condition_keeps_its_time_and_a_flipped_one_gets_now() {
        let old = [
            cond("Accepted", true, Some("T1")),
            cond("ResolvedRefs", true, Some("T1")),
        ];
        let mut next = [
            cond("Accepted", true, None),
            cond("ResolvedRefs", false, None),
        ];
        keep_times(&mut next, &old, "T2");
        assert_eq!(next[0].last_transition_time.as_deref(), Some("T1"));
        assert_eq!(next[1].last_transition_time.as_deref(), Some("T2"));
    }

    #[test]
    fn conditions_compare_without_times_or_order() {
        let a = [cond("A", true, Some("T1")), cond("B", true, Some("T1"))];
        let b = [cond("B", true, Some("T9")), cond("A", true, None)];
        assert!(same_conditions(&a, &b));
        assert!(!same_conditions(
            &a,
            &[cond("A", false, None), cond("B", true, None)]
        ));
    }
}
