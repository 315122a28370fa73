//! TLSRoute over real TLS: passthrough by SNI to backends that terminate TLS themselves,
//! terminate at the proxy to a plain TCP backend, and both modes on one port.

use std::net::SocketAddr;
use std::time::Duration;

use gantry_testkit::certs::{Ca, Leaf, tls_secret_yaml};
use gantry_testkit::harness::{Proxy, free_port, gateway_with_listeners_yaml, service_yaml};
use gantry_testkit::stream_echo;
use gantry_testkit::tls_client::TlsClient;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::time::timeout;

/// A TLS listener `name` on `port` for `hostname`, in `mode`.
fn listener(name: &str, port: u16, hostname: &str, mode: &str) -> String {
    let certs = if mode == "Terminate" {
        "\n        certificateRefs: [{name: gateway-cert}]"
    } else {
        ""
    };
    format!(
        r#"    - name: {name}
      port: {port}
      protocol: TLS
      hostname: "{hostname}"
      tls:
        mode: {mode}{certs}
"#
    )
}

fn gateway(listeners: &[String]) -> String {
    gateway_with_listeners_yaml("gw", &listeners.concat())
}

/// A TLSRoute `name` for `hostname` to Service `service` port 9000.
fn tls_route(name: &str, hostname: &str, service: &str) -> String {
    format!(
        r#"---
apiVersion: gateway.networking.k8s.io/v1
kind: TLSRoute
metadata: {{name: {name}, namespace: default}}
spec:
  parentRefs: [{{name: gw}}]
  hostnames: ["{hostname}"]
  rules:
    - backendRefs: [{{name: {service}, port: 9000}}]
"#
    )
}

/// A TLS client trusting `ca` that offers no ALPN protocol (the bytes are not HTTP).
fn client(ca: &Ca) -> TlsClient {
    TlsClient::new(ca.roots()).alpn(&[])
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Connects with `sni`, checks the certificate the client sees is `expected`'s, and returns
/// the greeting of the backend behind it after an echo round trip.
async fn greeting_over_tls(port: u16, sni: &str, ca: &Ca, expected: &Leaf) -> String {
    let connected = client(ca)
        .connect(addr(port), sni)
        .await
        .unwrap_or_else(|e| panic!("TLS to {sni}: {e}"));
    assert_eq!(
        connected.server_certificate(),
        expected.chain().into_iter().next(),
        "certificate seen for {sni}"
    );
    let mut reader = BufReader::new(connected.stream);
    let mut line = String::new();
    timeout(Duration::from_secs(5), reader.read_line(&mut line))
        .await
        .expect("greeting within 5 s")
        .expect("reading the greeting");
    reader
        .get_mut()
        .write_all(b"ping\n")
        .await
        .expect("writing over TLS");
    let mut echo = String::new();
    timeout(Duration::from_secs(5), reader.read_line(&mut echo))
        .await
        .expect("echo within 5 s")
        .expect("reading the echo");
    assert_eq!(echo, "ping\n");
    line.trim_end().to_owned()
}

#[tokio::test]
async fn tls_passthrough_routes_by_sni_and_the_client_sees_the_backends_certificate() {
    let ca = Ca::new("backends");
    let alpha_cert = ca.server(&["alpha.example.com"]);
    let beta_cert = ca.server(&["beta.example.com"]);
    let (alpha, _a) = stream_echo::spawn_tls("alpha", &alpha_cert).await;
    let (beta, _b) = stream_echo::spawn_tls("beta", &beta_cert).await;
    let port = free_port();
    let config = format!(
        "{}---\n{}---\n{}{}",
        gateway(&[listener("tls", port, "*.example.com", "Passthrough")]),
        service_yaml("default", "alpha", 9000, &[alpha]),
        service_yaml("default", "beta", 9000, &[beta]),
        [
            tls_route("alpha", "alpha.example.com", "alpha"),
            tls_route("beta", "beta.example.com", "beta")
        ]
        .concat()
    );
    let proxy = Proxy::start_ready(&[("config.yaml", &config)], &[]).await;
    for _ in 0..3 {
        assert_eq!(
            greeting_over_tls(port, "alpha.example.com", &ca, &alpha_cert).await,
            "alpha"
        );
        assert_eq!(
            greeting_over_tls(port, "beta.example.com", &ca, &beta_cert).await,
            "beta"
        );
    }
    // No route for the name: the connection is closed before any handshake completes, and
    // counted.
    assert!(
        client(&ca)
            .connect(addr(port), "gamma.example.com")
            .await
            .is_err()
    );
    let metrics = gantry_testkit::harness::get(&format!("http://{}/metrics", proxy.admin))
        .await
        .expect("GET /metrics")
        .text();
    assert!(
        metrics.contains("gantry_l4_connections_rejected_total 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn tls_terminate_forwards_the_decrypted_stream_to_a_tcp_backend() {
    let ca = Ca::new("gateway");
    let gateway_cert = ca.server(&["*.example.com"]);
    let (plain, _p) = stream_echo::spawn_tcp("plain").await;
    let port = free_port();
    let config = format!(
        "{}---\n{}---\n{}{}",
        gateway(&[listener("tls", port, "*.example.com", "Terminate")]),
        tls_secret_yaml("default", "gateway-cert", &gateway_cert),
        service_yaml("default", "plain", 9000, &[plain]),
        tls_route("plain", "rtmp.example.com", "plain"),
    );
    let _proxy = Proxy::start_ready(&[("config.yaml", &config)], &[]).await;
    assert_eq!(
        greeting_over_tls(port, "rtmp.example.com", &ca, &gateway_cert).await,
        "plain"
    );
}

#[tokio::test]
async fn tls_passthrough_and_terminate_listeners_share_one_port() {
    let ca = Ca::new("mixed");
    let gateway_cert = ca.server(&["rtmp.example.com"]);
    let direct_cert = ca.server(&["direct.example.com"]);
    let (direct, _d) = stream_echo::spawn_tls("direct", &direct_cert).await;
    let (plain, _p) = stream_echo::spawn_tcp("plain").await;
    let port = free_port();
    let config = format!(
        "{}---\n{}---\n{}---\n{}{}",
        gateway(&[
            listener("terminate", port, "rtmp.example.com", "Terminate"),
            listener("passthrough", port, "direct.example.com", "Passthrough"),
        ]),
        tls_secret_yaml("default", "gateway-cert", &gateway_cert),
        service_yaml("default", "direct", 9000, &[direct]),
        service_yaml("default", "plain", 9000, &[plain]),
        [
            tls_route("direct", "direct.example.com", "direct"),
            tls_route("rtmp", "rtmp.example.com", "plain")
        ]
        .concat(),
    );
    let proxy = Proxy::start_ready(&[("config.yaml", &config)], &[]).await;
    assert_eq!(
        greeting_over_tls(port, "direct.example.com", &ca, &direct_cert).await,
        "direct"
    );
    assert_eq!(
        greeting_over_tls(port, "rtmp.example.com", &ca, &gateway_cert).await,
        "plain"
    );
    let status = proxy.status().await;
    let gw = status
        .as_array()
        .expect("status is a list")
        .iter()
        .find(|s| s["kind"] == "Gateway")
        .expect("Gateway status");
    for l in gw["status"]["listeners"].as_array().expect("listeners") {
        let conflicted = l["conditions"]
            .as_array()
            .expect("conditions")
            .iter()
            .find(|c| c["type"] == "Conflicted")
            .expect("Conflicted condition");
        assert_eq!(conflicted["status"], "False", "{l}");
    }
}
