//! Request matching: every match type, precedence and hostnames, as the client sees it.

use gantry_testkit::harness::{Proxy, get_host, post, serve_routes};

const ROUTES: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: matches, namespace: default}
spec:
  parentRefs: [{name: gw}]
  hostnames: ["match.example.com"]
  rules:
    - matches: [{path: {type: Exact, value: /exact}}]
      backendRefs: [{name: exact, port: 8080}]
    - matches: [{path: {type: PathPrefix, value: /prefix}}]
      backendRefs: [{name: prefix, port: 8080}]
    - matches: [{path: {type: PathPrefix, value: /prefix/longer}}]
      backendRefs: [{name: longer, port: 8080}]
    - matches: [{path: {type: RegularExpression, value: "/re/[0-9]+"}}]
      backendRefs: [{name: regex, port: 8080}]
    - matches:
        - path: {type: PathPrefix, value: /h}
          headers: [{name: X-Version, value: "2"}]
      backendRefs: [{name: header, port: 8080}]
    - matches:
        - path: {type: PathPrefix, value: /h}
          queryParams: [{name: v, value: "3"}]
      backendRefs: [{name: query, port: 8080}]
    - matches:
        - path: {type: PathPrefix, value: /h}
          method: POST
      backendRefs: [{name: method, port: 8080}]
    - matches:
        - path: {type: PathPrefix, value: /h}
          headers: [{name: x-env, type: RegularExpression, value: "^canary-[a-z]+$"}]
      backendRefs: [{name: header-regex, port: 8080}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: wildcard, namespace: default}
spec:
  parentRefs: [{name: gw}]
  hostnames: ["*.example.com"]
  rules:
    - backendRefs: [{name: wildcard, port: 8080}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: any-host, namespace: default}
spec:
  parentRefs: [{name: gw}]
  rules:
    - matches: [{path: {type: PathPrefix, value: /}}]
      backendRefs: [{name: catchall, port: 8080}]
"#;

async fn setup() -> (Proxy, String) {
    let backends = [
        "exact",
        "prefix",
        "longer",
        "regex",
        "header",
        "query",
        "method",
        "header-regex",
        "wildcard",
        "catchall",
    ]
    .map(|name| ("default", name));
    let served = serve_routes(&backends, ROUTES).await;
    (served.proxy, served.base)
}

async fn backend_for(base: &str, host: &str, path: &str, headers: &[(&str, &str)]) -> String {
    let reply = get_host(&format!("{base}{path}"), host, headers)
        .await
        .expect("request through the proxy");
    if reply.status != 200 {
        return format!("HTTP {}", reply.status.as_u16());
    }
    reply.echo().name
}

#[tokio::test]
async fn every_match_type_picks_its_backend() {
    let (_proxy, base) = setup().await;
    let host = "match.example.com";
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        ("/exact", &[], "exact"),
        // Exact is exact. When no rule of the most specific hostname matches, rules of less
        // specific hostnames covering it come next (hostname precedence orders, it does not
        // exclude): here the *.example.com route.
        ("/exact/more", &[], "wildcard"),
        ("/prefix", &[], "prefix"),
        ("/prefix/", &[], "prefix"),
        ("/prefix/a/b", &[], "prefix"),
        // The segment rule: /prefix does not match /prefixes.
        ("/prefixes", &[], "wildcard"),
        // The longest prefix wins across rules.
        ("/prefix/longer/x", &[], "longer"),
        ("/re/123", &[], "regex"),
        ("/re/abc", &[], "wildcard"),
        ("/h", &[("x-version", "2")], "header"),
        ("/h?v=3", &[], "query"),
        ("/h?v=4", &[], "wildcard"),
        ("/h", &[("x-env", "canary-blue")], "header-regex"),
        ("/h", &[("x-env", "canary-1")], "wildcard"),
    ];
    for (path, headers, want) in cases {
        let got = backend_for(&base, host, path, headers).await;
        assert_eq!(&got, want, "GET {path} {headers:?}");
    }
}

#[tokio::test]
async fn method_match_and_header_names_are_case_insensitive() {
    let (_proxy, base) = setup().await;
    let reply = post(
        &format!("{base}/h"),
        &[("host", "match.example.com")],
        "payload",
    )
    .await
    .expect("POST");
    assert_eq!(reply.echo().name, "method");
    assert_eq!(reply.echo().body, "payload");
    assert_eq!(
        backend_for(&base, "match.example.com", "/h", &[("X-VERSION", "2")]).await,
        "header"
    );
}

#[tokio::test]
async fn most_specific_hostname_wins() {
    let (_proxy, base) = setup().await;
    // Exact hostname beats the wildcard, the wildcard beats the route without hostnames.
    assert_eq!(
        backend_for(&base, "match.example.com", "/exact", &[]).await,
        "exact"
    );
    assert_eq!(
        backend_for(&base, "other.example.com", "/exact", &[]).await,
        "wildcard"
    );
    assert_eq!(
        backend_for(&base, "a.b.example.com", "/", &[]).await,
        "wildcard"
    );
    // A wildcard needs at least one label in front of the suffix.
    assert_eq!(
        backend_for(&base, "example.com", "/", &[]).await,
        "catchall"
    );
    assert_eq!(
        backend_for(&base, "unrelated.test", "/", &[]).await,
        "catchall"
    );
    // Host matching ignores the port and case.
    assert_eq!(
        backend_for(&base, "MATCH.example.com:1234", "/exact", &[]).await,
        "exact"
    );
}
