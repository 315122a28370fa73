//! The ACME client against a real CA (pebble, started by the test kit): an account, orders,
//! challenges really validated over HTTP-01 and TLS-ALPN-01 by pebble connecting back to
//! servers here that answer from [`Challenges`], the issued chain trusted by a client that
//! trusts only pebble's issuing root, the storage directory's files and reuse, and the CA's
//! own error when validation fails.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use gantry_proxy::acme::{
    AcmeClient, AcmeConfig, AcmeStore, ChallengeKind, Challenges, Issued, KeyType,
    TLS_ALPN01_PROTOCOL,
};
use gantry_testkit::harness::tempdir::TempDir;
use gantry_testkit::pebble::{Pebble, PebbleOptions};
use gantry_testkit::ports::free_port;
use gantry_testkit::tls_client::TlsClient;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::ServerConfig;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;

fn config(pebble: &Pebble, challenge: ChallengeKind) -> AcmeConfig {
    AcmeConfig {
        directory: pebble.directory_url.clone(),
        email: Some("ops@example.com".into()),
        ca_file: Some(pebble.directory_ca_file()),
        eab: None,
        challenge,
        key_type: KeyType::EcdsaP256,
    }
}

/// An HTTP server on `port` answering HTTP-01 paths from `challenges`, 404 otherwise.
async fn serve_http01(port: u16, challenges: Challenges) {
    let listener = TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind HTTP-01");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let challenges = challenges.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let answer = challenges.http01_response(req.uri().path());
                    async move {
                        Ok::<_, std::convert::Infallible>(match answer {
                            Some(body) => Response::new(Full::new(Bytes::from(body))),
                            None => Response::builder()
                                .status(StatusCode::NOT_FOUND)
                                .body(Full::new(Bytes::new()))
                                .expect("response"),
                        })
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
}

#[derive(Debug)]
struct AlpnResolver(Challenges);

impl ResolvesServerCert for AlpnResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let acme = hello
            .alpn()
            .is_some_and(|mut protocols| protocols.any(|p| p == TLS_ALPN01_PROTOCOL));
        if !acme {
            return None;
        }
        self.0.tls_alpn01_cert(hello.server_name()?)
    }
}

/// A TLS server on `port` answering `acme-tls/1` handshakes with the challenge certificate.
async fn serve_tls_alpn01(port: u16, challenges: Challenges) {
    let listener = TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind TLS-ALPN-01");
    let mut config = ServerConfig::builder()
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(AlpnResolver(challenges)));
    config.alpn_protocols = vec![TLS_ALPN01_PROTOCOL.to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            // RFC 8737 §3: the handshake is the whole validation; no application data.
            tokio::spawn(async move { drop(acceptor.accept(stream).await) });
        }
    });
}

/// Serves `issued` over TLS on a fresh port and connects with a client trusting only
/// pebble's issuing root, for `hostname`.
async fn assert_trusted(pebble: &Pebble, issued: &Issued, hostname: &str) {
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(issued.chain_pem.as_bytes())
            .collect::<Result<_, _>>()
            .expect("chain PEM");
    assert!(!chain.is_empty(), "issued chain is empty");
    let key = PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes()).expect("key PEM");
    let config = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("issued certificate and key match");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr: SocketAddr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        if let Ok((stream, _)) = listener.accept().await {
            let _ = acceptor.accept(stream).await;
        }
    });
    let client = TlsClient::new(pebble.issuing_roots().await);
    client
        .connect(addr, hostname)
        .await
        .unwrap_or_else(|e| panic!("a client trusting pebble's root rejects the cert: {e}"));
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

#[tokio::test]
async fn http01_issues_a_trusted_certificate_and_stores_it_0600() {
    let http_port = free_port();
    let pebble = Pebble::start(PebbleOptions::new(http_port, free_port())).await;
    let dir = TempDir::new("gantry-acme");
    let store = AcmeStore::open(dir.path()).expect("store");
    let challenges = Challenges::new(Some(store.clone()));
    serve_http01(http_port, challenges.clone()).await;

    let client = AcmeClient::connect(config(&pebble, ChallengeKind::Http01), store, challenges)
        .await
        .expect("account");
    let issued = client
        .issue("http01.example.com")
        .await
        .unwrap_or_else(|e| panic!("issue: {e}\npebble log:\n{}", pebble.log()));
    assert_trusted(&pebble, &issued, "http01.example.com").await;
    assert_eq!(
        leaf_key(&issued.chain_pem),
        (false, 256),
        "an ECDSA P-256 leaf"
    );

    for file in [
        "account.json",
        "certificates/http01.example.com.crt",
        "certificates/http01.example.com.key",
    ] {
        assert_eq!(mode(&dir.path().join(file)), 0o600, "{file}");
    }
    assert!(
        !dir.path().join("orders/http01.example.com.url").exists(),
        "a finished order is not kept for resuming"
    );
    assert_eq!(
        std::fs::read_dir(dir.path().join("challenges"))
            .expect("challenges dir")
            .count(),
        0,
        "answered challenges are removed"
    );

    // The stored account is reused: loading it creates no new account file content.
    let account_before = std::fs::read_to_string(dir.path().join("account.json")).expect("read");
    let reopened = AcmeStore::open(dir.path()).expect("store");
    let again = AcmeClient::connect(
        config(&pebble, ChallengeKind::Http01),
        reopened.clone(),
        Challenges::new(Some(reopened.clone())),
    )
    .await
    .expect("stored account loads");
    let account_after = std::fs::read_to_string(dir.path().join("account.json")).expect("read");
    assert_eq!(account_before, account_after);
    let stored = again
        .store()
        .certificate("http01.example.com")
        .expect("read")
        .expect("stored certificate");
    assert_eq!(stored.chain_pem, issued.chain_pem);
}

/// The leaf's public key: whether it is RSA, and its size in bits.
fn leaf_key(chain_pem: &str) -> (bool, usize) {
    let leaf = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .next()
        .expect("a leaf")
        .expect("leaf PEM");
    let (_, cert) = x509_parser::parse_x509_certificate(&leaf).expect("leaf parses");
    let key = cert.public_key().parsed().expect("leaf public key");
    (
        matches!(key, x509_parser::public_key::PublicKey::RSA(_)),
        key.key_size(),
    )
}

#[tokio::test]
async fn an_rsa_2048_certificate_is_issued_and_served() {
    let http_port = free_port();
    let pebble = Pebble::start(PebbleOptions::new(http_port, free_port())).await;
    let dir = TempDir::new("gantry-acme");
    let store = AcmeStore::open(dir.path()).expect("store");
    let challenges = Challenges::new(Some(store.clone()));
    serve_http01(http_port, challenges.clone()).await;

    let config = AcmeConfig {
        key_type: KeyType::Rsa2048,
        ..config(&pebble, ChallengeKind::Http01)
    };
    let client = AcmeClient::connect(config, store, challenges)
        .await
        .expect("account");
    let issued = client
        .issue("rsa.example.com")
        .await
        .unwrap_or_else(|e| panic!("issue: {e}\npebble log:\n{}", pebble.log()));
    assert_eq!(
        leaf_key(&issued.chain_pem),
        (true, 2048),
        "an RSA 2048 leaf"
    );
    assert!(issued.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    // rustls with ring serves it (signs the handshake with the RSA key).
    assert_trusted(&pebble, &issued, "rsa.example.com").await;
}

#[tokio::test]
async fn tls_alpn01_issues_a_trusted_certificate() {
    let tls_port = free_port();
    let pebble = Pebble::start(PebbleOptions::new(free_port(), tls_port)).await;
    let dir = TempDir::new("gantry-acme");
    let store = AcmeStore::open(dir.path()).expect("store");
    let challenges = Challenges::new(Some(store.clone()));
    serve_tls_alpn01(tls_port, challenges.clone()).await;

    let client = AcmeClient::connect(config(&pebble, ChallengeKind::TlsAlpn01), store, challenges)
        .await
        .expect("account");
    let issued = client
        .issue("alpn.example.com")
        .await
        .unwrap_or_else(|e| panic!("issue: {e}\npebble log:\n{}", pebble.log()));
    assert_trusted(&pebble, &issued, "alpn.example.com").await;
}

#[tokio::test]
async fn a_failed_validation_gives_the_cas_error_and_no_certificate() {
    // Nothing listens on the HTTP-01 port: pebble's validation connection is refused.
    let pebble = Pebble::start(PebbleOptions::new(free_port(), free_port())).await;
    let dir = TempDir::new("gantry-acme");
    let store = AcmeStore::open(dir.path()).expect("store");
    let challenges = Challenges::new(Some(store.clone()));
    let client = AcmeClient::connect(
        config(&pebble, ChallengeKind::Http01),
        store.clone(),
        challenges,
    )
    .await
    .expect("account");
    let error = client
        .issue("refused.example.com")
        .await
        .expect_err("validation cannot succeed");
    assert!(
        error.message.contains("refused.example.com") && error.message.contains("connect"),
        "error names the host and the CA's reason: {error}"
    );
    assert!(
        store
            .certificate("refused.example.com")
            .expect("read")
            .is_none()
    );
    assert!(
        store
            .pending_order("refused.example.com")
            .expect("read")
            .is_none(),
        "an invalid order is not resumed"
    );
}

#[tokio::test]
async fn wildcards_are_refused_before_ordering() {
    let pebble = Pebble::start(PebbleOptions::new(free_port(), free_port())).await;
    let dir = TempDir::new("gantry-acme");
    let store = AcmeStore::open(dir.path()).expect("store");
    let client = AcmeClient::connect(
        config(&pebble, ChallengeKind::Http01),
        store.clone(),
        Challenges::new(Some(store)),
    )
    .await
    .expect("account");
    let error = client.issue("*.example.com").await.expect_err("wildcard");
    assert!(error.message.contains("DNS-01"), "{error}");
}

#[tokio::test]
async fn an_unreachable_directory_is_a_clear_error() {
    let dir = TempDir::new("gantry-acme");
    let store = AcmeStore::open(dir.path()).expect("store");
    let config = AcmeConfig {
        directory: format!("https://127.0.0.1:{}/dir", free_port()),
        ..AcmeConfig::default()
    };
    let error = match AcmeClient::connect(config, store.clone(), Challenges::new(Some(store))).await
    {
        Ok(_) => panic!("no CA listens there"),
        Err(e) => e,
    };
    assert!(!error.message.is_empty());
    assert!(!dir.path().join("account.json").exists());
}

#[tokio::test]
async fn a_stored_order_is_resumed_instead_of_placing_another() {
    let http_port = free_port();
    let pebble = Pebble::start(PebbleOptions::new(http_port, free_port())).await;
    let dir = TempDir::new("gantry-acme");
    let store = AcmeStore::open(dir.path()).expect("store");
    let challenges = Challenges::new(Some(store.clone()));
    serve_http01(http_port, challenges.clone()).await;
    // The account exists (as after a first run); then an order is placed and stored, as a
    // process stopped right after placing it would leave it.
    drop(
        AcmeClient::connect(
            config(&pebble, ChallengeKind::Http01),
            store.clone(),
            challenges.clone(),
        )
        .await
        .expect("account"),
    );
    let credentials: instant_acme::AccountCredentials =
        serde_json::from_str(&store.account().expect("read").expect("stored account"))
            .expect("credentials");
    let account = instant_acme::Account::builder_with_root(pebble.directory_ca_file())
        .expect("builder")
        .from_credentials(credentials)
        .await
        .expect("account");
    let identifiers = [instant_acme::Identifier::Dns("resume.example.com".into())];
    let mut order = account
        .new_order(&instant_acme::NewOrder::new(&identifiers))
        .await
        .expect("order");
    let url = order.url().to_owned();
    assert!(matches!(
        order.state().status,
        instant_acme::OrderStatus::Pending
    ));
    // An RSA key while the client makes ECDSA keys: the stored order's key is used whatever
    // its type.
    let key = gantry_proxy::acme::key::generate(KeyType::Rsa2048).expect("key");
    store
        .save_pending_order("resume.example.com", &url, &key.serialize_pem())
        .await
        .expect("store order");

    // The next run picks the stored order up, answers its challenge and finalizes it.
    let client = AcmeClient::connect(
        config(&pebble, ChallengeKind::Http01),
        store.clone(),
        challenges,
    )
    .await
    .expect("stored account");
    let issued = client
        .issue("resume.example.com")
        .await
        .unwrap_or_else(|e| panic!("issue: {e}\npebble log:\n{}", pebble.log()));
    assert_trusted(&pebble, &issued, "resume.example.com").await;
    assert_eq!(
        issued.key_pem,
        key.serialize_pem(),
        "the stored order's key is the certificate's"
    );
    assert_eq!(leaf_key(&issued.chain_pem), (true, 2048));
    let mut stored_order = account.order(url).await.expect("stored order");
    assert!(
        matches!(
            stored_order.state().status,
            instant_acme::OrderStatus::Valid
        ),
        "the stored order was the one finalized: {:?}",
        stored_order.state().status
    );
    assert!(
        store
            .pending_order("resume.example.com")
            .expect("read")
            .is_none()
    );
}
