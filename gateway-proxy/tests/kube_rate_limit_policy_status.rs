//! Kubernetes mode: RateLimitPolicy is watched and its `ancestors[]` are written by the status
//! writer like the other policies' (merge patch of the status subresource, only our entries):
//! `Accepted`, or `Invalid` with what to fix; and `gantry.dev/Degraded` while Redis is away.

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

/// While Redis cannot be reached, the control loop marks the policies with global rules
/// (`gantry_translate::status::rate_limit_store`); the writer writes the condition beside
/// `Accepted`, and removes it once the statuses no longer carry it.
#[tokio::test]
async fn the_degraded_condition_of_a_global_policy_is_written_and_cleared() {
    use gantry_translate::status::rate_limit_store::{StoreUnavailable, mark_store_unavailable};
    use gantry_translate::translate::{TranslateOptions, translate};

    let server = ApiServer::start().await;
    seed(&server, free_port(), start_backend().await);
    server.apply(
        "ratelimitpolicies",
        json!({"apiVersion": "gantry.dev/v1alpha1", "kind": "RateLimitPolicy",
            "metadata": {"name": "global", "namespace": "default",
                         "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"targetRefs": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute",
                                     "name": "r1"}],
                     "global": {"rules": [{"limit": {"requests": 10, "unit": "Second"}}]}}}),
    );
    let updates = start_source(&server);
    let store = store_where(&updates, "the policy", |s| {
        s.rate_limit_policies.len() == 1 && s.http_routes.len() == 1
    })
    .await;
    let options = TranslateOptions {
        gateways: Some(vec![support::gw()]),
        ..TranslateOptions::default()
    };
    let translation = translate(&store, &options);
    let mut marked = translation.statuses.clone();
    mark_store_unavailable(
        &mut marked,
        &translation.ir,
        Some(&StoreUnavailable {
            address: "redis.internal:6379",
            error: "connection refused",
        }),
    );
    let conditions = |server: &ApiServer| -> Vec<Value> {
        let live = server
            .get("ratelimitpolicies", "default", "global")
            .unwrap();
        live["status"]["ancestors"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["controllerName"] == CONTROLLER)
            .unwrap()["conditions"]
            .as_array()
            .unwrap()
            .clone()
    };
    let mut writer = writer(&server);
    writer.reconcile(&store, &marked).await.unwrap();
    let written = conditions(&server);
    let degraded = written
        .iter()
        .find(|c| c["type"] == "gantry.dev/Degraded")
        .unwrap_or_else(|| panic!("{written:#?}"));
    assert_eq!(degraded["status"], "True");
    assert_eq!(degraded["reason"], "BackendUnavailable");
    assert!(
        degraded["message"]
            .as_str()
            .is_some_and(|m| m.contains("redis.internal:6379") && m.contains("fail open")),
        "{degraded}"
    );
    assert!(
        written
            .iter()
            .any(|c| c["type"] == "Accepted" && c["status"] == "True")
    );

    writer
        .reconcile(&store, &translation.statuses)
        .await
        .unwrap();
    let written = conditions(&server);
    assert!(
        written.iter().all(|c| c["type"] != "gantry.dev/Degraded"),
        "cleared: {written:#?}"
    );
}
