//! SecurityPolicy `oidc` against the real binary and a real OpenID provider (node-oidc-provider,
//! `gantry_testkit::oidc`), driven by a cookie jar that follows redirects as a browser does: a
//! browser is redirected with PKCE parameters, logs in at the provider, the callback sets a
//! sealed session cookie and the original request reaches the backend (with the access token
//! when forwarded, never with the session cookie); an API client without a session is 401; a
//! tampered cookie is refused; logout ends the session; a short-lived access token is
//! refreshed; a policy whose Secret is missing is `Invalid`; a provider whose host resolves
//! nowhere is reached through a Service backendRef. No token, cookie or secret reaches the log
//! or `/config`.

use gantry_testkit::harness::{
    Proxy, Reply, echo_backends, echo_route_yaml, gateway_yaml, get_host, service_yaml,
};
use gantry_testkit::oidc::{ACCOUNT, CLIENT_SECRET, CookieJar, OidcProvider, query_param};
use gantry_testkit::ports::free_port;

const SESSION: &str = "app-session";
const STATE: &str = "app-state";

fn config(issuer: &str, port: u16) -> String {
    [
        echo_route_yaml("app", "/app"),
        echo_route_yaml("short", "/short"),
        echo_route_yaml("broken", "/broken"),
    ]
    .concat()
        + &format!(
            r#"
apiVersion: v1
kind: Secret
metadata: {{name: oidc-client, namespace: default}}
stringData: {{client-secret: {CLIENT_SECRET}}}
---
apiVersion: gantry.dev/v1alpha1
kind: SecurityPolicy
metadata: {{name: app, namespace: default}}
spec:
  targetRefs: [{{group: gateway.networking.k8s.io, kind: HTTPRoute, name: app}}]
  oidc:
    provider: {{issuer: "{issuer}"}}
    clientID: gantry
    clientSecret: {{name: oidc-client}}
    redirectURL: "http://127.0.0.1:{port}/app/oauth2/callback"
    logoutPath: /app/logout
    scopes: [email]
    forwardAccessToken: true
    cookieNames: {{session: {SESSION}, state: {STATE}}}
---
apiVersion: gantry.dev/v1alpha1
kind: SecurityPolicy
metadata: {{name: short, namespace: default}}
spec:
  targetRefs: [{{group: gateway.networking.k8s.io, kind: HTTPRoute, name: short}}]
  oidc:
    provider: {{issuer: "{issuer}"}}
    clientID: gantry-short
    clientSecret: {{name: oidc-client}}
    redirectURL: "http://127.0.0.1:{port}/short/oauth2/callback"
    logoutPath: /short/logout
    forwardAccessToken: true
---
apiVersion: gantry.dev/v1alpha1
kind: SecurityPolicy
metadata: {{name: broken, namespace: default}}
spec:
  targetRefs: [{{group: gateway.networking.k8s.io, kind: HTTPRoute, name: broken}}]
  oidc:
    provider: {{issuer: "{issuer}"}}
    clientID: gantry
    clientSecret: {{name: missing}}
    redirectURL: "http://127.0.0.1:{port}/broken/oauth2/callback"
"#
        )
}

struct Setup {
    provider: OidcProvider,
    proxy: Proxy,
    base: String,
}

async fn setup() -> Setup {
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let provider = OidcProvider::start(&[
        &format!("{base}/app/oauth2/callback"),
        &format!("{base}/short/oauth2/callback"),
    ])
    .await;
    let (services, _) = echo_backends(&[("default", "echo")]).await;
    let proxy = Proxy::start_ready(
        &[
            ("gateway.yaml", &gateway_yaml("gw", port)),
            ("services.yaml", &services),
            ("policies.yaml", &config(&provider.issuer(), port)),
        ],
        &[],
    )
    .await;
    Setup {
        provider,
        proxy,
        base,
    }
}

/// An API client's GET (no `text/html` in Accept), with an optional Cookie header.
async fn api_get(url: &str, cookie: Option<&str>) -> Reply {
    let mut headers = vec![("accept", "application/json")];
    if let Some(c) = cookie {
        headers.push(("cookie", c));
    }
    get_host(url, "127.0.0.1", &headers)
        .await
        .expect("request through the proxy")
}

/// Logs in from `start` (a path of the proxy): the redirect to the provider, the provider's
/// pages up to the callback, the callback, and the original URL. Returns the callback's
/// answer and the final one.
async fn log_in(jar: &mut CookieJar, s: &Setup, start: &str) -> (Reply, Reply) {
    let first = jar.get(&format!("{}{start}", s.base), &[]).await;
    assert_eq!(first.status, 302, "{}", first.text());
    let mut url = first.header("location").expect("Location").to_owned();
    assert!(
        url.starts_with(&format!("{}/auth?", s.provider.issuer())),
        "{url}"
    );
    // Through the provider's login and consent until it sends the browser back.
    for _ in 0..20 {
        if url.starts_with(&s.base) {
            break;
        }
        let reply = jar.get(&url, &[]).await;
        assert!(
            reply.status.is_redirection(),
            "{url}: {} {}",
            reply.status,
            reply.text()
        );
        url = gantry_testkit::oidc::resolve(&url, reply.header("location").expect("Location"));
    }
    assert!(url.contains("/oauth2/callback?"), "{url}");
    assert!(query_param(&url, "code").is_some(), "{url}");
    let callback = jar.get(&url, &[]).await;
    assert_eq!(callback.status, 302, "{}", callback.text());
    let (last, _) = jar
        .browse(&gantry_testkit::oidc::resolve(
            &url,
            callback.header("location").expect("Location"),
        ))
        .await;
    (callback, last)
}

#[tokio::test]
async fn a_browser_logs_in_with_pkce_and_reaches_the_backend() {
    let s = setup().await;
    let mut jar = CookieJar::default();

    // A browser without a session: redirected to the provider with PKCE (S256), state, nonce.
    let first = jar.get(&format!("{}/app/page?x=1", s.base), &[]).await;
    assert_eq!(first.status, 302, "{}", first.text());
    let location = first.header("location").expect("Location").to_owned();
    assert!(
        location.starts_with(&format!("{}/auth?", s.provider.issuer())),
        "{location}"
    );
    assert_eq!(query_param(&location, "response_type"), Some("code"));
    assert_eq!(query_param(&location, "client_id"), Some("gantry"));
    assert_eq!(
        query_param(&location, "code_challenge_method"),
        Some("S256")
    );
    assert_eq!(
        query_param(&location, "code_challenge").map(str::len),
        Some(43)
    );
    assert!(query_param(&location, "state").is_some_and(|v| v.len() >= 32));
    assert!(query_param(&location, "nonce").is_some_and(|v| v.len() >= 32));
    assert_eq!(query_param(&location, "scope"), Some("openid+email"));
    let state_cookie = first.header("set-cookie").expect("Set-Cookie");
    assert!(
        state_cookie.starts_with(&format!("{STATE}=")),
        "{state_cookie}"
    );
    assert!(state_cookie.contains("HttpOnly") && state_cookie.contains("SameSite=Lax"));
    assert!(
        !state_cookie.contains("Secure"),
        "plain HTTP: {state_cookie}"
    );

    // The whole flow: provider, callback, the original URL.
    let mut jar = CookieJar::default();
    let (callback, reply) = log_in(&mut jar, &s, "/app/page?x=1").await;
    assert_eq!(callback.header("location"), Some("/app/page?x=1"));
    let set: Vec<&str> = callback
        .headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    assert!(
        set.iter().any(|c| c.starts_with(&format!("{SESSION}="))
            && c.contains("HttpOnly")
            && c.contains("SameSite=Lax")),
        "{set:?}"
    );
    assert!(
        set.iter().any(|c| c.starts_with(&format!("{STATE}=;"))),
        "state cleared: {set:?}"
    );
    let session = jar.cookie(SESSION).expect("session cookie").to_owned();
    assert!(!session.contains(ACCOUNT), "the cookie is sealed");
    assert_eq!(reply.status, 200, "{}", reply.text());
    let echo = reply.echo();
    assert_eq!(echo.path, "/app/page?x=1");
    let bearer = echo.headers["authorization"][0].clone();
    assert!(
        bearer.starts_with("Bearer ") && bearer.len() > 20,
        "{bearer}"
    );
    let upstream_cookies = echo
        .headers
        .get("cookie")
        .cloned()
        .unwrap_or_default()
        .join(";");
    assert!(!upstream_cookies.contains(SESSION), "{upstream_cookies}");

    // The session keeps working, for a browser and for an API client that carries it.
    let again = jar.get(&format!("{}/app/other", s.base), &[]).await;
    assert_eq!(again.status, 200, "{}", again.text());
    let cookie = format!("{SESSION}={session}");
    assert_eq!(
        api_get(&format!("{}/app/x", s.base), Some(&cookie))
            .await
            .status,
        200
    );

    // An API client without a session: 401 with a challenge and the request ID.
    let denied = api_get(&format!("{}/app/x", s.base), None).await;
    assert_eq!(denied.status, 401, "{}", denied.text());
    assert_eq!(
        denied.header("www-authenticate"),
        Some("Bearer realm=\"default/app\"")
    );
    assert!(denied.header("x-request-id").is_some());

    // A tampered cookie is no session: 401 for an API client, a new login for a browser.
    let mut bytes = session.clone().into_bytes();
    let i = bytes.len() / 2;
    bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(bytes).expect("ASCII");
    let cookie = format!("{SESSION}={tampered}");
    assert_eq!(
        api_get(&format!("{}/app/x", s.base), Some(&cookie))
            .await
            .status,
        401
    );
    let mut forged = jar.clone();
    forged.set(SESSION, &tampered);
    assert_eq!(
        forged.get(&format!("{}/app/x", s.base), &[]).await.status,
        302
    );
    // The session of one policy is no session of another.
    let elsewhere = api_get(
        &format!("{}/short/x", s.base),
        Some(&format!("{SESSION}={session}")),
    )
    .await;
    assert_eq!(elsewhere.status, 401);

    // Logout: cookies cleared, the browser sent to the provider's end-session endpoint.
    let out = jar.get(&format!("{}/app/logout", s.base), &[]).await;
    assert_eq!(out.status, 302, "{}", out.text());
    assert!(
        out.header("location")
            .is_some_and(|l| l.starts_with(&format!("{}/session/end", s.provider.issuer()))),
        "{:?}",
        out.header("location")
    );
    assert_eq!(jar.cookie(SESSION), None, "session cookie cleared");
    assert_eq!(jar.get(&format!("{}/app/x", s.base), &[]).await.status, 302);

    // Denials are counted; nothing secret in the log or /config.
    s.proxy
        .wait_metric(
            r#"gantry_security_denied_total{route="default/app",reason="oidc"}"#,
            2.0,
        )
        .await;
    let log = s.proxy.log();
    let config = s.proxy.config().await.to_string();
    let token = bearer.trim_start_matches("Bearer ");
    for secret in [token, session.as_str(), CLIENT_SECRET] {
        assert!(!log.contains(secret), "a secret in the log");
        assert!(!config.contains(secret), "a secret in /config");
    }
}

#[tokio::test]
async fn a_short_lived_access_token_is_refreshed_and_a_broken_policy_is_invalid() {
    let s = setup().await;
    let mut jar = CookieJar::default();
    // Access tokens of `gantry-short` live 20 s, under the refresh margin: each request
    // refreshes, sends the new token upstream and sets the cookie again.
    let (_, reply) = log_in(&mut jar, &s, "/short/a").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let first = reply.echo().headers["authorization"][0].clone();
    let session_name = jar
        .names()
        .into_iter()
        .find(|n| n.starts_with("gantry-session-"))
        .expect("the default session cookie name");
    let cookie_before = jar
        .cookie(&session_name)
        .expect("session cookie")
        .to_owned();
    let next = jar.get(&format!("{}/short/b", s.base), &[]).await;
    assert_eq!(next.status, 200, "{}", next.text());
    assert!(
        next.headers.get_all("set-cookie").iter().any(|v| v
            .to_str()
            .is_ok_and(|v| v.starts_with(&format!("{session_name}=")))),
        "a refresh sets the cookie again"
    );
    let second = next.echo().headers["authorization"][0].clone();
    assert_ne!(first, second, "a new access token");
    assert_ne!(
        jar.cookie(&session_name).expect("session cookie"),
        cookie_before
    );
    // The refreshed session goes on working.
    assert_eq!(
        jar.get(&format!("{}/short/c", s.base), &[]).await.status,
        200
    );

    // A policy whose client Secret is missing: Invalid, the route closed.
    assert_eq!(
        api_get(&format!("{}/broken", s.base), None).await.status,
        500
    );
    let statuses = s.proxy.status().await;
    let policy = statuses
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["kind"] == "SecurityPolicy" && p["name"] == "broken")
        .unwrap_or_else(|| panic!("no status for SecurityPolicy broken: {statuses:#}"));
    let condition = &policy["status"]["ancestors"][0]["conditions"][0];
    assert_eq!(condition["reason"], "Invalid", "{policy:#}");
    assert!(
        condition["message"]
            .as_str()
            .is_some_and(|m| m.contains("Secret default/missing does not exist")),
        "{policy:#}"
    );
}

#[tokio::test]
async fn a_provider_is_reached_through_a_service_backend_ref() {
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    // The issuer's host resolves nowhere: the proxy reaches discovery, the token endpoint and
    // the JWKS only through the Service's endpoints.
    let provider = OidcProvider::start_as(
        "idp.e2e.invalid",
        &[&format!("{base}/mesh/oauth2/callback")],
    )
    .await;
    let (services, _) = echo_backends(&[("default", "echo")]).await;
    let policies = echo_route_yaml("mesh", "/mesh")
        + &format!(
            r#"
apiVersion: v1
kind: Secret
metadata: {{name: oidc-client, namespace: default}}
stringData: {{client-secret: {CLIENT_SECRET}}}
---
apiVersion: gantry.dev/v1alpha1
kind: SecurityPolicy
metadata: {{name: mesh, namespace: default}}
spec:
  targetRefs: [{{group: gateway.networking.k8s.io, kind: HTTPRoute, name: mesh}}]
  oidc:
    provider:
      issuer: "{}"
      backendRefs: [{{name: idp, port: 8080}}]
    clientID: gantry
    clientSecret: {{name: oidc-client}}
    redirectURL: "{base}/mesh/oauth2/callback"
    logoutPath: /mesh/logout
"#,
            provider.issuer()
        );
    let proxy = Proxy::start_ready(
        &[
            ("gateway.yaml", &gateway_yaml("gw", port)),
            ("services.yaml", &services),
            (
                "idp.yaml",
                &service_yaml("default", "idp", 8080, &[provider.addr()]),
            ),
            ("policies.yaml", &policies),
        ],
        &[],
    )
    .await;
    let s = Setup {
        provider,
        proxy,
        base,
    };
    let mut jar = CookieJar::default();
    let (_, reply) = log_in(&mut jar, &s, "/mesh/page").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.echo().path, "/mesh/page");
    let out = jar.get(&format!("{}/mesh/logout", s.base), &[]).await;
    assert!(
        out.header("location")
            .is_some_and(|l| l.starts_with("http://idp.e2e.invalid:")),
        "{:?}",
        out.header("location")
    );
}
