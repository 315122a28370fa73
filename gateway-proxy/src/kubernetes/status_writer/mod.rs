//! Writes the proxy's statuses to the API server (Kubernetes mode).
//!
//! What it writes, and how:
//! - Gateway: the `Accepted` and `Programmed` conditions and `listeners[]`, by server-side
//!   apply with the field manager [`FIELD_MANAGER`]; `addresses` belong to the operator. The
//!   operator writes `Accepted` only to refuse a Gateway (`InvalidParameters`, its parametersRef
//!   cannot be used): while the live Gateway carries that refusal for its current generation,
//!   the proxy leaves `Accepted` to the operator, so the two never take turns.
//! - Routes: only `parents[]` entries of our controller for Gateways this proxy serves, by a
//!   merge patch carrying the resourceVersion it was computed from; other controllers' entries
//!   are copied back untouched, and a `409 Conflict` re-reads the route and tries again.
//!   Entries for Gateways a route no longer references are removed.
//! - Policies (BackendTLSPolicy, XBackendTrafficPolicy, BackendConfigPolicy): only
//!   `ancestors[]` entries of our controller for Gateways this proxy serves, written exactly as
//!   route parents are.
//! - Gateway `ResolvedRefs` (the backend client certificate) and
//!   `InsecureFrontendValidationMode`, with `Programmed`, when the translation sets them, and
//!   `attachedListenerSets` when the Gateway allows ListenerSets.
//! - ListenerSet: its whole status (`Accepted`, `Programmed`, `listeners[]`), by server-side
//!   apply as for Gateways; only for ListenerSets whose parent Gateway this proxy serves.
//!
//! A write happens only when the status differs from the live object, ignoring
//! `lastTransitionTime`; a condition whose status did not change keeps its time. Only the
//! leader writes ([`run`] takes a leadership signal).
//!
//! A reconcile costs a lookup and a comparison per unchanged object, without copies: the
//! wanted entries are borrowed from the translator's statuses, and only objects whose status
//! is compared with the live one are copied. When the statuses are the same as at the last
//! reconcile that succeeded (a watch event, such as our own write coming back), [`run`] looks
//! only at the Gateways, routes and policies that changed since, often none.

mod compare;
mod entries;
mod fleet_gate;
mod listener_set;
mod live;
mod settled;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ::kube::api::{ApiResource, DynamicObject, Patch, PatchParams};
use ::kube::{Api, Client};
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::sync::watch;
use tracing::instrument;

use self::compare::{gateway_wish, keep_times, parse_list, same_conditions, same_listeners};
use self::entries::{Entries, Entry, Kind, Served, Shape, is_served_gateway, same_entries};
use self::fleet_gate::FleetGate;
use self::live::LiveObject;
use self::settled::{Ledger, Settled};
use crate::kubernetes::metrics::{KubeMetrics, ReconcileOutcome, WriteResult};
use crate::kubernetes::serving::verdict::{Fleet, Gate, PROXY_VERSIONS};
use crate::source::SourceUpdate;
use gantry_translate::status::{
    Condition, GatewayStatus, ListenerStatus, ObjectStatus, StatusBody,
};
use gantry_translate::store::{ObjectKey, Store};

/// The field manager of everything the proxy applies.
pub const FIELD_MANAGER: &str = "gantry-proxy";
/// The Gateway conditions the proxy owns: `Accepted` (unless the operator refuses the
/// Gateway), `Programmed`, `ResolvedRefs` when it reports on
/// the backend client certificate, and `InsecureFrontendValidationMode` when frontend TLS
/// validation lets clients without a valid certificate in.
const ACCEPTED: &str = "Accepted";
const PROGRAMMED: &str = "Programmed";
const RESOLVED_REFS: &str = "ResolvedRefs";
const INSECURE_FRONTEND_VALIDATION_MODE: &str = "InsecureFrontendValidationMode";
const OWNED_GATEWAY_CONDITIONS: [&str; 5] = [
    ACCEPTED,
    PROGRAMMED,
    RESOLVED_REFS,
    INSECURE_FRONTEND_VALIDATION_MODE,
    PROXY_VERSIONS,
];
/// The reason of the operator's refusal of a Gateway.
const INVALID_PARAMETERS: &str = "InvalidParameters";
const GATEWAY_GROUP: &str = gantry_crds::GATEWAY_GROUP;
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

/// Writes statuses; remembers what is settled (see [`Settled`]).
pub struct StatusWriter {
    client: Client,
    controller_name: String,
    /// Gateways served even when the translation shows none (`--gateway`).
    configured: Vec<ObjectKey>,
    settled: Ledger,
    metrics: KubeMetrics,
    /// With a fleet (`--fleet`): `Programmed` means its replicas serve the Gateway.
    fleet: Option<FleetGate>,
    /// `lastTransitionTime` of changed conditions.
    clock: fn() -> String,
}

/// Counts of one reconcile.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Written {
    pub gateways: usize,
    pub listener_sets: usize,
    pub routes: usize,
    pub policies: usize,
}

/// A route or policy whose status is compared with `live`, and written if it differs.
struct Job {
    kind: Kind,
    key: ObjectKey,
    live: Value,
    desired: Vec<Entry>,
}

impl StatusWriter {
    pub fn new(client: Client, controller_name: String, configured: Vec<ObjectKey>) -> Self {
        Self {
            client,
            controller_name,
            configured,
            settled: Ledger::default(),
            metrics: KubeMetrics::default(),
            fleet: None,
            clock: crate::clock::now,
        }
    }

    /// Decides `Programmed` (and adds `gantry.dev/ProxyVersions`) from the fleet's reports
    /// in [`run`]: True only when enough ready replicas serve the Gateway's generation.
    pub fn with_fleet(mut self, gate: Gate, fleet: watch::Receiver<Arc<Fleet>>) -> Self {
        self.fleet = Some(FleetGate::new(gate, fleet));
        self
    }

    /// Takes `lastTransitionTime` of changed conditions from `clock` instead of the wall
    /// clock (tests: a time no earlier write can have).
    pub fn with_clock(mut self, clock: fn() -> String) -> Self {
        self.clock = clock;
        self
    }

    /// Counts every status settled in `metrics` (`gantry_kube_status_writes_total`).
    pub fn with_metrics(mut self, metrics: KubeMetrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// Brings the API server in line with `desired`, reading live statuses from `store`.
    /// Every object is attempted; the errors of those that failed are returned together.
    pub async fn reconcile(
        &mut self,
        store: &Store,
        desired: &[ObjectStatus],
    ) -> Result<Written, Vec<WriteError>> {
        self.reconcile_since(None, store, desired).await
    }

    /// [`StatusWriter::reconcile`]. With `previous`, the store read by the last reconcile that
    /// succeeded, for these very statuses: only the Gateways, routes and policies replaced,
    /// added or removed since are looked at (all of them when too many changed). Objects are
    /// told apart by pointer, so `store` must keep the `Arc` of every object not replaced
    /// since `previous` (as the sources do).
    #[instrument(skip_all, fields(objects = desired.len(), since_previous = previous.is_some()))]
    pub async fn reconcile_since(
        &mut self,
        previous: Option<&Store>,
        store: &Store,
        desired: &[ObjectStatus],
    ) -> Result<Written, Vec<WriteError>> {
        let mut served = self.configured.clone();
        let mut gateways = Vec::new();
        let mut listener_sets = Vec::new();
        for object in desired {
            if let StatusBody::Gateway(status) = &object.status {
                let key = ObjectKey::new(object.namespace.clone(), object.name.clone());
                if object.kind == listener_set::KIND {
                    listener_sets.push((key, status));
                    continue;
                }
                served.push(key.clone());
                gateways.push((key, status));
            }
        }
        let served = Served::new(served);
        let changes = previous
            .map(|previous| live::changes(previous, store))
            .filter(|changes| changes.len() <= MAX_CHANGES);
        // Forget Gateways that are no longer ours to write.
        self.settled.retain_gateways(&served);

        let mut written = Written::default();
        let mut errors = Vec::new();
        for (key, status) in gateways {
            if let Some(previous) = previous.filter(|_| changes.is_some())
                && same_object(previous.gateways.get(&key), store.gateways.get(&key))
            {
                continue;
            }
            let version = store
                .gateways
                .get(&key)
                .and_then(|g| g.metadata.resource_version.as_deref());
            if self
                .settled
                .gateway_settled(&key, version, &gateway_wish(status))
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

        self.settled
            .retain_listener_sets(|key| listener_sets.iter().any(|(k, _)| k == key));
        for (key, status) in listener_sets {
            if let Some(previous) = previous.filter(|_| changes.is_some())
                && same_object(
                    previous.listener_sets.get(&key),
                    store.listener_sets.get(&key),
                )
            {
                continue;
            }
            match self.listener_set(store, &key, status).await {
                Ok(true) => {
                    written.listener_sets += 1;
                    self.metrics
                        .status_write(listener_set::KIND, WriteResult::written);
                }
                Ok(false) => self
                    .metrics
                    .status_write(listener_set::KIND, WriteResult::unchanged),
                Err(error) => {
                    self.metrics
                        .status_write(listener_set::KIND, WriteResult::failed);
                    errors.push(error);
                }
            }
        }

        // Routes and policies: those that should carry entries of ours, and those that carry
        // one but got none this time (routes that detached, policies no longer relevant to a
        // served Gateway). Those not settled are compared with their live status.
        let mut jobs = Vec::new();
        match changes {
            Some(changes) => {
                for (kind, key, object) in changes {
                    match object {
                        Some(object) => {
                            let wanted = find_wanted(desired, kind, key);
                            jobs.extend(self.plan(kind, key, object, wanted, &served));
                        }
                        None => self.settled.forget(kind, key),
                    }
                }
            }
            None => {
                // The entries of ours each should carry, borrowed.
                let mut wanted = HashMap::with_capacity(desired.len());
                for object in desired {
                    if let Some((kind, entries)) = wanted_entries(object) {
                        let id = (kind, object.namespace.as_str(), object.name.as_str());
                        wanted.insert(id, entries);
                    }
                }
                self.settled.start_round();
                for kind in Kind::ALL {
                    live::for_each_object(store, kind, |key, object| {
                        let id = (kind, key.namespace.as_str(), key.name.as_str());
                        let wanted = wanted.get(&id).copied();
                        jobs.extend(self.plan(kind, key, object, wanted, &served));
                    });
                }
                // Forget objects that are no longer ours to write.
                self.settled.forget_unchecked();
            }
        }

        // Objects are independent: write several at once (a first start may have thousands).
        let this = &*self;
        let served = &served;
        let results: Vec<_> = futures::stream::iter(jobs)
            .map(|job| async move {
                let result = this
                    .entries(job.kind, &job.key, job.live, job.desired, served)
                    .await;
                (job.kind, job.key, result)
            })
            .buffer_unordered(WRITE_CONCURRENCY)
            .collect()
            .await;
        for (kind, key, result) in results {
            match result {
                Ok((wrote, settled)) => {
                    if kind.is_policy() {
                        written.policies += usize::from(wrote);
                    } else {
                        written.routes += usize::from(wrote);
                    }
                    let result = if wrote {
                        WriteResult::written
                    } else {
                        WriteResult::unchanged
                    };
                    self.metrics.status_write(kind.name(), result);
                    self.settled.settle_entries(kind, key, settled);
                }
                Err(error) => {
                    self.metrics.status_write(kind.name(), WriteResult::failed);
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

    /// What to do about one route or policy in the store, given the entries of ours it should
    /// carry: nothing when it is not ours to write or its status is settled, else a [`Job`]
    /// (only then are the entries copied).
    fn plan(
        &mut self,
        kind: Kind,
        key: &ObjectKey,
        object: &dyn LiveObject,
        wanted: Option<Entries<'_>>,
        served: &Served,
    ) -> Option<Job> {
        let wanted = match wanted {
            Some(entries) => entries,
            None if object.has_entry_for(&self.controller_name, served, &key.namespace) => {
                Entries::NONE
            }
            None => {
                self.settled.forget(kind, key);
                return None;
            }
        };
        let version = object.resource_version();
        if self.settled.entries_settled(kind, key, version, wanted) {
            return None;
        }
        Some(Job {
            kind,
            key: key.clone(),
            live: object.to_json()?,
            desired: wanted.to_vec(),
        })
    }

    /// Applies `Programmed` and `listeners[]` when they differ from the live Gateway.
    #[instrument(skip(self, store, desired), fields(gateway = %key))]
    async fn gateway(
        &mut self,
        store: &Store,
        key: &ObjectKey,
        desired: &GatewayStatus,
    ) -> Result<bool, WriteError> {
        let Some(live) = store
            .gateways
            .get(key)
            .and_then(|g| serde_json::to_value(g).ok())
        else {
            return Ok(false);
        };
        let status = &live["status"];
        let live_conditions: Vec<Condition> = parse_list(&status["conditions"]);
        let generation = live["metadata"]["generation"].as_i64();
        let refused = live_conditions.iter().any(|c| {
            c.type_ == ACCEPTED
                && c.reason == INVALID_PARAMETERS
                && Some(c.observed_generation) == generation
        });
        let owned = |c: &Condition| {
            OWNED_GATEWAY_CONDITIONS.contains(&&*c.type_) && !(refused && c.type_ == ACCEPTED)
        };
        let live_programmed: Vec<Condition> =
            live_conditions.into_iter().filter(|c| owned(c)).collect();
        let live_listeners: Option<Vec<ListenerStatus>> =
            serde_json::from_value(status["listeners"].clone()).ok();
        let now = (self.clock)();
        let mut programmed: Vec<Condition> = desired
            .conditions
            .iter()
            .filter(|c| owned(c))
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
        let live_attached = status["attachedListenerSets"].as_i64();
        let unchanged = same_conditions(&programmed, &live_programmed)
            && live_listeners
                .as_ref()
                .is_some_and(|live| same_listeners(&listeners, live))
            && live_attached == desired.attached_listener_sets.map(i64::from);
        let wish = gateway_wish(desired);
        if unchanged {
            self.settled.settle_gateway(key, Settled::at(&live, wish));
            return Ok(false);
        }
        let body = json!({
            "apiVersion": format!("{GATEWAY_GROUP}/v1"),
            "kind": "Gateway",
            "metadata": { "name": key.name, "namespace": key.namespace },
            "status": {
                "conditions": programmed,
                "listeners": listeners,
                "attachedListenerSets": desired.attached_listener_sets,
            },
        });
        let mut body = body;
        if desired.attached_listener_sets.is_none() {
            // Not applied: the field is left to whoever else sets it (or removed, if we did).
            if let Some(status) = body["status"].as_object_mut() {
                status.remove("attachedListenerSets");
            }
        }
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
        self.settled.settle_gateway(key, Settled::at(&live, wish));
        tracing::info!("Gateway status written");
        Ok(true)
    }

    /// Replaces our entries (`parents[]` of a route, `ancestors[]` of a policy) of one object
    /// with `desired`, keeping every other entry, guarded by the resourceVersion they were
    /// read at; retried on conflict.
    #[instrument(skip(self, live, desired, served), fields(object = %key))]
    async fn entries(
        &self,
        kind: Kind,
        key: &ObjectKey,
        mut live: Value,
        desired: Vec<Entry>,
        served: &Served,
    ) -> Result<(bool, Settled<Vec<Entry>>), WriteError> {
        let shape = kind.shape();
        let resources = kind.resources();
        let mut version = 0;
        let mut api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), &key.namespace, &resources[version]);
        let api_error = |source| WriteError::Api {
            kind: kind.name().to_owned(),
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
            let now = (self.clock)();
            let mut next = desired.clone();
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
                return Ok((false, Settled::at(&live, desired)));
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
                    tracing::info!(attempt, kind = kind.name(), "status written");
                    return Ok((true, Settled::at(&live, desired)));
                }
                Err(::kube::Error::Api(status))
                    if status.code == 404 && version + 1 < resources.len() =>
                {
                    // Not served at this version: the next (older) one.
                    version += 1;
                    api = Api::namespaced_with(
                        self.client.clone(),
                        &key.namespace,
                        &resources[version],
                    );
                }
                Err(::kube::Error::Api(status)) if status.is_conflict() => {
                    tracing::debug!(attempt, "object changed meanwhile; reading it again");
                    self.metrics
                        .status_write(kind.name(), WriteResult::conflict_retried);
                    let fresh = api.get(&key.name).await.map_err(api_error)?;
                    live = serde_json::to_value(fresh).unwrap_or(Value::Null);
                }
                Err(error) => return Err(api_error(error)),
            }
        }
        Err(WriteError::Conflicts {
            kind: kind.name().to_owned(),
            key: key.clone(),
        })
    }

    /// An entry of ours: our controller, for a Gateway this proxy serves.
    fn is_ours(
        &self,
        entry: &Value,
        shape: Shape,
        object_namespace: &str,
        served: &Served,
    ) -> bool {
        if entry["controllerName"].as_str() != Some(self.controller_name.as_str()) {
            return false;
        }
        let r = &entry[shape.reference];
        is_served_gateway(
            r["group"].as_str(),
            r["kind"].as_str(),
            r["namespace"].as_str().unwrap_or(object_namespace),
            r["name"].as_str().unwrap_or_default(),
            served,
        )
    }
}

/// The inputs of the last reconcile that succeeded.
struct Reconciled {
    statuses: Arc<Vec<ObjectStatus>>,
    store: Arc<Store>,
}

/// Writes statuses whenever they, the live objects or leadership change, while this replica
/// leads. Returns when the control loop is gone.
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
    // Cleared by a failure and while not leading, so that retries and a new term of
    // leadership always reconcile.
    let mut reconciled: Option<Reconciled> = None;
    loop {
        let leading = *leader.borrow_and_update();
        // A translation can arrive while another event woke the loop; the borrow below marks
        // it seen, so `statuses.changed()` will not report it.
        translated |= statuses.has_changed().unwrap_or(false);
        if let Some(SourceUpdate::Objects { store: s, .. }) = &*objects.borrow_and_update() {
            store = Some(s.clone());
        }
        let translation = statuses.borrow_and_update().clone();
        // With a fleet, nothing is written until its Pods are known.
        let (desired, fleet_known) = match writer.fleet.as_mut() {
            Some(fleet) => match fleet.desired(&translation) {
                Some(desired) => (desired, true),
                None => (translation, false),
            },
            None => (translation, true),
        };
        let mut retry = false;
        if !leading {
            reconciled = None;
            if translated && store.is_some() {
                writer
                    .metrics
                    .status_reconciled(ReconcileOutcome::not_leader);
            }
        }
        if let (true, true, true, Some(store)) = (leading, translated, fleet_known, &store) {
            // With the same statuses as last time, only what changed in the store needs a look
            // (often nothing: the event was about Services, EndpointSlices or Secrets).
            let previous = reconciled
                .take()
                .filter(|r| Arc::ptr_eq(&r.statuses, &desired))
                .map(|r| r.store);
            let result = match &previous {
                Some(previous) if Arc::ptr_eq(previous, store) => Ok(Written::default()),
                Some(previous) => {
                    writer
                        .reconcile_since(Some(previous), store, &desired)
                        .await
                }
                None => writer.reconcile(store, &desired).await,
            };
            match result {
                Ok(_) => {
                    writer.metrics.status_reconciled(ReconcileOutcome::ok);
                    reconciled = Some(Reconciled {
                        statuses: desired,
                        store: store.clone(),
                    });
                }
                Err(errors) => {
                    writer.metrics.status_reconciled(ReconcileOutcome::failed);
                    for error in &errors {
                        tracing::warn!(%error, "status not written; retrying");
                    }
                    reconciled = None;
                    retry = true;
                }
            }
        }
        let deadline = writer.fleet.as_ref().and_then(|f| f.deadline);
        tokio::select! {
            changed = statuses.changed() => {
                if changed.is_err() { return; }
                translated = true;
            }
            changed = objects.changed() => if changed.is_err() { return; },
            changed = leader.changed() => if changed.is_err() { return; },
            () = tokio::time::sleep(RETRY_AFTER), if retry => {}
            () = fleet_changed(&mut writer.fleet) => {}
            () = sleep_until(deadline), if deadline.is_some() => {}
        }
    }
}

/// Waits for a change of the fleet, forever without one.
async fn fleet_changed(fleet: &mut Option<FleetGate>) {
    match fleet {
        Some(fleet) => fleet.changed().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Above this many changed routes and policies, a reconcile looks at all of them (one lookup
/// each) rather than searching the statuses for each changed one.
const MAX_CHANGES: usize = 64;

/// The kind and the entries of ours of a route's or policy's status.
fn wanted_entries(object: &ObjectStatus) -> Option<(Kind, Entries<'_>)> {
    let entries = match &object.status {
        StatusBody::Route(status) => Entries::Parents(&status.parents),
        StatusBody::Policy(status) => Entries::Ancestors(&status.ancestors),
        StatusBody::Gateway(_) | StatusBody::GatewayClass(_) => return None,
    };
    Some((Kind::parse(&object.kind)?, entries))
}

/// The entries of ours `desired` wants on one object (the last status for it, as with a
/// lookup table built from all of them).
fn find_wanted<'a>(
    desired: &'a [ObjectStatus],
    kind: Kind,
    key: &ObjectKey,
) -> Option<Entries<'a>> {
    desired
        .iter()
        .rev()
        .filter(|o| o.name == key.name && o.namespace == key.namespace)
        .find_map(|o| wanted_entries(o).filter(|(k, _)| *k == kind))
        .map(|(_, entries)| entries)
}

/// Whether both stores hold the very same object (sources keep the `Arc` of an object no
/// event replaced).
fn same_object<T>(a: Option<&Arc<T>>, b: Option<&Arc<T>>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
        (None, None) => true,
        _ => false,
    }
}

fn entries_of(object: &Value, shape: Shape) -> Vec<Value> {
    object["status"][shape.list]
        .as_array()
        .cloned()
        .unwrap_or_default()
}
