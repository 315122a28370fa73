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
//! - Policies (BackendTLSPolicy): only `ancestors[]` entries of our controller for Gateways this
//!   proxy serves, written exactly as route parents are.
//! - Gateway `ResolvedRefs` (the backend client certificate), with `Programmed`, when the
//!   translation sets it.
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
use gantry_crds::gateway::backendtlspolicies::BackendTlsPolicy;
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
    Condition, GatewayStatus, ListenerStatus, ObjectStatus, ParentReference, StatusBody,
};
use crate::runtime::SourceUpdate;
use crate::store::{ObjectKey, Store};
use crate::telemetry::kube::{KubeMetrics, WriteResult};

/// The field manager of everything the proxy applies.
pub const FIELD_MANAGER: &str = "gantry-proxy";
/// The Gateway conditions the proxy owns: `Programmed`, and `ResolvedRefs` when it reports on
/// the backend client certificate.
const PROGRAMMED: &str = "Programmed";
const RESOLVED_REFS: &str = "ResolvedRefs";
const OWNED_GATEWAY_CONDITIONS: [&str; 2] = [PROGRAMMED, RESOLVED_REFS];
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

/// What was wished for an object, without times. Entries stay typed, so checking the thousands
/// of unchanged routes of a reconcile costs comparisons, not serialization.
#[derive(Clone, Debug)]
enum Wish {
    Gateway(Value),
    Entries(Vec<Entry>),
}

/// Writes statuses; remembers what is settled (see [`Settled`]).
pub struct StatusWriter {
    client: Client,
    controller_name: String,
    /// Gateways served even when the translation shows none (`--gateway`).
    configured: Vec<ObjectKey>,
    settled: HashMap<(String, ObjectKey), Settled>,
    metrics: KubeMetrics,
}

/// Counts of one reconcile.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Written {
    pub gateways: usize,
    pub routes: usize,
    pub policies: usize,
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
        // Routes and policies: the entries of ours each should carry.
        let mut routes: BTreeMap<(String, ObjectKey), Vec<Entry>> = BTreeMap::new();
        for object in desired {
            let key = ObjectKey::new(object.namespace.clone(), object.name.clone());
            match &object.status {
                StatusBody::Gateway(status) => {
                    served.insert(key.clone());
                    gateways.push((key, status));
                }
                StatusBody::Route(status) => {
                    let entries = status.parents.iter().map(|p| Entry {
                        reference: p.parent_ref.clone(),
                        controller_name: p.controller_name.clone(),
                        conditions: p.conditions.clone(),
                    });
                    routes.insert((object.kind.clone(), key), entries.collect());
                }
                StatusBody::Policy(status) => {
                    let entries = status.ancestors.iter().map(|a| Entry {
                        reference: a.ancestor_ref.clone(),
                        controller_name: a.controller_name.clone(),
                        conditions: a.conditions.clone(),
                    });
                    routes.insert((object.kind.clone(), key), entries.collect());
                }
                StatusBody::GatewayClass(_) => {} // the operator's
            }
        }
        // Objects that carry an entry of ours but got none this time: routes that detached,
        // policies no longer relevant to a served Gateway.
        for kind in ROUTE_KINDS.iter().chain(&POLICY_KINDS) {
            let shape = Shape::of(kind);
            let skip = |key: &ObjectKey| routes.contains_key(&((*kind).to_owned(), key.clone()));
            let candidates = objects_with_entries_of(store, kind, &self.controller_name, skip);
            for (key, live) in candidates {
                let id = ((*kind).to_owned(), key);
                if entries_of(&live, shape)
                    .iter()
                    .any(|p| self.is_ours(p, shape, &id.1.namespace, &served))
                {
                    routes.insert(id, Vec::new());
                }
            }
        }

        // Forget objects that are no longer ours to write.
        self.settled.retain(|(kind, key), _| {
            if kind == "Gateway" {
                served.contains(key)
            } else {
                routes.contains_key(&(kind.clone(), key.clone()))
            }
        });

        let mut written = Written::default();
        let mut errors = Vec::new();
        for (key, status) in gateways {
            let version = store
                .gateways
                .get(&key)
                .and_then(|g| g.metadata.resource_version.as_deref());
            let wish = gateway_wish(status);
            if matches!(self.settled_wish("Gateway", &key, version), Some(Wish::Gateway(w)) if *w == wish)
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
        let mut jobs = Vec::new();
        for ((kind, key), entries) in routes {
            let version = object_version(store, &kind, &key);
            if matches!(self.settled_wish(&kind, &key, version.as_deref()), Some(Wish::Entries(w)) if same_wish(w, &entries))
            {
                continue;
            }
            let Some(live) = live_object(store, &kind, &key) else {
                continue; // deleted since it was translated
            };
            jobs.push((kind, key, live, entries));
        }
        // Objects are independent: write several at once (a first start may have thousands).
        let this = &*self;
        let served = &served;
        let results: Vec<_> = futures::stream::iter(jobs)
            .map(|(kind, key, live, entries)| async move {
                let result = this.entries(&kind, &key, live, &entries, served).await;
                (kind, key, result)
            })
            .buffer_unordered(WRITE_CONCURRENCY)
            .collect()
            .await;
        for (kind, key, result) in results {
            match result {
                Ok((wrote, settled)) => {
                    if POLICY_KINDS.contains(&kind.as_str()) {
                        written.policies += usize::from(wrote);
                    } else {
                        written.routes += usize::from(wrote);
                    }
                    let result = if wrote {
                        WriteResult::written
                    } else {
                        WriteResult::unchanged
                    };
                    self.metrics.status_write(&kind, result);
                    self.settled.insert((kind, key), settled);
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
            .filter(|c| OWNED_GATEWAY_CONDITIONS.contains(&c.type_.as_str()))
            .collect();
        let live_listeners: Option<Vec<ListenerStatus>> =
            serde_json::from_value(status["listeners"].clone()).ok();
        let now = stamp::now();
        let mut programmed: Vec<Condition> = desired
            .conditions
            .iter()
            .filter(|c| OWNED_GATEWAY_CONDITIONS.contains(&c.type_.as_str()))
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

    /// Replaces our entries (`parents[]` of a route, `ancestors[]` of a policy) of one object
    /// with `desired`, keeping every other entry, guarded by the resourceVersion they were
    /// read at; retried on conflict.
    #[instrument(skip(self, live, desired, served), fields(object = %key))]
    async fn entries(
        &self,
        kind: &str,
        key: &ObjectKey,
        mut live: Value,
        desired: &[Entry],
        served: &BTreeSet<ObjectKey>,
    ) -> Result<(bool, Settled), WriteError> {
        let wish = Wish::Entries(desired.to_vec());
        let Some(resource) = resource_of(kind) else {
            return Ok((false, settled_at(&live, wish)));
        };
        let shape = Shape::of(kind);
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), &key.namespace, &resource);
        let api_error = |source| WriteError::Api {
            kind: kind.to_owned(),
            key: key.clone(),
            source: Box::new(source),
        };
        for attempt in 1..=MAX_ATTEMPTS {
            let (foreign, ours): (Vec<Value>, Vec<Value>) = entries_of(&live, shape)
                .into_iter()
                .partition(|p| !self.is_ours(p, shape, &key.namespace, served));
            let ours: Option<Vec<Entry>> = ours
                .into_iter()
                .map(|p| Entry::from_value(&p, shape))
                .collect();
            let now = stamp::now();
            let mut next = desired.to_vec();
            for entry in &mut next {
                let old = ours
                    .iter()
                    .flatten()
                    .find(|o| o.reference == entry.reference)
                    .map(|o| o.conditions.as_slice())
                    .unwrap_or_default();
                keep_times(&mut entry.conditions, old, &now);
            }
            if ours.as_ref().is_some_and(|ours| same_entries(&next, ours)) {
                return Ok((false, settled_at(&live, wish)));
            }
            let resource_version = live["metadata"]["resourceVersion"].clone();
            let mut list = foreign;
            list.extend(next.iter().map(|e| e.to_value(shape)));
            let body = json!({
                "metadata": { "resourceVersion": resource_version },
                "status": { shape.list: list },
            });
            match api
                .patch_status(&key.name, &PatchParams::default(), &Patch::Merge(&body))
                .await
            {
                Ok(_) => {
                    tracing::info!(attempt, kind, "status written");
                    return Ok((true, settled_at(&live, wish)));
                }
                Err(::kube::Error::Api(status)) if status.is_conflict() => {
                    tracing::debug!(attempt, "object changed meanwhile; reading it again");
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
    fn is_ours(
        &self,
        entry: &Value,
        shape: Shape,
        object_namespace: &str,
        served: &BTreeSet<ObjectKey>,
    ) -> bool {
        if entry["controllerName"].as_str() != Some(self.controller_name.as_str()) {
            return false;
        }
        let r = &entry[shape.reference];
        let group = r["group"].as_str().unwrap_or(GATEWAY_GROUP);
        let kind = r["kind"].as_str().unwrap_or("Gateway");
        let namespace = r["namespace"].as_str().unwrap_or(object_namespace);
        let name = r["name"].as_str().unwrap_or_default();
        group == GATEWAY_GROUP
            && kind == "Gateway"
            && served.contains(&ObjectKey::new(namespace, name))
    }

    /// The wish settled for this version of the object, if any.
    fn settled_wish(&self, kind: &str, key: &ObjectKey, version: Option<&str>) -> Option<&Wish> {
        let version = version?;
        self.settled
            .get(&(kind.to_owned(), key.clone()))
            .filter(|(v, _)| v == version)
            .map(|(_, wish)| wish)
    }

    fn settle(&mut self, kind: &str, key: &ObjectKey, live: &Value, wish: Wish) {
        self.settled
            .insert((kind.to_owned(), key.clone()), settled_at(live, wish));
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

const ROUTE_KINDS: [&str; 5] = ["HTTPRoute", "GRPCRoute", "TLSRoute", "TCPRoute", "UDPRoute"];
const POLICY_KINDS: [&str; 1] = ["BackendTLSPolicy"];

/// Where an object keeps its per-Gateway status entries.
#[derive(Clone, Copy, Debug)]
struct Shape {
    /// The list under `status`.
    list: &'static str,
    /// The reference field of each entry.
    reference: &'static str,
}

impl Shape {
    fn of(kind: &str) -> Self {
        if POLICY_KINDS.contains(&kind) {
            Self {
                list: "ancestors",
                reference: "ancestorRef",
            }
        } else {
            Self {
                list: "parents",
                reference: "parentRef",
            }
        }
    }
}

/// One per-Gateway status entry: a route's `RouteParentStatus` or a policy's
/// `PolicyAncestorStatus` (the same fields under different names).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
struct Entry {
    reference: ParentReference,
    controller_name: String,
    conditions: Vec<Condition>,
}

impl Entry {
    fn from_value(v: &Value, shape: Shape) -> Option<Self> {
        Some(Self {
            reference: serde_json::from_value(v[shape.reference].clone()).ok()?,
            controller_name: v["controllerName"].as_str()?.to_owned(),
            conditions: serde_json::from_value(v["conditions"].clone()).ok()?,
        })
    }

    fn to_value(&self, shape: Shape) -> Value {
        json!({
            shape.reference: self.reference,
            "controllerName": self.controller_name,
            "conditions": self.conditions,
        })
    }
}

fn resource_of(kind: &str) -> Option<ApiResource> {
    Some(match kind {
        "HTTPRoute" => ApiResource::erase::<HttpRoute>(&()),
        "GRPCRoute" => ApiResource::erase::<GrpcRoute>(&()),
        "TLSRoute" => ApiResource::erase::<TlsRoute>(&()),
        "TCPRoute" => ApiResource::erase::<TcpRoute>(&()),
        "UDPRoute" => ApiResource::erase::<UdpRoute>(&()),
        "BackendTLSPolicy" => ApiResource::erase::<BackendTlsPolicy>(&()),
        _ => return None,
    })
}

fn live_object(store: &Store, kind: &str, key: &ObjectKey) -> Option<Value> {
    match kind {
        "HTTPRoute" => store.http_routes.get(key).and_then(to_value),
        "GRPCRoute" => store.grpc_routes.get(key).and_then(to_value),
        "TLSRoute" => store.tls_routes.get(key).and_then(to_value),
        "TCPRoute" => store.tcp_routes.get(key).and_then(to_value),
        "UDPRoute" => store.udp_routes.get(key).and_then(to_value),
        "BackendTLSPolicy" => store.backend_tls_policies.get(key).and_then(to_value),
        _ => None,
    }
}

/// Objects of one kind with a status entry of `controller`, as JSON, except those `skip`
/// names (only the rest are serialized).
fn objects_with_entries_of(
    store: &Store,
    kind: &str,
    controller: &str,
    skip: impl Fn(&ObjectKey) -> bool,
) -> Vec<(ObjectKey, Value)> {
    macro_rules! with_entries {
        ($map:expr, $list:ident) => {
            $map.iter()
                .filter(|(k, _)| !skip(k))
                .filter(|(_, r)| {
                    r.status
                        .as_ref()
                        .is_some_and(|s| s.$list.iter().any(|p| p.controller_name == controller))
                })
                .filter_map(|(k, r)| to_value(r).map(|v| (k.clone(), v)))
                .collect()
        };
    }
    match kind {
        "HTTPRoute" => with_entries!(store.http_routes, parents),
        "GRPCRoute" => with_entries!(store.grpc_routes, parents),
        "TLSRoute" => with_entries!(store.tls_routes, parents),
        "TCPRoute" => with_entries!(store.tcp_routes, parents),
        "UDPRoute" => with_entries!(store.udp_routes, parents),
        "BackendTLSPolicy" => with_entries!(store.backend_tls_policies, ancestors),
        _ => Vec::new(),
    }
}

/// The resourceVersion of a route or policy in the store.
fn object_version(store: &Store, kind: &str, key: &ObjectKey) -> Option<String> {
    macro_rules! version {
        ($map:expr) => {
            $map.get(key)
                .and_then(|r| r.metadata.resource_version.clone())
        };
    }
    match kind {
        "HTTPRoute" => version!(store.http_routes),
        "GRPCRoute" => version!(store.grpc_routes),
        "TLSRoute" => version!(store.tls_routes),
        "TCPRoute" => version!(store.tcp_routes),
        "UDPRoute" => version!(store.udp_routes),
        "BackendTLSPolicy" => version!(store.backend_tls_policies),
        _ => None,
    }
}

/// What the proxy wants on a Gateway, without times.
fn gateway_wish(desired: &GatewayStatus) -> Value {
    let programmed: Vec<&Condition> = desired
        .conditions
        .iter()
        .filter(|c| OWNED_GATEWAY_CONDITIONS.contains(&c.type_.as_str()))
        .collect();
    json!({ "conditions": strip(&programmed), "listeners": strip(&desired.listeners) })
}

fn to_value<T: Serialize>(object: &T) -> Option<Value> {
    serde_json::to_value(object).ok()
}

fn entries_of(object: &Value, shape: Shape) -> Vec<Value> {
    object["status"][shape.list]
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

fn same_entries(a: &[Entry], b: &[Entry]) -> bool {
    a.len() == b.len()
        && a.iter().all(|x| {
            b.iter().any(|y| {
                x.reference == y.reference
                    && x.controller_name == y.controller_name
                    && same_conditions(&x.conditions, &y.conditions)
            })
        })
}

/// The same entries with the same conditions in the same order, times aside.
fn same_wish(a: &[Entry], b: &[Entry]) -> bool {
    let same_condition = |x: &Condition, y: &Condition| {
        x.type_ == y.type_
            && x.status == y.status
            && x.reason == y.reason
            && x.message == y.message
            && x.observed_generation == y.observed_generation
    };
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.reference == y.reference
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
