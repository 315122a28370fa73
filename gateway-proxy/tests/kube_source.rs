//! Kubernetes mode, source side: the proxy against an in-repo API server over HTTP.
//! Initial sync gates readiness, watched changes are served, and watches survive API server
//! restarts and `410 Gone` without the store going empty.

#![allow(clippy::unwrap_used, clippy::disallowed_types)]

mod support;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gantry_proxy::control::ControlLoop;
use gantry_proxy::server::{DataPlane, DataPlaneOptions};
use gantry_proxy::source::SourceUpdate;
use gantry_proxy::telemetry::Metrics;
use gantry_translate::translate::TranslateOptions;
use support::apiserver::ApiServer;
use support::objects::{http_route, seed};
use support::{
    Client, add_route_and_wait_until_served, counted, eventually, free_port, gw, http_get,
    start_backend, start_source, start_source_counted, store_where,
};

fn control() -> ControlLoop {
    let metrics = Arc::new(Metrics::new());
    let dataplane = Arc::new(DataPlane::new(
        DataPlaneOptions {
            bind_address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port_offset: 0,
            drain_timeout: Duration::from_secs(1),
            access_log: false,
            l4: Default::default(),
            http: Default::default(),
            connections: Default::default(),
        },
        metrics.clone(),
    ));
    let options = TranslateOptions {
        gateways: Some(vec![gw()]),
        ..TranslateOptions::default()
    };
    ControlLoop::new(options, dataplane, metrics)
}

/// How many stores the source published (`config_stage_duration_seconds{stage="source"}`).
fn publishes(metrics: &Metrics) -> u64 {
    let text = metrics.encode();
    let prefix = r#"gantry_config_stage_duration_seconds_count{stage="source"} "#;
    text.lines()
        .find_map(|l| l.strip_prefix(prefix))
        .map_or(0, |n| n.trim().parse().unwrap())
}

#[tokio::test]
async fn initial_sync_gates_readiness_and_watched_routes_are_served() {
    let server = ApiServer::start().await;
    let backend = start_backend().await;
    let port = free_port();
    seed(&server, port, backend);
    server.hold("endpointslices");

    let counted = counted();
    let updates = start_source_counted(&server, &counted);
    let control = control();
    let published = control.published().clone();
    tokio::spawn(control.run(updates.clone()));

    // Every other kind lists; EndpointSlices do not yet: nothing is published, not ready.
    eventually(10, "the other kinds to be listed", || {
        let s = server.clone();
        async move { s.lists("httproutes") > 0 && s.lists("services") > 0 }
    })
    .await;
    assert!(
        updates.borrow().is_none(),
        "published before every kind synced"
    );
    assert_eq!(published.ready(), Err("no configuration loaded yet"));

    server.release("endpointslices");
    eventually(10, "readiness", || {
        let ready = published.ready().is_ok();
        async move { ready }
    })
    .await;
    // Whatever the order the lists came in, the source published once: the complete store.
    assert_eq!(publishes(&counted.0), 1, "{}", counted.0.encode());
    assert_eq!(
        http_get(port, "/one").await,
        Some((200, "backend saw /one".to_owned()))
    );

    // A route added through the watch is served.
    add_route_and_wait_until_served(&server, port).await;
    assert!(
        published
            .view()
            .statuses
            .iter()
            .any(|s| s.kind == "HTTPRoute" && s.name == "r2"),
        "the new route has a status"
    );
}

#[tokio::test]
async fn a_relist_after_410_gone_keeps_serving_the_last_objects() {
    let server = ApiServer::start().await;
    seed(&server, free_port(), start_backend().await);
    let counted = counted();
    let metrics = counted.0.clone();
    let mut updates = start_source_counted(&server, &counted);
    store_where(&updates, "the initial sync", |s| s.http_routes.len() == 1).await;

    // Record the routes of every store published from now on.
    let seen: Arc<Mutex<Vec<usize>>> = Arc::default();
    let recorder = seen.clone();
    updates.borrow_and_update();
    let mut watcher = updates.clone();
    tokio::spawn(async move {
        while watcher.changed().await.is_ok() {
            if let Some(SourceUpdate::Objects { store, .. }) = &*watcher.borrow_and_update() {
                recorder.lock().unwrap().push(store.http_routes.len());
            }
        }
    });

    server.hold("httproutes");
    server.compact();
    // Another kind changes while the route list is pending: the update still has the route.
    server.apply(
        "services",
        support::objects::service("default", "other", 8080),
    );
    store_where(&updates, "the new Service after the relist", |s| {
        s.services.len() == 2
    })
    .await;
    server.apply(
        "httproutes",
        http_route("default", "r2", "gw", "/two", "echo", 80),
    );
    server.release("httproutes");
    store_where(&updates, "the relisted routes", |s| {
        s.http_routes.len() == 2
    })
    .await;
    assert!(
        server.lists("httproutes") >= 2,
        "the routes were listed again"
    );
    let seen = seen.lock().unwrap().clone();
    assert!(!seen.is_empty());
    assert!(
        seen.iter().all(|&n| n >= 1),
        "a store without routes was published: {seen:?}"
    );
    updates.borrow_and_update();

    // The first list and the relist are counted, and so is the 410 that ended the watch.
    let text = metrics.encode();
    assert!(
        text.contains(r#"gantry_kube_relists_total{kind="HTTPRoute"} 2"#),
        "{text}"
    );
    assert!(
        text.contains(r#"gantry_kube_watch_errors_total{kind="HTTPRoute"}"#),
        "{text}"
    );
}

#[tokio::test]
async fn watches_resume_after_an_api_server_restart_without_relisting() {
    let server = ApiServer::start().await;
    seed(&server, free_port(), start_backend().await);
    let updates = start_source(&server);
    store_where(&updates, "the initial sync", |s| s.http_routes.len() == 1).await;

    server.take_requests();
    server.restart();
    // The changes below happen after the HTTPRoute watch has ended and been opened again, so
    // they reach the source through the resumed watch.
    eventually(10, "the HTTPRoute watch to resume", || {
        let resumed = server
            .take_requests()
            .iter()
            .any(|r| r.path.ends_with("/httproutes") && r.query.contains("watch=true"));
        async move { resumed }
    })
    .await;
    server.apply(
        "httproutes",
        http_route("default", "r2", "gw", "/two", "echo", 80),
    );
    server.delete("httproutes", "default", "r1");
    store_where(&updates, "the changes made across the restart", |s| {
        s.http_routes.len() == 1
            && s.http_routes
                .contains_key(&gantry_translate::store::ObjectKey::new("default", "r2"))
    })
    .await;
    assert_eq!(
        server.lists("httproutes"),
        1,
        "resumed from the last version"
    );
}

#[tokio::test]
async fn only_tls_secrets_of_referenced_namespaces_are_watched() {
    use gantry_translate::store::ObjectKey;
    use support::objects::{gateway, secret, with_certificate};

    let server = ApiServer::start().await;
    let port = free_port();
    seed(&server, port, start_backend().await);
    let gw = gateway("default", "gw", "gantry", port);
    server.apply("gateways", with_certificate(gw.clone(), "certs", "cert"));
    server.apply("referencegrants", secrets_for_default_gateways("certs"));
    server.apply("referencegrants", secrets_for_default_gateways("elsewhere"));
    server.apply("secrets", secret("certs", "cert", "kubernetes.io/tls"));
    server.apply("secrets", secret("certs", "token", "Opaque"));
    server.apply("secrets", secret("elsewhere", "cert2", "kubernetes.io/tls"));

    let updates = start_source(&server);
    let store = store_where(&updates, "the initial sync", |s| !s.gateways.is_empty()).await;
    assert_eq!(
        store.secrets.keys().cloned().collect::<Vec<_>>(),
        vec![ObjectKey::new("certs", "cert")],
        "the first published store already has the referenced Secret, and only it"
    );

    server.apply("gateways", with_certificate(gw, "elsewhere", "cert2"));
    store_where(&updates, "the newly referenced namespace only", |s| {
        s.secrets.keys().cloned().collect::<Vec<_>>() == vec![ObjectKey::new("elsewhere", "cert2")]
    })
    .await;
}

/// A ReferenceGrant in `namespace` letting Gateways of `default` use its Secrets.
fn secrets_for_default_gateways(namespace: &str) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "gateway.networking.k8s.io/v1beta1", "kind": "ReferenceGrant",
        "metadata": {"name": "gateways", "namespace": namespace},
        "spec": {
            "from": [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "namespace": "default"}],
            "to": [{"group": "", "kind": "Secret"}],
        },
    })
}

#[tokio::test]
async fn a_secret_in_a_namespace_no_reference_grant_permits_is_never_watched() {
    use support::objects::{gateway, secret, with_certificate};

    let server = ApiServer::start().await;
    let port = free_port();
    seed(&server, port, start_backend().await);
    let gw = gateway("default", "gw", "gantry", port);
    server.apply("gateways", with_certificate(gw, "certs", "cert"));
    server.apply("secrets", secret("certs", "cert", "kubernetes.io/tls"));
    let updates = start_source(&server);
    let store = store_where(&updates, "the initial sync", |s| !s.gateways.is_empty()).await;
    assert!(store.secrets.is_empty(), "{:?}", store.secrets.keys());
    assert!(
        !server
            .take_requests()
            .iter()
            .any(|r| r.path.contains("/namespaces/certs/secrets")),
        "no request for Secrets in certs"
    );

    // The grant arrives: the namespace is watched.
    server.apply("referencegrants", secrets_for_default_gateways("certs"));
    store_where(&updates, "the granted Secret", |s| s.secrets.len() == 1).await;
}

#[tokio::test]
async fn a_namespace_whose_secrets_are_forbidden_does_not_block_the_rest_until_allowed() {
    use support::objects::{gateway, secret, with_certificate};

    let server = ApiServer::start().await;
    let port = free_port();
    seed(&server, port, start_backend().await);
    let gw = gateway("default", "gw", "gantry", port);
    server.apply("gateways", with_certificate(gw, "certs", "cert"));
    server.apply("referencegrants", secrets_for_default_gateways("certs"));
    server.apply("secrets", secret("certs", "cert", "kubernetes.io/tls"));
    // The operator has not bound the fleet's read access in `certs` yet.
    server.forbid("secrets", "certs");
    let updates = start_source(&server);
    let store = store_where(&updates, "a sync without the forbidden namespace", |s| {
        s.http_routes.len() == 1
    })
    .await;
    assert!(store.secrets.is_empty());

    // The RoleBinding arrives: the retrying watch lists the namespace.
    server.allow("secrets", "certs");
    store_where(&updates, "the Secret once reading is allowed", |s| {
        s.secrets.len() == 1
    })
    .await;
}

#[tokio::test]
async fn a_route_kind_whose_crd_is_missing_does_not_block_readiness() {
    let server = ApiServer::start().await;
    seed(&server, free_port(), start_backend().await);
    server.unserve("tcproutes");
    let updates = start_source(&server);
    store_where(&updates, "the sync without TCPRoutes", |s| {
        s.http_routes.len() == 1
    })
    .await;

    // Installed later: picked up by the retrying watch.
    server.serve("tcproutes");
    server.apply(
        "tcproutes",
        serde_json::json!({"apiVersion": "gateway.networking.k8s.io/v1alpha2", "kind": "TCPRoute",
            "metadata": {"name": "t", "namespace": "default"},
            "spec": {"parentRefs": [{"name": "gw"}], "rules": [{"backendRefs": [{"name": "echo", "port": 80}]}]}}),
    );
    store_where(&updates, "the TCPRoute once its CRD exists", |s| {
        s.tcp_routes.len() == 1
    })
    .await;
}

/// HTTPTransform and HTTPComposition (Gantry's ExtensionRef filters) are watched; a cluster
/// without their CRDs still becomes ready, and picks them up once installed.
#[tokio::test]
async fn gantry_filter_kinds_are_watched_and_optional() {
    let server = ApiServer::start().await;
    seed(&server, free_port(), start_backend().await);
    server.unserve("httptransforms");
    server.apply(
        "httpcompositions",
        serde_json::json!({"apiVersion": "gantry.dev/v1alpha1", "kind": "HTTPComposition",
            "metadata": {"name": "c", "namespace": "default"},
            "spec": {"parts": [{"name": "a", "backendRef": {"name": "echo", "port": 80}, "path": "/a"}]}}),
    );
    let updates = start_source(&server);
    store_where(&updates, "the sync without HTTPTransforms", |s| {
        s.http_routes.len() == 1 && s.http_compositions.len() == 1 && s.http_transforms.is_empty()
    })
    .await;

    server.serve("httptransforms");
    server.apply(
        "httptransforms",
        serde_json::json!({"apiVersion": "gantry.dev/v1alpha1", "kind": "HTTPTransform",
            "metadata": {"name": "t", "namespace": "default"},
            "spec": {"response": {"headers": {"remove": ["server"]}}}}),
    );
    store_where(&updates, "the HTTPTransform once its CRD exists", |s| {
        s.http_transforms.len() == 1
    })
    .await;
}

/// Gateway API v1.6's standard channel serves TCPRoute and UDPRoute at `v1` only: the watch
/// finds that version and reads routes there (and never lists the unserved `v1alpha2` again);
/// where only `v1alpha2` is served (older releases), it reads that.
#[tokio::test]
async fn route_kinds_are_watched_at_the_newest_version_served() {
    let server = ApiServer::start().await;
    seed(&server, free_port(), start_backend().await);
    server.unserve_version("tcproutes", "v1alpha2");
    server.unserve_version("udproutes", "v1");
    let route = |kind: &str, version: &str| {
        serde_json::json!({"apiVersion": format!("gateway.networking.k8s.io/{version}"), "kind": kind,
            "metadata": {"name": "t", "namespace": "default"},
            "spec": {"parentRefs": [{"name": "gw"}], "rules": [{"backendRefs": [{"name": "echo", "port": 80}]}]}})
    };
    server.apply("tcproutes", route("TCPRoute", "v1"));
    server.apply("udproutes", route("UDPRoute", "v1alpha2"));
    server.take_requests();
    let updates = start_source(&server);
    store_where(
        &updates,
        "TCPRoute read at v1 and UDPRoute at v1alpha2",
        |s| s.tcp_routes.len() == 1 && s.udp_routes.len() == 1,
    )
    .await;
    let requests = server.take_requests();
    // The watch's own list (not a one-object probe) went to the version found.
    let listed = |path: &str| {
        requests.iter().any(|r| {
            r.path == path && r.status == 200 && !r.query.split('&').any(|p| p == "limit=1")
        })
    };
    assert!(listed("/apis/gateway.networking.k8s.io/v1/tcproutes"));
    assert!(listed("/apis/gateway.networking.k8s.io/v1alpha2/udproutes"));
    let unserved_lists = requests
        .iter()
        .filter(|r| r.status == 404)
        .map(|r| r.line())
        .collect::<Vec<_>>();
    assert_eq!(
        unserved_lists,
        ["GET /apis/gateway.networking.k8s.io/v1/udproutes".to_owned()],
        "only the one probe of an unserved version"
    );
}

#[tokio::test]
async fn a_class_fleet_sees_only_its_class_and_its_gateways() {
    use gantry_proxy::kubernetes::watch::Scope;
    use support::objects::{gateway, gateway_class};

    let server = ApiServer::start().await;
    seed(&server, free_port(), start_backend().await);
    server.apply("gatewayclasses", gateway_class("other"));
    server.apply(
        "gateways",
        gateway("default", "gw-other", "other", free_port()),
    );
    server.apply("gateways", gateway("team", "gw-2", "gantry", free_port()));
    let (tx, updates) = tokio::sync::watch::channel(None);
    tokio::spawn(gantry_proxy::kubernetes::watch::run(
        server.client(),
        Scope::Class("gantry".into()),
        tx,
        std::sync::Arc::new(gantry_proxy::telemetry::Metrics::new()),
        Default::default(),
    ));
    let store = store_where(&updates, "the class's Gateways", |s| s.gateways.len() == 2).await;
    assert_eq!(store.gateway_classes.keys().collect::<Vec<_>>(), ["gantry"]);
    assert!(
        store.gateways.keys().all(|k| k.name != "gw-other"),
        "{:?}",
        store.gateways.keys()
    );

    // A Gateway that moves to another class leaves the store.
    server.apply("gateways", gateway("team", "gw-2", "other", free_port()));
    store_where(&updates, "the moved Gateway gone", |s| {
        s.gateways.len() == 1
    })
    .await;
}

#[tokio::test]
async fn with_watch_namespace_only_that_namespace_is_listed_and_watched() {
    use gantry_proxy::kubernetes::watch::{Namespaced, Scope};
    use gantry_translate::store::ObjectKey;
    use support::objects::{gateway, secret, with_certificate};

    let server = ApiServer::start().await;
    let port = free_port();
    seed(&server, port, start_backend().await);
    let gw = gateway("default", "gw", "gantry", port);
    server.apply("gateways", with_certificate(gw, "default", "cert"));
    server.apply("secrets", secret("default", "cert", "kubernetes.io/tls"));
    // Another namespace's objects, and a grant there that a Role in default cannot see.
    server.apply("gateways", gateway("team", "gw-2", "gantry", free_port()));
    server.apply(
        "httproutes",
        http_route("team", "r-team", "gw-2", "/team", "echo", 80),
    );
    server.apply("referencegrants", secrets_for_default_gateways("team"));
    // As for a subject holding only Roles in default: every cluster-wide list and watch, and
    // every cluster-scoped kind, is forbidden.
    for resource in [
        "gatewayclasses",
        "namespaces",
        "gateways",
        "httproutes",
        "grpcroutes",
        "tlsroutes",
        "tcproutes",
        "udproutes",
        "referencegrants",
        "backendtlspolicies",
        "services",
        "endpointslices",
        "secrets",
        "configmaps",
    ] {
        server.forbid(resource, "");
    }

    let (tx, updates) = tokio::sync::watch::channel(None);
    tokio::spawn(gantry_proxy::kubernetes::watch::run_in(
        server.client(),
        Scope::Class("gantry".into()),
        Some(Namespaced {
            namespace: "default".into(),
            class: "gantry".into(),
        }),
        tx,
        Arc::new(Metrics::new()),
        Default::default(),
    ));
    let store = store_where(&updates, "the namespace's objects", |s| {
        s.http_routes.len() == 1 && s.secrets.len() == 1
    })
    .await;
    assert_eq!(
        store.gateways.keys().cloned().collect::<Vec<_>>(),
        vec![ObjectKey::new("default", "gw")]
    );
    let class = &store.gateway_classes["gantry"];
    assert_eq!(class.spec.controller_name, gantry_crds::CONTROLLER_NAME);
    assert!(store.namespaces.is_empty(), "Namespaces are never read");

    // A Gateway referencing a Secret elsewhere (granted there) still watches nothing outside.
    server.apply(
        "gateways",
        with_certificate(gateway("default", "gw", "gantry", port), "team", "cert"),
    );
    store_where(&updates, "the Gateway's new reference", |s| {
        s.gateways.values().any(|g| {
            g.spec.listeners.iter().any(|l| {
                l.tls
                    .as_ref()
                    .and_then(|t| t.certificate_refs.as_ref())
                    .is_some_and(|r| r[0].namespace.as_deref() == Some("team"))
            })
        })
    })
    .await;

    let requests = server.take_requests();
    assert!(!requests.is_empty());
    let outside: Vec<String> = requests
        .iter()
        .filter(|r| {
            !(r.path.starts_with("/api/v1/namespaces/default/")
                || r.path.starts_with("/apis/") && r.path.contains("/namespaces/default/"))
        })
        .map(|r| format!("{} {}?{} -> {}", r.method, r.path, r.query, r.status))
        .collect();
    assert_eq!(outside, Vec::<String>::new(), "requests outside default");
    assert!(
        requests.iter().all(|r| r.status < 400 || r.status == 404),
        "no request was refused"
    );
}

/// A fleet serving `default/gw` watches routes cluster-wide, but routes naming another Gateway
/// (here of the same class, served by another fleet) never reach the translator: a burst that
/// changes only them publishes nothing.
#[tokio::test]
async fn routes_of_gateways_not_served_are_never_published() {
    use gantry_translate::store::ObjectKey;
    use support::objects::gateway;

    let server = ApiServer::start().await;
    seed(&server, free_port(), start_backend().await);
    server.apply(
        "gateways",
        gateway("default", "internal", "gantry", free_port()),
    );
    let counted = counted();
    let updates = start_source_counted(&server, &counted);
    store_where(&updates, "the initial store", |s| s.http_routes.len() == 1).await;
    let initial = publishes(&counted.0);

    for i in 0..30 {
        let name = format!("internal-{}", i % 3);
        let path = format!("/internal/{i}");
        server.apply(
            "httproutes",
            http_route("default", &name, "internal", &path, "echo", 80),
        );
    }
    server.apply(
        "httproutes",
        http_route("default", "r2", "gw", "/two", "echo", 80),
    );
    let store = store_where(&updates, "the route of the served Gateway", |s| {
        s.http_routes.contains_key(&ObjectKey::new("default", "r2"))
    })
    .await;
    assert_eq!(
        store
            .http_routes
            .keys()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        ["default/r1", "default/r2"],
        "routes of another Gateway were published"
    );
    assert_eq!(
        publishes(&counted.0),
        initial + 1,
        "only the change to a served route was published"
    );
}
