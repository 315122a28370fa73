//! HTTPS listeners as a TLS client sees them: SNI selects the listener and its certificate
//! (exact, wildcard, several certificates), ALPN h2 and http/1.1, TLS 1.2 and 1.3, 421 for a
//! Host of another listener, and bad certificate references shown in /status while the other
//! listeners keep serving.

use std::net::SocketAddr;

use gantry_testkit::certs::{Ca, Leaf, tls_secret_yaml};
use gantry_testkit::harness::{
    Proxy, echo_backends, free_port, gateway_with_listeners_yaml, get, namespace_yaml,
};
use gantry_testkit::tls_client::{HttpOverTls, TlsClient, served_by};
use serde_json::Value;

/// A Gateway with HTTPS listeners on one port, Secrets, routes and echo backends.
struct Https {
    proxy: Proxy,
    addr: SocketAddr,
    port: u16,
    ca: Ca,
    /// The certificates by Secret name, to compare with what a handshake presents.
    leaves: Vec<(&'static str, Leaf)>,
}

fn gateway_yaml(port: u16) -> String {
    let listener = |name: &str, host: &str, secrets: &[(&str, Option<&str>)]| {
        let refs: String = secrets
            .iter()
            .map(|(secret, ns)| match ns {
                Some(ns) => format!("\n          - {{name: {secret}, namespace: {ns}}}"),
                None => format!("\n          - {{kind: Secret, name: {secret}}}"),
            })
            .collect();
        format!(
            "    - name: {name}\n      port: {port}\n      protocol: HTTPS\n      hostname: \"{host}\"\n      allowedRoutes: {{namespaces: {{from: All}}}}\n      tls:\n        certificateRefs:{refs}\n"
        )
    };
    let listeners = [
        listener("wild", "*.example.com", &[("wild", None)]),
        listener("exact", "a.example.com", &[("exact", None)]),
        listener(
            "multi",
            "*.multi.test",
            &[("multi-b", None), ("multi-c", None)],
        ),
        listener(
            "algorithms",
            "alg.example.net",
            &[("alg-ecdsa", None), ("alg-ed25519", None)],
        ),
        listener(
            "granted",
            "granted.example.org",
            &[("shared", Some("certs"))],
        ),
        listener(
            "missing",
            "missing.example.org",
            &[("does-not-exist", None)],
        ),
        listener(
            "forbidden",
            "forbidden.example.org",
            &[("private", Some("private"))],
        ),
    ]
    .concat();
    gateway_with_listeners_yaml("gw", &listeners)
}

fn route(name: &str, section: &str, backend: &str) -> String {
    format!(
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  parentRefs: [{{name: gw, sectionName: {section}}}]\n  rules:\n    - backendRefs: [{{name: {backend}, port: 8080}}]\n"
    )
}

const GRANT: &str = r#"---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {name: gateways-read-certs, namespace: certs}
spec:
  from: [{group: gateway.networking.k8s.io, kind: Gateway, namespace: default}]
  to: [{group: "", kind: Secret}]
"#;

async fn start() -> Https {
    let ca = Ca::new("gantry e2e CA");
    let leaves = vec![
        ("wild", ca.server(&["*.example.com"])),
        ("exact", ca.server(&["a.example.com"])),
        ("multi-b", ca.server(&["b.multi.test"])),
        ("multi-c", ca.server(&["c.multi.test"])),
        ("alg-ecdsa", ca.server(&["alg.example.net"])),
        ("alg-ed25519", ca.server_ed25519(&["alg.example.net"])),
        ("shared", ca.server(&["granted.example.org"])),
        ("private", ca.server(&["forbidden.example.org"])),
    ];
    let mut secrets = String::new();
    for (name, leaf) in &leaves {
        let namespace = match *name {
            "shared" => "certs",
            "private" => "private",
            _ => "default",
        };
        secrets.push_str("---\n");
        secrets.push_str(&tls_secret_yaml(namespace, name, leaf));
    }
    let (services, _) = echo_backends(&[
        ("default", "wild"),
        ("default", "exact"),
        ("default", "multi"),
        ("default", "granted"),
    ])
    .await;
    let routes = [
        route("wild", "wild", "wild"),
        route("exact", "exact", "exact"),
        route("multi", "multi", "multi"),
        route("granted", "granted", "granted"),
    ]
    .concat();
    let namespaces = ["certs", "private"]
        .map(|n| format!("---\n{}", namespace_yaml(n, &[])))
        .concat();
    let port = free_port();
    let proxy = Proxy::start_ready(
        &[
            ("gateway.yaml", &gateway_yaml(port)),
            ("secrets.yaml", &format!("{namespaces}{secrets}{GRANT}")),
            ("services.yaml", &services),
            ("routes.yaml", &routes),
        ],
        &[],
    )
    .await;
    Https {
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        port,
        proxy,
        ca,
        leaves,
    }
}

impl Https {
    fn client(&self) -> TlsClient {
        TlsClient::new(self.ca.roots())
    }

    fn leaf(&self, secret: &str) -> &Leaf {
        &self
            .leaves
            .iter()
            .find(|(name, _)| *name == secret)
            .expect("known secret")
            .1
    }
}

#[tokio::test]
async fn sni_selects_the_listener_and_its_certificate() {
    let gw = start().await;
    let client = gw.client();
    for (sni, backend, secret) in [
        ("a.example.com", "exact", "exact"),
        ("z.example.com", "wild", "wild"),
        ("b.multi.test", "multi", "multi-b"),
        ("c.multi.test", "multi", "multi-c"),
        ("granted.example.org", "granted", "shared"),
    ] {
        // The client checks the certificate against the SNI; each must have been chosen
        // right for the handshake to succeed at all.
        let connection = client
            .connect(gw.addr, sni)
            .await
            .unwrap_or_else(|e| panic!("handshake for {sni}: {e}\n{}", gw.proxy.log()));
        assert_eq!(
            connection.server_certificate(),
            gw.leaf(secret).chain().first().cloned(),
            "certificate for {sni}"
        );
        let mut http = HttpOverTls::open(connection).await.expect("HTTP over TLS");
        let reply = http.get(sni, "/").await.expect("request over TLS");
        assert!(served_by(&reply, backend), "{sni}: {reply:?}");
        assert_eq!(reply.echo().header("x-forwarded-proto"), Some("https"));
    }
}

#[tokio::test]
async fn the_client_signature_algorithms_choose_among_certificates_for_one_name() {
    let gw = start().await;
    let host = "alg.example.net";
    let status = gw.proxy.status().await;
    let listener = listener_status(&status, "algorithms");
    assert_eq!(
        condition(listener, "ResolvedRefs")["status"],
        "True",
        "{listener:#}"
    );
    for (schemes, secret) in [
        (&[rustls::SignatureScheme::ED25519][..], "alg-ed25519"),
        (
            &[rustls::SignatureScheme::ECDSA_NISTP256_SHA256][..],
            "alg-ecdsa",
        ),
        (&[][..], "alg-ecdsa"),
    ] {
        let client = if schemes.is_empty() {
            gw.client()
        } else {
            gw.client().signature_schemes(schemes)
        };
        let connection = client
            .connect(gw.addr, host)
            .await
            .unwrap_or_else(|e| panic!("handshake offering {schemes:?}: {e}"));
        assert_eq!(
            connection.server_certificate(),
            gw.leaf(secret).chain().first().cloned(),
            "offering {schemes:?}"
        );
    }
}

#[tokio::test]
async fn alpn_chooses_http2_or_http1_and_both_tls_versions_work() {
    let gw = start().await;
    let connection = gw
        .client()
        .connect(gw.addr, "a.example.com")
        .await
        .expect("TLS handshake");
    assert_eq!(connection.alpn().as_deref(), Some(&b"h2"[..]));
    let mut h2 = HttpOverTls::open(connection).await.expect("HTTP over TLS");
    assert!(matches!(h2, HttpOverTls::Http2(_)));
    assert!(served_by(
        &h2.get("a.example.com", "/")
            .await
            .expect("request over TLS"),
        "exact"
    ));

    for alpn in [&[&b"http/1.1"[..]][..], &[]] {
        let connection = gw
            .client()
            .alpn(alpn)
            .connect(gw.addr, "a.example.com")
            .await
            .expect("TLS handshake");
        let expected = alpn.first().map(|p| p.to_vec());
        assert_eq!(connection.alpn(), expected);
        let mut h1 = HttpOverTls::open(connection).await.expect("HTTP over TLS");
        assert!(matches!(h1, HttpOverTls::Http1(_)));
        assert!(served_by(
            &h1.get("a.example.com", "/")
                .await
                .expect("request over TLS"),
            "exact"
        ));
    }

    for (version, expected) in [
        (&rustls::version::TLS12, rustls::ProtocolVersion::TLSv1_2),
        (&rustls::version::TLS13, rustls::ProtocolVersion::TLSv1_3),
    ] {
        let connection = gw
            .client()
            .versions(&[version])
            .connect(gw.addr, "z.example.com")
            .await
            .unwrap_or_else(|e| panic!("{expected:?}: {e}"));
        assert_eq!(connection.version(), Some(expected));
        let mut http = HttpOverTls::open(connection).await.expect("HTTP over TLS");
        assert!(served_by(
            &http
                .get("z.example.com", "/")
                .await
                .expect("request over TLS"),
            "wild"
        ));
    }
}

#[tokio::test]
async fn a_host_of_another_listener_is_misdirected() {
    let gw = start().await;
    // The wildcard listener's connection, asked for the exact listener's host (which has a
    // more specific listener, and on HTTP/2 is what connection coalescing would do): 421.
    for alpn in [&b"h2"[..], b"http/1.1"] {
        let connection = gw
            .client()
            .alpn(&[alpn])
            .connect(gw.addr, "z.example.com")
            .await
            .expect("TLS handshake");
        let mut http = HttpOverTls::open(connection).await.expect("HTTP over TLS");
        let reply = http
            .get("a.example.com", "/")
            .await
            .expect("request over TLS");
        assert_eq!(reply.status, 421, "{}", reply.text());
        assert!(reply.header("x-request-id").is_some());
        // The same connection still serves its own hosts.
        let reply = http
            .get("y.example.com", "/")
            .await
            .expect("request over TLS");
        assert!(served_by(&reply, "wild"), "{reply:?}");
    }
    let connection = gw
        .client()
        .connect(gw.addr, "a.example.com")
        .await
        .expect("TLS handshake");
    let mut http = HttpOverTls::open(connection).await.expect("HTTP over TLS");
    // The exact listener does not match the host but another listener does: 421.
    let reply = http
        .get("z.example.com", "/")
        .await
        .expect("request over TLS");
    assert_eq!(reply.status, 421);
    // No listener matches the host: 404.
    let reply = http
        .get("nowhere.example.net", "/")
        .await
        .expect("request over TLS");
    assert_eq!(reply.status, 404);
}

#[tokio::test]
async fn a_server_name_no_listener_takes_is_refused_and_counted() {
    let gw = start().await;
    let error = gw
        .client()
        .connect(gw.addr, "unknown.example.net")
        .await
        .err()
        .expect("no listener for this name");
    assert!(
        error.to_string().contains("UnrecognisedName")
            || error.to_string().contains("unrecognised"),
        "{error}"
    );
    // An IP address sends no SNI, and every listener here has a hostname.
    assert!(gw.client().connect(gw.addr, "127.0.0.1").await.is_err());
    let metrics = get(&format!("http://{}/metrics", gw.proxy.admin))
        .await
        .expect("GET /metrics")
        .text();
    let line = format!(
        "gantry_tls_handshake_errors_total{{port=\"{}\",reason=\"no_listener\"}} 2",
        gw.port
    );
    assert!(metrics.contains(&line), "{line} not in\n{metrics}");
}

/// The status of listener `name` of Gateway `default/gw`.
fn listener_status<'a>(status: &'a Value, name: &str) -> &'a Value {
    status
        .as_array()
        .expect("status list")
        .iter()
        .find(|o| o["kind"] == "Gateway" && o["name"] == "gw")
        .and_then(|g| g["status"]["listeners"].as_array())
        .and_then(|l| l.iter().find(|l| l["name"] == name))
        .unwrap_or_else(|| panic!("no listener {name} in {status:#}"))
}

fn condition<'a>(listener: &'a Value, type_: &str) -> &'a Value {
    listener["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == type_))
        .unwrap_or_else(|| panic!("no {type_} in {listener:#}"))
}

#[tokio::test]
async fn bad_certificate_references_show_in_status_and_others_keep_serving() {
    let gw = start().await;
    let status = gw.proxy.status().await;
    for (name, reason) in [
        ("missing", "InvalidCertificateRef"),
        ("forbidden", "RefNotPermitted"),
    ] {
        let listener = listener_status(&status, name);
        let resolved = condition(listener, "ResolvedRefs");
        assert_eq!(resolved["status"], "False", "{listener:#}");
        assert_eq!(resolved["reason"], reason, "{listener:#}");
        assert_eq!(condition(listener, "Programmed")["status"], "False");
        // The handshake for its name finds no listener to serve it.
        let host = format!("{name}.example.org");
        assert!(gw.client().connect(gw.addr, &host).await.is_err());
    }
    for name in ["wild", "exact", "multi", "granted"] {
        let listener = listener_status(&status, name);
        assert_eq!(condition(listener, "ResolvedRefs")["status"], "True");
        assert_eq!(condition(listener, "Programmed")["status"], "True");
    }
    let reply = gw
        .client()
        .get(gw.addr, "granted.example.org", "granted.example.org", "/")
        .await
        .expect("request over TLS");
    assert!(served_by(&reply, "granted"));
    // No key material reaches /config.
    let config = gw.proxy.config().await.to_string();
    for (_, leaf) in &gw.leaves {
        let body: String = leaf.key_pem.lines().nth(1).unwrap_or_default().to_owned();
        assert!(!config.contains(&body), "a private key is in /config");
    }
    assert!(config.contains("<redacted>"));
}
