//! Kubernetes mode: a SecurityPolicy's `extAuth` Service in another namespace is resolved as
//! in standalone mode: its EndpointSlices are published (the namespace is one a backend can
//! be in), the ReferenceGrant from `gantry.dev/SecurityPolicy` is watched, and the status
//! writer writes `Accepted`, or `Invalid` naming the missing grant.

#![allow(clippy::unwrap_used)]

mod support;

use gantry_translate::translate::{TranslateOptions, translate};
use serde_json::{Value, json};
use support::apiserver::ApiServer;
use support::objects::{CONTROLLER, endpoint_slice, namespace, seed, service};
use support::{desired, free_port, gw, start_backend, start_source, store_where, writer};

fn policy() -> Value {
    json!({"apiVersion": "gantry.dev/v1alpha1", "kind": "SecurityPolicy",
        "metadata": {"name": "authz", "namespace": "default",
                     "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"targetRefs": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute",
                                 "name": "r1"}],
                 "extAuth": {"grpc": {"backendRefs": [{"name": "authz", "namespace": "security",
                                                       "port": 9001}]},
                             "failOpen": true}}})
}

fn grant() -> Value {
    json!({"apiVersion": "gateway.networking.k8s.io/v1beta1", "kind": "ReferenceGrant",
        "metadata": {"name": "policies", "namespace": "security"},
        "spec": {"from": [{"group": "gantry.dev", "kind": "SecurityPolicy",
                           "namespace": "default"}],
                 "to": [{"group": "", "kind": "Service"}]}})
}

/// Our entry's `Accepted` condition.
fn accepted(server: &ApiServer) -> Value {
    let live = server.get("securitypolicies", "default", "authz").unwrap();
    live["status"]["ancestors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["controllerName"] == CONTROLLER)
        .unwrap()["conditions"][0]
        .clone()
}

#[tokio::test]
async fn an_ext_auth_service_in_another_namespace_is_resolved_through_a_reference_grant() {
    let server = ApiServer::start().await;
    seed(&server, free_port(), start_backend().await);
    server.apply("namespaces", namespace("security"));
    server.apply("services", service("security", "authz", 9001));
    server.apply(
        "endpointslices",
        endpoint_slice("security", "authz", "127.0.0.1", 19001),
    );
    server.apply("securitypolicies", policy());
    let updates = start_source(&server);

    // Without a grant: Invalid, naming it.
    let store = store_where(&updates, "the policy and the Service's endpoints", |s| {
        s.security_policies.len() == 1
            && s.endpoint_slices.keys().any(|k| k.namespace == "security")
    })
    .await;
    writer(&server)
        .reconcile(&store, &desired(&store))
        .await
        .unwrap();
    let condition = accepted(&server);
    assert_eq!(condition["status"], "False", "{condition}");
    assert_eq!(condition["reason"], "Invalid", "{condition}");
    assert!(
        condition["message"]
            .as_str()
            .is_some_and(|m| m.contains("ReferenceGrant")),
        "{condition}"
    );

    // With one: Accepted, and the service's cluster has its endpoint.
    server.apply("referencegrants", grant());
    let store = store_where(&updates, "the grant", |s| s.reference_grants.len() == 1).await;
    writer(&server)
        .reconcile(&store, &desired(&store))
        .await
        .unwrap();
    assert_eq!(accepted(&server)["status"], "True");
    let options = TranslateOptions {
        gateways: Some(vec![gw()]),
        ..TranslateOptions::default()
    };
    let ir = translate(&store, &options).ir;
    let cluster = &ir.clusters["security/authz:9001"];
    assert_eq!(cluster.endpoints, ["127.0.0.1:19001"], "{cluster:?}");
}
