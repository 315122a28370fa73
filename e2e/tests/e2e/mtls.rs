//! Frontend client-certificate validation (Gateway `spec.tls.frontend`): a port that allows
//! valid client certificates only, a `perPort` override with insecure fallback, and bad CA
//! references shown in /status.

use std::net::SocketAddr;
use std::time::Duration;

use gantry_testkit::certs::{Ca, ca_config_map_yaml, tls_secret_yaml};
use gantry_testkit::harness::{Proxy, echo_backends, free_port, get};
use gantry_testkit::tls_client::{TlsClient, served_by};
use serde_json::Value;

struct Mtls {
    proxy: Proxy,
    server_ca: Ca,
    client_ca: Ca,
    strict: SocketAddr,
    fallback: SocketAddr,
    no_valid_ca: SocketAddr,
    partial: SocketAddr,
}

fn listener(name: &str, port: u16, host: &str) -> String {
    format!(
        "    - name: {name}\n      port: {port}\n      protocol: HTTPS\n      hostname: {host}\n      allowedRoutes: {{namespaces: {{from: All}}}}\n      tls:\n        certificateRefs: [{{name: server}}]\n"
    )
}

fn gateway(name: &str, listeners: &str, frontend: &str) -> String {
    format!(
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  gatewayClassName: gantry\n  listeners:\n{listeners}  tls:\n    frontend:\n{frontend}"
    )
}

async fn start() -> Mtls {
    let server_ca = Ca::new("server CA");
    let client_ca = Ca::new("client CA");
    let server = server_ca.server(&["*.example.com"]);
    let ports: Vec<u16> = (0..4).map(|_| free_port()).collect();
    let (strict, fallback, no_valid_ca, partial) = (ports[0], ports[1], ports[2], ports[3]);
    let client_ca_ref = "{group: \"\", kind: ConfigMap, name: client-ca}";
    let gateways = [
        gateway(
            "gw",
            &[
                listener("strict", strict, "strict.example.com"),
                listener("fallback", fallback, "fallback.example.com"),
            ]
            .concat(),
            &format!(
                "      default:\n        validation:\n          caCertificateRefs: [{client_ca_ref}]\n      perPort:\n        - port: {fallback}\n          tls:\n            validation:\n              caCertificateRefs: [{client_ca_ref}]\n              mode: AllowInsecureFallback\n"
            ),
        ),
        gateway(
            "no-valid-ca",
            &listener("https", no_valid_ca, "none.example.com"),
            "      default:\n        validation:\n          caCertificateRefs:\n            - {group: \"\", kind: ConfigMap, name: does-not-exist}\n            - {group: \"\", kind: Secret, name: server}\n",
        ),
        gateway(
            "partial",
            &listener("https", partial, "partial.example.com"),
            &format!(
                "      default:\n        validation:\n          caCertificateRefs:\n            - {{group: \"\", kind: ConfigMap, name: client-ca, namespace: elsewhere}}\n            - {client_ca_ref}\n"
            ),
        ),
    ]
    .concat();
    let route = "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: app, namespace: default}\nspec:\n  parentRefs: [{name: gw}, {name: no-valid-ca}, {name: partial}]\n  rules:\n    - backendRefs: [{name: app, port: 8080}]\n";
    let (services, _) = echo_backends(&[("default", "app")]).await;
    let objects = format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {{name: gantry}}\nspec:\n  controllerName: gantry.dev/gateway-controller\n{gateways}{route}---\n{}---\n{}---\n{}",
        tls_secret_yaml("default", "server", &server),
        ca_config_map_yaml("default", "client-ca", &client_ca.cert_pem),
        ca_config_map_yaml("elsewhere", "client-ca", &client_ca.cert_pem),
    );
    let proxy = Proxy::start_ready(
        &[("objects.yaml", &objects), ("services.yaml", &services)],
        &[],
    )
    .await;
    let addr = |port| SocketAddr::from(([127, 0, 0, 1], port));
    Mtls {
        proxy,
        server_ca,
        client_ca,
        strict: addr(strict),
        fallback: addr(fallback),
        no_valid_ca: addr(no_valid_ca),
        partial: addr(partial),
    }
}

impl Mtls {
    fn client(&self) -> TlsClient {
        TlsClient::new(self.server_ca.roots())
    }
}

#[tokio::test]
async fn valid_client_certificates_are_required_unless_the_port_falls_back() {
    let gw = start().await;
    let valid = gw.client_ca.client("alice");
    let stranger = Ca::new("unknown CA").client("mallory");
    let host = "strict.example.com";

    let reply = gw
        .client()
        .identity(&valid)
        .get(gw.strict, host, host, "/")
        .await;
    assert!(
        served_by(&reply.expect("request over TLS"), "app"),
        "log:\n{}",
        gw.proxy.log()
    );
    for (who, client) in [
        ("no certificate", gw.client()),
        (
            "a certificate of another CA",
            gw.client().identity(&stranger),
        ),
    ] {
        // With TLS 1.3 the client learns of the refusal on its first read.
        let result = client.get(gw.strict, host, host, "/").await;
        assert!(result.is_err(), "{who} was served: {result:?}");
    }
    // The refusal is counted once the handshake has failed, which the client may learn of
    // (rustls sends the alert first) a moment before.
    let url = format!("http://{}/metrics", gw.proxy.admin);
    let line = format!(
        "gantry_tls_handshake_errors_total{{port=\"{}\",reason=\"client_certificate\"}} 2",
        gw.strict.port()
    );
    gw.proxy
        .eventually(
            Duration::from_secs(5),
            Duration::from_millis(10),
            || async {
                let metrics = get(&url).await.map_err(|e| e.to_string())?.text();
                if metrics.contains(&line) {
                    Ok(())
                } else {
                    Err(format!("{line} not in\n{metrics}"))
                }
            },
        )
        .await;

    let host = "fallback.example.com";
    for client in [
        gw.client(),
        gw.client().identity(&stranger),
        gw.client().identity(&valid),
    ] {
        let reply = client
            .get(gw.fallback, host, host, "/")
            .await
            .expect("request over TLS");
        assert!(served_by(&reply, "app"));
    }
}

fn listener_status(status: &Value, gateway: &str) -> Value {
    status
        .as_array()
        .and_then(|all| {
            all.iter()
                .find(|o| o["kind"] == "Gateway" && o["name"] == gateway)
        })
        .map(|g| g["status"]["listeners"][0].clone())
        .unwrap_or_else(|| panic!("no Gateway {gateway} in {status:#}"))
}

fn condition(listener: &Value, type_: &str) -> (String, String) {
    let c = listener["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == type_))
        .unwrap_or_else(|| panic!("no {type_} in {listener:#}"));
    (
        c["status"].as_str().unwrap_or_default().to_owned(),
        c["reason"].as_str().unwrap_or_default().to_owned(),
    )
}

#[tokio::test]
async fn bad_ca_references_show_in_status_and_never_open_the_listener() {
    let gw = start().await;
    let status = gw.proxy.status().await;

    // Every CA reference invalid: not accepted, not served at all (never without validation).
    let none = listener_status(&status, "no-valid-ca");
    assert_eq!(
        condition(&none, "Accepted"),
        ("False".into(), "NoValidCACertificate".into())
    );
    assert_eq!(
        condition(&none, "ResolvedRefs"),
        ("False".into(), "InvalidCACertificateRef".into())
    );
    assert!(
        none.to_string().contains("InvalidCACertificateKind")
            || none.to_string().contains("kind Secret"),
        "{none:#}"
    );
    assert_eq!(condition(&none, "Programmed").0, "False");
    let valid = gw.client_ca.client("alice");
    let host = "none.example.com";
    assert!(
        gw.client()
            .identity(&valid)
            .get(gw.no_valid_ca, host, host, "/")
            .await
            .is_err()
    );

    // One reference not permitted, one valid: reported, and served with the valid CA.
    let partial = listener_status(&status, "partial");
    assert_eq!(
        condition(&partial, "ResolvedRefs"),
        ("False".into(), "RefNotPermitted".into())
    );
    assert_eq!(condition(&partial, "Accepted").0, "True");
    assert_eq!(condition(&partial, "Programmed").0, "True");
    let host = "partial.example.com";
    let reply = gw
        .client()
        .identity(&valid)
        .get(gw.partial, host, host, "/")
        .await
        .expect("request over TLS");
    assert!(served_by(&reply, "app"));
    assert!(gw.client().get(gw.partial, host, host, "/").await.is_err());

    // The well-configured Gateway is unaffected.
    assert_eq!(
        condition(&listener_status(&status, "gw"), "ResolvedRefs").0,
        "True"
    );
}
