//! Backends as the client sees them: weights, invalid refs, error codes, protocols, headers.

use std::collections::HashMap;

use futures::{SinkExt, StreamExt};
use gantry_testkit::harness::{
    Proxy, echo_backends, free_port, gateway_yaml, get_host, h2_get, service_yaml,
    service_yaml_with,
};
use tokio_tungstenite::tungstenite::Message;

const ROUTES: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: backends, namespace: default}
spec:
  parentRefs: [{name: gw}]
  hostnames: ["backends.example.com"]
  rules:
    - matches: [{path: {type: PathPrefix, value: /split}}]
      backendRefs:
        - {name: v1, port: 8080, weight: 80}
        - {name: v2, port: 8080, weight: 20}
    - matches: [{path: {type: PathPrefix, value: /half-invalid}}]
      backendRefs:
        - {name: v1, port: 8080, weight: 1}
        - {name: does-not-exist, port: 8080, weight: 1}
    - matches: [{path: {type: PathPrefix, value: /no-endpoints}}]
      backendRefs: [{name: empty, port: 8080}]
    - matches: [{path: {type: PathPrefix, value: /refused}}]
      backendRefs: [{name: closed, port: 8080}]
    - matches: [{path: {type: PathPrefix, value: /slow}}]
      timeouts: {request: 300ms}
      backendRefs: [{name: v1, port: 8080}]
    - matches: [{path: {type: PathPrefix, value: /slow-backend}}]
      timeouts: {request: 5s, backendRequest: 200ms}
      backendRefs: [{name: v1, port: 8080}]
    - matches: [{path: {type: PathPrefix, value: /h2c}}]
      backendRefs: [{name: grpcish, port: 8080}]
    - matches: [{path: {type: PathPrefix, value: /rewritten-h2c}}]
      filters:
        - type: URLRewrite
          urlRewrite: {hostname: rewritten.internal}
      backendRefs: [{name: grpcish, port: 8080}]
    - matches: [{path: {type: PathPrefix, value: /ws}}]
      backendRefs: [{name: v1, port: 8080}]
    - matches: [{path: {type: PathPrefix, value: /}}]
      backendRefs: [{name: v1, port: 8080}]
"#;

struct Env {
    _proxy: Proxy,
    base: String,
    port: u16,
}

async fn setup() -> Env {
    let (services, _) = echo_backends(&[("default", "v1"), ("default", "v2")]).await;
    // An h2c backend: the echo server speaks HTTP/2 with prior knowledge too, and the Service
    // port's appProtocol tells the proxy to use it.
    let (_, h2) = echo_backends(&[("default", "grpcish")]).await;
    let closed_port = free_port();
    let extra = [
        service_yaml("default", "empty", 8080, &[]),
        service_yaml(
            "default",
            "closed",
            8080,
            &[format!("127.0.0.1:{closed_port}").parse().expect("addr")],
        ),
        service_yaml_with("default", "grpcish", 8080, &h2, Some("kubernetes.io/h2c")),
    ]
    .join("---\n");
    let port = free_port();
    let proxy = Proxy::start_ready(
        &[
            ("gateway.yaml", &gateway_yaml("gw", port)),
            ("services.yaml", &services),
            ("extra.yaml", &extra),
            ("routes.yaml", ROUTES),
        ],
        &[],
    )
    .await;
    Env {
        _proxy: proxy,
        base: format!("http://127.0.0.1:{port}"),
        port,
    }
}

const HOST: &str = "backends.example.com";

#[tokio::test]
async fn weights_split_traffic_within_tolerance() {
    let env = setup().await;
    let mut counts: HashMap<String, u32> = HashMap::new();
    let n = 1000;
    for _ in 0..n {
        let reply = get_host(&format!("{}/split", env.base), HOST, &[])
            .await
            .expect("request");
        *counts.entry(reply.echo().name).or_default() += 1;
    }
    let v1 = f64::from(counts.get("v1").copied().unwrap_or(0)) / f64::from(n);
    // 80/20 split; with n=1000 the standard deviation is about 1.3 %, so ±6 % is > 4 sigma.
    assert!(
        (v1 - 0.8).abs() < 0.06,
        "v1 share {v1:.3}, counts {counts:?}"
    );
}

#[tokio::test]
async fn invalid_backend_gets_500_in_proportion_to_its_weight() {
    let env = setup().await;
    let (mut ok, mut err) = (0u32, 0u32);
    let n = 600;
    for _ in 0..n {
        let reply = get_host(&format!("{}/half-invalid", env.base), HOST, &[])
            .await
            .expect("request");
        match reply.status.as_u16() {
            200 => ok += 1,
            500 => {
                assert!(reply.header("x-request-id").is_some());
                err += 1;
            }
            other => panic!("unexpected {other}"),
        }
    }
    let share = f64::from(err) / f64::from(n);
    assert!(
        (share - 0.5).abs() < 0.08,
        "500 share {share:.3} ({ok} ok, {err} errors)"
    );
}

#[tokio::test]
async fn proxy_errors_map_to_the_documented_codes() {
    let env = setup().await;
    let cases = [
        ("/no-endpoints", HOST, 503, &[][..]),
        ("/refused", HOST, 502, &[][..]),
        ("/slow", HOST, 504, &[("x-echo-delay-ms", "2000")][..]),
        (
            "/slow-backend",
            HOST,
            504,
            &[("x-echo-delay-ms", "2000")][..],
        ),
        ("/", "unknown.example.org", 404, &[][..]),
    ];
    for (path, host, code, headers) in cases {
        let reply = get_host(&format!("{}{path}", env.base), host, headers)
            .await
            .expect("request");
        assert_eq!(reply.status.as_u16(), code, "{path}: {}", reply.text());
        assert!(
            reply.header("x-request-id").is_some(),
            "{path} has no x-request-id"
        );
    }
    // A fast request under the same timeout passes.
    let reply = get_host(
        &format!("{}/slow", env.base),
        HOST,
        &[("x-echo-delay-ms", "10")],
    )
    .await
    .expect("request");
    assert_eq!(reply.status, 200);
}

/// An HTTP/1.1 connection's requests share one request timer in turn: each request gets its
/// own deadline, earlier or later than the one before, on the same keep-alive connection.
#[tokio::test]
async fn every_request_of_a_keep_alive_connection_gets_its_own_request_timeout() {
    use http_body_util::{BodyExt, Empty};
    let env = setup().await;
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", env.port))
        .await
        .expect("connect");
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("handshake");
    let driven = tokio::spawn(connection);
    // `/` has the default timeout (long), `/slow` 300 ms; the echo answers after the delay.
    let steps = [
        ("/", "0", 200),
        ("/slow", "2000", 504),
        ("/slow", "10", 200),
        ("/", "0", 200),
        ("/slow", "2000", 504),
    ];
    for (path, delay, status) in steps {
        let request = hyper::Request::get(path)
            .header("host", HOST)
            .header("x-echo-delay-ms", delay)
            .body(Empty::<bytes::Bytes>::new())
            .expect("request");
        sender.ready().await.expect("the connection stays open");
        let response = sender.send_request(request).await.expect("response");
        assert_eq!(
            response.status().as_u16(),
            status,
            "{path} after {delay} ms"
        );
        response.into_body().collect().await.expect("body");
    }
    assert!(
        !driven.is_finished(),
        "one connection carried every request"
    );
}

/// HTTP/2 requests run side by side on one connection, each under a request timer of its own:
/// a slow request times out while the others on the connection are answered.
#[tokio::test]
async fn concurrent_http2_requests_each_get_their_own_request_timeout() {
    use http_body_util::{BodyExt, Empty};
    let env = setup().await;
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", env.port))
        .await
        .expect("connect");
    let (sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .expect("handshake");
    tokio::spawn(connection);
    // `/` has the default timeout (long), `/slow` 300 ms; the echo answers after the delay.
    let cases = [
        ("/", "0", 200),
        ("/slow", "2000", 504),
        ("/slow", "10", 200),
        ("/", "600", 200),
        ("/slow", "2000", 504),
    ];
    let calls = cases.map(|(path, delay, status)| {
        let mut sender = sender.clone();
        async move {
            let request = hyper::Request::get(format!("http://{HOST}{path}"))
                .header("x-echo-delay-ms", delay)
                .body(Empty::<bytes::Bytes>::new())
                .expect("request");
            let response = sender.send_request(request).await.expect("response");
            let got = response.status().as_u16();
            response.into_body().collect().await.expect("body");
            (path, delay, status, got)
        }
    });
    for (path, delay, status, got) in futures::future::join_all(calls).await {
        assert_eq!(got, status, "{path} after {delay} ms");
    }
}

#[tokio::test]
async fn forwarded_headers_and_request_id() {
    let env = setup().await;
    let reply = get_host(&format!("{}/fwd", env.base), HOST, &[])
        .await
        .expect("request");
    let echo = reply.echo();
    assert_eq!(echo.header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(echo.header("x-forwarded-proto"), Some("http"));
    assert_eq!(echo.header("x-forwarded-host"), Some(HOST));
    let id = echo.header("x-request-id").expect("generated request id");
    assert_eq!(reply.header("x-request-id"), Some(id));
    assert_eq!(id.len(), 36, "a UUID: {id}");

    let reply = get_host(
        &format!("{}/fwd", env.base),
        HOST,
        &[("x-request-id", "abc-123"), ("x-forwarded-for", "10.0.0.1")],
    )
    .await
    .expect("request");
    let echo = reply.echo();
    assert_eq!(echo.header("x-request-id"), Some("abc-123"));
    // No trusted proxy in front (the default): the client's claim is replaced by its address.
    assert_eq!(echo.header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(reply.header("x-request-id"), Some("abc-123"));

    // What is meant for this hop only never reaches the backend: `Expect` (the proxy answers
    // it), an untrusted `Forwarded`, and the headers `Connection` names.
    let reply = get_host(
        &format!("{}/fwd", env.base),
        HOST,
        &[
            ("expect", "100-continue"),
            ("forwarded", "for=10.0.0.1"),
            ("connection", "x-hop"),
            ("x-hop", "1"),
            ("x-kept", "1"),
        ],
    )
    .await
    .expect("request");
    assert_eq!(reply.status, 200, "{}", reply.text());
    let echo = reply.echo();
    for name in ["expect", "forwarded", "x-hop"] {
        assert_eq!(echo.header(name), None, "{name} reached the backend");
    }
    assert_eq!(echo.header("x-kept"), Some("1"));
}

#[tokio::test]
async fn http2_client_and_h2c_backend() {
    let env = setup().await;
    let addr = format!("127.0.0.1:{}", env.port).parse().expect("addr");
    let reply = h2_get(addr, &format!("http://{HOST}/anything"))
        .await
        .expect("HTTP/2 request");
    assert_eq!(reply.status, 200, "{}", reply.text());
    let echo = reply.echo();
    assert_eq!(echo.name, "v1");
    // An HTTP/1.1 backend gets the client's `:authority` as its Host header.
    assert_eq!(echo.protocol, "HTTP/1.1");
    assert_eq!(echo.header("host"), Some(HOST));
    assert_eq!(echo.authority, None);

    let reply = get_host(&format!("{}/h2c", env.base), HOST, &[])
        .await
        .expect("request");
    let echo = reply.echo();
    assert_eq!(echo.name, "grpcish");
    assert_eq!(
        echo.protocol, "HTTP/2.0",
        "the h2c backend was reached over HTTP/2"
    );
}

/// RFC 9113 §8.3.1: over HTTP/2 the backend gets the request's authority as `:authority`
/// (the client's Host, or the host a URLRewrite filter wrote), and no separate `host` header,
/// whether the client spoke HTTP/1.1 or HTTP/2.
#[tokio::test]
async fn h2c_backends_get_the_host_as_authority() {
    let env = setup().await;
    let addr = format!("127.0.0.1:{}", env.port).parse().expect("addr");
    let from_http1 = get_host(&format!("{}/h2c/x", env.base), HOST, &[])
        .await
        .expect("request");
    let from_http2 = h2_get(addr, &format!("http://{HOST}/h2c/x"))
        .await
        .expect("HTTP/2 request");
    let rewritten = get_host(&format!("{}/rewritten-h2c", env.base), HOST, &[])
        .await
        .expect("request");
    for (reply, authority) in [
        (from_http1, HOST),
        (from_http2, HOST),
        (rewritten, "rewritten.internal"),
    ] {
        assert_eq!(reply.status, 200, "{}", reply.text());
        let echo = reply.echo();
        assert_eq!(echo.name, "grpcish");
        assert_eq!(echo.protocol, "HTTP/2.0");
        assert_eq!(echo.authority.as_deref(), Some(authority), "{echo:?}");
        assert_eq!(echo.header("host"), None, "no host header: {echo:?}");
        assert_eq!(echo.header("x-forwarded-host"), Some(HOST));
    }
}

#[tokio::test]
async fn websocket_upgrade_is_bridged() {
    let env = setup().await;
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", env.port))
        .await
        .expect("connect");
    let request = http::Request::builder()
        .uri(format!("ws://{HOST}/ws"))
        .header("host", HOST)
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header(
            "sec-websocket-key",
            tokio_tungstenite::tungstenite::handshake::client::generate_key(),
        )
        .body(())
        .expect("request");
    let (mut ws, response) = tokio_tungstenite::client_async(request, stream)
        .await
        .expect("WebSocket handshake through the proxy");
    assert_eq!(response.status(), 101);
    for text in ["hello", "gantry"] {
        ws.send(Message::text(text)).await.expect("send");
        let echoed = ws.next().await.expect("a reply").expect("a message");
        assert_eq!(echoed.into_text().expect("text").as_str(), text);
    }
    ws.close(None).await.expect("close");
}
