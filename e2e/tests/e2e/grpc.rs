//! GRPCRoute end to end: a tonic client, the proxy, tonic backends.

use std::collections::HashMap;
use std::net::SocketAddr;

use gantry_testkit::grpc::{self, Client, ECHO_BYE, ECHO_HELLO, OTHER_PING};
use gantry_testkit::harness::{
    Proxy, free_port, gateway_yaml, get, service_yaml, service_yaml_with,
};
use tonic::Code;

const ROUTES: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: methods, namespace: default}
spec:
  parentRefs: [{name: gw}]
  hostnames: ["methods.example.com"]
  rules:
    - matches: [{method: {service: gantry.test.Echo, method: Hello}}]
      backendRefs: [{name: g1, port: 8080}]
    - matches: [{method: {service: gantry.test.Echo}}]
      backendRefs: [{name: g2, port: 8080}]
    - matches: [{method: {type: RegularExpression, service: ".*Other", method: "P.ng"}}]
      backendRefs: [{name: g2, port: 8080}]
    - matches:
        - method: {service: gantry.test.Other, method: Ping}
          headers: [{name: x-variant, value: canary}]
      backendRefs: [{name: g1, port: 8080}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: weights, namespace: default}
spec:
  parentRefs: [{name: gw}]
  hostnames: ["weights.example.com"]
  rules:
    - backendRefs:
        - {name: g1, port: 8080, weight: 80}
        - {name: g2, port: 8080, weight: 20}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: filters, namespace: default}
spec:
  parentRefs: [{name: gw}]
  hostnames: ["filters.example.com"]
  rules:
    - filters:
        - type: RequestHeaderModifier
          requestHeaderModifier:
            set: [{name: x-set, value: set-by-route}]
            add: [{name: x-add, value: added}]
            remove: [x-remove]
        - type: ResponseHeaderModifier
          responseHeaderModifier:
            set: [{name: x-response, value: modified}]
      backendRefs:
        - name: g1
          port: 8080
          filters:
            - type: RequestHeaderModifier
              requestHeaderModifier:
                set: [{name: x-backend, value: g1}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: failures, namespace: default}
spec:
  parentRefs: [{name: gw}]
  hostnames: ["failures.example.com"]
  rules:
    - matches: [{method: {service: gantry.test.Echo, method: Hello}}]
      backendRefs: [{name: grpc-empty, port: 8080}]
    - matches: [{method: {service: gantry.test.Echo, method: Bye}}]
      backendRefs: [{name: does-not-exist, port: 8080}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: invalid, namespace: default}
spec:
  parentRefs: [{name: gw}]
  hostnames: ["invalid.example.com"]
  rules:
    - matches: [{method: {service: "gantry.*", method: Hello}}]
      backendRefs: [{name: g1, port: 8080}]
"#;

struct Env {
    proxy: Proxy,
    addr: SocketAddr,
}

/// Two gRPC backends: `g1` with no `appProtocol` (HTTP/1.1 by default, which a GRPCRoute
/// overrides) and `g2` with `appProtocol: grpc` (a name HTTPRoute cannot use); both serve
/// only HTTP/2, so every answer proves the proxy spoke HTTP/2 to them.
async fn setup() -> Env {
    let g1 = grpc::spawn_backend("127.0.0.1:0".parse().expect("addr"), "g1")
        .await
        .expect("g1");
    let g2 = grpc::spawn_backend("127.0.0.1:0".parse().expect("addr"), "g2")
        .await
        .expect("g2");
    let services = [
        service_yaml("default", "g1", 8080, &[g1]),
        service_yaml_with("default", "g2", 8080, &[g2], Some("grpc")),
        service_yaml("default", "grpc-empty", 8080, &[]),
    ]
    .join("---\n");
    let port = free_port();
    let proxy = Proxy::start_ready(
        &[
            ("gateway.yaml", &gateway_yaml("gw", port)),
            ("services.yaml", &services),
            ("routes.yaml", ROUTES),
        ],
        &[],
    )
    .await;
    Env {
        proxy,
        addr: format!("127.0.0.1:{port}").parse().expect("addr"),
    }
}

async fn client(env: &Env, host: &str) -> Client {
    grpc::connect(env.addr, host)
        .await
        .expect("gRPC connection")
}

#[tokio::test]
async fn method_matches_route_by_service_and_method() {
    let env = setup().await;
    let c = client(&env, "methods.example.com").await;
    // (path, metadata, backend): Exact service and method; service only; RegularExpression;
    // an exact method match with a header beats the regex.
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
    let cases: [Case<'_>; 4] = [
        (ECHO_HELLO, &[], "g1"),
        (ECHO_BYE, &[], "g2"),
        (OTHER_PING, &[], "g2"),
        (OTHER_PING, &[("x-variant", "canary")], "g1"),
    ];
    for (path, metadata, backend) in cases {
        let (reply, _) = c
            .call(path, metadata)
            .await
            .unwrap_or_else(|s| panic!("{path} {metadata:?}: {s:?}\n{}", env.proxy.log()));
        assert_eq!(reply.backend, backend, "{path} {metadata:?}");
        assert_eq!(reply.path, path);
        assert_eq!(reply.name, "gantry");
        // RFC 9113 §8.3.1: the call's authority reaches the backend as `:authority`, with no
        // separate `host` header.
        assert_eq!(reply.authority, "methods.example.com", "{path}");
        assert_eq!(
            reply.headers.get("host"),
            None,
            "{path}: {:?}",
            reply.headers
        );
    }
}

#[tokio::test]
async fn weights_split_calls_within_tolerance() {
    let env = setup().await;
    let c = client(&env, "weights.example.com").await;
    let mut counts: HashMap<String, u32> = HashMap::new();
    let n = 1000;
    for _ in 0..n {
        let (reply, _) = c.call(ECHO_HELLO, &[]).await.expect("call");
        *counts.entry(reply.backend).or_default() += 1;
    }
    let g1 = f64::from(counts.get("g1").copied().unwrap_or(0)) / f64::from(n);
    // 80/20 split; with n=1000 the standard deviation is about 1.3 %, so ±6 % is > 4 sigma.
    assert!(
        (g1 - 0.8).abs() < 0.06,
        "g1 share {g1:.3}, counts {counts:?}"
    );
}

#[tokio::test]
async fn header_filters_reach_the_backend_and_the_client() {
    let env = setup().await;
    let c = client(&env, "filters.example.com").await;
    let (reply, metadata) = c
        .call(
            ECHO_HELLO,
            &[("x-set", "from-client"), ("x-remove", "gone")],
        )
        .await
        .expect("call");
    assert_eq!(reply.backend, "g1");
    let seen = |name: &str| reply.headers.get(name).map(String::as_str);
    assert_eq!(seen("x-set"), Some("set-by-route"));
    assert_eq!(seen("x-add"), Some("added"));
    assert_eq!(seen("x-remove"), None);
    assert_eq!(seen("x-backend"), Some("g1"));
    assert_eq!(seen("content-type"), Some("application/grpc"));
    assert_eq!(
        metadata.get("x-response").and_then(|v| v.to_str().ok()),
        Some("modified")
    );
}

#[tokio::test]
async fn proxy_failures_are_grpc_statuses() {
    let env = setup().await;
    // No route: no rule of `methods` matches, and no route serves `nothing.example.com`.
    for (host, path) in [
        ("methods.example.com", "/gantry.test.Unknown/Nope"),
        ("nothing.example.com", ECHO_HELLO),
    ] {
        let status = client(&env, host)
            .await
            .call(path, &[])
            .await
            .expect_err("no route");
        assert_eq!(
            status.code(),
            Code::Unimplemented,
            "{host}{path}: {status:?}"
        );
        assert_eq!(status.message(), "no route matched");
        assert!(status.metadata().get("x-answered-by").is_none());
        assert!(status.metadata().get("x-request-id").is_some());
    }
    let c = client(&env, "failures.example.com").await;
    let status = c.call(ECHO_HELLO, &[]).await.expect_err("no endpoints");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_eq!(status.message(), "no healthy upstream");
    let status = c.call(ECHO_BYE, &[]).await.expect_err("invalid backend");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_eq!(status.message(), "invalid backend");
    // A method the backend lacks is the backend's own UNIMPLEMENTED, passed through.
    let c = client(&env, "weights.example.com").await;
    let status = c
        .call("/gantry.test.Echo/Missing", &[])
        .await
        .expect_err("backend has no such method");
    assert_eq!(status.code(), Code::Unimplemented);
    assert!(status.metadata().get("x-answered-by").is_some());
}

#[tokio::test]
async fn route_status_and_metrics_name_the_grpc_route() {
    let env = setup().await;
    let status = env.proxy.status().await;
    let route = |name: &str| {
        status
            .as_array()
            .expect("status list")
            .iter()
            .find(|o| o["kind"] == "GRPCRoute" && o["name"] == name)
            .unwrap_or_else(|| panic!("no status for GRPCRoute {name}: {status:#}"))
            .clone()
    };
    let condition = |route: &serde_json::Value, kind: &str| {
        route["status"]["parents"][0]["conditions"]
            .as_array()
            .expect("conditions")
            .iter()
            .find(|c| c["type"] == kind)
            .cloned()
            .unwrap_or_else(|| panic!("no {kind} condition: {route:#}"))
    };
    let methods = route("methods");
    assert_eq!(condition(&methods, "Accepted")["status"], "True");
    assert_eq!(condition(&methods, "ResolvedRefs")["status"], "True");
    assert_eq!(methods["apiVersion"], "gateway.networking.k8s.io/v1");

    let invalid = route("invalid");
    let accepted = condition(&invalid, "Accepted");
    assert_eq!(accepted["status"], "False");
    assert_eq!(accepted["reason"], "UnsupportedValue");
    let message = accepted["message"].as_str().expect("message");
    assert!(message.contains("gantry.*"), "{message}");
    assert!(message.contains("RegularExpression"), "{message}");

    let failures = route("failures");
    let resolved = condition(&failures, "ResolvedRefs");
    assert_eq!(resolved["status"], "False");
    assert_eq!(resolved["reason"], "BackendNotFound");

    // The listener counts GRPCRoutes and lists the kind.
    let gateway = status
        .as_array()
        .expect("status list")
        .iter()
        .find(|o| o["kind"] == "Gateway")
        .expect("Gateway status");
    let listener = &gateway["status"]["listeners"][0];
    assert_eq!(listener["attachedRoutes"], 5);
    let kinds: Vec<&str> = listener["supportedKinds"]
        .as_array()
        .expect("kinds")
        .iter()
        .filter_map(|k| k["kind"].as_str())
        .collect();
    assert_eq!(kinds, ["HTTPRoute", "GRPCRoute"]);

    client(&env, "methods.example.com")
        .await
        .call(ECHO_HELLO, &[])
        .await
        .expect("call");
    let metrics = get(&format!("http://{}/metrics", env.proxy.admin))
        .await
        .expect("metrics")
        .text();
    assert!(
        metrics.contains(
            r#"gantry_requests_total{gateway="default/gw",route="default/methods",route_kind="GRPCRoute",status_class="2xx"} 1"#
        ),
        "{metrics}"
    );
}
