//! Data plane over real sockets: a hand-built IR, a tiny echo upstream, `DataPlane::apply`.

// Harness helpers outside #[test] functions panic on purpose: a panic is a test failure.
#![allow(clippy::unwrap_used)]

use gantry_testkit::ports::free_port;
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use gantry_proxy::server::{DataPlane, DataPlaneOptions};
use gantry_proxy::telemetry::Metrics;
use gantry_translate::ir::{
    BackendIr, ClusterIr, HeaderModifierIr, HeaderValueIr, HttpFilterIr, HttpMatchIr, HttpRuleIr,
    Ir, ListenerIr, MirrorIr, PathMatchIr, PortIr, PortProtocol, RedirectIr, RouteEntryIr,
    RouteRef, TimeoutsIr, UpstreamProtocol, VirtualHostIr,
};
use gantry_translate::store::ObjectKey;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

// ---------------------------------------------------------------------------------------------
// Echo upstream

/// Answers with the request line and headers as text. `?sleep=MS` reports the request's path
/// on `arrived`, then waits; an upgrade request gets `101` and then echoes bytes back.
async fn echo(
    request: Request<Incoming>,
    seen: mpsc::UnboundedSender<String>,
    arrived: mpsc::UnboundedSender<String>,
) -> Response<Full<Bytes>> {
    let query = request.uri().query().unwrap_or("").to_owned();
    if let Some(ms) = query.split('&').find_map(|p| p.strip_prefix("sleep=")) {
        let _ = arrived.send(request.uri().path().to_owned());
        tokio::time::sleep(Duration::from_millis(ms.parse().unwrap())).await;
    }
    let mut text = format!("{} {}\n", request.method(), request.uri());
    for (name, value) in request.headers() {
        text.push_str(&format!("{name}: {}\n", value.to_str().unwrap_or("?")));
    }
    let _ = seen.send(text.clone());
    if request.headers().contains_key(http::header::UPGRADE) {
        let mut request = request;
        let upgrade = hyper::upgrade::on(&mut request);
        tokio::spawn(async move {
            let mut io = TokioIo::new(upgrade.await.unwrap());
            let mut buf = [0u8; 64];
            loop {
                match io.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => io.write_all(&buf[..n]).await.unwrap(),
                }
            }
        });
        return Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .body(Full::default())
            .unwrap();
    }
    let body = request.into_body().collect().await.unwrap().to_bytes();
    text.push('\n');
    text.push_str(&String::from_utf8_lossy(&body));
    Response::builder()
        .header("x-upstream", "echo")
        .header("connection", "keep-alive")
        .body(Full::new(Bytes::from(text)))
        .unwrap()
}

/// Starts the echo upstream (HTTP/1.1 and h2c); returns its address, a feed of the requests
/// it saw and a feed of the slow (`?sleep=`) requests that reached it.
async fn start_echo() -> (
    SocketAddr,
    mpsc::UnboundedReceiver<String>,
    mpsc::UnboundedReceiver<String>,
) {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    let (arrived_tx, arrived_rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let tx = tx.clone();
            let arrived_tx = arrived_tx.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let tx = tx.clone();
                    let arrived_tx = arrived_tx.clone();
                    async move { Ok::<_, Infallible>(echo(req, tx, arrived_tx).await) }
                });
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                let _ = builder
                    .serve_connection_with_upgrades(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, rx, arrived_rx)
}

// ---------------------------------------------------------------------------------------------
// IR

fn backend(cluster: Option<&str>) -> BackendIr {
    BackendIr {
        weight: 1,
        cluster: cluster.map(Into::into),
        filters: vec![],
        session_persistence: None,
    }
}

fn entry(name: &str, prefix: &str, rule: HttpRuleIr) -> RouteEntryIr {
    RouteEntryIr {
        route: Arc::new(RouteRef {
            kind: "HTTPRoute".into(),
            namespace: "default".into(),
            name: name.into(),
        }),
        rule_index: 0,
        match_index: 0,
        matches: Arc::new(HttpMatchIr {
            path: PathMatchIr::Prefix(prefix.into()),
            ..Default::default()
        }),
        rule: Arc::new(rule),
        security: None,
        rate_limit: None,
    }
}

fn to(cluster: &str) -> HttpRuleIr {
    HttpRuleIr {
        backends: vec![backend(Some(cluster))],
        ..Default::default()
    }
}

fn cluster(name: &str, endpoints: Vec<String>, protocol: UpstreamProtocol) -> (String, ClusterIr) {
    (
        name.to_owned(),
        ClusterIr {
            name: name.into(),
            service: ObjectKey::new("default", name),
            port: 80,
            protocol,
            endpoints,
            tls: None,
            retry_budget: None,
            backend_config: None,
        },
    )
}

/// The routes every test uses; `echo` is the upstream, `extra` entries go first.
fn test_ir(port: u16, echo: SocketAddr, extra: Vec<RouteEntryIr>) -> Ir {
    let mut routes = extra;
    routes.extend([
        entry("echo", "/echo", to("echo")),
        entry("echo-h2c", "/h2c", to("echo-h2c")),
        entry(
            "slow",
            "/slow",
            HttpRuleIr {
                timeouts: TimeoutsIr {
                    request_ms: None,
                    backend_request_ms: Some(200),
                },
                ..to("echo")
            },
        ),
        entry(
            "request-timeout",
            "/request-timeout",
            HttpRuleIr {
                timeouts: TimeoutsIr {
                    request_ms: Some(200),
                    backend_request_ms: None,
                },
                ..to("echo")
            },
        ),
        entry(
            "invalid",
            "/invalid",
            HttpRuleIr {
                backends: vec![backend(None)],
                ..Default::default()
            },
        ),
        entry("nothing", "/nothing", HttpRuleIr::default()),
        entry("empty", "/empty", to("empty")),
        entry("closed", "/closed", to("closed")),
        entry(
            "redirect",
            "/redirect",
            HttpRuleIr {
                filters: vec![HttpFilterIr::RequestRedirect(RedirectIr {
                    scheme: Some("https".into()),
                    hostname: Some("secure.example.com".into()),
                    port: None,
                    path: None,
                    status_code: 301,
                })],
                ..Default::default()
            },
        ),
        entry(
            "modify",
            "/modify",
            HttpRuleIr {
                filters: vec![
                    HttpFilterIr::RequestHeaderModifier(HeaderModifierIr {
                        set: vec![HeaderValueIr {
                            name: "x-added".into(),
                            value: "by-proxy".into(),
                        }],
                        ..Default::default()
                    }),
                    HttpFilterIr::ResponseHeaderModifier(HeaderModifierIr {
                        add: vec![HeaderValueIr {
                            name: "x-response".into(),
                            value: "modified".into(),
                        }],
                        remove: vec!["x-upstream".into()],
                        ..Default::default()
                    }),
                    HttpFilterIr::RequestMirror(MirrorIr {
                        cluster: Some("echo".into()),
                        numerator: 1,
                        denominator: 1,
                    }),
                ],
                ..to("echo")
            },
        ),
    ]);
    let closed = format!("127.0.0.1:{}", free_port());
    Ir {
        ports: vec![PortIr {
            port,
            protocol: PortProtocol::Http,
            listeners: vec![
                ListenerIr {
                    gateway: ObjectKey::new("default", "gw"),
                    name: "strict".into(),
                    hostname: Some("strict.example.com".into()),
                    virtual_hosts: vec![VirtualHostIr {
                        hostname: "strict.example.com".into(),
                        routes: vec![entry("strict", "/only", to("echo"))],
                    }],
                    tls: None,
                    l4_routes: Vec::new(),
                    serves_tls_routes: false,
                    listener_set: None,
                },
                ListenerIr {
                    gateway: ObjectKey::new("default", "gw"),
                    name: "http".into(),
                    hostname: None,
                    virtual_hosts: vec![VirtualHostIr {
                        hostname: "*".into(),
                        routes,
                    }],
                    tls: None,
                    l4_routes: Vec::new(),
                    serves_tls_routes: false,
                    listener_set: None,
                },
            ],
        }],
        clusters: BTreeMap::from([
            cluster("echo", vec![echo.to_string()], UpstreamProtocol::Http1),
            cluster("echo-h2c", vec![echo.to_string()], UpstreamProtocol::H2c),
            cluster("empty", vec![], UpstreamProtocol::Http1),
            cluster("closed", vec![closed], UpstreamProtocol::Http1),
        ]),
    }
}

struct Proxy {
    plane: Arc<DataPlane>,
    port: u16,
    echo: SocketAddr,
    seen: mpsc::UnboundedReceiver<String>,
    /// Slow requests that reached the upstream (and are held there).
    arrived: mpsc::UnboundedReceiver<String>,
    metrics: Arc<Metrics>,
}

async fn start_proxy(drain_timeout: Duration) -> Proxy {
    let (echo, seen, arrived) = start_echo().await;
    let metrics = Arc::new(Metrics::new());
    let plane = Arc::new(DataPlane::new(
        DataPlaneOptions {
            bind_address: Ipv4Addr::LOCALHOST.into(),
            port_offset: 0,
            drain_timeout,
            access_log: true,
            l4: Default::default(),
            http: Default::default(),
            connections: Default::default(),
        },
        metrics.clone(),
    ));
    assert!(!plane.ready());
    let port = free_port();
    plane
        .apply(Arc::new(test_ir(port, echo, vec![])), 1)
        .await
        .unwrap();
    assert!(plane.ready());
    Proxy {
        plane,
        port,
        echo,
        seen,
        arrived,
        metrics,
    }
}

// ---------------------------------------------------------------------------------------------
// Client

type TestClient = Client<HttpConnector, Full<Bytes>>;

fn http1() -> TestClient {
    Client::builder(TokioExecutor::new()).build_http()
}

fn http2() -> TestClient {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

struct Answer {
    status: StatusCode,
    headers: http::HeaderMap,
    body: String,
}

async fn send(client: &TestClient, port: u16, host: &str, path: &str) -> Answer {
    let request = Request::get(format!("http://127.0.0.1:{port}{path}"))
        .header("host", host)
        .body(Full::default())
        .unwrap();
    send_request(client, request).await
}

/// One HTTP/2 request (prior knowledge) to the proxy at `port`; `url`'s authority becomes
/// `:authority`, and `host` is sent as a header too when given.
async fn h2_send(port: u16, url: &str, host: Option<&str>) -> Answer {
    let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http2::handshake::<_, _, Full<Bytes>>(
        TokioExecutor::new(),
        TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    let mut request = Request::get(url);
    if let Some(host) = host {
        request = request.header("host", host);
    }
    let response = sender
        .send_request(request.body(Full::default()).unwrap())
        .await
        .unwrap();
    answer(response).await
}

async fn send_request(client: &TestClient, request: Request<Full<Bytes>>) -> Answer {
    answer(client.request(request).await.unwrap()).await
}

/// A response read to its end.
async fn answer(response: http::Response<hyper::body::Incoming>) -> Answer {
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

fn assert_request_id(answer: &Answer) {
    assert!(
        answer
            .headers
            .get("x-request-id")
            .is_some_and(|v| !v.is_empty()),
        "no x-request-id on {} {:?}",
        answer.status,
        answer.headers
    );
}

// ---------------------------------------------------------------------------------------------
// Tests

#[tokio::test]
async fn routes_to_the_upstream_with_forwarded_headers_and_request_id() {
    let mut proxy = start_proxy(Duration::from_secs(5)).await;
    let client = http1();
    let request = Request::get(format!("http://127.0.0.1:{}/echo/a?b=c", proxy.port))
        .header("host", "app.example.com:8080")
        .header("x-request-id", "given-id")
        .header("x-forwarded-for", "203.0.113.9")
        .header("connection", "keep-alive, x-hop")
        .header("x-hop", "secret")
        .body(Full::default())
        .unwrap();
    let answer = send_request(&client, request).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.headers["x-request-id"], "given-id");
    assert_eq!(answer.headers["x-upstream"], "echo");
    assert!(!answer.headers.contains_key("keep-alive"));
    let body = answer.body.to_lowercase();
    assert!(body.starts_with("get /echo/a?b=c\n"), "{body}");
    assert!(body.contains("host: app.example.com:8080\n"), "{body}");
    assert!(body.contains("x-request-id: given-id\n"), "{body}");
    // No trusted proxy in front (the default): the client's claim is replaced.
    assert!(body.contains("x-forwarded-for: 127.0.0.1\n"), "{body}");
    assert!(body.contains("x-forwarded-proto: http\n"), "{body}");
    assert!(
        body.contains("x-forwarded-host: app.example.com:8080\n"),
        "{body}"
    );
    assert!(!body.contains("x-hop"), "{body}");
    proxy.seen.recv().await.unwrap();

    // A generated request ID goes upstream and comes back.
    let answer = send(&client, proxy.port, "app.example.com", "/echo").await;
    let id = answer.headers["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(id.len(), 36);
    assert!(answer.body.contains(&format!("x-request-id: {id}\n")));

    let metrics = proxy.metrics.encode();
    assert!(
        metrics.contains(r#"gantry_requests_total{gateway="default/gw",route="default/echo",route_kind="HTTPRoute",status_class="2xx"} 2"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn proxy_errors_are_answered_with_status_and_request_id() {
    let proxy = start_proxy(Duration::from_secs(5)).await;
    let client = http1();
    let cases = [
        ("app.example.com", "/unknown", 404, "no route matched"),
        // The strict listener took the host; no fallback to the catch-all listener.
        ("strict.example.com", "/echo", 404, "no route matched"),
        ("app.example.com", "/invalid", 500, "invalid backend"),
        (
            "app.example.com",
            "/nothing",
            500,
            "no backend for this route",
        ),
        ("app.example.com", "/empty", 503, "no healthy upstream"),
        ("app.example.com", "/closed", 502, "upstream connect error"),
        (
            "app.example.com",
            "/slow?sleep=2000",
            504,
            "upstream request timeout",
        ),
        (
            "app.example.com",
            "/request-timeout?sleep=2000",
            504,
            "request timeout",
        ),
    ];
    for (host, path, status, text) in cases {
        let answer = send(&client, proxy.port, host, path).await;
        assert_eq!(answer.status, status, "{host}{path}: {}", answer.body);
        assert_eq!(answer.body.trim(), text, "{host}{path}");
        assert_request_id(&answer);
    }
    let answer = send(&client, proxy.port, "strict.example.com", "/only").await;
    assert_eq!(answer.status, 200);
    let answer = send(&client, proxy.port, "app.example.com", "/slow?sleep=10").await;
    assert_eq!(answer.status, 200);
    assert!(
        proxy
            .metrics
            .encode()
            .contains("gantry_upstream_connect_errors_total 1")
    );
}

#[tokio::test]
async fn filters_apply_over_the_wire() {
    let mut proxy = start_proxy(Duration::from_secs(5)).await;
    let client = http1();
    let answer = send(&client, proxy.port, "app.example.com", "/redirect/x?q=1").await;
    assert_eq!(answer.status, 301);
    assert_eq!(
        answer.headers["location"],
        "https://secure.example.com/redirect/x?q=1"
    );
    assert_request_id(&answer);

    let request = Request::post(format!("http://127.0.0.1:{}/modify", proxy.port))
        .header("host", "app.example.com")
        .body(Full::new(Bytes::from_static(b"payload")))
        .unwrap();
    let answer = send_request(&client, request).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.headers["x-response"], "modified");
    assert!(!answer.headers.contains_key("x-upstream"));
    assert!(
        answer.body.contains("x-added: by-proxy\n"),
        "{}",
        answer.body
    );
    assert!(answer.body.ends_with("\npayload"), "{}", answer.body);
    // The main request and its mirror both reached the upstream, with the body.
    let first = proxy.seen.recv().await.unwrap();
    let second = tokio::time::timeout(Duration::from_secs(5), proxy.seen.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(first.starts_with("POST /modify") && second.starts_with("POST /modify"));
}

/// A stream whose first write sends one byte only, so the proxy may see a first segment
/// that is just "P": the start of the HTTP/2 preface and of `POST` alike.
struct OneByteFirst(TcpStream, bool);

impl tokio::io::AsyncRead for OneByteFirst {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for OneByteFirst {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let first = std::mem::replace(&mut self.1, false);
        let buf = if first { &buf[..buf.len().min(1)] } else { buf };
        std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// The proxy peeks at a cleartext connection's first bytes to choose HTTP/1 or HTTP/2; a first
/// segment that does not settle it ("P") is served by reading on, with either protocol.
#[tokio::test]
async fn a_first_segment_that_could_be_either_protocol_is_served_by_the_one_that_follows() {
    let proxy = start_proxy(Duration::from_secs(5)).await;
    let connect = || async {
        let stream = TcpStream::connect(("127.0.0.1", proxy.port)).await.unwrap();
        stream.set_nodelay(true).unwrap();
        OneByteFirst(stream, true)
    };
    let (mut sender, connection) = hyper::client::conn::http2::handshake::<_, _, Full<Bytes>>(
        TokioExecutor::new(),
        TokioIo::new(connect().await),
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    let request = Request::get("http://app.example.com/echo/split-h2")
        .body(Full::default())
        .unwrap();
    let answer = answer(sender.send_request(request).await.unwrap()).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(
        answer.body.starts_with("GET /echo/split-h2\n"),
        "{}",
        answer.body
    );

    let mut stream = connect().await;
    stream
        .write_all(b"POST /echo/split-h1 HTTP/1.1\r\nhost: app.example.com\r\ncontent-length: 2\r\nconnection: close\r\n\r\nhi")
        .await
        .unwrap();
    let mut response = String::new();
    stream.0.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("POST /echo/split-h1\n"), "{response}");
}

#[tokio::test]
async fn http2_prior_knowledge_and_h2c_upstreams() {
    let proxy = start_proxy(Duration::from_secs(5)).await;
    for path in ["/echo/h2", "/h2c/h2"] {
        let answer = h2_send(proxy.port, &format!("http://app.example.com{path}"), None).await;
        assert_eq!(answer.status, 200, "{path}: {}", answer.body);
        assert_request_id(&answer);
        assert!(
            answer.body.contains("x-forwarded-host: app.example.com\n"),
            "{}",
            answer.body
        );
        if path.starts_with("/echo") {
            // An HTTP/1.1 upstream gets the client's `:authority` as the Host header.
            assert!(answer.body.starts_with("GET /echo/h2\n"), "{}", answer.body);
            assert!(
                answer.body.contains("host: app.example.com\n"),
                "{}",
                answer.body
            );
        } else {
            // An HTTP/2 upstream gets it as `:authority`, and no `host` header (RFC 9113
            // §8.3.1), not the endpoint's address.
            assert!(
                answer
                    .body
                    .starts_with("GET http://app.example.com/h2c/h2\n"),
                "{}",
                answer.body
            );
            assert!(!answer.body.contains("\nhost:"), "{}", answer.body);
        }
    }
    let answer = h2_send(proxy.port, "http://app.example.com/nope", None).await;
    assert_eq!(answer.status, 404);
    assert_request_id(&answer);
    // RFC 9113 §8.3.1: a `host` naming another authority than `:authority` is malformed.
    let answer = h2_send(
        proxy.port,
        "http://app.example.com/echo/h2",
        Some("other.example.com"),
    )
    .await;
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert_request_id(&answer);
    let answer = send(&http2(), proxy.port, "app.example.com", "/echo/h2").await;
    assert_eq!(answer.status, 400, "{}", answer.body);
    // HTTP/1.1 client to an h2c upstream: its Host becomes `:authority`.
    let answer = send(&http1(), proxy.port, "app.example.com", "/h2c/x").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(
        answer
            .body
            .starts_with("GET http://app.example.com/h2c/x\n"),
        "{}",
        answer.body
    );
    assert!(!answer.body.contains("\nhost:"), "{}", answer.body);
}

#[tokio::test]
async fn upgrades_are_bridged() {
    let proxy = start_proxy(Duration::from_secs(5)).await;
    let mut stream = TcpStream::connect(("127.0.0.1", proxy.port)).await.unwrap();
    stream
        .write_all(
            b"GET /echo/ws HTTP/1.1\r\nHost: app.example.com\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
        )
        .await
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap().to_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: websocket"), "{head}");
    assert!(head.contains("x-request-id: "), "{head}");
    stream.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf, b"ping");
}

#[tokio::test]
async fn config_swap_drops_no_in_flight_request() {
    let mut proxy = start_proxy(Duration::from_secs(5)).await;
    let client = http1();
    let in_flight: Vec<_> = (0..8)
        .map(|i| {
            let client = client.clone();
            let port = proxy.port;
            tokio::spawn(async move {
                send(
                    &client,
                    port,
                    "app.example.com",
                    &format!("/echo/{i}?sleep=300"),
                )
                .await
            })
        })
        .collect();
    // Every request is held by the upstream when the configuration changes.
    for _ in 0..8 {
        proxy.arrived.recv().await.unwrap();
    }
    // Version 2 adds a route in front of the others.
    let extra = vec![entry("new", "/new", to("echo"))];
    proxy
        .plane
        .apply(Arc::new(test_ir(proxy.port, proxy.echo, extra)), 2)
        .await
        .unwrap();
    assert_eq!(proxy.plane.snapshot().version, 2);
    for request in in_flight {
        assert_eq!(request.await.unwrap().status, 200);
    }
    assert_eq!(
        send(&client, proxy.port, "app.example.com", "/new")
            .await
            .status,
        200
    );

    // A bad configuration is rejected and the last good one keeps serving.
    let mut bad = test_ir(proxy.port, proxy.echo, vec![]);
    Arc::make_mut(&mut bad.ports[0].listeners[1].virtual_hosts[0].routes[0].matches).path =
        PathMatchIr::RegularExpression("(".into());
    assert!(proxy.plane.apply(Arc::new(bad), 3).await.is_err());
    assert_eq!(proxy.plane.snapshot().version, 2);
    assert_eq!(
        send(&client, proxy.port, "app.example.com", "/new")
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn ports_come_and_go_with_the_config() {
    let proxy = start_proxy(Duration::from_secs(5)).await;
    let second = free_port();
    let mut ir = test_ir(proxy.port, proxy.echo, vec![]);
    let mut extra_port = ir.ports[0].clone();
    extra_port.port = second;
    ir.ports.push(extra_port);
    proxy.plane.apply(Arc::new(ir), 2).await.unwrap();
    let client = http1();
    assert_eq!(send(&client, second, "a", "/echo").await.status, 200);

    // A port that cannot be bound is reported; the rest of the config is applied and served.
    let taken = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let taken_port = taken.local_addr().unwrap().port();
    let mut ir = test_ir(proxy.port, proxy.echo, vec![]);
    let mut extra = ir.ports[0].clone();
    extra.port = taken_port;
    ir.ports.push(extra);
    let ir = Arc::new(ir);
    let applied = proxy.plane.apply(ir.clone(), 3).await.unwrap();
    assert_eq!(
        applied
            .unbound
            .iter()
            .map(|u| (u.port, u.address.port()))
            .collect::<Vec<_>>(),
        [(taken_port, taken_port)]
    );
    assert_eq!(proxy.plane.snapshot().version, 3);
    assert_eq!(send(&client, proxy.port, "a", "/echo").await.status, 200);
    assert!(TcpStream::connect(("127.0.0.1", second)).await.is_err());

    // Once the port is free, applying again binds it.
    drop(taken);
    let applied = proxy.plane.apply(ir, 4).await.unwrap();
    assert!(applied.unbound.is_empty(), "{applied:?}");
    assert_eq!(send(&client, taken_port, "a", "/echo").await.status, 200);

    // Dropping the extra port closes it.
    proxy
        .plane
        .apply(Arc::new(test_ir(proxy.port, proxy.echo, vec![])), 5)
        .await
        .unwrap();
    assert!(TcpStream::connect(("127.0.0.1", taken_port)).await.is_err());
    assert_eq!(send(&client, proxy.port, "a", "/echo").await.status, 200);
}

#[tokio::test]
async fn shutdown_drains_in_flight_requests() {
    let mut proxy = start_proxy(Duration::from_secs(5)).await;
    let client = http1();
    let port = proxy.port;
    let slow = {
        let client = client.clone();
        tokio::spawn(
            async move { send(&client, port, "app.example.com", "/echo/slow?sleep=500").await },
        )
    };
    // Shutdown starts while the upstream holds the request for another half second.
    assert_eq!(proxy.arrived.recv().await.unwrap(), "/echo/slow");
    proxy.plane.shutdown().await;
    assert!(!proxy.plane.ready());
    // It was answered in full: shutdown waited for it rather than closing its connection.
    let answer = slow.await.unwrap();
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(answer.body.contains("GET /echo/slow"), "{}", answer.body);
    assert!(TcpStream::connect(("127.0.0.1", port)).await.is_err());
}

#[tokio::test]
async fn an_announced_shutdown_asks_http1_clients_to_reconnect_and_keeps_serving() {
    let proxy = start_proxy(Duration::from_secs(5)).await;
    let before = send(&http1(), proxy.port, "app.example.com", "/echo").await;
    assert_eq!(before.status, 200);
    assert!(
        before.headers.get("connection").is_none(),
        "{:?}",
        before.headers
    );

    proxy.plane.announce_shutdown();
    // Still accepting and serving; the response closes the connection after it (RFC 9112
    // §9.6), so the client's next request opens a new one.
    let mut stream = TcpStream::connect(("127.0.0.1", proxy.port)).await.unwrap();
    stream
        .write_all(b"GET /echo HTTP/1.1\r\nHost: app.example.com\r\n\r\n")
        .await
        .unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let raw = String::from_utf8_lossy(&raw).to_lowercase();
    assert!(raw.starts_with("http/1.1 200"), "{raw}");
    assert!(raw.contains("connection: close\r\n"), "{raw}");
    // HTTP/2 has no Connection header; its GOAWAY comes when the connections are closed.
    let h2 = h2_send(proxy.port, "http://app.example.com/echo", None).await;
    assert_eq!(h2.status, 200);
    assert!(h2.headers.get("connection").is_none(), "{:?}", h2.headers);
    assert!(
        proxy.plane.ready(),
        "readiness is the control loop's; the plane still serves"
    );
}

/// A connection that has not sent a byte has nothing to finish: shutdown closes it at once
/// rather than waiting for the header timeout (30 s by default) or the drain timeout.
#[tokio::test]
async fn shutdown_closes_a_connection_that_sent_nothing() {
    let proxy = start_proxy(Duration::from_secs(600)).await;
    let mut silent = TcpStream::connect(("127.0.0.1", proxy.port)).await.unwrap();
    // Accepted and being served (waiting for its first bytes).
    while proxy.metrics.active_connections.get() < 1 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    tokio::time::timeout(Duration::from_secs(20), proxy.plane.shutdown())
        .await
        .expect("shutdown waited for a connection that had sent nothing");
    let mut rest = Vec::new();
    silent.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty(), "{rest:?}");
}
