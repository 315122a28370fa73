//! Re-encryption to backends (BackendTLSPolicy) and the Gateway's backend client certificate,
//! against TLS echo backends with certificates generated for each test.

use std::net::SocketAddr;

use gantry_testkit::certs::{Ca, Leaf, ca_config_map_yaml, tls_secret_yaml};
use gantry_testkit::echo::{self, EchoIdentity};
use gantry_testkit::harness::{
    Proxy, free_port, gateway_yaml, get, get_host, service_yaml, service_yaml_with,
};
use serde_json::Value;

/// The name the backend certificate is issued for.
const BACKEND_NAME: &str = "backend.example.com";
/// A URI SAN the backend certificate also carries.
const BACKEND_URI: &str = "spiffe://cluster.local/ns/default/sa/backend";
const HOST: &str = "app.example.com";

/// A TLS echo backend on an ephemeral port, with a certificate from `ca`.
async fn tls_backend(name: &str, leaf: &Leaf, client_ca: Option<&Ca>) -> SocketAddr {
    let config = echo::tls_config(
        &leaf.cert_pem,
        &leaf.key_pem,
        client_ca.map(|ca| ca.cert_pem.as_str()),
    )
    .expect("echo TLS config");
    let identity = EchoIdentity {
        name: name.to_owned(),
        namespace: "default".to_owned(),
        plain: false,
    };
    let (addr, _task) = echo::spawn_tls("127.0.0.1:0".parse().expect("addr"), identity, config)
        .await
        .expect("starting the TLS echo backend");
    addr
}

/// A BackendTLSPolicy in `default` targeting Service `service`, with `validation` (YAML,
/// indented four spaces) and optional extra metadata lines (two-space indented).
fn policy(name: &str, service: &str, metadata: &str, validation: &str) -> String {
    format!(
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: BackendTLSPolicy\nmetadata:\n  name: {name}\n  namespace: default\n{metadata}spec:\n  targetRefs: [{{group: \"\", kind: Service, name: {service}}}]\n  validation:\n{validation}"
    )
}

/// An HTTPRoute on `gw` sending `/<service>` to each Service's port 8443.
fn routes(services: &[&str]) -> String {
    let rules: String = services
        .iter()
        .map(|s| {
            format!(
                "    - matches: [{{path: {{type: PathPrefix, value: /{s}}}}}]\n      backendRefs: [{{name: {s}, port: 8443}}]\n"
            )
        })
        .collect();
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: app, namespace: default}}\nspec:\n  parentRefs: [{{name: gw}}]\n  hostnames: [\"{HOST}\"]\n  rules:\n{rules}"
    )
}

fn services(names: &[&str], backend: SocketAddr) -> String {
    names
        .iter()
        .map(|n| format!("---\n{}", service_yaml("default", n, 8443, &[backend])))
        .collect()
}

/// `ca.crt` validation against ConfigMap `map` and hostname `hostname`.
fn ca_validation(map: &str, hostname: &str) -> String {
    format!(
        "    hostname: {hostname}\n    caCertificateRefs: [{{group: \"\", kind: ConfigMap, name: {map}}}]\n"
    )
}

struct Env {
    proxy: Proxy,
    base: String,
}

impl Env {
    async fn get(&self, path: &str) -> gantry_testkit::harness::Reply {
        get_host(&format!("{}{path}", self.base), HOST, &[])
            .await
            .expect("request through the proxy")
    }

    /// The status the proxy reports for one BackendTLSPolicy.
    async fn policy_conditions(&self, name: &str) -> Vec<Value> {
        let statuses = self.proxy.status().await;
        let policy = statuses
            .as_array()
            .into_iter()
            .flatten()
            .find(|s| s["kind"] == "BackendTLSPolicy" && s["name"] == name)
            .unwrap_or_else(|| panic!("no status for BackendTLSPolicy {name}: {statuses:#}"))
            .clone();
        let ancestors = policy["status"]["ancestors"].as_array().expect("ancestors");
        assert_eq!(ancestors.len(), 1, "{policy:#}");
        assert_eq!(
            ancestors[0]["ancestorRef"],
            serde_json::json!({"group": "gateway.networking.k8s.io", "kind": "Gateway", "namespace": "default", "name": "gw"})
        );
        assert_eq!(
            ancestors[0]["controllerName"],
            "gantry.dev/gateway-controller"
        );
        ancestors[0]["conditions"]
            .as_array()
            .expect("conditions")
            .clone()
    }
}

fn condition<'a>(conditions: &'a [Value], type_: &str) -> &'a Value {
    conditions
        .iter()
        .find(|c| c["type"] == type_)
        .unwrap_or_else(|| panic!("no {type_} condition in {conditions:#?}"))
}

async fn start(files: &[(&str, &str)], env: &[(&str, &str)]) -> Env {
    let port = free_port();
    let gateway = gateway_yaml("gw", port);
    let mut all: Vec<(&str, &str)> = vec![("gateway.yaml", &gateway)];
    all.extend_from_slice(files);
    let proxy = Proxy::start_with_env(&all, &[], env);
    proxy.wait_ready().await;
    Env {
        proxy,
        base: format!("http://127.0.0.1:{port}"),
    }
}

/// Good CA, wrong CA, hostname mismatch, subjectAltNames (DNS and URI) and System roots, all
/// against the same backend: each Service has its own policy, so each has its own pool and
/// a connection verified for one is never reused for another.
#[tokio::test]
async fn backend_certificates_are_verified_against_the_policy() {
    let ca = Ca::new("backend CA");
    let other_ca = Ca::new("some other CA");
    let backend = tls_backend(
        "secure",
        &ca.server_with_uris(&[BACKEND_NAME], &[BACKEND_URI]),
        None,
    )
    .await;
    let names = [
        "good", "wrong-ca", "mismatch", "san-dns", "san-uri", "san-miss", "system",
    ];
    let mut config = services(&names, backend);
    // A port that speaks HTTP/2: over TLS it is negotiated with ALPN h2.
    config.push_str(&format!(
        "---\n{}",
        service_yaml_with("default", "h2", 8443, &[backend], Some("kubernetes.io/h2c"))
    ));
    config.push_str(&policy(
        "h2",
        "h2",
        "",
        &ca_validation("backend-ca", BACKEND_NAME),
    ));
    config.push_str(&format!(
        "---\n{}",
        ca_config_map_yaml("default", "backend-ca", &ca.cert_pem)
    ));
    config.push_str(&format!(
        "---\n{}",
        ca_config_map_yaml("default", "other-ca", &other_ca.cert_pem)
    ));
    config.push_str(&policy(
        "good",
        "good",
        "",
        &ca_validation("backend-ca", BACKEND_NAME),
    ));
    config.push_str(&policy(
        "wrong-ca",
        "wrong-ca",
        "",
        &ca_validation("other-ca", BACKEND_NAME),
    ));
    config.push_str(&policy(
        "mismatch",
        "mismatch",
        "",
        &ca_validation("backend-ca", "other.example.com"),
    ));
    let sans = |list: &str| {
        format!(
            "{}    subjectAltNames: {list}\n",
            ca_validation("backend-ca", "sni.internal")
        )
    };
    config.push_str(&policy(
        "san-dns",
        "san-dns",
        "",
        &sans(&format!("[{{type: Hostname, hostname: {BACKEND_NAME}}}]")),
    ));
    config.push_str(&policy(
        "san-uri",
        "san-uri",
        "",
        &sans(&format!("[{{type: URI, uri: \"{BACKEND_URI}\"}}]")),
    ));
    // With subjectAltNames the hostname is not used to authenticate, even when it matches.
    config.push_str(&policy(
        "san-miss",
        "san-miss",
        "",
        &format!(
            "    hostname: {BACKEND_NAME}\n    caCertificateRefs: [{{group: \"\", kind: ConfigMap, name: backend-ca}}]\n    subjectAltNames: [{{type: Hostname, hostname: other.example.com}}]\n"
        ),
    ));
    config.push_str(&policy(
        "system",
        "system",
        "",
        &format!("    hostname: {BACKEND_NAME}\n    wellKnownCACertificates: System\n"),
    ));
    let routes = routes(&[&names[..], &["h2"]].concat());
    let env = start(&[("backends.yaml", &config), ("routes.yaml", &routes)], &[]).await;

    let good = env.get("/good").await;
    assert_eq!(good.status, 200, "{}\n{}", good.text(), env.proxy.log());
    let echo = good.echo();
    assert_eq!(echo.header("host"), Some(HOST));
    let tls = echo.tls.expect("the backend saw TLS");
    assert_eq!(tls.sni.as_deref(), Some(BACKEND_NAME));
    assert_eq!(tls.alpn.as_deref(), Some("http/1.1"));
    assert_eq!(echo.host, HOST, "the Host header is passed as it came");

    for path in ["/wrong-ca", "/mismatch", "/san-miss", "/system"] {
        let reply = env.get(path).await;
        assert_eq!(reply.status, 502, "{path}: {}", reply.text());
        assert!(reply.header("x-request-id").is_some());
    }

    for path in ["/san-dns", "/san-uri"] {
        let reply = env.get(path).await;
        assert_eq!(reply.status, 200, "{path}: {}", reply.text());
        let tls = reply.echo().tls.expect("TLS");
        assert_eq!(
            tls.sni.as_deref(),
            Some("sni.internal"),
            "{path}: SNI is the hostname"
        );
    }

    let h2 = env.get("/h2").await;
    assert_eq!(h2.status, 200, "{}", h2.text());
    let echo = h2.echo();
    assert_eq!(echo.protocol, "HTTP/2.0");
    // Over HTTP/2 the Host is `:authority` (RFC 9113 §8.3.1), with no separate `host` header.
    assert_eq!(echo.authority.as_deref(), Some(HOST), "{echo:?}");
    assert_eq!(echo.header("host"), None, "{echo:?}");
    assert_eq!(echo.tls.expect("TLS").alpn.as_deref(), Some("h2"));

    // The good cluster still works after the failures: its pool was never shared.
    assert_eq!(env.get("/good").await.status, 200);

    let log = env.proxy.log();
    assert!(
        log.contains("TLS handshake with the backend failed"),
        "no handshake failure logged:\n{log}"
    );
    assert!(log.contains("UnknownIssuer"), "{log}");
    assert!(log.contains("NotValidForName"), "{log}");
    let metrics = get(&format!("http://{}/metrics", env.proxy.admin))
        .await
        .expect("metrics")
        .text();
    let failures: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("gantry_upstream_connect_errors_total "))
        .and_then(|v| v.trim().parse().ok())
        .expect("connect error counter");
    assert!(failures >= 4.0, "{failures}");

    for name in ["good", "wrong-ca", "san-uri", "system"] {
        let conditions = env.policy_conditions(name).await;
        assert_eq!(
            condition(&conditions, "Accepted")["status"],
            "True",
            "{name}"
        );
        assert_eq!(
            condition(&conditions, "ResolvedRefs")["status"],
            "True",
            "{name}"
        );
    }
}

/// `wellKnownCACertificates: System` reads the system trust store, which honours
/// SSL_CERT_FILE: with the test CA as the whole store, the backend verifies.
#[tokio::test]
async fn system_roots_come_from_the_system_trust_store() {
    let ca = Ca::new("backend CA");
    let backend = tls_backend("secure", &ca.server(&[BACKEND_NAME]), None).await;
    let mut config = services(&["system"], backend);
    config.push_str(&policy(
        "system",
        "system",
        "",
        &format!("    hostname: {BACKEND_NAME}\n    wellKnownCACertificates: System\n"),
    ));
    let routes = routes(&["system"]);
    let dir = gantry_testkit::harness::tempdir::TempDir::new("gantry-system-roots");
    let bundle = dir.path().join("ca.pem");
    std::fs::write(&bundle, &ca.cert_pem).expect("writing the CA bundle");
    let bundle = bundle.to_string_lossy().into_owned();
    let env = start(
        &[("backends.yaml", &config), ("routes.yaml", &routes)],
        &[("SSL_CERT_FILE", &bundle)],
    )
    .await;
    let reply = env.get("/system").await;
    assert_eq!(reply.status, 200, "{}\n{}", reply.text(), env.proxy.log());
    assert!(reply.echo().tls.is_some());
}

/// The Gateway's `spec.tls.backend.clientCertificateRef` is presented to a backend that
/// requires a client certificate; the Gateway reports it resolved.
#[tokio::test]
async fn the_gateway_presents_its_backend_client_certificate() {
    let ca = Ca::new("backend CA");
    let client_ca = Ca::new("gateway client CA");
    let backend = tls_backend("mtls", &ca.server(&[BACKEND_NAME]), Some(&client_ca)).await;
    let client = client_ca.client("gantry-gateway");
    let port = free_port();
    let gateway = format!(
        "{}  tls:\n    backend:\n      clientCertificateRef: {{name: gateway-client, namespace: certs}}\n",
        gateway_yaml("gw", port)
    );
    let grant = "apiVersion: gateway.networking.k8s.io/v1beta1\nkind: ReferenceGrant\nmetadata: {name: gateways, namespace: certs}\nspec:\n  from: [{group: gateway.networking.k8s.io, kind: Gateway, namespace: default}]\n  to: [{group: \"\", kind: Secret}]\n";
    let mut config = services(&["mtls"], backend);
    config.push_str(&format!(
        "---\n{}",
        ca_config_map_yaml("default", "backend-ca", &ca.cert_pem)
    ));
    config.push_str(&format!(
        "---\n{}",
        tls_secret_yaml("certs", "gateway-client", &client)
    ));
    config.push_str(&format!("---\n{grant}"));
    config.push_str(&policy(
        "mtls",
        "mtls",
        "",
        &ca_validation("backend-ca", BACKEND_NAME),
    ));
    let routes = routes(&["mtls"]);
    let proxy = Proxy::start_ready(
        &[
            ("gateway.yaml", &gateway),
            ("backends.yaml", &config),
            ("routes.yaml", &routes),
        ],
        &[],
    )
    .await;
    let reply = get_host(&format!("http://127.0.0.1:{port}/mtls"), HOST, &[])
        .await
        .expect("request");
    assert_eq!(reply.status, 200, "{}\n{}", reply.text(), proxy.log());
    let tls = reply.echo().tls.expect("TLS");
    assert_eq!(tls.client_subject.as_deref(), Some("CN=gantry-gateway"));

    let statuses = proxy.status().await;
    let gateway = statuses
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["kind"] == "Gateway")
        .expect("Gateway status");
    let conditions = gateway["status"]["conditions"]
        .as_array()
        .expect("conditions");
    let resolved = condition(conditions, "ResolvedRefs");
    assert_eq!(resolved["status"], "True", "{resolved:#}");
    assert_eq!(resolved["reason"], "ResolvedRefs");

    // Without the grant the reference is not permitted: the Gateway says so, and the
    // backend, which requires a certificate, refuses the handshake (502).
    let version = proxy.version().await;
    proxy.write("backends.yaml", &config.replace(grant, ""));
    proxy.wait_version_above(version).await;
    let statuses = proxy.status().await;
    let gateway = statuses
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["kind"] == "Gateway")
        .expect("Gateway status");
    let resolved = condition(
        gateway["status"]["conditions"]
            .as_array()
            .expect("conditions"),
        "ResolvedRefs",
    )
    .clone();
    assert_eq!(resolved["status"], "False", "{resolved:#}");
    assert_eq!(resolved["reason"], "RefNotPermitted");
    let reply = get_host(&format!("http://127.0.0.1:{port}/mtls"), HOST, &[])
        .await
        .expect("request");
    assert_eq!(reply.status, 502, "{}", reply.text());
}

/// Bad references and conflicts show in `/status` with the spec's reasons; a backend whose
/// policy is unusable gets 500 (never plaintext), and its route says why.
#[tokio::test]
async fn policy_problems_are_reported_and_never_fall_back_to_plaintext() {
    let ca = Ca::new("backend CA");
    let backend = tls_backend("secure", &ca.server(&[BACKEND_NAME]), None).await;
    let names = ["missing-map", "wrong-kind", "contested"];
    let mut config = services(&names, backend);
    config.push_str(&format!(
        "---\n{}",
        ca_config_map_yaml("default", "backend-ca", &ca.cert_pem)
    ));
    config.push_str(&policy(
        "missing-map",
        "missing-map",
        "",
        &ca_validation("does-not-exist", BACKEND_NAME),
    ));
    config.push_str(&policy(
        "wrong-kind",
        "wrong-kind",
        "",
        &format!(
            "    hostname: {BACKEND_NAME}\n    caCertificateRefs: [{{group: \"\", kind: Secret, name: backend-ca}}]\n"
        ),
    ));
    // Two policies for the same Service: the older one takes precedence.
    config.push_str(&policy(
        "contested-newer",
        "contested",
        "  creationTimestamp: \"2026-01-02T00:00:00Z\"\n",
        &ca_validation("backend-ca", "other.example.com"),
    ));
    config.push_str(&policy(
        "contested-older",
        "contested",
        "  creationTimestamp: \"2026-01-01T00:00:00Z\"\n",
        &ca_validation("backend-ca", BACKEND_NAME),
    ));
    let routes = routes(&names);
    let env = start(&[("backends.yaml", &config), ("routes.yaml", &routes)], &[]).await;

    let missing = env.policy_conditions("missing-map").await;
    let accepted = condition(&missing, "Accepted");
    assert_eq!(accepted["status"], "False");
    assert_eq!(accepted["reason"], "NoValidCACertificate");
    let resolved = condition(&missing, "ResolvedRefs");
    assert_eq!(resolved["status"], "False");
    assert_eq!(resolved["reason"], "InvalidCACertificateRef");
    assert!(
        resolved["message"]
            .as_str()
            .is_some_and(|m| m.contains("ConfigMap default/does-not-exist does not exist")),
        "{resolved:#}"
    );

    let wrong = env.policy_conditions("wrong-kind").await;
    assert_eq!(
        condition(&wrong, "Accepted")["reason"],
        "NoValidCACertificate"
    );
    let resolved = condition(&wrong, "ResolvedRefs");
    assert_eq!(resolved["status"], "False");
    assert_eq!(resolved["reason"], "InvalidKind");

    let loser = env.policy_conditions("contested-newer").await;
    let accepted = condition(&loser, "Accepted");
    assert_eq!(accepted["status"], "False");
    assert_eq!(accepted["reason"], "Conflicted");
    assert!(
        accepted["message"]
            .as_str()
            .is_some_and(|m| m.contains("default/contested-older")),
        "{accepted:#}"
    );
    let winner = env.policy_conditions("contested-older").await;
    assert_eq!(condition(&winner, "Accepted")["status"], "True");
    // The winner's hostname is the one used: the backend verifies.
    assert_eq!(env.get("/contested").await.status, 200);

    for path in ["/missing-map", "/wrong-kind"] {
        let reply = env.get(path).await;
        assert_eq!(reply.status, 500, "{path}: {}", reply.text());
    }
    let statuses = env.proxy.status().await;
    let route = statuses
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["kind"] == "HTTPRoute")
        .expect("route status");
    let conditions = route["status"]["parents"][0]["conditions"]
        .as_array()
        .expect("conditions");
    assert_eq!(condition(conditions, "Accepted")["status"], "True");
    let resolved = condition(conditions, "ResolvedRefs");
    assert_eq!(resolved["status"], "False");
    assert_eq!(resolved["reason"], "InvalidBackendTLS");

    // The missing ConfigMap appears: the new TLS settings are live without a restart.
    let version = env.proxy.version().await;
    env.proxy.write(
        "late-ca.yaml",
        &ca_config_map_yaml("default", "does-not-exist", &ca.cert_pem),
    );
    env.proxy.wait_version_above(version).await;
    let reply = env.get("/missing-map").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let fixed = env.policy_conditions("missing-map").await;
    assert_eq!(condition(&fixed, "Accepted")["status"], "True");
    assert_eq!(condition(&fixed, "ResolvedRefs")["status"], "True");
}
