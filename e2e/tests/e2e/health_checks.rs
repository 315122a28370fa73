//! BackendConfigPolicy `healthCheck` against the real binary: active HTTP, TCP and gRPC
//! probes take endpoints out and bring them back, outlier detection ejects an endpoint after
//! consecutive 5xx (and a TCPRoute endpoint after connect failures) within
//! `maxEjectionPercent`, and panic mode spreads traffic over every endpoint when too few are
//! healthy. Every wait polls `/config` (`endpointHealth`) or `/metrics` until the proxy says
//! what the test waits for; intervals are 100 ms so it comes quickly.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use gantry_testkit::echo::{self, EchoIdentity, Switches};
use gantry_testkit::grpc::{self, ECHO_HELLO, GrpcHealth};
use gantry_testkit::harness::{
    Proxy, free_port, gateway_with_listeners_yaml, gateway_yaml, get_host,
};
use gantry_testkit::stream_echo;
use tokio::io::AsyncBufReadExt;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

const HOST: &str = "health.example.com";
/// How long a health change may take to show: generous, for loaded machines.
const WITHIN: Duration = Duration::from_secs(20);
const EVERY: Duration = Duration::from_millis(25);

/// A Service `name` on `port` whose endpoints are `backends`, one EndpointSlice each (so each
/// keeps its own port).
fn service_yaml(name: &str, port: u16, backends: &[SocketAddr]) -> String {
    let mut yaml = format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  ports: [{{name: main, port: {port}}}]\n"
    );
    for (i, b) in backends.iter().enumerate() {
        yaml.push_str(&format!(
            "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {name}-{i}\n  namespace: default\n  labels: {{kubernetes.io/service-name: {name}}}\naddressType: IPv4\nports: [{{name: main, port: {}}}]\nendpoints: [{{addresses: [\"{}\"], conditions: {{ready: true}}}}]\n",
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

/// An HTTPRoute sending every request for [`HOST`] to Service `web` port 8080.
fn http_route() -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: web, namespace: default}}\nspec:\n  parentRefs: [{{name: gw}}]\n  hostnames: [\"{HOST}\"]\n  rules:\n  - backendRefs: [{{name: web, port: 8080}}]\n"
    )
}

/// An echo backend named `name` whose health endpoint and answers the test can flip.
struct Backend {
    addr: SocketAddr,
    switches: Arc<Switches>,
    task: JoinHandle<()>,
}

async fn backend(name: &str, addr: SocketAddr) -> Backend {
    let (addr, switches, task) = echo::spawn_switchable(
        addr,
        EchoIdentity {
            name: name.to_owned(),
            namespace: "default".into(),
            plain: false,
        },
    )
    .await
    .expect("echo backend");
    Backend {
        addr,
        switches,
        task,
    }
}

/// Echo backends `ep-0`, `ep-1`, ... on ephemeral ports.
async fn backends(n: usize) -> Vec<Backend> {
    let mut all = Vec::new();
    for i in 0..n {
        all.push(backend(&format!("ep-{i}"), "127.0.0.1:0".parse().expect("addr")).await);
    }
    all
}

struct Env {
    proxy: Proxy,
    base: String,
}

/// A proxy routing [`HOST`] to Service `web` (port 8080) over `endpoints`, governed by a policy
/// with `spec`.
async fn start(endpoints: &[SocketAddr], spec: &str) -> Env {
    let port = free_port();
    let web = format!(
        "{}---\n{}",
        service_yaml("web", 8080, endpoints),
        policy("web", spec)
    );
    let proxy = Proxy::start_ready(
        &[
            ("gateway.yaml", &gateway_yaml("gw", port)),
            ("route.yaml", &http_route()),
            ("web.yaml", &web),
        ],
        &[],
    )
    .await;
    Env {
        proxy,
        base: format!("http://127.0.0.1:{port}"),
    }
}

const WEB: &str = "default/web:8080";

impl Env {
    /// The endpoint that answered one request, with its status.
    async fn answer(&self) -> (String, u16) {
        let reply = get_host(&format!("{}/", self.base), HOST, &[])
            .await
            .expect("request");
        let status = reply.status.as_u16();
        assert!(
            status == 200 || status == 500,
            "not an echo's answer: {status} {}",
            reply.text()
        );
        (reply.echo().name, status)
    }

    /// Answers per endpoint over `n` requests.
    async fn spread(&self, n: usize) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for _ in 0..n {
            *counts.entry(self.answer().await.0).or_default() += 1;
        }
        counts
    }
}

/// `GET /config`'s `endpointHealth` of `cluster`, by endpoint address.
async fn health(proxy: &Proxy, cluster: &str) -> (bool, BTreeMap<String, serde_json::Value>) {
    let config = proxy.config().await;
    let cluster = &config["endpointHealth"][cluster];
    let endpoints = cluster["endpoints"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| (e["endpoint"].as_str().unwrap_or("").to_owned(), e.clone()))
        .collect();
    (cluster["panic"].as_bool().unwrap_or(false), endpoints)
}

/// Waits until `/config` says endpoint `addr` of `cluster` is in `state`.
async fn wait_state(proxy: &Proxy, cluster: &str, addr: SocketAddr, state: &str) {
    let addr = addr.to_string();
    proxy
        .eventually(WITHIN, EVERY, || async {
            let (_, endpoints) = health(proxy, cluster).await;
            match endpoints.get(&addr) {
                Some(e) if e["state"] == state => Ok(()),
                other => Err(format!("{addr} of {cluster} is not {state}: {other:?}")),
            }
        })
        .await;
}

fn healthy_series(cluster: &str, addr: SocketAddr) -> String {
    format!("gantry_upstream_endpoint_healthy{{cluster=\"{cluster}\",endpoint=\"{addr}\"}}")
}

/// Active HTTP checks every 100 ms of `/_echo/health`: two failures take an endpoint out, one
/// success brings it back.
const HTTP_CHECK: &str = "  healthCheck:\n    active:\n      type: HTTP\n      interval: 100ms\n      timeout: 1s\n      unhealthyThreshold: 2\n      healthyThreshold: 1\n      http: {path: /_echo/health}\n";

#[tokio::test]
async fn an_http_check_takes_an_endpoint_out_and_brings_it_back() {
    let eps = backends(2).await;
    let env = start(&[eps[0].addr, eps[1].addr], HTTP_CHECK).await;
    let (panic, endpoints) = health(&env.proxy, WEB).await;
    assert!(!panic);
    assert_eq!(endpoints.len(), 2, "{endpoints:?}");
    assert_eq!(env.spread(10).await.len(), 2, "both serve at first");

    eps[1].switches.set_health(503);
    wait_state(&env.proxy, WEB, eps[1].addr, "unhealthy").await;
    let (_, endpoints) = health(&env.proxy, WEB).await;
    assert_eq!(endpoints[&eps[1].addr.to_string()]["activeHealthy"], false);
    assert_eq!(
        env.proxy.metric(&healthy_series(WEB, eps[1].addr)).await,
        0.0
    );
    assert_eq!(
        env.proxy.metric(&healthy_series(WEB, eps[0].addr)).await,
        1.0
    );
    let spread = env.spread(20).await;
    assert_eq!(spread.get("ep-0"), Some(&20), "{spread:?}");
    assert!(
        env.proxy
            .metric(&format!(
                "gantry_health_check_probes_total{{cluster=\"{WEB}\",result=\"failure\"}}"
            ))
            .await
            >= 2.0
    );

    eps[1].switches.set_health(200);
    wait_state(&env.proxy, WEB, eps[1].addr, "healthy").await;
    assert_eq!(env.spread(10).await.len(), 2, "back in");
    assert_eq!(
        env.proxy.metric(&healthy_series(WEB, eps[1].addr)).await,
        1.0
    );
}

#[tokio::test]
async fn a_tcp_check_takes_a_closed_listener_out_and_a_reopened_one_back() {
    let steady = backend("ep-0", "127.0.0.1:0".parse().expect("addr")).await;
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let flapping = backend("ep-1", addr).await;
    let env = start(
        &[steady.addr, addr],
        "  healthCheck:\n    active: {type: TCP, interval: 100ms, timeout: 1s, unhealthyThreshold: 2}\n",
    )
    .await;
    assert_eq!(env.spread(10).await.len(), 2, "both serve at first");

    // The listener closes (connections already accepted stay, as the proxy's pool may hold
    // one): probes are refused.
    flapping.task.abort();
    let _ = flapping.task.await;
    wait_state(&env.proxy, WEB, addr, "unhealthy").await;
    let spread = env.spread(20).await;
    assert_eq!(spread.get("ep-0"), Some(&20), "{spread:?}");

    let _reopened = backend("ep-1", addr).await;
    wait_state(&env.proxy, WEB, addr, "healthy").await;
    assert_eq!(env.spread(10).await.len(), 2, "back in");
}

#[tokio::test]
async fn the_grpc_health_protocol_takes_a_not_serving_endpoint_out() {
    let mut addrs = Vec::new();
    let mut switches: Vec<Arc<GrpcHealth>> = Vec::new();
    for name in ["g-0", "g-1"] {
        let (addr, health) =
            grpc::spawn_backend_with_health("127.0.0.1:0".parse().expect("addr"), name)
                .await
                .expect("gRPC backend");
        addrs.push(addr);
        switches.push(health);
    }
    let port = free_port();
    let route = "apiVersion: gateway.networking.k8s.io/v1\nkind: GRPCRoute\nmetadata: {name: calls, namespace: default}\nspec:\n  parentRefs: [{name: gw}]\n  hostnames: [\"grpc.example.com\"]\n  rules:\n  - backendRefs: [{name: calls, port: 8080}]\n";
    let calls = format!(
        "{}---\n{}",
        service_yaml("calls", 8080, &addrs),
        policy(
            "calls",
            "  healthCheck:\n    active: {type: GRPC, interval: 100ms, timeout: 1s, unhealthyThreshold: 2}\n"
        )
    );
    let proxy = Proxy::start_ready(
        &[
            ("gateway.yaml", &gateway_yaml("gw", port)),
            ("route.yaml", route),
            ("calls.yaml", &calls),
        ],
        &[],
    )
    .await;
    let client = grpc::connect(
        format!("127.0.0.1:{port}").parse().expect("addr"),
        "grpc.example.com",
    )
    .await
    .expect("gRPC connection");
    let spread = |n: usize| {
        let client = client.clone();
        async move {
            let mut counts: BTreeMap<String, usize> = BTreeMap::new();
            for _ in 0..n {
                let (reply, _) = client.call(ECHO_HELLO, &[]).await.expect("call");
                *counts.entry(reply.backend).or_default() += 1;
            }
            counts
        }
    };
    const CALLS: &str = "default/calls:8080";
    assert_eq!(spread(10).await.len(), 2, "both serve at first");
    wait_state(&proxy, CALLS, addrs[1], "healthy").await;

    switches[1].set_serving(false);
    wait_state(&proxy, CALLS, addrs[1], "unhealthy").await;
    let counts = spread(20).await;
    assert_eq!(counts.get("g-0"), Some(&20), "{counts:?}");

    switches[1].set_serving(true);
    wait_state(&proxy, CALLS, addrs[1], "healthy").await;
    assert_eq!(spread(10).await.len(), 2, "back in");
}

#[tokio::test]
async fn outlier_detection_ejects_after_consecutive_5xx_and_returns_the_endpoint() {
    let eps = backends(2).await;
    let env = start(
        &[eps[0].addr, eps[1].addr],
        "  healthCheck:\n    passive: {consecutive5XxErrors: 3, interval: 100ms, baseEjectionTime: 1s, maxEjectionPercent: 50}\n",
    )
    .await;
    let failing = eps[1].addr.to_string();
    eps[1].switches.fail_with(Some(500));
    // Requests until the third 5xx in a row from ep-1 ejects it.
    env.proxy
        .eventually(WITHIN, EVERY, || async {
            env.answer().await;
            let (_, endpoints) = health(&env.proxy, WEB).await;
            match &endpoints[&failing] {
                e if e["state"] == "ejected" => Ok(()),
                other => Err(format!("ep-1 not ejected: {other}")),
            }
        })
        .await;
    assert_eq!(
        env.proxy
            .metric(&format!(
                "gantry_outlier_ejections_total{{cluster=\"{WEB}\"}}"
            ))
            .await,
        1.0
    );
    // While ejected (the same ejection before and after the requests), ep-1 gets none.
    env.proxy
        .eventually(WITHIN, EVERY, || async {
            let (_, before) = health(&env.proxy, WEB).await;
            let spread = env.spread(10).await;
            let (_, after) = health(&env.proxy, WEB).await;
            let ejected = |e: &BTreeMap<String, serde_json::Value>| {
                e[&failing]["state"] == "ejected" && e[&failing]["ejections"] == 1
            };
            if !(ejected(&before) && ejected(&after)) {
                return Err("the ejection ended during the requests".to_owned());
            }
            assert_eq!(spread.get("ep-0"), Some(&10), "{spread:?}");
            Ok(())
        })
        .await;

    // Healthy again, it returns after the ejection time and serves.
    eps[1].switches.fail_with(None);
    wait_state(&env.proxy, WEB, eps[1].addr, "healthy").await;
    assert_eq!(env.spread(10).await.len(), 2, "back in");
    let (_, endpoints) = health(&env.proxy, WEB).await;
    assert_eq!(endpoints[&failing]["ejections"], 1);
}

#[tokio::test]
async fn max_ejection_percent_caps_how_many_endpoints_are_ejected() {
    let eps = backends(3).await;
    for ep in &eps {
        ep.switches.fail_with(Some(500));
    }
    // 34 % of 3 endpoints: one at a time. An ejection lasts an hour, so none returns here.
    let env = start(
        &eps.iter().map(|e| e.addr).collect::<Vec<_>>(),
        "  healthCheck:\n    passive: {consecutive5XxErrors: 2, interval: 100ms, baseEjectionTime: 1h, maxEjectionPercent: 34}\n",
    )
    .await;
    let ejected = || async {
        let (panic, endpoints) = health(&env.proxy, WEB).await;
        assert!(
            !panic,
            "2 of 3 healthy is not below the 50 % panic threshold"
        );
        endpoints
            .values()
            .filter(|e| e["state"] == "ejected")
            .count()
    };
    env.proxy
        .eventually(WITHIN, EVERY, || async {
            env.answer().await;
            match ejected().await {
                0 => Err("nothing ejected yet".to_owned()),
                _ => Ok(()),
            }
        })
        .await;
    // Every request fails: the other two see 15 consecutive 5xx each, and stay.
    let spread = env.spread(30).await;
    assert_eq!(spread.len(), 2, "{spread:?}");
    assert_eq!(ejected().await, 1);
    assert_eq!(
        env.proxy
            .metric(&format!(
                "gantry_outlier_ejections_total{{cluster=\"{WEB}\"}}"
            ))
            .await,
        1.0
    );
}

#[tokio::test]
async fn panic_mode_spreads_traffic_over_every_endpoint_when_none_is_healthy() {
    let eps = backends(2).await;
    let env = start(&[eps[0].addr, eps[1].addr], HTTP_CHECK).await;
    let panic_series = format!("gantry_upstream_panic_mode{{cluster=\"{WEB}\"}}");
    env.proxy.wait_metric(&panic_series, 0.0).await;

    for ep in &eps {
        ep.switches.set_health(503);
    }
    for ep in &eps {
        wait_state(&env.proxy, WEB, ep.addr, "unhealthy").await;
    }
    let spread = env.spread(10).await;
    assert_eq!(spread.len(), 2, "every endpoint takes traffic: {spread:?}");
    assert!(health(&env.proxy, WEB).await.0, "/config says panic");
    env.proxy.wait_metric(&panic_series, 1.0).await;

    // One of two healthy is not below 50 %: health counts again.
    eps[0].switches.set_health(200);
    wait_state(&env.proxy, WEB, eps[0].addr, "healthy").await;
    let spread = env.spread(10).await;
    assert_eq!(spread.get("ep-0"), Some(&10), "{spread:?}");
    env.proxy.wait_metric(&panic_series, 0.0).await;
}

/// Opens a connection through the proxy's TCP listener; the backend's greeting, or `None`
/// when the proxy closed the connection (its endpoint refused).
async fn greeting(port: u16) -> Option<String> {
    let stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connecting to the TCP listener");
    let mut reader = tokio::io::BufReader::new(stream);
    let mut line = String::new();
    match reader.read_line(&mut line).await {
        Ok(n) if n > 0 => Some(line.trim_end().to_owned()),
        _ => None,
    }
}

#[tokio::test]
async fn tcp_route_connect_failures_eject_an_endpoint() {
    let (live, _task) = stream_echo::spawn_tcp("live").await;
    // Nothing listens there: every connection is refused.
    let refused: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let port = free_port();
    let gateway = gateway_with_listeners_yaml(
        "gw",
        &format!("    - name: tcp\n      port: {port}\n      protocol: TCP\n"),
    );
    let route = "apiVersion: gateway.networking.k8s.io/v1alpha2\nkind: TCPRoute\nmetadata: {name: db, namespace: default}\nspec:\n  parentRefs: [{name: gw}]\n  rules:\n  - backendRefs: [{name: db, port: 9000}]\n";
    let db = format!(
        "{}---\n{}",
        service_yaml("db", 9000, &[live, refused]),
        policy(
            "db",
            "  healthCheck:\n    passive: {splitExternalLocalOriginErrors: true, consecutiveLocalOriginFailures: 2, interval: 100ms, baseEjectionTime: 1h, maxEjectionPercent: 50}\n"
        )
    );
    let proxy = Proxy::start_ready(
        &[
            ("gateway.yaml", &gateway),
            ("route.yaml", route),
            ("db.yaml", &db),
        ],
        &[],
    )
    .await;
    const DB: &str = "default/db:9000";
    proxy
        .eventually(WITHIN, EVERY, || async {
            greeting(port).await;
            let (_, endpoints) = health(&proxy, DB).await;
            match &endpoints[&refused.to_string()] {
                e if e["state"] == "ejected" => Ok(()),
                other => Err(format!("the refusing endpoint is not ejected: {other}")),
            }
        })
        .await;
    for _ in 0..10 {
        assert_eq!(greeting(port).await.as_deref(), Some("live"));
    }
}
