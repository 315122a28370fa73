//! SecurityPolicy against the real binary: API keys (header, query parameter) mapped to a
//! Consumer and stripped before the backend, basic auth (bcrypt and `{SHA}` users), client
//! address allow and deny with X-Forwarded-For under a trusted hop, attachment precedence
//! (rule over route over Gateway), and a broken policy keeping its route closed.

use base64::Engine as _;
use gantry_testkit::harness::{Proxy, Reply, echo_backends, gateway_yaml, get_host};
use gantry_testkit::ports::free_port;

const HOST: &str = "secure.example.com";

/// `htpasswd -s` of "password".
const SHA_PASSWORD: &str = "{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=";

/// An HTTPRoute `default/{name}` on `gw` to the echo Service, one rule per `(name, path
/// prefix)` (an empty name leaves the rule unnamed).
fn route(name: &str, rules: &[(&str, &str)]) -> String {
    let mut yaml = format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n\
         metadata: {{name: {name}, namespace: default}}\n\
         spec:\n  parentRefs: [{{name: gw}}]\n  rules:\n"
    );
    for (rule, path) in rules {
        let named = if rule.is_empty() {
            String::new()
        } else {
            format!("name: {rule}\n      ")
        };
        yaml.push_str(&format!(
            "    - {named}matches: [{{path: {{type: PathPrefix, value: {path}}}}}]\n      \
             backendRefs: [{{name: echo, port: 8080}}]\n"
        ));
    }
    yaml + "---\n"
}

fn routes() -> String {
    let bcrypt = bcrypt::hash_with_salt("bob-pass", 4, [9u8; 16])
        .expect("bcrypt")
        .format_for_version(bcrypt::Version::TwoY);
    let routes = [
        route("keys", &[("", "/keys")]),
        route("basic", &[("", "/basic")]),
        route("ip-allow", &[("", "/ip-allow")]),
        route("ip-deny", &[("", "/ip-deny")]),
        route(
            "layered",
            &[("by-rule", "/layered/rule"), ("by-route", "/layered/route")],
        ),
        route(
            "partial",
            &[("locked", "/partial/locked"), ("free", "/partial/free")],
        ),
        route("broken", &[("", "/broken")]),
    ]
    .concat();
    routes
        + &format!(
            r#"
apiVersion: v1
kind: Secret
metadata: {{name: keys, namespace: default}}
stringData: {{client-a: key-a}}
---
apiVersion: v1
kind: Secret
metadata: {{name: acme-keys, namespace: default}}
stringData: {{primary: acme-key}}
---
apiVersion: gantry.dev/v1alpha1
kind: Consumer
metadata: {{name: acme, namespace: default, labels: {{team: e2e}}}}
spec:
  credentials:
    apiKeys: [{{name: acme-keys}}]
  labels: {{plan: gold}}
---
apiVersion: v1
kind: Secret
metadata: {{name: users, namespace: default}}
stringData:
  .htpasswd: |
    bob:{bcrypt}
    sam:{SHA_PASSWORD}
---
apiVersion: gantry.dev/v1alpha1
kind: SecurityPolicy
metadata: {{name: gateway-wide, namespace: default}}
spec:
  targetRefs: [{{group: gateway.networking.k8s.io, kind: Gateway, name: gw}}]
  authorization:
    defaultAction: Deny
    rules: [{{action: Allow, principal: {{clientCIDRs: ["10.0.0.0/8"]}}}}]
---
apiVersion: gantry.dev/v1alpha1
kind: SecurityPolicy
metadata: {{name: keys, namespace: default}}
spec:
  targetRefs: [{{group: gateway.networking.k8s.io, kind: HTTPRoute, name: keys}}]
  apiKeyAuth:
    credentialRefs: [{{name: keys}}]
    extractFrom: [{{headers: [X-API-Key], params: [api_key]}}]
    forwardClientIDHeader: X-Client-ID
  consumerSelector: {{matchLabels: {{team: e2e}}}}
  consumerHeader: X-Consumer
---
apiVersion: gantry.dev/v1alpha1
kind: SecurityPolicy
metadata: {{name: basic, namespace: default}}
spec:
  targetRefs: [{{group: gateway.networking.k8s.io, kind: HTTPRoute, name: basic}}]
  basicAuth:
    users: {{name: users}}
    forwardUsernameHeader: X-User
    realm: e2e
---
apiVersion: gantry.dev/v1alpha1
kind: SecurityPolicy
metadata: {{name: ip-allow, namespace: default}}
spec:
  targetRefs: [{{group: gateway.networking.k8s.io, kind: HTTPRoute, name: ip-allow}}]
  authorization:
    rules: [{{action: Allow, principal: {{clientCIDRs: ["127.0.0.0/8"]}}}}]
---
apiVersion: gantry.dev/v1alpha1
kind: SecurityPolicy
metadata: {{name: ip-deny, namespace: default}}
spec:
  targetRefs: [{{group: gateway.networking.k8s.io, kind: HTTPRoute, name: ip-deny}}]
  authorization:
    defaultAction: Allow
    rules: [{{action: Deny, principal: {{clientCIDRs: ["127.0.0.0/8", "192.0.2.0/24"]}}}}]
---
apiVersion: gantry.dev/v1alpha1
kind: SecurityPolicy
metadata: {{name: layered-route, namespace: default}}
spec:
  targetRefs: [{{group: gateway.networking.k8s.io, kind: HTTPRoute, name: layered}}]
  apiKeyAuth:
    credentialRefs: [{{name: keys}}]
    extractFrom: [{{headers: [x-api-key]}}]
---
apiVersion: gantry.dev/v1alpha1
kind: SecurityPolicy
metadata: {{name: layered-rule, namespace: default}}
spec:
  targetRefs: [{{group: gateway.networking.k8s.io, kind: HTTPRoute, name: layered, sectionName: by-rule}}]
  authorization:
    rules: [{{action: Allow, principal: {{clientCIDRs: ["127.0.0.0/8"]}}}}]
---
apiVersion: gantry.dev/v1alpha1
kind: SecurityPolicy
metadata: {{name: partial-locked, namespace: default}}
spec:
  targetRefs: [{{group: gateway.networking.k8s.io, kind: HTTPRoute, name: partial, sectionName: locked}}]
  apiKeyAuth:
    credentialRefs: [{{name: keys}}]
    extractFrom: [{{headers: [x-api-key]}}]
---
apiVersion: gantry.dev/v1alpha1
kind: SecurityPolicy
metadata: {{name: broken, namespace: default}}
spec:
  targetRefs: [{{group: gateway.networking.k8s.io, kind: HTTPRoute, name: broken}}]
  apiKeyAuth:
    credentialRefs: [{{name: not-yet}}]
    extractFrom: [{{headers: [x-api-key]}}]
"#
        )
}

/// A proxy trusting one proxy hop in front of it (so X-Forwarded-For names the client).
async fn setup() -> (Proxy, String) {
    let (services, _) = echo_backends(&[("default", "echo")]).await;
    let port = free_port();
    let proxy = Proxy::start_ready(
        &[
            ("gateway.yaml", &gateway_yaml("gw", port)),
            ("services.yaml", &services),
            ("routes.yaml", &routes()),
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

fn basic(user: &str, password: &str) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {b64}")
}

#[tokio::test]
async fn api_keys_map_to_consumers_and_never_reach_the_backend() {
    let (_proxy, base) = setup().await;

    let reply = get(
        &base,
        "/keys",
        &[("x-api-key", "acme-key"), ("x-consumer", "forged")],
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let echo = reply.echo();
    assert_eq!(echo.headers["x-consumer"], ["default/acme"]);
    assert_eq!(echo.headers["x-client-id"], ["default/acme"]);
    assert!(
        !echo.headers.contains_key("x-api-key"),
        "{:?}",
        echo.headers
    );

    let reply = get(&base, "/keys?a=1&api_key=key-a&b=2", &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let echo = reply.echo();
    assert_eq!(echo.path, "/keys?a=1&b=2");
    assert_eq!(echo.headers["x-client-id"], ["client-a"]);
    // A key of no Consumer: the client's own x-consumer is still removed.
    assert!(!echo.headers.contains_key("x-consumer"));

    for headers in [&[("x-api-key", "wrong")][..], &[]] {
        let reply = get(&base, "/keys", headers).await;
        assert_eq!(reply.status, 401, "{headers:?}: {}", reply.text());
    }
}

#[tokio::test]
async fn basic_auth_accepts_bcrypt_and_sha_users() {
    let (_proxy, base) = setup().await;
    for (user, password) in [("bob", "bob-pass"), ("sam", "password")] {
        let reply = get(
            &base,
            "/basic",
            &[("authorization", &basic(user, password))],
        )
        .await;
        assert_eq!(reply.status, 200, "{user}: {}", reply.text());
        let echo = reply.echo();
        assert_eq!(echo.headers["x-user"], [user]);
        assert!(!echo.headers.contains_key("authorization"));
    }
    for auth in [
        basic("bob", "wrong"),
        basic("nobody", "x"),
        "Bearer x".to_owned(),
    ] {
        let reply = get(&base, "/basic", &[("authorization", &auth)]).await;
        assert_eq!(reply.status, 401, "{auth}");
        assert_eq!(
            reply.header("www-authenticate"),
            Some("Basic realm=\"e2e\"")
        );
    }
    let reply = get(&base, "/basic", &[]).await;
    assert_eq!(reply.status, 401);
}

#[tokio::test]
async fn client_addresses_are_allowed_and_denied_through_trusted_hops() {
    let (proxy, base) = setup().await;
    assert_eq!(get(&base, "/ip-allow", &[]).await.status, 200);
    assert_eq!(get(&base, "/ip-deny", &[]).await.status, 403);
    // With one trusted hop the client is the address the hop appended.
    let forwarded = [("x-forwarded-for", "10.1.2.3")];
    assert_eq!(get(&base, "/ip-allow", &forwarded).await.status, 403);
    assert_eq!(get(&base, "/ip-deny", &forwarded).await.status, 200);
    let spoofed = [("x-forwarded-for", "192.0.2.9, 10.1.2.3")];
    assert_eq!(get(&base, "/ip-deny", &spoofed).await.status, 200);
    let denied = [("x-forwarded-for", "10.1.2.3, 192.0.2.9")];
    assert_eq!(get(&base, "/ip-deny", &denied).await.status, 403);
    proxy
        .wait_metric(
            r#"gantry_security_denied_total{route="default/ip-deny",reason="client_address"}"#,
            2.0,
        )
        .await;
}

#[tokio::test]
async fn the_most_specific_policy_wins() {
    let (_proxy, base) = setup().await;
    let from_ten = ("x-forwarded-for", "10.9.9.9");
    // The rule's own policy (localhost allowed, no key) beats the route's (a key).
    assert_eq!(get(&base, "/layered/rule", &[]).await.status, 200);
    // The route's policy governs its other rule: a key, whatever the address.
    assert_eq!(get(&base, "/layered/route", &[]).await.status, 401);
    assert_eq!(
        get(&base, "/layered/route", &[("x-api-key", "key-a")])
            .await
            .status,
        200
    );
    // A rule-targeted policy leaves the route's other rules to the Gateway's policy.
    assert_eq!(get(&base, "/partial/locked", &[from_ten]).await.status, 401);
    assert_eq!(get(&base, "/partial/free", &[]).await.status, 403);
    assert_eq!(get(&base, "/partial/free", &[from_ten]).await.status, 200);
}

#[tokio::test]
async fn a_broken_policy_keeps_its_route_closed_until_fixed() {
    let (proxy, base) = setup().await;
    let reply = get(&base, "/broken", &[("x-api-key", "anything")]).await;
    assert_eq!(reply.status, 500);
    let body = reply.text();
    assert!(
        body.contains("default/broken") && body.contains("not-yet"),
        "{body}"
    );
    // `/status` (standalone mode) says why.
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
            .is_some_and(|m| m.contains("Secret default/not-yet does not exist")),
        "{policy:#}"
    );

    let version = proxy.version().await;
    proxy.write(
        "late-secret.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata: {name: not-yet, namespace: default}\nstringData: {c: late-key}\n",
    );
    proxy.wait_version_above(version).await;
    assert_eq!(get(&base, "/broken", &[]).await.status, 401);
    assert_eq!(
        get(&base, "/broken", &[("x-api-key", "late-key")])
            .await
            .status,
        200
    );
}
