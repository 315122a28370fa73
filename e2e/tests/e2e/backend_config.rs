//! BackendConfigPolicy against the real binary in standalone mode: policies read from the
//! config directory, their resolved settings on the clusters in `GET /config`, their status in
//! `GET /status`, an invalid policy reported without stopping the rest, and an edit applied
//! live. What the data plane does with the connection settings is in `backend_connections`,
//! with the load balancers in `load_balancing`.

use std::time::Duration;

use gantry_testkit::harness::{Proxy, Served, get_host, serve_routes};
use http::StatusCode;
use serde_json::{Value, json};

const HOST: &str = "policies.example.com";

const ROUTES: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: policies, namespace: default}
spec:
  parentRefs: [{name: gw}]
  hostnames: ["policies.example.com"]
  rules:
    - matches: [{path: {type: PathPrefix, value: /web}}]
      backendRefs: [{name: web, port: 8080}]
    - matches: [{path: {type: PathPrefix, value: /api}}]
      backendRefs: [{name: api, port: 8080}]
"#;

/// `web` gets a valid policy, `api` an invalid one (a header name with a space).
const POLICIES: &str = r#"
apiVersion: gantry.dev/v1alpha1
kind: BackendConfigPolicy
metadata: {name: web, namespace: default, creationTimestamp: "2026-01-01T00:00:00Z"}
spec:
  targetRefs: [{group: "", kind: Service, name: web}]
  loadBalancer: {type: LeastRequest}
  healthCheck:
    active: {type: HTTP, http: {path: /healthz}}
  circuitBreaker: {maxParallelRequests: 100}
---
apiVersion: gantry.dev/v1alpha1
kind: BackendConfigPolicy
metadata: {name: api, namespace: default, creationTimestamp: "2026-01-01T00:00:00Z"}
spec:
  targetRefs: [{group: "", kind: Service, name: api}]
  loadBalancer:
    type: ConsistentHash
    consistentHash: {type: Header, header: {name: "x user"}}
"#;

async fn served() -> Served {
    let routes = format!("{ROUTES}---\n{POLICIES}");
    serve_routes(&[("default", "web"), ("default", "api")], &routes).await
}

/// The `backendConfig` of cluster `name` in `/config`.
async fn backend_config(proxy: &Proxy, name: &str) -> Value {
    proxy.config().await["ir"]["clusters"][name]["backendConfig"].clone()
}

/// `(status, reason)` of our `Accepted` condition on policy `name`.
async fn accepted(proxy: &Proxy, name: &str) -> (String, String, String) {
    let statuses = proxy.status().await;
    let policy = statuses
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["kind"] == "BackendConfigPolicy" && s["name"] == name)
        .unwrap_or_else(|| panic!("no status for BackendConfigPolicy {name}: {statuses:#}"));
    let condition = &policy["status"]["ancestors"][0]["conditions"][0];
    assert_eq!(condition["type"], "Accepted", "{policy:#}");
    (
        condition["status"].as_str().unwrap_or_default().to_owned(),
        condition["reason"].as_str().unwrap_or_default().to_owned(),
        condition["message"].as_str().unwrap_or_default().to_owned(),
    )
}

#[tokio::test]
async fn policies_are_resolved_onto_clusters_and_reported_and_an_invalid_one_changes_nothing() {
    let s = served().await;
    let web = backend_config(&s.proxy, "default/web:8080").await;
    assert_eq!(web["policy"], "default/web");
    assert_eq!(
        web["loadBalancer"],
        json!({"type": "LeastRequest", "choices": 2})
    );
    assert_eq!(
        web["healthCheck"]["active"]["probe"],
        json!({"type": "HTTP", "path": "/healthz", "method": "GET",
               "expectedStatuses": [200], "hostname": "web.default.svc"})
    );
    assert_eq!(web["circuitBreaker"]["maxParallelRequests"], 100);
    assert_eq!(web["circuitBreaker"]["maxConnections"], 1024);
    assert_eq!(
        web["connection"],
        json!({"connectTimeoutMs": 5000, "idleTimeoutMs": 90000})
    );
    let (status, reason, _) = accepted(&s.proxy, "web").await;
    assert_eq!((status.as_str(), reason.as_str()), ("True", "Accepted"));

    // The invalid policy applies nothing and says why; its Service is served all the same.
    assert_eq!(
        backend_config(&s.proxy, "default/api:8080").await,
        Value::Null
    );
    let (status, reason, message) = accepted(&s.proxy, "api").await;
    assert_eq!((status.as_str(), reason.as_str()), ("False", "Invalid"));
    assert!(
        message.contains("loadBalancer.consistentHash.header.name \"x user\""),
        "{message}"
    );
    for path in ["/web", "/api"] {
        let reply = get_host(&format!("{}{path}", s.base), HOST, &[])
            .await
            .expect("request");
        assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.text());
    }
}

#[tokio::test]
async fn an_edited_policy_is_applied_live() {
    let s = served().await;
    let before = s.proxy.version().await;
    s.proxy.write(
        "routes.yaml",
        &format!(
            "{ROUTES}---\n{}",
            POLICIES.replace(
                "loadBalancer: {type: LeastRequest}",
                "loadBalancer: {type: Random}"
            )
        ),
    );
    s.proxy.wait_version_above(before).await;
    s.proxy
        .eventually(
            Duration::from_secs(10),
            Duration::from_millis(20),
            || async {
                let lb = backend_config(&s.proxy, "default/web:8080").await["loadBalancer"].clone();
                if lb == json!({"type": "Random"}) {
                    Ok(())
                } else {
                    Err(format!("web's load balancer is still {lb}"))
                }
            },
        )
        .await;
}
