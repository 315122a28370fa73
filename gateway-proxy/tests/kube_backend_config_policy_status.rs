//! Kubernetes mode: BackendConfigPolicy is watched (an optional kind: without its CRD the proxy
//! still becomes ready, and picks policies up once it is installed), and its `ancestors[]` are
//! written the way XBackendTrafficPolicy's are: only our entries, next to other controllers',
//! by resourceVersion-guarded merge patch of the status subresource, not rewritten when
//! unchanged.

#![allow(clippy::unwrap_used)]

mod support;

use gantry_proxy::kubernetes::status_writer::Written;
use gantry_translate::store::Store;
use serde_json::{Value, json};
use support::apiserver::ApiServer;
use support::objects::{CONTROLLER, seed};
use support::{desired, free_port, start_backend, start_source, store_where, writer};

const GANTRY: &str = "gantry.dev/v1alpha1";

/// A policy for Service `echo` (used by route `r1`), port `http` when `port` is set.
fn policy(name: &str, created: &str, port: Option<&str>, status: Option<Value>) -> Value {
    let mut target = json!({"group": "", "kind": "Service", "name": "echo"});
    if let Some(port) = port {
        target["sectionName"] = json!(port);
    }
    let mut p = json!({"apiVersion": GANTRY, "kind": "BackendConfigPolicy",
        "metadata": {"name": name, "namespace": "default", "creationTimestamp": created},
        "spec": {"targetRefs": [target],
                 "loadBalancer": {"type": "LeastRequest"},
                 "circuitBreaker": {"maxConnections": 64}}});
    if let Some(status) = status {
        p["status"] = status;
    }
    p
}

fn foreign_ancestor() -> Value {
    json!({"ancestorRef": {"group": "gateway.networking.k8s.io", "kind": "Gateway", "namespace": "default", "name": "gw"},
           "controllerName": "example.com/other",
           "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted",
                           "message": "theirs", "observedGeneration": 1,
                           "lastTransitionTime": "2020-01-01T00:00:00Z"}]})
}

/// Our one entry's conditions as (type, status, reason).
fn our_conditions(live: &Value) -> Vec<(String, String, String)> {
    let ancestors = live["status"]["ancestors"].as_array().unwrap();
    let ours: Vec<&Value> = ancestors
        .iter()
        .filter(|a| a["controllerName"] == CONTROLLER)
        .collect();
    assert_eq!(ours.len(), 1, "{ancestors:#?}");
    assert_eq!(
        ours[0]["ancestorRef"],
        json!({"group": "gateway.networking.k8s.io", "kind": "Gateway", "namespace": "default", "name": "gw"})
    );
    ours[0]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            assert!(c["lastTransitionTime"].is_string());
            (
                c["type"].as_str().unwrap().to_owned(),
                c["status"].as_str().unwrap().to_owned(),
                c["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn has_policies(n: usize) -> impl Fn(&Store) -> bool {
    move |store| store.backend_config_policies.len() == n && store.http_routes.len() == 1
}

#[tokio::test]
async fn policy_ancestors_are_written_accepted_and_conflicted() {
    let server = ApiServer::start().await;
    seed(&server, free_port(), start_backend().await);
    server.apply(
        "backendconfigpolicies",
        policy(
            "old",
            "2026-01-01T00:00:00Z",
            None,
            Some(json!({"ancestors": [foreign_ancestor()]})),
        ),
    );
    server.apply(
        "backendconfigpolicies",
        policy("young", "2026-01-02T00:00:00Z", None, None),
    );
    // Names the port: governs it whatever its age, and conflicts with nobody.
    server.apply(
        "backendconfigpolicies",
        policy("port", "2026-01-03T00:00:00Z", Some("http"), None),
    );
    let updates = start_source(&server);
    let store = store_where(&updates, "the three policies", has_policies(3)).await;
    let statuses = desired(&store);
    let written = writer(&server).reconcile(&store, &statuses).await.unwrap();
    assert_eq!(written.policies, 3);

    let writes: Vec<_> = server
        .writes()
        .into_iter()
        .filter(|w| w.path.contains("/backendconfigpolicies/"))
        .collect();
    assert_eq!(writes.len(), 3, "{writes:#?}");
    assert!(
        writes.iter().all(|w| w.method == "PATCH"
            && w.content_type == "application/merge-patch+json"
            && w.path
                .starts_with("/apis/gantry.dev/v1alpha1/namespaces/default/")
            && w.path.ends_with("/status")),
        "{writes:#?}"
    );

    let old = server
        .get("backendconfigpolicies", "default", "old")
        .unwrap();
    assert_eq!(
        old["status"]["ancestors"][0],
        foreign_ancestor(),
        "the other controller's entry is untouched"
    );
    let accepted = || vec![("Accepted".into(), "True".into(), "Accepted".into())];
    assert_eq!(our_conditions(&old), accepted());
    let young = server
        .get("backendconfigpolicies", "default", "young")
        .unwrap();
    assert_eq!(
        our_conditions(&young),
        [("Accepted".into(), "False".into(), "Conflicted".into())]
    );
    let port = server
        .get("backendconfigpolicies", "default", "port")
        .unwrap();
    assert_eq!(our_conditions(&port), accepted());

    // Once the store shows our entries, a fresh writer finds nothing to change.
    let fresh = store_where(&updates, "our entries in the store", |s| {
        s.backend_config_policies.values().all(|p| {
            p.status
                .as_ref()
                .is_some_and(|st| st.ancestors.iter().any(|a| a.controller_name == CONTROLLER))
        })
    })
    .await;
    let writes_before = server.writes().len();
    let again = writer(&server)
        .with_clock(support::later)
        .reconcile(&fresh, &desired(&fresh))
        .await
        .unwrap();
    assert_eq!(again, Written::default());
    assert_eq!(server.writes().len(), writes_before);
}

#[tokio::test]
async fn without_the_crd_the_source_syncs_and_picks_policies_up_once_installed() {
    let server = ApiServer::start().await;
    seed(&server, free_port(), start_backend().await);
    server.unserve("backendconfigpolicies");
    let updates = start_source(&server);
    store_where(
        &updates,
        "the sync without BackendConfigPolicies",
        has_policies(0),
    )
    .await;

    server.serve("backendconfigpolicies");
    server.apply(
        "backendconfigpolicies",
        policy("late", "2026-01-01T00:00:00Z", None, None),
    );
    let store = store_where(&updates, "the policy once its CRD exists", has_policies(1)).await;
    let statuses = desired(&store);
    let ours = statuses
        .iter()
        .find(|s| s.kind == "BackendConfigPolicy")
        .expect("a status for the policy");
    assert_eq!(ours.name, "late");
}
