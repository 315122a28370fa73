//! Generates equivalent configurations with N host/path routes in front of one backend.

use std::fmt::Write;
use std::net::SocketAddr;

/// Host of route `i`.
pub fn host(i: usize) -> String {
    format!("r{i}.bench.example.com")
}

/// Path of route `i`.
pub fn path(i: usize) -> String {
    format!("/svc{i}")
}

/// The Gateway on `port` (class `gantry`, one HTTP listener) and the Service `backend` (port
/// 80) with `backend` as its one endpoint: what every Gantry scenario starts from.
pub fn base(port: u16, backend: SocketAddr) -> String {
    format!("{}{}", gateway(port), service("backend", &[backend]))
}

/// The GatewayClass `gantry` and the Gateway `default/bench` with one HTTP listener on `port`.
pub fn gateway(port: u16) -> String {
    gateway_with(&format!("[{{name: http, port: {port}, protocol: HTTP}}]"))
}

/// The GatewayClass `gantry` and the Gateway `default/bench` with `listeners` (a YAML flow
/// sequence).
pub fn gateway_with(listeners: &str) -> String {
    format!(
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: gantry}}
spec: {{controllerName: gantry.dev/gateway-controller}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: bench, namespace: default}}
spec:
  gatewayClassName: gantry
  listeners: {listeners}
"#
    )
}

/// The Service `default/name` (port 80) with `endpoints`, one EndpointSlice each; every
/// document starts with `---`.
pub fn service(name: &str, endpoints: &[SocketAddr]) -> String {
    let mut text = format!(
        r#"---
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: default}}
spec: {{ports: [{{name: http, port: 80}}]}}
"#
    );
    for (i, endpoint) in endpoints.iter().enumerate() {
        text.push_str(&format!(
            r#"---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: {name}-{i}, namespace: default, labels: {{kubernetes.io/service-name: {name}}}}}
addressType: IPv4
ports: [{{name: http, port: {port}}}]
endpoints: [{{addresses: ["{ip}"], conditions: {{ready: true}}}}]
"#,
            port = endpoint.port(),
            ip = endpoint.ip()
        ));
    }
    text
}

/// Gantry standalone files: a Gateway on `port`, a Service for `backend`, and `routes`
/// HTTPRoutes, each with its own hostname and path prefix.
pub fn gantry(port: u16, backend: SocketAddr, routes: usize) -> Vec<(String, String)> {
    let base = base(port, backend);
    let mut files = vec![("base.yaml".to_owned(), base)];
    // Many routes per file, as a generator would write them; 500 a file.
    for chunk_start in (0..routes).step_by(500) {
        let mut text = String::new();
        for i in chunk_start..(chunk_start + 500).min(routes) {
            text.push_str(&route(i));
        }
        files.push((format!("routes-{chunk_start:05}.yaml"), text));
    }
    files
}

/// One HTTPRoute document (with a leading `---`).
pub fn route(i: usize) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        r#"---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: route-{i}, namespace: default}}
spec:
  parentRefs: [{{name: bench}}]
  hostnames: ["{host}"]
  rules:
    - matches: [{{path: {{type: PathPrefix, value: {path}}}}}]
      backendRefs: [{{name: backend, port: 80}}]
"#,
        host = host(i),
        path = path(i)
    );
    s
}
