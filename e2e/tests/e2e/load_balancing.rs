//! BackendConfigPolicy load balancing and request limits against the real binary in
//! standalone mode: echo endpoints that report their name, Services sharing them under
//! different policies, configuration files rewritten live.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use gantry_testkit::echo::{self, EchoIdentity};
use gantry_testkit::harness::{Proxy, Reply, free_port, gateway_yaml, get_host, send};
use http::Method;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

const HOST: &str = "lb.example.com";

/// One route per Service: `/<service>` goes to Service `<service>`.
fn routes(services: &[&str]) -> String {
    let mut rules = String::new();
    for s in services {
        rules.push_str(&format!(
            "    - matches: [{{path: {{type: PathPrefix, value: /{s}}}}}]\n      backendRefs: [{{name: {s}, port: 8080}}]\n"
        ));
    }
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: lb, namespace: default}}\nspec:\n  parentRefs: [{{name: gw}}]\n  hostnames: [\"{HOST}\"]\n  rules:\n{rules}"
    )
}

/// A Service on port 8080 whose endpoints are `backends`, one EndpointSlice each.
fn service_yaml(name: &str, backends: &[SocketAddr]) -> String {
    let mut yaml = format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  ports: [{{name: http, port: 8080}}]\n"
    );
    for (i, b) in backends.iter().enumerate() {
        yaml.push_str(&format!(
            "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {name}-{i}\n  namespace: default\n  labels: {{kubernetes.io/service-name: {name}}}\naddressType: IPv4\nports: [{{name: http, port: {}}}]\nendpoints: [{{addresses: [\"{}\"], conditions: {{ready: true}}}}]\n",
            b.port(),
            b.ip()
        ));
    }
    yaml
}

/// A BackendConfigPolicy for Service `name` with `spec` (YAML lines indented by two spaces).
fn policy(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: gantry.dev/v1alpha1\nkind: BackendConfigPolicy\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  targetRefs: [{{group: \"\", kind: Service, name: {name}}}]\n{spec}"
    )
}

/// Echo backends named `ep-0`, `ep-1`, ...
async fn echoes(n: usize) -> Vec<SocketAddr> {
    let mut addrs = Vec::new();
    for i in 0..n {
        let (addr, _task) = echo::spawn(
            "127.0.0.1:0".parse().expect("addr"),
            EchoIdentity {
                name: format!("ep-{i}"),
                namespace: "default".into(),
                plain: false,
            },
        )
        .await
        .expect("echo backend");
        addrs.push(addr);
    }
    addrs
}

struct Env {
    proxy: Proxy,
    base: String,
}

/// A proxy serving `services` (name, endpoints, policy spec or none).
async fn start(services: &[(&str, &[SocketAddr], Option<&str>)]) -> Env {
    let port = free_port();
    let names: Vec<&str> = services.iter().map(|s| s.0).collect();
    let gateway = gateway_yaml("gw", port);
    let route = routes(&names);
    let mut files = vec![
        ("gateway.yaml".to_owned(), gateway),
        ("routes.yaml".to_owned(), route),
    ];
    for (name, backends, spec) in services {
        let mut yaml = service_yaml(name, backends);
        if let Some(spec) = spec {
            yaml.push_str("---\n");
            yaml.push_str(&policy(name, spec));
        }
        files.push((format!("{name}.yaml"), yaml));
    }
    let files: Vec<(&str, &str)> = files
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    let proxy = Proxy::start_ready(&files, &[]).await;
    Env {
        proxy,
        base: format!("http://127.0.0.1:{port}"),
    }
}

impl Env {
    async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        get_host(&format!("{}{path}", self.base), HOST, headers)
            .await
            .expect("request")
    }

    /// The endpoint that answered, asserting a 200.
    async fn endpoint(&self, path: &str, headers: &[(&str, &str)]) -> String {
        let reply = self.get(path, headers).await;
        assert_eq!(reply.status, 200, "{path}: {}", reply.text());
        reply.echo().name
    }

    /// Answers per endpoint over `n` requests.
    async fn spread(&self, path: &str, n: usize) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for _ in 0..n {
            *counts.entry(self.endpoint(path, &[]).await).or_default() += 1;
        }
        counts
    }
}

/// Every one of `endpoints` got within `tolerance` (a fraction) of an even share.
fn assert_even(counts: &BTreeMap<String, usize>, endpoints: usize, tolerance: f64) {
    let total: usize = counts.values().sum();
    let even = total as f64 / endpoints as f64;
    assert_eq!(counts.len(), endpoints, "{counts:?}");
    for c in counts.values() {
        assert!(
            (*c as f64 - even).abs() <= even * tolerance,
            "{counts:?} is not even within {tolerance}"
        );
    }
}

#[tokio::test]
async fn each_algorithm_spreads_requests_over_the_endpoints() {
    let eps = echoes(4).await;
    let env = start(&[
        ("plain", &eps, None),
        ("rr", &eps, Some("  loadBalancer: {type: RoundRobin}\n")),
        ("random", &eps, Some("  loadBalancer: {type: Random}\n")),
        (
            "least",
            &eps,
            Some("  loadBalancer: {type: LeastRequest}\n"),
        ),
    ])
    .await;
    // Round robin, with or without a policy: exactly even.
    for path in ["/plain", "/rr"] {
        let counts = env.spread(path, 40).await;
        assert_even(&counts, 4, 0.0);
    }
    // Random and least request (sequential requests: nothing in flight, so two random
    // choices): 400 requests, 100 expected each (sd ≈ 8.7); 50% off is over 5 sd.
    for path in ["/random", "/least"] {
        let counts = env.spread(path, 400).await;
        assert_even(&counts, 4, 0.5);
    }
}

#[tokio::test]
async fn consistent_hashing_sticks_to_an_endpoint_per_header_cookie_and_source_ip() {
    let eps = echoes(4).await;
    let env = start(&[
        (
            "header",
            &eps,
            Some("  loadBalancer:\n    type: ConsistentHash\n    consistentHash: {type: Header, header: {name: x-user}}\n"),
        ),
        (
            "cookie",
            &eps,
            Some("  loadBalancer:\n    type: ConsistentHash\n    consistentHash:\n      type: Cookie\n      cookie: {name: lb, ttl: 60s, attributes: {Path: /}}\n"),
        ),
        (
            "source",
            &eps,
            Some("  loadBalancer:\n    type: ConsistentHash\n    consistentHash: {type: SourceIP}\n"),
        ),
    ])
    .await;

    // Header: each user always reaches one endpoint; users spread over all of them.
    let mut used = BTreeSet::new();
    for user in 0..40 {
        let user = format!("user-{user}");
        let first = env.endpoint("/header", &[("x-user", &user)]).await;
        for _ in 0..3 {
            assert_eq!(env.endpoint("/header", &[("x-user", &user)]).await, first);
        }
        used.insert(first);
    }
    assert_eq!(used.len(), 4, "40 users over 4 endpoints: {used:?}");

    // Cookie: a request without it is given one, and sending it back sticks.
    let mut used = BTreeSet::new();
    for _ in 0..12 {
        let reply = env.get("/cookie", &[]).await;
        assert_eq!(reply.status, 200);
        let set = reply
            .header("set-cookie")
            .expect("a cookie is set")
            .to_owned();
        assert!(set.starts_with("lb="), "{set}");
        assert!(set.ends_with("; Max-Age=60; Path=/"), "{set}");
        let pair = set.split(';').next().unwrap_or_default().to_owned();
        let first = reply.echo().name;
        for _ in 0..3 {
            let again = env.get("/cookie", &[("cookie", &pair)]).await;
            assert_eq!(again.echo().name, first);
            assert!(again.header("set-cookie").is_none(), "not set again");
        }
        used.insert(first);
    }
    assert!(used.len() > 1, "new cookies spread: {used:?}");

    // Source IP: clients bound to different loopback addresses.
    let mut used = BTreeSet::new();
    for last in 1..=24u8 {
        let ip = IpAddr::from([127, 0, 0, last]);
        let mut connector = HttpConnector::new();
        connector.set_local_address(Some(ip));
        let client = Client::builder(TokioExecutor::new()).build(connector);
        let url = format!("{}/source", env.base);
        let mut names = BTreeSet::new();
        for _ in 0..3 {
            let reply = send(&client, Method::GET, &url, &[("host", HOST)], Bytes::new())
                .await
                .expect("request");
            assert_eq!(reply.status, 200);
            names.insert(reply.echo().name);
        }
        assert_eq!(names.len(), 1, "{ip}: {names:?}");
        used.extend(names);
    }
    assert!(
        used.len() >= 3,
        "24 client addresses over 4 endpoints: {used:?}"
    );
}

#[tokio::test]
async fn removing_one_of_ten_endpoints_moves_only_its_keys_and_few_others() {
    let eps = echoes(10).await;
    let spec = "  loadBalancer:\n    type: ConsistentHash\n    consistentHash: {type: Header, header: {name: x-user}}\n";
    let env = start(&[("hash", &eps, Some(spec))]).await;
    let users: Vec<String> = (0..300).map(|u| format!("user-{u}")).collect();
    let mut before = Vec::new();
    for user in &users {
        before.push(env.endpoint("/hash", &[("x-user", user)]).await);
    }
    // `ep-3` goes away.
    let version = env.proxy.version().await;
    let fewer: Vec<SocketAddr> = eps
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 3)
        .map(|(_, a)| *a)
        .collect();
    env.proxy.write(
        "hash.yaml",
        &format!(
            "{}---\n{}",
            service_yaml("hash", &fewer),
            policy("hash", spec)
        ),
    );
    env.proxy.wait_version_above(version).await;
    let (mut on_removed, mut moved) = (0, 0);
    for (user, was) in users.iter().zip(&before) {
        let now = env.endpoint("/hash", &[("x-user", user)]).await;
        if was == "ep-3" {
            on_removed += 1;
            assert_ne!(now, "ep-3");
        } else if &now != was {
            moved += 1;
        }
    }
    assert!(on_removed > 0, "some users were on ep-3");
    // Maglev moves a few keys besides the removed endpoint's: measured well under 5%.
    assert!(
        moved * 100 <= users.len() * 5,
        "{moved} of {} users moved",
        users.len()
    );
}

#[tokio::test]
async fn a_new_endpoint_starts_slowly() {
    let eps = echoes(4).await;
    let spec = "  loadBalancer:\n    type: RoundRobin\n    slowStart: {window: 10m}\n";
    let env = start(&[("slow", &eps[..3], Some(spec))]).await;
    let version = env.proxy.version().await;
    env.proxy.write(
        "slow.yaml",
        &format!(
            "{}---\n{}",
            service_yaml("slow", &eps),
            policy("slow", spec)
        ),
    );
    env.proxy.wait_version_above(version).await;
    let counts = env.spread("/slow", 400).await;
    // The new endpoint starts at a tenth of a share: about 10 of 400 (an even share is 100).
    let new = counts.get("ep-3").copied().unwrap_or_default();
    assert!(new < 40, "{counts:?}");
    for old in ["ep-0", "ep-1", "ep-2"] {
        assert!(
            counts.get(old).copied().unwrap_or_default() > 100,
            "{counts:?}"
        );
    }
}

#[tokio::test]
async fn requests_over_max_parallel_requests_get_503_while_other_services_serve() {
    let eps = echoes(2).await;
    let env = start(&[
        (
            "guarded",
            &eps,
            Some("  circuitBreaker: {maxParallelRequests: 2}\n"),
        ),
        ("free", &eps, None),
    ])
    .await;
    // Slow requests fill the limit: one more is started before each probe, until a probe is
    // refused (a slow request may itself be refused, or start after the probe).
    let base = env.base.clone();
    let mut slow = Vec::new();
    let refused = loop {
        let url = format!("{base}/guarded");
        slow.push(tokio::spawn(async move {
            get_host(&url, HOST, &[("x-echo-delay-ms", "60000")])
                .await
                .map(|r| r.status)
        }));
        tokio::task::yield_now().await;
        let reply = env.get("/guarded", &[]).await;
        if reply.status == 503 {
            break reply;
        }
        assert!(slow.len() < 500, "never refused");
    };
    assert_eq!(
        refused.header("x-gantry-circuit-breaker"),
        Some("maxParallelRequests")
    );
    // The other Service is not limited.
    for _ in 0..5 {
        let reply = env.get("/free", &[]).await;
        assert_eq!(reply.status, 200);
    }
    let series = "gantry_circuit_breaker_rejections_total{cluster=\"default/guarded:8080\",limit=\"maxParallelRequests\"}";
    assert!(env.proxy.metric(series).await >= 1.0);
    // The clients of the slow requests go away: their requests are dropped and their counts
    // released, so the Service serves again.
    for task in slow {
        task.abort();
        let _ = task.await;
    }
    env.proxy
        .eventually(
            Duration::from_secs(10),
            Duration::from_millis(10),
            || async {
                let reply = env.get("/guarded", &[]).await;
                if reply.status == 200 {
                    Ok(())
                } else {
                    Err(format!("still refused: {}", reply.status))
                }
            },
        )
        .await;
}
