//! BackendConfigPolicy connection settings and circuit breaker connection limits against the
//! real binary: backends that count and number their connections see a new connection after
//! `maxRequestsPerConnection` requests and after `maxConnectionDuration`, and their idle
//! connections closed after `connectionIdleTimeout`; a connect to an address that never answers ends with a 503 after
//! `connectTimeout`; a burst against a slow backend limited by `maxConnections` and
//! `maxPendingRequests` gets 503s naming the limit while another Service keeps serving; an h2c
//! Service's connections carry at most `maxConcurrentStreams` requests at once; TCPRoute
//! connections keep `maxConnections` and the connect timeout.
//! Outcomes are asserted (statuses, headers, connection counts, counters), never durations.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use gantry_testkit::blackhole::blackhole;
use gantry_testkit::echo::{ConnectionCounts, EchoIdentity, spawn_counting};
use gantry_testkit::harness::{Proxy, Reply, free_port, gateway_yaml, get_host, service_yaml};

const HOST: &str = "connections.example.com";

/// One rule per Service: `/<name>` goes to Service `<name>`.
fn routes(services: &[&str]) -> String {
    let rules: String = services
        .iter()
        .map(|name| {
            format!(
                "    - matches: [{{path: {{type: PathPrefix, value: /{name}}}}}]\n      backendRefs: [{{name: {name}, port: 8080}}]\n"
            )
        })
        .collect();
    format!(
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: connections, namespace: default}}
spec:
  parentRefs: [{{name: gw}}]
  hostnames: ["{HOST}"]
  rules:
{rules}"#
    )
}

/// A BackendConfigPolicy for Service `service` with `spec` (YAML lines indented by two).
fn policy(service: &str, spec: &str) -> String {
    format!(
        r#"apiVersion: gantry.dev/v1alpha1
kind: BackendConfigPolicy
metadata: {{name: {service}, namespace: default, creationTimestamp: "2026-01-01T00:00:00Z"}}
spec:
  targetRefs: [{{group: "", kind: Service, name: {service}}}]
{spec}"#
    )
}

/// A counting echo backend.
async fn counting(name: &str) -> (SocketAddr, Arc<ConnectionCounts>) {
    let identity = EchoIdentity {
        name: name.to_owned(),
        namespace: "default".to_owned(),
        plain: false,
    };
    let (addr, counts, _task) = spawn_counting("127.0.0.1:0".parse().expect("addr"), identity)
        .await
        .expect("starting a counting backend");
    (addr, counts)
}

struct Env {
    proxy: Proxy,
    base: String,
}

/// A proxy with Services `(name, endpoint)`, one rule each, and `policies`.
async fn serve(services: &[(&str, SocketAddr)], policies: &[String]) -> Env {
    let port = free_port();
    let mut objects = String::new();
    for (name, addr) in services {
        objects.push_str("---\n");
        objects.push_str(&service_yaml("default", name, 8080, &[*addr]));
    }
    let names: Vec<&str> = services.iter().map(|(name, _)| *name).collect();
    let mut routes = routes(&names);
    for policy in policies {
        routes.push_str("---\n");
        routes.push_str(policy);
    }
    let proxy = Proxy::start_ready(
        &[
            ("gateway.yaml", &gateway_yaml("gw", port)),
            ("services.yaml", &objects),
            ("routes.yaml", &routes),
        ],
        &[],
    )
    .await;
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

    /// Polls until `check` holds (10 s at most).
    async fn until(&self, what: &str, check: impl Fn() -> Option<String>) {
        self.proxy
            .eventually(
                Duration::from_secs(10),
                Duration::from_millis(20),
                || async {
                    match check() {
                        None => Ok(()),
                        Some(state) => Err(format!("{what}: {state}")),
                    }
                },
            )
            .await;
    }
}

#[tokio::test]
async fn a_connection_carries_max_requests_per_connection_then_another_is_opened() {
    let (limited, counts) = counting("limited").await;
    let (unlimited, unlimited_counts) = counting("unlimited").await;
    let env = serve(
        &[("limited", limited), ("unlimited", unlimited)],
        &[policy(
            "limited",
            "  circuitBreaker: {maxRequestsPerConnection: 2}\n",
        )],
    )
    .await;
    let mut carried = Vec::new();
    for _ in 0..5 {
        let reply = env.get("/limited", &[]).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        carried.push(reply.echo().connection.expect("numbered connection"));
    }
    // Requests in sequence: two on each connection, the fifth on a third.
    assert_eq!(carried, [1, 1, 2, 2, 3]);
    // The retired connections are closed once their last response was read.
    env.until("retired connections still open", || {
        (counts.open() != 1).then(|| format!("{} open", counts.open()))
    })
    .await;
    // Without the policy one pooled connection carries every request.
    for _ in 0..5 {
        let reply = env.get("/unlimited", &[]).await;
        assert_eq!(reply.echo().connection, Some(1));
    }
    assert_eq!(unlimited_counts.accepted(), 1);
}

#[tokio::test]
async fn an_idle_connection_is_closed_after_the_idle_timeout() {
    let (idle, counts) = counting("idle").await;
    let env = serve(
        &[("idle", idle)],
        &[policy(
            "idle",
            "  timeout:\n    http: {connectionIdleTimeout: 200ms}\n",
        )],
    )
    .await;
    let reply = env.get("/idle", &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(counts.accepted(), 1);
    // The proxy closes the pooled connection once idle; the backend sees it close.
    env.until("the idle connection is still open", || {
        (counts.open() != 0).then(|| format!("{} open", counts.open()))
    })
    .await;
    // The next request opens a new one.
    let reply = env.get("/idle", &[]).await;
    assert_eq!(reply.echo().connection, Some(2));
    assert_eq!(
        env.proxy
            .metric("gantry_upstream_connections_open{cluster=\"default/idle:8080\"}")
            .await,
        1.0
    );
}

#[tokio::test]
async fn a_connection_older_than_max_connection_duration_is_not_reused() {
    let (aging, counts) = counting("aging").await;
    let env = serve(
        &[("aging", aging)],
        &[policy(
            "aging",
            "  timeout:\n    http: {maxConnectionDuration: 300ms}\n",
        )],
    )
    .await;
    let first = env.get("/aging", &[]).await;
    assert_eq!(first.echo().connection, Some(1), "{}", first.text());
    // Requests in sequence reuse the pooled connection until it is too old; then another is
    // opened and the old one closed.
    env.proxy
        .eventually(
            Duration::from_secs(10),
            Duration::from_millis(20),
            || async {
                let reply = env.get("/aging", &[]).await;
                match reply.echo().connection {
                    Some(1) => Err("still on the first connection".to_owned()),
                    _ => Ok(()),
                }
            },
        )
        .await;
    env.until("the old connection is still open", || {
        (counts.open() != 1).then(|| format!("{} open", counts.open()))
    })
    .await;
}

#[tokio::test]
async fn an_http2_connection_carries_at_most_max_concurrent_streams() {
    let (h2, counts) = counting("h2").await;
    let port = free_port();
    let services = gantry_testkit::harness::service_yaml_with(
        "default",
        "h2",
        8080,
        &[h2],
        Some("kubernetes.io/h2c"),
    );
    let objects = [
        services,
        routes(&["h2"]),
        policy("h2", "  http2: {maxConcurrentStreams: 1}\n"),
    ]
    .join("---\n");
    let proxy = Proxy::start_ready(
        &[
            ("gateway.yaml", &gateway_yaml("gw", port)),
            ("objects.yaml", &objects),
        ],
        &[],
    )
    .await;
    let env = Arc::new(Env {
        proxy,
        base: format!("http://127.0.0.1:{port}"),
    });
    // Three requests at once, each answered slowly: one stream per connection.
    let requests: Vec<_> = (0..3)
        .map(|_| {
            let env = env.clone();
            tokio::spawn(async move { env.get("/h2", &[("x-echo-delay-ms", "1000")]).await })
        })
        .collect();
    let mut carried = Vec::new();
    for request in requests {
        let reply = request.await.expect("request task");
        assert_eq!(reply.status, 200, "{}", reply.text());
        let echo = reply.echo();
        assert_eq!(echo.protocol, "HTTP/2.0");
        carried.push(echo.connection.expect("numbered connection"));
    }
    carried.sort_unstable();
    assert_eq!(carried, [1, 2, 3]);
    assert_eq!(counts.accepted(), 3);
}

#[tokio::test]
async fn a_connect_that_does_not_complete_in_the_connect_timeout_is_a_503() {
    let hole = blackhole().await.expect("an address whose connects hang");
    let env = serve(
        &[("hole", hole.addr)],
        &[policy(
            "hole",
            "  timeout:\n    tcp: {connectTimeout: 100ms}\n",
        )],
    )
    .await;
    let reply = env
        .get("/hole", &[("x-request-id", "connect-timeout-1")])
        .await;
    // Not the 504 of the request timeout: the connect timed out.
    assert_eq!(reply.status, 503, "{}", reply.text());
    assert!(
        reply.text().contains("upstream connect error"),
        "{}",
        reply.text()
    );
    env.proxy
        .wait_metric("gantry_upstream_connect_errors_total", 1.0)
        .await;
    env.until("no access-log line naming the timeout", || {
        let log = env.proxy.log();
        let line = log.lines().find(|l| l.contains("connect-timeout-1"));
        match line {
            Some(line) if line.contains("connect to 127.0.0.1") && line.contains("timed out") => {
                None
            }
            other => Some(format!("{other:?}")),
        }
    })
    .await;
}

#[tokio::test]
async fn over_max_connections_and_max_pending_requests_a_request_gets_a_503_naming_the_limit() {
    let (slow, slow_counts) = counting("slow").await;
    let (strict, _) = counting("strict").await;
    let (other, _) = counting("other").await;
    let env = serve(
        &[("slow", slow), ("strict", strict), ("other", other)],
        &[
            policy(
                "slow",
                "  circuitBreaker: {maxConnections: 1, maxPendingRequests: 1}\n",
            ),
            policy(
                "strict",
                "  circuitBreaker: {maxConnections: 1, maxPendingRequests: 0}\n",
            ),
        ],
    )
    .await;
    let env = Arc::new(env);

    // One slow request holds the only connection of `slow`, and one of `strict`.
    let holding = |path: &'static str| {
        let env = env.clone();
        tokio::spawn(async move { env.get(path, &[("x-echo-delay-ms", "3000")]).await })
    };
    let slow_first = holding("/slow");
    let strict_first = holding("/strict");
    env.until("the slow requests have not reached their backends", || {
        (slow_counts.accepted() < 1).then(|| "not yet".to_owned())
    })
    .await;
    env.proxy
        .wait_metric(
            "gantry_upstream_connections_open{cluster=\"default/strict:8080\"}",
            1.0,
        )
        .await;

    // Two more to `slow`: one waits for the connection, the other is refused at once.
    let burst: Vec<_> = (0..2)
        .map(|_| {
            let env = env.clone();
            tokio::spawn(async move { env.get("/slow", &[]).await })
        })
        .collect();
    // `strict` lets nothing wait.
    let refused = env.get("/strict", &[]).await;
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert_eq!(
        refused.header("x-gantry-circuit-breaker"),
        Some("maxConnections")
    );
    // Another Service keeps serving meanwhile.
    let served = env.get("/other", &[]).await;
    assert_eq!(served.status, 200, "{}", served.text());

    let mut statuses = Vec::new();
    for reply in burst {
        let reply = reply.await.expect("request task");
        statuses.push((
            reply.status.as_u16(),
            reply.header("x-gantry-circuit-breaker").map(str::to_owned),
        ));
    }
    statuses.sort();
    assert_eq!(
        statuses,
        [(200, None), (503, Some("maxPendingRequests".to_owned()))]
    );
    for first in [slow_first, strict_first] {
        assert_eq!(first.await.expect("request task").status, 200);
    }
    for (cluster, limit) in [
        ("default/slow:8080", "maxPendingRequests"),
        ("default/strict:8080", "maxConnections"),
    ] {
        let series = format!(
            "gantry_circuit_breaker_rejections_total{{cluster=\"{cluster}\",limit=\"{limit}\"}}"
        );
        assert_eq!(env.proxy.metric(&series).await, 1.0, "{series}");
    }
    // Once the burst is over, the pending request's wait is over too: `slow` serves again.
    assert_eq!(env.get("/slow", &[]).await.status, 200);
}

/// A Gateway `gw` with TCP listeners `limited` and `hole` on the two ports.
fn tcp_gateway(limited: u16, hole: u16) -> String {
    gantry_testkit::harness::gateway_with_listeners_yaml(
        "gw",
        &format!(
            "    - name: limited\n      port: {limited}\n      protocol: TCP\n    - name: hole\n      port: {hole}\n      protocol: TCP\n"
        ),
    )
}

/// A TCPRoute on listener `listener` of `gw` to Service `service` port 9000.
fn tcp_route(listener: &str, service: &str) -> String {
    format!(
        r#"apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata: {{name: {listener}, namespace: default}}
spec:
  parentRefs: [{{name: gw, sectionName: {listener}}}]
  rules:
    - backendRefs: [{{name: {service}, port: 9000}}]
"#
    )
}

/// Reads what the backend sends first through a connection to the proxy's `port`: its greeting
/// line, or nothing when the proxy closes the connection.
async fn first_line(port: u16) -> (String, tokio::io::BufReader<tokio::net::TcpStream>) {
    use tokio::io::AsyncBufReadExt;
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connecting to the TCP listener");
    let mut reader = tokio::io::BufReader::new(stream);
    let mut line = String::new();
    tokio::time::timeout(Duration::from_secs(10), reader.read_line(&mut line))
        .await
        .expect("a line or the close within 10 s")
        .expect("reading");
    (line.trim_end().to_owned(), reader)
}

#[tokio::test]
async fn tcp_route_connections_keep_max_connections_and_the_connect_timeout() {
    let (backend, _task) = gantry_testkit::stream_echo::spawn_tcp("limited").await;
    let hole = blackhole().await.expect("an address whose connects hang");
    let (limited_port, hole_port) = (free_port(), free_port());
    let objects = [
        service_yaml("default", "limited", 9000, &[backend]),
        service_yaml("default", "hole", 9000, &[hole.addr]),
        tcp_route("limited", "limited"),
        tcp_route("hole", "hole"),
        policy("limited", "  circuitBreaker: {maxConnections: 1}\n"),
        policy("hole", "  timeout:\n    tcp: {connectTimeout: 100ms}\n"),
    ]
    .join("---\n");
    let proxy = Proxy::start_ready(
        &[
            ("gateway.yaml", &tcp_gateway(limited_port, hole_port)),
            ("objects.yaml", &objects),
        ],
        &[],
    )
    .await;
    let open = "gantry_upstream_connections_open{cluster=\"default/limited:9000\"}";

    let (greeting, first) = first_line(limited_port).await;
    assert!(greeting.contains("limited"), "{greeting}");
    proxy.wait_metric(open, 1.0).await;
    // A second connection while the first is open: closed without reaching the backend.
    let (nothing, _) = first_line(limited_port).await;
    assert_eq!(nothing, "");
    proxy
        .wait_metric(
            "gantry_circuit_breaker_rejections_total{cluster=\"default/limited:9000\",limit=\"maxConnections\"}",
            1.0,
        )
        .await;
    // Once the first closes, another may open.
    drop(first);
    proxy.wait_metric(open, 0.0).await;
    let (greeting, _third) = first_line(limited_port).await;
    assert!(greeting.contains("limited"), "{greeting}");

    // A backend that never accepts: the client is closed after the policy's connect timeout.
    let (nothing, _) = first_line(hole_port).await;
    assert_eq!(nothing, "");
    proxy
        .wait_metric("gantry_upstream_connect_errors_total", 1.0)
        .await;
}
