//! Every HTTPRoute filter, observed from the client and from the backend.

use std::time::{Duration, Instant};

use gantry_testkit::echo::Echo;
use gantry_testkit::harness::{Proxy, get, get_host, serve_routes};

const ROUTES: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: filters, namespace: default}
spec:
  parentRefs: [{name: gw}]
  hostnames: ["filters.example.com"]
  rules:
    - matches: [{path: {type: PathPrefix, value: /headers}}]
      filters:
        - type: RequestHeaderModifier
          requestHeaderModifier:
            set: [{name: X-Set, value: set-value}]
            add: [{name: X-Add, value: added}]
            remove: [X-Remove]
        - type: ResponseHeaderModifier
          responseHeaderModifier:
            set: [{name: X-Resp-Set, value: resp}]
            add: [{name: X-Resp-Add, value: one}]
            remove: [Content-Type]
      backendRefs: [{name: main, port: 8080}]
    - matches: [{path: {type: PathPrefix, value: /redirect-full}}]
      filters:
        - type: RequestRedirect
          requestRedirect:
            scheme: https
            hostname: secure.example.com
            path: {type: ReplaceFullPath, replaceFullPath: /landing}
            statusCode: 301
    - matches: [{path: {type: PathPrefix, value: /redirect-prefix}}]
      filters:
        - type: RequestRedirect
          requestRedirect:
            port: 8443
            path: {type: ReplacePrefixMatch, replacePrefixMatch: /moved}
            statusCode: 308
    - matches: [{path: {type: PathPrefix, value: /redirect-default}}]
      filters:
        - type: RequestRedirect
          requestRedirect: {hostname: other.example.com}
    - matches: [{path: {type: PathPrefix, value: /rewrite-prefix}}]
      filters:
        - type: URLRewrite
          urlRewrite:
            hostname: rewritten.internal
            path: {type: ReplacePrefixMatch, replacePrefixMatch: /new}
      backendRefs: [{name: main, port: 8080}]
    - matches: [{path: {type: PathPrefix, value: /rewrite-root}}]
      filters:
        - type: URLRewrite
          urlRewrite:
            path: {type: ReplacePrefixMatch, replacePrefixMatch: /}
      backendRefs: [{name: main, port: 8080}]
    - matches: [{path: {type: PathPrefix, value: /rewrite-full}}]
      filters:
        - type: URLRewrite
          urlRewrite:
            path: {type: ReplaceFullPath, replaceFullPath: /fixed}
      backendRefs: [{name: main, port: 8080}]
    - matches: [{path: {type: PathPrefix, value: /mirror}}]
      filters:
        - type: RequestMirror
          requestMirror:
            backendRef: {name: mirror, port: 8080}
      backendRefs: [{name: main, port: 8080}]
    - matches: [{path: {type: PathPrefix, value: /per-backend}}]
      backendRefs:
        - name: main
          port: 8080
          filters:
            - type: RequestHeaderModifier
              requestHeaderModifier:
                set: [{name: X-Backend, value: main}]
"#;

async fn setup() -> (Proxy, String, String) {
    let served = serve_routes(&[("default", "main"), ("default", "mirror")], ROUTES).await;
    let mirror = format!("http://{}", served.backends[1]);
    (served.proxy, served.base, mirror)
}

const HOST: &str = "filters.example.com";

#[tokio::test]
async fn header_modifiers_edit_request_and_response() {
    let (_proxy, base, _) = setup().await;
    let reply = get_host(
        &format!("{base}/headers"),
        HOST,
        &[
            ("x-set", "original"),
            ("x-add", "first"),
            ("x-remove", "gone"),
        ],
    )
    .await
    .expect("request");
    assert_eq!(reply.status, 200);
    let echo = reply.echo();
    assert_eq!(
        echo.headers.get("x-set"),
        Some(&vec!["set-value".to_owned()])
    );
    assert_eq!(
        echo.headers.get("x-add"),
        Some(&vec!["first".to_owned(), "added".to_owned()])
    );
    assert!(!echo.headers.contains_key("x-remove"), "{echo:?}");
    assert_eq!(reply.header("x-resp-set"), Some("resp"));
    assert_eq!(reply.header("x-resp-add"), Some("one"));
    assert_eq!(reply.header("content-type"), None);
}

#[tokio::test]
async fn redirects_build_the_location_the_spec_describes() {
    let (_proxy, base, _) = setup().await;
    let port = base.rsplit(':').next().unwrap_or_default().to_owned();
    let cases = [
        (
            "/redirect-full/x?q=1",
            301,
            "https://secure.example.com/landing?q=1".to_owned(),
        ),
        (
            "/redirect-prefix/rest",
            308,
            "http://filters.example.com:8443/moved/rest".to_owned(),
        ),
        (
            "/redirect-default/a",
            302,
            format!("http://other.example.com:{port}/redirect-default/a"),
        ),
    ];
    for (path, code, location) in cases {
        let reply = get_host(&format!("{base}{path}"), HOST, &[])
            .await
            .expect("request");
        assert_eq!(reply.status.as_u16(), code, "{path}");
        assert_eq!(reply.header("location"), Some(location.as_str()), "{path}");
        assert!(reply.header("x-request-id").is_some(), "{path}");
    }
}

#[tokio::test]
async fn url_rewrites_change_what_the_backend_sees() {
    let (_proxy, base, _) = setup().await;
    let echo = |path: &'static str| {
        let base = base.clone();
        async move {
            get_host(&format!("{base}{path}"), HOST, &[])
                .await
                .expect("request")
                .echo()
        }
    };
    let e = echo("/rewrite-prefix/tail?x=1").await;
    assert_eq!(e.path, "/new/tail?x=1");
    assert_eq!(e.host, "rewritten.internal");
    assert_eq!(echo("/rewrite-prefix").await.path, "/new");
    assert_eq!(echo("/rewrite-root/tail").await.path, "/tail");
    assert_eq!(echo("/rewrite-root").await.path, "/");
    assert_eq!(echo("/rewrite-full/any/thing").await.path, "/fixed");
    // Without a hostname rewrite the original Host is preserved.
    assert_eq!(echo("/rewrite-full").await.host, HOST);
}

#[tokio::test]
async fn mirrored_requests_arrive_at_the_mirror() {
    let (_proxy, base, mirror) = setup().await;
    let reply = get_host(
        &format!("{base}/mirror/copy-me"),
        HOST,
        &[("x-trace", "m1")],
    )
    .await
    .expect("request");
    assert_eq!(reply.echo().name, "main");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let seen: Vec<Echo> = serde_json::from_slice(
            &get(&format!("{mirror}/_echo/seen"))
                .await
                .expect("seen")
                .body,
        )
        .expect("seen JSON");
        if let Some(copy) = seen.iter().find(|e| e.path == "/mirror/copy-me") {
            assert_eq!(copy.header("x-trace"), Some("m1"));
            break;
        }
        assert!(Instant::now() < deadline, "mirror never saw the request");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn backend_filters_apply_to_their_backend() {
    let (_proxy, base, _) = setup().await;
    let echo = get_host(&format!("{base}/per-backend"), HOST, &[])
        .await
        .expect("request")
        .echo();
    assert_eq!(echo.header("x-backend"), Some("main"));
}
