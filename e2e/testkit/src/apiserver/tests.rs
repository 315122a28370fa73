//! The API server's kube-apiserver behaviours, over real HTTP: server-side apply, resourceVersion checks, generation, the status subresource.

#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

use super::ApiServer;
use super::managed::Operation;
use super::objects::{self, GW_API};

const GATEWAYS: &str = "/apis/gateway.networking.k8s.io/v1/namespaces/default/gateways";
const GW: &str = "/apis/gateway.networking.k8s.io/v1/namespaces/default/gateways/gw";
const APPLY: &str = "application/apply-patch+yaml";
const MERGE: &str = "application/merge-patch+json";
const JSON: &str = "application/json";

async fn call(
    server: &ApiServer,
    method: &str,
    path: &str,
    content_type: &str,
    body: &Value,
) -> (u16, Value) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let request = Request::builder()
        .method(method)
        .uri(format!("{}{path}", server.url()))
        .header("content-type", content_type)
        .header("user-agent", "tester/1.0")
        .body(Full::new(Bytes::from(serde_json::to_vec(body).unwrap())))
        .unwrap();
    let response = client.request(request).await.unwrap();
    let code = response.status().as_u16();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (code, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

async fn get(server: &ApiServer, path: &str) -> Value {
    let (code, object) = call(server, "GET", path, JSON, &Value::Null).await;
    assert_eq!(code, 200, "{object}");
    object
}

/// Server-side apply of a Gateway status by `manager`.
async fn apply_status(
    server: &ApiServer,
    manager: &str,
    force: bool,
    status: Value,
) -> (u16, Value) {
    let body = json!({"apiVersion": GW_API, "kind": "Gateway",
                      "metadata": {"name": "gw", "namespace": "default"}, "status": status});
    let query = format!("?fieldManager={manager}&force={force}");
    call(
        server,
        "PATCH",
        &format!("{GW}/status{query}"),
        APPLY,
        &body,
    )
    .await
}

fn condition(type_: &str, status: &str) -> Value {
    json!({"type": type_, "status": status, "reason": type_, "message": "",
           "lastTransitionTime": "2020-01-01T00:00:00Z"})
}

fn types(object: &Value) -> Vec<String> {
    object["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| c["type"].as_str().unwrap().to_owned())
        .collect()
}

async fn world() -> ApiServer {
    let server = ApiServer::start().await;
    server.apply("gateways", objects::gateway("default", "gw", "gantry", 80));
    server
}

#[tokio::test]
async fn apply_merges_conditions_by_type_and_records_each_manager() {
    let server = world().await;
    let (code, _) = apply_status(
        &server,
        "operator",
        true,
        json!({"conditions": [condition("Accepted", "True")],
               "addresses": [{"type": "IPAddress", "value": "10.0.0.1"}]}),
    )
    .await;
    assert_eq!(code, 200);
    let (code, object) = apply_status(
        &server,
        "proxy",
        true,
        json!({"conditions": [condition("Programmed", "True")],
               "listeners": [{"name": "http", "attachedRoutes": 1, "supportedKinds": [],
                              "conditions": [condition("Programmed", "True")]}]}),
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(types(&object), ["Accepted", "Programmed"]);
    assert_eq!(object["status"]["addresses"][0]["value"], "10.0.0.1");

    let entries = server.managed_fields("gateways", "default", "gw");
    let owners: Vec<(&str, Operation, Option<&str>)> = entries
        .iter()
        .map(|e| (e.manager.as_str(), e.operation, e.subresource.as_deref()))
        .collect();
    assert_eq!(
        owners,
        [
            ("operator", Operation::Apply, Some("status")),
            ("proxy", Operation::Apply, Some("status"))
        ]
    );
    let fields = &object["metadata"]["managedFields"][1]["fieldsV1"]["f:status"];
    assert!(
        fields["f:conditions"]["k:{\"type\":\"Programmed\"}"]["."].is_object(),
        "{fields}"
    );
    assert!(fields["f:listeners"]["k:{\"name\":\"http\"}"]["f:attachedRoutes"].is_object());
    assert_eq!(object["metadata"]["managedFields"][0]["operation"], "Apply");
    assert_eq!(object["metadata"]["managedFields"][0]["apiVersion"], GW_API);
}

#[tokio::test]
async fn a_field_a_manager_stops_applying_is_removed_unless_another_owns_it() {
    let server = world().await;
    apply_status(
        &server,
        "operator",
        true,
        json!({"conditions": [condition("Accepted", "True")],
               "addresses": [{"type": "IPAddress", "value": "10.0.0.1"}]}),
    )
    .await;
    apply_status(&server, "proxy", true,
        json!({"conditions": [condition("Programmed", "True")],
               "listeners": [{"name": "a", "attachedRoutes": 0}, {"name": "b", "attachedRoutes": 0}]})).await;

    // The operator stops applying addresses; the proxy stops applying listener `a`.
    let (_, object) = apply_status(
        &server,
        "operator",
        true,
        json!({"conditions": [condition("Accepted", "True")]}),
    )
    .await;
    assert!(object["status"].get("addresses").is_none(), "{object}");
    let (_, object) = apply_status(
        &server,
        "proxy",
        true,
        json!({"conditions": [condition("Programmed", "True")],
               "listeners": [{"name": "b", "attachedRoutes": 0}]}),
    )
    .await;
    assert_eq!(
        object["status"]["listeners"],
        json!([{"name": "b", "attachedRoutes": 0}])
    );
    assert_eq!(types(&object), ["Accepted", "Programmed"]);

    // A condition both apply with the same value stays when one of them lets go of it.
    apply_status(
        &server,
        "operator",
        false,
        json!({"conditions": [condition("Accepted", "True"), condition("Programmed", "True")]}),
    )
    .await;
    let (_, object) = apply_status(
        &server,
        "operator",
        false,
        json!({"conditions": [condition("Accepted", "True")]}),
    )
    .await;
    assert_eq!(
        types(&object),
        ["Accepted", "Programmed"],
        "the proxy still owns Programmed"
    );
    let (_, object) = apply_status(
        &server,
        "proxy",
        false,
        json!({"listeners": [{"name": "b", "attachedRoutes": 0}]}),
    )
    .await;
    assert_eq!(
        types(&object),
        ["Accepted"],
        "nobody owns Programmed any more"
    );
}

#[tokio::test]
async fn addresses_are_atomic_and_listeners_merge_by_name() {
    let server = world().await;
    apply_status(
        &server,
        "a",
        true,
        json!({"addresses": [{"value": "1"}, {"value": "2"}],
        "listeners": [{"name": "x", "attachedRoutes": 1}]}),
    )
    .await;
    let (_, object) = apply_status(
        &server,
        "b",
        true,
        json!({"addresses": [{"value": "3"}],
        "listeners": [{"name": "y", "attachedRoutes": 2}]}),
    )
    .await;
    assert_eq!(object["status"]["addresses"], json!([{"value": "3"}]));
    assert_eq!(
        object["status"]["listeners"],
        json!([{"name": "x", "attachedRoutes": 1}, {"name": "y", "attachedRoutes": 2}])
    );
    // `a` lost addresses to `b` (forced), so dropping them from its apply removes nothing.
    let (_, object) = apply_status(
        &server,
        "a",
        true,
        json!({"listeners": [{"name": "x", "attachedRoutes": 1}]}),
    )
    .await;
    assert_eq!(object["status"]["addresses"], json!([{"value": "3"}]));
}

#[tokio::test]
async fn a_conflicting_apply_without_force_is_refused_with_409() {
    let server = world().await;
    apply_status(
        &server,
        "operator",
        true,
        json!({"conditions": [condition("Accepted", "True")]}),
    )
    .await;
    let before = get(&server, GW).await;
    let (code, status) = apply_status(
        &server,
        "intruder",
        false,
        json!({"conditions": [condition("Accepted", "False")]}),
    )
    .await;
    assert_eq!(code, 409);
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["reason"], "Conflict");
    let message = status["message"].as_str().unwrap();
    assert!(
        message.starts_with("Apply failed with 1 conflict: conflict with \"operator\": .status.conditions[type=\"Accepted\"].status"),
        "{message}"
    );
    assert_eq!(
        status["details"]["causes"][0]["field"],
        ".status.conditions[type=\"Accepted\"].status"
    );
    assert_eq!(get(&server, GW).await, before, "nothing written");

    // The same value is no conflict: ownership is shared.
    let (code, _) = apply_status(
        &server,
        "friend",
        false,
        json!({"conditions": [condition("Accepted", "True")]}),
    )
    .await;
    assert_eq!(code, 200);

    // Forced, the field changes owner.
    let (code, object) = apply_status(
        &server,
        "intruder",
        true,
        json!({"conditions": [condition("Accepted", "False")]}),
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(object["status"]["conditions"][0]["status"], "False");
    let operator = server
        .managed_fields("gateways", "default", "gw")
        .into_iter()
        .find(|e| e.manager == "operator")
        .unwrap();
    assert!(
        !operator
            .fields
            .iter()
            .any(|p| p.last() == Some(&super::fields::Element::Field("status".into()))),
        "{:?}",
        operator.fields
    );
}

#[tokio::test]
async fn apply_needs_a_field_manager_and_creates_a_missing_object() {
    let server = ApiServer::start().await;
    let body = objects::gateway("default", "new", "gantry", 80);
    let (code, _) = call(&server, "PATCH", &format!("{GATEWAYS}/new"), APPLY, &body).await;
    assert_eq!(code, 400);
    let (code, object) = call(
        &server,
        "PATCH",
        &format!("{GATEWAYS}/new?fieldManager=op&force=true"),
        APPLY,
        &body,
    )
    .await;
    assert_eq!(code, 201);
    assert_eq!(object["metadata"]["generation"], 1);
    assert_eq!(object["metadata"]["managedFields"][0]["manager"], "op");
    let (code, _) = call(
        &server,
        "PATCH",
        &format!("{GATEWAYS}/other/status?fieldManager=op"),
        APPLY,
        &body,
    )
    .await;
    assert_eq!(code, 404, "a status apply does not create");
}

#[tokio::test]
async fn a_dry_run_stores_nothing_and_invalid_objects_are_refused_with_422() {
    let server = ApiServer::start().await;
    let path = "/apis/apps/v1/namespaces/apps/deployments/web";
    let deployment = |container: &str| {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": "web", "namespace": "apps"},
               "spec": {"template": {"spec": {"containers": [{"name": container, "image": "x"}]}}}})
    };
    let (code, answer) = call(
        &server,
        "PATCH",
        &format!("{path}?fieldManager=op&force=true&dryRun=All"),
        APPLY,
        &deployment("proxy"),
    )
    .await;
    assert_eq!(code, 201, "{answer}");
    assert_eq!(
        answer["spec"]["template"]["spec"]["containers"][0]["name"],
        "proxy"
    );
    assert_eq!(server.at(path), None, "a dry run stores nothing");
    assert!(
        server.writes().len() == 1,
        "but it is a request like any other"
    );

    for query in [
        "fieldManager=op&force=true&dryRun=All",
        "fieldManager=op&force=true",
    ] {
        let (code, status) = call(
            &server,
            "PATCH",
            &format!("{path}?{query}"),
            APPLY,
            &deployment("Proxy_1"),
        )
        .await;
        assert_eq!(code, 422, "{query}");
        assert_eq!(status["reason"], "Invalid");
        assert!(
            status["message"]
                .as_str()
                .unwrap_or_default()
                .starts_with("Deployment.apps \"web\" is invalid: spec.template.spec.containers[0].name: Invalid value: \"Proxy_1\""),
            "{status}"
        );
    }
    assert_eq!(server.at(path), None);
}

#[tokio::test]
async fn a_stale_resource_version_is_a_conflict_and_versions_only_increase() {
    let server = world().await;
    let first = get(&server, GW).await;
    let mut seen = vec![
        first["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .parse::<u64>()
            .unwrap(),
    ];

    let mut edited = first.clone();
    edited["metadata"]["labels"] = json!({"a": "1"});
    let (code, stored) = call(&server, "PUT", GW, JSON, &edited).await;
    assert_eq!(code, 200);
    seen.push(
        stored["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap(),
    );

    // Another object's write moves the same counter.
    server.apply(
        "httproutes",
        objects::http_route("default", "r", "gw", "/", "echo", 80),
    );
    let route = server.get("httproutes", "default", "r").unwrap();
    seen.push(
        route["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap(),
    );

    // PUT and merge patch carrying the first version are refused.
    let (code, status) = call(&server, "PUT", GW, JSON, &first).await;
    assert_eq!(
        (code, status["reason"].as_str()),
        (409, Some("Conflict")),
        "{status}"
    );
    assert_eq!(status["kind"], "Status");
    let patch = json!({"metadata": {"resourceVersion": first["metadata"]["resourceVersion"]},
                       "status": {"conditions": [condition("Accepted", "True")]}});
    let (code, status) = call(&server, "PATCH", &format!("{GW}/status"), MERGE, &patch).await;
    assert_eq!((code, status["reason"].as_str()), (409, Some("Conflict")));

    // With the current version they go through.
    let mut patch = patch;
    patch["metadata"]["resourceVersion"] = stored["metadata"]["resourceVersion"].clone();
    let (code, written) = call(&server, "PATCH", &format!("{GW}/status"), MERGE, &patch).await;
    assert_eq!(code, 200);
    seen.push(
        written["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap(),
    );
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");

    // A write that changes nothing is no write: same version.
    let (_, again) = call(
        &server,
        "PATCH",
        &format!("{GW}/status"),
        MERGE,
        &json!({"status": {"conditions": [condition("Accepted", "True")]}}),
    )
    .await;
    assert_eq!(
        again["metadata"]["resourceVersion"],
        written["metadata"]["resourceVersion"]
    );
}

#[tokio::test]
async fn generation_starts_at_one_and_moves_only_with_the_spec() {
    let server = ApiServer::start().await;
    let (code, created) = call(
        &server,
        "POST",
        GATEWAYS,
        JSON,
        &objects::gateway("default", "gw", "gantry", 80),
    )
    .await;
    assert_eq!(code, 201);
    assert_eq!(created["metadata"]["generation"], 1);

    // Status and metadata writes leave it alone.
    apply_status(
        &server,
        "proxy",
        true,
        json!({"conditions": [condition("Programmed", "True")]}),
    )
    .await;
    let (_, labelled) = call(
        &server,
        "PATCH",
        GW,
        MERGE,
        &json!({"metadata": {"labels": {"a": "b"}}}),
    )
    .await;
    assert_eq!(labelled["metadata"]["labels"]["a"], "b");
    assert_eq!(labelled["metadata"]["generation"], 1);

    // A spec change, by merge patch, PUT or apply, bumps it.
    let (_, patched) = call(
        &server,
        "PATCH",
        GW,
        MERGE,
        &json!({"spec": {"gatewayClassName": "other"}}),
    )
    .await;
    assert_eq!(patched["metadata"]["generation"], 2);
    let mut put = patched.clone();
    put["spec"]["gatewayClassName"] = json!("third");
    let (_, put) = call(&server, "PUT", GW, JSON, &put).await;
    assert_eq!(put["metadata"]["generation"], 3);
    let (_, applied) = call(
        &server,
        "PATCH",
        &format!("{GW}?fieldManager=me&force=true"),
        APPLY,
        &objects::gateway("default", "gw", "gantry", 81),
    )
    .await;
    assert_eq!(applied["metadata"]["generation"], 4);
    assert_eq!(
        types(&applied),
        ["Programmed"],
        "status untouched by the apply"
    );
}

#[tokio::test]
async fn the_status_subresource_and_the_main_resource_write_separate_parts() {
    let server = world().await;
    let original = get(&server, GW).await;

    // The main resource ignores `.status`.
    let mut body = original.clone();
    body["status"] = json!({"conditions": [condition("Accepted", "True")]});
    body["spec"]["gatewayClassName"] = json!("changed");
    let (_, stored) = call(&server, "PUT", GW, JSON, &body).await;
    assert_eq!(stored["spec"]["gatewayClassName"], "changed");
    assert!(stored.get("status").is_none(), "{stored}");
    let (_, stored) = call(
        &server,
        "PATCH",
        GW,
        MERGE,
        &json!({"status": {"addresses": []}}),
    )
    .await;
    assert!(stored.get("status").is_none());

    // `/status` ignores everything else.
    let mut body = stored.clone();
    body["spec"]["gatewayClassName"] = json!("ignored");
    body["status"] = json!({"conditions": [condition("Accepted", "True")]});
    let (_, stored) = call(&server, "PUT", &format!("{GW}/status"), JSON, &body).await;
    assert_eq!(stored["spec"]["gatewayClassName"], "changed");
    assert_eq!(types(&stored), ["Accepted"]);
    let (_, stored) = call(
        &server,
        "PATCH",
        &format!("{GW}/status"),
        MERGE,
        &json!({"spec": {"gatewayClassName": "ignored"}, "metadata": {"labels": {"x": "y"}}}),
    )
    .await;
    assert_eq!(stored["spec"]["gatewayClassName"], "changed");
    assert!(stored["metadata"].get("labels").is_none());
    let (_, stored) = call(
        &server,
        "PATCH",
        &format!("{GW}/status?fieldManager=m"),
        APPLY,
        &json!({"apiVersion": GW_API, "kind": "Gateway", "metadata": {"name": "gw"},
                "spec": {"gatewayClassName": "ignored"}}),
    )
    .await;
    assert_eq!(stored["spec"]["gatewayClassName"], "changed");
    assert_eq!(stored["metadata"]["generation"], 2);
}

#[tokio::test]
async fn updates_are_recorded_per_manager_as_update() {
    let server = world().await;
    let patch = json!({"status": {"conditions": [condition("Accepted", "True")]}});
    call(
        &server,
        "PATCH",
        &format!("{GW}/status?fieldManager=writer"),
        MERGE,
        &patch,
    )
    .await;
    call(
        &server,
        "PATCH",
        GW,
        MERGE,
        &json!({"metadata": {"labels": {"a": "b"}}}),
    )
    .await;
    let entries = server.managed_fields("gateways", "default", "gw");
    let owners: Vec<(&str, Operation, Option<&str>)> = entries
        .iter()
        .map(|e| (e.manager.as_str(), e.operation, e.subresource.as_deref()))
        .collect();
    assert_eq!(
        owners,
        [
            ("writer", Operation::Update, Some("status")),
            ("tester", Operation::Update, None)
        ],
        "the manager is fieldManager, else the user agent's program"
    );

    // An update takes the fields it changes from their owner, so that owner's next apply
    // that drops them does not remove them.
    apply_status(
        &server,
        "proxy",
        true,
        json!({"conditions": [condition("Programmed", "True")]}),
    )
    .await;
    call(&server, "PATCH", &format!("{GW}/status?fieldManager=writer"), MERGE,
        &json!({"status": {"conditions": [condition("Accepted", "True"), condition("Programmed", "False")]}})).await;
    let (_, object) = apply_status(&server, "proxy", true, json!({"listeners": []})).await;
    assert_eq!(types(&object), ["Accepted", "Programmed"]);
}

#[tokio::test]
async fn requests_are_logged_and_deletes_are_served() {
    let server = world().await;
    server.take_requests();
    get(&server, GW).await;
    let (code, _) = call(&server, "DELETE", GW, JSON, &Value::Null).await;
    assert_eq!(code, 200);
    let (code, _) = call(&server, "DELETE", GW, JSON, &Value::Null).await;
    assert_eq!(code, 404);
    let lines: Vec<String> = server
        .take_requests()
        .iter()
        .map(super::Recorded::line)
        .collect();
    assert_eq!(
        lines,
        [
            format!("GET {GW}"),
            format!("DELETE {GW}"),
            format!("DELETE {GW}")
        ]
    );
    assert!(server.get("gateways", "default", "gw").is_none());
    assert_eq!(server.writes().len(), 2, "reads are not writes");
}

#[tokio::test]
async fn lists_filter_by_label_selector() {
    let server = ApiServer::start().await;
    for (name, team) in [("a", "web"), ("b", "db")] {
        server.apply(
            "certificates",
            json!({"apiVersion": "cert-manager.io/v1", "kind": "Certificate",
                   "metadata": {"name": name, "namespace": "apps", "labels": {"team": team}}}),
        );
    }
    let list = "/apis/cert-manager.io/v1/namespaces/apps/certificates";
    let names = |list: &Value| -> Vec<String> {
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["metadata"]["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        names(&get(&server, &format!("{list}?labelSelector=team%3Dweb")).await),
        ["a"]
    );
    assert_eq!(
        names(&get(&server, &format!("{list}?labelSelector=team%21%3Dweb")).await),
        ["b"]
    );
    assert_eq!(
        names(&get(&server, &format!("{list}?labelSelector=team")).await),
        ["a", "b"]
    );
}

#[tokio::test]
async fn finalizers_hold_a_deleted_object_until_a_write_removes_the_last_one() {
    let server = world().await;
    let gw = get(&server, GW).await;
    let rv = gw["metadata"]["resourceVersion"].clone();
    let patch = json!({"metadata": {"finalizers": ["a/one", "b/two"], "resourceVersion": rv}});
    let (code, _) = call(&server, "PATCH", GW, MERGE, &patch).await;
    assert_eq!(code, 200);

    let (code, marked) = call(&server, "DELETE", GW, JSON, &json!({})).await;
    assert_eq!(code, 202, "{marked}");
    assert_eq!(
        marked["metadata"]["deletionTimestamp"],
        super::DELETION_TIMESTAMP
    );
    // Still there, and deleting again changes nothing.
    let (code, _) = call(&server, "DELETE", GW, JSON, &json!({})).await;
    assert_eq!(code, 202);
    let stored = get(&server, GW).await;
    assert_eq!(stored["metadata"]["finalizers"], json!(["a/one", "b/two"]));

    let patch = json!({"metadata": {"finalizers": ["b/two"]}});
    let (code, _) = call(&server, "PATCH", GW, MERGE, &patch).await;
    assert_eq!(code, 200);
    assert!(server.at(GW).is_some(), "one finalizer left");
    let patch = json!({"metadata": {"finalizers": [], "deletionTimestamp": null}});
    let (code, _) = call(&server, "PATCH", GW, MERGE, &patch).await;
    assert_eq!(code, 200);
    assert!(
        server.at(GW).is_none(),
        "the last finalizer removed deletes it"
    );
}

#[tokio::test]
async fn a_foreground_delete_waits_for_the_garbage_collector() {
    let server = world().await;
    let (code, marked) = call(
        &server,
        "DELETE",
        GW,
        JSON,
        &json!({"propagationPolicy": "Foreground"}),
    )
    .await;
    assert_eq!(code, 202);
    assert_eq!(
        marked["metadata"]["finalizers"],
        json!(["foregroundDeletion"])
    );
    assert!(server.at(GW).is_some());
    // The garbage collector, once the dependents are gone.
    server.delete("gateways", "default", "gw");
    assert!(server.at(GW).is_none());
    let (code, _) = call(&server, "DELETE", GW, JSON, &json!({})).await;
    assert_eq!(code, 404);
}
