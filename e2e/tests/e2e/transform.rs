//! HTTPTransform and HTTPComposition ExtensionRef filters, observed from the client and from
//! the echo backends.

use gantry_testkit::harness::{Proxy, get_host, post, serve_routes};
use serde_json::{Value, json};

const HOST: &str = "transform.example.com";

const ROUTES: &str = r#"
apiVersion: gantry.dev/v1alpha1
kind: HTTPTransform
metadata: {name: headers, namespace: default}
spec:
  request:
    headers:
      set:
        - {name: X-Client, value: "${client_ip}"}
        - {name: X-Who, value: "${route} ${method} ${host}${path} q=${query.q} first=${header.x-first} id=${request_id}"}
      add:
        - {name: X-Add, value: "cost $$5"}
      remove: [X-Secret]
  response:
    headers:
      set: [{name: X-Served-For, value: "${client_ip} ${query.q}"}]
      remove: [Content-Type]
---
apiVersion: gantry.dev/v1alpha1
kind: HTTPTransform
metadata: {name: regex, namespace: default}
spec:
  request:
    pathRegex: {pattern: "^/api/(v[0-9]+)/(.*)$", substitution: "/\\2/\\1"}
---
apiVersion: gantry.dev/v1alpha1
kind: HTTPTransform
metadata: {name: bodies, namespace: default}
spec:
  request:
    body:
      rename: [{from: /user_id, to: /user/id}]
      remove: [/password]
      set:
        - {pointer: /meta/route, template: "${route}"}
        - {pointer: /flags, value: {beta: true}}
  response:
    body:
      rename: [{from: /path, to: /upstream_path}]
      remove: [/headers]
      set: [{pointer: /gateway, value: gantry}]
---
apiVersion: gantry.dev/v1alpha1
kind: HTTPTransform
metadata: {name: small, namespace: default}
spec:
  request:
    body: {maxBytes: 64, remove: [/password]}
  response:
    body: {maxBytes: 16, remove: [/headers]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: transform, namespace: default}
spec:
  parentRefs: [{name: gw}]
  hostnames: ["transform.example.com"]
  rules:
    - matches: [{path: {type: PathPrefix, value: /headers}}]
      filters:
        - type: RequestHeaderModifier
          requestHeaderModifier:
            set: [{name: X-First, value: from-standard-filter}]
        - type: ExtensionRef
          extensionRef: {group: gantry.dev, kind: HTTPTransform, name: headers}
        - type: ResponseHeaderModifier
          responseHeaderModifier:
            set: [{name: Content-Type, value: text/after-transform}]
      backendRefs: [{name: a, port: 8080}]
    - matches: [{path: {type: PathPrefix, value: /api}}]
      filters:
        - type: ExtensionRef
          extensionRef: {group: gantry.dev, kind: HTTPTransform, name: regex}
      backendRefs: [{name: a, port: 8080}]
    - matches: [{path: {type: PathPrefix, value: /bodies}}]
      filters:
        - type: ExtensionRef
          extensionRef: {group: gantry.dev, kind: HTTPTransform, name: bodies}
      backendRefs: [{name: a, port: 8080}]
    - matches: [{path: {type: PathPrefix, value: /small}}]
      filters:
        - type: ExtensionRef
          extensionRef: {group: gantry.dev, kind: HTTPTransform, name: small}
      backendRefs: [{name: a, port: 8080}]
    - matches: [{path: {type: PathPrefix, value: /missing}}]
      filters:
        - type: ExtensionRef
          extensionRef: {group: gantry.dev, kind: HTTPTransform, name: not-there}
      backendRefs: [{name: a, port: 8080}]
---
apiVersion: gantry.dev/v1alpha1
kind: HTTPComposition
metadata: {name: whole, namespace: default}
spec:
  parts:
    - {name: ok, backendRef: {name: a, port: 8080}, path: "/ok/${query.id}"}
    - {name: slow, backendRef: {name: b, port: 8080}, path: "/slow?echo-delay-ms=30000", timeout: 300ms}
    - {name: fail, backendRef: {name: c, port: 8080}, path: "/fail?echo-status=500"}
---
apiVersion: gantry.dev/v1alpha1
kind: HTTPComposition
metadata: {name: omit, namespace: default}
spec:
  onPartFailure: Omit
  parts:
    - {name: ok, backendRef: {name: a, port: 8080}, path: "/ok/${query.id}", method: POST}
    - {name: slow, backendRef: {name: b, port: 8080}, path: "/slow?echo-delay-ms=30000", timeout: 300ms}
    - {name: fail, backendRef: {name: c, port: 8080}, path: "/fail?echo-status=500"}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: compose, namespace: default}
spec:
  parentRefs: [{name: gw}]
  hostnames: ["compose.example.com"]
  rules:
    - matches: [{path: {type: Exact, value: /whole}}]
      filters:
        - type: ExtensionRef
          extensionRef: {group: gantry.dev, kind: HTTPComposition, name: whole}
    - matches: [{path: {type: Exact, value: /omit}}]
      filters:
        - type: ResponseHeaderModifier
          responseHeaderModifier:
            set: [{name: X-Composed, value: "yes"}]
        - type: ExtensionRef
          extensionRef: {group: gantry.dev, kind: HTTPComposition, name: omit}
"#;

async fn setup() -> (Proxy, String) {
    let served = serve_routes(
        &[("default", "a"), ("default", "b"), ("default", "c")],
        ROUTES,
    )
    .await;
    (served.proxy, served.base)
}

fn json_of(body: &[u8]) -> Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(body)))
}

#[tokio::test]
async fn header_templates_set_add_and_remove_in_filter_order() {
    let (_proxy, base) = setup().await;
    let reply = get_host(
        &format!("{base}/headers/x?q=42&z=1"),
        HOST,
        &[
            ("x-request-id", "req-7"),
            ("x-secret", "s"),
            ("x-add", "first"),
        ],
    )
    .await
    .expect("request");
    assert_eq!(reply.status, 200, "{}", reply.text());
    let echo = reply.echo();
    assert_eq!(echo.header("x-client"), Some("127.0.0.1"));
    // The RequestHeaderModifier before it ran first: the template reads its header.
    assert_eq!(
        echo.header("x-who"),
        Some(
            "default/transform GET transform.example.com/headers/x q=42 first=from-standard-filter id=req-7"
        )
    );
    assert_eq!(
        echo.headers.get("x-add"),
        Some(&vec!["first".to_owned(), "cost $5".to_owned()])
    );
    assert!(!echo.headers.contains_key("x-secret"), "{echo:?}");
    assert_eq!(reply.header("x-served-for"), Some("127.0.0.1 42"));
    // The transform removed Content-Type; the ResponseHeaderModifier after it set it again.
    assert_eq!(reply.header("content-type"), Some("text/after-transform"));
}

#[tokio::test]
async fn regex_path_rewrite_keeps_the_query() {
    let (_proxy, base) = setup().await;
    let reply = get_host(&format!("{base}/api/v2/users/7?full=1"), HOST, &[])
        .await
        .expect("request");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.echo().path, "/users/7/v2?full=1");
    // No match: the path is unchanged.
    let reply = get_host(&format!("{base}/api/latest"), HOST, &[])
        .await
        .expect("request");
    assert_eq!(reply.echo().path, "/api/latest");
}

#[tokio::test]
async fn json_bodies_are_edited_both_ways_and_content_length_follows() {
    let (_proxy, base) = setup().await;
    let sent = r#"{"user_id": 7, "password": "hunter2", "keep": [1, 2]}"#;
    let reply = post(
        &format!("{base}/bodies"),
        &[("host", HOST), ("content-type", "application/json")],
        sent,
    )
    .await
    .expect("request");
    assert_eq!(reply.status, 200, "{}", reply.text());
    // The response: the echo's `path` renamed, its `headers` removed, a field set.
    let answer = json_of(&reply.body);
    assert_eq!(answer["upstream_path"], "/bodies");
    assert_eq!(answer["gateway"], "gantry");
    assert!(answer.get("path").is_none() && answer.get("headers").is_none());
    assert_eq!(
        reply.header("content-length"),
        Some(reply.body.len().to_string().as_str())
    );
    // The request the backend saw.
    let received = json_of(answer["body"].as_str().expect("body").as_bytes());
    assert_eq!(
        received,
        json!({"user": {"id": 7}, "keep": [1, 2], "meta": {"route": "default/transform"}, "flags": {"beta": true}})
    );

    // A request body that is not JSON (by its Content-Type) reaches the backend unchanged;
    // the JSON answer is still edited.
    let reply = post(
        &format!("{base}/bodies"),
        &[("host", HOST), ("content-type", "text/plain")],
        r#"{"password": "visible"}"#,
    )
    .await
    .expect("request");
    assert_eq!(reply.status, 200);
    let answer = json_of(&reply.body);
    assert_eq!(answer["body"], r#"{"password": "visible"}"#);
    assert_eq!(answer["gateway"], "gantry");

    // JSON that does not parse is the client's mistake.
    let reply = post(
        &format!("{base}/bodies"),
        &[("host", HOST), ("content-type", "application/json")],
        "{not json",
    )
    .await
    .expect("request");
    assert_eq!(reply.status, 400);
}

#[tokio::test]
async fn bodies_over_the_limit_are_refused_or_passed_unchanged() {
    let (proxy, base) = setup().await;
    let big = format!(r#"{{"password": "p", "pad": "{}"}}"#, "x".repeat(100));
    let reply = post(
        &format!("{base}/small"),
        &[("host", HOST), ("content-type", "application/json")],
        &big,
    )
    .await
    .expect("request");
    assert_eq!(reply.status, 413, "{}", reply.text());

    // A small request passes the 64-byte limit; its answer (the echo, far above 16 bytes)
    // comes back unchanged, logged and counted.
    let reply = post(
        &format!("{base}/small"),
        &[("host", HOST), ("content-type", "application/json")],
        r#"{"password": "p", "a": 1}"#,
    )
    .await
    .expect("request");
    assert_eq!(reply.status, 200, "{}", reply.text());
    let echo = reply.echo();
    assert_eq!(echo.body, r#"{"a":1}"#);
    assert!(!echo.headers.is_empty(), "the answer was not edited");
    proxy
        .wait_metric(
            r#"gantry_response_body_transforms_skipped_total{reason="over_limit"}"#,
            1.0,
        )
        .await;
}

#[tokio::test]
async fn a_missing_transform_answers_500() {
    let (_proxy, base) = setup().await;
    let reply = get_host(&format!("{base}/missing"), HOST, &[])
        .await
        .expect("request");
    assert_eq!(reply.status, 500);
}

#[tokio::test]
async fn composition_fails_whole_naming_the_first_failed_part() {
    let (_proxy, base) = setup().await;
    let reply = get_host(&format!("{base}/whole?id=9"), "compose.example.com", &[])
        .await
        .expect("request");
    assert_eq!(reply.status, 502, "{}", reply.text());
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let error = json_of(&reply.body);
    assert_eq!(error["part"], "slow", "{error}");
    assert!(
        error["reason"].as_str().unwrap_or("").contains("within"),
        "{error}"
    );
}

#[tokio::test]
async fn composition_omits_failed_parts_and_names_them() {
    let (_proxy, base) = setup().await;
    let reply = get_host(
        &format!("{base}/omit?id=9"),
        "compose.example.com",
        &[("x-request-id", "compose-1")],
    )
    .await
    .expect("request");
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!(
        reply.header("x-gantry-composition-omitted"),
        Some("slow,fail")
    );
    assert_eq!(reply.header("x-composed"), Some("yes"));
    let answer = json_of(&reply.body);
    let parts = answer.as_object().expect("an object");
    assert_eq!(parts.keys().collect::<Vec<_>>(), ["ok"]);
    let ok = &answer["ok"];
    assert_eq!(ok["name"], "a");
    assert_eq!(ok["method"], "POST");
    assert_eq!(ok["path"], "/ok/9");
    assert_eq!(ok["headers"]["x-request-id"][0], "compose-1");
}
