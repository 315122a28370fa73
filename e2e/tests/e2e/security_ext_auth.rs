//! SecurityPolicy `extAuth` against the real binary and real authorization services
//! (`gantry_testkit::ext_authz`, over HTTP and over gRPC): the service's allow and denial
//! through a policy on a route and on a Gateway; a service that is down, slower than
//! `timeout` or answering with an error refuses the request (403) by default and lets it
//! through with `failOpen: true` (counted in `gantry_security_fail_open_total`), while a
//! denial stays a denial; a backendRef in another namespace needs a ReferenceGrant, and one
//! that does not resolve makes the policy `Invalid` and its route refuse every request.

use std::net::SocketAddr;

use gantry_testkit::ext_authz::{self, BROKEN_TOKEN, GOOD_TOKEN, SLOW_TOKEN};
use gantry_testkit::harness::{
    Proxy, Reply, echo_backends, echo_route_yaml, gateway_yaml, get_host, service_yaml,
};
use gantry_testkit::ports::free_port;
use serde_json::Value;

const HOST: &str = "ext-auth.example.com";

/// A SecurityPolicy `default/auth` targeting `target` (a flow-style targetRef) with `extAuth`
/// (`ext_auth`: the `extAuth` object on one line).
fn policy(target: &str, ext_auth: &str) -> String {
    format!(
        "apiVersion: gantry.dev/v1alpha1\nkind: SecurityPolicy\n\
         metadata: {{name: auth, namespace: default}}\n\
         spec:\n  targetRefs: [{target}]\n  extAuth: {ext_auth}\n"
    )
}

const ON_ROUTE: &str = "{group: gateway.networking.k8s.io, kind: HTTPRoute, name: api}";
const ON_GATEWAY: &str = "{group: gateway.networking.k8s.io, kind: Gateway, name: gw}";

/// A proxy serving the echo route `api` (`/api`) and the authorization Service
/// `authz:9000` at `auth`, with `policy`.
async fn serve(policy: &str, auth: SocketAddr) -> (Proxy, String) {
    let (services, _) = echo_backends(&[("default", "echo")]).await;
    let port = free_port();
    let proxy = Proxy::start_ready(
        &[
            ("gateway.yaml", &gateway_yaml("gw", port)),
            ("services.yaml", &services),
            (
                "authz.yaml",
                &service_yaml("default", "authz", 9000, &[auth]),
            ),
            ("route.yaml", &echo_route_yaml("api", "/api")),
            ("policy.yaml", policy),
        ],
        &[],
    )
    .await;
    (proxy, format!("http://127.0.0.1:{port}"))
}

/// Replaces the policy and waits until the proxy serves it.
async fn replace(proxy: &Proxy, policy: &str) {
    let version = proxy.version().await;
    proxy.write("policy.yaml", policy);
    proxy.wait_version_above(version).await;
}

async fn get(base: &str, token: &str) -> Reply {
    get_host(
        &format!("{base}/api/orders"),
        HOST,
        &[("authorization", token)],
    )
    .await
    .expect("request")
}

/// The `Accepted` condition of SecurityPolicy `default/auth`.
async fn accepted(proxy: &Proxy) -> Value {
    let statuses = proxy.status().await;
    let policy = statuses
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["kind"] == "SecurityPolicy" && s["name"] == "auth")
        .unwrap_or_else(|| panic!("no status for SecurityPolicy auth: {statuses:#}"))
        .clone();
    policy["status"]["ancestors"][0]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "Accepted")
        .unwrap_or_else(|| panic!("no Accepted condition: {policy:#}"))
        .clone()
}

#[tokio::test]
async fn an_http_service_on_a_route_allows_and_denies() {
    let (auth, log) = ext_authz::spawn_http().await.expect("auth service");
    let (proxy, base) = serve(
        &policy(
            ON_ROUTE,
            "{http: {backendRefs: [{name: authz, port: 9000}], path: /check, \
             headersToBackend: [x-auth-user]}, headersToExtAuth: [x-tenant]}",
        ),
        auth,
    )
    .await;
    assert_eq!(accepted(&proxy).await["status"], "True");

    let allowed = get_host(
        &format!("{base}/api/orders"),
        HOST,
        &[
            ("authorization", GOOD_TOKEN),
            ("x-tenant", "acme"),
            ("x-secret", "s"),
        ],
    )
    .await
    .expect("request");
    assert_eq!(allowed.status, 200, "{}", allowed.text());
    let echo = allowed.echo();
    assert_eq!(echo.headers["x-auth-user"], ["alice"]);
    assert!(
        !echo.headers.contains_key("x-not-for-backend"),
        "only headersToBackend are copied: {:?}",
        echo.headers
    );
    let asked = &log.all()[0];
    assert_eq!(asked.path, "/check/api/orders", "http.path is a prefix");
    assert_eq!(asked.headers["x-tenant"], "acme");
    assert!(
        !asked.headers.contains_key("x-secret"),
        "{:?}",
        asked.headers
    );

    let denied = get(&base, "Bearer bad").await;
    assert_eq!(denied.status, 401, "{}", denied.text());
    assert_eq!(
        denied.header("www-authenticate"),
        Some("Bearer realm=\"test\"")
    );
    assert_eq!(denied.text(), "denied by the HTTP service\n");
    proxy
        .wait_metric(
            "gantry_security_denied_total{route=\"default/api\",reason=\"external_auth\"}",
            1.0,
        )
        .await;
}

#[tokio::test]
async fn a_grpc_service_on_a_gateway_decides_after_the_other_mechanisms() {
    let (auth, log) = ext_authz::spawn_grpc().await.expect("auth service");
    // Client addresses are checked first: a refused address never reaches the service.
    let (proxy, base) = serve(
        &format!(
            "{}  authorization:\n    defaultAction: Deny\n    rules:\n\
             \x20   - {{action: Allow, principal: {{clientCIDRs: [127.0.0.0/8]}}}}\n",
            policy(
                ON_GATEWAY,
                "{grpc: {backendRefs: [{name: authz, port: 9000}]}, timeout: 5s}"
            )
        ),
        auth,
    )
    .await;
    let allowed = get(&base, GOOD_TOKEN).await;
    assert_eq!(allowed.status, 200, "{}", allowed.text());
    let echo = allowed.echo();
    assert_eq!(echo.headers["x-auth-user"], ["alice"]);
    assert!(
        !echo.headers.contains_key("authorization"),
        "the service removed the credential: {:?}",
        echo.headers
    );
    assert_eq!(log.all()[0].path, "/api/orders");

    let denied = get(&base, "Bearer bad").await;
    assert_eq!(denied.status, 401, "{}", denied.text());
    assert_eq!(denied.text(), "denied by the gRPC service\n");
    assert_eq!(log.all().len(), 2);

    replace(
        &proxy,
        &format!(
            "{}  authorization:\n    defaultAction: Deny\n",
            policy(
                ON_GATEWAY,
                "{grpc: {backendRefs: [{name: authz, port: 9000}]}}"
            )
        ),
    )
    .await;
    let refused = get(&base, GOOD_TOKEN).await;
    assert_eq!(refused.status, 403, "{}", refused.text());
    assert_eq!(log.all().len(), 2, "the service is not asked");
}

#[tokio::test]
async fn a_service_that_is_down_fails_closed_unless_fail_open() {
    // A service that is not there: the port was bound once and released.
    let gone = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr")
    };
    let service = "{http: {backendRefs: [{name: authz, port: 9000}]}";
    let (proxy, base) = serve(&policy(ON_ROUTE, &format!("{service}}}")), gone).await;
    let refused = get(&base, GOOD_TOKEN).await;
    assert_eq!(refused.status, 403, "{}", refused.text());
    assert!(
        refused.text().contains("failed closed"),
        "{}",
        refused.text()
    );
    proxy
        .wait_metric(
            "gantry_security_denied_total{route=\"default/api\",reason=\"external_auth_error\"}",
            1.0,
        )
        .await;

    replace(
        &proxy,
        &policy(ON_ROUTE, &format!("{service}, failOpen: true}}")),
    )
    .await;
    let passed = get(&base, GOOD_TOKEN).await;
    assert_eq!(passed.status, 200, "{}", passed.text());
    proxy
        .wait_metric(
            "gantry_security_fail_open_total{route=\"default/api\",reason=\"unreachable\"}",
            1.0,
        )
        .await;
    let log = proxy.log();
    assert!(log.contains("failed open"), "the pass is logged: {log}");
    assert!(!log.contains(GOOD_TOKEN), "the log holds no credential");
}

/// Over `protocol` (`http` or `grpc`): a service slower than `timeout` and one answering with
/// an error refuse the request by default and let it through with `failOpen`; a denial is a
/// denial either way.
async fn slow_and_broken(protocol: &str, spawn: ext_authz::Spawn) {
    let (auth, log) = spawn().await.expect("auth service");
    let service =
        format!("{{{protocol}: {{backendRefs: [{{name: authz, port: 9000}}]}}, timeout: 200ms");
    let (proxy, base) = serve(&policy(ON_ROUTE, &format!("{service}}}")), auth).await;

    let slow = get(&base, SLOW_TOKEN).await;
    assert_eq!(slow.status, 403, "{}", slow.text());
    assert!(slow.text().contains("within"), "{}", slow.text());
    assert!(
        log.all()
            .iter()
            .any(|s| s.headers.get("authorization").map(String::as_str) == Some(SLOW_TOKEN)),
        "the service was asked"
    );
    let broken = get(&base, BROKEN_TOKEN).await;
    assert_eq!(broken.status, 403, "{}", broken.text());
    proxy
        .wait_metric(
            "gantry_security_denied_total{route=\"default/api\",reason=\"external_auth_error\"}",
            2.0,
        )
        .await;

    replace(
        &proxy,
        &policy(ON_ROUTE, &format!("{service}, failOpen: true}}")),
    )
    .await;
    let slow = get(&base, SLOW_TOKEN).await;
    assert_eq!(slow.status, 200, "{}", slow.text());
    proxy
        .wait_metric(
            "gantry_security_fail_open_total{route=\"default/api\",reason=\"timeout\"}",
            1.0,
        )
        .await;
    let broken = get(&base, BROKEN_TOKEN).await;
    assert_eq!(broken.status, 200, "{}", broken.text());
    proxy
        .wait_metric(
            "gantry_security_fail_open_total{route=\"default/api\",reason=\"error\"}",
            1.0,
        )
        .await;
    let denied = get(&base, "Bearer bad").await;
    assert_eq!(
        denied.status,
        401,
        "a denial is never passed: {}",
        denied.text()
    );
    assert_eq!(get(&base, GOOD_TOKEN).await.status, 200);
}

#[tokio::test]
async fn an_http_service_that_is_slow_or_broken_fails_closed_unless_fail_open() {
    slow_and_broken("http", || Box::pin(ext_authz::spawn_http())).await;
}

#[tokio::test]
async fn a_grpc_service_that_is_slow_or_broken_fails_closed_unless_fail_open() {
    slow_and_broken("grpc", || Box::pin(ext_authz::spawn_grpc())).await;
}

#[tokio::test]
async fn a_backend_in_another_namespace_needs_a_reference_grant() {
    let (auth, _log) = ext_authz::spawn_http().await.expect("auth service");
    let (services, _) = echo_backends(&[("default", "echo")]).await;
    let port = free_port();
    let elsewhere = policy(
        ON_ROUTE,
        "{http: {backendRefs: [{name: authz, namespace: security, port: 9000}]}}",
    );
    let proxy = Proxy::start_ready(
        &[
            ("gateway.yaml", &gateway_yaml("gw", port)),
            ("services.yaml", &services),
            (
                "authz.yaml",
                &service_yaml("security", "authz", 9000, &[auth]),
            ),
            ("route.yaml", &echo_route_yaml("api", "/api")),
            ("policy.yaml", &elsewhere),
        ],
        &[],
    )
    .await;
    let base = format!("http://127.0.0.1:{port}");

    // No ReferenceGrant: the policy is Invalid and its route closed.
    let refused = get(&base, GOOD_TOKEN).await;
    assert_eq!(refused.status, 500, "{}", refused.text());
    let condition = accepted(&proxy).await;
    assert_eq!(condition["status"], "False", "{condition}");
    assert_eq!(condition["reason"], "Invalid", "{condition}");
    assert!(
        condition["message"]
            .as_str()
            .is_some_and(|m| m.contains("ReferenceGrant")),
        "{condition}"
    );

    let version = proxy.version().await;
    proxy.write(
        "grant.yaml",
        "apiVersion: gateway.networking.k8s.io/v1beta1\nkind: ReferenceGrant\n\
         metadata: {name: policies, namespace: security}\n\
         spec:\n  from: [{group: gantry.dev, kind: SecurityPolicy, namespace: default}]\n\
         \x20 to: [{group: \"\", kind: Service}]\n",
    );
    proxy.wait_version_above(version).await;
    assert_eq!(accepted(&proxy).await["status"], "True");
    assert_eq!(get(&base, GOOD_TOKEN).await.status, 200);
    assert_eq!(get(&base, "Bearer bad").await.status, 401);

    // A Service that does not exist: Invalid, naming it.
    replace(
        &proxy,
        &policy(
            ON_ROUTE,
            "{http: {backendRefs: [{name: missing, port: 9000}]}}",
        ),
    )
    .await;
    assert_eq!(get(&base, GOOD_TOKEN).await.status, 500);
    let condition = accepted(&proxy).await;
    assert_eq!(condition["reason"], "Invalid", "{condition}");
    assert!(
        condition["message"]
            .as_str()
            .is_some_and(|m| m.contains("Service default/missing does not exist")),
        "{condition}"
    );
}
