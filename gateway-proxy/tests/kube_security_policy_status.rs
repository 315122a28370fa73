//! Kubernetes mode: SecurityPolicy is watched and its `ancestors[]` are written by the status
//! writer like the other policies' (merge patch of the status subresource, only our entries):
//! one per Gateway, with `sectionName` for a policy on a listener, `Accepted` or `Conflicted`.

#![allow(clippy::unwrap_used)]

mod support;

use serde_json::{Value, json};
use support::apiserver::ApiServer;
use support::objects::{CONTROLLER, seed};
use support::{desired, free_port, start_backend, start_source, store_where, writer};

fn policy(name: &str, created: &str, target: Value) -> Value {
    json!({"apiVersion": "gantry.dev/v1alpha1", "kind": "SecurityPolicy",
        "metadata": {"name": name, "namespace": "default", "creationTimestamp": created},
        "spec": {"targetRefs": [target],
                 "authorization": {"rules": [{"action": "Allow",
                     "principal": {"clientCIDRs": ["127.0.0.0/8"]}}]}}})
}

/// Our entries as (ancestorRef, Accepted status, reason).
fn ours(server: &ApiServer, name: &str) -> Vec<(Value, String, String)> {
    let live = server.get("securitypolicies", "default", name).unwrap();
    live["status"]["ancestors"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["controllerName"] == CONTROLLER)
        .map(|a| {
            let c = &a["conditions"][0];
            assert_eq!(c["type"], "Accepted");
            (
                a["ancestorRef"].clone(),
                c["status"].as_str().unwrap().to_owned(),
                c["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn security_policy_ancestors_are_written() {
    let server = ApiServer::start().await;
    seed(&server, free_port(), start_backend().await);
    let route = json!({"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "name": "r1"});
    let listener = json!({"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "gw",
                          "sectionName": "http"});
    server.apply(
        "securitypolicies",
        policy("old", "2026-01-01T00:00:00Z", route.clone()),
    );
    server.apply(
        "securitypolicies",
        policy("young", "2026-01-02T00:00:00Z", route),
    );
    server.apply(
        "securitypolicies",
        policy("on-listener", "2026-01-03T00:00:00Z", listener),
    );
    let updates = start_source(&server);
    let store = store_where(&updates, "the three policies", |s| {
        s.security_policies.len() == 3 && s.http_routes.len() == 1
    })
    .await;
    let written = writer(&server)
        .reconcile(&store, &desired(&store))
        .await
        .unwrap();
    assert_eq!(written.policies, 3);
    let writes: Vec<_> = server
        .writes()
        .into_iter()
        .filter(|w| w.path.contains("/securitypolicies/"))
        .collect();
    assert!(
        writes.len() == 3
            && writes
                .iter()
                .all(|w| w.method == "PATCH" && w.path.ends_with("/status")),
        "{writes:#?}"
    );

    let gateway = json!({"group": "gateway.networking.k8s.io", "kind": "Gateway",
                         "namespace": "default", "name": "gw"});
    assert_eq!(
        ours(&server, "old"),
        [(gateway.clone(), "True".into(), "Accepted".into())]
    );
    assert_eq!(
        ours(&server, "young"),
        [(gateway.clone(), "False".into(), "Conflicted".into())]
    );
    let mut on_listener = gateway;
    on_listener["sectionName"] = json!("http");
    assert_eq!(
        ours(&server, "on-listener"),
        [(on_listener, "True".into(), "Accepted".into())]
    );
}
