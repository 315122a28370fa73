//! Session persistence (GEP-1619) against the real binary: a Service with three echo
//! endpoints (each reports its own name), clients that keep the cookie or header the proxy
//! hands them, configuration reloads, endpoints that go away, and tokens a client altered.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use gantry_testkit::echo::{self, EchoIdentity};
use gantry_testkit::harness::{Proxy, Reply, free_port, gateway_yaml, get_host};

const HOST: &str = "sticky.example.com";

const ROUTES: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: sticky, namespace: default}
spec:
  parentRefs: [{name: gw}]
  hostnames: ["sticky.example.com"]
  rules:
    - matches: [{path: {type: PathPrefix, value: /cookie}}]
      sessionPersistence:
        sessionName: gantry-sticky
      backendRefs: [{name: web, port: 8080}]
    - matches: [{path: {type: PathPrefix, value: /header}}]
      sessionPersistence:
        type: Header
        sessionName: x-session
      backendRefs: [{name: web, port: 8080}]
    - matches: [{path: {type: PathPrefix, value: /permanent}}]
      sessionPersistence:
        sessionName: lasting
        absoluteTimeout: 1h
        idleTimeout: 10m
        cookieConfig: {lifetimeType: Permanent}
      backendRefs: [{name: web, port: 8080}]
    - matches: [{path: {type: PathPrefix, value: /policy}}]
      backendRefs: [{name: pinned, port: 8080}]
    - matches: [{path: {type: PathPrefix, value: /plain}}]
      backendRefs: [{name: web, port: 8080}]
"#;

const POLICY: &str = r#"
apiVersion: gateway.networking.x-k8s.io/v1alpha1
kind: XBackendTrafficPolicy
metadata: {name: pinned-sessions, namespace: default}
spec:
  targetRefs: [{group: "", kind: Service, name: pinned}]
  sessionPersistence: {sessionName: pinned-session}
"#;

/// A Service on port 8080 whose endpoints are `backends`, one EndpointSlice each (so each
/// keeps its own port on 127.0.0.1).
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

/// Echo backends named `{prefix}-0`, `{prefix}-1`, ...
async fn echoes(prefix: &str, n: usize) -> Vec<SocketAddr> {
    let mut addrs = Vec::new();
    for i in 0..n {
        let (addr, _task) = echo::spawn(
            "127.0.0.1:0".parse().expect("addr"),
            EchoIdentity {
                name: format!("{prefix}-{i}"),
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
    web: Vec<SocketAddr>,
    pinned: Vec<SocketAddr>,
}

async fn start(extra_args: &[&str]) -> Env {
    let web = echoes("web", 3).await;
    let pinned = echoes("pinned", 3).await;
    let port = free_port();
    let proxy = Proxy::start_ready(
        &[
            ("gateway.yaml", &gateway_yaml("gw", port)),
            ("web.yaml", &service_yaml("web", &web)),
            ("pinned.yaml", &service_yaml("pinned", &pinned)),
            ("policy.yaml", POLICY),
            ("routes.yaml", ROUTES),
        ],
        extra_args,
    )
    .await;
    Env {
        proxy,
        base: format!("http://127.0.0.1:{port}"),
        web,
        pinned,
    }
}

async fn get(base: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    let reply = get_host(&format!("{base}{path}"), HOST, headers)
        .await
        .expect("request");
    assert_eq!(reply.status, 200, "{path}: {}", reply.text());
    reply
}

/// The `Set-Cookie` of `name`, whole (value and attributes).
fn set_cookie<'r>(reply: &'r Reply, name: &str) -> Option<&'r str> {
    reply
        .headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
}

/// The value of the `Set-Cookie` of `name`.
fn cookie_value(reply: &Reply, name: &str) -> Option<String> {
    let whole = set_cookie(reply, name)?;
    let pair = whole.split(';').next()?;
    Some(pair.split_once('=')?.1.to_owned())
}

/// Reload count: waits until it passes `before`.
async fn wait_reload(proxy: &Proxy, before: f64) {
    proxy
        .eventually(
            std::time::Duration::from_secs(10),
            std::time::Duration::from_millis(20),
            || async {
                let now = proxy.metric("gantry_config_reloads_total").await;
                if now > before {
                    Ok(())
                } else {
                    Err(format!("gantry_config_reloads_total stayed at {now}"))
                }
            },
        )
        .await;
}

/// Starts a session on `path` and returns the cookie value and the endpoint's name.
async fn begin(base: &str, path: &str, cookie: &str) -> (String, String) {
    let first = get(base, path, &[]).await;
    let value = cookie_value(&first, cookie)
        .unwrap_or_else(|| panic!("no {cookie} cookie: {:?}", first.headers));
    (value, first.echo().name)
}

#[tokio::test]
async fn a_cookie_session_stays_on_one_of_three_endpoints_for_a_thousand_requests() {
    let env = start(&[]).await;
    // Without a session, requests spread over the three endpoints.
    let mut spread = BTreeSet::new();
    for _ in 0..6 {
        spread.insert(get(&env.base, "/plain", &[]).await.echo().name);
    }
    assert_eq!(spread.len(), 3, "{spread:?}");

    let first = get(&env.base, "/cookie/cart", &[]).await;
    let whole = set_cookie(&first, "gantry-sticky").expect("a session cookie");
    assert!(whole.contains("; Path=/cookie;"), "{whole}");
    assert!(whole.contains("HttpOnly"), "{whole}");
    assert!(!whole.contains("Max-Age"), "a Session cookie: {whole}");
    let value = cookie_value(&first, "gantry-sticky").expect("value");
    let owner = first.echo().name;
    let cookie = format!("other=1; gantry-sticky={value}");
    for i in 0..1000 {
        let reply = get(&env.base, "/cookie/cart", &[("cookie", &cookie)]).await;
        assert_eq!(reply.echo().name, owner, "request {i}");
        // A session cookie without idle timeout is not written again.
        assert_eq!(set_cookie(&reply, "gantry-sticky"), None, "request {i}");
    }
    // The backend sees the cookie (the GEP: the backend is presented with the session).
    let reply = get(&env.base, "/cookie", &[("cookie", &cookie)]).await;
    assert!(
        reply
            .echo()
            .header("cookie")
            .unwrap_or_default()
            .contains("gantry-sticky=")
    );
    let _ = (&env.web, &env.pinned);
}

#[tokio::test]
async fn a_session_survives_a_configuration_change() {
    let env = start(&[]).await;
    let (value, owner) = begin(&env.base, "/cookie", "gantry-sticky").await;
    let cookie = format!("gantry-sticky={value}");
    // An unrelated change: another route in another file; routes and clusters recompile.
    let before = env.proxy.metric("gantry_config_reloads_total").await;
    env.proxy.write(
        "unrelated.yaml",
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: unrelated, namespace: default}
spec:
  parentRefs: [{name: gw}]
  hostnames: ["unrelated.example.com"]
  rules:
    - backendRefs: [{name: web, port: 8080}]
"#,
    );
    wait_reload(&env.proxy, before).await;
    for i in 0..50 {
        let reply = get(&env.base, "/cookie", &[("cookie", &cookie)]).await;
        assert_eq!(reply.echo().name, owner, "request {i} after the reload");
    }
}

#[tokio::test]
async fn a_forged_cookie_counts_as_no_session_and_a_valid_one_is_issued() {
    let env = start(&[]).await;
    let (value, _) = begin(&env.base, "/cookie", "gantry-sticky").await;
    // Flip one character: in the endpoint id, then in the MAC.
    let flip = |at: usize| {
        let mut chars: Vec<char> = value.chars().collect();
        chars[at] = if chars[at] == 'A' { 'B' } else { 'A' };
        chars.into_iter().collect::<String>()
    };
    for forged in [flip(40), flip(value.len() - 3), "garbage".to_owned()] {
        let reply = get(
            &env.base,
            "/cookie",
            &[("cookie", &format!("gantry-sticky={forged}"))],
        )
        .await;
        let fresh = cookie_value(&reply, "gantry-sticky")
            .unwrap_or_else(|| panic!("no new cookie for {forged}"));
        assert_ne!(fresh, forged);
        // The new cookie is a real session.
        let owner = reply.echo().name;
        for _ in 0..10 {
            let again = get(
                &env.base,
                "/cookie",
                &[("cookie", &format!("gantry-sticky={fresh}"))],
            )
            .await;
            assert_eq!(again.echo().name, owner);
            assert_eq!(set_cookie(&again, "gantry-sticky"), None);
        }
    }
    // A token of one rule is not valid on another (the GEP: rules do not share sessions).
    let header_reply = get(&env.base, "/header", &[("x-session", &value)]).await;
    assert!(header_reply.header("x-session").is_some(), "a new session");
}

#[tokio::test]
async fn when_the_endpoint_goes_the_session_moves_and_the_new_one_is_written_back() {
    let env = start(&[]).await;
    let (value, owner) = begin(&env.base, "/cookie", "gantry-sticky").await;
    let index: usize = owner
        .strip_prefix("web-")
        .and_then(|i| i.parse().ok())
        .expect("web-N");
    let remaining: Vec<SocketAddr> = env
        .web
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != index)
        .map(|(_, a)| *a)
        .collect();
    let before = env.proxy.metric("gantry_config_reloads_total").await;
    env.proxy
        .write("web.yaml", &service_yaml("web", &remaining));
    wait_reload(&env.proxy, before).await;

    let moved = get(
        &env.base,
        "/cookie",
        &[("cookie", &format!("gantry-sticky={value}"))],
    )
    .await;
    let new_owner = moved.echo().name;
    assert_ne!(new_owner, owner);
    let new_value = cookie_value(&moved, "gantry-sticky").expect("the new endpoint written back");
    assert_ne!(new_value, value);
    for _ in 0..20 {
        let reply = get(
            &env.base,
            "/cookie",
            &[("cookie", &format!("gantry-sticky={new_value}"))],
        )
        .await;
        assert_eq!(reply.echo().name, new_owner);
    }
}

#[tokio::test]
async fn header_sessions_are_handed_out_and_followed() {
    let env = start(&[]).await;
    let first = get(&env.base, "/header", &[]).await;
    let token = first
        .header("x-session")
        .expect("the session header")
        .to_owned();
    assert_eq!(
        set_cookie(&first, "x-session"),
        None,
        "no cookie for a header session"
    );
    let owner = first.echo().name;
    for _ in 0..100 {
        let reply = get(&env.base, "/header", &[("x-session", &token)]).await;
        assert_eq!(reply.echo().name, owner);
        assert_eq!(reply.header("x-session"), None, "nothing to refresh");
    }
}

#[tokio::test]
async fn permanent_cookies_carry_max_age_and_policies_give_cookies_without_path() {
    let env = start(&[]).await;
    let first = get(&env.base, "/permanent", &[]).await;
    let whole = set_cookie(&first, "lasting").expect("cookie");
    assert!(
        whole.contains("; Max-Age=3600") || whole.contains("; Max-Age=3599"),
        "{whole}"
    );
    assert!(whole.contains("; Path=/permanent;"), "{whole}");

    // XBackendTrafficPolicy on the Service: persistence for this rule, cookie without Path.
    let first = get(&env.base, "/policy", &[]).await;
    let whole = set_cookie(&first, "pinned-session").expect("cookie from the policy");
    assert!(!whole.contains("Path="), "{whole}");
    let value = cookie_value(&first, "pinned-session").expect("value");
    let owner = first.echo().name;
    assert!(owner.starts_with("pinned-"));
    for _ in 0..30 {
        let reply = get(
            &env.base,
            "/policy",
            &[("cookie", &format!("pinned-session={value}"))],
        )
        .await;
        assert_eq!(reply.echo().name, owner);
    }
}

/// A key file of 32 random-looking bytes, unique per call.
fn key_file(dir: &std::path::Path) -> std::path::PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let path = dir.join(format!("session-key-{}-{n}", std::process::id()));
    let seed = format!(
        "{:?}{n}",
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)
    );
    let key: String = seed.chars().cycle().take(48).collect();
    std::fs::write(&path, key).expect("writing the key file");
    path
}

#[tokio::test]
async fn replicas_sharing_a_key_file_share_sessions_and_others_do_not() {
    let dir = std::env::temp_dir();
    let key = key_file(&dir);
    let key_arg = key.to_str().expect("utf-8 path");
    let a = start(&["--session-key-file", key_arg]).await;
    // A second "replica": the same Services (same endpoints), the same key.
    let port = free_port();
    let b = Proxy::start_ready(
        &[
            ("gateway.yaml", &gateway_yaml("gw", port)),
            ("web.yaml", &service_yaml("web", &a.web)),
            ("pinned.yaml", &service_yaml("pinned", &a.pinned)),
            ("policy.yaml", POLICY),
            ("routes.yaml", ROUTES),
        ],
        &["--session-key-file", key_arg],
    )
    .await;
    let b_base = format!("http://127.0.0.1:{port}");
    let (value, owner) = begin(&a.base, "/cookie", "gantry-sticky").await;
    let cookie = format!("gantry-sticky={value}");
    for _ in 0..30 {
        let reply = get(&b_base, "/cookie", &[("cookie", &cookie)]).await;
        assert_eq!(
            reply.echo().name,
            owner,
            "the other replica follows the session"
        );
        assert_eq!(set_cookie(&reply, "gantry-sticky"), None);
    }
    assert!(b.log().contains("--session-key-file"), "{}", b.log());

    // A proxy with its own random key does not accept the token: it starts a session.
    let c = start(&[]).await;
    assert!(c.proxy.log().contains("random key"), "{}", c.proxy.log());
    let reply = get(&c.base, "/cookie", &[("cookie", &cookie)]).await;
    assert!(cookie_value(&reply, "gantry-sticky").is_some());
    let _ = std::fs::remove_file(&key);
}

#[tokio::test]
async fn a_key_file_that_is_too_short_stops_the_proxy() {
    let dir = std::env::temp_dir();
    let path = dir.join(format!("short-key-{}", std::process::id()));
    std::fs::write(&path, "too short\n").expect("write");
    let mut proxy = Proxy::start(
        &[("gateway.yaml", &gateway_yaml("gw", free_port()))],
        &["--session-key-file", path.to_str().expect("utf-8")],
    );
    let status = proxy.child.wait().expect("the proxy exits");
    assert!(!status.success());
    assert!(proxy.log().contains("at least 32"), "{}", proxy.log());
    let _ = std::fs::remove_file(&path);
}

/// A route whose Service has a live echo endpoint and one that refuses connections, with
/// session persistence and one retry.
const RETRY_ROUTE: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: resilient, namespace: default}
spec:
  parentRefs: [{name: gw}]
  hostnames: ["sticky.example.com"]
  rules:
    - sessionPersistence:
        sessionName: gantry-retry
      retry: {attempts: 1, backoff: 1ms}
      backendRefs: [{name: half, port: 8080}]
"#;

#[tokio::test]
async fn a_retry_answered_by_another_endpoint_moves_the_session_there() {
    let live = echoes("half", 1).await[0];
    // A port nothing listens on: connecting is refused, which is retried.
    let dead: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let port = free_port();
    let proxy = Proxy::start_ready(
        &[
            ("gateway.yaml", &gateway_yaml("gw", port)),
            ("half.yaml", &service_yaml("half", &[dead, live])),
            ("routes.yaml", RETRY_ROUTE),
        ],
        &[],
    )
    .await;
    let base = format!("http://127.0.0.1:{port}");
    let attempts = || {
        proxy.metric(
            "gantry_upstream_attempts_total{gateway=\"default/gw\",route=\"default/resilient\",route_kind=\"HTTPRoute\"}",
        )
    };

    // Round robin takes each endpoint in turn (a retry's pick advances it too), so at least
    // one of two new sessions starts on the dead endpoint and is answered by the live one
    // after a retry.
    let mut cookies = Vec::new();
    for _ in 0..2 {
        let reply = get(&base, "/", &[]).await;
        assert_eq!(reply.echo().name, "half-0");
        cookies.push(cookie_value(&reply, "gantry-retry").expect("a session cookie"));
    }
    let before = attempts().await;
    assert!(
        before >= 3.0,
        "a new session was retried ({before} attempts)"
    );

    // Both sessions now name the endpoint that answered: no request needs a retry.
    for cookie in &cookies {
        for _ in 0..5 {
            let reply = get(&base, "/", &[("cookie", &format!("gantry-retry={cookie}"))]).await;
            assert_eq!(reply.echo().name, "half-0");
        }
    }
    assert_eq!(
        attempts().await,
        before + 10.0,
        "a session that named the refused endpoint would be retried on every request"
    );
}
