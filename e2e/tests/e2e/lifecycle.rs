//! The proxy's life: readiness, hot reload under load, bad input, status, metrics, SIGTERM.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use gantry_testkit::echo::Echo;
use gantry_testkit::harness::{Proxy, echo_backends, free_port, gateway_yaml, get, get_host};
use serde_json::Value;

fn route(name: &str, host: &str, backend: &str) -> String {
    format!(
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: {name}, namespace: default}}
spec:
  parentRefs: [{{name: gw}}]
  hostnames: ["{host}"]
  rules:
    - backendRefs: [{{name: {backend}, port: 8080}}]
"#
    )
}

fn find<'a>(statuses: &'a Value, kind: &str, name: &str) -> &'a Value {
    statuses
        .as_array()
        .and_then(|a| a.iter().find(|o| o["kind"] == kind && o["name"] == name))
        .unwrap_or_else(|| panic!("no {kind} {name} in /status: {statuses:#}"))
}

fn condition<'a>(conditions: &'a Value, type_: &str) -> &'a Value {
    conditions
        .as_array()
        .and_then(|a| a.iter().find(|c| c["type"] == type_))
        .unwrap_or_else(|| panic!("no {type_} condition in {conditions:#}"))
}

#[tokio::test]
async fn readyz_turns_ready_only_once_a_config_is_loaded() {
    let (services, _) = echo_backends(&[("default", "web")]).await;
    let port = free_port();
    // The only file is broken: nothing can be served, so the proxy must not claim readiness.
    let proxy = Proxy::start(&[("broken.yaml", "kind: [unclosed\n")], &[]);
    // Wait for the source's verdict on the file (the admin server answers before it), then
    // check that it did not make the proxy ready.
    let errors = proxy
        .eventually(
            Duration::from_secs(10),
            Duration::from_millis(20),
            || async {
                let Ok(reply) = get(&format!("http://{}/config", proxy.admin)).await else {
                    return Err("admin not up yet".to_owned());
                };
                let config: Value = serde_json::from_slice(&reply.body)
                    .map_err(|e| format!("/config is not JSON: {e}"))?;
                let errors = config["source"]["errors"].to_string();
                if errors.contains("broken.yaml") {
                    Ok(errors)
                } else {
                    Err(format!("the broken file is not reported yet: {errors}"))
                }
            },
        )
        .await;
    assert!(
        errors.contains("broken.yaml:1"),
        "the error names file and line: {errors}"
    );
    let readyz = get(&format!("http://{}/readyz", proxy.admin))
        .await
        .expect("readyz");
    assert_eq!(readyz.status, 503, "{}", readyz.text());

    proxy.write("gateway.yaml", &gateway_yaml("gw", port));
    proxy.write("services.yaml", &services);
    proxy.write("route.yaml", &route("web", "ready.example.com", "web"));
    proxy.remove("broken.yaml");
    proxy.wait_ready().await;
    let reply = get_host(
        &format!("http://127.0.0.1:{port}/"),
        "ready.example.com",
        &[],
    )
    .await
    .expect("served once ready");
    assert_eq!(reply.echo().name, "web");
}

#[tokio::test]
async fn invalid_file_keeps_the_last_good_config_and_says_why() {
    let (services, _) = echo_backends(&[("default", "web")]).await;
    let port = free_port();
    let proxy = Proxy::start_ready(
        &[
            ("gateway.yaml", &gateway_yaml("gw", port)),
            ("services.yaml", &services),
            ("route.yaml", &route("web", "keep.example.com", "web")),
        ],
        &[],
    )
    .await;
    let url = format!("http://127.0.0.1:{port}/");
    proxy.write("route.yaml", "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: web}\nspec:\n  rules: [ {broken\n");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let errors = proxy.config().await["source"]["errors"].clone();
        if errors.as_array().is_some_and(|e| !e.is_empty()) {
            assert!(errors.to_string().contains("route.yaml"), "{errors}");
            break;
        }
        assert!(Instant::now() < deadline, "the bad file was never reported");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let reply = get_host(&url, "keep.example.com", &[])
        .await
        .expect("request");
    assert_eq!(reply.status, 200, "the last good config keeps serving");
    let metrics = get(&format!("http://{}/metrics", proxy.admin))
        .await
        .expect("metrics")
        .text();
    assert!(
        metrics.contains("gantry_config_reloads_rejected_total 1"),
        "{metrics}"
    );

    // An unknown kind is skipped with a warning; the rest applies.
    let before = proxy.version().await;
    proxy.write(
        "route.yaml",
        &format!(
            "{}---\napiVersion: example.com/v1\nkind: Widget\nmetadata: {{name: w}}\n",
            route("web", "fixed.example.com", "web")
        ),
    );
    proxy.wait_version_above(before).await;
    let config = proxy.config().await;
    assert!(
        config["source"]["warnings"].to_string().contains("Widget"),
        "{config:#}"
    );
    assert_eq!(config["source"]["errors"], serde_json::json!([]));
    let reply = get_host(&url, "fixed.example.com", &[])
        .await
        .expect("request");
    assert_eq!(reply.status, 200);
}

#[tokio::test]
async fn status_reports_gateway_listeners_and_route_parents() {
    let (services, _) = echo_backends(&[("default", "web")]).await;
    let port = free_port();
    let proxy = Proxy::start_ready(
        &[
            ("gateway.yaml", &gateway_yaml("gw", port)),
            ("services.yaml", &services),
            ("good.yaml", &route("good", "good.example.com", "web")),
            ("bad.yaml", &route("bad", "bad.example.com", "missing")),
        ],
        &[],
    )
    .await;
    let statuses = proxy.status().await;
    let class = find(&statuses, "GatewayClass", "gantry");
    assert_eq!(
        condition(&class["status"]["conditions"], "Accepted")["status"],
        "True"
    );

    let gw = find(&statuses, "Gateway", "gw");
    assert_eq!(gw["namespace"], "default");
    assert_eq!(
        gw["status"]["addresses"],
        serde_json::json!([{"type": "IPAddress", "value": "127.0.0.1"}])
    );
    assert_eq!(
        condition(&gw["status"]["conditions"], "Accepted")["status"],
        "True"
    );
    assert_eq!(
        condition(&gw["status"]["conditions"], "Programmed")["status"],
        "True"
    );
    let listener = &gw["status"]["listeners"][0];
    assert_eq!(listener["name"], "http");
    assert_eq!(listener["attachedRoutes"], 2);
    assert_eq!(listener["supportedKinds"][0]["kind"], "HTTPRoute");
    let programmed = condition(&listener["conditions"], "Programmed");
    assert_eq!(programmed["status"], "True");
    assert!(programmed["lastTransitionTime"].is_string());
    assert!(programmed["observedGeneration"].is_number());

    let good = find(&statuses, "HTTPRoute", "good");
    let parent = &good["status"]["parents"][0];
    assert_eq!(parent["controllerName"], "gantry.dev/gateway-controller");
    assert_eq!(parent["parentRef"]["name"], "gw");
    assert_eq!(
        condition(&parent["conditions"], "Accepted")["status"],
        "True"
    );
    assert_eq!(
        condition(&parent["conditions"], "ResolvedRefs")["status"],
        "True"
    );

    let bad = find(&statuses, "HTTPRoute", "bad");
    let resolved = condition(&bad["status"]["parents"][0]["conditions"], "ResolvedRefs");
    assert_eq!(resolved["status"], "False");
    assert_eq!(resolved["reason"], "BackendNotFound");
    assert!(
        resolved["message"]
            .as_str()
            .unwrap_or("")
            .contains("missing"),
        "{resolved}"
    );
    let reply = get_host(&format!("http://127.0.0.1:{port}/"), "bad.example.com", &[])
        .await
        .expect("request");
    assert_eq!(reply.status, 500);

    let metrics = get(&format!("http://{}/metrics", proxy.admin))
        .await
        .expect("metrics")
        .text();
    assert!(
        metrics.contains(r#"gantry_requests_total{gateway="default/gw",route="default/bad",route_kind="HTTPRoute",status_class="5xx"} 1"#),
        "{metrics}"
    );
}

/// A standalone proxy listening on 127.0.0.1 cannot give a Gateway another address: the
/// Gateway says `AddressNotAssigned` (and names the flag that would) while it still serves.
#[tokio::test]
async fn a_static_address_the_proxy_does_not_listen_on_is_not_assigned() {
    let (services, _) = echo_backends(&[("default", "web")]).await;
    let port = free_port();
    let gateway = gateway_yaml("gw", port).replacen(
        "  gatewayClassName: gantry\n",
        "  gatewayClassName: gantry\n  addresses:\n  - value: 127.0.0.1\n  - value: 192.0.2.10\n",
        1,
    );
    assert!(gateway.contains("192.0.2.10"), "{gateway}");
    let proxy = Proxy::start_ready(
        &[
            ("gateway.yaml", &gateway),
            ("services.yaml", &services),
            ("route.yaml", &route("good", "good.example.com", "web")),
        ],
        &[],
    )
    .await;
    let statuses = proxy.status().await;
    let gw = find(&statuses, "Gateway", "gw");
    let programmed = condition(&gw["status"]["conditions"], "Programmed");
    assert_eq!(programmed["status"], "False", "{gw}");
    assert_eq!(programmed["reason"], "AddressNotAssigned");
    let message = programmed["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("spec.addresses[1] 192.0.2.10") && message.contains("--bind-address"),
        "{message}"
    );
    let reply = get_host(
        &format!("http://127.0.0.1:{port}/"),
        "good.example.com",
        &[],
    )
    .await
    .expect("request");
    assert_eq!(reply.status, 200, "the listener still serves");
}

#[tokio::test]
async fn hot_reload_under_load_drops_nothing() {
    hot_reload_under_load(&[]).await;
}

/// One worker thread runs the proxy on a current-thread runtime (`cli::main`): reloads,
/// whose translation runs on the blocking pool, go live under load just the same.
#[tokio::test]
async fn hot_reload_under_load_drops_nothing_with_one_worker_thread() {
    hot_reload_under_load(&["--worker-threads", "1"]).await;
}

async fn hot_reload_under_load(args: &[&str]) {
    let (services, _) = echo_backends(&[("default", "web"), ("default", "other")]).await;
    let port = free_port();
    let proxy = Proxy::start_ready(
        &[
            ("gateway.yaml", &gateway_yaml("gw", port)),
            ("services.yaml", &services),
            ("stable.yaml", &route("stable", "stable.example.com", "web")),
        ],
        args,
    )
    .await;
    let url = format!("http://127.0.0.1:{port}/");
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let mut loaders = Vec::new();
    for _ in 0..4 {
        let (stop, sent, failed, url) = (stop.clone(), sent.clone(), failed.clone(), url.clone());
        loaders.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let ok = matches!(
                    get_host(&url, "stable.example.com", &[]).await,
                    Ok(r) if r.status == 200
                );
                sent.fetch_add(1, Ordering::Relaxed);
                if !ok {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    // Add, edit and remove routes while the load runs; each change must go live.
    for i in 0..15 {
        let before = proxy.version().await;
        let backend = if i % 2 == 0 { "web" } else { "other" };
        proxy.write(
            &format!("churn-{i}.yaml"),
            &route(&format!("churn-{i}"), &format!("c{i}.example.com"), backend),
        );
        if i > 2 {
            proxy.remove(&format!("churn-{}.yaml", i - 3));
        }
        proxy.wait_version_above(before).await;
        let reply = get_host(&url, &format!("c{i}.example.com"), &[])
            .await
            .expect("new route");
        assert_eq!(reply.echo().name, backend);
        if i > 2 {
            let gone = get_host(&url, &format!("c{}.example.com", i - 3), &[])
                .await
                .expect("removed route");
            assert_eq!(gone.status, 404);
        }
    }
    stop.store(true, Ordering::Relaxed);
    for l in loaders {
        l.await.expect("load task");
    }
    let sent = sent.load(Ordering::Relaxed);
    assert!(sent > 100, "the load actually ran: {sent}");
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "failed requests out of {sent}"
    );
}

#[tokio::test]
async fn sigterm_drains_in_flight_requests() {
    sigterm_drains(&[]).await;
}

#[tokio::test]
async fn sigterm_drains_in_flight_requests_with_one_worker_thread() {
    sigterm_drains(&["--worker-threads", "1"]).await;
}

async fn sigterm_drains(args: &[&str]) {
    let (services, addrs) = echo_backends(&[("default", "web")]).await;
    let port = free_port();
    let mut proxy = Proxy::start_ready(
        &[
            ("gateway.yaml", &gateway_yaml("gw", port)),
            ("services.yaml", &services),
            ("route.yaml", &route("web", "drain.example.com", "web")),
        ],
        args,
    )
    .await;
    let url = format!("http://127.0.0.1:{port}/slow-in-flight");
    let slow = tokio::spawn(async move {
        get_host(&url, "drain.example.com", &[("x-echo-delay-ms", "1500")]).await
    });
    // Wait until the backend has the request, so it is truly in flight.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let seen: Vec<Echo> = serde_json::from_slice(
            &get(&format!("http://{}/_echo/seen", addrs[0]))
                .await
                .expect("seen")
                .body,
        )
        .expect("seen JSON");
        if seen.iter().any(|e| e.path == "/slow-in-flight") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "request never reached the backend"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    proxy.terminate();
    // Not ready any more while draining (the signal is handled asynchronously, so poll).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match get(&format!("http://{}/readyz", proxy.admin)).await {
            Ok(r) if r.status == 200 => {
                assert!(Instant::now() < deadline, "still ready after SIGTERM");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Ok(r) => {
                assert_eq!(r.status, 503, "{}", r.text());
                break;
            }
            Err(_) => break, // already gone
        }
    }
    let reply = slow
        .await
        .expect("task")
        .expect("the in-flight request completes");
    assert_eq!(reply.status, 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = proxy.child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "proxy did not exit after draining"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "exit status {status}");
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err(),
        "listener closed after shutdown"
    );
}

#[tokio::test]
async fn json_access_log_has_one_line_per_request() {
    let (services, _) = echo_backends(&[("default", "web")]).await;
    let port = free_port();
    let proxy = Proxy::start_ready(
        &[
            ("gateway.yaml", &gateway_yaml("gw", port)),
            ("services.yaml", &services),
            ("route.yaml", &route("web", "log.example.com", "web")),
        ],
        &["--access-log-format", "json"],
    )
    .await;
    let reply = get_host(
        &format!("http://127.0.0.1:{port}/logged?x=1"),
        "log.example.com",
        &[("x-request-id", "log-me-123")],
    )
    .await
    .expect("request");
    assert_eq!(reply.status, 200);
    let deadline = Instant::now() + Duration::from_secs(5);
    let line = loop {
        let log = proxy.log();
        if let Some(line) = log.lines().find(|l| l.contains("log-me-123")) {
            break line.to_owned();
        }
        assert!(Instant::now() < deadline, "no access-log line:\n{log}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let entry: Value = serde_json::from_str(&line).expect("access-log line is JSON");
    assert_eq!(entry["target"], "access", "{entry}");
    assert_eq!(entry["status"], 200, "{entry}");
    assert_eq!(entry["method"], "GET", "{entry}");
    assert_eq!(entry["host"], "log.example.com", "{entry}");
    assert!(
        entry["path"].as_str().unwrap_or("").starts_with("/logged"),
        "{entry}"
    );
    assert_eq!(entry["route"], "default/web", "{entry}");
}

#[tokio::test]
async fn an_endpoint_change_moves_traffic_without_retranslating_routes() {
    let (_, first) = echo_backends(&[("default", "one")]).await;
    let (_, second) = echo_backends(&[("default", "two")]).await;
    let slice = |addr: std::net::SocketAddr| {
        format!(
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: web-1\n  namespace: default\n  labels: {{kubernetes.io/service-name: web}}\naddressType: IPv4\nports: [{{name: http, port: {}}}]\nendpoints: [{{addresses: [\"127.0.0.1\"], conditions: {{ready: true}}}}]\n",
            addr.port()
        )
    };
    let service = "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: default}\nspec:\n  ports: [{name: http, port: 8080}]\n";
    let port = free_port();
    let proxy = Proxy::start_ready(
        &[
            ("gateway.yaml", &gateway_yaml("gw", port)),
            ("service.yaml", service),
            ("slice.yaml", &slice(first[0])),
            ("route.yaml", &route("web", "ep.example.com", "web")),
        ],
        &[],
    )
    .await;
    let url = format!("http://127.0.0.1:{port}/");
    let reply = get_host(&url, "ep.example.com", &[])
        .await
        .expect("request");
    assert_eq!(reply.echo().name, "one");
    let statuses_before = proxy.status().await;

    let before = proxy.version().await;
    proxy.write("slice.yaml", &slice(second[0]));
    proxy.wait_version_above(before).await;
    let reply = get_host(&url, "ep.example.com", &[])
        .await
        .expect("request");
    assert_eq!(reply.echo().name, "two");
    assert!(
        proxy.log().contains("endpoints_only=true"),
        "the endpoint-only path was taken:\n{}",
        proxy.log()
    );
    assert_eq!(proxy.status().await, statuses_before, "statuses untouched");

    // The endpoint goes away: 503, and statuses still untouched.
    let before = proxy.version().await;
    proxy.write(
        "slice.yaml",
        &slice(second[0]).replace("ready: true", "ready: false"),
    );
    proxy.wait_version_above(before).await;
    let reply = get_host(&url, "ep.example.com", &[])
        .await
        .expect("request");
    assert_eq!(reply.status, 503);
}
