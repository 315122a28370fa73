//! Global RateLimitPolicy rules against a real Redis (`redis-server`, started by the test kit):
//! two proxies serving one configuration share one bucket, a per-Consumer daily quota survives
//! a proxy restart, and with Redis gone a policy fails open or closed as it says, counted in
//! metrics and said in its status (`gantry.dev/Degraded`, naming Redis's address), and counts
//! again once Redis is back, the condition cleared. A Redis that loses the script, restarts
//! between requests, or asks for TLS and a password in a numbered database costs no request.

use gantry_testkit::certs::Ca;
use gantry_testkit::harness::tempdir::TempDir;
use gantry_testkit::harness::{
    Proxy, Reply, echo_backends, echo_route_yaml, gateway_yaml, get_host,
};
use gantry_testkit::ports::free_port;
use gantry_testkit::redis::{Options, Redis};
use std::time::Duration;

const HOST: &str = "global.example.com";

fn route(name: &str) -> String {
    echo_route_yaml(name, &format!("/{name}"))
}

fn policy(name: &str, fail_closed: bool, rules: &str) -> String {
    format!(
        "apiVersion: gantry.dev/v1alpha1\nkind: RateLimitPolicy\n\
         metadata: {{name: {name}, namespace: default}}\n\
         spec:\n  targetRefs: [{{group: gateway.networking.k8s.io, kind: HTTPRoute, name: {name}}}]\n\
         \x20 global:\n    failClosed: {fail_closed}\n    rules:\n{rules}---\n"
    )
}

const CONSUMER: &str = r#"apiVersion: v1
kind: Secret
metadata: {name: team-keys, namespace: default}
stringData: {k: team-key}
---
apiVersion: gantry.dev/v1alpha1
kind: Consumer
metadata: {name: team, namespace: default, labels: {team: e2e}}
spec:
  credentials: {apiKeys: [{name: team-keys}]}
---
apiVersion: gantry.dev/v1alpha1
kind: SecurityPolicy
metadata: {name: keys, namespace: default}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: HTTPRoute, name: quota}]
  apiKeyAuth:
    extractFrom: [{headers: [X-API-Key]}]
  consumerSelector: {matchLabels: {team: e2e}}
"#;

fn config() -> String {
    let routes = ["fleet", "quota", "open", "closed"].map(route).concat();
    let policies = [
        policy(
            "fleet",
            false,
            "    - name: fleet\n      limit: {requests: 10, unit: Minute}\n",
        ),
        policy(
            "quota",
            false,
            "    - name: daily\n      clientSelectors: [{consumer: {type: Distinct}}]\n      limit: {requests: 3, unit: Day}\n",
        ),
        policy(
            "open",
            false,
            "    - name: open\n      limit: {requests: 1000, unit: Second}\n",
        ),
        policy(
            "closed",
            true,
            "    - name: closed\n      limit: {requests: 1000, unit: Second}\n",
        ),
    ]
    .concat();
    format!("{routes}{policies}{CONSUMER}")
}

/// Listener port 80, so each proxy's `--port-offset` moves it to a free port of its own.
struct Fleet {
    files: Vec<(String, String)>,
    redis_url: String,
    /// The proxies' environment.
    env: Vec<(String, String)>,
}

impl Fleet {
    async fn new(redis: &Redis) -> Self {
        let (services, _) = echo_backends(&[("default", "echo")]).await;
        Self {
            files: vec![
                ("gateway.yaml".into(), gateway_yaml("gw", 80)),
                ("services.yaml".into(), services),
                ("config.yaml".into(), config()),
            ],
            redis_url: redis.url(),
            env: Vec::new(),
        }
    }

    /// A replica listening on a free port; returns it and its base URL.
    async fn replica(&self) -> (Proxy, String) {
        let port = free_port();
        let offset = (port - 80).to_string();
        let files: Vec<(&str, &str)> = self
            .files
            .iter()
            .map(|(n, t)| (n.as_str(), t.as_str()))
            .collect();
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let proxy = Proxy::start_with_env(
            &files,
            &[
                "--port-offset",
                &offset,
                "--rate-limit-redis",
                &self.redis_url,
            ],
            &env,
        );
        proxy.wait_ready().await;
        (proxy, format!("http://127.0.0.1:{port}"))
    }
}

async fn get(base: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    get_host(&format!("{base}{path}"), HOST, headers)
        .await
        .expect("request through the proxy")
}

#[tokio::test]
async fn two_replicas_share_one_global_bucket() {
    let redis = Redis::start().await;
    let fleet = Fleet::new(&redis).await;
    let (_a, a) = fleet.replica().await;
    let (_b, b) = fleet.replica().await;
    let mut passed = 0;
    let mut refused = 0;
    for i in 0..30 {
        let base = if i % 2 == 0 { &a } else { &b };
        match get(base, "/fleet", &[]).await.status.as_u16() {
            200 => passed += 1,
            429 => refused += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    // 10 a minute through the whole fleet; one more may have refilled during the test.
    assert!((10..=11).contains(&passed), "{passed} passed");
    assert_eq!(passed + refused, 30);
}

/// A busy bucket (1,000 a second) is not sent to Redis for every request: each replica reserves
/// a few takes ahead and lets its next requests through from them (`rate_limit::reserve`).
#[tokio::test]
async fn a_busy_bucket_is_counted_in_redis_far_less_often_than_once_per_request() {
    let redis = Redis::start().await;
    let fleet = Fleet::new(&redis).await;
    let (_a, a) = fleet.replica().await;
    let (_b, b) = fleet.replica().await;
    let calls_before = redis.calls("evalsha");
    let mut left = Vec::new();
    for i in 0..80 {
        let base = if i % 2 == 0 { &a } else { &b };
        let reply = get(base, "/open", &[]).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        let header = reply.header("ratelimit").expect("RateLimit header");
        let r: u64 = header
            .strip_prefix(r#""open";r="#)
            .and_then(|rest| rest.split(';').next())
            .and_then(|r| r.parse().ok())
            .unwrap_or_else(|| panic!("RateLimit: {header}"));
        left.push(r);
    }
    // Requests let through from a reserve say what is left like the others do: less than the
    // bucket holds, and no further below it than the 80 requests and what the other replica
    // holds (at most 50: what 1,000 a second refill in 50 ms).
    assert!(left.iter().all(|&r| (870..1000).contains(&r)), "{left:?}");
    let calls = redis.calls("evalsha") - calls_before;
    assert!(calls <= 40, "{calls} script calls for 80 requests");
}

#[tokio::test]
async fn a_daily_quota_per_consumer_survives_a_proxy_restart() {
    let redis = Redis::start().await;
    let fleet = Fleet::new(&redis).await;
    let key = [("x-api-key", "team-key")];
    let (first, base) = fleet.replica().await;
    for _ in 0..3 {
        assert_eq!(get(&base, "/quota", &key).await.status, 200);
    }
    first.terminate();
    drop(first);
    let (_second, base) = fleet.replica().await;
    let refused = get(&base, "/quota", &key).await;
    assert_eq!(refused.status, 429, "{}", refused.text());
    // One request of the day's 3 comes back every 8 hours.
    let retry: u64 = refused
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("seconds");
    assert!((28_000..=28_800).contains(&retry), "Retry-After {retry}");
    assert_eq!(
        refused.header("ratelimit-policy"),
        Some(r#""daily";q=3;w=86400"#)
    );
}

#[tokio::test]
async fn without_redis_a_policy_fails_open_or_closed_as_it_says() {
    let mut redis = Redis::start().await;
    let fleet = Fleet::new(&redis).await;
    let (proxy, base) = fleet.replica().await;
    assert_eq!(get(&base, "/open", &[]).await.status, 200);
    assert_eq!(get(&base, "/closed", &[]).await.status, 200);

    redis.stop();
    assert_eq!(get(&base, "/open", &[]).await.status, 200);
    let closed = get(&base, "/closed", &[]).await;
    assert_eq!(closed.status, 503, "{}", closed.text());
    assert!(closed.text().contains("fails closed"), "{}", closed.text());
    assert!(
        proxy
            .metric(r#"gantry_rate_limit_uncounted_total{policy="default/open",rule="open",outcome="allowed"}"#)
            .await
            >= 1.0
    );
    assert!(
        proxy
            .metric(r#"gantry_rate_limit_uncounted_total{policy="default/closed",rule="closed",outcome="refused"}"#)
            .await
            >= 1.0
    );

    // Each policy with global rules says so in its status, naming Redis and what it does.
    let address = redis.url().trim_start_matches("redis://").to_owned();
    for (policy, mode) in [("open", "fail open"), ("closed", "fail closed")] {
        let condition = proxy
            .eventually(Duration::from_secs(10), Duration::from_millis(50), || {
                degraded(&proxy, policy)
            })
            .await;
        assert_eq!(condition["status"], "True", "{condition}");
        assert_eq!(condition["reason"], "BackendUnavailable", "{condition}");
        let message = condition["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(&format!("Redis at {address} ")) && message.contains(mode),
            "{condition}"
        );
        assert!(
            !message.contains("redis://"),
            "the address, never the URL: {condition}"
        );
    }

    // Redis back: the conditions clear without a request (the proxy probes Redis), and the
    // closed route serves again once the proxy has reconnected.
    redis.restart().await;
    for policy in ["open", "closed"] {
        proxy
            .eventually(
                Duration::from_secs(15),
                Duration::from_millis(100),
                || async {
                    match degraded(&proxy, policy).await {
                        Ok(condition) => Err(format!("{policy} still degraded: {condition}")),
                        Err(_) => Ok(()),
                    }
                },
            )
            .await;
    }
    closed_serves_again(&proxy, &base).await;
}

#[tokio::test]
async fn a_lost_script_or_a_restarted_redis_costs_no_request() {
    let mut redis = Redis::start().await;
    let fleet = Fleet::new(&redis).await;
    let (proxy, base) = fleet.replica().await;
    // The closed policy answers 503 whenever a take is not counted.
    let closed = || async { get(&base, "/closed", &[]).await };
    assert_eq!(closed().await.status, 200);

    // Redis forgets the script: the proxy loads it again and runs the take.
    assert_eq!(redis.cli(&["SCRIPT", "FLUSH"]).trim(), "OK");
    let reply = closed().await;
    assert_eq!(reply.status, 200, "{}", reply.text());

    // Redis restarts between two requests: the proxy's connection is closed, and the take
    // runs on a new one.
    redis.restart().await;
    let reply = closed().await;
    assert_eq!(reply.status, 200, "{}\n{}", reply.text(), proxy.log());
    assert_eq!(
        proxy
            .metric(r#"gantry_rate_limit_uncounted_total{policy="default/closed",rule="closed",outcome="refused"}"#)
            .await,
        0.0
    );
}

#[tokio::test]
async fn a_redis_slower_than_the_timeout_fails_the_take_and_the_next_is_counted() {
    let redis = Redis::start().await;
    let fleet = Fleet::new(&redis).await;
    let (proxy, base) = fleet.replica().await;
    // The connection is open.
    assert_eq!(get(&base, "/closed", &[]).await.status, 200);
    // Redis runs no command of any client for 1.5 s (the take's timeout is 250 ms).
    assert_eq!(redis.cli(&["CLIENT", "PAUSE", "1500", "ALL"]).trim(), "OK");
    let reply = get(&base, "/closed", &[]).await;
    assert_eq!(reply.status, 503, "{}", reply.text());
    assert!(
        reply.text().contains("did not answer within 250ms"),
        "{}",
        reply.text()
    );
    assert_eq!(redis.cli(&["CLIENT", "UNPAUSE"]).trim(), "OK");
    closed_serves_again(&proxy, &base).await;
}

/// Waits until the fail-closed route serves again (its take counted in Redis).
async fn closed_serves_again(proxy: &Proxy, base: &str) {
    proxy
        .eventually(
            Duration::from_secs(15),
            Duration::from_millis(50),
            || async {
                match get(base, "/closed", &[]).await.status.as_u16() {
                    200 => Ok(()),
                    other => Err(format!("still {other}")),
                }
            },
        )
        .await;
}

#[tokio::test]
async fn a_redis_with_tls_a_password_and_a_database_counts_the_fleet() {
    let ca = Ca::new("Redis test CA");
    let password = "s3cret/!";
    let redis = Redis::start_with(Options {
        password: Some(password.to_owned()),
        tls: Some(ca.server(&["localhost"])),
    })
    .await;
    let trust = TempDir::new("gantry-redis-ca");
    let ca_file = trust.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.cert_pem).expect("writing ca.pem");
    let mut fleet = Fleet::new(&redis).await;
    let tls_port = redis.tls_port.expect("TLS port");
    // The password percent-encoded, as in any URL; database 2.
    fleet.redis_url = format!("rediss://:s3cret%2F%21@localhost:{tls_port}/2");
    // The system trust store, here made of the test CA alone.
    fleet.env = vec![("SSL_CERT_FILE".into(), ca_file.display().to_string())];
    let (a_proxy, a) = fleet.replica().await;
    let (b_proxy, b) = fleet.replica().await;
    let mut passed = 0;
    for i in 0..16 {
        let base = if i % 2 == 0 { &a } else { &b };
        match get(base, "/fleet", &[]).await.status.as_u16() {
            200 => passed += 1,
            429 => {}
            other => panic!("unexpected status {other}\n{}", a_proxy.log()),
        }
    }
    assert!((10..=11).contains(&passed), "{passed} passed");
    assert!(
        redis
            .cli(&["-n", "2", "KEYS", "gantry:rl:*"])
            .contains("gantry:rl:")
    );
    assert_eq!(redis.cli(&["-n", "0", "KEYS", "*"]).trim(), "");
    for proxy in [&a_proxy, &b_proxy] {
        assert!(!proxy.log().contains("s3cret"), "{}", proxy.log());
    }
}

/// The `gantry.dev/Degraded` condition of RateLimitPolicy `default/{policy}` (`Err` while it
/// has none).
async fn degraded(proxy: &Proxy, policy: &str) -> Result<serde_json::Value, String> {
    let statuses = proxy.status().await;
    let object = statuses
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["kind"] == "RateLimitPolicy" && s["name"] == policy)
        .ok_or_else(|| format!("no status for RateLimitPolicy {policy}"))?;
    object["status"]["ancestors"][0]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "gantry.dev/Degraded")
        .cloned()
        .ok_or_else(|| format!("RateLimitPolicy {policy} has no Degraded condition yet"))
}
