//! Kubernetes mode: RateLimitPolicy is watched and its `ancestors[]` are written by the status
//! writer like the other policies' (merge patch of the status subresource, only our entries):
//! `Accepted`, or `Invalid` with what to fix.

#![allow(clippy::unwrap_used)]

mod support;

use serde_json::{Value, json};
use support::apiserver::ApiServer;
use support::objects::{CONTROLLER, seed};
use support::{desired, free_port, start_backend, start_source, store_where, writer};

fn policy(name: &str, cidr: &str) -> Value {
    json!({"apiVersion": "gantry.dev/v1alpha1", "kind": "RateLimitPolicy",
        "metadata": {"name": name, "namespace": "default",
                     "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"targetRefs": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute",
                                 "name": "r1"}],
                 "local": {"rules": [{"clientSelectors": [{"sourceCIDR":
                                         {"type": "Distinct", "value": cidr}}],
                                      "limit": {"requests": 10, "unit": "Second"}}]}}})
}

/// Our entry's Accepted condition.
fn accepted(server: &ApiServer, name: &str) -> Value {
    let live = server.get("ratelimitpolicies", "default", name).unwrap();
    let ours: Vec<&Value> = live["status"]["ancestors"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["controllerName"] == CONTROLLER)
        .collect();
    assert_eq!(ours.len(), 1, "{live:#}");
    assert_eq!(ours[0]["ancestorRef"]["name"], "gw");
    ours[0]["conditions"][0].clone()
}

#[tokio::test]
async fn rate_limit_policy_ancestors_are_written() {
    let server = ApiServer::start().await;
    seed(&server, free_port(), start_backend().await);
    server.apply("ratelimitpolicies", policy("good", "0.0.0.0/0"));
    let updates = start_source(&server);
    let store = store_where(&updates, "the policy", |s| {
        s.rate_limit_policies.len() == 1 && s.http_routes.len() == 1
    })
    .await;
    let written = writer(&server)
        .reconcile(&store, &desired(&store))
        .await
        .unwrap();
    assert_eq!(written.policies, 1);
    let writes: Vec<_> = server
        .writes()
        .into_iter()
        .filter(|w| w.path.contains("/ratelimitpolicies/"))
        .collect();
    assert!(
        writes.len() == 1 && writes[0].method == "PATCH" && writes[0].path.ends_with("/status"),
        "{writes:#?}"
    );
    let condition = accepted(&server, "good");
    assert_eq!(condition["type"], "Accepted");
    assert_eq!(condition["status"], "True");

    // A bad range: Invalid, saying which.
    server.apply("ratelimitpolicies", policy("good", "10.0.0.0/99"));
    let store = store_where(&updates, "the changed policy", |s| {
        s.rate_limit_policies.values().any(|p| {
            p.spec.local.as_ref().unwrap().rules[0].client_selectors[0]
                .source_cidr
                .as_ref()
                .is_some_and(|c| c.value.ends_with("/99"))
        })
    })
    .await;
    writer(&server)
        .reconcile(&store, &desired(&store))
        .await
        .unwrap();
    let condition = accepted(&server, "good");
    assert_eq!(condition["status"], "False");
    assert_eq!(condition["reason"], "Invalid");
    assert!(
        condition["message"]
            .as_str()
            .unwrap()
            .contains("10.0.0.0/99"),
        "{condition}"
    );
}
