//! HTTPRoute `retry` (GEP-1731) and XBackendTrafficPolicy `retryConstraint` (GEP-3388) against
//! the real binary: echo backends that fail the first attempts of a request (by status, by
//! closing the connection, by answering too slowly), bodies replayed or not, another endpoint
//! after a failed one, and a retry budget under load. Outcomes are asserted (statuses, the
//! attempts the backend saw, the proxy's counters), never durations.

use std::net::SocketAddr;

use bytes::Bytes;
use gantry_testkit::harness::{
    Proxy, Reply, echo_backends, free_port, gateway_yaml, get_host, send,
};
use http::Method;

const HOST: &str = "retries.example.com";

const ROUTES: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: retries, namespace: default}
spec:
  parentRefs: [{name: gw}]
  hostnames: ["retries.example.com"]
  rules:
    - matches: [{path: {type: PathPrefix, value: /status}}]
      retry: {codes: [500, 502, 503, 504], attempts: 3, backoff: 5ms}
      backendRefs: [{name: flaky, port: 8080}]
    - matches: [{path: {type: PathPrefix, value: /slow}}]
      timeouts: {request: 5s, backendRequest: 300ms}
      retry: {attempts: 2, backoff: 5ms}
      backendRefs: [{name: flaky, port: 8080}]
    - matches: [{path: {type: PathPrefix, value: /bounded}}]
      timeouts: {request: 1s, backendRequest: 400ms}
      retry: {attempts: 10, backoff: 5ms}
      backendRefs: [{name: flaky, port: 8080}]
    - matches: [{path: {type: PathPrefix, value: /spread}}]
      retry: {attempts: 1, backoff: 1ms}
      backendRefs: [{name: spread, port: 8080}]
    - matches: [{path: {type: PathPrefix, value: /no-retry}}]
      backendRefs: [{name: flaky, port: 8080}]
    - matches: [{path: {type: PathPrefix, value: /budget-fixed}}]
      retry: {codes: [500], attempts: 2, backoff: 1ms}
      backendRefs: [{name: budget-fixed, port: 8080}]
    - matches: [{path: {type: PathPrefix, value: /budget-share}}]
      retry: {codes: [500], attempts: 1, backoff: 1ms}
      backendRefs: [{name: budget-share, port: 8080}]
---
# Three retries in an hour whatever the traffic: nothing but the minimum rate.
apiVersion: gateway.networking.x-k8s.io/v1alpha1
kind: XBackendTrafficPolicy
metadata: {name: fixed, namespace: default}
spec:
  targetRefs: [{group: "", kind: Service, name: budget-fixed}]
  retryConstraint:
    budget: {percent: 0, interval: 1h}
    minRetryRate: {count: 3, interval: 1h}
---
# Retries at most 20% of the requests of the last minute, no minimum.
apiVersion: gateway.networking.x-k8s.io/v1alpha1
kind: XBackendTrafficPolicy
metadata: {name: share, namespace: default}
spec:
  targetRefs: [{group: "", kind: Service, name: budget-share}]
  retryConstraint:
    budget: {percent: 20, interval: 1m}
    minRetryRate: {count: 0, interval: 1s}
"#;

/// A Service whose endpoints are `live` (an echo backend) and a port nothing listens on, each
/// in its own EndpointSlice (they differ in port).
fn spread_service(live: SocketAddr, dead_port: u16) -> String {
    let slice = |n: u32, port: u16| {
        format!(
            r#"---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: spread-{n}
  namespace: default
  labels: {{kubernetes.io/service-name: spread}}
addressType: IPv4
ports:
  - name: http
    port: {port}
endpoints:
  - addresses: ["127.0.0.1"]
    conditions: {{ready: true}}
"#
        )
    };
    format!(
        r#"apiVersion: v1
kind: Service
metadata: {{name: spread, namespace: default}}
spec:
  ports:
    - name: http
      port: 8080
{}{}"#,
        slice(1, dead_port),
        slice(2, live.port())
    )
}

struct Env {
    proxy: Proxy,
    base: String,
}

async fn setup() -> Env {
    let (services, _) = echo_backends(&[
        ("default", "flaky"),
        ("default", "budget-fixed"),
        ("default", "budget-share"),
    ])
    .await;
    let (_, live) = echo_backends(&[("default", "spread-live")]).await;
    let port = free_port();
    let proxy = Proxy::start_ready(
        &[
            ("gateway.yaml", &gateway_yaml("gw", port)),
            ("services.yaml", &services),
            ("spread.yaml", &spread_service(live[0], free_port())),
            ("routes.yaml", ROUTES),
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

    async fn post(&self, path: &str, headers: &[(&str, &str)], body: Bytes) -> Reply {
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http();
        let mut all = vec![("host", HOST)];
        all.extend_from_slice(headers);
        send(
            &client,
            Method::POST,
            &format!("{}{path}", self.base),
            &all,
            body,
        )
        .await
        .expect("request")
    }

    /// A counter of the `retries` route: `family{gateway,route,route_kind[,reason]}`.
    async fn counter(&self, family: &str, reason: Option<&str>) -> f64 {
        let reason = reason
            .map(|r| format!(",reason=\"{r}\""))
            .unwrap_or_default();
        self.proxy
            .metric(&format!(
                "{family}{{gateway=\"default/gw\",route=\"default/retries\",route_kind=\"HTTPRoute\"{reason}}}"
            ))
            .await
    }

    async fn retries(&self, reason: &str) -> f64 {
        self.counter("gantry_upstream_retries_total", Some(reason))
            .await
    }

    async fn skipped(&self, reason: &str) -> f64 {
        self.counter("gantry_upstream_retries_skipped_total", Some(reason))
            .await
    }
}

#[tokio::test]
async fn a_status_listed_in_codes_is_retried_until_the_backend_answers() {
    let env = setup().await;
    let reply = env
        .get(
            "/status",
            &[("x-echo-fail-first", "2"), ("x-echo-fail-with", "503")],
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.echo().attempt, Some(3), "two 503s, then the answer");
    assert_eq!(env.retries("status_code").await, 2.0);

    // A 502 is listed too; a 404 is not, and is answered as it is.
    let reply = env
        .get(
            "/status",
            &[("x-echo-fail-first", "1"), ("x-echo-fail-with", "502")],
        )
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.echo().attempt, Some(2));
    let reply = env
        .get(
            "/status",
            &[("x-echo-fail-first", "1"), ("x-echo-fail-with", "404")],
        )
        .await;
    assert_eq!(reply.status, 404);
    assert_eq!(reply.echo().attempt, Some(1));
    assert_eq!(env.retries("status_code").await, 3.0);
}

#[tokio::test]
async fn when_the_attempts_run_out_the_client_gets_the_backends_last_answer() {
    let env = setup().await;
    let reply = env
        .get(
            "/status",
            &[("x-echo-fail-first", "9"), ("x-echo-fail-with", "503")],
        )
        .await;
    assert_eq!(reply.status, 503);
    assert_eq!(
        reply.echo().attempt,
        Some(4),
        "the first attempt and 3 retries"
    );
    assert_eq!(env.retries("status_code").await, 3.0);
    assert_eq!(env.skipped("attempts_exhausted").await, 1.0);
    assert_eq!(
        env.counter("gantry_upstream_attempts_total", None).await,
        4.0
    );

    // A rule without retry sends one attempt.
    let reply = env
        .get(
            "/no-retry",
            &[("x-echo-fail-first", "1"), ("x-echo-fail-with", "503")],
        )
        .await;
    assert_eq!(reply.status, 503);
    assert_eq!(env.retries("status_code").await, 3.0);
    assert_eq!(
        env.counter("gantry_upstream_attempts_total", None).await,
        5.0
    );
}

#[tokio::test]
async fn a_connection_closed_before_the_answer_is_retried() {
    let env = setup().await;
    let reply = env
        .get(
            "/status",
            &[("x-echo-fail-first", "1"), ("x-echo-fail-with", "close")],
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.echo().attempt, Some(2));
    assert_eq!(env.retries("reset").await, 1.0);
}

#[tokio::test]
async fn a_slow_attempt_is_cut_by_backend_request_and_retried() {
    let env = setup().await;
    let reply = env
        .get(
            "/slow",
            &[
                ("x-echo-fail-first", "1"),
                ("x-echo-fail-with", "slow:3000"),
            ],
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.echo().attempt, Some(2));
    assert_eq!(env.retries("backend_timeout").await, 1.0);
}

#[tokio::test]
async fn retries_stop_at_the_request_timeout() {
    let env = setup().await;
    // Every attempt would be slow: 400ms attempts under a 1s request timeout leave room for
    // three at most, far fewer than the ten retries the rule allows.
    let reply = env
        .get(
            "/bounded",
            &[
                ("x-echo-fail-first", "99"),
                ("x-echo-fail-with", "slow:3000"),
            ],
        )
        .await;
    assert_eq!(reply.status, 504, "{}", reply.text());
    assert!(
        reply.text().contains("request timeout"),
        "the request timeout answered: {}",
        reply.text()
    );
    let retries = env.retries("backend_timeout").await;
    assert!(
        (1.0..=3.0).contains(&retries),
        "retries stopped at the request timeout, not at attempts: {retries}"
    );
}

#[tokio::test]
async fn a_post_body_is_replayed_on_retry() {
    let env = setup().await;
    let reply = env
        .post(
            "/status",
            &[("x-echo-fail-first", "1"), ("x-echo-fail-with", "503")],
            Bytes::from_static(b"hello, retry"),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let echo = reply.echo();
    assert_eq!(
        (echo.attempt, echo.body.as_str()),
        (Some(2), "hello, retry")
    );

    // Several frames' worth, under the 64 KiB buffer.
    let body = "0123456789abcdef".repeat(3_000);
    let reply = env
        .post(
            "/status",
            &[("x-echo-fail-first", "2"), ("x-echo-fail-with", "500")],
            Bytes::from(body.clone()),
        )
        .await;
    assert_eq!(reply.status, 200);
    let echo = reply.echo();
    assert_eq!(echo.attempt, Some(3));
    assert!(echo.body == body, "the replayed body differs");
}

#[tokio::test]
async fn a_body_over_the_retry_buffer_is_not_retried_and_the_access_log_says_so() {
    let env = setup().await;
    let body = "x".repeat(100 * 1024);
    let reply = env
        .post(
            "/status",
            &[("x-echo-fail-first", "1"), ("x-echo-fail-with", "503")],
            Bytes::from(body),
        )
        .await;
    assert_eq!(reply.status, 503, "the backend's answer, not retried");
    assert_eq!(reply.echo().attempt, Some(1));
    assert_eq!(env.skipped("body_not_replayable").await, 1.0);
    assert_eq!(env.retries("status_code").await, 0.0);
    env.proxy
        .eventually(
            std::time::Duration::from_secs(10),
            std::time::Duration::from_millis(20),
            || async {
                if env.proxy.log().contains("over the 64 KiB retry buffer") {
                    Ok(())
                } else {
                    Err("no access-log line about the retry buffer".to_owned())
                }
            },
        )
        .await;
}

#[tokio::test]
async fn a_retry_picks_another_endpoint() {
    let env = setup().await;
    // One endpoint refuses connections; round robin starts half the requests there, and each
    // of those has one retry, which must go to the other endpoint.
    for _ in 0..20 {
        let reply = env.get("/spread", &[]).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(reply.echo().name, "spread-live");
    }
    let retried = env.retries("connect_failure").await;
    assert!(
        retried >= 5.0,
        "about half the requests started on the dead endpoint: {retried}"
    );
}

/// Sends `n` concurrent GETs to `path` whose every attempt gets a 500; returns the statuses.
async fn failing_load(env: &Env, path: &str, n: usize) -> Vec<u16> {
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let url = format!("{}{path}", env.base);
            tokio::spawn(async move {
                get_host(&url, HOST, &[("x-echo-status", "500")])
                    .await
                    .expect("request")
                    .status
                    .as_u16()
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.expect("task"));
    }
    statuses
}

#[tokio::test]
async fn an_exhausted_retry_budget_refuses_retries_with_503() {
    let env = setup().await;
    let statuses = failing_load(&env, "/budget-fixed", 40).await;
    // The minimum rate allows three retries; every other retry is refused: 503, as
    // XBackendTrafficPolicy says ("additional retries to the backend MUST return a 503").
    assert_eq!(env.retries("status_code").await, 3.0);
    let refused = env.skipped("budget_exhausted").await;
    assert!(refused >= 37.0, "{refused}");
    let unavailable = statuses.iter().filter(|&&s| s == 503).count();
    assert!(unavailable >= 37, "{statuses:?}");
    assert!(
        statuses.iter().all(|&s| s == 503 || s == 500),
        "{statuses:?}"
    );
}

#[tokio::test]
async fn retries_stay_a_share_of_the_requests_under_load() {
    let env = setup().await;
    for _ in 0..3 {
        failing_load(&env, "/budget-share", 30).await;
    }
    let attempts = env.counter("gantry_upstream_attempts_total", None).await;
    let retries = env.retries("status_code").await;
    let refused = env.skipped("budget_exhausted").await;
    // 90 requests, one retry each allowed by the rule: without the budget, 90 retries. With
    // it, retries stay about 20% of all attempts (a few decided at once may overshoot).
    assert!(refused > 0.0, "the budget refused none");
    assert_eq!(retries + refused, 90.0, "every request asked for one retry");
    assert!(
        retries <= 0.2 * attempts + 5.0,
        "{retries} retries of {attempts} attempts"
    );
}
