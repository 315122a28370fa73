//! Kubernetes mode: BackendTLSPolicy `ancestors[]` as the status writer sends them. Only our
//! entries, guarded by resourceVersion, never rewritten unchanged, removed when the policy
//! no longer applies to a served Gateway.

#![allow(clippy::unwrap_used)]

mod support;

use gantry_proxy::kubernetes::status_writer::Written;
use gantry_translate::store::{ObjectKey, Store};
use serde_json::{Value, json};
use support::apiserver::{ApiServer, Recorded};
use support::objects::{CONTROLLER, GW_API, http_route, seed};
use support::{desired, free_port, start_backend, start_source, store_where, writer};

/// A policy for Service `echo` (used by route `r1`) whose CA ConfigMap does not exist.
fn policy(status: Option<Value>) -> Value {
    let mut p = json!({"apiVersion": GW_API, "kind": "BackendTLSPolicy",
        "metadata": {"name": "p", "namespace": "default"},
        "spec": {"targetRefs": [{"group": "", "kind": "Service", "name": "echo"}],
                 "validation": {"hostname": "echo.internal",
                                "caCertificateRefs": [{"group": "", "kind": "ConfigMap", "name": "missing"}]}}});
    if let Some(status) = status {
        p["status"] = status;
    }
    p
}

/// An ancestor entry of another controller.
fn foreign_ancestor() -> Value {
    json!({"ancestorRef": {"group": "gateway.networking.k8s.io", "kind": "Gateway", "namespace": "default", "name": "gw"},
           "controllerName": "example.com/other",
           "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted",
                           "message": "theirs", "observedGeneration": 3,
                           "lastTransitionTime": "2020-01-01T00:00:00Z"}]})
}

fn policy_writes(server: &ApiServer) -> Vec<Recorded> {
    server
        .writes()
        .into_iter()
        .filter(|w| w.path.ends_with("/backendtlspolicies/p/status"))
        .collect()
}

async fn world(status: Option<Value>) -> ApiServer {
    let server = ApiServer::start().await;
    seed(&server, free_port(), start_backend().await);
    server.apply("backendtlspolicies", policy(status));
    server
}

fn has_policy(store: &Store) -> bool {
    store.backend_tls_policies.len() == 1 && store.http_routes.len() == 1
}

#[tokio::test]
async fn policy_ancestors_are_written_next_to_other_controllers_entries() {
    let server = world(Some(json!({ "ancestors": [foreign_ancestor()] }))).await;
    let updates = start_source(&server);
    let store = store_where(&updates, "the policy", has_policy).await;
    let written = writer(&server)
        .reconcile(&store, &desired(&store))
        .await
        .unwrap();
    assert_eq!(written.policies, 1);

    let writes = policy_writes(&server);
    assert_eq!(writes.len(), 1);
    let patch = &writes[0];
    assert_eq!(patch.method, "PATCH");
    assert_eq!(patch.content_type, "application/merge-patch+json");
    let meta = &store.backend_tls_policies[&ObjectKey::new("default", "p")].metadata;
    let version = meta.resource_version.clone().unwrap();
    let generation = meta.generation.unwrap();
    assert_eq!(patch.body["metadata"]["resourceVersion"], json!(version));
    let ancestors = patch.body["status"]["ancestors"].as_array().unwrap();
    assert_eq!(ancestors.len(), 2, "{ancestors:#?}");
    assert_eq!(
        ancestors[0],
        foreign_ancestor(),
        "the foreign entry is untouched"
    );
    let ours = &ancestors[1];
    assert_eq!(ours["controllerName"], CONTROLLER);
    assert_eq!(
        ours["ancestorRef"],
        json!({"group": "gateway.networking.k8s.io", "kind": "Gateway", "namespace": "default", "name": "gw"})
    );
    let reasons: Vec<(&str, &str, &str)> = ours["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            assert_eq!(c["observedGeneration"], generation);
            assert!(c["lastTransitionTime"].is_string());
            (
                c["type"].as_str().unwrap(),
                c["status"].as_str().unwrap(),
                c["reason"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        reasons,
        [
            ("Accepted", "False", "NoValidCACertificate"),
            ("ResolvedRefs", "False", "InvalidCACertificateRef")
        ]
    );
}

#[tokio::test]
async fn a_conflicting_policy_write_is_retried_and_an_unchanged_one_is_not_repeated() {
    let server = world(None).await;
    let updates = start_source(&server);
    let store = store_where(&updates, "the policy", has_policy).await;
    server.conflict_next_write(
        "backendtlspolicies",
        "default",
        "p",
        json!({ "status": { "ancestors": [foreign_ancestor()] } }),
    );
    let mut writer = writer(&server);
    let written = writer.reconcile(&store, &desired(&store)).await.unwrap();
    assert_eq!(written.policies, 1);
    assert_eq!(
        policy_writes(&server)
            .iter()
            .map(|w| w.status)
            .collect::<Vec<_>>(),
        vec![409, 200]
    );
    let live = server.get("backendtlspolicies", "default", "p").unwrap();
    let ancestors = live["status"]["ancestors"].as_array().unwrap();
    assert_eq!(ancestors.len(), 2, "{ancestors:#?}");
    assert_eq!(ancestors[0], foreign_ancestor());

    // Once the store shows our entry, a fresh writer finds nothing to change.
    let fresh = store_where(&updates, "our entry in the store", |s| {
        s.backend_tls_policies.values().any(|p| {
            p.status
                .as_ref()
                .is_some_and(|st| st.ancestors.iter().any(|a| a.controller_name == CONTROLLER))
        })
    })
    .await;
    // Conditions it would stamp now carry a time no earlier write has.
    let writes_before = server.writes().len();
    let again = self::writer(&server)
        .with_clock(support::later)
        .reconcile(&fresh, &desired(&fresh))
        .await
        .unwrap();
    assert_eq!(again, Written::default());
    assert_eq!(server.writes().len(), writes_before);
}

#[tokio::test]
async fn a_policy_no_longer_used_by_a_served_gateway_loses_only_our_entry() {
    let server = world(None).await;
    let updates = start_source(&server);
    let store = store_where(&updates, "the policy", has_policy).await;
    writer(&server)
        .reconcile(&store, &desired(&store))
        .await
        .unwrap();
    // Another controller adds its entry; then the route moves to another Service.
    let mut live = server.get("backendtlspolicies", "default", "p").unwrap();
    let mut ancestors = live["status"]["ancestors"].as_array().unwrap().clone();
    ancestors.insert(0, foreign_ancestor());
    live["status"]["ancestors"] = json!(ancestors);
    server.apply("backendtlspolicies", live);
    server.apply(
        "services",
        support::objects::service("default", "other", 80),
    );
    server.apply(
        "httproutes",
        http_route("default", "r1", "gw", "/one", "other", 80),
    );
    let store = store_where(&updates, "the moved route and both entries", |s| {
        s.http_routes.values().any(|r| {
            r.spec.rules.iter().flatten().any(|rule| {
                rule.backend_refs
                    .iter()
                    .flatten()
                    .any(|b| b.name == "other")
            })
        }) && s
            .backend_tls_policies
            .values()
            .any(|p| p.status.as_ref().is_some_and(|st| st.ancestors.len() == 2))
    })
    .await;
    let statuses = desired(&store);
    assert!(
        !statuses.iter().any(|s| s.kind == "BackendTLSPolicy"),
        "the policy is no longer relevant to any served Gateway"
    );
    let written = writer(&server).reconcile(&store, &statuses).await.unwrap();
    assert_eq!(written.policies, 1);
    let live = server.get("backendtlspolicies", "default", "p").unwrap();
    assert_eq!(live["status"]["ancestors"], json!([foreign_ancestor()]));
}

#[tokio::test]
async fn the_gateway_client_certificate_condition_is_applied_with_programmed() {
    let server = world(None).await;
    let mut gateway = server.get("gateways", "default", "gw").unwrap();
    gateway["spec"]["tls"] = json!({"backend": {"clientCertificateRef": {"name": "missing"}}});
    server.apply("gateways", gateway);
    let updates = start_source(&server);
    let store = store_where(&updates, "the Gateway with spec.tls", |s| {
        s.gateways.values().any(|g| g.spec.tls.is_some())
    })
    .await;
    writer(&server)
        .reconcile(&store, &desired(&store))
        .await
        .unwrap();
    let apply = server
        .writes()
        .into_iter()
        .find(|w| w.path.ends_with("/gateways/gw/status"))
        .expect("a Gateway status write");
    let conditions: Vec<(String, String)> = apply.body["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["type"].as_str().unwrap().to_owned(),
                c["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        conditions,
        [
            ("Accepted".to_owned(), "Accepted".to_owned()),
            ("Programmed".to_owned(), "Programmed".to_owned()),
            (
                "ResolvedRefs".to_owned(),
                "InvalidClientCertificateRef".to_owned()
            )
        ]
    );
}
