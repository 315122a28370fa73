//! BackendTLSPolicy on L4 routes, over real sockets: TCPRoute and TLSRoute in `Terminate` mode
//! re-encrypt to a backend that requires TLS, a client certificate and the policy's SNI; a
//! backend that does not verify closes the client, and the log and metrics say why; TLSRoute
//! in `Passthrough` mode leaves the client's own TLS alone.

use std::net::SocketAddr;
use std::time::Duration;

use gantry_testkit::certs::{Ca, ca_config_map_yaml, tls_secret_yaml};
use gantry_testkit::harness::{Proxy, free_port, gateway_with_listeners_yaml, service_yaml};
use gantry_testkit::stream_echo::{TlsBackend, TlsGreeting, spawn_tls_backend};
use gantry_testkit::tls_client::TlsClient;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// The policy's hostname: the SNI the proxy sends, and the name the backend certificate holds.
const BACKEND_NAME: &str = "db.internal";
/// The name clients ask the Gateway's TLS listeners for.
const HOST: &str = "db.example.com";

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A Gateway `gw` with a TCP listener on `tcp`, a TLS listener on `tls` in `mode` for
/// `*.example.com`, and, with `client_certificate`, a backend client certificate.
fn gateway(tcp: u16, tls: u16, mode: &str, client_certificate: bool) -> String {
    let certs = if mode == "Terminate" {
        "\n        certificateRefs: [{name: gateway-cert}]"
    } else {
        ""
    };
    let listeners = format!(
        r#"    - name: tcp
      port: {tcp}
      protocol: TCP
    - name: tls
      port: {tls}
      protocol: TLS
      hostname: "*.example.com"
      tls:
        mode: {mode}{certs}
"#
    );
    let mut yaml = gateway_with_listeners_yaml("gw", &listeners);
    if client_certificate {
        yaml.push_str("  tls:\n    backend:\n      clientCertificateRef: {name: gateway-client}\n");
    }
    yaml
}

/// A TCPRoute and a TLSRoute (for [`HOST`]) to Service `db` port 9000, and a BackendTLSPolicy
/// for `db` trusting ConfigMap `ca_map`.
fn routes_and_policy(ca_map: &str) -> String {
    format!(
        r#"---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata: {{name: db, namespace: default}}
spec:
  parentRefs: [{{name: gw, sectionName: tcp}}]
  rules:
    - backendRefs: [{{name: db, port: 9000}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: TLSRoute
metadata: {{name: db, namespace: default}}
spec:
  parentRefs: [{{name: gw, sectionName: tls}}]
  hostnames: ["{HOST}"]
  rules:
    - backendRefs: [{{name: db, port: 9000}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: BackendTLSPolicy
metadata: {{name: db, namespace: default}}
spec:
  targetRefs: [{{group: "", kind: Service, name: db}}]
  validation:
    hostname: {BACKEND_NAME}
    caCertificateRefs: [{{group: "", kind: ConfigMap, name: {ca_map}}}]
"#
    )
}

/// Reads the backend's greeting line, or `None` when the connection closes first.
async fn read_greeting<S: AsyncRead + Unpin>(reader: &mut BufReader<S>) -> Option<TlsGreeting> {
    let mut line = String::new();
    let read = timeout(Duration::from_secs(10), reader.read_line(&mut line))
        .await
        .expect("a greeting or a close within 10 s");
    match read {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(TlsGreeting::parse(&line).unwrap_or_else(|| panic!("greeting {line:?}"))),
    }
}

/// Sends `ping`, half-closes, and expects exactly `ping` back, then the backend's close.
async fn echo_round_trip<S: AsyncRead + AsyncWrite + Unpin>(mut reader: BufReader<S>) {
    reader.get_mut().write_all(b"ping").await.expect("sending");
    reader.get_mut().shutdown().await.expect("half-closing");
    let mut rest = Vec::new();
    timeout(Duration::from_secs(10), reader.read_to_end(&mut rest))
        .await
        .expect("the echo and a close within 10 s")
        .expect("reading the echo");
    assert_eq!(rest, b"ping");
}

/// The conditions of the policy's one ancestor, `default/gw`.
async fn policy_conditions(proxy: &Proxy) -> Vec<Value> {
    let statuses = proxy.status().await;
    let policy = statuses
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["kind"] == "BackendTLSPolicy")
        .unwrap_or_else(|| panic!("no BackendTLSPolicy status: {statuses:#}"));
    let ancestors = policy["status"]["ancestors"].as_array().expect("ancestors");
    assert_eq!(ancestors.len(), 1, "{policy:#}");
    assert_eq!(ancestors[0]["ancestorRef"]["name"], "gw");
    ancestors[0]["conditions"]
        .as_array()
        .expect("conditions")
        .clone()
}

fn accepted(conditions: &[Value]) -> &Value {
    conditions
        .iter()
        .find(|c| c["type"] == "Accepted")
        .expect("Accepted condition")
}

/// TCPRoute and TLSRoute (Terminate) reach a backend that requires TLS, the policy's SNI and a
/// client certificate: the proxy verifies it against the policy's CA, sends no ALPN, presents
/// the Gateway's client certificate, and the bytes flow both ways, half-close included.
#[tokio::test]
async fn tcp_and_terminated_tls_routes_reach_a_tls_backend_with_verified_tls() {
    let backend_ca = Ca::new("backend CA");
    let client_ca = Ca::new("gateway client CA");
    let gateway_ca = Ca::new("gateway CA");
    let backend_cert = backend_ca.server(&[BACKEND_NAME]);
    let (backend, _task) = spawn_tls_backend(TlsBackend {
        name: "db",
        leaf: &backend_cert,
        client_ca: Some(&client_ca),
        require_sni: Some(BACKEND_NAME),
    })
    .await;
    let (tcp_port, tls_port) = (free_port(), free_port());
    let config = format!(
        "{}---\n{}---\n{}---\n{}---\n{}{}",
        gateway(tcp_port, tls_port, "Terminate", true),
        tls_secret_yaml(
            "default",
            "gateway-cert",
            &gateway_ca.server(&["*.example.com"])
        ),
        tls_secret_yaml(
            "default",
            "gateway-client",
            &client_ca.client("gantry-gateway")
        ),
        ca_config_map_yaml("default", "backend-ca", &backend_ca.cert_pem),
        service_yaml("default", "db", 9000, &[backend]),
        routes_and_policy("backend-ca"),
    );
    let proxy = Proxy::start_ready(&[("config.yaml", &config)], &[]).await;

    let tcp = TcpStream::connect(addr(tcp_port))
        .await
        .expect("connecting to the TCP listener");
    let mut reader = BufReader::new(tcp);
    let greeting = read_greeting(&mut reader)
        .await
        .unwrap_or_else(|| panic!("TCPRoute: closed\n{}", proxy.log()));
    assert_eq!(greeting.name, "db");
    assert_eq!(greeting.tls.sni.as_deref(), Some(BACKEND_NAME));
    assert_eq!(greeting.tls.alpn, None);
    assert_eq!(
        greeting.tls.client_subject.as_deref(),
        Some("CN=gantry-gateway")
    );
    echo_round_trip(reader).await;

    let connected = TlsClient::new(gateway_ca.roots())
        .alpn(&[])
        .connect(addr(tls_port), HOST)
        .await
        .expect("TLS to the Gateway");
    let mut reader = BufReader::new(connected.stream);
    let greeting = read_greeting(&mut reader)
        .await
        .unwrap_or_else(|| panic!("TLSRoute: closed\n{}", proxy.log()));
    assert_eq!(greeting.name, "db");
    assert_eq!(
        greeting.tls.sni.as_deref(),
        Some(BACKEND_NAME),
        "the policy's hostname, not the client's SNI"
    );
    assert_eq!(greeting.tls.alpn, None);
    assert_eq!(
        greeting.tls.client_subject.as_deref(),
        Some("CN=gantry-gateway")
    );
    echo_round_trip(reader).await;

    proxy.wait_metric("gantry_l4_connections_total", 2.0).await;
    let conditions = policy_conditions(&proxy).await;
    let accepted = accepted(&conditions);
    assert_eq!(accepted["status"], "True", "{accepted:#}");
    assert_eq!(
        accepted["message"],
        "Policy is accepted; connections to its targets use TLS"
    );
}

/// A backend whose certificate does not chain to the policy's CA: TCP and terminated TLS
/// clients see their connection closed without a byte from the backend, never plaintext; the
/// log names the cluster and the reason, and the metrics count it by reason.
#[tokio::test]
async fn a_backend_that_does_not_verify_closes_the_client_and_says_why() {
    let backend_ca = Ca::new("backend CA");
    let other_ca = Ca::new("some other CA");
    let gateway_ca = Ca::new("gateway CA");
    let (backend, _task) = spawn_tls_backend(TlsBackend {
        name: "db",
        leaf: &backend_ca.server(&[BACKEND_NAME]),
        client_ca: None,
        require_sni: None,
    })
    .await;
    let (tcp_port, tls_port) = (free_port(), free_port());
    let config = format!(
        "{}---\n{}---\n{}---\n{}{}",
        gateway(tcp_port, tls_port, "Terminate", false),
        tls_secret_yaml(
            "default",
            "gateway-cert",
            &gateway_ca.server(&["*.example.com"])
        ),
        ca_config_map_yaml("default", "other-ca", &other_ca.cert_pem),
        service_yaml("default", "db", 9000, &[backend]),
        routes_and_policy("other-ca"),
    );
    let proxy = Proxy::start_ready(&[("config.yaml", &config)], &[]).await;

    let tcp = TcpStream::connect(addr(tcp_port))
        .await
        .expect("connecting to the TCP listener");
    assert_eq!(read_greeting(&mut BufReader::new(tcp)).await, None);

    let connected = TlsClient::new(gateway_ca.roots())
        .alpn(&[])
        .connect(addr(tls_port), HOST)
        .await
        .expect("the Gateway's own handshake succeeds");
    assert_eq!(
        read_greeting(&mut BufReader::new(connected.stream)).await,
        None
    );

    proxy
        .wait_metric(
            "gantry_l4_backend_tls_errors_total{reason=\"unknown_issuer\"}",
            2.0,
        )
        .await;
    proxy
        .wait_metric("gantry_l4_connections_rejected_total", 2.0)
        .await;
    assert_eq!(proxy.metric("gantry_l4_connections_total").await, 0.0);
    let log = proxy.log();
    assert!(
        log.contains("TLS handshake with the backend failed")
            && log.contains("default/db:9000")
            && log.contains("UnknownIssuer"),
        "{log}"
    );
    // The policy itself is fine: the backend is what does not verify.
    assert_eq!(accepted(&policy_conditions(&proxy).await)["status"], "True");
}

/// TLSRoute in `Passthrough` mode: the client's TLS reaches the backend untouched (it sees the
/// backend's certificate and its own SNI arrives), though a policy covers the Service; the
/// policy lists the Gateway and says it originates nothing there.
#[tokio::test]
async fn passthrough_leaves_the_clients_tls_alone_and_the_policy_says_so() {
    let backend_ca = Ca::new("backend CA");
    let backend_cert = backend_ca.server(&[HOST]);
    let (backend, _task) = spawn_tls_backend(TlsBackend {
        name: "db",
        leaf: &backend_cert,
        client_ca: None,
        require_sni: Some(HOST),
    })
    .await;
    let (tcp_port, tls_port) = (free_port(), free_port());
    let tls_route_only = routes_and_policy("backend-ca")
        .split("---\n")
        .filter(|doc| !doc.contains("kind: TCPRoute"))
        .collect::<Vec<_>>()
        .join("---\n");
    let config = format!(
        "{}---\n{}---\n{}{}",
        gateway(tcp_port, tls_port, "Passthrough", false),
        ca_config_map_yaml("default", "backend-ca", &backend_ca.cert_pem),
        service_yaml("default", "db", 9000, &[backend]),
        tls_route_only,
    );
    let proxy = Proxy::start_ready(&[("config.yaml", &config)], &[]).await;

    let connected = TlsClient::new(backend_ca.roots())
        .alpn(&[])
        .connect(addr(tls_port), HOST)
        .await
        .unwrap_or_else(|e| panic!("TLS through to the backend: {e}\n{}", proxy.log()));
    assert_eq!(
        connected.server_certificate(),
        backend_cert.chain().into_iter().next(),
        "the client talks TLS with the backend itself"
    );
    let mut reader = BufReader::new(connected.stream);
    let greeting = read_greeting(&mut reader).await.expect("greeting");
    assert_eq!(greeting.tls.sni.as_deref(), Some(HOST), "the client's SNI");
    echo_round_trip(reader).await;

    let conditions = policy_conditions(&proxy).await;
    let accepted = accepted(&conditions);
    assert_eq!(accepted["status"], "True", "{accepted:#}");
    assert!(
        accepted["message"]
            .as_str()
            .is_some_and(|m| m.contains("only through TLS Passthrough listeners")),
        "{accepted:#}"
    );
}
