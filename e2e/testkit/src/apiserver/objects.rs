//! Gateway API and core objects as the API server stores them, for tests and benchmarks.

#![allow(clippy::unwrap_used)]

use serde_json::{Value, json};

pub const GW_API: &str = "gateway.networking.k8s.io/v1";
pub const CONTROLLER: &str = "gantry.dev/gateway-controller";

pub fn namespace(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name}}})
}

pub fn gateway_class(name: &str) -> Value {
    json!({"apiVersion": GW_API, "kind": "GatewayClass", "metadata": {"name": name},
           "spec": {"controllerName": CONTROLLER}})
}

pub fn gateway(namespace: &str, name: &str, class: &str, port: u16) -> Value {
    json!({"apiVersion": GW_API, "kind": "Gateway",
           "metadata": {"name": name, "namespace": namespace},
           "spec": {"gatewayClassName": class, "listeners": [
               {"name": "http", "protocol": "HTTP", "port": port,
                "allowedRoutes": {"namespaces": {"from": "All"}}}]}})
}

/// An HTTPRoute sending `prefix` to `service:port`, attached to `gateway` (same namespace).
pub fn http_route(
    namespace: &str,
    name: &str,
    gateway: &str,
    prefix: &str,
    service: &str,
    port: u16,
) -> Value {
    json!({"apiVersion": GW_API, "kind": "HTTPRoute",
           "metadata": {"name": name, "namespace": namespace},
           "spec": {"parentRefs": [{"name": gateway}],
                    "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": prefix}}],
                               "backendRefs": [{"name": service, "port": port}]}]}})
}

pub fn service(namespace: &str, name: &str, port: u16) -> Value {
    json!({"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": name, "namespace": namespace},
           "spec": {"ports": [{"name": "http", "port": port, "protocol": "TCP"}]}})
}

/// An EndpointSlice of `service` with one ready endpoint at `ip:port`.
pub fn endpoint_slice(namespace: &str, service: &str, ip: &str, port: u16) -> Value {
    json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
           "metadata": {"name": format!("{service}-1"), "namespace": namespace,
                        "labels": {"kubernetes.io/service-name": service}},
           "addressType": "IPv4",
           "endpoints": [{"addresses": [ip], "conditions": {"ready": true}}],
           "ports": [{"name": "http", "port": port, "protocol": "TCP"}]})
}

/// A route parent status entry of another controller.
pub fn foreign_parent(gateway: &str) -> Value {
    json!({"parentRef": {"name": gateway}, "controllerName": "example.com/other",
           "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted",
                           "message": "theirs", "observedGeneration": 1,
                           "lastTransitionTime": "2020-01-01T00:00:00Z"}]})
}

/// The usual world: namespace `default`, class `gantry`, Gateway `default/gw` on `port`,
/// Service `echo` with an endpoint at `backend`, and HTTPRoute `r1` for `/one`.
pub fn seed(server: &super::ApiServer, port: u16, backend: std::net::SocketAddr) {
    server.apply("namespaces", namespace("default"));
    server.apply("gatewayclasses", gateway_class("gantry"));
    server.apply("gateways", gateway("default", "gw", "gantry", port));
    server.apply("services", service("default", "echo", 80));
    server.apply(
        "endpointslices",
        endpoint_slice("default", "echo", &backend.ip().to_string(), backend.port()),
    );
    server.apply(
        "httproutes",
        http_route("default", "r1", "gw", "/one", "echo", 80),
    );
}

/// A ListenerSet of `gateway` (same namespace unless `gateway_namespace` differs) with one
/// HTTP listener `name` on `port`.
pub fn listener_set(
    namespace: &str,
    name: &str,
    gateway_namespace: &str,
    gateway: &str,
    listener: &str,
    port: u16,
) -> Value {
    json!({"apiVersion": GW_API, "kind": "ListenerSet",
           "metadata": {"name": name, "namespace": namespace},
           "spec": {"parentRef": {"name": gateway, "namespace": gateway_namespace},
                    "listeners": [{"name": listener, "protocol": "HTTP", "port": port}]}})
}

/// `gateway` with `spec.allowedListeners.namespaces.from` set to `from`.
pub fn allowing_listener_sets(mut gateway: Value, from: &str) -> Value {
    gateway["spec"]["allowedListeners"] = json!({"namespaces": {"from": from}});
    gateway
}

pub fn secret(namespace: &str, name: &str, type_: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": namespace},
           "type": type_, "data": {"tls.crt": "", "tls.key": ""}})
}

/// `gateway` with an HTTPS listener whose certificate is `namespace/name`.
pub fn with_certificate(mut gateway: Value, namespace: &str, name: &str) -> Value {
    let listeners = gateway["spec"]["listeners"].as_array_mut().unwrap();
    listeners.retain(|l| l["name"] != "https");
    listeners.push(json!({"name": "https", "protocol": "HTTPS", "port": 8443,
        "tls": {"mode": "Terminate", "certificateRefs": [{"name": name, "namespace": namespace}]}}));
    gateway
}
