//! The CORS filter (GEP-1767) as a browser meets it: preflights answered by the proxy, actual
//! requests reaching the backend with the CORS headers added, for allowed and refused origins.

use gantry_testkit::harness::{Reply, Served, get_host, send, serve_routes};
use http::Method;

const ROUTES: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: cors, namespace: default}
spec:
  parentRefs: [{name: gw}]
  hostnames: ["cors.example.com"]
  rules:
    - matches: [{path: {type: PathPrefix, value: /api}}]
      filters:
        - type: CORS
          cors:
            allowOrigins: ["https://www.foo.com", "https://*.bar.com", "http://localhost:3000"]
            allowCredentials: true
            allowMethods: [GET, PUT, OPTIONS]
            allowHeaders: [x-header-1, x-header-2]
            exposeHeaders: [x-header-3]
            maxAge: 3600
      backendRefs: [{name: web, port: 8080}]
    - matches: [{path: {type: PathPrefix, value: /public}}]
      filters:
        - type: CORS
          cors:
            allowOrigins: ["*"]
            allowMethods: ["*"]
            allowHeaders: ["*"]
      backendRefs: [{name: web, port: 8080}]
    - matches: [{path: {type: PathPrefix, value: /credentialed-any}}]
      filters:
        - type: CORS
          cors:
            allowOrigins: ["*"]
            allowCredentials: true
            allowMethods: ["*"]
      backendRefs: [{name: web, port: 8080}]
"#;

async fn served() -> Served {
    serve_routes(&[("default", "web")], ROUTES).await
}

async fn request(base: &str, method: Method, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut all = vec![("host", "cors.example.com")];
    all.extend_from_slice(headers);
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    send(
        &client,
        method,
        &format!("{base}{path}"),
        &all,
        bytes::Bytes::new(),
    )
    .await
    .expect("request")
}

async fn preflight(base: &str, path: &str, origin: &str, extra: &[(&str, &str)]) -> Reply {
    let mut headers = vec![("origin", origin), ("access-control-request-method", "PUT")];
    headers.extend_from_slice(extra);
    request(base, Method::OPTIONS, path, &headers).await
}

#[tokio::test]
async fn a_preflight_from_an_allowed_origin_is_answered_by_the_proxy() {
    let s = served().await;
    for origin in [
        "https://www.foo.com",
        "https://app.bar.com",
        "https://a.b.bar.com",
    ] {
        let reply = preflight(
            &s.base,
            "/api/items",
            origin,
            &[("access-control-request-headers", "x-header-1")],
        )
        .await;
        assert_eq!(reply.status, 200, "{origin}: {}", reply.text());
        // The proxy answered: the echo backend would have sent a body.
        assert!(reply.body.is_empty(), "{origin}: {}", reply.text());
        assert_eq!(reply.header("access-control-allow-origin"), Some(origin));
        assert_eq!(
            reply.header("access-control-allow-credentials"),
            Some("true")
        );
        assert_eq!(
            reply.header("access-control-allow-methods"),
            Some("GET, PUT, OPTIONS")
        );
        assert_eq!(
            reply.header("access-control-allow-headers"),
            Some("x-header-1, x-header-2")
        );
        assert_eq!(
            reply.header("access-control-expose-headers"),
            Some("x-header-3")
        );
        assert_eq!(reply.header("access-control-max-age"), Some("3600"));
        assert_eq!(reply.header("vary"), Some("origin"));
        assert!(reply.header("x-request-id").is_some());
    }
}

#[tokio::test]
async fn a_preflight_from_a_refused_origin_gets_no_cors_headers() {
    let s = served().await;
    for origin in [
        "https://evil.com",
        "https://bar.com",
        "http://www.foo.com",
        "https://www.foo.com:8443",
        "null",
    ] {
        let reply = preflight(&s.base, "/api/items", origin, &[]).await;
        assert_eq!(reply.status, 200, "{origin}");
        assert!(reply.body.is_empty(), "{origin}");
        for name in [
            "access-control-allow-origin",
            "access-control-allow-credentials",
            "access-control-allow-methods",
            "access-control-allow-headers",
            "access-control-max-age",
        ] {
            assert_eq!(reply.header(name), None, "{origin}: {name}");
        }
        assert_eq!(reply.header("vary"), Some("origin"));
    }
}

#[tokio::test]
async fn actual_requests_reach_the_backend_and_get_headers_only_for_allowed_origins() {
    let s = served().await;
    let allowed = request(
        &s.base,
        Method::PUT,
        "/api/items",
        &[("origin", "https://www.foo.com")],
    )
    .await;
    assert_eq!(allowed.status, 200);
    let echo = allowed.echo();
    assert_eq!(echo.method, "PUT");
    assert_eq!(echo.header("origin"), Some("https://www.foo.com"));
    assert_eq!(
        allowed.header("access-control-allow-origin"),
        Some("https://www.foo.com")
    );
    assert_eq!(
        allowed.header("access-control-allow-credentials"),
        Some("true")
    );
    assert_eq!(
        allowed.header("access-control-expose-headers"),
        Some("x-header-3")
    );
    assert_eq!(
        allowed.header("access-control-max-age"),
        None,
        "preflight only"
    );
    assert_eq!(allowed.header("vary"), Some("origin"));

    let wildcard = request(
        &s.base,
        Method::GET,
        "/api/items",
        &[("origin", "https://deep.sub.bar.com")],
    )
    .await;
    assert_eq!(
        wildcard.header("access-control-allow-origin"),
        Some("https://deep.sub.bar.com")
    );

    let refused = request(
        &s.base,
        Method::GET,
        "/api/items",
        &[("origin", "https://evil.com")],
    )
    .await;
    assert_eq!(refused.status, 200, "the backend still answers");
    assert_eq!(refused.echo().path, "/api/items");
    assert_eq!(refused.header("access-control-allow-origin"), None);
    assert_eq!(refused.header("access-control-allow-credentials"), None);

    // No Origin: not a CORS request; OPTIONS without Access-Control-Request-Method goes to
    // the backend like any request.
    let plain = get_host(&format!("{}/api/items", s.base), "cors.example.com", &[])
        .await
        .expect("request");
    assert_eq!(plain.header("access-control-allow-origin"), None);
    let options = request(
        &s.base,
        Method::OPTIONS,
        "/api/items",
        &[("origin", "https://www.foo.com")],
    )
    .await;
    assert_eq!(options.echo().method, "OPTIONS");
    assert_eq!(
        options.header("access-control-allow-origin"),
        Some("https://www.foo.com")
    );
}

#[tokio::test]
async fn the_any_origin_wildcard_answers_star_unless_credentials_are_allowed() {
    let s = served().await;
    let reply = preflight(
        &s.base,
        "/public",
        "https://anyone.example:12345",
        &[("access-control-request-headers", "x-custom, content-type")],
    )
    .await;
    assert_eq!(reply.header("access-control-allow-origin"), Some("*"));
    assert_eq!(reply.header("access-control-allow-methods"), Some("PUT"));
    assert_eq!(
        reply.header("access-control-allow-headers"),
        Some("x-custom, content-type")
    );
    assert_eq!(reply.header("access-control-allow-credentials"), None);
    assert_eq!(
        reply.header("access-control-max-age"),
        Some("5"),
        "the API default"
    );
    let actual = request(
        &s.base,
        Method::GET,
        "/public",
        &[("origin", "https://anyone.example")],
    )
    .await;
    assert_eq!(actual.header("access-control-allow-origin"), Some("*"));

    // With credentials `*` may not be sent: the origin and the method are echoed.
    let reply = preflight(&s.base, "/credentialed-any", "https://anyone.example", &[]).await;
    assert_eq!(
        reply.header("access-control-allow-origin"),
        Some("https://anyone.example")
    );
    assert_eq!(
        reply.header("access-control-allow-credentials"),
        Some("true")
    );
    assert_eq!(reply.header("access-control-allow-methods"), Some("PUT"));
    let actual = request(
        &s.base,
        Method::GET,
        "/credentialed-any",
        &[("origin", "https://anyone.example")],
    )
    .await;
    assert_eq!(
        actual.header("access-control-allow-origin"),
        Some("https://anyone.example")
    );
    assert_eq!(
        actual.header("access-control-allow-credentials"),
        Some("true")
    );
}
