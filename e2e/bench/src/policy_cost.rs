//! What API-key authentication, JWT validation and rate limits cost per request: one Gantry
//! with routes to the same backend that differ only by the policy on them (none; an API key; a
//! local rate limit per client address; the same limit global, counted in Redis; an API key
//! and a local limit per Consumer; a JWT signed ES256, verified against an inline JWKS). Every limit is far above what the benchmark sends, so nothing is refused:
//! the figure is the price of checking. Counted by [`crate::instructions`].

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::process::{Proc, free_port};

pub const PATH: &str = "/svc";
/// The API key the `key` routes accept.
pub const API_KEY: &str = "bench-key-0123456789abcdef";

/// `(case, host)`, the plain route first.
pub const CASES: [(&str, &str); 6] = [
    ("no policy", "plain.policy.bench.example.com"),
    ("API key", "key.policy.bench.example.com"),
    ("local rate limit", "local.policy.bench.example.com"),
    (
        "global rate limit (Redis)",
        "global.policy.bench.example.com",
    ),
    (
        "API key and a local limit per Consumer",
        "key-limit.policy.bench.example.com",
    ),
    ("JWT (ES256)", "jwt.policy.bench.example.com"),
];

/// The issuer of the `jwt` route's tokens.
pub const ISSUER: &str = "https://issuer.bench.example.com";

/// The key the `jwt` route's tokens are signed with, and a token valid for a day.
pub fn jwt_key() -> (gantry_testkit::jwks::SigningKey, String) {
    let key = gantry_testkit::jwks::SigningKey::generate("bench");
    let now = gantry_testkit::jwks::now();
    let token = key.token(&serde_json::json!({
        "iss": ISSUER, "sub": "bench", "iat": now, "exp": now + 86_400
    }));
    (key, token)
}

fn route(name: &str, host: &str) -> String {
    format!(
        r#"---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: {name}, namespace: default}}
spec:
  parentRefs: [{{name: bench}}]
  hostnames: ["{host}"]
  rules:
    - matches: [{{path: {{type: PathPrefix, value: {PATH}}}}}]
      backendRefs: [{{name: backend, port: 80}}]
"#
    )
}

/// Gantry standalone files: a Gateway on `port`, the backend's Service, one route per case and
/// the policies.
pub fn config(
    port: u16,
    backend: SocketAddr,
    jwt_key: &gantry_testkit::jwks::SigningKey,
) -> String {
    let names = ["plain", "key", "local", "global", "key-limit", "jwt"];
    let jwks = gantry_testkit::jwks::jwks(&[jwt_key]);
    let routes: String = names
        .iter()
        .zip(CASES)
        .map(|(name, (_, host))| route(name, host))
        .collect();
    let limit = "limit: {requests: 4000000000, unit: Second}";
    format!(
        r#"{base}{routes}---
apiVersion: v1
kind: Secret
metadata: {{name: bench-keys, namespace: default}}
stringData: {{bench: {API_KEY}}}
---
apiVersion: gantry.dev/v1alpha1
kind: Consumer
metadata: {{name: bench, namespace: default, labels: {{bench: "true"}}}}
spec:
  credentials: {{apiKeys: [{{name: bench-keys}}]}}
  labels: {{plan: gold}}
---
apiVersion: gantry.dev/v1alpha1
kind: SecurityPolicy
metadata: {{name: keys, namespace: default}}
spec:
  targetRefs:
  - {{group: gateway.networking.k8s.io, kind: HTTPRoute, name: key}}
  - {{group: gateway.networking.k8s.io, kind: HTTPRoute, name: key-limit}}
  apiKeyAuth:
    extractFrom: [{{headers: [X-API-Key]}}]
  consumerSelector: {{matchLabels: {{bench: "true"}}}}
---
apiVersion: gantry.dev/v1alpha1
kind: RateLimitPolicy
metadata: {{name: local, namespace: default}}
spec:
  targetRefs: [{{group: gateway.networking.k8s.io, kind: HTTPRoute, name: local}}]
  local:
    rules:
    - clientSelectors: [{{sourceCIDR: {{type: Distinct, value: 0.0.0.0/0}}}}]
      {limit}
---
apiVersion: gantry.dev/v1alpha1
kind: RateLimitPolicy
metadata: {{name: global, namespace: default}}
spec:
  targetRefs: [{{group: gateway.networking.k8s.io, kind: HTTPRoute, name: global}}]
  global:
    rules:
    - clientSelectors: [{{sourceCIDR: {{type: Distinct, value: 0.0.0.0/0}}}}]
      {limit}
---
apiVersion: gantry.dev/v1alpha1
kind: RateLimitPolicy
metadata: {{name: key-limit, namespace: default}}
spec:
  targetRefs: [{{group: gateway.networking.k8s.io, kind: HTTPRoute, name: key-limit}}]
  local:
    rules:
    - clientSelectors: [{{consumer: {{type: Distinct}}}}]
      {limit}
---
apiVersion: gantry.dev/v1alpha1
kind: SecurityPolicy
metadata: {{name: jwt, namespace: default}}
spec:
  targetRefs: [{{group: gateway.networking.k8s.io, kind: HTTPRoute, name: jwt}}]
  jwt:
    providers:
    - name: bench
      issuer: {ISSUER}
      localJWKS: {{type: Inline, inline: '{jwks}'}}
"#,
        base = crate::config::base(port, backend),
    )
}

/// A redis-server on a free port for the global case; stopped on drop.
pub struct Redis {
    pub url: String,
    _proc: Proc,
}

impl Redis {
    pub fn start(dir: &std::path::Path) -> anyhow::Result<Self> {
        super::proxy::which("redis-server")
            .context("redis-server is missing: install the Debian package redis-server")?;
        let port = free_port()?;
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null());
        let proc = Proc::spawn("redis-server", &mut command, Some(&dir.join("redis.log")))?;
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if started.elapsed() > Duration::from_secs(10) {
                bail!("redis-server did not listen within 10 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Self {
            url: format!("redis://127.0.0.1:{port}"),
            _proc: proc,
        })
    }
}
