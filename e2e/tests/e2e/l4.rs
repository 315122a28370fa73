//! L4 routes over real sockets: TCPRoute (weights, half-close, rejection, configuration
//! changes), UDPRoute (per-client sessions, idle expiry) and listener status for route kinds.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use gantry_testkit::harness::{Proxy, free_port, gateway_with_listeners_yaml, service_yaml};
use gantry_testkit::stream_echo;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::timeout;

/// A Gateway `gw` with one listener of `protocol` on `port`.
fn gateway(protocol: &str, port: u16) -> String {
    gateway_with_listeners_yaml(
        "gw",
        &format!("    - name: l4\n      port: {port}\n      protocol: {protocol}\n"),
    )
}

/// A TCPRoute or UDPRoute `name` on `gw` with `(service, weight)` backends on port 9000.
fn route(kind: &str, name: &str, backends: &[(&str, u32)]) -> String {
    let refs: String = backends
        .iter()
        .map(|(svc, weight)| format!("        - {{name: {svc}, port: 9000, weight: {weight}}}\n"))
        .collect();
    format!(
        r#"apiVersion: gateway.networking.k8s.io/v1alpha2
kind: {kind}
metadata: {{name: {name}, namespace: default}}
spec:
  parentRefs: [{{name: gw}}]
  rules:
    - backendRefs:
{refs}"#
    )
}

/// Opens a connection through the proxy and reads the backend's greeting line.
async fn greeting(port: u16) -> (String, BufReader<TcpStream>) {
    let stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connecting to the TCP listener");
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    timeout(Duration::from_secs(5), reader.read_line(&mut line))
        .await
        .expect("greeting within 5 s")
        .expect("reading the greeting");
    (line.trim_end().to_owned(), reader)
}

async fn tcp_backends(names: &[&str]) -> (String, Vec<SocketAddr>) {
    let mut yaml = String::new();
    let mut addrs = Vec::new();
    for name in names {
        let (addr, _task) = stream_echo::spawn_tcp(name).await;
        yaml.push_str("---\n");
        yaml.push_str(&service_yaml("default", name, 9000, &[addr]));
        addrs.push(addr);
    }
    (yaml, addrs)
}

#[tokio::test]
async fn tcp_route_splits_connections_by_weight() {
    let (services, _) = tcp_backends(&["heavy", "light"]).await;
    let port = free_port();
    let _proxy = Proxy::start_ready(
        &[
            ("gateway.yaml", &gateway("TCP", port)),
            ("services.yaml", &services),
            (
                "route.yaml",
                &route("TCPRoute", "split", &[("heavy", 3), ("light", 1)]),
            ),
        ],
        &[],
    )
    .await;
    let mut seen: HashMap<String, u32> = HashMap::new();
    for _ in 0..400 {
        let (name, _) = greeting(port).await;
        *seen.entry(name).or_default() += 1;
    }
    let heavy = seen.get("heavy").copied().unwrap_or(0);
    let light = seen.get("light").copied().unwrap_or(0);
    assert_eq!(heavy + light, 400, "only the two backends answer: {seen:?}");
    // 3:1 is 300:100; the tolerance keeps a fair coin from failing the test.
    assert!((240..=360).contains(&heavy), "weights 3:1 gave {seen:?}");
}

#[tokio::test]
async fn tcp_half_close_reaches_the_backend_and_the_reply_still_arrives() {
    let (services, _) = tcp_backends(&["echo"]).await;
    let port = free_port();
    let _proxy = Proxy::start_ready(
        &[
            ("gateway.yaml", &gateway("TCP", port)),
            ("services.yaml", &services),
            ("route.yaml", &route("TCPRoute", "echo", &[("echo", 1)])),
        ],
        &[],
    )
    .await;
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connecting to the TCP listener");
    let payload = vec![b'x'; 256 * 1024];
    stream.write_all(&payload).await.expect("sending");
    // The client is done sending; the backend sees EOF, finishes echoing and closes.
    stream.shutdown().await.expect("half-closing");
    let mut received = Vec::new();
    timeout(Duration::from_secs(10), stream.read_to_end(&mut received))
        .await
        .expect("the backend closes after the client's half-close")
        .expect("reading the echo");
    assert_eq!(&received[..5], b"echo\n");
    assert_eq!(received.len(), 5 + payload.len());
}

#[tokio::test]
async fn tcp_connections_to_an_invalid_backend_share_are_closed_and_counted() {
    let (services, _) = tcp_backends(&["good"]).await;
    let port = free_port();
    let proxy = Proxy::start_ready(
        &[
            ("gateway.yaml", &gateway("TCP", port)),
            ("services.yaml", &services),
            (
                "route.yaml",
                &route("TCPRoute", "half", &[("good", 1), ("missing", 1)]),
            ),
        ],
        &[],
    )
    .await;
    let (mut good, mut closed) = (0, 0);
    for _ in 0..200 {
        let mut stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connecting to the TCP listener");
        let mut buf = Vec::new();
        let mut reader = BufReader::new(&mut stream);
        let n = timeout(Duration::from_secs(5), reader.read_until(b'\n', &mut buf))
            .await
            .expect("an answer or a close within 5 s")
            .unwrap_or(0);
        if n == 0 {
            closed += 1;
        } else {
            assert_eq!(buf, b"good\n");
            good += 1;
        }
    }
    assert!(
        (60..=140).contains(&closed),
        "1:1 gave {good} served and {closed} closed"
    );
    proxy
        .wait_metric("gantry_l4_connections_rejected_total", f64::from(closed))
        .await;
    let status = proxy.status().await;
    let route = status
        .as_array()
        .expect("status is a list")
        .iter()
        .find(|s| s["kind"] == "TCPRoute")
        .expect("TCPRoute status");
    let conditions = &route["status"]["parents"][0]["conditions"];
    assert_eq!(conditions[1]["type"], "ResolvedRefs");
    assert_eq!(conditions[1]["reason"], "BackendNotFound");
}

#[tokio::test]
async fn tcp_connection_keeps_its_backend_across_a_configuration_change() {
    let (services, _) = tcp_backends(&["old", "new"]).await;
    let port = free_port();
    let proxy = Proxy::start_ready(
        &[
            ("gateway.yaml", &gateway("TCP", port)),
            ("services.yaml", &services),
            ("route.yaml", &route("TCPRoute", "r", &[("old", 1)])),
        ],
        &[],
    )
    .await;
    let (name, mut established) = greeting(port).await;
    assert_eq!(name, "old");
    let version = proxy.version().await;
    proxy.write("route.yaml", &route("TCPRoute", "r", &[("new", 1)]));
    proxy.wait_version_above(version).await;

    // New connections use the new configuration...
    let (name, _) = greeting(port).await;
    assert_eq!(name, "new");
    // ...and the established one still talks to its backend.
    established
        .write_all(b"still here\n")
        .await
        .expect("writing on the established connection");
    let mut line = String::new();
    timeout(Duration::from_secs(5), established.read_line(&mut line))
        .await
        .expect("echo within 5 s")
        .expect("reading the echo");
    assert_eq!(line, "still here\n");
}

#[tokio::test]
async fn udp_route_keeps_a_session_per_client_and_expires_idle_ones() {
    let (addr, _task) = stream_echo::spawn_udp("dns").await;
    let port = free_port();
    let proxy = Proxy::start_ready(
        &[
            ("gateway.yaml", &gateway("UDP", port)),
            (
                "services.yaml",
                &service_yaml("default", "dns", 9000, &[addr]),
            ),
            ("route.yaml", &route("UDPRoute", "dns", &[("dns", 1)])),
        ],
        &["--udp-session-idle-timeout", "300ms"],
    )
    .await;
    let mut clients = Vec::new();
    for i in 0..3 {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("UDP client");
        socket
            .connect(("127.0.0.1", port))
            .await
            .expect("UDP connect");
        clients.push((i, socket));
    }
    // Each client gets the replies to its own datagrams, twice over one session.
    for round in 0..2 {
        for (i, socket) in &clients {
            let message = format!("client {i} round {round}");
            socket.send(message.as_bytes()).await.expect("UDP send");
            let mut buf = [0u8; 256];
            let len = timeout(Duration::from_secs(5), socket.recv(&mut buf))
                .await
                .expect("a reply within 5 s")
                .expect("UDP receive");
            assert_eq!(
                String::from_utf8_lossy(&buf[..len]).into_owned(),
                format!("dns:{message}")
            );
        }
    }
    assert_eq!(proxy.metric("gantry_udp_sessions_total").await, 3.0);
    // Idle for longer than the timeout: every session closes.
    proxy.wait_metric("gantry_udp_sessions_active", 0.0).await;
    assert_eq!(proxy.metric("gantry_udp_sessions_expired_total").await, 3.0);

    // A client that comes back gets a new session and its replies.
    let (_, socket) = &clients[0];
    socket.send(b"again").await.expect("UDP send");
    let mut buf = [0u8; 64];
    let len = timeout(Duration::from_secs(5), socket.recv(&mut buf))
        .await
        .expect("a reply within 5 s")
        .expect("UDP receive");
    assert_eq!(&buf[..len], b"dns:again");
    assert_eq!(proxy.metric("gantry_udp_sessions_total").await, 4.0);
}

#[tokio::test]
async fn status_reports_a_route_kind_the_listener_does_not_allow() {
    let port = free_port();
    let gateway = gateway_with_listeners_yaml(
        "gw",
        &format!(
            r#"    - name: tcp
      port: {port}
      protocol: TCP
      allowedRoutes:
        kinds: [{{kind: UDPRoute}}]
    - name: udp
      port: {}
      protocol: UDP
"#,
            free_port()
        ),
    );
    let proxy = Proxy::start_ready(
        &[
            ("gateway.yaml", &gateway),
            (
                "route.yaml",
                &route("TCPRoute", "raw", &[("svc", 1)]).replace(
                    "parentRefs: [{name: gw}]",
                    "parentRefs: [{name: gw, sectionName: tcp}]",
                ),
            ),
        ],
        &[],
    )
    .await;
    let status = proxy.status().await;
    let statuses = status.as_array().expect("status is a list");
    let gw = statuses
        .iter()
        .find(|s| s["kind"] == "Gateway")
        .expect("Gateway status");
    let tcp = &gw["status"]["listeners"][0];
    assert_eq!(tcp["name"], "tcp");
    assert_eq!(tcp["supportedKinds"], serde_json::json!([]));
    let resolved = tcp["conditions"]
        .as_array()
        .expect("listener conditions")
        .iter()
        .find(|c| c["type"] == "ResolvedRefs")
        .expect("ResolvedRefs condition");
    assert_eq!(resolved["status"], "False");
    assert_eq!(resolved["reason"], "InvalidRouteKinds");
    let udp = &gw["status"]["listeners"][1];
    assert_eq!(
        udp["supportedKinds"],
        serde_json::json!([{"group": "gateway.networking.k8s.io", "kind": "UDPRoute"}])
    );
    let route = statuses
        .iter()
        .find(|s| s["kind"] == "TCPRoute")
        .expect("TCPRoute status");
    let accepted = &route["status"]["parents"][0]["conditions"][0];
    assert_eq!(accepted["type"], "Accepted");
    assert_eq!(accepted["status"], "False");
    assert_eq!(accepted["reason"], "NotAllowedByListeners");
}

#[tokio::test]
async fn a_port_moves_from_tcp_to_udp_and_back() {
    let (tcp_addr, _tcp) = stream_echo::spawn_tcp("tcp").await;
    let (udp_addr, _udp) = stream_echo::spawn_udp("udp").await;
    let services = format!(
        "{}---\n{}",
        service_yaml("default", "tcp", 9000, &[tcp_addr]),
        service_yaml("default", "udp", 9000, &[udp_addr])
    );
    let port = free_port();
    let proxy = Proxy::start_ready(
        &[
            ("gateway.yaml", &gateway("TCP", port)),
            ("services.yaml", &services),
            ("tcp.yaml", &route("TCPRoute", "tcp", &[("tcp", 1)])),
            ("udp.yaml", &route("UDPRoute", "udp", &[("udp", 1)])),
        ],
        &[],
    )
    .await;
    let (name, _) = greeting(port).await;
    assert_eq!(name, "tcp");

    let version = proxy.version().await;
    proxy.write("gateway.yaml", &gateway("UDP", port));
    let version = proxy.wait_version_above(version).await;
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("UDP client");
    socket
        .connect(("127.0.0.1", port))
        .await
        .expect("UDP connect");
    socket.send(b"ping").await.expect("UDP send");
    let mut buf = [0u8; 64];
    let len = timeout(Duration::from_secs(5), socket.recv(&mut buf))
        .await
        .expect("a reply within 5 s")
        .expect("UDP receive");
    assert_eq!(&buf[..len], b"udp:ping");
    // The TCP socket of the port is closed once the port is UDP only.
    assert!(TcpStream::connect(("127.0.0.1", port)).await.is_err());

    proxy.write("gateway.yaml", &gateway("TCP", port));
    proxy.wait_version_above(version).await;
    let (name, _) = greeting(port).await;
    assert_eq!(name, "tcp");
}
