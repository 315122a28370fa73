//! Differential test of the status writer's incremental paths over pairs of translator golden
//! cases, against the in-process API server.
//!
//! The writer remembers the statuses it settled per object version (its ledger) and, when the
//! statuses are those of its last reconcile, looks only at the objects replaced since the store
//! that reconcile read (`reconcile_since`). Both stand in for reading the API server: a wrong
//! answer would skip a write that is needed. For a pair (A, B) of the cases in
//! `translate/testdata/translate/`, with B's `# options:` (controller, served Gateways), the test
//! plays what the status writer's loop does:
//!
//! 1. A's objects are created; the writer reconciles A's statuses, then reconciles since the
//!    store its own writes came back in.
//! 2. The objects become B's (A's other objects deleted, B's applied over A's and keeping the
//!    statuses written for A, as edits in a cluster do; an object B holds as it is stays
//!    untouched, resourceVersion included); the same writer, its ledger warm, reconciles B's
//!    statuses, then again since its writes came back.
//! 3. Someone else edits statuses (ours cleared on some objects, ours made stale and another
//!    controller's entry added on others, some Gateways' conditions cleared); the writer, with
//!    B's statuses unchanged, reconciles since the store before the edits, then again since
//!    its writes came back.
//!
//! After each "since its writes came back" reconcile the writer must write nothing (its own
//! writes are settled), and at the end of 2 and of 3 a new writer, with no ledger, reconciling
//! the same statuses from scratch must find nothing to write either: the warm writer left the
//! API server as a cold one would.
//!
//! One test per A (`status_after::<A>`), each against every B (A included) on one API server
//! emptied between pairs, reporting the failing pairs together (the first 20, by name).

#![allow(clippy::unwrap_used)]

#[path = "../translate/tests/pairs/mod.rs"]
mod pairs;
mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use gantry_proxy::kubernetes::status_writer::{StatusWriter, Written};
use gantry_translate::status::ObjectStatus;
use gantry_translate::store::{ObjectKey, Store};
use gantry_translate::translate::{TranslateOptions, translate};
use libtest_mimic::Failed;
use pairs::Golden as Case;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use support::Client;
use support::apiserver::ApiServer;
use support::objects::foreign_parent;

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("translate/testdata/translate");
    pairs::run(pairs::read(&dir), "status_after", |c| &c.name, status_after)
}

fn status_after(cases: &[Case], a: usize) -> Result<(), Failed> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let first = &cases[a];
    // One server for every pair, emptied before each: starting servers and clients would
    // cost more than the pairs.
    let (server, client) = runtime.block_on(async {
        let server = ApiServer::start().await;
        let client = server.client();
        (server, client)
    });
    let mut failures = Vec::new();
    for second in cases {
        become_(&server, &Store::default());
        if let Err(message) = runtime.block_on(pair(&server, &client, first, second)) {
            failures.push(format!("{} then {}: {message}", first.name, second.name));
        }
    }
    pairs::report(&first.name, cases.len(), &failures)
}

/// Steps 1 to 3 of the module's description for the pair (`first`, `second`).
async fn pair(
    server: &ApiServer,
    client: &kube::Client,
    first: &Case,
    second: &Case,
) -> Result<(), String> {
    let options = &second.options;
    let mut writer = new_writer(client, options);

    // 1. A's objects and statuses.
    become_(server, &first.store);
    let read = snapshot(server, None)?;
    let statuses = translate(&read, options).statuses;
    writer.reconcile(&read, &statuses).await.map_err(errors)?;
    let mut read = settle(server, &mut writer, read, &statuses, "A's statuses").await?;

    // 2. B's objects and statuses, the ledger warm with A's.
    become_(server, &second.store);
    let before = snapshot(server, Some(&read))?;
    let statuses = translate(&before, options).statuses;
    writer.reconcile(&before, &statuses).await.map_err(errors)?;
    read = settle(server, &mut writer, before, &statuses, "B's statuses").await?;
    cold(client, options, &read, &statuses, "B's statuses").await?;

    // 3. Others edit statuses; B's statuses stay, so only the edited objects are looked at.
    edit_statuses(server, &options.controller_name);
    let edited = snapshot(server, Some(&read))?;
    writer
        .reconcile_since(Some(&read), &edited, &statuses)
        .await
        .map_err(errors)?;
    read = settle(server, &mut writer, edited, &statuses, "the edits").await?;
    cold(client, options, &read, &statuses, "the edits").await
}

fn new_writer(client: &kube::Client, options: &TranslateOptions) -> StatusWriter {
    StatusWriter::new(
        client.clone(),
        options.controller_name.clone(),
        options.gateways.clone().unwrap_or_default(),
    )
    .with_clock(support::later)
}

/// Reconciles `statuses` since `read`, the store of the writer's last reconcile, with the store
/// its writes came back in, which must need no write; returns that store.
async fn settle(
    server: &ApiServer,
    writer: &mut StatusWriter,
    read: Store,
    statuses: &[ObjectStatus],
    after: &str,
) -> Result<Store, String> {
    let back = snapshot(server, Some(&read))?;
    let written = writer
        .reconcile_since(Some(&read), &back, statuses)
        .await
        .map_err(errors)?;
    if written != Written::default() {
        return Err(format!(
            "after writing {after}, the writer wrote again once its writes came back: {written:?}"
        ));
    }
    Ok(back)
}

/// A new writer reconciling `statuses` from scratch finds nothing to write.
async fn cold(
    client: &kube::Client,
    options: &TranslateOptions,
    store: &Store,
    statuses: &[ObjectStatus],
    after: &str,
) -> Result<(), String> {
    let written = new_writer(client, options)
        .reconcile(store, statuses)
        .await
        .map_err(errors)?;
    if written == Written::default() {
        Ok(())
    } else {
        Err(format!(
            "after {after}, a writer with no ledger still had to write {written:?}: the warm \
             writer skipped writes"
        ))
    }
}

fn errors(errors: Vec<gantry_proxy::kubernetes::status_writer::WriteError>) -> String {
    let errors: Vec<String> = errors.iter().map(ToString::to_string).collect();
    format!("the writer failed: {}", errors.join("; "))
}

/// A map key of the store: namespaced objects' [`ObjectKey`], cluster-scoped objects' name.
trait Key: Ord + Clone {
    fn of(object: &Value) -> Self;
    fn namespace(&self) -> Option<&str>;
    fn name(&self) -> &str;
}

impl Key for ObjectKey {
    fn of(object: &Value) -> Self {
        ObjectKey::new(
            object["metadata"]["namespace"].as_str().unwrap_or_default(),
            object["metadata"]["name"].as_str().unwrap_or_default(),
        )
    }
    fn namespace(&self) -> Option<&str> {
        Some(&self.namespace)
    }
    fn name(&self) -> &str {
        &self.name
    }
}

impl Key for String {
    fn of(object: &Value) -> Self {
        object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
    fn namespace(&self) -> Option<&str> {
        None
    }
    fn name(&self) -> &str {
        self
    }
}

/// Runs `$each!(field, "resource")` for every kind of object of a [`Store`].
macro_rules! for_each_kind {
    ($each:ident) => {
        $each!(namespaces, "namespaces");
        $each!(gateway_classes, "gatewayclasses");
        $each!(gateways, "gateways");
        $each!(http_routes, "httproutes");
        $each!(grpc_routes, "grpcroutes");
        $each!(tls_routes, "tlsroutes");
        $each!(tcp_routes, "tcproutes");
        $each!(udp_routes, "udproutes");
        $each!(reference_grants, "referencegrants");
        $each!(backend_tls_policies, "backendtlspolicies");
        $each!(services, "services");
        $each!(endpoint_slices, "endpointslices");
        $each!(secrets, "secrets");
        $each!(config_maps, "configmaps");
    };
}

/// Makes the server's objects `store`'s: the others are deleted, `store`'s applied over what
/// is there (a status they do not carry stays). An empty store empties the server.
fn become_(server: &ApiServer, store: &Store) {
    macro_rules! replace {
        ($field:ident, $resource:literal) => {
            delete_others(server, $resource, &store.$field);
            put_all(server, $resource, &store.$field);
        };
    }
    for_each_kind!(replace);
}

/// Deletes the server's objects of `resource` that `objects` does not hold.
fn delete_others<K: Key, T>(server: &ApiServer, resource: &str, objects: &BTreeMap<K, Arc<T>>) {
    for object in server.objects(resource) {
        let key = K::of(&object);
        if !objects.contains_key(&key) {
            server.delete(resource, key.namespace().unwrap_or_default(), key.name());
        }
    }
}

fn put_all<K: Key, T: Serialize>(
    server: &ApiServer,
    resource: &str,
    objects: &BTreeMap<K, Arc<T>>,
) {
    for (key, object) in objects {
        let mut value = serde_json::to_value(&**object).unwrap();
        if value["status"].is_null()
            && let Some(fields) = value.as_object_mut()
        {
            // No status: the one on the server stays.
            fields.remove("status");
        }
        if let Some(namespace) = key.namespace() {
            value["metadata"]["namespace"] = json!(namespace);
        }
        let namespace = key.namespace().unwrap_or_default();
        if server
            .get(resource, namespace, key.name())
            .is_some_and(|live| unchanged(&live, &value))
        {
            // As in a cluster, writing an object as it is changes nothing, not even its
            // resourceVersion: the status writer then sees new statuses for the same object.
            continue;
        }
        server.apply(resource, value);
    }
}

/// Whether `object` (as a user would write it) holds nothing `live` does not already hold:
/// every field but metadata the same, and the same labels and annotations.
fn unchanged(live: &Value, object: &Value) -> bool {
    let Some(fields) = object.as_object() else {
        return false;
    };
    fields.iter().all(|(name, value)| match name.as_str() {
        "metadata" => ["labels", "annotations"]
            .iter()
            .all(|m| value[m] == live["metadata"][m]),
        _ => live[name] == *value,
    })
}

/// The server's objects as a source publishes them: an object whose resourceVersion did not
/// change since `previous` keeps its `Arc` (the status writer tells changes apart by pointer).
fn snapshot(server: &ApiServer, previous: Option<&Store>) -> Result<Store, String> {
    let mut store = Store::default();
    macro_rules! read {
        ($field:ident, $resource:literal) => {
            store.$field = read_all(server, $resource, previous.map(|p| &p.$field))?;
        };
    }
    for_each_kind!(read);
    Ok(store)
}

fn read_all<K: Key, T: DeserializeOwned + kube::Resource>(
    server: &ApiServer,
    resource: &str,
    previous: Option<&BTreeMap<K, Arc<T>>>,
) -> Result<BTreeMap<K, Arc<T>>, String> {
    server
        .objects(resource)
        .into_iter()
        .map(|value| {
            let key = K::of(&value);
            let object: T = serde_json::from_value(value)
                .map_err(|e| format!("{resource} {} does not read back: {e}", key.name()))?;
            let same = previous
                .and_then(|p| p.get(&key))
                .filter(|p| p.meta().resource_version == object.meta().resource_version);
            Ok((key, same.map_or_else(|| Arc::new(object), Arc::clone)))
        })
        .collect()
}

/// Route and policy kinds and the list of per-Gateway entries in their status.
const ENTRY_LISTS: [(&str, &str); 6] = [
    ("httproutes", "parents"),
    ("grpcroutes", "parents"),
    ("tlsroutes", "parents"),
    ("tcproutes", "parents"),
    ("udproutes", "parents"),
    ("backendtlspolicies", "ancestors"),
];

/// Others' edits of statuses, taking the objects in turn: of routes and policies, the first
/// loses every entry, the second keeps ours with every condition `Unknown` and gains another
/// controller's, the third is left alone; of Gateways, every other one loses its conditions and
/// listeners.
fn edit_statuses(server: &ApiServer, controller: &str) {
    let mut turn = 0;
    for (resource, list) in ENTRY_LISTS {
        for mut object in server.objects(resource) {
            turn += 1;
            let mut entries = object["status"][list]
                .as_array()
                .cloned()
                .unwrap_or_default();
            match turn % 3 {
                1 => entries.clear(),
                2 => {
                    for entry in &mut entries {
                        if entry["controllerName"] == controller {
                            stale(&mut entry["conditions"]);
                        }
                    }
                    entries.push(theirs(list));
                }
                _ => continue,
            }
            object["status"][list] = json!(entries);
            server.apply(resource, object);
        }
    }
    for (index, mut object) in server.objects("gateways").into_iter().enumerate() {
        if index % 2 == 0 {
            object["status"]["conditions"] = json!([]);
            object["status"]["listeners"] = json!([]);
            server.apply("gateways", object);
        }
    }
}

/// Another controller's entry for a list of per-Gateway entries (`parents` or `ancestors`).
fn theirs(list: &str) -> Value {
    let mut entry = foreign_parent("other");
    if list == "ancestors"
        && let Some(fields) = entry.as_object_mut()
        && let Some(reference) = fields.remove("parentRef")
    {
        fields.insert("ancestorRef".to_owned(), reference);
    }
    entry
}

/// Makes every condition of a list `Unknown`, as a status left behind by an older version.
fn stale(conditions: &mut Value) {
    if let Some(conditions) = conditions.as_array_mut() {
        for condition in conditions {
            condition["status"] = json!("Unknown");
            condition["reason"] = json!("Pending");
        }
    }
}
