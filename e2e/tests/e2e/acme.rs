//! Automatic HTTPS against a real ACME server (Debian's pebble, started by the test kit): the
//! proxy orders the certificate an HTTPS listener names but nobody created, answers the
//! CA's HTTP-01 or TLS-ALPN-01 validation itself, and serves the issued certificate, which a
//! client trusting only pebble's root accepts. A restart reuses the stored certificate, a
//! failed validation shows the CA's words on the listener, and a short-lived certificate is
//! renewed under load with no failed request. `--acme-key-type rsa-2048` gives an RSA
//! certificate, and a ListenerSet's listener gets its certificate as a Gateway's does.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use gantry_testkit::certs::{Ca, tls_secret_yaml};
use gantry_testkit::harness::tempdir::TempDir;
use gantry_testkit::harness::{
    Proxy, echo_backends, free_port, gateway_with_listeners_yaml, get_host, namespace_yaml,
};
use gantry_testkit::pebble::{Pebble, PebbleOptions};
use gantry_testkit::tls_client::{TlsClient, served_by};
use http::StatusCode;
use serde_json::Value;

/// pebble's DNS (pebble-challtestsrv) resolves every name to 127.0.0.1.
const HOST: &str = "app.example.com";

/// A Gateway with an HTTPS listener on `https_port` naming the Secret `app-cert`, which does
/// not exist, an HTTP listener on `http_port` when given, and a route for every path (so a
/// challenge path that reached routing would go to the backend).
fn config(http_port: Option<u16>, https_port: u16, services: &str) -> String {
    let http = http_port.map_or_else(String::new, |port| {
        format!("    - {{name: http, port: {port}, protocol: HTTP}}\n")
    });
    let listeners = format!(
        r#"{http}    - name: https
      port: {https_port}
      protocol: HTTPS
      hostname: {HOST}
      tls:
        certificateRefs: [{{name: app-cert}}]
"#
    );
    let gateway = gateway_with_listeners_yaml("gw", &listeners);
    format!(
        r#"{gateway}---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: app, namespace: default}}
spec:
  parentRefs: [{{name: gw}}]
  rules:
    - matches: [{{path: {{type: PathPrefix, value: /}}}}]
      backendRefs: [{{name: app, port: 8080}}]
---
{services}"#
    )
}

fn acme_args<'a>(pebble: &'a Pebble, dir: &'a TempDir, ca_file: &'a str) -> Vec<String> {
    vec![
        "--acme-directory".into(),
        pebble.directory_url.clone(),
        "--acme-dir".into(),
        dir.path().display().to_string(),
        "--acme-ca-file".into(),
        ca_file.into(),
        "--acme-email".into(),
        "ops@example.com".into(),
    ]
}

fn start(files: &[(&str, &str)], args: &[String]) -> Proxy {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Proxy::start(files, &args)
}

/// The `https` listener's condition of `type_`.
fn https_condition(status: &Value, type_: &str) -> Value {
    let gateway = status
        .as_array()
        .and_then(|a| a.iter().find(|o| o["kind"] == "Gateway"))
        .unwrap_or_else(|| panic!("no Gateway in /status: {status:#}"));
    let listener = gateway["status"]["listeners"]
        .as_array()
        .and_then(|l| l.iter().find(|l| l["name"] == "https"))
        .unwrap_or_else(|| panic!("no https listener: {gateway:#}"));
    listener["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == type_))
        .cloned()
        .unwrap_or_else(|| panic!("no {type_} condition: {listener:#}"))
}

/// Waits until the listener serves a certificate `client` trusts; returns its leaf.
async fn served_certificate(proxy: &Proxy, client: &TlsClient, addr: SocketAddr) -> Vec<u8> {
    proxy
        .eventually(
            Duration::from_secs(60),
            Duration::from_millis(100),
            || async {
                let connected = client
                    .connect(addr, HOST)
                    .await
                    .map_err(|e| format!("no trusted certificate served yet: {e:#}"))?;
                Ok(connected
                    .server_certificate()
                    .expect("a certificate")
                    .as_ref()
                    .to_vec())
            },
        )
        .await
}

#[tokio::test]
async fn http01_orders_the_missing_certificate_and_the_listener_serves_it() {
    let (http_port, https_port) = (free_port(), free_port());
    let pebble = Pebble::start(PebbleOptions::new(http_port, https_port)).await;
    let acme_dir = TempDir::new("gantry-acme");
    let ca_file = pebble.directory_ca_file().display().to_string();
    let (services, _) = echo_backends(&[("default", "app")]).await;
    let proxy = start(
        &[(
            "gateway.yaml",
            &config(Some(http_port), https_port, &services),
        )],
        &acme_args(&pebble, &acme_dir, &ca_file),
    );
    proxy.wait_ready().await;

    let client = TlsClient::new(pebble.issuing_roots().await);
    let addr = SocketAddr::from(([127, 0, 0, 1], https_port));
    served_certificate(&proxy, &client, addr).await;
    let reply = client
        .get(addr, HOST, HOST, "/hello")
        .await
        .expect("HTTPS request");
    assert_eq!(reply.status, StatusCode::OK);
    assert!(served_by(&reply, "app"), "not routed to the backend");

    // The listener is served, and says so.
    let status = proxy.status().await;
    assert_eq!(https_condition(&status, "ResolvedRefs")["status"], "True");
    assert_eq!(https_condition(&status, "Programmed")["status"], "True");
    assert_eq!(
        proxy
            .metric(r#"gantry_acme_orders_total{result="issued"}"#)
            .await,
        1.0
    );
    assert!(
        proxy
            .metric(&format!(
                r#"gantry_acme_certificate_expiry_timestamp_seconds{{secret="default/app-cert",hostname="{HOST}"}}"#
            ))
            .await
            > 0.0
    );

    // The challenge was answered before routing: every path routes to the backend, yet the
    // CA validated. An unknown token still reaches the routes.
    let unknown = get_host(
        &format!("http://127.0.0.1:{http_port}/.well-known/acme-challenge/unknown"),
        HOST,
        &[],
    )
    .await
    .expect("HTTP request");
    assert!(served_by(&unknown, "app"), "an unknown token is routed");

    // Stored 0600 in a 0700 directory; the private key appears nowhere on the admin server.
    let mode =
        |p: &std::path::Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode(acme_dir.path()), 0o700);
    for file in [
        "account.json",
        "certificates/app.example.com.key",
        "certificates/app.example.com.crt",
    ] {
        assert_eq!(mode(&acme_dir.path().join(file)), 0o600, "{file}");
    }
    let key = std::fs::read_to_string(acme_dir.path().join("certificates/app.example.com.key"))
        .expect("stored key");
    let key_body: String = key.lines().filter(|l| !l.starts_with("-----")).collect();
    for path in ["/config", "/status"] {
        let text = proxy.admin_json(path).await.to_string();
        assert!(!text.contains("PRIVATE KEY"), "{path} shows a private key");
        assert!(!text.contains(&key_body[..40]), "{path} shows the key");
    }
}

/// Whether the DER certificate's public key is RSA, and its size in bits.
fn public_key(der: &[u8]) -> (bool, usize) {
    let (_, cert) = x509_parser::parse_x509_certificate(der).expect("leaf parses");
    let key = cert.public_key().parsed().expect("public key");
    (
        matches!(key, x509_parser::public_key::PublicKey::RSA(_)),
        key.key_size(),
    )
}

#[tokio::test]
async fn rsa_2048_keys_give_an_rsa_certificate_served_over_tls() {
    let (http_port, https_port) = (free_port(), free_port());
    let pebble = Pebble::start(PebbleOptions::new(http_port, https_port)).await;
    let acme_dir = TempDir::new("gantry-acme");
    let ca_file = pebble.directory_ca_file().display().to_string();
    let (services, _) = echo_backends(&[("default", "app")]).await;
    let mut args = acme_args(&pebble, &acme_dir, &ca_file);
    args.extend(["--acme-key-type".into(), "rsa-2048".into()]);
    let proxy = start(
        &[(
            "gateway.yaml",
            &config(Some(http_port), https_port, &services),
        )],
        &args,
    );
    proxy.wait_ready().await;

    // Only RSA signature schemes offered: the handshake is signed with the RSA key.
    let client = TlsClient::new(pebble.issuing_roots().await).signature_schemes(&[
        rustls::SignatureScheme::RSA_PSS_SHA256,
        rustls::SignatureScheme::RSA_PKCS1_SHA256,
    ]);
    let addr = SocketAddr::from(([127, 0, 0, 1], https_port));
    let leaf = served_certificate(&proxy, &client, addr).await;
    assert_eq!(public_key(&leaf), (true, 2048), "an RSA 2048 leaf");
    let reply = client
        .get(addr, HOST, HOST, "/hello")
        .await
        .expect("HTTPS request");
    assert!(served_by(&reply, "app"), "not routed to the backend");
    let key = std::fs::read_to_string(acme_dir.path().join("certificates/app.example.com.key"))
        .expect("stored key");
    assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"), "PKCS#8");
}

#[tokio::test]
async fn a_listener_set_listener_gets_its_certificate_over_http01() {
    let (http_port, https_port) = (free_port(), free_port());
    let pebble = Pebble::start(PebbleOptions::new(http_port, https_port)).await;
    let acme_dir = TempDir::new("gantry-acme");
    let ca_file = pebble.directory_ca_file().display().to_string();
    let (services, _) = echo_backends(&[("team", "app")]).await;
    // The Gateway has only the HTTP listener the CA validates on; the HTTPS listener is the
    // ListenerSet's, naming a Secret in the ListenerSet's namespace that nobody created.
    let gateway = gateway_with_listeners_yaml(
        "gw",
        &format!("    - {{name: http, port: {http_port}, protocol: HTTP}}\n"),
    );
    let yaml = format!(
        r#"{gateway}  allowedListeners:
    namespaces: {{from: All}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: ListenerSet
metadata: {{name: apps, namespace: team}}
spec:
  parentRef: {{name: gw, namespace: default}}
  listeners:
    - name: https
      port: {https_port}
      protocol: HTTPS
      hostname: {HOST}
      tls:
        certificateRefs: [{{name: team-cert}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: app, namespace: team}}
spec:
  parentRefs: [{{group: gateway.networking.k8s.io, kind: ListenerSet, name: apps}}]
  rules:
    - backendRefs: [{{name: app, port: 8080}}]
---
{services}"#
    );
    let proxy = start(
        &[
            ("gateway.yaml", &yaml),
            ("namespaces.yaml", &namespace_yaml("team", &[])),
        ],
        &acme_args(&pebble, &acme_dir, &ca_file),
    );
    proxy.wait_ready().await;

    let client = TlsClient::new(pebble.issuing_roots().await);
    let addr = SocketAddr::from(([127, 0, 0, 1], https_port));
    let leaf = served_certificate(&proxy, &client, addr).await;
    assert_eq!(
        public_key(&leaf),
        (false, 256),
        "the default ECDSA P-256 key"
    );
    let reply = client
        .get(addr, HOST, HOST, "/hello")
        .await
        .expect("HTTPS request");
    assert!(served_by(&reply, "app"), "not routed to the backend");

    // The ListenerSet's listener reports itself served.
    let status = proxy.status().await;
    let set = status
        .as_array()
        .and_then(|a| {
            a.iter()
                .find(|o| o["kind"] == "ListenerSet" && o["name"] == "apps")
        })
        .unwrap_or_else(|| panic!("no ListenerSet in /status: {status:#}"));
    let listener = set["status"]["listeners"]
        .as_array()
        .and_then(|l| l.iter().find(|l| l["name"] == "https"))
        .unwrap_or_else(|| panic!("no https listener: {set:#}"));
    for type_ in ["ResolvedRefs", "Programmed"] {
        let condition = listener["conditions"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == type_))
            .unwrap_or_else(|| panic!("no {type_}: {listener:#}"));
        assert_eq!(condition["status"], "True", "{condition}");
    }
    assert!(
        proxy
            .metric(&format!(
                r#"gantry_acme_certificate_expiry_timestamp_seconds{{secret="team/team-cert",hostname="{HOST}"}}"#
            ))
            .await
            > 0.0
    );
}

#[tokio::test]
async fn tls_alpn01_works_with_no_http_listener_and_a_restart_reuses_the_certificate() {
    let https_port = free_port();
    let pebble = Pebble::start(PebbleOptions::new(free_port(), https_port)).await;
    let acme_dir = TempDir::new("gantry-acme");
    let ca_file = pebble.directory_ca_file().display().to_string();
    let (services, _) = echo_backends(&[("default", "app")]).await;
    let files = [("gateway.yaml", config(None, https_port, &services))];
    let files: Vec<(&str, &str)> = files.iter().map(|(n, t)| (*n, t.as_str())).collect();
    let mut args = acme_args(&pebble, &acme_dir, &ca_file);
    args.extend(["--acme-challenge".into(), "tls-alpn-01".into()]);

    let client = TlsClient::new(pebble.issuing_roots().await);
    let addr = SocketAddr::from(([127, 0, 0, 1], https_port));
    let first = start(&files, &args);
    first.wait_ready().await;
    let issued = served_certificate(&first, &client, addr).await;
    let reply = client
        .get(addr, HOST, HOST, "/")
        .await
        .expect("HTTPS request");
    assert!(served_by(&reply, "app"));
    first.terminate();
    drop(first);

    // The next process serves the stored certificate and orders nothing.
    let second = start(&files, &args);
    second.wait_ready().await;
    assert_eq!(served_certificate(&second, &client, addr).await, issued);
    assert_eq!(
        second
            .metric(r#"gantry_acme_orders_total{result="issued"}"#)
            .await,
        0.0
    );
    assert!(second.log().contains("using the stored ACME certificate"));
}

#[tokio::test]
async fn a_failed_validation_shows_the_ca_error_on_the_listener() {
    // pebble validates HTTP-01 on a port nobody listens on.
    let (unreachable, https_port) = (free_port(), free_port());
    let pebble = Pebble::start(PebbleOptions::new(unreachable, https_port)).await;
    let acme_dir = TempDir::new("gantry-acme");
    let ca_file = pebble.directory_ca_file().display().to_string();
    let (services, _) = echo_backends(&[("default", "app")]).await;
    let proxy = start(
        &[("gateway.yaml", &config(None, https_port, &services))],
        &acme_args(&pebble, &acme_dir, &ca_file),
    );
    proxy.wait_ready().await;
    let resolved = proxy
        .eventually(
            Duration::from_secs(60),
            Duration::from_millis(100),
            || async {
                let condition = https_condition(&proxy.status().await, "ResolvedRefs");
                let message = condition["message"].as_str().unwrap_or_default();
                if message.contains("failed") {
                    Ok(condition)
                } else {
                    Err(format!("no failure on the listener yet: {condition}"))
                }
            },
        )
        .await;
    assert_eq!(resolved["status"], "False");
    assert_eq!(resolved["reason"], "InvalidCertificateRef");
    let message = resolved["message"].as_str().expect("message");
    assert!(message.contains(HOST), "{message}");
    assert!(
        message.contains("connection refused") || message.contains("Connection refused"),
        "the CA's reason is shown: {message}"
    );
    assert!(message.contains("next attempt in"), "{message}");
    let programmed = https_condition(&proxy.status().await, "Programmed");
    assert_eq!(programmed["status"], "False");
    assert_eq!(programmed["reason"], "Pending");
    assert_eq!(
        proxy
            .metric(r#"gantry_acme_orders_total{result="failed"}"#)
            .await,
        1.0
    );
}

#[tokio::test]
async fn a_short_lived_certificate_is_renewed_under_load_with_no_failed_request() {
    let (http_port, https_port) = (free_port(), free_port());
    let mut options = PebbleOptions::new(http_port, https_port);
    // Renewed at two thirds of its lifetime: 20 s after issuance.
    options.validity = Some(Duration::from_secs(30));
    let pebble = Pebble::start(options).await;
    let acme_dir = TempDir::new("gantry-acme");
    let ca_file = pebble.directory_ca_file().display().to_string();
    let (services, _) = echo_backends(&[("default", "app")]).await;
    let proxy = start(
        &[(
            "gateway.yaml",
            &config(Some(http_port), https_port, &services),
        )],
        &acme_args(&pebble, &acme_dir, &ca_file),
    );
    proxy.wait_ready().await;
    let client = TlsClient::new(pebble.issuing_roots().await);
    let addr = SocketAddr::from(([127, 0, 0, 1], https_port));
    let first = served_certificate(&proxy, &client, addr).await;

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let load = {
        let (client, stop, ok, failed) = (client.clone(), stop.clone(), ok.clone(), failed.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match client.get(addr, HOST, HOST, "/").await {
                    Ok(reply) if reply.status == StatusCode::OK => {
                        ok.fetch_add(1, Ordering::Relaxed)
                    }
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        })
    };
    let renewed = proxy
        .eventually(
            Duration::from_secs(90),
            Duration::from_millis(200),
            || async {
                let connected = client
                    .connect(addr, HOST)
                    .await
                    .map_err(|e| e.to_string())?;
                let leaf = connected
                    .server_certificate()
                    .expect("certificate")
                    .as_ref()
                    .to_vec();
                if leaf == first {
                    Err("still the first certificate".to_owned())
                } else {
                    Ok(leaf)
                }
            },
        )
        .await;
    stop.store(true, Ordering::Relaxed);
    load.await.expect("load loop");
    assert_ne!(renewed, first);
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "failed requests during renewal"
    );
    assert!(ok.load(Ordering::Relaxed) > 0);
    assert_eq!(
        proxy
            .metric(r#"gantry_acme_orders_total{result="issued"}"#)
            .await,
        2.0
    );
}

/// A Gateway with one HTTP listener on `port` and the catch-all route.
fn http_only(port: u16, services: &str) -> String {
    let gateway = gateway_with_listeners_yaml(
        "gw",
        &format!("    - {{name: http, port: {port}, protocol: HTTP}}\n"),
    );
    format!(
        r#"{gateway}---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: app, namespace: default}}
spec:
  parentRefs: [{{name: gw}}]
  rules:
    - backendRefs: [{{name: app, port: 8080}}]
---
{services}"#
    )
}

#[tokio::test]
async fn replicas_sharing_the_acme_directory_answer_each_others_challenges_and_share_the_certificate()
 {
    // The CA validates on replica A's HTTP port only; replica B, which has the HTTPS
    // listener, orders. A answers B's token from the shared directory; then A gets the HTTPS
    // listener too and serves B's certificate without ordering. (Two configurations stand in
    // for two replicas behind a load balancer the CA reached through A.)
    let (a_http, b_https, a_https) = (free_port(), free_port(), free_port());
    let pebble = Pebble::start(PebbleOptions::new(a_http, b_https)).await;
    let acme_dir = TempDir::new("gantry-acme");
    let ca_file = pebble.directory_ca_file().display().to_string();
    let args = acme_args(&pebble, &acme_dir, &ca_file);
    let (services, _) = echo_backends(&[("default", "app")]).await;
    let a = start(&[("gateway.yaml", &http_only(a_http, &services))], &args);
    a.wait_ready().await;
    let b = start(
        &[("gateway.yaml", &config(None, b_https, &services))],
        &args,
    );
    b.wait_ready().await;

    let client = TlsClient::new(pebble.issuing_roots().await);
    let issued = served_certificate(&b, &client, SocketAddr::from(([127, 0, 0, 1], b_https))).await;
    assert_eq!(
        b.metric(r#"gantry_acme_orders_total{result="issued"}"#)
            .await,
        1.0
    );
    // A's access log has the CA's request for B's token (answered 200 from the directory).
    let a_log = a.log();
    let validation = a_log
        .lines()
        .find(|l| l.contains("/.well-known/acme-challenge/"))
        .unwrap_or_else(|| panic!("A did not see the validation request; log:\n{a_log}"));
    assert!(validation.contains(" status=200 "), "{validation}");

    a.write("gateway.yaml", &config(Some(a_http), a_https, &services));
    let on_a = served_certificate(&a, &client, SocketAddr::from(([127, 0, 0, 1], a_https))).await;
    assert_eq!(on_a, issued, "A serves the certificate B obtained");
    assert_eq!(
        a.metric(r#"gantry_acme_orders_total{result="issued"}"#)
            .await,
        0.0
    );
}

#[tokio::test]
async fn a_listener_opting_in_serves_its_placeholder_until_the_certificate_replaces_it() {
    let (http_port, https_port) = (free_port(), free_port());
    let pebble = Pebble::start(PebbleOptions::new(http_port, https_port)).await;
    let acme_dir = TempDir::new("gantry-acme");
    let ca_file = pebble.directory_ca_file().display().to_string();
    let (services, _) = echo_backends(&[("default", "app")]).await;
    // The Secret exists (a self-signed placeholder), and the listener asks for ACME anyway.
    let placeholder = Ca::new("placeholder").server(&[HOST]);
    let secret = format!(
        "---\n{}",
        tls_secret_yaml("default", "app-cert", &placeholder)
    );
    let gateway = config(Some(http_port), https_port, &services).replace(
        "        certificateRefs: [{name: app-cert}]\n",
        "        certificateRefs: [{name: app-cert}]\n        options: {gantry.dev/acme: \"true\"}\n",
    );
    let proxy = start(
        &[("gateway.yaml", &format!("{gateway}{secret}"))],
        &acme_args(&pebble, &acme_dir, &ca_file),
    );
    proxy.wait_ready().await;
    let client = TlsClient::new(pebble.issuing_roots().await);
    let addr = SocketAddr::from(([127, 0, 0, 1], https_port));
    // Before the certificate, the placeholder (not trusted by this client) is what serves;
    // `served_certificate` waits for one the client trusts: pebble's.
    served_certificate(&proxy, &client, addr).await;
    assert_eq!(
        proxy
            .metric(r#"gantry_acme_orders_total{result="issued"}"#)
            .await,
        1.0
    );
    let status = proxy.status().await;
    assert_eq!(https_condition(&status, "ResolvedRefs")["status"], "True");
}
