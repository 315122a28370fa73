//! A real ACME server for tests: Debian's `pebble` (package `pebble`) and its
//! `pebble-challtestsrv`, which here only answers DNS (every name → 127.0.0.1), so pebble's
//! validation of HTTP-01 and TLS-ALPN-01 challenges reaches the proxy's listeners on
//! 127.0.0.1.
//!
//! Challenges are really validated (`PEBBLE_VA_ALWAYS_VALID` is not set); validation does not
//! sleep (`PEBBLE_VA_NOSLEEP=1`) and good nonces are never rejected
//! (`PEBBLE_WFE_NONCEREJECT=0`), so a test is deterministic. Pebble serves its directory over
//! HTTPS with a certificate signed by a CA made here ([`Pebble::directory_ca_pem`]); the
//! root that signs issued certificates is fetched from pebble's management API
//! ([`Pebble::issuing_roots`]).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::StatusCode;
use rustls::RootCertStore;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use crate::certs::Ca;
use crate::harness::tempdir::TempDir;
use crate::ports::free_port;
use crate::tls_client::TlsClient;

/// How to start pebble.
#[derive(Clone, Debug)]
pub struct PebbleOptions {
    /// The port pebble's HTTP-01 validation connects to (the proxy's HTTP listener).
    pub http_port: u16,
    /// The port pebble's TLS-ALPN-01 validation connects to (the proxy's HTTPS listener).
    pub tls_port: u16,
    /// Lifetime of issued certificates (pebble's `certificateValidityPeriod`); `None` keeps
    /// pebble's default (about five years).
    pub validity: Option<Duration>,
    /// Require External Account Binding; the key ids and base64url HMAC keys accepted.
    pub eab_keys: Vec<(String, String)>,
}

impl PebbleOptions {
    pub fn new(http_port: u16, tls_port: u16) -> Self {
        Self {
            http_port,
            tls_port,
            validity: None,
            eab_keys: Vec::new(),
        }
    }
}

/// A running pebble and pebble-challtestsrv; both killed on drop.
pub struct Pebble {
    /// `https://localhost:<port>/dir`.
    pub directory_url: String,
    /// The ACME API address.
    pub addr: SocketAddr,
    /// The management API address (`/roots/0`, …).
    pub management: SocketAddr,
    /// The CA that signed pebble's own HTTPS certificate (trust it to reach the directory).
    directory_ca: Ca,
    dir: TempDir,
    pebble: Child,
    challtestsrv: Child,
}

/// Fails clearly when a binary the tests need is missing (CI installs it from `.ci/packages`).
fn require(bin: &str) -> PathBuf {
    for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
        let path = dir.join(bin);
        if path.is_file() {
            return path;
        }
    }
    panic!("`{bin}` is not installed: `apt-get install pebble` (listed in .ci/packages)")
}

impl Pebble {
    /// Starts pebble and challtestsrv and waits until the directory answers.
    pub async fn start(options: PebbleOptions) -> Self {
        let pebble_bin = require("pebble");
        let challtestsrv_bin = require("pebble-challtestsrv");
        let dir = TempDir::new("gantry-pebble");
        let directory_ca = Ca::new("pebble directory test CA");
        let leaf = directory_ca.server(&["localhost", "127.0.0.1"]);
        write(dir.path(), "cert.pem", &leaf.cert_pem);
        write(dir.path(), "key.pem", &leaf.key_pem);
        write(dir.path(), "ca.pem", &directory_ca.cert_pem);

        let dns_port = free_port();
        let challtestsrv_management = free_port();
        let challtestsrv_log = std::fs::File::create(dir.path().join("challtestsrv.log"))
            .expect("creating the challtestsrv log");
        let challtestsrv = Command::new(challtestsrv_bin)
            .args(["-dns01", &format!("127.0.0.1:{dns_port}")])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
            .args([
                "-management",
                &format!("127.0.0.1:{challtestsrv_management}"),
            ])
            .stdout(challtestsrv_log.try_clone().expect("log handle"))
            .stderr(challtestsrv_log)
            .spawn()
            .expect("spawning pebble-challtestsrv");

        let port = free_port();
        let management_port = free_port();
        let mut config = serde_json::json!({
            "listenAddress": format!("127.0.0.1:{port}"),
            "managementListenAddress": format!("127.0.0.1:{management_port}"),
            "certificate": dir.path().join("cert.pem"),
            "privateKey": dir.path().join("key.pem"),
            "httpPort": options.http_port,
            "tlsPort": options.tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": !options.eab_keys.is_empty(),
        });
        if let Some(validity) = options.validity {
            config["certificateValidityPeriod"] = validity.as_secs().into();
        }
        if !options.eab_keys.is_empty() {
            let keys: serde_json::Map<String, serde_json::Value> = options
                .eab_keys
                .iter()
                .map(|(kid, hmac)| (kid.clone(), hmac.clone().into()))
                .collect();
            config["externalAccountMACKeys"] = keys.into();
        }
        let config = serde_json::json!({ "pebble": config });
        write(dir.path(), "pebble-config.json", &config.to_string());
        let pebble_log =
            std::fs::File::create(dir.path().join("pebble.log")).expect("creating the pebble log");
        let pebble = Command::new(pebble_bin)
            .arg("-config")
            .arg(dir.path().join("pebble-config.json"))
            .args(["-dnsserver", &format!("127.0.0.1:{dns_port}")])
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .env_remove("PEBBLE_VA_ALWAYS_VALID")
            .stdout(pebble_log.try_clone().expect("log handle"))
            .stderr(pebble_log)
            .spawn()
            .expect("spawning pebble");

        let pebble = Self {
            directory_url: format!("https://localhost:{port}/dir"),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            management: SocketAddr::from(([127, 0, 0, 1], management_port)),
            directory_ca,
            dir,
            pebble,
            challtestsrv,
        };
        pebble
            .wait_until("challtestsrv answers", || async move {
                tokio::net::TcpStream::connect(("127.0.0.1", challtestsrv_management))
                    .await
                    .is_ok()
            })
            .await;
        let client = pebble.directory_client();
        let addr = pebble.addr;
        pebble
            .wait_until("pebble's directory answers", || {
                let client = client.clone();
                async move {
                    matches!(client.get(addr, "localhost", "localhost", "/dir").await,
                        Ok(reply) if reply.status == StatusCode::OK)
                }
            })
            .await;
        pebble
    }

    /// PEM of the CA that signed pebble's HTTPS certificate: what `--acme-ca-file` holds.
    pub fn directory_ca_pem(&self) -> &str {
        &self.directory_ca.cert_pem
    }

    /// The file holding [`Pebble::directory_ca_pem`].
    pub fn directory_ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A TLS client trusting pebble's HTTPS certificate.
    pub fn directory_client(&self) -> TlsClient {
        TlsClient::new(self.directory_ca.roots())
    }

    /// PEM of the root that signs issued certificates (`GET /roots/0` on the management API;
    /// pebble makes a new one at every start).
    pub async fn issuing_root_pem(&self) -> String {
        let reply = self
            .directory_client()
            .get(self.management, "localhost", "localhost", "/roots/0")
            .await
            .expect("GET /roots/0 from pebble's management API");
        assert_eq!(reply.status, StatusCode::OK, "pebble /roots/0");
        String::from_utf8(reply.body.to_vec()).expect("root PEM is text")
    }

    /// A root store trusting only pebble's issuing root: a client of a proxy serving an issued
    /// certificate.
    pub async fn issuing_roots(&self) -> Arc<RootCertStore> {
        let pem = self.issuing_root_pem().await;
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            roots.add(cert.expect("root PEM")).expect("add pebble root");
        }
        Arc::new(roots)
    }

    /// What pebble logged so far (each order, authorization and validation attempt).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pebble.log")).unwrap_or_default()
    }

    async fn wait_until<F, Fut>(&self, what: &str, mut check: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = Instant::now() + Duration::from_secs(15);
        while !check().await {
            assert!(
                Instant::now() < deadline,
                "{what}: not within 15 s; pebble log:\n{}\nchalltestsrv log:\n{}",
                self.log(),
                std::fs::read_to_string(self.dir.path().join("challtestsrv.log"))
                    .unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        for child in [&mut self.pebble, &mut self.challtestsrv] {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).expect("writing a pebble file");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pebble_serves_its_directory_and_issuing_root() {
        let pebble = Pebble::start(PebbleOptions::new(free_port(), free_port())).await;
        // Pebble builds its URLs from the Host header, as an ACME client sends it.
        let host = format!("localhost:{}", pebble.addr.port());
        let reply = pebble
            .directory_client()
            .get(pebble.addr, "localhost", &host, "/dir")
            .await
            .expect("GET /dir");
        let directory: serde_json::Value =
            serde_json::from_slice(&reply.body).expect("directory JSON");
        assert!(
            directory["newOrder"]
                .as_str()
                .is_some_and(|url| url.starts_with(&format!("https://{host}/"))),
            "directory: {directory}"
        );
        let roots = pebble.issuing_roots().await;
        assert_eq!(roots.len(), 1, "one issuing root");
    }
}
