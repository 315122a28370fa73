//! `gantry-proxy explain`, run as a user runs it: the real binary on real files, its text
//! for people and its JSON for tools, and its exit status (0 a route answers, 1 the proxy
//! answers itself, 2 a usage or configuration error).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use gantry_testkit::harness::tempdir::TempDir;
use serde_json::Value;

/// A fresh config directory holding `files` (name → YAML), removed when dropped.
fn config_dir(files: &[(&str, &str)]) -> TempDir {
    let dir = TempDir::new("gantry-explain");
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).expect("write config file");
    }
    dir
}

fn explain(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gantry-proxy"))
        .arg("explain")
        .arg("--config-dir")
        .arg(dir)
        .args(args)
        .output()
        .expect("gantry-proxy runs")
}

/// Runs with `--output json`: the exit status and the parsed report.
fn explain_json(dir: &Path, args: &[&str]) -> (i32, Value) {
    let mut all = args.to_vec();
    all.extend(["--output", "json"]);
    let out = explain(dir, &all);
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "explain --output json prints JSON ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().expect("exit status"), report)
}

/// The candidate entry of `route` (`ns/name`), rule and match.
fn candidate<'a>(report: &'a Value, route: &str, rule: u64) -> &'a Value {
    report["candidates"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| {
            format!(
                "{}/{}",
                c["namespace"].as_str().unwrap_or(""),
                c["name"].as_str().unwrap_or("")
            ) == route
                && c["rule"].as_u64().is_none_or(|r| r == rule)
        })
        .unwrap_or_else(|| panic!("no candidate {route} rule {rule}: {report:#}"))
}

fn quickstart() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/quickstart")
}

const GATEWAY: &str = "\
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: gantry}
spec: {controllerName: gantry.dev/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: default}
spec:
  gatewayClassName: gantry
  listeners:
  - name: http
    port: 8080
    protocol: HTTP
---
apiVersion: v1
kind: Service
metadata: {name: shop, namespace: default}
spec:
  ports: [{name: http, port: 80, targetPort: 3001}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: shop-1
  namespace: default
  labels: {kubernetes.io/service-name: shop}
addressType: IPv4
ports: [{name: http, port: 3001}]
endpoints:
- addresses: [10.0.0.7]
  conditions: {ready: true}
";

/// An Exact match and a PathPrefix match on one path, and a header match on the prefix.
const ROUTES: &str = "\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: cart, namespace: default}
spec:
  parentRefs: [{name: gw}]
  hostnames: [shop.example.com]
  rules:
  - matches: [{path: {type: Exact, value: /cart}}]
    backendRefs: [{name: shop, port: 80}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: catch-all, namespace: default}
spec:
  parentRefs: [{name: gw}]
  hostnames: [shop.example.com]
  rules:
  - matches: [{path: {type: PathPrefix, value: /}}]
    backendRefs: [{name: shop, port: 80}]
  - matches:
    - path: {type: PathPrefix, value: /cart}
      headers: [{name: x-beta, value: \"1\"}]
    backendRefs: [{name: shop, port: 80}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: blog, namespace: default}
spec:
  parentRefs: [{name: gw}]
  hostnames: [blog.example.com]
  rules:
  - backendRefs: [{name: shop, port: 80}]
";

#[test]
fn an_exact_match_wins_over_a_prefix_and_the_prefix_is_told_why() {
    let dir = config_dir(&[("gateway.yaml", GATEWAY), ("routes.yaml", ROUTES)]);
    let (code, report) = explain_json(dir.path(), &["GET http://shop.example.com:8080/cart?x=1"]);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["listener"]["gateway"], "default/gw");
    assert_eq!(report["listener"]["name"], "http");
    assert_eq!(report["listener"]["protocol"], "HTTP");
    assert_eq!(report["route"]["name"], "cart");
    assert_eq!(report["route"]["rule"], 0);
    assert_eq!(report["route"]["match"], 0);
    assert_eq!(report["route"]["matched"], "Exact /cart");
    assert_eq!(report["route"]["hostname"], "shop.example.com");
    assert_eq!(report["request"]["query"], "x=1");
    assert_eq!(report["backends"][0]["cluster"], "default/shop:80");
    assert_eq!(report["backends"][0]["endpoints"][0], "10.0.0.7:3001");
    assert_eq!(report["outcomes"][0]["by"], "backend");
    assert_eq!(report["outcomes"][0]["share"], 1.0);
    assert_eq!(report["upstreamRequest"]["path"], "/cart?x=1");

    let prefix = candidate(&report, "default/catch-all", 0);
    assert_eq!(prefix["reason"], "precedence", "{prefix:#}");
    let why = prefix["message"].as_str().expect("message");
    assert!(
        why.contains("PathPrefix")
            && why.contains("Exact")
            && why.contains("HTTPRoute rule precedence"),
        "{why}"
    );
    // The header match of the same route fails on its header, not on precedence.
    let header = candidate(&report, "default/catch-all", 1);
    assert_eq!(header["reason"], "match", "{header:#}");
    assert_eq!(
        header["message"],
        "header x-beta is not \"1\" (request has none)"
    );
    // Another hostname's route was never a candidate for this host.
    let blog = candidate(&report, "default/blog", 0);
    assert_eq!(blog["reason"], "hostname");
    assert!(
        blog["message"]
            .as_str()
            .is_some_and(|m| m.contains("blog.example.com") && m.contains("shop.example.com")),
        "{blog:#}"
    );
}

#[test]
fn a_header_match_that_holds_outranks_a_shorter_prefix_and_the_text_says_so() {
    let dir = config_dir(&[("gateway.yaml", GATEWAY), ("routes.yaml", ROUTES)]);
    let out = explain(
        dir.path(),
        &[
            "GET http://shop.example.com:8080/cart/items",
            "-H",
            "x-beta: 1",
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("route:    HTTPRoute default/catch-all rule 1 match 0: PathPrefix /cart, header x-beta = \"1\""),
        "{text}"
    );
    assert!(
        text.contains("HTTPRoute default/catch-all rule 0 match 0 [PathPrefix /]: precedence: the answering path match is longer"),
        "{text}"
    );
    assert!(
        text.contains("HTTPRoute default/cart rule 0 match 0 [Exact /cart]: match: path does not match Exact /cart"),
        "{text}"
    );
}

#[test]
fn an_unknown_host_is_the_proxys_404_with_every_route_out_by_hostname() {
    let dir = config_dir(&[("gateway.yaml", GATEWAY), ("routes.yaml", ROUTES)]);
    let (code, report) = explain_json(dir.path(), &["GET http://other.example.com:8080/cart"]);
    assert_eq!(code, 1, "{report:#}");
    assert!(report.get("route").is_none());
    let outcome = &report["outcomes"][0];
    assert_eq!(outcome["by"], "proxy");
    assert_eq!(outcome["kind"], "noRoute");
    assert_eq!(outcome["status"], 404);
    let candidates = report["candidates"].as_array().expect("candidates");
    assert_eq!(candidates.len(), 4, "{report:#}");
    assert!(candidates.iter().all(|c| c["reason"] == "hostname"));
}

#[test]
fn a_route_from_a_namespace_the_listener_does_not_allow_is_not_attached_with_the_reason() {
    let other = "\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: intruder, namespace: team}
spec:
  parentRefs: [{name: gw, namespace: default}]
  hostnames: [shop.example.com]
  rules:
  - matches: [{path: {type: Exact, value: /cart}}]
    backendRefs: [{name: shop, port: 80}]
";
    let dir = config_dir(&[
        ("gateway.yaml", GATEWAY),
        ("routes.yaml", ROUTES),
        ("other.yaml", other),
    ]);
    let (code, report) = explain_json(dir.path(), &["GET http://shop.example.com:8080/cart"]);
    assert_eq!(code, 0);
    assert_eq!(report["route"]["name"], "cart");
    let intruder = candidate(&report, "team/intruder", 0);
    assert_eq!(intruder["reason"], "notAttached", "{intruder:#}");
    let why = intruder["message"].as_str().expect("message");
    assert!(
        why.contains("Accepted=False NotAllowedByListeners") && why.contains("namespace team"),
        "{why}"
    );
}

#[test]
fn a_route_accepted_on_another_listener_says_why_not_this_one() {
    let gateway = GATEWAY.replace(
        "    protocol: HTTP\n",
        "    protocol: HTTP\n  - name: admin\n    port: 9090\n    protocol: HTTP\n    allowedRoutes: {namespaces: {from: All}}\n",
    );
    let other = "\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: ops, namespace: team}
spec:
  parentRefs: [{name: gw, namespace: default}]
  rules:
  - backendRefs: [{name: shop, namespace: default, port: 80}]
";
    let dir = config_dir(&[("gateway.yaml", &gateway), ("other.yaml", other)]);
    let (code, report) = explain_json(dir.path(), &["GET http://shop.example.com:8080/"]);
    assert_eq!(code, 1, "{report:#}");
    let ops = candidate(&report, "team/ops", 0);
    assert_eq!(ops["reason"], "notAttached");
    assert!(
        ops["message"]
            .as_str()
            .is_some_and(|m| m.contains("not on this listener") && m.contains("namespace team")),
        "{ops:#}"
    );
}

#[test]
fn a_redirect_is_the_routes_answer_with_its_location() {
    let (code, report) = explain_json(
        &quickstart(),
        &["GET http://api.example.com:8080/old/a?q=1"],
    );
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["route"]["name"], "api");
    assert_eq!(report["route"]["rule"], 1);
    assert_eq!(report["filters"][0]["type"], "RequestRedirect");
    let outcome = &report["outcomes"][0];
    assert_eq!(outcome["by"], "route");
    assert_eq!(outcome["kind"], "redirect");
    assert_eq!(outcome["status"], 301);
    assert_eq!(outcome["location"], "http://api.example.com:8080/v1/a?q=1");
    assert!(report.get("backends").is_none(), "{report:#}");
}

#[test]
fn weighted_backends_with_an_invalid_one_give_its_share_a_500() {
    let routes = "\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: split, namespace: default}
spec:
  parentRefs: [{name: gw}]
  rules:
  - backendRefs:
    - {name: shop, port: 80, weight: 3}
    - {name: ghost, port: 80, weight: 1}
";
    let dir = config_dir(&[("gateway.yaml", GATEWAY), ("routes.yaml", routes)]);
    let (code, report) = explain_json(dir.path(), &["GET http://anything:8080/"]);
    assert_eq!(code, 0, "most requests are routed: {report:#}");
    let backends = report["backends"].as_array().expect("backends");
    assert_eq!(backends.len(), 2);
    assert_eq!(backends[0]["share"], 0.75);
    assert_eq!(backends[1]["share"], 0.25);
    assert!(backends[1].get("cluster").is_none(), "invalid: {report:#}");
    let outcomes = report["outcomes"].as_array().expect("outcomes");
    assert_eq!(outcomes[0]["kind"], "forwarded");
    assert_eq!(outcomes[0]["share"], 0.75);
    assert_eq!(outcomes[1]["kind"], "invalidBackend");
    assert_eq!(outcomes[1]["status"], 500);
    assert_eq!(outcomes[1]["share"], 0.25);

    // Every backend invalid: the proxy answers every request itself.
    let dir = config_dir(&[
        ("gateway.yaml", GATEWAY),
        ("routes.yaml", &routes.replace("name: shop", "name: gone")),
    ]);
    let out = explain(dir.path(), &["GET http://anything:8080/"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("75.0% proxy 500: the backendRef is invalid"),
        "{text}"
    );
}

/// Two HTTPS listeners with their own hostnames on one port: a connection whose SNI picked
/// one, carrying a Host of the other, is misdirected.
#[test]
fn a_host_of_another_tls_listener_than_the_sni_chose_is_421() {
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(vec!["*.example.com".to_owned()])
        .expect("params")
        .self_signed(&key)
        .expect("certificate");
    let indent = |pem: &str| {
        pem.lines()
            .map(|l| format!("    {l}\n"))
            .collect::<String>()
    };
    let config = format!(
        "\
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: gantry}}
spec: {{controllerName: gantry.dev/gateway-controller}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: tls, namespace: default}}
spec:
  gatewayClassName: gantry
  listeners:
  - name: a
    port: 8443
    protocol: HTTPS
    hostname: a.example.com
    tls: {{certificateRefs: [{{name: cert}}]}}
  - name: b
    port: 8443
    protocol: HTTPS
    hostname: b.example.com
    tls: {{certificateRefs: [{{name: cert}}]}}
---
apiVersion: v1
kind: Secret
metadata: {{name: cert, namespace: default}}
type: kubernetes.io/tls
stringData:
  tls.crt: |
{}  tls.key: |
{}---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: both, namespace: default}}
spec:
  parentRefs: [{{name: tls}}]
  rules:
  - backendRefs: [{{name: shop, port: 80}}]
",
        indent(&cert.pem()),
        indent(&key.serialize_pem())
    );
    let services = &GATEWAY[GATEWAY.find("apiVersion: v1").expect("services")..];
    let dir = config_dir(&[("tls.yaml", &config), ("services.yaml", services)]);

    let (code, report) = explain_json(dir.path(), &["GET https://a.example.com:8443/"]);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["request"]["sni"], "a.example.com");
    assert_eq!(report["listener"]["name"], "a");
    assert_eq!(report["listener"]["protocol"], "HTTPS");
    assert_eq!(report["route"]["name"], "both");

    let (code, report) = explain_json(
        dir.path(),
        &[
            "GET https://a.example.com:8443/",
            "-H",
            "host: b.example.com",
        ],
    );
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(report["listener"]["name"], "a", "the SNI's listener");
    let outcome = &report["outcomes"][0];
    assert_eq!(outcome["kind"], "misdirected");
    assert_eq!(outcome["status"], 421);
    assert!(
        outcome["message"]
            .as_str()
            .is_some_and(|m| m.contains("listener b")),
        "{outcome:#}"
    );
    let other = candidate(&report, "default/tls/b", 0);
    assert_eq!(other["kind"], "Listener");
    assert_eq!(other["reason"], "listener");
    assert_eq!(other["hostname"], "b.example.com");
    // `--sni` is what picks the listener.
    let (code, report) = explain_json(
        dir.path(),
        &["GET https://b.example.com:8443/", "--sni", "b.example.com"],
    );
    assert_eq!((code, &report["listener"]["name"]), (0, &Value::from("b")));
    // No listener for the name: the handshake is refused.
    let (code, report) = explain_json(dir.path(), &["GET https://c.other.org:8443/"]);
    assert_eq!(code, 1);
    assert_eq!(report["outcomes"][0]["kind"], "tlsRefused");
}

#[test]
fn a_grpc_call_is_explained_through_its_grpcroute() {
    let routes = "\
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: rpc, namespace: default}
spec:
  parentRefs: [{name: gw}]
  hostnames: [grpc.example.com]
  rules:
  - matches: [{method: {service: pkg.Echo, method: Say}}]
    backendRefs: [{name: shop, port: 80}]
  - matches: [{method: {service: pkg.Echo}}]
    backendRefs: [{name: shop, port: 80}]
";
    let dir = config_dir(&[("gateway.yaml", GATEWAY), ("routes.yaml", routes)]);
    let grpc = ["-H", "content-type: application/grpc"];
    let mut args = vec!["POST http://grpc.example.com:8080/pkg.Echo/Say"];
    args.extend(grpc);
    let (code, report) = explain_json(dir.path(), &args);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["route"]["kind"], "GRPCRoute");
    assert_eq!(report["route"]["rule"], 0);
    assert_eq!(report["backends"][0]["protocol"], "h2c");
    let service = candidate(&report, "default/rpc", 1);
    assert_eq!(service["reason"], "precedence");
    assert!(
        service["message"]
            .as_str()
            .is_some_and(|m| m.contains("GRPCRoute rule precedence")),
        "{service:#}"
    );
    // A method no rule serves: the proxy's 404, answered as gRPC Unimplemented.
    let mut args = vec!["POST http://grpc.example.com:8080/pkg.Other/Say"];
    args.extend(grpc);
    let (code, report) = explain_json(dir.path(), &args);
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(report["outcomes"][0]["status"], 404);
    assert_eq!(report["outcomes"][0]["grpcStatus"], 12);
}

#[test]
fn usage_and_configuration_errors_exit_2_and_a_port_without_listener_exits_1() {
    let out = explain(&quickstart(), &["GET www.example.com/"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("needs a scheme"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let missing = Path::new(env!("CARGO_MANIFEST_DIR")).join("no-such-directory");
    assert_eq!(explain(&missing, &["GET http://a/"]).status.code(), Some(2));
    let broken = config_dir(&[("bad.yaml", "kind: Gateway\nspec: [\n")]);
    assert_eq!(
        explain(broken.path(), &["GET http://a:8080/"])
            .status
            .code(),
        Some(2)
    );

    let (code, report) = explain_json(&quickstart(), &["GET http://www.example.com:9999/"]);
    assert_eq!(code, 1);
    assert_eq!(report["outcomes"][0]["kind"], "noListener");
    assert!(report["outcomes"][0].get("status").is_none());
}

#[test]
fn the_security_policy_governing_the_rule_is_listed_first() {
    let routes = "\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: guarded, namespace: default}
spec:
  parentRefs: [{name: gw}]
  rules:
  - backendRefs:
    - {name: shop, port: 80}
---
apiVersion: gantry.dev/v1alpha1
kind: SecurityPolicy
metadata: {name: keys, namespace: default}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: HTTPRoute, name: guarded}]
  apiKeyAuth:
    credentialRefs: [{name: missing}]
    extractFrom: [{headers: [x-api-key]}]
";
    let dir = config_dir(&[("gateway.yaml", GATEWAY), ("routes.yaml", routes)]);
    let (_, report) = explain_json(dir.path(), &["GET http://anything:8080/"]);
    let policy = &report["policies"][0];
    assert_eq!(policy["kind"], "SecurityPolicy", "{report:#}");
    assert_eq!(policy["name"], "default/keys");
    let summary = policy["summary"].as_str().unwrap_or_default();
    assert!(
        summary.contains("refuses every request with 500") && summary.contains("default/missing"),
        "{summary}"
    );
}
