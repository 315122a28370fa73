//! RateLimitPolicy through the real binary: per-client buckets (X-Forwarded-For under a
//! trusted hop) answered 429 with `Retry-After` and the IETF `RateLimit` headers, per-header
//! buckets with a cost, shadow mode, limits per Consumer and per plan after API-key
//! authentication, per JWT claim after token verification, counts kept across a reload, and a
//! broken policy keeping its route closed.

use gantry_testkit::harness::{
    Proxy, Reply, echo_backends, echo_route_yaml, gateway_yaml, get_host,
};
use gantry_testkit::ports::free_port;
use serde_json::Value;

const HOST: &str = "limits.example.com";

/// An HTTPRoute `default/{name}` on `gw` for the path prefix `/{name}` to the echo Service.
fn route(name: &str) -> String {
    echo_route_yaml(name, &format!("/{name}"))
}

fn policy(name: &str, route: &str, rules: &str) -> String {
    format!(
        "apiVersion: gantry.dev/v1alpha1\nkind: RateLimitPolicy\n\
         metadata: {{name: {name}, namespace: default}}\n\
         spec:\n  targetRefs: [{{group: gateway.networking.k8s.io, kind: HTTPRoute, name: {route}}}]\n\
         \x20 local:\n    rules:\n{rules}---\n"
    )
}

fn config() -> String {
    let routes = ["per-client", "per-user", "plans", "broken", "other"]
        .map(route)
        .concat();
    let policies = [
        policy(
            "per-client",
            "per-client",
            "    - name: per-client\n      clientSelectors: [{sourceCIDR: {type: Distinct, value: 0.0.0.0/0}}]\n      limit: {requests: 3, unit: Minute}\n",
        ),
        policy(
            "per-user",
            "per-user",
            "    - name: per-user\n      clientSelectors: [{headers: [{name: X-User, type: Distinct}]}]\n      limit: {requests: 4, unit: Hour}\n      cost: {request: {from: Number, number: 2}}\n\
             \x20   - name: watch\n      limit: {requests: 1, unit: Hour}\n      shadowMode: true\n",
        ),
        policy(
            "plans",
            "plans",
            "    - name: free-plan\n      clientSelectors: [{consumerLabels: [{name: plan, value: free}]}]\n      limit: {requests: 1, unit: Hour}\n\
             \x20   - name: per-consumer\n      clientSelectors: [{consumer: {type: Distinct}}]\n      limit: {requests: 3, unit: Hour}\n",
        ),
        policy(
            "broken",
            "broken",
            "    - clientSelectors: [{sourceCIDR: {value: 10.0.0.0/99}}]\n      limit: {requests: 1, unit: Second}\n",
        ),
    ]
    .concat();
    let consumers = r#"apiVersion: v1
kind: Secret
metadata: {name: gold-keys, namespace: default}
stringData: {k: gold-key}
---
apiVersion: v1
kind: Secret
metadata: {name: free-keys, namespace: default}
stringData: {k: free-key}
---
apiVersion: gantry.dev/v1alpha1
kind: Consumer
metadata: {name: gold, namespace: default, labels: {team: e2e}}
spec:
  credentials: {apiKeys: [{name: gold-keys}]}
  labels: {plan: gold}
---
apiVersion: gantry.dev/v1alpha1
kind: Consumer
metadata: {name: free, namespace: default, labels: {team: e2e}}
spec:
  credentials: {apiKeys: [{name: free-keys}]}
  labels: {plan: free}
---
apiVersion: gantry.dev/v1alpha1
kind: SecurityPolicy
metadata: {name: keys, namespace: default}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: HTTPRoute, name: plans}]
  apiKeyAuth:
    extractFrom: [{headers: [X-API-Key]}]
  consumerSelector: {matchLabels: {team: e2e}}
"#;
    format!("{routes}{policies}{consumers}")
}

/// A proxy trusting one proxy hop in front of it (so X-Forwarded-For names the client).
async fn setup() -> (Proxy, String) {
    let (services, _) = echo_backends(&[("default", "echo")]).await;
    let port = free_port();
    let proxy = Proxy::start_ready(
        &[
            ("gateway.yaml", &gateway_yaml("gw", port)),
            ("services.yaml", &services),
            ("config.yaml", &config()),
        ],
        &["--trusted-proxy-hops", "1"],
    )
    .await;
    (proxy, format!("http://127.0.0.1:{port}"))
}

async fn get(base: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    get_host(&format!("{base}{path}"), HOST, headers)
        .await
        .expect("request through the proxy")
}

fn header<'a>(reply: &'a Reply, name: &str) -> &'a str {
    reply
        .header(name)
        .unwrap_or_else(|| panic!("no {name} header: {reply:?}"))
}

#[tokio::test]
async fn each_client_has_its_own_bucket_and_the_refusal_says_when_to_retry() {
    let (proxy, base) = setup().await;
    let a = [("x-forwarded-for", "192.0.2.1")];
    for left in [2, 1, 0] {
        let reply = get(&base, "/per-client", &a).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(
            header(&reply, "ratelimit-policy"),
            r#""per-client";q=3;w=60"#
        );
        let limit = header(&reply, "ratelimit");
        assert!(
            limit.starts_with(&format!(r#""per-client";r={left};t="#)),
            "{limit}"
        );
    }
    let refused = get(&base, "/per-client", &a).await;
    assert_eq!(refused.status, 429, "{}", refused.text());
    // One request refills every 20 s.
    let retry: u64 = header(&refused, "retry-after").parse().expect("seconds");
    assert!((19..=20).contains(&retry), "Retry-After {retry}");
    assert_eq!(
        header(&refused, "ratelimit-policy"),
        r#""per-client";q=3;w=60"#
    );
    assert_eq!(
        header(&refused, "ratelimit"),
        format!(r#""per-client";r=0;t={retry}"#)
    );
    assert!(refused.header("x-request-id").is_some());
    assert!(refused.text().contains("per-client"), "{}", refused.text());

    // Another client, and the same client on another route, are not limited.
    let b = [("x-forwarded-for", "192.0.2.2")];
    assert_eq!(get(&base, "/per-client", &b).await.status, 200);
    assert_eq!(get(&base, "/other", &a).await.status, 200);
    assert_eq!(
        proxy
            .metric(
                r#"gantry_rate_limited_total{route="default/per-client",policy="default/per-client",rule="per-client",mode="enforced"}"#
            )
            .await,
        1.0
    );

    // A reload (a new route) keeps the counts.
    let version = proxy.version().await;
    proxy.write("extra.yaml", &route("extra"));
    proxy.wait_version_above(version).await;
    assert_eq!(get(&base, "/per-client", &a).await.status, 429);
}

#[tokio::test]
async fn header_buckets_take_the_cost_and_shadow_rules_only_count() {
    let (proxy, base) = setup().await;
    let alice = [("x-user", "alice")];
    // A request costs 2 of 4: two pass, the third is refused; the shadow rule (1 per hour)
    // would have refused the second and third, and refuses nothing.
    assert_eq!(get(&base, "/per-user", &alice).await.status, 200);
    assert_eq!(get(&base, "/per-user", &alice).await.status, 200);
    let refused = get(&base, "/per-user", &alice).await;
    assert_eq!(refused.status, 429);
    assert_eq!(
        header(&refused, "ratelimit-policy"),
        r#""per-user";q=4;w=3600"#
    );
    assert_eq!(
        get(&base, "/per-user", &[("x-user", "bob")]).await.status,
        200
    );
    // No X-User: the per-user rule does not apply; only the shadow rule counts it.
    for _ in 0..3 {
        assert_eq!(get(&base, "/per-user", &[]).await.status, 200);
    }
    let shadow = proxy
        .metric(
            r#"gantry_rate_limited_total{route="default/per-user",policy="default/per-user",rule="watch",mode="shadow"}"#,
        )
        .await;
    assert_eq!(
        shadow, 5.0,
        "every request after the first would have been refused"
    );
}

#[tokio::test]
async fn consumers_and_plans_have_their_limits() {
    let (_proxy, base) = setup().await;
    let free = [("x-api-key", "free-key")];
    let gold = [("x-api-key", "gold-key")];
    // The free plan: 1 per hour.
    assert_eq!(get(&base, "/plans", &free).await.status, 200);
    let refused = get(&base, "/plans", &free).await;
    assert_eq!(refused.status, 429);
    assert!(refused.text().contains("free-plan"), "{}", refused.text());
    // Gold: the per-consumer limit of 3.
    for _ in 0..3 {
        assert_eq!(get(&base, "/plans", &gold).await.status, 200);
    }
    let refused = get(&base, "/plans", &gold).await;
    assert_eq!(refused.status, 429);
    assert!(
        refused.text().contains("per-consumer"),
        "{}",
        refused.text()
    );
    // Authentication comes first: no key is 401, never counted.
    assert_eq!(get(&base, "/plans", &[]).await.status, 401);
}

#[tokio::test]
async fn a_broken_policy_keeps_its_route_closed_and_says_why() {
    let (proxy, base) = setup().await;
    let reply = get(&base, "/broken", &[]).await;
    assert_eq!(reply.status, 500);
    assert!(reply.text().contains("cannot be used"), "{}", reply.text());
    let status = proxy.status().await;
    let policy: &Value = status
        .as_array()
        .and_then(|a| {
            a.iter()
                .find(|o| o["kind"] == "RateLimitPolicy" && o["name"] == "broken")
        })
        .expect("the policy's status");
    let accepted = &policy["status"]["ancestors"][0]["conditions"][0];
    assert_eq!(accepted["type"], "Accepted");
    assert_eq!(accepted["status"], "False");
    assert_eq!(accepted["reason"], "Invalid");
    assert!(
        accepted["message"]
            .as_str()
            .is_some_and(|m| m.contains("10.0.0.0/99")),
        "{accepted}"
    );
}

#[tokio::test]
async fn each_jwt_claim_value_gets_its_own_bucket() {
    use gantry_testkit::jwks::{JwksServer, SigningKey, now};
    let key = SigningKey::generate("k1");
    let server = JwksServer::spawn(&[&key]).await;
    let (services, _) = echo_backends(&[("default", "echo")]).await;
    let port = free_port();
    let config = format!(
        r#"{route}apiVersion: gantry.dev/v1alpha1
kind: SecurityPolicy
metadata: {{name: tokens, namespace: default}}
spec:
  targetRefs: [{{group: gateway.networking.k8s.io, kind: HTTPRoute, name: orgs}}]
  jwt:
    providers:
    - name: issuer
      issuer: https://issuer.e2e
      remoteJWKS: {{uri: "{jwks}"}}
---
{policy}"#,
        route = route("orgs"),
        jwks = server.url(),
        policy = policy(
            "orgs",
            "orgs",
            "    - name: per-org\n      clientSelectors: [{claims: [{name: org.id, type: Distinct}]}]\n      limit: {requests: 2, unit: Hour}\n",
        ),
    );
    let _proxy = Proxy::start_ready(
        &[
            ("gateway.yaml", &gateway_yaml("gw", port)),
            ("services.yaml", &services),
            ("config.yaml", &config),
        ],
        &[],
    )
    .await;
    let base = format!("http://127.0.0.1:{port}");
    let token = |org: &str| {
        let claims = serde_json::json!({"iss": "https://issuer.e2e", "sub": "u",
            "org": {"id": org}, "iat": now(), "exp": now() + 600});
        format!("Bearer {}", key.token(&claims))
    };
    let (acme, globex) = (token("acme"), token("globex"));
    for _ in 0..2 {
        assert_eq!(
            get(&base, "/orgs", &[("authorization", &acme)])
                .await
                .status,
            200
        );
    }
    let refused = get(&base, "/orgs", &[("authorization", &acme)]).await;
    assert_eq!(refused.status, 429, "{}", refused.text());
    assert_eq!(
        header(&refused, "ratelimit-policy"),
        r#""per-org";q=2;w=3600"#
    );
    assert_eq!(
        get(&base, "/orgs", &[("authorization", &globex)])
            .await
            .status,
        200
    );
}
