//! SecurityPolicy `jwt` against the real binary, with keys served by an in-test JWKS server:
//! a valid token passes (its claims copied to headers, the token removed); a wrong issuer or
//! audience, an expired or not-yet-valid token are 401 with an RFC 6750 challenge; a missing
//! required claim is 403; a JWKS that cannot be fetched answers 401; a broken provider is
//! `Invalid`; a JWKS fetched through a Service backendRef works; and a key rotation under a steady client costs no request.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gantry_testkit::harness::{
    Proxy, Reply, echo_backends, echo_route_yaml, gateway_yaml, get_host, service_yaml,
};
use gantry_testkit::jwks::{JwksServer, SigningKey, now};
use gantry_testkit::ports::free_port;
use serde_json::{Value, json};

const HOST: &str = "jwt.example.com";
const ISSUER: &str = "https://issuer.e2e";

fn route(name: &str, path: &str) -> String {
    echo_route_yaml(name, path)
}

fn config(jwks_url: &str, unreachable_url: &str) -> String {
    [
        route("api", "/api"),
        route("down", "/down"),
        route("broken", "/broken"),
        route("mesh", "/mesh"),
    ]
    .concat()
        + &format!(
            r#"
apiVersion: gantry.dev/v1alpha1
kind: SecurityPolicy
metadata: {{name: api, namespace: default}}
spec:
  targetRefs: [{{group: gateway.networking.k8s.io, kind: HTTPRoute, name: api}}]
  jwt:
    providers:
    - name: issuer
      issuer: {ISSUER}
      audiences: [api]
      remoteJWKS: {{uri: "{jwks_url}", cacheDuration: 5m}}
      claimToHeaders:
      - {{header: X-User, claim: sub}}
      - {{header: X-Team, claim: org.team}}
      requiredClaims:
      - {{name: role, values: [admin, reader]}}
---
apiVersion: gantry.dev/v1alpha1
kind: SecurityPolicy
metadata: {{name: down, namespace: default}}
spec:
  targetRefs: [{{group: gateway.networking.k8s.io, kind: HTTPRoute, name: down}}]
  jwt:
    providers:
    - name: issuer
      remoteJWKS: {{uri: "{unreachable_url}"}}
---
apiVersion: gantry.dev/v1alpha1
kind: SecurityPolicy
metadata: {{name: mesh, namespace: default}}
spec:
  targetRefs: [{{group: gateway.networking.k8s.io, kind: HTTPRoute, name: mesh}}]
  jwt:
    providers:
    - name: in-cluster
      issuer: {ISSUER}
      remoteJWKS:
        uri: http://jwks.internal.invalid/keys
        backendRefs: [{{name: jwks, port: 8080}}]
---
apiVersion: gantry.dev/v1alpha1
kind: SecurityPolicy
metadata: {{name: broken, namespace: default}}
spec:
  targetRefs: [{{group: gateway.networking.k8s.io, kind: HTTPRoute, name: broken}}]
  jwt:
    providers:
    - name: nokeys
      issuer: {ISSUER}
"#
        )
}

async fn setup(server: &JwksServer) -> (Proxy, String) {
    let (services, _) = echo_backends(&[("default", "echo")]).await;
    let port = free_port();
    let unreachable = format!("http://127.0.0.1:{}/jwks", free_port());
    let proxy = Proxy::start_ready(
        &[
            ("gateway.yaml", &gateway_yaml("gw", port)),
            ("services.yaml", &services),
            (
                "jwks-service.yaml",
                &service_yaml("default", "jwks", 8080, &[server.addr]),
            ),
            ("policies.yaml", &config(&server.url(), &unreachable)),
        ],
        &[],
    )
    .await;
    (proxy, format!("http://127.0.0.1:{port}"))
}

fn claims() -> Value {
    json!({"iss": ISSUER, "aud": "api", "sub": "alice", "role": "reader",
        "org": {"team": "blue"}, "iat": now(), "exp": now() + 600})
}

async fn get(base: &str, path: &str, token: Option<&str>) -> Reply {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("x-user", "forged")];
    if let Some(b) = &bearer {
        headers.push(("authorization", b));
    }
    get_host(&format!("{base}{path}"), HOST, &headers)
        .await
        .expect("request through the proxy")
}

#[tokio::test]
async fn tokens_are_verified_against_a_remote_jwks() {
    let key = SigningKey::generate("k1");
    let server = JwksServer::spawn(&[&key]).await;
    let (proxy, base) = setup(&server).await;

    let reply = get(&base, "/api", Some(&key.token(&claims()))).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let echo = reply.echo();
    assert_eq!(echo.headers["x-user"], ["alice"]);
    assert_eq!(echo.headers["x-team"], ["blue"]);
    assert!(!echo.headers.contains_key("authorization"), "token removed");

    let changed = |f: fn(&mut Value)| {
        let mut c = claims();
        f(&mut c);
        key.token(&c)
    };
    let invalid = [
        changed(|c| c["iss"] = json!("https://other.e2e")),
        changed(|c| c["aud"] = json!("web")),
        changed(|c| c["exp"] = json!(now() - 300)),
        changed(|c| c["nbf"] = json!(now() + 300)),
        SigningKey::generate("k1").token(&claims()),
        "not.a.token".to_owned(),
    ];
    for token in &invalid {
        let reply = get(&base, "/api", Some(token)).await;
        assert_eq!(reply.status, 401, "{}", reply.text());
        assert_eq!(
            reply.header("www-authenticate"),
            Some("Bearer realm=\"default/api\", error=\"invalid_token\"")
        );
        assert!(reply.header("x-request-id").is_some());
        assert!(
            !reply.text().contains(token.as_str()),
            "never echoes a token"
        );
    }
    let reply = get(&base, "/api", None).await;
    assert_eq!(reply.status, 401);
    assert_eq!(
        reply.header("www-authenticate"),
        Some("Bearer realm=\"default/api\"")
    );

    let reply = get(
        &base,
        "/api",
        Some(&changed(|c| c["role"] = json!("guest"))),
    )
    .await;
    assert_eq!(reply.status, 403, "{}", reply.text());
    let reply = get(
        &base,
        "/api",
        Some(&changed(|c| {
            c.as_object_mut().map(|m| m.remove("role"));
        })),
    )
    .await;
    assert_eq!(reply.status, 403, "{}", reply.text());

    // The same issuer's JWKS fetched through a Service (the URL's host does not resolve).
    let reply = get(&base, "/mesh", Some(&key.token(&claims()))).await;
    assert_eq!(reply.status, 200, "{}", reply.text());

    // A JWKS that cannot be fetched: 401, and the proxy keeps serving.
    let reply = get(&base, "/down", Some(&key.token(&claims()))).await;
    assert_eq!(reply.status, 401, "{}", reply.text());

    // A provider without keys: Invalid, the route closed.
    assert_eq!(get(&base, "/broken", None).await.status, 500);
    let statuses = proxy.status().await;
    let policy = statuses
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["kind"] == "SecurityPolicy" && s["name"] == "broken")
        .unwrap_or_else(|| panic!("no status for SecurityPolicy broken: {statuses:#}"));
    let condition = &policy["status"]["ancestors"][0]["conditions"][0];
    assert_eq!(condition["reason"], "Invalid", "{policy:#}");
    assert!(
        condition["message"]
            .as_str()
            .is_some_and(|m| m.contains("no key source")),
        "{policy:#}"
    );

    proxy
        .wait_metric(
            r#"gantry_security_denied_total{route="default/api",reason="jwt_claims"}"#,
            2.0,
        )
        .await;
    let log = proxy.log();
    let config = proxy.config().await.to_string();
    for token in &invalid[..5] {
        assert!(!log.contains(token.as_str()), "a token in the log");
        assert!(!config.contains(token.as_str()), "a token in /config");
    }
}

#[tokio::test]
async fn a_key_rotation_under_load_fails_no_request() {
    let old = SigningKey::generate("old");
    let new = SigningKey::generate("new");
    let server = JwksServer::spawn(&[&old]).await;
    let (_proxy, base) = setup(&server).await;

    let old_token = old.token(&claims());
    let token = Arc::new(Mutex::new(old_token.clone()));
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let client = {
        let (token, stop, sent, base) = (token.clone(), stop.clone(), sent.clone(), base.clone());
        tokio::spawn(async move {
            let mut failures = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let t = token.lock().expect("token").clone();
                let reply = get(&base, "/api", Some(&t)).await;
                sent.fetch_add(1, Ordering::SeqCst);
                if reply.status != 200 {
                    failures.push(format!("{}: {}", reply.status, reply.text()));
                }
            }
            failures
        })
    };
    let wait_for = |n: usize| {
        let sent = sent.clone();
        async move {
            let target = sent.load(Ordering::SeqCst) + n;
            while sent.load(Ordering::SeqCst) < target {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    };
    wait_for(50).await;
    let fetches_before = server.fetches();
    // The issuer publishes only the new key and starts signing with it.
    server.set_keys(&[&new]);
    wait_for(20).await;
    *token.lock().expect("token") = new.token(&claims());
    wait_for(100).await;
    stop.store(true, Ordering::SeqCst);
    let failures = client.await.expect("client loop");
    assert!(
        failures.is_empty(),
        "{} of {} requests failed: {:?}",
        failures.len(),
        sent.load(Ordering::SeqCst),
        &failures[..failures.len().min(5)]
    );
    assert!(
        server.fetches() > fetches_before,
        "the unknown kid made the proxy fetch the JWKS again"
    );
    // The proxy's JWKS no longer has the old key: the old token, verified (and remembered)
    // many times before the rotation, is refused now.
    let reply = get(&base, "/api", Some(&old_token)).await;
    assert_eq!(reply.status, 401, "{}", reply.text());

    // Tokens of a kid nobody publishes: refused, and they cannot make the proxy hammer the
    // issuer (one forced fetch per 10 s).
    let fetches = server.fetches();
    let stranger = SigningKey::generate("stranger");
    for _ in 0..5 {
        let reply = get(&base, "/api", Some(&stranger.token(&claims()))).await;
        assert_eq!(reply.status, 401);
    }
    assert!(
        server.fetches() <= fetches + 1,
        "{} fetches",
        server.fetches() - fetches
    );
}
