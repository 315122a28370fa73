//! Kubernetes mode: XBackendTrafficPolicy `ancestors[]` as the status writer sends them, the
//! same way as BackendTLSPolicy's (`kube_policy_status.rs`): only our entries, next to other
//! controllers', guarded by resourceVersion, not rewritten when unchanged.

#![allow(clippy::unwrap_used)]

mod support;

use gantry_proxy::kubernetes::status_writer::Written;
use gantry_translate::store::{ObjectKey, Store};
use serde_json::{Value, json};
use support::apiserver::ApiServer;
use support::objects::{CONTROLLER, seed};
use support::{desired, free_port, start_backend, start_source, store_where, writer};

const GWX: &str = "gateway.networking.x-k8s.io/v1alpha1";

/// A policy with a retry budget for Service `echo` (used by route `r1`).
fn policy(name: &str, created: &str, status: Option<Value>) -> Value {
    let mut p = json!({"apiVersion": GWX, "kind": "XBackendTrafficPolicy",
        "metadata": {"name": name, "namespace": "default", "creationTimestamp": created},
        "spec": {"targetRefs": [{"group": "", "kind": "Service", "name": "echo"}],
                 "retryConstraint": {"budget": {"percent": 20, "interval": "10s"},
                                     "minRetryRate": {"count": 3, "interval": "1s"}}}});
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

fn has_policies(store: &Store) -> bool {
    store.backend_traffic_policies.len() == 2 && store.http_routes.len() == 1
}

#[tokio::test]
async fn policy_ancestors_are_written_accepted_and_conflicted() {
    let server = ApiServer::start().await;
    seed(&server, free_port(), start_backend().await);
    server.apply(
        "xbackendtrafficpolicies",
        policy(
            "old",
            "2026-01-01T00:00:00Z",
            Some(json!({"ancestors": [foreign_ancestor()]})),
        ),
    );
    server.apply(
        "xbackendtrafficpolicies",
        policy("young", "2026-01-02T00:00:00Z", None),
    );
    let updates = start_source(&server);
    let store = store_where(&updates, "both policies", has_policies).await;
    let written = writer(&server)
        .reconcile(&store, &desired(&store))
        .await
        .unwrap();
    assert_eq!(written.policies, 2);

    let writes: Vec<_> = server
        .writes()
        .into_iter()
        .filter(|w| w.path.contains("/xbackendtrafficpolicies/"))
        .collect();
    assert!(
        writes.iter().all(|w| w.method == "PATCH"
            && w.content_type == "application/merge-patch+json"
            && w.path
                .starts_with("/apis/gateway.networking.x-k8s.io/v1alpha1/")
            && w.path.ends_with("/status")),
        "{writes:#?}"
    );

    let old = server
        .get("xbackendtrafficpolicies", "default", "old")
        .unwrap();
    assert_eq!(
        old["status"]["ancestors"][0],
        foreign_ancestor(),
        "the other controller's entry is untouched"
    );
    assert_eq!(
        our_conditions(&old),
        [("Accepted".into(), "True".into(), "Accepted".into())]
    );
    let young = server
        .get("xbackendtrafficpolicies", "default", "young")
        .unwrap();
    assert_eq!(
        our_conditions(&young),
        [("Accepted".into(), "False".into(), "Conflicted".into())]
    );

    // Once the store shows our entries, a fresh writer finds nothing to change.
    let fresh = store_where(&updates, "our entries in the store", |s| {
        s.backend_traffic_policies.values().all(|p| {
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
    let key = ObjectKey::new("default", "old");
    assert!(fresh.backend_traffic_policies.contains_key(&key));
}
