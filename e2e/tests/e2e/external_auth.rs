//! The ExternalAuth filter (GEP-1494) against the real binary and real authorization services
//! (`gantry_testkit::ext_authz`): over HTTP (a `200` allows and its headers reach the backend;
//! any other answer is the client's) and over gRPC (Envoy's `ext_authz` v3 `Check`), the
//! headers each is sent, the body up to `forwardBody.maxSize` (413 beyond), and failing closed
//! when the service is down (403) or its backendRef does not resolve (500).

use std::net::SocketAddr;

use gantry_testkit::ext_authz::{self, GOOD_TOKEN};
use gantry_testkit::harness::{
    Proxy, Reply, echo_backends, gateway_yaml, get_host, post, service_yaml,
};
use gantry_testkit::ports::free_port;

const HOST: &str = "auth.example.com";

/// A route on `gw` to the echo Service with one ExternalAuth filter (`filter` is the
/// `externalAuth` object's YAML, on one line).
fn route(filter: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n\
         metadata: {{name: web, namespace: default}}\n\
         spec:\n  parentRefs: [{{name: gw}}]\n  hostnames: [\"{HOST}\"]\n  rules:\n\
         \x20   - filters: [{{type: ExternalAuth, externalAuth: {filter}}}]\n\
         \x20     backendRefs: [{{name: echo, port: 8080}}]\n"
    )
}

/// A proxy serving `route` with the echo backend and the authorization Service `authz`
/// (port 9000) at `auth`.
async fn serve(route: &str, auth: SocketAddr) -> (Proxy, String) {
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
            ("route.yaml", route),
        ],
        &[],
    )
    .await;
    (proxy, format!("http://127.0.0.1:{port}"))
}

async fn get(base: &str, headers: &[(&str, &str)]) -> Reply {
    get_host(&format!("{base}/orders?id=7"), HOST, headers)
        .await
        .expect("request")
}

#[tokio::test]
async fn an_http_service_allows_with_its_headers_and_its_denial_is_the_answer() {
    let (auth, log) = ext_authz::spawn_http().await.expect("auth service");
    let (proxy, base) = serve(
        &route(
            "{protocol: HTTP, backendRef: {name: authz, port: 9000}, http: {path: /check, \
             allowedHeaders: [x-tenant], allowedResponseHeaders: [x-auth-user]}}",
        ),
        auth,
    )
    .await;

    let allowed = get(
        &base,
        &[
            ("authorization", GOOD_TOKEN),
            ("x-tenant", "acme"),
            ("x-secret", "not for the service"),
        ],
    )
    .await;
    assert_eq!(allowed.status, 200, "{}", allowed.text());
    let echo = allowed.echo();
    assert_eq!(
        echo.headers["x-auth-user"],
        ["alice"],
        "the service's header"
    );
    assert!(
        !echo.headers.contains_key("x-not-for-backend"),
        "only allowedResponseHeaders are copied: {:?}",
        echo.headers
    );
    assert_eq!(echo.path, "/orders?id=7");
    let asked = &log.all()[0];
    assert_eq!(asked.method, "GET");
    assert_eq!(asked.path, "/check/orders?id=7", "http.path is a prefix");
    assert_eq!(asked.headers["host"], HOST);
    assert_eq!(asked.headers["authorization"], GOOD_TOKEN);
    assert_eq!(asked.headers["x-tenant"], "acme", "an allowed header");
    assert_eq!(asked.headers["content-length"], "0");
    assert!(
        !asked.headers.contains_key("x-secret"),
        "only the listed headers are sent: {:?}",
        asked.headers
    );

    let denied = get(&base, &[("authorization", "Bearer bad")]).await;
    assert_eq!(denied.status, 401);
    assert_eq!(
        denied.header("www-authenticate"),
        Some("Bearer realm=\"test\"")
    );
    assert_eq!(denied.text(), "denied by the HTTP service\n");
    assert!(denied.header("x-request-id").is_some());
    proxy
        .wait_metric(
            "gantry_security_denied_total{route=\"default/web\",reason=\"external_auth\"}",
            1.0,
        )
        .await;
}

#[tokio::test]
async fn a_grpc_service_decides_with_envoys_check_protocol() {
    let (auth, log) = ext_authz::spawn_grpc().await.expect("auth service");
    let (_proxy, base) = serve(
        &route("{protocol: GRPC, backendRef: {name: authz, port: 9000}}"),
        auth,
    )
    .await;

    let allowed = get(
        &base,
        &[("authorization", GOOD_TOKEN), ("x-tenant", "acme")],
    )
    .await;
    assert_eq!(allowed.status, 200, "{}", allowed.text());
    let echo = allowed.echo();
    assert_eq!(echo.headers["x-auth-user"], ["alice"]);
    assert!(
        !echo.headers.contains_key("authorization"),
        "headers_to_remove took the credential off: {:?}",
        echo.headers
    );
    let asked = &log.all()[0];
    assert_eq!(asked.method, "GET");
    assert_eq!(asked.path, "/orders?id=7");
    assert_eq!(asked.host, HOST);
    assert_eq!(asked.scheme, "http");
    assert_eq!(asked.protocol, "HTTP/1.1");
    assert_eq!(
        asked.headers.get("x-tenant").map(String::as_str),
        Some("acme"),
        "every header is sent when allowedHeaders is empty"
    );
    assert!(
        asked
            .source
            .as_deref()
            .is_some_and(|s| s.starts_with("127.0.0.1:")),
        "the client's address: {:?}",
        asked.source
    );

    let denied = get(&base, &[]).await;
    assert_eq!(denied.status, 401, "{}", denied.text());
    assert_eq!(
        denied.header("www-authenticate"),
        Some("Bearer realm=\"test\"")
    );
    assert_eq!(denied.text(), "denied by the gRPC service\n");
}

#[tokio::test]
async fn the_body_is_forwarded_up_to_max_size_and_a_larger_one_is_refused() {
    let (auth, log) = ext_authz::spawn_http().await.expect("auth service");
    let (_proxy, base) = serve(
        &route(
            "{protocol: HTTP, backendRef: {name: authz, port: 9000}, forwardBody: {maxSize: 16}}",
        ),
        auth,
    )
    .await;
    let url = format!("{base}/orders");
    let small = post(
        &url,
        &[("host", HOST), ("authorization", GOOD_TOKEN)],
        "{\"n\":1}",
    )
    .await
    .expect("small body");
    assert_eq!(small.status, 200, "{}", small.text());
    assert_eq!(
        small.echo().body,
        "{\"n\":1}",
        "the backend gets the body too"
    );
    let asked = &log.all()[0];
    assert_eq!(asked.body, b"{\"n\":1}");
    assert_eq!(asked.headers["content-length"], "7");

    let large = post(
        &url,
        &[("host", HOST), ("authorization", GOOD_TOKEN)],
        &"x".repeat(64),
    )
    .await
    .expect("large body");
    assert_eq!(large.status, 413, "{}", large.text());
    assert_eq!(
        log.all().len(),
        1,
        "a body over maxSize is never sent to the service"
    );
}

#[tokio::test]
async fn it_fails_closed() {
    // A service that is not there: the port was bound once and released.
    let gone = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr")
    };
    let (proxy, base) = serve(
        &route("{protocol: HTTP, backendRef: {name: authz, port: 9000}}"),
        gone,
    )
    .await;
    let refused = get(&base, &[("authorization", GOOD_TOKEN)]).await;
    assert_eq!(refused.status, 403, "{}", refused.text());
    assert!(
        refused.text().contains("failed closed"),
        "{}",
        refused.text()
    );
    proxy
        .wait_metric(
            "gantry_security_denied_total{route=\"default/web\",reason=\"external_auth_error\"}",
            1.0,
        )
        .await;

    // A backendRef to no Service: the route says so and refuses every request.
    proxy.write(
        "route.yaml",
        &route("{protocol: GRPC, backendRef: {name: missing, port: 9000}}"),
    );
    let version = proxy.version().await;
    proxy.wait_version_above(version).await;
    let refused = get(&base, &[("authorization", GOOD_TOKEN)]).await;
    assert_eq!(refused.status, 500, "{}", refused.text());
    let status = proxy.status().await;
    let route = status
        .as_array()
        .expect("status list")
        .iter()
        .find(|o| o["kind"] == "HTTPRoute")
        .expect("the route");
    let resolved = route["status"]["parents"][0]["conditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .find(|c| c["type"] == "ResolvedRefs")
        .expect("ResolvedRefs")
        .clone();
    assert_eq!(resolved["status"], "False");
    assert_eq!(resolved["reason"], "BackendNotFound");
    assert!(
        resolved["message"]
            .as_str()
            .is_some_and(|m| m.contains("ExternalAuth")),
        "{resolved}"
    );
}
