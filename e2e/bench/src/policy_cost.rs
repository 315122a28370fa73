//! What API-key authentication, JWT validation and rate limits cost per request: one Gantry
//! with routes to the same backend that differ only by the policy on them (none; an API key; a
//! local rate limit per client address; the same limit global, counted in Redis; an API key
//! and a local limit per Consumer; a JWT signed ES256, verified against an inline JWKS). Every
//! limit is far above what the benchmark sends, so nothing is refused: the figure is the price
//! of checking. Counted two ways: instructions per request by [`crate::instructions`], and
//! under load by [`measure`] (`wrk` on each route in turn, interleaved; the proxy's CPU time
//! per request and its requests per second, as a gateway's published throughput figures are).
//!
//! Nothing is asserted: timings on a shared machine are read from the report, not tested.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::interleave::{self, Runs, summarise};
use super::probe;
use super::process::{Proc, free_port, scratch};
use super::proxy::{self, Setup};
use super::results::{PolicyCost, PolicyCostCase};
use super::wrk::{self, Counting};

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

/// The credential a case's requests carry (header, value): the API key, or the JWT as a
/// bearer token; none for the others.
pub fn credential(case: &str, bearer: &str) -> Option<(&'static str, String)> {
    if case.starts_with("API key") {
        Some(("X-API-Key", API_KEY.to_owned()))
    } else if case.starts_with("JWT") {
        Some(("Authorization", bearer.to_owned()))
    } else {
        None
    }
}

/// Starts Gantry (and Redis for the global limit) and loads each case's route in turn,
/// `repeats` rounds, with `connections` connections for `duration` per run (after `warmup` on
/// each).
pub fn measure(
    setup: &Setup,
    connections: u32,
    duration: Duration,
    warmup: Duration,
    repeats: usize,
) -> anyhow::Result<PolicyCost> {
    let dir = scratch("policy-cost")?;
    let config_dir = dir.join("config");
    std::fs::create_dir_all(&config_dir)?;
    let redis = Redis::start(&dir)?;
    let (key, token) = jwt_key();
    let bearer = format!("Bearer {token}");
    let port = free_port()?;
    std::fs::write(
        config_dir.join("config.yaml"),
        config(port, setup.backend, &key),
    )?;
    let mut command = proxy::gantry_command(setup, &config_dir)?;
    command.args(["--rate-limit-redis", &redis.url]);
    let mut proc = Proc::spawn("gantry", &mut command, Some(&dir.join("stderr.log")))?;
    let wait = probe::Wait {
        started: Instant::now(),
        timeout: Duration::from_secs(60),
        interval: Duration::from_millis(2),
    };
    let credentials: Vec<_> = CASES
        .iter()
        .map(|(case, _)| credential(case, &bearer))
        .collect();
    for ((_, host), credential) in CASES.iter().zip(&credentials) {
        let headers: Vec<(&str, &str)> = credential.iter().map(|(n, v)| (*n, v.as_str())).collect();
        probe::wait_for_200_with(port, host, PATH, &headers, wait, || proc.check_alive())
            .with_context(|| format!("gantry did not serve {host}"))?;
    }
    // Each case's credential, sent by `wrk` with every request.
    let preludes: Vec<String> = credentials
        .iter()
        .map(|c| match c {
            Some((name, value)) => format!("wrk.headers[\"{name}\"] = \"{value}\""),
            None => String::new(),
        })
        .collect();
    let url = format!("http://127.0.0.1:{port}{PATH}");
    // Each round starts at the next case, so no case always follows the same one (the global
    // case leaves Redis work behind it, for one).
    let runs = Runs {
        warmup,
        duration,
        repeats,
        rotate: true,
    };
    let samples = interleave::rounds(&mut proc, CASES.len(), runs, |i, duration| {
        wrk::run_with(
            &url,
            CASES[i].1,
            connections,
            duration,
            Counting::Summary,
            &preludes[i],
        )
    })?;
    drop(proc);
    drop(redis);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(PolicyCost {
        connections,
        seconds_per_run: duration.as_secs(),
        repeats: repeats.max(1),
        cases: CASES
            .iter()
            .zip(&samples)
            .map(|((case, _), samples)| PolicyCostCase {
                case: (*case).to_owned(),
                route: summarise(samples),
            })
            .collect(),
    })
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
