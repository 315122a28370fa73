//! Kubernetes mode: ListenerSet status and the Gateway's `attachedListenerSets` are written to
//! the API server.

#![allow(clippy::unwrap_used)]

mod support;

use serde_json::Value;
use support::apiserver::ApiServer;
use support::objects::{allowing_listener_sets, gateway, listener_set, namespace, seed};
use support::{desired, free_port, start_backend, start_source, store_where, writer};

fn condition<'a>(status: &'a Value, type_: &str) -> &'a Value {
    status["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == type_))
        .unwrap_or_else(|| panic!("no {type_} condition in {status}"))
}

#[tokio::test]
async fn listener_set_status_and_attached_listener_sets_are_written() {
    let server = ApiServer::start().await;
    let port = free_port();
    seed(&server, port, start_backend().await);
    server.apply("namespaces", namespace("other"));
    server.apply(
        "gateways",
        allowing_listener_sets(gateway("default", "gw", "gantry", port), "Same"),
    );
    let allowed_port = free_port();
    server.apply(
        "listenersets",
        listener_set("default", "team", "default", "gw", "app", allowed_port),
    );
    server.apply(
        "listenersets",
        listener_set("other", "outsider", "default", "gw", "app", free_port()),
    );
    let updates = start_source(&server);
    let store = store_where(&updates, "both ListenerSets", |s| {
        s.listener_sets.len() == 2
            && s.gateways
                .values()
                .any(|g| g.spec.allowed_listeners.is_some())
    })
    .await;
    let written = writer(&server)
        .reconcile(&store, &desired(&store))
        .await
        .unwrap();
    assert_eq!(written.listener_sets, 2, "{written:?}");

    let team = server.get("listenersets", "default", "team").unwrap();
    let status = &team["status"];
    assert_eq!(condition(status, "Accepted")["status"], "True", "{status}");
    assert_eq!(
        condition(status, "Programmed")["status"],
        "True",
        "{status}"
    );
    assert!(condition(status, "Accepted")["lastTransitionTime"].is_string());
    let listeners = status["listeners"].as_array().unwrap();
    assert_eq!(listeners.len(), 1, "{status}");
    assert_eq!(listeners[0]["name"], "app");
    assert_eq!(listeners[0]["supportedKinds"][0]["kind"], "HTTPRoute");
    let outsider = server.get("listenersets", "other", "outsider").unwrap();
    let status = &outsider["status"];
    assert_eq!(condition(status, "Accepted")["status"], "False", "{status}");
    assert_eq!(condition(status, "Accepted")["reason"], "NotAllowed");
    assert_eq!(condition(status, "Programmed")["reason"], "NotAllowed");

    let gw = server.get("gateways", "default", "gw").unwrap();
    assert_eq!(gw["status"]["attachedListenerSets"], 1, "{}", gw["status"]);
    let own: Vec<&Value> = gw["status"]["listeners"]
        .as_array()
        .unwrap()
        .iter()
        .collect();
    assert_eq!(own.len(), 1, "only the Gateway's own listener: {own:?}");

    // Written once: a writer with nothing remembered finds the statuses in place.
    let store = store_where(&updates, "the written statuses", |s| {
        s.listener_sets.values().all(|l| l.status.is_some())
            && s.gateways.values().all(|g| {
                g.status
                    .as_ref()
                    .is_some_and(|st| st.attached_listener_sets.is_some())
            })
    })
    .await;
    let again = writer(&server)
        .reconcile(&store, &desired(&store))
        .await
        .unwrap();
    assert_eq!((again.gateways, again.listener_sets), (0, 0), "{again:?}");

    // The ListenerSet is deleted: the Gateway counts none.
    server.delete("listenersets", "default", "team");
    let store = store_where(&updates, "one ListenerSet left", |s| {
        s.listener_sets.len() == 1
    })
    .await;
    writer(&server)
        .reconcile(&store, &desired(&store))
        .await
        .unwrap();
    let gw = server.get("gateways", "default", "gw").unwrap();
    assert_eq!(gw["status"]["attachedListenerSets"], 0, "{}", gw["status"]);
}
