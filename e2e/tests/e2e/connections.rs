//! Connections that do nothing, too many connections, and HTTP/2 clients that never read: the
//! proxy closes what is idle or stalled, refuses what is over its limits, and keeps memory,
//! descriptors and upstream connections bounded while the admin port keeps answering.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use gantry_testkit::certs::{Ca, tls_secret_yaml};
use gantry_testkit::harness::{
    Proxy, echo_backends, free_port, gateway_with_listeners_yaml, gateway_yaml, get, service_yaml,
};
use gantry_testkit::tls_client::TlsClient;
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const HOST: &str = "app.example.com";

const ROUTE: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: app, namespace: default}
spec:
  parentRefs: [{name: gw}]
  rules:
    - matches: [{path: {type: PathPrefix, value: /big}}]
      backendRefs: [{name: big, port: 8080}]
    - backendRefs: [{name: app, port: 8080}]
"#;

/// Bytes each `/big` response carries.
const BIG: usize = 1024 * 1024;

/// A backend answering every request with `BIG` bytes, counting its open connections.
async fn big_backend() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let open = Arc::new(AtomicUsize::new(0));
    let count = open.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let count = count.clone();
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let body = vec![b'x'; BIG];
                let mut buf = vec![0u8; 8192];
                let mut head = Vec::new();
                'requests: loop {
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => break 'requests,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    head.clear();
                    let answer = format!("HTTP/1.1 200 OK\r\nContent-Length: {BIG}\r\n\r\n");
                    if stream.write_all(answer.as_bytes()).await.is_err()
                        || stream.write_all(&body).await.is_err()
                    {
                        break;
                    }
                }
                count.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    (addr, open)
}

struct Env {
    proxy: Proxy,
    addr: SocketAddr,
    big_open: Arc<AtomicUsize>,
}

async fn setup(extra_args: &[&str]) -> Env {
    let (services, _) = echo_backends(&[("default", "app")]).await;
    let (big, big_open) = big_backend().await;
    let port = free_port();
    let backends = format!(
        "{services}---\n{}",
        service_yaml("default", "big", 8080, &[big])
    );
    let proxy = Proxy::start_ready(
        &[
            ("gateway.yaml", &gateway_yaml("gw", port)),
            ("backends.yaml", &backends),
            ("route.yaml", ROUTE),
        ],
        extra_args,
    )
    .await;
    Env {
        proxy,
        addr: format!("127.0.0.1:{port}").parse().expect("addr"),
        big_open,
    }
}

/// Reads until the peer closes; fails the test if that takes more than 20 s.
async fn closed_by_peer(stream: &mut (impl AsyncRead + Unpin)) -> Vec<u8> {
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut out)).await;
    assert!(read.is_ok(), "the proxy kept an idle connection open");
    out
}

/// Open descriptors and resident memory (KiB) of the proxy process.
fn fds_and_rss(proxy: &Proxy) -> (usize, u64) {
    let pid = proxy.child.id();
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    (fds, rss)
}

#[tokio::test]
async fn connections_that_do_nothing_are_closed() {
    let ca = Ca::new("idle-ca");
    let leaf = ca.server(&[HOST]);
    let port = free_port();
    let tls_port = free_port();
    let listeners = format!(
        "    - {{name: http, port: {port}, protocol: HTTP}}\n    - name: https\n      port: {tls_port}\n      protocol: HTTPS\n      tls: {{certificateRefs: [{{name: cert}}]}}\n"
    );
    let (services, _) = echo_backends(&[("default", "app")]).await;
    let route = "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: app, namespace: default}\nspec:\n  parentRefs: [{name: gw}]\n  rules:\n    - backendRefs: [{name: app, port: 8080}]\n";
    let proxy = Proxy::start_ready(
        &[
            (
                "gateway.yaml",
                &gateway_with_listeners_yaml("gw", &listeners),
            ),
            ("secret.yaml", &tls_secret_yaml("default", "cert", &leaf)),
            ("backends.yaml", &services),
            ("route.yaml", route),
        ],
        &[
            "--client-header-timeout",
            "300ms",
            "--client-idle-timeout",
            "300ms",
        ],
    )
    .await;
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let tls_addr: SocketAddr = format!("127.0.0.1:{tls_port}").parse().expect("addr");

    // Plain TCP that never sends a byte.
    let mut silent = TcpStream::connect(addr).await.expect("connect");
    assert!(closed_by_peer(&mut silent).await.is_empty());

    // TLS, handshake done, then nothing.
    let mut tls = TlsClient::new(ca.roots())
        .connect(tls_addr, HOST)
        .await
        .expect("handshake")
        .stream;
    closed_by_peer(&mut tls).await;

    // HTTP/1.1 keep-alive after one request.
    let mut keep_alive = TcpStream::connect(addr).await.expect("connect");
    keep_alive
        .write_all(format!("GET / HTTP/1.1\r\nHost: {HOST}\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let answer = String::from_utf8_lossy(&closed_by_peer(&mut keep_alive).await).into_owned();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    // HTTP/2 with no stream: the connection ends (GOAWAY, then close).
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (_sender, connection) = hyper::client::conn::http2::handshake::<_, _, Full<Bytes>>(
        TokioExecutor::new(),
        TokioIo::new(stream),
    )
    .await
    .expect("h2 handshake");
    let ended = tokio::time::timeout(Duration::from_secs(20), connection).await;
    assert!(
        ended.is_ok(),
        "the proxy kept an idle HTTP/2 connection open"
    );

    // The watchdog closed all four (the readiness check's connections may be counted too).
    let idle = "gantry_downstream_connections_closed_total{reason=\"idle\"}";
    assert!(proxy.metric(idle).await >= 4.0);
    // The client sees the HTTP/2 connection end before the proxy's connection task has
    // finished counting it: wait for the gauge rather than read it once.
    proxy
        .wait_metric("gantry_downstream_connections_active", 0.0)
        .await;
}

/// A client that starts a request head and stops is closed after the header timeout, though
/// the idle timeout is far longer: the first head, and the next one on a keep-alive connection
/// that has been answered (between HTTP/1 requests the connection waits for a head).
#[tokio::test]
async fn http1_heads_that_stop_halfway_are_closed_after_the_header_timeout() {
    let env = setup(&[
        "--client-header-timeout",
        "300ms",
        "--client-idle-timeout",
        "300s",
    ])
    .await;
    // The connections of the readiness check are gone (and counted) first.
    env.proxy
        .wait_metric("gantry_downstream_connections_active", 0.0)
        .await;
    let idle = "gantry_downstream_connections_closed_total{reason=\"idle\"}";
    let before = env.proxy.metric(idle).await;

    let mut first = TcpStream::connect(env.addr).await.expect("connect");
    first
        .write_all(b"GET / HTTP/1.1\r\nHo")
        .await
        .expect("write");
    closed_by_peer(&mut first).await;

    let mut next = TcpStream::connect(env.addr).await.expect("connect");
    next.write_all(format!("GET / HTTP/1.1\r\nHost: {HOST}\r\n\r\nGET / HT").as_bytes())
        .await
        .expect("write");
    let answer = String::from_utf8_lossy(&closed_by_peer(&mut next).await).into_owned();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(answer.matches("HTTP/1.1 ").count(), 1, "{answer}");

    // Both were closed by the connection watchdog (counted once each as idle; one whose head
    // had started is dropped at its next tick, if the graceful close does not end it).
    assert_eq!(env.proxy.metric(idle).await - before, 2.0);
}

#[tokio::test]
async fn connections_over_the_limits_are_refused_and_the_admin_port_answers() {
    let env = setup(&["--max-connections-per-listener", "20"]).await;
    let mut held = Vec::new();
    for _ in 0..20 {
        held.push(TcpStream::connect(env.addr).await.expect("connect"));
    }
    env.proxy
        .wait_metric("gantry_downstream_connections_active", 20.0)
        .await;
    // The 21st is closed on accept, before any byte.
    let mut refused = TcpStream::connect(env.addr).await.expect("connect");
    assert!(closed_by_peer(&mut refused).await.is_empty());
    let series = "gantry_downstream_connections_refused_total{reason=\"listener_limit\"}";
    assert_eq!(env.proxy.metric(series).await, 1.0);
    let health = get(&format!("http://{}/healthz", env.proxy.admin))
        .await
        .expect("healthz");
    assert_eq!(health.status, 200);
    // A place freed is a place taken.
    drop(held.pop());
    env.proxy
        .wait_metric("gantry_downstream_connections_active", 19.0)
        .await;
    let mut again = TcpStream::connect(env.addr).await.expect("connect");
    again
        .write_all(
            format!("GET / HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .expect("write");
    let answer = String::from_utf8_lossy(&closed_by_peer(&mut again).await).into_owned();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    // The process-wide limit works the same way.
    let env = setup(&["--max-connections", "2"]).await;
    let _a = TcpStream::connect(env.addr).await.expect("connect");
    let _b = TcpStream::connect(env.addr).await.expect("connect");
    env.proxy
        .wait_metric("gantry_downstream_connections_active", 2.0)
        .await;
    let mut refused = TcpStream::connect(env.addr).await.expect("connect");
    assert!(closed_by_peer(&mut refused).await.is_empty());
    let series = "gantry_downstream_connections_refused_total{reason=\"process_limit\"}";
    assert_eq!(env.proxy.metric(series).await, 1.0);
}

/// HTTP/2 clients that open streams with a zero window and never read: streams per connection
/// are capped (so are the upstream connections they cause), memory stays bounded, and the
/// stalled connections are closed, which frees their upstream connections.
#[tokio::test]
async fn http2_clients_that_never_read_cannot_exhaust_memory() {
    const CONNECTIONS: usize = 10;
    const STREAMS: usize = 200;
    let env = setup(&["--client-stall-timeout", "2s"]).await;
    let (fds_before, _) = fds_and_rss(&env.proxy);
    let mut clients = Vec::new();
    let mut heads = Vec::new();
    for _ in 0..CONNECTIONS {
        let stream = TcpStream::connect(env.addr).await.expect("connect");
        let (sender, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .initial_stream_window_size(0)
            .handshake::<_, Full<Bytes>>(TokioIo::new(stream))
            .await
            .expect("h2 handshake");
        clients.push(tokio::spawn(connection));
        for _ in 0..STREAMS {
            let mut sender = sender.clone();
            heads.push(tokio::spawn(async move {
                let request = http::Request::get(format!("http://{HOST}/big"))
                    .body(Full::default())
                    .expect("request");
                // The response head arrives; its body cannot (the window is zero). The response
                // is kept (in the task's output), so the stream stays open.
                sender.send_request(request).await
            }));
        }
    }
    // Every stream the proxy admitted has its head; the rest wait for a stream slot.
    let limit = CONNECTIONS * 100;
    env.proxy
        .eventually(
            Duration::from_secs(30),
            Duration::from_millis(50),
            || async {
                let done = heads.iter().filter(|h| h.is_finished()).count();
                let open = env.big_open.load(Ordering::SeqCst);
                if done >= limit {
                    Ok(())
                } else {
                    Err(format!("{done} heads, {open} upstream connections"))
                }
            },
        )
        .await;
    let upstream = env.big_open.load(Ordering::SeqCst);
    assert!(
        upstream <= limit,
        "{upstream} upstream connections for {limit} streams"
    );
    let (_, rss) = fds_and_rss(&env.proxy);
    eprintln!("during the attack: {upstream} upstream connections, {rss} KiB resident");
    // 1,000 streams × 16 KiB of send buffer plus their upstream connections' buffers.
    assert!(
        rss < 200 * 1024,
        "resident memory {rss} KiB during the attack"
    );

    // Nothing moves, so the stall timeout closes every attacking connection and with them
    // their upstream connections and descriptors. Wait for the count of stalled closes too: a
    // connection whose upstream answers were already buffered holds no upstream connection and
    // one descriptor, so the other two figures can settle before its stall timeout fires.
    let stalled = "gantry_downstream_connections_closed_total{reason=\"stalled\"}";
    let idle = "gantry_downstream_connections_closed_total{reason=\"idle\"}";
    env.proxy
        .eventually(
            Duration::from_secs(30),
            Duration::from_millis(50),
            || async {
                let open = env.big_open.load(Ordering::SeqCst);
                let (fds, _) = fds_and_rss(&env.proxy);
                let closed = env.proxy.metric(stalled).await;
                if open == 0 && fds <= fds_before + 8 && closed >= CONNECTIONS as f64 {
                    Ok(())
                } else {
                    // What else closed or still holds a connection, should this fail.
                    let idle = env.proxy.metric(idle).await;
                    let active = env
                        .proxy
                        .metric("gantry_downstream_connections_active")
                        .await;
                    let heads = heads.iter().filter(|h| h.is_finished()).count();
                    Err(format!(
                        "{open} upstream connections, {fds} descriptors (before: {fds_before}), \
                         {closed} connections closed as stalled, {idle} as idle, {active} \
                         client connections open, {heads} requests answered or failed"
                    ))
                }
            },
        )
        .await;
    // Each attacking connection is closed once, for stalling, and nothing else is.
    assert_eq!(env.proxy.metric(stalled).await, CONNECTIONS as f64);
    drop(heads);
    drop(clients);
}
