//! Test support for Kubernetes mode: helpers around the in-process API server of
//! `gantry_testkit::apiserver` (shared with the benchmark).

#![allow(dead_code, clippy::unwrap_used)]

pub use gantry_testkit::apiserver;
pub use gantry_testkit::apiserver::objects;

#[allow(unused_imports)] // not every test binary picks ports
pub use gantry_testkit::ports::free_port;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use gantry_proxy::kubernetes::metrics::KubeMetrics;
use gantry_proxy::kubernetes::status_writer::StatusWriter;
use gantry_proxy::kubernetes::watch::Scope;
use gantry_proxy::source::SourceUpdate;
use gantry_proxy::telemetry::Metrics;
use gantry_translate::status::ObjectStatus;
use gantry_translate::store::{ObjectKey, Store};
use gantry_translate::translate::{TranslateOptions, translate};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// The statuses the translator wants for `store`, serving [`gw`].
pub fn desired(store: &Store) -> Vec<ObjectStatus> {
    let options = TranslateOptions {
        gateways: Some(vec![gw()]),
        ..TranslateOptions::default()
    };
    translate(store, &options).statuses
}

/// A status writer for [`gw`] talking to `server`.
pub fn writer(server: &apiserver::ApiServer) -> StatusWriter {
    StatusWriter::new(server.client(), objects::CONTROLLER.to_owned(), vec![gw()])
}

/// A clock for status writers far from now: a condition stamped with it cannot carry the
/// time of an earlier write by chance.
pub fn later() -> String {
    "2100-01-01T00:00:00Z".to_owned()
}

/// A `kube::Client` of the in-process API server.
pub trait Client {
    fn client(&self) -> kube::Client;
}

impl Client for apiserver::ApiServer {
    fn client(&self) -> kube::Client {
        let config = kube::Config::new(self.url().parse().unwrap());
        kube::Client::try_from(config).unwrap()
    }
}

/// A backend answering every request with `200` and `backend saw <path>`.
pub async fn start_backend() -> SocketAddr {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&seen);
                let path = text.split_whitespace().nth(1).unwrap_or("?").to_owned();
                let body = format!("backend saw {path}");
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
            });
        }
    });
    addr
}

/// `GET path` on 127.0.0.1:port; the status code and body, or `None` when nothing answered.
pub async fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).await.ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nhost: example.com\r\nconnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.ok()?;
    let text = String::from_utf8_lossy(&response).into_owned();
    let code = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Some((code, body))
}

/// Polls `check` every 20 ms until it holds; panics after `secs` seconds.
pub async fn eventually<F, Fut>(secs: u64, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A child process killed (and reaped) when dropped.
pub struct Killed(pub std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The proxy's admin `/readyz` answers 200.
pub async fn admin_ready(admin: u16) -> bool {
    http_get(admin, "/readyz")
        .await
        .is_some_and(|(code, _)| code == 200)
}

/// The Gateway `default/gw`.
pub fn gw() -> ObjectKey {
    ObjectKey::new("default", "gw")
}

/// Starts the Kubernetes source for `default/gw`; returns its output.
pub fn start_source(server: &apiserver::ApiServer) -> watch::Receiver<Option<SourceUpdate>> {
    start_source_counted(server, &counted())
}

/// Metrics with Kubernetes mode's families registered.
pub fn counted() -> (Arc<Metrics>, KubeMetrics) {
    let kube = KubeMetrics::default();
    let metrics = Arc::new(Metrics::with(|registry| kube.register(registry)));
    (metrics, kube)
}

/// [`start_source`], counting into `metrics` (from [`counted`]).
pub fn start_source_counted(
    server: &apiserver::ApiServer,
    (metrics, kube): &(Arc<Metrics>, KubeMetrics),
) -> watch::Receiver<Option<SourceUpdate>> {
    let (tx, rx) = watch::channel(None);
    tokio::spawn(gantry_proxy::kubernetes::watch::run(
        server.client(),
        Scope::Gateways(vec![gw()]),
        tx,
        metrics.clone(),
        kube.clone(),
    ));
    rx
}

/// The latest store, once one satisfies `check`.
pub async fn store_where(
    rx: &watch::Receiver<Option<SourceUpdate>>,
    what: &str,
    check: impl Fn(&Store) -> bool,
) -> Arc<Store> {
    let mut found = None;
    eventually(10, what, || {
        let current = match &*rx.borrow() {
            Some(SourceUpdate::Objects { store, .. }) if check(store) => Some(store.clone()),
            _ => None,
        };
        let ok = current.is_some();
        found = current;
        async move { ok }
    })
    .await;
    found.unwrap()
}

/// Adds HTTPRoute `default/r2` (path `/two` to Service `echo`) through the API server and waits
/// until the proxy on `port` serves it.
pub async fn add_route_and_wait_until_served(server: &apiserver::ApiServer, port: u16) {
    server.apply(
        "httproutes",
        objects::http_route("default", "r2", "gw", "/two", "echo", 80),
    );
    eventually(
        10,
        "the route added through the watch to be served",
        || async move {
            http_get(port, "/two")
                .await
                .is_some_and(|(code, _)| code == 200)
        },
    )
    .await;
}
