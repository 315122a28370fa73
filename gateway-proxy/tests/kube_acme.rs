//! ACME in Kubernetes mode: the real `gantry-proxy run --kubernetes` binary against the
//! in-repo API server and a real CA (pebble). The fleet's leader orders and writes the
//! listener's Secret; another replica answers the CA's validation from the fleet's state
//! Secret; both serve the certificate; the Gateway gets Events and, on failure, the CA's
//! error on its listener; an order left in the state by a stopped leader is resumed.

#![allow(clippy::unwrap_used)]

mod support;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use gantry_proxy::acme::{AcmeClient, AcmeConfig, AcmeStore, ChallengeKind, Challenges, KeyType};
use gantry_proxy::kubernetes::acme::KubeState;
use gantry_testkit::harness::tempdir::TempDir;
use gantry_testkit::pebble::{Pebble, PebbleOptions};
use gantry_testkit::tls_client::TlsClient;
use serde_json::{Value, json};
use support::apiserver::ApiServer;
use support::objects::{endpoint_slice, gateway_class, http_route, namespace, service};
use support::{Client, Killed, admin_ready, eventually, http_get, start_backend};

const HOST: &str = "app.example.com";
const FLEET_NAMESPACE: &str = "gantry-system";
const LEASE: &str = "gantry-proxy-default.web";

/// A port offset under which the Gateway's ports 80 and 443 are both free here (below the
/// ephemeral range, so no outgoing connection takes one before the proxy binds it).
fn offset() -> u16 {
    gantry_testkit::ports::free_offset(&[80, 443])
}

/// Gateway `default/web` (HTTP on 80, HTTPS on 443 for [`HOST`] with the missing Secret
/// `app-cert`) and a route to a backend on both.
async fn seed(server: &ApiServer) {
    let backend = start_backend().await;
    server.apply("namespaces", namespace("default"));
    server.apply("gatewayclasses", gateway_class("gantry"));
    server.apply(
        "gateways",
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
               "metadata": {"name": "web", "namespace": "default"},
               "spec": {"gatewayClassName": "gantry", "listeners": [
                   {"name": "http", "protocol": "HTTP", "port": 80},
                   {"name": "https", "protocol": "HTTPS", "port": 443, "hostname": HOST,
                    "tls": {"certificateRefs": [{"name": "app-cert"}]}}]}}),
    );
    server.apply("services", service("default", "app", 80));
    server.apply(
        "endpointslices",
        endpoint_slice("default", "app", "127.0.0.1", backend.port()),
    );
    server.apply(
        "httproutes",
        http_route("default", "app", "web", "/", "app", 80),
    );
}

struct Replica {
    _process: Killed,
    admin: u16,
    offset: u16,
    log: std::path::PathBuf,
}

impl Replica {
    fn start(server: &ApiServer, dir: &TempDir, pod: &str, pebble: &Pebble, offset: u16) -> Self {
        Self::start_with(server, dir, pod, pebble, offset, &[])
    }

    fn start_with(
        server: &ApiServer,
        dir: &TempDir,
        pod: &str,
        pebble: &Pebble,
        offset: u16,
        extra: &[&str],
    ) -> Self {
        let kubeconfig = server.kubeconfig(dir.path());
        let admin = support::free_port();
        let log = dir.path().join(format!("{pod}.log"));
        let process = Command::new(env!("CARGO_BIN_EXE_gantry-proxy"))
            .args(["run", "--kubernetes", "--gateway", "default/web"])
            .args(["--bind-address", "127.0.0.1"])
            .args(["--port-offset", &offset.to_string()])
            .args(["--admin-addr", &format!("127.0.0.1:{admin}")])
            .args(["--acme-directory", &pebble.directory_url])
            .args([
                "--acme-ca-file",
                &pebble.directory_ca_file().display().to_string(),
            ])
            .args(["--acme-email", "ops@example.com"])
            .args(extra)
            .env("KUBECONFIG", &kubeconfig)
            .env("POD_NAME", pod)
            .env("POD_NAMESPACE", FLEET_NAMESPACE)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Self {
            _process: Killed(process),
            admin,
            offset,
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn https(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 443 + self.offset))
    }

    async fn metric(&self, name: &str) -> f64 {
        let (_, text) = http_get(self.admin, "/metrics").await.unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or(0.0)
    }
}

fn listener_condition(server: &ApiServer, type_: &str) -> Option<Value> {
    let gateway = server.get("gateways", "default", "web")?;
    gateway["status"]["listeners"]
        .as_array()?
        .iter()
        .find(|l| l["name"] == "https")?["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
        .cloned()
}

fn events(server: &ApiServer, reason: &str) -> Vec<Value> {
    server
        .objects("events")
        .into_iter()
        .filter(|e| e["reason"] == reason)
        .collect()
}

fn decoded(secret: &Value, key: &str) -> String {
    use base64::Engine;
    let text = secret["data"][key].as_str().unwrap_or_default();
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .unwrap(),
    )
    .unwrap()
}

/// Waits until `replica` serves [`HOST`] with a certificate `client` trusts and routes to the
/// backend; returns the served leaf.
async fn served(replica: &Replica, client: &TlsClient) -> Vec<u8> {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        if let Ok(connected) = client.connect(replica.https(), HOST).await {
            let leaf = connected.server_certificate().unwrap().as_ref().to_vec();
            let reply = client
                .get(replica.https(), HOST, HOST, "/hello")
                .await
                .unwrap();
            assert_eq!(reply.status, 200);
            assert_eq!(reply.body, "backend saw /hello");
            return leaf;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no trusted certificate served on {}; log:\n{}",
            replica.https(),
            replica.log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_leader_orders_another_replica_answers_and_both_serve_the_secret() {
    let server = ApiServer::start().await;
    seed(&server).await;
    let dir = TempDir::new("gantry-kube-acme");
    let (leader_offset, other_offset) = (offset(), offset());
    // The CA validates on the other replica's HTTP port only: the leader's token must reach
    // it through the state Secret.
    let pebble = Pebble::start(PebbleOptions::new(80 + other_offset, 443 + other_offset)).await;
    let leader = Replica::start(&server, &dir, "proxy-leader", &pebble, leader_offset);
    eventually(20, "the first replica to lead", || {
        let s = server.clone();
        async move {
            s.get("leases", FLEET_NAMESPACE, LEASE)
                .is_some_and(|l| l["spec"]["holderIdentity"] == "proxy-leader")
        }
    })
    .await;
    let other = Replica::start(&server, &dir, "proxy-other", &pebble, other_offset);
    eventually(20, "both replicas ready", || async {
        admin_ready(leader.admin).await && admin_ready(other.admin).await
    })
    .await;

    let client = TlsClient::new(pebble.issuing_roots().await);
    let on_other = served(&other, &client).await;
    let on_leader = served(&leader, &client).await;
    assert_eq!(on_leader, on_other, "one certificate for the fleet");

    // The Secret: the listener's name, kubernetes.io/tls, written by server-side apply.
    let secret = server.get("secrets", "default", "app-cert").unwrap();
    assert_eq!(secret["type"], "kubernetes.io/tls");
    assert_eq!(
        secret["metadata"]["annotations"]["gantry.dev/acme-directory"],
        pebble.directory_url.as_str()
    );
    assert!(decoded(&secret, "tls.crt").starts_with("-----BEGIN CERTIFICATE-----"));
    let key_pem = decoded(&secret, "tls.key");
    assert!(key_pem.contains("PRIVATE KEY"));
    let managers = server.managed_fields("secrets", "default", "app-cert");
    assert!(
        format!("{managers:?}").contains("gantry-acme"),
        "{managers:?}"
    );

    // Only the leader ordered; the other answered the CA (its access log has the request).
    assert_eq!(
        leader
            .metric(r#"gantry_acme_orders_total{result="issued"}"#)
            .await,
        1.0
    );
    assert_eq!(
        other
            .metric(r#"gantry_acme_orders_total{result="issued"}"#)
            .await,
        0.0
    );
    let validation = other
        .log()
        .lines()
        .find(|l| l.contains("/.well-known/acme-challenge/"))
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("the other replica saw no validation:\n{}", other.log()));
    assert!(validation.contains(" status=200 "), "{validation}");

    // The fleet's state: the account, nothing left of the order or its challenge, owned by
    // the fleet's Lease.
    let state = server
        .get("secrets", FLEET_NAMESPACE, &format!("{LEASE}-acme"))
        .unwrap();
    assert_eq!(state["type"], "gantry.dev/acme-state");
    let keys: Vec<&String> = state["data"].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["account.json"], "{state:#}");
    assert_eq!(state["metadata"]["ownerReferences"][0]["kind"], "Lease");
    assert_eq!(state["metadata"]["ownerReferences"][0]["name"], LEASE);

    // Status and an Event on the Gateway.
    eventually(20, "ResolvedRefs=True on the HTTPS listener", || {
        let s = server.clone();
        async move { listener_condition(&s, "ResolvedRefs").is_some_and(|c| c["status"] == "True") }
    })
    .await;
    eventually(10, "a CertificateIssued Event", || {
        let s = server.clone();
        async move { !events(&s, "CertificateIssued").is_empty() }
    })
    .await;
    let issued = events(&server, "CertificateIssued");
    assert_eq!(issued.len(), 1, "{issued:#?}");
    assert_eq!(issued[0]["type"], "Normal");
    assert_eq!(issued[0]["regarding"]["kind"], "Gateway");
    assert_eq!(issued[0]["regarding"]["name"], "web");
    assert!(
        issued[0]["note"]
            .as_str()
            .unwrap()
            .contains("default/app-cert"),
        "{:#}",
        issued[0]
    );

    // The private key is nowhere but the Secret.
    for replica in [&leader, &other] {
        for path in ["/config", "/status"] {
            let (code, body) = http_get(replica.admin, path)
                .await
                .unwrap_or_else(|| panic!("no answer to {path}"));
            assert_eq!(code, 200, "{path}");
            assert!(!body.contains(key_pem.lines().nth(1).unwrap()), "{path}");
        }
        assert!(!replica.log().contains(key_pem.lines().nth(1).unwrap()));
    }
}

#[tokio::test]
async fn a_failed_validation_shows_the_ca_error_on_the_listener_and_a_warning_event() {
    let server = ApiServer::start().await;
    seed(&server).await;
    let dir = TempDir::new("gantry-kube-acme");
    // The CA validates on a port nobody listens on.
    let nobody = support::free_port();
    let pebble = Pebble::start(PebbleOptions::new(nobody, support::free_port())).await;
    let proxy = Replica::start(&server, &dir, "proxy-0", &pebble, offset());

    eventually(60, "the CA's error on the listener", || {
        let s = server.clone();
        async move {
            listener_condition(&s, "ResolvedRefs").is_some_and(|c| {
                c["status"] == "False"
                    && c["message"]
                        .as_str()
                        .is_some_and(|m| m.contains("failed") && m.contains(HOST))
            })
        }
    })
    .await;
    let condition = listener_condition(&server, "ResolvedRefs").unwrap();
    assert_eq!(condition["reason"], "InvalidCertificateRef");
    assert!(
        condition["message"]
            .as_str()
            .unwrap()
            .contains("next attempt in"),
        "{condition:#}"
    );
    eventually(10, "a CertificateFailed Event", || {
        let s = server.clone();
        async move { !events(&s, "CertificateFailed").is_empty() }
    })
    .await;
    let failed = &events(&server, "CertificateFailed")[0];
    assert_eq!(failed["type"], "Warning");
    assert_eq!(failed["regarding"]["name"], "web");
    assert!(server.get("secrets", "default", "app-cert").is_none());
    assert_eq!(
        proxy
            .metric(r#"gantry_acme_orders_total{result="failed"}"#)
            .await,
        1.0
    );
}

#[tokio::test]
async fn an_order_left_in_the_fleet_state_is_resumed_by_the_next_leader() {
    let server = ApiServer::start().await;
    seed(&server).await;
    let dir = TempDir::new("gantry-kube-acme");
    let offset = offset();
    let pebble = Pebble::start(PebbleOptions::new(80 + offset, 443 + offset)).await;

    // A leader that stopped right after placing its order left the account and the order
    // in the fleet's state Secret.
    let state = KubeState::start(server.client(), FLEET_NAMESPACE, LEASE);
    let store = AcmeStore::shared(state.clone());
    let config = AcmeConfig {
        directory: pebble.directory_url.clone(),
        email: None,
        ca_file: Some(pebble.directory_ca_file()),
        eab: None,
        challenge: ChallengeKind::Http01,
        key_type: KeyType::EcdsaP256,
    };
    drop(
        AcmeClient::connect(config, store.clone(), Challenges::new(Some(store.clone())))
            .await
            .expect("account"),
    );
    let credentials: instant_acme::AccountCredentials =
        serde_json::from_str(&store.account().unwrap().expect("account in the state"))
            .expect("credentials");
    let account = instant_acme::Account::builder_with_root(pebble.directory_ca_file())
        .unwrap()
        .from_credentials(credentials)
        .await
        .unwrap();
    let identifiers = [instant_acme::Identifier::Dns(HOST.into())];
    let order = account
        .new_order(&instant_acme::NewOrder::new(&identifiers))
        .await
        .unwrap();
    let url = order.url().to_owned();
    let key = rcgen::KeyPair::generate().unwrap();
    store
        .save_pending_order(HOST, &url, &key.serialize_pem())
        .await
        .unwrap();
    assert!(
        server
            .get("secrets", FLEET_NAMESPACE, &format!("{LEASE}-acme"))
            .is_some()
    );

    let proxy = Replica::start(&server, &dir, "proxy-0", &pebble, offset);
    let client = TlsClient::new(pebble.issuing_roots().await);
    served(&proxy, &client).await;
    assert!(
        proxy.log().contains("resuming the stored ACME order"),
        "{}",
        proxy.log()
    );
    let secret = server.get("secrets", "default", "app-cert").unwrap();
    assert_eq!(
        decoded(&secret, "tls.key"),
        key.serialize_pem(),
        "the stored order's key is the certificate's"
    );
    let mut order = account.order(url).await.unwrap();
    assert!(matches!(
        order.refresh().await.unwrap().status,
        instant_acme::OrderStatus::Valid
    ));
}

#[tokio::test]
async fn tls_alpn01_answered_by_another_replica_and_renewal_in_place_under_load() {
    let server = ApiServer::start().await;
    seed(&server).await;
    let dir = TempDir::new("gantry-kube-acme");
    let (leader_offset, other_offset) = (offset(), offset());
    // TLS-ALPN-01 validated on the other replica's HTTPS port only; certificates live 30 s,
    // so the leader renews 20 s after issuance.
    let mut options = PebbleOptions::new(support::free_port(), 443 + other_offset);
    options.validity = Some(Duration::from_secs(30));
    let pebble = Pebble::start(options).await;
    let tls_alpn = ["--acme-challenge", "tls-alpn-01"];
    let leader = Replica::start_with(
        &server,
        &dir,
        "proxy-leader",
        &pebble,
        leader_offset,
        &tls_alpn,
    );
    eventually(20, "the first replica to lead", || {
        let s = server.clone();
        async move {
            s.get("leases", FLEET_NAMESPACE, LEASE)
                .is_some_and(|l| l["spec"]["holderIdentity"] == "proxy-leader")
        }
    })
    .await;
    let other = Replica::start_with(
        &server,
        &dir,
        "proxy-other",
        &pebble,
        other_offset,
        &tls_alpn,
    );
    let client = TlsClient::new(pebble.issuing_roots().await);
    let first = served(&other, &client).await;
    assert_eq!(served(&leader, &client).await, first);
    let first_chain = decoded(
        &server.get("secrets", "default", "app-cert").unwrap(),
        "tls.crt",
    );

    // Requests to both replicas all through the renewal.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut load = Vec::new();
    for addr in [leader.https(), other.https()] {
        let (client, stop, ok, failed) = (client.clone(), stop.clone(), ok.clone(), failed.clone());
        load.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match client.get(addr, HOST, HOST, "/").await {
                    Ok(reply) if reply.status == 200 => ok.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    eventually(90, "the renewed certificate in the Secret", || {
        let s = server.clone();
        let first_chain = first_chain.clone();
        async move {
            s.get("secrets", "default", "app-cert")
                .is_some_and(|secret| decoded(&secret, "tls.crt") != first_chain)
        }
    })
    .await;
    for replica in [&leader, &other] {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while served(replica, &client).await == first {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} still serves the first certificate",
                replica.https()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "failed requests during renewal"
    );
    assert!(ok.load(Ordering::Relaxed) > 0);
    assert_eq!(
        leader
            .metric(r#"gantry_acme_orders_total{result="issued"}"#)
            .await,
        2.0
    );
    eventually(10, "a CertificateRenewed Event", || {
        let s = server.clone();
        async move { !events(&s, "CertificateRenewed").is_empty() }
    })
    .await;
}

#[tokio::test]
async fn a_listener_opting_in_has_its_placeholder_secret_replaced() {
    let server = ApiServer::start().await;
    seed(&server).await;
    // The user's placeholder (self-signed) serves until the first certificate; the listener
    // asks for ACME anyway.
    let placeholder = rcgen::generate_simple_self_signed(vec![HOST.to_owned()]).unwrap();
    let b64 = |text: String| {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(text)
    };
    server.apply(
        "secrets",
        json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
               "metadata": {"name": "app-cert", "namespace": "default",
                            // Applied by a person: its fields are theirs.
                            "managedFields": [{"manager": "kubectl", "operation": "Apply",
                                "apiVersion": "v1", "fieldsType": "FieldsV1",
                                "fieldsV1": {"f:data": {"f:tls.crt": {}, "f:tls.key": {}},
                                             "f:type": {}}}]},
               "data": {"tls.crt": b64(placeholder.cert.pem()),
                        "tls.key": b64(placeholder.signing_key.serialize_pem())}}),
    );
    let mut gateway = server.get("gateways", "default", "web").unwrap();
    gateway["spec"]["listeners"][1]["tls"]["options"] = json!({"gantry.dev/acme": "true"});
    server.apply("gateways", gateway);

    let dir = TempDir::new("gantry-kube-acme");
    let offset = offset();
    let pebble = Pebble::start(PebbleOptions::new(80 + offset, 443 + offset)).await;
    let proxy = Replica::start(&server, &dir, "proxy-0", &pebble, offset);
    let client = TlsClient::new(pebble.issuing_roots().await);
    let served = served(&proxy, &client).await;
    assert_ne!(served, placeholder.cert.der().to_vec());
    let secret = server.get("secrets", "default", "app-cert").unwrap();
    assert_eq!(
        secret["metadata"]["annotations"]["gantry.dev/acme-directory"],
        pebble.directory_url.as_str()
    );
    assert_ne!(decoded(&secret, "tls.crt"), placeholder.cert.pem());
    assert_eq!(
        proxy
            .metric(r#"gantry_acme_orders_total{result="issued"}"#)
            .await,
        1.0
    );
}
