//! A hostile client against the real binary over raw sockets: upgrades that would tunnel around
//! routing, paths that would dodge a prefix, malformed Host and framing, broken and stalled
//! bodies. Each answer is the proxy's own, with a request ID, and the backend behind never sees
//! what it should not. `docs/security.md` lists each rule.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gantry_testkit::echo::Echo;
use gantry_testkit::harness::{
    Proxy, echo_backends, free_port, gateway_yaml, get_host, service_yaml,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const HOST: &str = "app.example.com";

const ROUTES: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: app, namespace: default}
spec:
  parentRefs: [{name: gw}]
  hostnames: ["app.example.com"]
  rules:
    - matches: [{path: {type: PathPrefix, value: /public}}]
      backendRefs: [{name: public, port: 8080}]
    - matches: [{path: {type: PathPrefix, value: /admin}}]
      backendRefs: [{name: admin, port: 8080}]
    - matches: [{path: {type: PathPrefix, value: /v1}}]
      filters:
        - type: URLRewrite
          urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /}}
      backendRefs: [{name: public, port: 8080}]
    - matches: [{path: {type: Exact, value: /safe}}]
      backendRefs: [{name: upgrader, port: 8080}]
    - matches: [{path: {type: PathPrefix, value: /silent}}]
      backendRefs: [{name: silent, port: 8080}]
    - matches: [{path: {type: PathPrefix, value: /}}]
      backendRefs: [{name: public, port: 8080}]
"#;

struct Env {
    proxy: Proxy,
    addr: SocketAddr,
    base: String,
    /// Request heads the upgrading backend received.
    upgrader_seen: Arc<Mutex<Vec<String>>>,
}

async fn setup(extra_args: &[&str]) -> Env {
    let (services, _) = echo_backends(&[("default", "public"), ("default", "admin")]).await;
    let (upgrader, upgrader_seen) = upgrading_backend().await;
    let silent = silent_backend().await;
    let port = free_port();
    let backends = format!(
        "{services}---\n{}---\n{}",
        service_yaml("default", "upgrader", 8080, &[upgrader]),
        service_yaml("default", "silent", 8080, &[silent])
    );
    let proxy = Proxy::start_ready(
        &[
            ("gateway.yaml", &gateway_yaml("gw", port)),
            ("backends.yaml", &backends),
            ("routes.yaml", ROUTES),
        ],
        extra_args,
    )
    .await;
    Env {
        proxy,
        addr: format!("127.0.0.1:{port}").parse().expect("addr"),
        base: format!("http://127.0.0.1:{port}"),
        upgrader_seen,
    }
}

/// A backend that answers every request `101 Switching Protocols` (to the protocol asked for,
/// or `h2c` unasked) and then echoes raw bytes: what a careless backend does, and the way a
/// tunnel around routing would open.
async fn upgrading_backend() -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let record = record.clone();
            tokio::spawn(async move {
                let head = read_head(&mut stream).await;
                let protocol = head
                    .lines()
                    .find_map(|l| {
                        let (name, value) = l.split_once(':')?;
                        name.eq_ignore_ascii_case("upgrade")
                            .then(|| value.trim().to_owned())
                    })
                    .unwrap_or_else(|| "h2c".to_owned());
                record.lock().expect("lock").push(head);
                let answer = format!(
                    "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: {protocol}\r\n\r\n"
                );
                if stream.write_all(answer.as_bytes()).await.is_err() {
                    return;
                }
                let mut buf = [0u8; 4096];
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 || stream.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    (addr, seen)
}

/// A backend that accepts connections and never answers.
async fn silent_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            open.push(stream);
        }
    });
    addr
}

/// Reads up to the end of a request or response head.
async fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// Sends `request` as raw bytes and reads until the proxy closes the connection.
async fn raw(addr: SocketAddr, request: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request.as_bytes()).await.expect("write");
    read_to_close(&mut stream).await
}

async fn read_to_close(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut out)).await;
    assert!(read.is_ok(), "the proxy kept the connection open: {out:?}");
    String::from_utf8_lossy(&out).into_owned()
}

fn status_of(response: &str) -> u16 {
    response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {response:?}"))
}

/// The echo backend's answer in a raw response.
fn echo_of(response: &str) -> Echo {
    let body = response.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {response}"))
}

fn has_request_id(response: &str) -> bool {
    let head = response.split("\r\n\r\n").next().unwrap_or("");
    head.lines()
        .any(|l| l.to_ascii_lowercase().starts_with("x-request-id: "))
}

/// The value of `gantry_requests_rejected_total{reason}`.
async fn rejected(proxy: &Proxy, reason: &str) -> f64 {
    proxy
        .metric(&format!(
            "gantry_requests_rejected_total{{reason=\"{reason}\"}}"
        ))
        .await
}

#[tokio::test]
async fn only_websocket_upgrades_are_tunnelled() {
    let env = setup(&[]).await;
    // An h2c upgrade (RFC 9113 §3.1 removed it) on an Exact route: the upgrade headers are
    // dropped, so the backend is not asked to switch; when it switches anyway, the client gets
    // 502 and no tunnel, so `GET /admin/secret` can never ride it.
    let mut stream = TcpStream::connect(env.addr).await.expect("connect");
    let request = format!(
        "GET /safe HTTP/1.1\r\nHost: {HOST}\r\nConnection: Upgrade, HTTP2-Settings\r\n\
         Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.expect("write");
    let head = read_head(&mut stream).await;
    assert_eq!(status_of(&head), 502, "{head}");
    assert!(has_request_id(&head), "{head}");
    let seen = env.upgrader_seen.lock().expect("lock").clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    let backend_head = seen[0].to_ascii_lowercase();
    assert!(!backend_head.contains("upgrade"), "{backend_head}");
    assert!(!backend_head.contains("http2-settings"), "{backend_head}");

    // Any other protocol token: the same.
    let response = raw(
        env.addr,
        &format!(
            "GET /safe HTTP/1.1\r\nHost: {HOST}\r\nConnection: Upgrade, close\r\n\
             Upgrade: tls/1.2\r\n\r\n"
        ),
    )
    .await;
    assert_eq!(status_of(&response), 502, "{response}");

    // WebSocket is tunnelled: the backend is asked, its 101 reaches the client.
    let mut stream = TcpStream::connect(env.addr).await.expect("connect");
    let request = format!(
        "GET /safe HTTP/1.1\r\nHost: {HOST}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.expect("write");
    let head = read_head(&mut stream).await;
    assert_eq!(status_of(&head), 101, "{head}");
    stream.write_all(b"ping").await.expect("write");
    let mut buf = [0u8; 4];
    stream.read_exact(&mut buf).await.expect("echoed bytes");
    assert_eq!(&buf, b"ping");
}

#[tokio::test]
async fn paths_are_normalised_before_matching_and_forwarded_normalised() {
    let env = setup(&[]).await;
    let cases = [
        ("/public/../admin/secret", "admin", "/admin/secret"),
        ("/public/%2e%2e/admin", "admin", "/admin"),
        ("//public/x", "public", "/public/x"),
        ("/./public/x", "public", "/public/x"),
        ("/%70ublic/x?q=%2F", "public", "/public/x?q=%2F"),
        ("/admin/../public/y", "public", "/public/y"),
        // A prefix rewrite of a path with a doubled slash never makes a scheme-relative path.
        ("/v1//evil.com/x", "public", "/evil.com/x"),
    ];
    for (path, backend, upstream_path) in cases {
        let reply = get_host(&format!("{}{path}", env.base), HOST, &[])
            .await
            .expect("request");
        assert_eq!(reply.status, 200, "{path}: {}", reply.text());
        let echo = reply.echo();
        assert_eq!(echo.name, backend, "{path}");
        assert_eq!(echo.path, upstream_path, "{path}");
    }
    let refused = [
        ("/public/..;/admin", "path_dot_segment_parameters"),
        ("/public/a%2Fb", "path_escaped_slash"),
        ("/public/a%5cb", "path_escaped_slash"),
        ("/public/%zz", "path_invalid_escape"),
    ];
    for (path, reason) in refused {
        let before = rejected(&env.proxy, reason).await;
        let response = raw(
            env.addr,
            &format!("GET {path} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n"),
        )
        .await;
        assert_eq!(status_of(&response), 400, "{path}: {response}");
        assert!(has_request_id(&response), "{path}: {response}");
        assert_eq!(rejected(&env.proxy, reason).await, before + 1.0, "{path}");
    }
}

#[tokio::test]
async fn host_framing_and_method_rules() {
    let env = setup(&[]).await;
    let cases: [(&'static str, String, u16, &str); 10] = [
        (
            "two Host headers",
            format!("GET /public HTTP/1.1\r\nHost: {HOST}\r\nHost: other.example\r\n"),
            400,
            "host_repeated",
        ),
        (
            "no Host",
            "GET /public HTTP/1.1\r\n".into(),
            400,
            "host_missing",
        ),
        (
            "a list",
            "GET /public HTTP/1.1\r\nHost: a, b\r\n".into(),
            400,
            "host_invalid",
        ),
        (
            "userinfo",
            format!("GET /public HTTP/1.1\r\nHost: user@{HOST}\r\n"),
            400,
            "host_invalid",
        ),
        (
            "a path",
            format!("GET /public HTTP/1.1\r\nHost: {HOST}/x\r\n"),
            400,
            "host_invalid",
        ),
        (
            "a bad port",
            format!("GET /public HTTP/1.1\r\nHost: {HOST}:99999\r\n"),
            400,
            "host_invalid",
        ),
        (
            "CONNECT",
            format!("CONNECT {HOST}:443 HTTP/1.1\r\nHost: {HOST}:443\r\n"),
            405,
            "connect",
        ),
        (
            "a transfer coding other than chunked",
            format!(
                "POST /public HTTP/1.1\r\nHost: {HOST}\r\nTransfer-Encoding: gzip, chunked\r\n"
            ),
            501,
            "transfer_coding",
        ),
        (
            "an absolute-form target with userinfo",
            format!("GET http://u:p@{HOST}/public HTTP/1.1\r\nHost: {HOST}\r\n"),
            400,
            "host_invalid",
        ),
        (
            "the upstream cannot be named by Connection",
            format!("GET /public HTTP/1.1\r\nHost: {HOST}\r\nConnection: host\r\n"),
            200,
            "",
        ),
    ];
    let long_path = format!("/public/{}", "a".repeat(17 * 1024));
    let big_header = "v".repeat(8 * 1024);
    let big_headers: String = (0..9)
        .map(|i| format!("X-Big-{i}: {big_header}\r\n"))
        .collect();
    let sizes = [
        (
            "a target over 16 KiB",
            format!("GET {long_path} HTTP/1.1\r\nHost: {HOST}\r\n"),
            414,
            "uri_too_long",
        ),
        (
            "headers over 64 KiB",
            format!("GET /public HTTP/1.1\r\nHost: {HOST}\r\n{big_headers}"),
            431,
            "headers_too_large",
        ),
    ];
    for (what, head, status, reason) in cases.into_iter().chain(sizes) {
        let before = rejected(&env.proxy, reason).await;
        let response = raw(env.addr, &format!("{head}Connection: close\r\n\r\n")).await;
        assert_eq!(status_of(&response), status, "{what}: {response}");
        assert!(has_request_id(&response), "{what}: {response}");
        if !reason.is_empty() {
            assert_eq!(rejected(&env.proxy, reason).await, before + 1.0, "{what}");
        }
    }

    // A head the HTTP/1 parser cannot parse is answered by the parser itself, before a request
    // (or its ID) exists; it is still counted and logged.
    let response = raw(
        env.addr,
        &format!(
            "GET /public HTTP/1.1\r\nHost: {HOST}\r\nNo colon here\r\nConnection: close\r\n\r\n"
        ),
    )
    .await;
    assert_eq!(status_of(&response), 400, "{response}");
    env.proxy
        .wait_metric("gantry_requests_rejected_total{reason=\"unparsable\"}", 1.0)
        .await;
    assert!(
        env.proxy
            .log()
            .contains("request rejected by the HTTP parser")
    );

    // An absolute-form target routes by its authority, whatever Host says (RFC 9112 §3.2.2).
    let response = raw(
        env.addr,
        &format!(
            "GET http://{HOST}/admin/x HTTP/1.1\r\nHost: elsewhere.example\r\nConnection: close\r\n\r\n"
        ),
    )
    .await;
    assert_eq!(status_of(&response), 200, "{response}");
    let echo = echo_of(&response);
    assert_eq!(echo.name, "admin", "{response}");
    assert_eq!(echo.host, HOST, "{response}");

    // `Connection` cannot make the proxy drop the request ID it sends upstream.
    let response = raw(
        env.addr,
        &format!(
            "GET /public HTTP/1.1\r\nHost: {HOST}\r\nX-Request-Id: keep-me\r\n\
             Connection: close, x-request-id\r\n\r\n"
        ),
    )
    .await;
    assert_eq!(status_of(&response), 200, "{response}");
    assert_eq!(
        echo_of(&response).header("x-request-id"),
        Some("keep-me"),
        "{response}"
    );
}

#[tokio::test]
async fn broken_stalled_and_abandoned_bodies_are_the_clients_errors() {
    let env = setup(&["--request-body-timeout", "300ms"]).await;
    // Invalid chunked framing: 400, not a 502 against the route.
    let response = raw(
        env.addr,
        &format!(
            "POST /public HTTP/1.1\r\nHost: {HOST}\r\nTransfer-Encoding: chunked\r\n\
             Connection: close\r\n\r\n5\r\nhello\r\nzz\r\n"
        ),
    )
    .await;
    assert_eq!(status_of(&response), 400, "{response}");
    assert!(has_request_id(&response), "{response}");

    // A body that stops arriving: 408 once the body timeout passes.
    let mut stream = TcpStream::connect(env.addr).await.expect("connect");
    let head = format!(
        "POST /public HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 10\r\nConnection: close\r\n\r\nabc"
    );
    stream.write_all(head.as_bytes()).await.expect("write");
    let response = read_to_close(&mut stream).await;
    assert_eq!(status_of(&response), 408, "{response}");

    // A client that goes away mid-body: logged as 499, not as an upstream failure.
    let mut stream = TcpStream::connect(env.addr).await.expect("connect");
    let head = format!(
        "POST /admin/abandoned HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 100000\r\n\r\nabc"
    );
    stream.write_all(head.as_bytes()).await.expect("write");
    // The request has reached the backend once its head is forwarded; then the client leaves.
    drop(stream);
    env.proxy
        .eventually(
            Duration::from_secs(10),
            Duration::from_millis(20),
            || async {
                let log = env.proxy.log();
                match log.lines().find(|l| l.contains("/admin/abandoned")) {
                    Some(line) if line.contains("status=499") => Ok(()),
                    Some(line) => Err(format!("logged as {line}")),
                    None => Err("not logged yet".to_owned()),
                }
            },
        )
        .await;
}

#[tokio::test]
async fn a_silent_backend_is_cut_off_by_the_default_request_timeout() {
    let env = setup(&["--default-request-timeout", "300ms"]).await;
    let reply = get_host(&format!("{}/silent", env.base), HOST, &[])
        .await
        .expect("request");
    assert_eq!(reply.status, 504, "{}", reply.text());
    assert!(reply.header("x-request-id").is_some());
}
