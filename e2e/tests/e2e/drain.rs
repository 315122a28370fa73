//! Graceful drain: a fleet behind a balancer that follows readiness as kube-proxy does, a
//! rolling replacement under continuous load that fails no request, and what happens to each
//! kind of open connection when the drain delay ends.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use gantry_testkit::balancer::Balancer;
use gantry_testkit::harness::tempdir::TempDir;
use gantry_testkit::harness::{
    Proxy, echo_backends, free_port, gateway_with_listeners_yaml, gateway_yaml, get, get_host,
    send, service_yaml,
};
use gantry_testkit::stream_echo;
use http::Method;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

const HOST: &str = "drain.example.com";
/// Requests served with a 2xx by the route every test here uses.
const SERVED: &str = r#"gantry_requests_total{gateway="default/gw",route="default/web",route_kind="HTTPRoute",status_class="2xx"}"#;

fn route() -> String {
    format!(
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: web, namespace: default}}
spec:
  parentRefs: [{{name: gw}}]
  hostnames: ["{HOST}"]
  rules:
    - backendRefs: [{{name: web, port: 8080}}]
"#
    )
}

/// A proxy of the fleet serving `dir`: its listener port 80 is bound at a port of its own
/// (`--port-offset`), returned with it.
fn member(dir: &TempDir, drain_delay: &str) -> (Proxy, SocketAddr) {
    let port = free_port();
    let offset = (port - 80).to_string();
    let proxy = Proxy::start_in(
        dir,
        &["--port-offset", &offset, "--drain-delay", drain_delay],
    );
    (proxy, SocketAddr::from(([127, 0, 0, 1], port)))
}

type Ws = WebSocketStream<TcpStream>;

/// A WebSocket to the echo backend through the proxy listening at `addr`.
async fn websocket(addr: SocketAddr) -> Ws {
    let stream = TcpStream::connect(addr).await.expect("connect");
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
    let (ws, response) = tokio_tungstenite::client_async(request, stream)
        .await
        .expect("WebSocket handshake through the proxy");
    assert_eq!(response.status(), 101);
    ws
}

/// Sends `text` and reads the echo back.
async fn echo_once(ws: &mut Ws, text: &str) {
    ws.send(Message::text(text)).await.expect("send");
    let echoed = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("an echo within 10 s")
        .expect("a reply")
        .expect("a message");
    assert_eq!(echoed.into_text().expect("text").as_str(), text);
}

/// Waits for the WebSocket to end and checks that it ended with end-of-stream (the proxy's
/// FIN), not a reset and not a message.
async fn closed_cleanly(ws: &mut Ws) {
    let next = tokio::time::timeout(Duration::from_secs(15), ws.next())
        .await
        .expect("the WebSocket is closed within the drain timeout");
    match next {
        None
        | Some(Err(WsError::ConnectionClosed))
        | Some(Err(WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake)))
        | Some(Ok(Message::Close(_))) => {}
        other => panic!("the WebSocket did not end with end-of-stream: {other:?}"),
    }
}

/// Waits for the process to exit (15 s at most) and checks it exited with 0.
async fn exits_cleanly(proxy: &mut Proxy) {
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = proxy.child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the proxy did not exit; log:\n{}",
            proxy.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        status.success(),
        "exit status {status}; log:\n{}",
        proxy.log()
    );
}

/// Waits until `/readyz` stops answering 200.
async fn unready(proxy: &Proxy) {
    let url = format!("http://{}/readyz", proxy.admin);
    proxy
        .eventually(
            Duration::from_secs(10),
            Duration::from_millis(10),
            || async {
                match get(&url).await {
                    Ok(r) if r.status == 200 => Err("still ready".to_owned()),
                    Ok(r) => {
                        assert_eq!(r.status, 503, "{}", r.text());
                        Ok(())
                    }
                    Err(error) => Err(format!("the admin server went away first: {error}")),
                }
            },
        )
        .await;
}

/// Clients sending requests through `addr` without pause, counting answers and failures.
/// Each keeps its keep-alive connection, as a browser or another proxy would, and opens a new
/// one only when the connection is closed: so traffic reaches a proxy that joins later only
/// through clients that were told to reconnect.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failures: Arc<Mutex<Vec<String>>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Load {
    fn start(addr: SocketAddr, clients: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let url = format!("http://{addr}/load");
        let tasks = (0..clients)
            .map(|_| {
                let (stop, ok, failures, url) =
                    (stop.clone(), ok.clone(), failures.clone(), url.clone());
                tokio::spawn(async move {
                    let client = Client::builder(TokioExecutor::new()).build_http();
                    while !stop.load(Ordering::Relaxed) {
                        let reply =
                            send(&client, Method::GET, &url, &[("host", HOST)], Bytes::new()).await;
                        match reply {
                            Ok(r) if r.status == 200 => {
                                ok.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok(r) => lock(&failures).push(format!("{}: {}", r.status, r.text())),
                            Err(error) => lock(&failures).push(format!("{error:?}")),
                        }
                    }
                })
            })
            .collect();
        Self {
            stop,
            ok,
            failures,
            tasks,
        }
    }

    fn ok(&self) -> u64 {
        self.ok.load(Ordering::Relaxed)
    }

    /// Waits until more than `n` requests were answered (60 s at most).
    async fn wait_ok_above(&self, n: u64) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.ok() <= n {
            assert!(
                Instant::now() < deadline,
                "the load stalled at {} answers; failures: {:?}",
                self.ok(),
                lock(&self.failures)
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops the clients; the answers and the failures.
    async fn stop(self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.expect("load client");
        }
        let failures = lock(&self.failures).clone();
        (self.ok.load(Ordering::Relaxed), failures)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Waits until `proxy` has answered more than `n` requests of the route (30 s at most).
async fn served_above(proxy: &Proxy, n: f64) {
    proxy
        .eventually(
            Duration::from_secs(30),
            Duration::from_millis(20),
            || async {
                let served = proxy.metric(SERVED).await;
                if served > n {
                    Ok(())
                } else {
                    Err(format!("served {served} requests"))
                }
            },
        )
        .await;
}

#[tokio::test]
async fn a_rolling_replacement_under_load_fails_no_request() {
    let (services, _) = echo_backends(&[("default", "web")]).await;
    let dir = TempDir::new("gantry-e2e-fleet");
    for (name, text) in [
        ("gateway.yaml", gateway_yaml("gw", 80)),
        ("services.yaml", services),
        ("route.yaml", route()),
    ] {
        std::fs::write(dir.path().join(name), text).expect("writing the config");
    }
    // A long delay: what happens during it is checked at leisure, then a second SIGTERM ends
    // it, so nothing here depends on how fast the machine is.
    let (mut a, a_addr) = member(&dir, "60s");
    let (b, b_addr) = member(&dir, "60s");
    a.wait_ready().await;
    b.wait_ready().await;
    let balancer = Balancer::start().await;
    balancer.add("a", a_addr, a.admin);
    balancer.add("b", b_addr, b.admin);
    balancer
        .wait_rotation("a", true, Duration::from_secs(10))
        .await;
    balancer
        .wait_rotation("b", true, Duration::from_secs(10))
        .await;

    let mut ws = websocket(a_addr).await;
    echo_once(&mut ws, "before SIGTERM").await;
    let load = Load::start(balancer.addr(), 8);
    load.wait_ok_above(200).await;
    served_above(&a, 0.0).await;
    assert!(balancer.connections("a") > 0 && balancer.connections("b") > 0);

    // A rolling replacement, as a Deployment with maxUnavailable 0 does it: C starts and
    // joins once ready, then A is told to stop.
    let (c, c_addr) = member(&dir, "60s");
    balancer.add("c", c_addr, c.admin);
    c.wait_ready().await;
    balancer
        .wait_rotation("c", true, Duration::from_secs(10))
        .await;
    a.terminate();
    unready(&a).await;
    balancer
        .wait_rotation("a", false, Duration::from_secs(10))
        .await;
    // During the delay A still accepts and serves, and asks HTTP/1.1 clients to reconnect.
    let direct = get_host(&format!("http://{a_addr}/direct"), HOST, &[])
        .await
        .expect("A accepts during the drain delay");
    assert_eq!(direct.status, 200);
    assert_eq!(direct.header("connection"), Some("close"));
    assert_eq!(a.metric("gantry_drain_phase").await, 1.0);
    // The WebSocket opened before SIGTERM still works after readiness failed.
    echo_once(&mut ws, "after readiness failed").await;
    // The clients that were on A reconnected and some reached C: nothing else would send C
    // traffic, as every client keeps its connection.
    served_above(&c, 0.0).await;
    assert!(a.child.try_wait().expect("wait").is_none(), "A still runs");

    // A second SIGTERM ends the delay: A stops accepting, closes the WebSocket and exits.
    a.terminate();
    closed_cleanly(&mut ws).await;
    exits_cleanly(&mut a).await;
    let log = a.log();
    assert!(log.contains("second stop request"), "{log}");
    assert!(log.contains("every connection closed"), "{log}");

    // The load carries on through B and C.
    load.wait_ok_above(load.ok() + 200).await;
    let (ok, failures) = load.stop().await;
    assert!(
        failures.is_empty(),
        "{} of {ok} requests failed: {failures:#?}",
        failures.len()
    );
    assert!(balancer.connections("c") > 0);
}

#[tokio::test]
async fn when_the_delay_ends_every_kind_of_connection_is_closed() {
    let (services, _) = echo_backends(&[("default", "web")]).await;
    let (tcp_backend, _task) = stream_echo::spawn_tcp("tcp-backend").await;
    let (http_port, tcp_port) = (free_port(), free_port());
    let listeners = format!(
        "    - name: http\n      port: {http_port}\n      protocol: HTTP\n\
         \x20   - name: tcp\n      port: {tcp_port}\n      protocol: TCP\n"
    );
    let tcp_route = r#"apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata: {name: tcp, namespace: default}
spec:
  parentRefs: [{name: gw, sectionName: tcp}]
  rules:
    - backendRefs: [{name: tcp-backend, port: 9000}]
"#;
    // A short delay that ends by itself: every check below waits for an event that comes
    // after it, however slow the machine.
    let mut proxy = Proxy::start_ready(
        &[
            (
                "gateway.yaml",
                &gateway_with_listeners_yaml("gw", &listeners),
            ),
            ("services.yaml", &services),
            (
                "tcp-backend.yaml",
                &service_yaml("default", "tcp-backend", 9000, &[tcp_backend]),
            ),
            ("route.yaml", &route()),
            ("tcp-route.yaml", tcp_route),
        ],
        // A drain timeout longer than any wait below: a connection the drain did not close
        // would outlast the test's patience.
        &["--drain-delay", "1s", "--drain-timeout", "60s"],
    )
    .await;
    let http_addr = SocketAddr::from(([127, 0, 0, 1], http_port));

    let mut ws = websocket(http_addr).await;
    echo_once(&mut ws, "open").await;
    let mut tcp = BufReader::new(
        TcpStream::connect(("127.0.0.1", tcp_port))
            .await
            .expect("connect to the TCP listener"),
    );
    let mut greeting = String::new();
    tcp.read_line(&mut greeting).await.expect("greeting");
    assert_eq!(greeting, "tcp-backend\n");
    let stream = TcpStream::connect(http_addr).await.expect("connect");
    let (mut h2, h2_connection) = hyper::client::conn::http2::handshake::<_, _, Full<Bytes>>(
        TokioExecutor::new(),
        TokioIo::new(stream),
    )
    .await
    .expect("HTTP/2 handshake");
    let h2_connection = tokio::spawn(h2_connection);
    let request = http::Request::get(format!("http://{HOST}/h2"))
        .body(Full::default())
        .expect("request");
    let response = h2.send_request(request).await.expect("HTTP/2 request");
    assert_eq!(response.status(), 200);

    proxy.terminate();
    unready(&proxy).await;
    // GOAWAY: the HTTP/2 connection ends without an error.
    tokio::time::timeout(Duration::from_secs(15), h2_connection)
        .await
        .expect("the HTTP/2 connection ends within the drain timeout")
        .expect("task")
        .expect("the HTTP/2 connection ends cleanly (GOAWAY)");
    // The TCP route's connection sees end-of-stream, not a reset.
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(15), tcp.read_to_end(&mut rest))
        .await
        .expect("the TCP connection is closed within the drain timeout")
        .expect("closed with end-of-stream");
    drop(tcp);
    closed_cleanly(&mut ws).await;
    drop(ws);
    exits_cleanly(&mut proxy).await;
    let log = proxy.log();
    let delay_over = log
        .find("drain delay over")
        .expect("the delay ended by itself");
    let closing = log
        .find("draining (2/2)")
        .expect("the closing phase is logged");
    assert!(delay_over < closing, "{log}");
    assert!(!log.contains("second stop request"), "{log}");
}
