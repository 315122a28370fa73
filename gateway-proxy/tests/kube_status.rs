//! Kubernetes mode, status side: what the status writer sends to the API server.

#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;

use gantry_proxy::kubernetes::metrics::KubeMetrics;
use gantry_proxy::kubernetes::status_writer::{self, Written};
use gantry_proxy::source::SourceUpdate;
use gantry_proxy::telemetry::Metrics;
use gantry_translate::status::ObjectStatus;
use gantry_translate::store::Store;
use serde_json::{Value, json};
use support::apiserver::{ApiServer, Recorded};
use support::objects::{CONTROLLER, endpoint_slice, foreign_parent, http_route, seed};
use support::{desired, eventually, free_port, start_backend, start_source, store_where, writer};
use tokio::sync::watch;

async fn world() -> ApiServer {
    let server = ApiServer::start().await;
    seed(&server, free_port(), start_backend().await);
    server
}

fn status_writes(server: &ApiServer) -> Vec<Recorded> {
    server
        .writes()
        .into_iter()
        .filter(|w| w.path.ends_with("/status"))
        .collect()
}

fn resource_version(store: &Store, route: &str) -> String {
    store.http_routes[&gantry_translate::store::ObjectKey::new("default", route)]
        .metadata
        .resource_version
        .clone()
        .unwrap()
}

#[tokio::test]
async fn gateway_programmed_and_listeners_are_applied_with_our_field_manager() {
    let server = world().await;
    let updates = start_source(&server);
    let store = store_where(&updates, "the initial sync", |s| s.gateways.len() == 1).await;
    let written = writer(&server)
        .reconcile(&store, &desired(&store))
        .await
        .unwrap();
    assert_eq!(
        written,
        Written {
            gateways: 1,
            listener_sets: 0,
            routes: 1,
            policies: 0,
        }
    );

    let writes = status_writes(&server);
    let apply = writes
        .iter()
        .find(|w| {
            w.path == "/apis/gateway.networking.k8s.io/v1/namespaces/default/gateways/gw/status"
        })
        .expect("a Gateway status write");
    assert_eq!(apply.method, "PATCH");
    assert_eq!(apply.content_type, "application/apply-patch+yaml");
    assert!(
        apply.query.contains("fieldManager=gantry-proxy"),
        "{}",
        apply.query
    );
    assert!(apply.query.contains("force=true"), "{}", apply.query);
    assert_eq!(apply.body["kind"], "Gateway");
    let conditions = apply.body["status"]["conditions"].as_array().unwrap();
    let types: Vec<&str> = conditions
        .iter()
        .map(|c| c["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["Accepted", "Programmed"], "{conditions:?}");
    for condition in conditions {
        assert_eq!(condition["observedGeneration"], 1);
        assert!(condition["lastTransitionTime"].is_string());
    }
    let listeners = apply.body["status"]["listeners"].as_array().unwrap();
    assert_eq!(listeners[0]["name"], "http");
    assert_eq!(listeners[0]["attachedRoutes"], 1);
    assert!(
        apply.body["status"].get("addresses").is_none(),
        "addresses are the operator's"
    );
}

#[tokio::test]
async fn route_parents_of_other_controllers_are_kept_and_the_write_is_guarded() {
    let server = world().await;
    let mut route = http_route("default", "r1", "gw", "/one", "echo", 80);
    route["status"] = json!({ "parents": [foreign_parent("gw")] });
    server.apply("httproutes", route);
    let updates = start_source(&server);
    let store = store_where(&updates, "the route with its status", |s| {
        s.http_routes.values().any(|r| r.status.is_some())
    })
    .await;
    writer(&server)
        .reconcile(&store, &desired(&store))
        .await
        .unwrap();

    let writes = status_writes(&server);
    let patch = writes
        .iter()
        .find(|w| w.path.ends_with("/httproutes/r1/status"))
        .expect("a route status write");
    assert_eq!(patch.method, "PATCH");
    assert_eq!(patch.content_type, "application/merge-patch+json");
    assert_eq!(
        patch.body["metadata"]["resourceVersion"],
        json!(resource_version(&store, "r1"))
    );
    let parents = patch.body["status"]["parents"].as_array().unwrap();
    assert_eq!(parents.len(), 2);
    assert_eq!(
        parents[0],
        foreign_parent("gw"),
        "the foreign entry is untouched"
    );
    assert_eq!(parents[1]["controllerName"], CONTROLLER);
    assert_eq!(parents[1]["parentRef"], json!({ "name": "gw" }));
    let types: Vec<&str> = parents[1]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["type"].as_str().unwrap())
        .collect();
    assert!(
        types.contains(&"Accepted") && types.contains(&"ResolvedRefs"),
        "{types:?}"
    );
}

#[tokio::test]
async fn a_conflict_is_retried_on_the_fresh_route() {
    let server = world().await;
    let updates = start_source(&server);
    let store = store_where(&updates, "the initial sync", |s| s.http_routes.len() == 1).await;
    // Another controller writes its entry just before ours arrives.
    server.conflict_next_write(
        "httproutes",
        "default",
        "r1",
        json!({ "status": { "parents": [foreign_parent("gw")] } }),
    );
    let kube = KubeMetrics::default();
    let metrics = Metrics::with(|registry| kube.register(registry));
    let written = writer(&server)
        .with_metrics(kube.clone())
        .reconcile(&store, &desired(&store))
        .await
        .unwrap();
    assert_eq!(written.routes, 1);
    let text = metrics.encode();
    for line in [
        r#"gantry_kube_status_writes_total{kind="HTTPRoute",result="conflict_retried"} 1"#,
        r#"gantry_kube_status_writes_total{kind="HTTPRoute",result="written"} 1"#,
        r#"gantry_kube_status_writes_total{kind="Gateway",result="written"} 1"#,
    ] {
        assert!(text.contains(line), "{line} missing from:\n{text}");
    }

    let route_writes: Vec<Recorded> = status_writes(&server)
        .into_iter()
        .filter(|w| w.path.ends_with("/httproutes/r1/status"))
        .collect();
    assert_eq!(
        route_writes.iter().map(|w| w.status).collect::<Vec<_>>(),
        vec![409, 200]
    );
    let live = server.get("httproutes", "default", "r1").unwrap();
    let parents = live["status"]["parents"].as_array().unwrap();
    assert_eq!(parents.len(), 2, "{parents:?}");
    assert_eq!(parents[0], foreign_parent("gw"));
    assert_eq!(parents[1]["controllerName"], CONTROLLER);
}

#[tokio::test]
async fn an_unchanged_status_is_not_written_again() {
    let server = world().await;
    let updates = start_source(&server);
    let store = store_where(&updates, "the initial sync", |s| s.http_routes.len() == 1).await;
    let mut writer = writer(&server);
    writer.reconcile(&store, &desired(&store)).await.unwrap();
    let after_first = server.writes().len();

    // The store has not seen our write yet: nothing is sent twice.
    let again = writer.reconcile(&store, &desired(&store)).await.unwrap();
    assert_eq!(again, Written::default());

    // Once it has, the live status equals ours: nothing to write, times kept.
    let before = server.get("httproutes", "default", "r1").unwrap();
    let fresh = store_where(&updates, "our statuses in the store", |s| {
        s.http_routes.values().all(|r| r.status.is_some())
            && s.gateways.values().all(|g| g.status.is_some())
    })
    .await;
    // Conditions it would stamp now carry a time no earlier write has.
    let kube = KubeMetrics::default();
    let metrics = Metrics::with(|registry| kube.register(registry));
    let fresh_writer = &mut self::writer(&server)
        .with_metrics(kube.clone())
        .with_clock(support::later);
    assert_eq!(
        fresh_writer
            .reconcile(&fresh, &desired(&fresh))
            .await
            .unwrap(),
        Written::default()
    );
    let text = metrics.encode();
    for line in [
        r#"gantry_kube_status_writes_total{kind="HTTPRoute",result="unchanged"} 1"#,
        r#"gantry_kube_status_writes_total{kind="Gateway",result="unchanged"} 1"#,
    ] {
        assert!(text.contains(line), "{line} missing from:\n{text}");
    }
    assert_eq!(server.writes().len(), after_first);
    assert_eq!(server.get("httproutes", "default", "r1").unwrap(), before);
}

#[tokio::test]
async fn a_detached_route_loses_only_our_entry() {
    let server = world().await;
    let mut route = http_route("default", "r1", "gw", "/one", "echo", 80);
    route["spec"]["parentRefs"] = json!([{ "name": "someone-elses" }]);
    let mut ours = foreign_parent("gw");
    ours["controllerName"] = json!(CONTROLLER);
    route["status"] = json!({ "parents": [foreign_parent("someone-elses"), ours] });
    server.apply("httproutes", route);
    let updates = start_source(&server);
    let store = store_where(&updates, "the detached route", |s| {
        s.http_routes.values().any(|r| r.status.is_some())
    })
    .await;
    let written = writer(&server)
        .reconcile(&store, &desired(&store))
        .await
        .unwrap();
    assert_eq!(written.routes, 1);
    let live = server.get("httproutes", "default", "r1").unwrap();
    assert_eq!(
        live["status"]["parents"],
        json!([foreign_parent("someone-elses")])
    );
}

#[tokio::test]
async fn only_the_leader_writes() {
    let server = world().await;
    let updates = start_source(&server);
    let store = store_where(&updates, "the initial sync", |s| s.http_routes.len() == 1).await;
    let (statuses_tx, statuses) = watch::channel(Arc::new(Vec::new()));
    let (leading_tx, leading) = watch::channel(false);
    let kube = KubeMetrics::default();
    let metrics = Metrics::with(|registry| kube.register(registry));
    tokio::spawn(status_writer::run(
        writer(&server).with_metrics(kube),
        statuses,
        updates.clone(),
        leading,
    ));
    statuses_tx.send_replace(Arc::new(desired(&store)));
    // The follower has seen the statuses and passed on them.
    eventually(10, "the follower's pass", || {
        let passed = metrics
            .encode()
            .contains(r#"gantry_kube_status_reconciles_total{outcome="not_leader"}"#);
        async move { passed }
    })
    .await;
    assert!(status_writes(&server).is_empty(), "a follower wrote status");

    leading_tx.send_replace(true);
    eventually(10, "the leader's writes", || {
        let n = status_writes(&server).len();
        async move { n == 2 }
    })
    .await;
    let _: Value = server.get("gateways", "default", "gw").unwrap()["status"].clone();
}

/// The first translation can reach the writer together with the store (both sent while it
/// waits): whichever of the two wakes it, the statuses are written. `tokio::select!` polls its
/// branches in a random order, so each round is a fresh draw; a writer that took the statuses
/// as seen without noting the translation would stay idle in about half of the rounds.
#[tokio::test]
async fn a_translation_arriving_with_the_store_is_written() {
    let server = world().await;
    let updates = start_source(&server);
    let store = store_where(&updates, "the initial sync", |s| s.http_routes.len() == 1).await;
    let statuses = Arc::new(desired(&store));
    for round in 0..16 {
        let (objects_tx, objects) = watch::channel(None);
        let (statuses_tx, statuses_rx) = watch::channel(Arc::new(Vec::new()));
        let (_leading_tx, leading) = watch::channel(true);
        let kube = KubeMetrics::default();
        let metrics = Metrics::with(|registry| kube.register(registry));
        let writer = tokio::spawn(status_writer::run(
            writer(&server).with_metrics(kube),
            statuses_rx,
            objects,
            leading,
        ));
        // On this single-threaded runtime the writer runs until it waits for a change.
        tokio::task::yield_now().await;
        objects_tx.send_replace(Some(SourceUpdate::Objects {
            store: store.clone(),
            warnings: Vec::new(),
        }));
        statuses_tx.send_replace(statuses.clone());
        eventually(10, &format!("round {round}: a reconcile"), || {
            let done = metrics
                .encode()
                .contains(r#"gantry_kube_status_reconciles_total{outcome="ok"} 1"#);
            async move { done }
        })
        .await;
        writer.abort();
    }
    assert!(
        server.get("gateways", "default", "gw").unwrap()["status"]["listeners"].is_array(),
        "the Gateway's status was written"
    );
}

#[tokio::test]
async fn a_running_writer_writes_back_only_what_another_party_changed() {
    let server = world().await;
    let _running = running_writer(&server).await;
    let before = server.writes().len();

    // A change the writer does not read (the Service's endpoints moved), then another
    // controller's write that drops our entry: only the entry is written back.
    server.apply(
        "endpointslices",
        endpoint_slice("default", "echo", "127.0.0.1", free_port()),
    );
    let mut route = server.get("httproutes", "default", "r1").unwrap();
    let ours = route["status"]["parents"][0].clone();
    assert_eq!(ours["controllerName"], CONTROLLER);
    route["status"] = json!({ "parents": [foreign_parent("gw")] });
    server.apply("httproutes", route);
    eventually(10, "our entry written back", || {
        let parents =
            server.get("httproutes", "default", "r1").unwrap()["status"]["parents"].clone();
        async move { parents.as_array().is_some_and(|p| p.len() == 2) }
    })
    .await;

    let writes = &server.writes()[before..];
    assert_eq!(writes.len(), 1, "{writes:#?}");
    assert!(writes[0].path.ends_with("/httproutes/r1/status"));
    let live = server.get("httproutes", "default", "r1").unwrap();
    assert_eq!(live["status"]["parents"][0], foreign_parent("gw"));
    let timeless = |entry: &Value| {
        let mut entry = entry.clone();
        for condition in entry["conditions"].as_array_mut().unwrap() {
            condition
                .as_object_mut()
                .unwrap()
                .remove("lastTransitionTime");
        }
        entry
    };
    assert_eq!(timeless(&live["status"]["parents"][1]), timeless(&ours));
}

#[tokio::test]
async fn a_running_writer_writes_the_status_of_a_route_deleted_and_created_again() {
    let server = world().await;
    let running = running_writer(&server).await;

    server.delete("httproutes", "default", "r1");
    store_where(&running.updates, "the route gone", |s| {
        s.http_routes.is_empty()
    })
    .await;
    server.apply(
        "httproutes",
        http_route("default", "r1", "gw", "/one", "echo", 80),
    );
    eventually(10, "the new route's status", || {
        let parents =
            server.get("httproutes", "default", "r1").unwrap()["status"]["parents"].clone();
        async move { parents[0]["controllerName"] == CONTROLLER }
    })
    .await;
}

/// A source and a leading writer running against `server`, writing the statuses of the
/// initial sync; they run while this lives.
struct RunningWriter {
    updates: watch::Receiver<Option<SourceUpdate>>,
    _statuses: watch::Sender<Arc<Vec<ObjectStatus>>>,
    _leading: watch::Sender<bool>,
}

/// Starts a [`RunningWriter`] and waits until its first writes are read back.
async fn running_writer(server: &ApiServer) -> RunningWriter {
    let updates = start_source(server);
    let store = store_where(&updates, "the initial sync", |s| s.http_routes.len() == 1).await;
    let (statuses_tx, statuses) = watch::channel(Arc::new(desired(&store)));
    let (leading_tx, leading) = watch::channel(true);
    tokio::spawn(status_writer::run(
        writer(server),
        statuses,
        updates.clone(),
        leading,
    ));
    settled(server, &updates).await;
    RunningWriter {
        updates,
        _statuses: statuses_tx,
        _leading: leading_tx,
    }
}

/// Waits until a running writer's first writes (the Gateway and `r1`) are in the store.
async fn settled(server: &ApiServer, updates: &watch::Receiver<Option<SourceUpdate>>) {
    eventually(10, "the first writes", || {
        let n = status_writes(server).len();
        async move { n == 2 }
    })
    .await;
    store_where(updates, "our statuses read back", |s| {
        s.http_routes.values().all(|r| r.status.is_some())
            && s.gateways.values().all(|g| g.status.is_some())
    })
    .await;
}

/// A TCPRoute's status goes to the version the API server serves: `v1` where it is (Gateway
/// API v1.6), `v1alpha2` where `v1` is not (older releases).
#[tokio::test]
async fn tcp_route_status_is_written_at_the_version_served() {
    for (unserved, expected) in [("v1alpha2", "v1"), ("v1", "v1alpha2")] {
        let server = world().await;
        server.unserve_version("tcproutes", unserved);
        server.apply(
            "tcproutes",
            json!({"apiVersion": format!("gateway.networking.k8s.io/{expected}"), "kind": "TCPRoute",
                "metadata": {"name": "t", "namespace": "default"},
                "spec": {"parentRefs": [{"name": "gw"}], "rules": [{"backendRefs": [{"name": "echo", "port": 80}]}]}}),
        );
        let updates = start_source(&server);
        let store = store_where(&updates, "the TCPRoute", |s| s.tcp_routes.len() == 1).await;
        writer(&server)
            .reconcile(&store, &desired(&store))
            .await
            .unwrap();
        let path = format!(
            "/apis/gateway.networking.k8s.io/{expected}/namespaces/default/tcproutes/t/status"
        );
        let written = status_writes(&server)
            .into_iter()
            .find(|w| w.path == path && w.status == 200)
            .unwrap_or_else(|| panic!("no status write at {path}: {:?}", server.writes()));
        assert_eq!(
            written.body["status"]["parents"][0]["controllerName"],
            CONTROLLER
        );
    }
}
