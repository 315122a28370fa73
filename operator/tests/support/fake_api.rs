//! An in-memory Kubernetes API for controller tests: stores objects by path, answers get, list
//! (with equality label selectors), server-side apply, delete and event creation, and records
//! every call so tests can assert on them. Built on `tower_test::mock::pair`, as kube's own
//! controller examples are; nothing touches a real cluster.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use http::{Request, Response, StatusCode};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};

/// One recorded API call.
#[derive(Clone, Debug)]
pub struct Call {
    pub method: String,
    pub path: String,
    pub query: String,
    pub body: Option<Value>,
}

impl Call {
    /// `METHOD path` for compact assertions.
    pub fn line(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

/// Where an object lives, parsed from a request path.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Location {
    prefix: String,
    namespace: Option<String>,
    resource: String,
    name: Option<String>,
    subresource: Option<String>,
}

fn parse_path(path: &str) -> Location {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (prefix, rest) = if segments[0] == "api" {
        (segments[..2].join("/"), &segments[2..])
    } else {
        (segments[..3].join("/"), &segments[3..])
    };
    let (namespace, rest) = if rest.len() >= 2 && rest[0] == "namespaces" && rest.len() > 2 {
        (Some(rest[1].to_string()), &rest[2..])
    } else {
        (None, rest)
    };
    Location {
        prefix,
        namespace,
        resource: rest[0].to_string(),
        name: rest.get(1).map(|s| s.to_string()),
        subresource: rest.get(2).map(|s| s.to_string()),
    }
}

fn key(l: &Location) -> String {
    format!(
        "/{}/{}{}/{}",
        l.prefix,
        l.namespace
            .as_ref()
            .map(|n| format!("namespaces/{n}/"))
            .unwrap_or_default(),
        l.resource,
        l.name.clone().unwrap_or_default()
    )
}

/// The fake API server.
#[derive(Default)]
pub struct FakeApi {
    objects: Mutex<BTreeMap<String, Value>>,
    calls: Mutex<Vec<Call>>,
}

impl FakeApi {
    /// Stores `object` at `path` (e.g. `/apis/apps/v1/namespaces/apps/deployments/web`).
    pub fn put(&self, path: &str, object: Value) {
        self.objects
            .lock()
            .unwrap()
            .insert(path.to_string(), object);
    }

    /// The object at `path`.
    pub fn get(&self, path: &str) -> Option<Value> {
        self.objects.lock().unwrap().get(path).cloned()
    }

    /// Every call so far, and forget them.
    pub fn take_calls(&self) -> Vec<Call> {
        std::mem::take(&mut *self.calls.lock().unwrap())
    }

    /// A client talking to this fake.
    pub fn client(self: &Arc<Self>) -> Client {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let fake = self.clone();
        tokio::spawn(async move {
            while let Some((request, send)) = handle.next_request().await {
                let (parts, body) = request.into_parts();
                let bytes = body.collect_bytes().await.unwrap();
                let body: Option<Value> = serde_json::from_slice(&bytes).ok();
                let call = Call {
                    method: parts.method.to_string(),
                    path: parts.uri.path().to_string(),
                    query: parts.uri.query().unwrap_or_default().to_string(),
                    body,
                };
                let (status, reply) = fake.answer(&call);
                fake.calls.lock().unwrap().push(call);
                send.send_response(
                    Response::builder()
                        .status(status)
                        .header("content-type", "application/json")
                        .body(Body::from(serde_json::to_vec(&reply).unwrap()))
                        .unwrap(),
                );
            }
        });
        Client::new(service, "default")
    }

    fn answer(&self, call: &Call) -> (StatusCode, Value) {
        let location = parse_path(&call.path);
        let mut objects = self.objects.lock().unwrap();
        match (call.method.as_str(), &location.name) {
            ("GET", Some(_)) => match objects.get(&key(&location)) {
                Some(o) => (StatusCode::OK, o.clone()),
                None => not_found(),
            },
            ("GET", None) => {
                let selector = query_param(&call.query, "labelSelector");
                let items: Vec<Value> = objects
                    .iter()
                    .filter(|(k, _)| {
                        let l = parse_path(k);
                        l.prefix == location.prefix
                            && l.resource == location.resource
                            && (location.namespace.is_none() || l.namespace == location.namespace)
                    })
                    .map(|(_, v)| v.clone())
                    .filter(|v| matches_selector(v, selector.as_deref()))
                    .collect();
                (
                    StatusCode::OK,
                    json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": "1"}, "items": items}),
                )
            }
            ("PATCH", Some(_)) => {
                let path = key(&location);
                let body = call.body.clone().unwrap_or(Value::Null);
                let mut object = objects.get(&path).cloned().unwrap_or_else(|| body.clone());
                if location.subresource.as_deref() == Some("status") {
                    object["status"] = body["status"].clone();
                } else {
                    // Approximates server-side apply: applied fields win, fields the server
                    // set (clusterIP, status) stay.
                    merge(&mut object, body);
                }
                object["metadata"]["resourceVersion"] = json!("2");
                objects.insert(path, object.clone());
                (StatusCode::OK, object)
            }
            ("DELETE", Some(_)) => match objects.remove(&key(&location)) {
                Some(_) => (
                    StatusCode::OK,
                    json!({"apiVersion": "v1", "kind": "Status", "status": "Success", "code": 200}),
                ),
                None => not_found(),
            },
            ("POST", None) => (
                StatusCode::CREATED,
                call.body.clone().unwrap_or(Value::Null),
            ),
            _ => not_found(),
        }
    }
}

fn merge(into: &mut Value, from: Value) {
    match (into, from) {
        (Value::Object(into), Value::Object(from)) => {
            for (k, v) in from {
                merge(into.entry(k).or_insert(Value::Null), v);
            }
        }
        (into, from) => *into = from,
    }
}

fn not_found() -> (StatusCode, Value) {
    (
        StatusCode::NOT_FOUND,
        json!({"apiVersion": "v1", "kind": "Status", "status": "Failure", "reason": "NotFound", "message": "not found", "code": 404}),
    )
}

fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == name).then(|| {
            v.replace("%3D", "=")
                .replace("%2C", ",")
                .replace("%2F", "/")
        })
    })
}

fn matches_selector(object: &Value, selector: Option<&str>) -> bool {
    let Some(selector) = selector.filter(|s| !s.is_empty()) else {
        return true;
    };
    selector.split(',').all(|term| {
        let Some((k, v)) = term.split_once('=') else {
            return false;
        };
        object["metadata"]["labels"][k].as_str() == Some(v)
    })
}
