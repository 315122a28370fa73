//! A Kubernetes API server over real HTTP on 127.0.0.1 that behaves like kube-apiserver wherever the proxy and the operator depend on it.

// What it serves: lists with resourceVersion, `?watch=true` streams of JSON lines, field and
// label selectors, `410 Gone` for compacted versions; GET/POST/PUT/PATCH/DELETE;
// `resourceVersion` increasing across all writes and checked (`409 Conflict` for a stale one);
// `metadata.generation` bumped only when the spec changes; a status subresource separate from
// the main resource; finalizers (a DELETE of an object with finalizers, or with
// `propagationPolicy: Foreground`, which adds `foregroundDeletion`, only sets
// `deletionTimestamp`; the object goes when a write removes its last finalizer; the garbage
// collector is not simulated: a test removes what it would with [`ApiServer::delete`]); server-side apply with `managedFields` per field manager (`managed`,
// `fields`); PATCH with `dryRun=All` (answered, not stored); `422 Invalid` for objects that
// break the validation rules `validation` implements; a log of every request.
//
// The Kubernetes-mode tests of `gantry-proxy`, the operator's controller tests and the
// watch-to-first-200 benchmark (`gantry-bench`) run against it; `objects` builds what they
// store.

// A test server, not the data path: one lock around its state is the simple choice, and a
// poisoned lock or a malformed object means the test or benchmark is broken.
#![allow(clippy::result_large_err, clippy::unwrap_used)]

pub mod fields;
pub mod managed;
pub mod objects;
#[cfg(test)]
mod tests;
mod validation;

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::StreamExt;
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, watch};

type Body = UnsyncBoxBody<Bytes, Infallible>;

/// A request the server received.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: String,
    pub content_type: String,
    pub body: Value,
    pub status: u16,
}

impl Recorded {
    /// `METHOD path`, for compact assertions.
    pub fn line(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

/// Resources served with a status subresource: writes to `/status` change only `.status`,
/// writes to the object itself never do.
pub const STATUS_SUBRESOURCE: &[&str] = &[
    "gatewayclasses",
    "gateways",
    "listenersets",
    "httproutes",
    "grpcroutes",
    "tlsroutes",
    "tcproutes",
    "udproutes",
    "backendtlspolicies",
    "xbackendtrafficpolicies",
    "backendconfigpolicies",
    "securitypolicies",
    "ratelimitpolicies",
    "consumers",
    "gatewayparameters",
    "deployments",
    "services",
    "horizontalpodautoscalers",
    "poddisruptionbudgets",
    "certificates",
    "namespaces",
];

fn has_status_subresource(resource: &str) -> bool {
    STATUS_SUBRESOURCE.contains(&resource)
}

#[derive(Clone, Debug)]
struct Event {
    rv: u64,
    resource: String,
    type_: &'static str,
    object: Value,
}

#[derive(Default)]
struct State {
    rv: u64,
    /// resource plural → (namespace, name) → object.
    objects: BTreeMap<String, BTreeMap<(String, String), Value>>,
    log: Vec<Event>,
    /// Watches from a resourceVersion below this get `410 Gone`.
    compacted: u64,
    writes: Vec<Recorded>,
    /// Every request, reads included; [`ApiServer::take_requests`] drains it.
    requests: Vec<Recorded>,
    /// Objects ((resource, ns, name)) whose next guarded write meets a concurrent change.
    conflicts: BTreeMap<(String, String, String), Value>,
    lists: BTreeMap<String, usize>,
    /// Resources answered with `404` (a CRD not installed).
    unserved: BTreeSet<String>,
    /// (resource, namespace) answered with `403`, as RBAC answers a subject without a grant
    /// there.
    forbidden: BTreeSet<(String, String)>,
}

/// The server; cheap to clone.
#[derive(Clone)]
pub struct ApiServer {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    events: broadcast::Sender<Event>,
    /// Bumped to end every open watch (an API server restart).
    generation: watch::Sender<u64>,
    /// Resources whose list requests wait until released.
    held: watch::Sender<BTreeSet<String>>,
}

impl ApiServer {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = Self {
            addr: listener.local_addr().unwrap(),
            state: Arc::default(),
            events: broadcast::channel(4096).0,
            generation: watch::Sender::new(0),
            held: watch::Sender::new(BTreeSet::new()),
        };
        let s = server.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let s = s.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let s = s.clone();
                        async move { Ok::<_, Infallible>(s.handle(req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        server
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Writes a kubeconfig pointing at this server into `dir`; returns its path.
    pub fn kubeconfig(&self, dir: &std::path::Path) -> std::path::PathBuf {
        let path = dir.join("kubeconfig");
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\nusers:\n- name: fake\n  user: {{}}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: default\ncurrent-context: fake\n",
            self.url()
        );
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Creates or replaces an object directly, as the cluster's other writers would (a user, a
    /// controller setting a Deployment's status): the object is stored as given, status
    /// included (kept from before when absent), managedFields kept from before when absent.
    /// `generation` starts at 1 (or at the one a new object carries, as if edited before) and
    /// is bumped when anything but metadata and status changed.
    pub fn apply(&self, resource: &str, object: Value) -> Value {
        let mut st = self.state.lock().unwrap();
        let key = key_of(&object);
        let previous = st.objects.get(resource).and_then(|m| m.get(&key)).cloned();
        let mut object = object;
        let generation = match &previous {
            Some(p) => next_generation(p, &object),
            None => object["metadata"]["generation"].as_i64().unwrap_or(1),
        };
        object["metadata"]["generation"] = json!(generation);
        if let Some(p) = &previous {
            if object.get("status").is_none() && !p["status"].is_null() {
                object["status"] = p["status"].clone();
            }
            if object["metadata"].get("managedFields").is_none()
                && !p["metadata"]["managedFields"].is_null()
            {
                object["metadata"]["managedFields"] = p["metadata"]["managedFields"].clone();
            }
            object["metadata"]["uid"] = p["metadata"]["uid"].clone();
        }
        let type_ = if previous.is_some() {
            "MODIFIED"
        } else {
            "ADDED"
        };
        self.store(&mut st, resource, object, type_)
    }

    pub fn delete(&self, resource: &str, namespace: &str, name: &str) {
        let mut st = self.state.lock().unwrap();
        let key = (namespace.to_owned(), name.to_owned());
        if let Some(mut object) = st.objects.get_mut(resource).and_then(|m| m.remove(&key)) {
            st.rv += 1;
            object["metadata"]["resourceVersion"] = json!(st.rv.to_string());
            self.emit(&mut st, resource, "DELETED", object);
        }
    }

    pub fn get(&self, resource: &str, namespace: &str, name: &str) -> Option<Value> {
        let st = self.state.lock().unwrap();
        st.objects
            .get(resource)
            .and_then(|m| m.get(&(namespace.to_owned(), name.to_owned())))
            .cloned()
    }

    /// The object at a URL path (`/apis/apps/v1/namespaces/apps/deployments/web`).
    pub fn at(&self, path: &str) -> Option<Value> {
        let target = Target::parse(path)?;
        self.get(
            &target.resource,
            &target.namespace,
            target.name.as_deref().unwrap_or(""),
        )
    }

    /// [`ApiServer::apply`] of `object` at a URL path; name and namespace come from the path.
    pub fn put(&self, path: &str, mut object: Value) -> Value {
        let target = Target::parse(path).unwrap();
        object["metadata"]["name"] = json!(target.name.as_deref().unwrap_or(""));
        if target.namespace.is_empty() {
            if let Some(metadata) = object["metadata"].as_object_mut() {
                metadata.remove("namespace");
            }
        } else {
            object["metadata"]["namespace"] = json!(target.namespace);
        }
        self.apply(&target.resource, object)
    }

    /// Every stored object of `resource`, ordered by namespace and name.
    pub fn objects(&self, resource: &str) -> Vec<Value> {
        let st = self.state.lock().unwrap();
        st.objects
            .get(resource)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    /// How many stored objects of `resource` satisfy `check`.
    pub fn count(&self, resource: &str, check: impl Fn(&Value) -> bool) -> usize {
        let st = self.state.lock().unwrap();
        st.objects
            .get(resource)
            .map_or(0, |m| m.values().filter(|o| check(o)).count())
    }

    /// Every write received so far (POST, PUT, PATCH, DELETE), including refused ones.
    pub fn writes(&self) -> Vec<Recorded> {
        self.state.lock().unwrap().writes.clone()
    }

    /// Every request (reads too) since the last call, which forgets them.
    pub fn take_requests(&self) -> Vec<Recorded> {
        std::mem::take(&mut self.state.lock().unwrap().requests)
    }

    /// `managedFields` of a stored object, by manager.
    pub fn managed_fields(
        &self,
        resource: &str,
        namespace: &str,
        name: &str,
    ) -> Vec<managed::Entry> {
        self.get(resource, namespace, name)
            .map(|o| managed::read(&o))
            .unwrap_or_default()
    }

    /// How many list requests a resource received.
    pub fn lists(&self, resource: &str) -> usize {
        self.state
            .lock()
            .unwrap()
            .lists
            .get(resource)
            .copied()
            .unwrap_or(0)
    }

    /// The next guarded write of this object first meets a concurrent change: `edit` is
    /// merged into the object (a new resourceVersion), so the write gets `409 Conflict`.
    pub fn conflict_next_write(&self, resource: &str, namespace: &str, name: &str, edit: Value) {
        self.state.lock().unwrap().conflicts.insert(
            (resource.to_owned(), namespace.to_owned(), name.to_owned()),
            edit,
        );
    }

    /// Forgets history: every watch ends, and resuming from any version seen so far gets
    /// `410 Gone`, forcing a relist.
    pub fn compact(&self) {
        {
            let mut st = self.state.lock().unwrap();
            st.compacted = st.rv + 1;
            st.log.clear();
        }
        self.generation.send_modify(|g| *g += 1);
    }

    /// Ends every open watch, as an API server restart does; history is kept.
    pub fn restart(&self) {
        self.generation.send_modify(|g| *g += 1);
    }

    /// Answers every request for `resource` with `404`, as for a CRD that is not installed.
    pub fn unserve(&self, resource: &str) {
        self.state
            .lock()
            .unwrap()
            .unserved
            .insert(resource.to_owned());
    }

    /// Answers every request for `resource` in `namespace` with `403 Forbidden`, as the API
    /// server does for a subject that holds no RoleBinding there.
    pub fn forbid(&self, resource: &str, namespace: &str) {
        self.state
            .lock()
            .unwrap()
            .forbidden
            .insert((resource.to_owned(), namespace.to_owned()));
    }

    /// Allows `resource` in `namespace` again (the RoleBinding arrived).
    pub fn allow(&self, resource: &str, namespace: &str) {
        self.state
            .lock()
            .unwrap()
            .forbidden
            .remove(&(resource.to_owned(), namespace.to_owned()));
    }

    /// Answers requests for `resource` at `version` only (`v1alpha2`) with `404`, as the API
    /// server does for a version the CRD lists with `served: false`; other versions still
    /// serve the same objects, as conversion does.
    pub fn unserve_version(&self, resource: &str, version: &str) {
        self.state
            .lock()
            .unwrap()
            .unserved
            .insert(format!("{resource}@{version}"));
    }

    fn is_unserved(&self, target: &Target) -> bool {
        let state = self.state.lock().unwrap();
        let version = target.api_version.rsplit('/').next().unwrap_or_default();
        state.unserved.contains(&target.resource)
            || state
                .unserved
                .contains(&format!("{}@{version}", target.resource))
    }

    /// Serves `resource` again (the CRD got installed).
    pub fn serve(&self, resource: &str) {
        self.state.lock().unwrap().unserved.remove(resource);
    }

    /// List requests of `resource` wait until [`ApiServer::release`].
    pub fn hold(&self, resource: &str) {
        self.held.send_modify(|h| {
            h.insert(resource.to_owned());
        });
    }

    pub fn release(&self, resource: &str) {
        self.held.send_modify(|h| {
            h.remove(resource);
        });
    }

    fn store(
        &self,
        st: &mut State,
        resource: &str,
        mut object: Value,
        type_: &'static str,
    ) -> Value {
        st.rv += 1;
        object["metadata"]["resourceVersion"] = json!(st.rv.to_string());
        if object["metadata"].get("uid").is_none() {
            object["metadata"]["uid"] = json!(format!("uid-{}", st.rv));
        }
        let key = key_of(&object);
        st.objects
            .entry(resource.to_owned())
            .or_default()
            .insert(key, object.clone());
        self.emit(st, resource, type_, object.clone());
        object
    }

    fn emit(&self, st: &mut State, resource: &str, type_: &'static str, object: Value) {
        let event = Event {
            rv: st.rv,
            resource: resource.to_owned(),
            type_,
            object,
        };
        st.log.push(event.clone());
        let _ = self.events.send(event);
    }

    async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        let query = req.uri().query().unwrap_or("").to_owned();
        let header = |name: http::header::HeaderName| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned()
        };
        let content_type = header(http::header::CONTENT_TYPE);
        let user_agent = header(http::header::USER_AGENT);
        let bytes = req.into_body().collect().await.unwrap().to_bytes();
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let params = parse_query(&query);
        let record = |response: &Response<Body>| Recorded {
            method: method.to_string(),
            path: path.clone(),
            query: query.clone(),
            content_type: content_type.clone(),
            body: body.clone(),
            status: response.status().as_u16(),
        };
        let response = match Target::parse(&path) {
            None => status(404, "NotFound", &format!("no route for {path}")),
            Some(target) if self.is_unserved(&target) => status(
                404,
                "NotFound",
                "the server could not find the requested resource",
            ),
            Some(target)
                if self
                    .state
                    .lock()
                    .unwrap()
                    .forbidden
                    .contains(&(target.resource.clone(), target.namespace.clone())) =>
            {
                status(
                    403,
                    "Forbidden",
                    &format!(
                        "{} is forbidden in the namespace {}",
                        target.resource, target.namespace
                    ),
                )
            }
            Some(target) => {
                let manager = params
                    .get("fieldManager")
                    .cloned()
                    .unwrap_or_else(|| default_manager(&user_agent));
                match method {
                    Method::GET
                        if target.name.is_none()
                            && params.get("watch").is_some_and(|w| w == "true" || w == "1") =>
                    {
                        let response = self.watch(target, &params);
                        self.state.lock().unwrap().requests.push(record(&response));
                        return response;
                    }
                    Method::GET if target.name.is_none() => self.list(&target, &params).await,
                    Method::GET => self.get_one(&target),
                    Method::POST => self.create(&target, body.clone(), &manager),
                    Method::PUT => self.replace(&target, body.clone(), &manager),
                    Method::PATCH => {
                        self.patch(&target, &content_type, body.clone(), &manager, &params)
                    }
                    Method::DELETE => self.delete_one(&target, &body, &params),
                    _ => status(405, "MethodNotAllowed", "unsupported"),
                }
            }
        };
        let recorded = record(&response);
        let mut st = self.state.lock().unwrap();
        if method != Method::GET {
            st.writes.push(recorded.clone());
        }
        st.requests.push(recorded);
        response
    }

    async fn list(&self, target: &Target, params: &BTreeMap<String, String>) -> Response<Body> {
        let mut held = self.held.subscribe();
        let _ = held.wait_for(|h| !h.contains(&target.resource)).await;
        let mut st = self.state.lock().unwrap();
        *st.lists.entry(target.resource.clone()).or_default() += 1;
        let selector = params.get("fieldSelector").cloned().unwrap_or_default();
        let labels = params.get("labelSelector").cloned().unwrap_or_default();
        let items: Vec<Value> = st
            .objects
            .get(&target.resource)
            .into_iter()
            .flat_map(|m| m.values())
            .filter(|o| target.matches(o) && fields_match(&selector, o) && labels_match(&labels, o))
            .cloned()
            .collect();
        json_response(
            200,
            &json!({
                "apiVersion": "v1",
                "kind": "List",
                "metadata": { "resourceVersion": st.rv.to_string() },
                "items": items,
            }),
        )
    }

    fn watch(&self, target: Target, params: &BTreeMap<String, String>) -> Response<Body> {
        let from: u64 = params
            .get("resourceVersion")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let selector = params.get("fieldSelector").cloned().unwrap_or_default();
        let labels = params.get("labelSelector").cloned().unwrap_or_default();
        let wanted = move |e: &Event| {
            e.resource == target.resource
                && target.matches(&e.object)
                && fields_match(&selector, &e.object)
                && labels_match(&labels, &e.object)
        };
        let mut live = self.events.subscribe();
        let mut ended = self.generation.subscribe();
        let (replay, gone) = {
            let st = self.state.lock().unwrap();
            let gone = from < st.compacted;
            let replay: Vec<Event> = st.log.iter().filter(|e| e.rv > from).cloned().collect();
            (replay, gone)
        };
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Bytes>();
        let line = |type_: &str, object: &Value| {
            let mut text =
                serde_json::to_string(&json!({ "type": type_, "object": object })).unwrap();
            text.push('\n');
            Bytes::from(text)
        };
        if gone {
            let _ = tx.send(line(
                "ERROR",
                &json!({"apiVersion": "v1", "kind": "Status", "status": "Failure",
                        "message": "too old resource version", "reason": "Expired", "code": 410}),
            ));
        } else {
            tokio::spawn(async move {
                let mut last = from;
                for e in replay {
                    if wanted(&e) {
                        let _ = tx.send(line(e.type_, &e.object));
                    }
                    last = last.max(e.rv);
                }
                loop {
                    tokio::select! {
                        event = live.recv() => match event {
                            Ok(e) if e.rv > last => {
                                last = e.rv;
                                if wanted(&e) && tx.send(line(e.type_, &e.object)).is_err() {
                                    return;
                                }
                            }
                            Ok(_) => {}
                            Err(_) => return,
                        },
                        _ = ended.changed() => return,
                    }
                }
            });
        }
        let stream = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv()
                .await
                .map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
        });
        Response::builder()
            .status(200)
            .header("content-type", "application/json")
            .body(BodyExt::boxed_unsync(StreamBody::new(stream.boxed())))
            .unwrap()
    }

    fn get_one(&self, target: &Target) -> Response<Body> {
        match self.get(
            &target.resource,
            &target.namespace,
            target.name.as_deref().unwrap_or(""),
        ) {
            Some(o) => json_response(200, &o),
            None => status(404, "NotFound", "not found"),
        }
    }

    fn create(&self, target: &Target, mut object: Value, manager: &str) -> Response<Body> {
        let mut st = self.state.lock().unwrap();
        if !target.namespace.is_empty() {
            object["metadata"]["namespace"] = json!(target.namespace);
        }
        if object["metadata"]["name"]
            .as_str()
            .is_none_or(str::is_empty)
            && let Some(prefix) = object["metadata"]["generateName"].as_str()
        {
            object["metadata"]["name"] = json!(format!("{prefix}{}", st.rv + 1));
        }
        let key = key_of(&object);
        if st
            .objects
            .get(&target.resource)
            .is_some_and(|m| m.contains_key(&key))
        {
            return status(409, "AlreadyExists", "already exists");
        }
        if has_status_subresource(&target.resource)
            && let Some(map) = object.as_object_mut()
        {
            map.remove("status");
        }
        if let Some(metadata) = object["metadata"].as_object_mut() {
            for field in ["resourceVersion", "uid", "managedFields", "generation"] {
                metadata.remove(field);
            }
        }
        let object = managed::update(None, object, &target.write(manager));
        let stored = self.commit(&mut st, target, None, object);
        json_response(201, &stored)
    }

    /// The current object, after any injected concurrent change; or a 404.
    fn current(&self, st: &mut State, target: &Target) -> Result<Value, Response<Body>> {
        let name = target.name.clone().unwrap_or_default();
        let id = (
            target.resource.clone(),
            target.namespace.clone(),
            name.clone(),
        );
        let Some(current) = st
            .objects
            .get(&target.resource)
            .and_then(|m| m.get(&(target.namespace.clone(), name)))
            .cloned()
        else {
            return Err(status(404, "NotFound", "not found"));
        };
        if let Some(edit) = st.conflicts.remove(&id) {
            let mut changed = current;
            merge(&mut changed, &edit);
            return Ok(self.store(st, &target.resource, changed, "MODIFIED"));
        }
        Ok(current)
    }

    /// Stores `next` in place of `current` (`None`: a new object): `generation` set, a new
    /// resourceVersion and a watch event. A write that changes nothing stores nothing.
    fn commit(
        &self,
        st: &mut State,
        target: &Target,
        current: Option<&Value>,
        mut next: Value,
    ) -> Value {
        next["metadata"]["generation"] = json!(match current {
            Some(c) => next_generation(c, &next),
            None => 1,
        });
        if let Some(current) = current {
            next["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"].clone();
            next["metadata"]["uid"] = current["metadata"]["uid"].clone();
            for field in ["deletionTimestamp", "deletionGracePeriodSeconds"] {
                match current["metadata"].get(field) {
                    Some(value) => next["metadata"][field] = value.clone(),
                    None => {
                        if let Some(metadata) = next["metadata"].as_object_mut() {
                            metadata.remove(field);
                        }
                    }
                }
            }
            if next == *current {
                return next;
            }
            // A write that removes the last finalizer of an object marked for deletion
            // deletes it.
            if !current["metadata"]["deletionTimestamp"].is_null()
                && next["metadata"]["finalizers"]
                    .as_array()
                    .is_none_or(Vec::is_empty)
            {
                let key = key_of(current);
                if let Some(map) = st.objects.get_mut(&target.resource) {
                    map.remove(&key);
                }
                st.rv += 1;
                next["metadata"]["resourceVersion"] = json!(st.rv.to_string());
                self.emit(st, &target.resource, "DELETED", next.clone());
                return next;
            }
        }
        let type_ = if current.is_some() {
            "MODIFIED"
        } else {
            "ADDED"
        };
        self.store(st, &target.resource, next, type_)
    }

    /// The object a write to the main resource or to `/status` leaves: only `.status` from
    /// `written` through the status subresource; everything but `.status` otherwise (for
    /// resources with a status subresource).
    fn scoped(target: &Target, current: &Value, written: Value) -> Value {
        if !has_status_subresource(&target.resource) {
            return written;
        }
        let mut next;
        if target.is_status() {
            next = current.clone();
            match written.get("status") {
                Some(s) if !s.is_null() => next["status"] = s.clone(),
                _ => {
                    if let Some(map) = next.as_object_mut() {
                        map.remove("status");
                    }
                }
            }
        } else {
            next = written;
            match current.get("status") {
                Some(s) => next["status"] = s.clone(),
                None => {
                    if let Some(map) = next.as_object_mut() {
                        map.remove("status");
                    }
                }
            }
        }
        next
    }

    fn replace(&self, target: &Target, body: Value, manager: &str) -> Response<Body> {
        let mut st = self.state.lock().unwrap();
        let current = match self.current(&mut st, target) {
            Ok(c) => c,
            Err(r) => return r,
        };
        if let Some(rv) = body["metadata"]["resourceVersion"].as_str()
            && Some(rv) != current["metadata"]["resourceVersion"].as_str()
        {
            return conflict(target);
        }
        let mut written = body;
        written["metadata"]["managedFields"] = current["metadata"]["managedFields"].clone();
        let next = Self::scoped(target, &current, written);
        let next = managed::update(Some(&current), next, &target.write(manager));
        let stored = self.commit(&mut st, target, Some(&current), next);
        json_response(200, &stored)
    }

    fn patch(
        &self,
        target: &Target,
        content_type: &str,
        body: Value,
        manager: &str,
        params: &BTreeMap<String, String>,
    ) -> Response<Body> {
        let mut st = self.state.lock().unwrap();
        let apply = content_type.starts_with("application/apply-patch");
        if apply && !params.contains_key("fieldManager") {
            return status(
                400,
                "BadRequest",
                "PATCH with application/apply-patch+yaml requires fieldManager",
            );
        }
        let current = match self.current(&mut st, target) {
            Ok(c) => Some(c),
            // Server-side apply creates a missing object (not through a subresource).
            Err(_) if apply && !target.is_status() => None,
            Err(r) => return r,
        };
        if let (Some(current), Some(rv)) = (&current, body["metadata"]["resourceVersion"].as_str())
            && Some(rv) != current["metadata"]["resourceVersion"].as_str()
        {
            return conflict(target);
        }
        let next = if apply {
            let mut config = body.clone();
            if let Some(metadata) = config["metadata"].as_object_mut() {
                metadata.remove("resourceVersion");
                metadata.remove("managedFields");
            }
            if !target.namespace.is_empty() {
                config["metadata"]["namespace"] = json!(target.namespace);
            }
            if has_status_subresource(&target.resource)
                && let Some(map) = config.as_object_mut()
            {
                if target.is_status() {
                    map.retain(|k, _| {
                        k == "status" || k == "metadata" || k == "apiVersion" || k == "kind"
                    });
                } else {
                    map.remove("status");
                }
            }
            let force = params.get("force").is_some_and(|f| f == "true");
            match managed::apply(current.as_ref(), &config, &target.write(manager), force) {
                Ok(next) => next,
                Err(conflicts) => return apply_conflict(&conflicts),
            }
        } else if content_type.starts_with("application/merge-patch") {
            let Some(current) = &current else {
                return status(404, "NotFound", "not found");
            };
            let mut patch = body.clone();
            if let Some(m) = patch.get_mut("metadata").and_then(Value::as_object_mut) {
                m.remove("resourceVersion");
                m.remove("managedFields");
            }
            let mut next = current.clone();
            merge(&mut next, &patch);
            let next = Self::scoped(target, current, next);
            managed::update(Some(current), next, &target.write(manager))
        } else {
            return status(415, "UnsupportedMediaType", content_type);
        };
        let created = current.is_none();
        if let Some(message) = validation::invalid(&target.resource, &next) {
            return status(422, "Invalid", &message);
        }
        // A dry run answers what the write would leave and stores nothing.
        if params.get("dryRun").is_some_and(|d| d == "All") {
            return json_response(if created { 201 } else { 200 }, &next);
        }
        let stored = self.commit(&mut st, target, current.as_ref(), next);
        json_response(if created { 201 } else { 200 }, &stored)
    }

    /// As kube-apiserver: an object with finalizers, or deleted with `propagationPolicy:
    /// Foreground` (which adds the `foregroundDeletion` finalizer the garbage collector removes
    /// once the dependents are gone), is only marked (`deletionTimestamp`) and answered with
    /// `202`; it goes when a write removes its last finalizer. Others go at once.
    fn delete_one(
        &self,
        target: &Target,
        options: &Value,
        params: &BTreeMap<String, String>,
    ) -> Response<Body> {
        let name = target.name.clone().unwrap_or_default();
        let Some(current) = self.get(&target.resource, &target.namespace, &name) else {
            return status(404, "NotFound", "not found");
        };
        let policy = options["propagationPolicy"]
            .as_str()
            .map(str::to_owned)
            .or_else(|| params.get("propagationPolicy").cloned());
        let mut finalizers: Vec<Value> = current["metadata"]["finalizers"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let marked = !current["metadata"]["deletionTimestamp"].is_null();
        let foreground = json!("foregroundDeletion");
        if policy.as_deref() == Some("Foreground") && !marked && !finalizers.contains(&foreground) {
            finalizers.push(foreground);
        }
        if finalizers.is_empty() {
            self.delete(&target.resource, &target.namespace, &name);
            return json_response(
                200,
                &json!({"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Success",
                        "details": {"name": name, "kind": target.resource}, "code": 200}),
            );
        }
        if marked {
            return json_response(202, &current);
        }
        let mut st = self.state.lock().unwrap();
        let mut next = current;
        next["metadata"]["finalizers"] = json!(finalizers);
        next["metadata"]["deletionTimestamp"] = json!(DELETION_TIMESTAMP);
        next["metadata"]["deletionGracePeriodSeconds"] = json!(0);
        let stored = self.store(&mut st, &target.resource, next, "MODIFIED");
        json_response(202, &stored)
    }
}

/// The `deletionTimestamp` of objects marked for deletion (no clock: tests assert no times).
pub const DELETION_TIMESTAMP: &str = "2000-01-01T00:00:00Z";

/// What a URL path names.
#[derive(Clone, Debug)]
struct Target {
    /// `v1`, `apps/v1`, `gateway.networking.k8s.io/v1`.
    api_version: String,
    resource: String,
    /// Empty for cluster-scoped objects and cluster-wide lists.
    namespace: String,
    name: Option<String>,
    subresource: Option<String>,
}

impl Target {
    fn parse(path: &str) -> Option<Self> {
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        let (api_version, rest) = match *parts.first()? {
            "api" => ((*parts.get(1)?).to_owned(), parts.get(2..)?),
            "apis" => (
                format!("{}/{}", parts.get(1)?, parts.get(2)?),
                parts.get(3..)?,
            ),
            _ => return None,
        };
        let owned = |s: Option<&&str>| s.map(|s| (*s).to_owned());
        Some(if rest.len() >= 3 && rest[0] == "namespaces" {
            Self {
                api_version,
                namespace: rest[1].to_owned(),
                resource: rest[2].to_owned(),
                name: owned(rest.get(3)),
                subresource: owned(rest.get(4)),
            }
        } else {
            Self {
                api_version,
                resource: (*rest.first()?).to_owned(),
                namespace: String::new(),
                name: owned(rest.get(1)),
                subresource: owned(rest.get(2)),
            }
        })
    }

    fn is_status(&self) -> bool {
        self.subresource.as_deref() == Some("status")
    }

    /// How a write through this URL is tracked in managedFields.
    fn write<'a>(&'a self, manager: &'a str) -> managed::Write<'a> {
        let status_only = self.is_status();
        let split = has_status_subresource(&self.resource);
        managed::Write {
            manager,
            subresource: self.subresource.as_deref(),
            api_version: &self.api_version,
            scope: if !split {
                |_| true
            } else if status_only {
                |p| fields::under(p, "status")
            } else {
                |p| !fields::under(p, "status")
            },
        }
    }

    fn matches(&self, object: &Value) -> bool {
        self.namespace.is_empty()
            || object["metadata"]["namespace"].as_str() == Some(&self.namespace)
    }
}

fn key_of(object: &Value) -> (String, String) {
    (
        object["metadata"]["namespace"]
            .as_str()
            .unwrap_or("")
            .to_owned(),
        object["metadata"]["name"].as_str().unwrap_or("").to_owned(),
    )
}

fn parse_query(query: &str) -> BTreeMap<String, String> {
    query
        .split('&')
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.to_owned(), decode(v)))
        .collect()
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `a=b,c!=d` on `metadata.name`, `metadata.namespace` and top-level fields such as `type`.
fn fields_match(selector: &str, object: &Value) -> bool {
    selector.split(',').filter(|s| !s.is_empty()).all(|term| {
        let (field, value, equal) = match term.split_once("!=") {
            Some((f, v)) => (f, v, false),
            None => match term.split_once("==").or_else(|| term.split_once('=')) {
                Some((f, v)) => (f, v, true),
                None => return true,
            },
        };
        let mut at = object;
        for part in field.split('.') {
            at = &at[part];
        }
        (at.as_str().unwrap_or("") == value) == equal
    })
}

/// `a=b,c!=d,e` on labels (equality, inequality, existence).
fn labels_match(selector: &str, object: &Value) -> bool {
    let labels = &object["metadata"]["labels"];
    selector.split(',').filter(|s| !s.is_empty()).all(|term| {
        if let Some((k, v)) = term.split_once("!=") {
            labels[k].as_str() != Some(v)
        } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
            labels[k].as_str() == Some(v)
        } else {
            labels.get(term).is_some()
        }
    })
}

/// The generation after a write from `current` to `next`: bumped when anything but metadata
/// and status changed (the spec, for kinds that have one).
fn next_generation(current: &Value, next: &Value) -> i64 {
    let generation = current["metadata"]["generation"].as_i64().unwrap_or(1);
    let content = |o: &Value| -> Value {
        let mut o = o.clone();
        if let Some(map) = o.as_object_mut() {
            map.remove("metadata");
            map.remove("status");
        }
        o
    };
    if content(current) == content(next) {
        generation
    } else {
        generation + 1
    }
}

/// The manager of a write without `fieldManager`: the user agent's program name, as the API
/// server derives it.
fn default_manager(user_agent: &str) -> String {
    match user_agent.split('/').next() {
        Some(name) if !name.is_empty() => name.to_owned(),
        _ => "unknown".to_owned(),
    }
}

fn conflict(target: &Target) -> Response<Body> {
    status(
        409,
        "Conflict",
        &format!(
            "Operation cannot be fulfilled on {} \"{}\": the object has been modified; please apply your changes to the latest version and try again",
            target.resource,
            target.name.as_deref().unwrap_or("")
        ),
    )
}

fn apply_conflict(conflicts: &managed::Conflicts) -> Response<Body> {
    let causes: Vec<Value> = conflicts
        .iter()
        .map(|(manager, path)| {
            json!({"type": "FieldManagerConflict", "message": format!("conflict with \"{manager}\""),
                   "field": fields::display(path)})
        })
        .collect();
    json_response(
        409,
        &json!({"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure",
                "message": managed::conflict_message(conflicts), "reason": "Conflict",
                "details": {"causes": causes}, "code": 409}),
    )
}

/// RFC 7386 JSON merge patch.
fn merge(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = json!({});
            }
            for (k, v) in p {
                if v.is_null() {
                    target.as_object_mut().unwrap().remove(k);
                } else {
                    merge(&mut target[k], v);
                }
            }
        }
        other => *target = other.clone(),
    }
}

fn json_response(code: u16, value: &Value) -> Response<Body> {
    Response::builder()
        .status(StatusCode::from_u16(code).unwrap())
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(serde_json::to_vec(value).unwrap())).boxed_unsync())
        .unwrap()
}

fn status(code: u16, reason: &str, message: &str) -> Response<Body> {
    json_response(
        code,
        &json!({"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure",
                "message": message, "reason": reason, "code": code}),
    )
}
