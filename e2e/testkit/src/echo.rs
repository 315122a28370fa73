//! The echo backend: answers every request with the request it saw, as JSON.
//!
//! Used by the black-box tests and by the quick start. Besides echoing it can be told, per
//! request, to answer slowly (`x-echo-delay-ms`, or the query parameter `echo-delay-ms`, which
//! reaches one backend where a header would reach all, as in a composition) or with another
//! status (`x-echo-status`, or `echo-status`), to
//! fail the first N requests that carry one `x-request-id` (`x-echo-fail-first: N`, failing as
//! `x-echo-fail-with` says: a status such as `503`, `close` to close the connection without an
//! answer, or `slow:MS` to answer only after MS milliseconds; a retried request keeps its
//! request ID, so this is how tests make the first attempts fail), it
//! echoes WebSocket messages after an upgrade, and it remembers the last requests it served at
//! `GET /_echo/seen` (so a test can see what a mirror received).
//!
//! With a TLS configuration ([`tls_config`], [`spawn_tls`]) it serves HTTPS instead and reports
//! the handshake in every answer: the SNI it was sent, the ALPN protocol, and the subject of
//! the client certificate when it requires one.
//!
//! [`spawn_counting`] counts its connections ([`ConnectionCounts`]: accepted, open now) and
//! numbers them, reporting in each answer the connection that carried the request.
//!
//! `GET /_echo/health` is a health endpoint for active health checks: `200` unless a test
//! flips it. [`spawn_switchable`] hands a test the [`Switches`] of a backend: the health
//! endpoint's status, and a status every other request is answered with (a failing endpoint,
//! for outlier detection).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http::{HeaderMap, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

/// What the echo backend answers with.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Echo {
    /// The backend's name (`--name`), so tests can tell backends apart.
    pub name: String,
    /// The backend's namespace (`--namespace`).
    pub namespace: String,
    pub method: String,
    /// Path and query, as received.
    pub path: String,
    /// The Host header (or HTTP/2 authority).
    pub host: String,
    /// HTTP/2's `:authority` (the request URI's authority); absent over HTTP/1.1, where the
    /// request target is in origin form. Whether a `host` header came too is in `headers`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority: Option<String>,
    /// `HTTP/1.1` or `HTTP/2.0`.
    pub protocol: String,
    /// Header values by lower-case name, in order received.
    pub headers: BTreeMap<String, Vec<String>>,
    /// Request body, as UTF-8 (lossy).
    pub body: String,
    /// The TLS handshake of the connection; absent for plaintext.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<EchoTls>,
    /// With `x-echo-fail-first`: how many requests with this `x-request-id` this backend saw,
    /// this one included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u64>,
    /// From a counting backend ([`spawn_counting`]): the connection that carried the request,
    /// numbered from 1 in the order they were accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection: Option<u64>,
}

/// The connections of a counting echo backend ([`spawn_counting`]).
#[derive(Debug, Default)]
pub struct ConnectionCounts {
    accepted: AtomicU64,
    open: AtomicU64,
}

impl ConnectionCounts {
    /// Connections accepted since the backend started.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Connections open now (closed by either side once the server sees the close).
    pub fn open(&self) -> u64 {
        self.open.load(Ordering::SeqCst)
    }
}

/// What the echo backend saw of a TLS handshake.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct EchoTls {
    /// The server name the client sent.
    pub sni: Option<String>,
    /// The negotiated ALPN protocol.
    pub alpn: Option<String>,
    /// The client certificate's subject (e.g. `CN=gateway`), when one was presented.
    pub client_subject: Option<String>,
}

impl Echo {
    /// First value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .and_then(|v| v.first())
            .map(String::as_str)
    }
}

/// Identity of one echo backend.
#[derive(Clone, Debug)]
pub struct EchoIdentity {
    pub name: String,
    pub namespace: String,
    /// Answer `ok` to everything, without echoing (a fast backend for benchmarks).
    pub plain: bool,
}

/// What a test flips on a running echo backend ([`spawn_switchable`]).
#[derive(Debug)]
pub struct Switches {
    health: AtomicU16,
    fail: AtomicU16,
}

impl Default for Switches {
    fn default() -> Self {
        Self {
            health: AtomicU16::new(200),
            fail: AtomicU16::new(0),
        }
    }
}

impl Switches {
    /// The status `GET /_echo/health` answers with from now on (at first `200`).
    pub fn set_health(&self, status: u16) {
        self.health.store(status, Ordering::SeqCst);
    }

    /// Every other request is answered with `status` (still echoing what it saw) from now on;
    /// `None`: as usual.
    pub fn fail_with(&self, status: Option<u16>) {
        self.fail.store(status.unwrap_or(0), Ordering::SeqCst);
    }
}

const SEEN_LIMIT: usize = 1000;

struct State {
    identity: EchoIdentity,
    switches: Arc<Switches>,
    seen: Mutex<VecDeque<Echo>>,
    /// Requests seen per `x-request-id`, for `x-echo-fail-first`.
    attempts: Mutex<HashMap<String, u64>>,
}

/// How a request told to fail (`x-echo-fail-first`) fails.
enum Failure {
    Status(StatusCode),
    Close,
    Slow(Duration),
}

impl Failure {
    fn parse(headers: &HeaderMap) -> Self {
        let text = headers
            .get("x-echo-fail-with")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("503")
            .trim();
        if text == "close" {
            return Self::Close;
        }
        if let Some(ms) = text.strip_prefix("slow:").and_then(|ms| ms.parse().ok()) {
            return Self::Slow(Duration::from_millis(ms));
        }
        Self::Status(
            text.parse()
                .ok()
                .and_then(|s| StatusCode::from_u16(s).ok())
                .unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
        )
    }
}

/// An error that makes the server close the connection without answering.
#[derive(Debug)]
struct Hangup;

impl std::fmt::Display for Hangup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("told to close the connection without answering")
    }
}

impl std::error::Error for Hangup {}

/// Serves the echo backend on `listener` until the task is dropped. Speaks HTTP/1.1 and
/// HTTP/2 with prior knowledge on the same port.
pub async fn serve(listener: TcpListener, identity: EchoIdentity) {
    serve_with(listener, identity, None, None, Arc::default()).await;
}

/// Like [`serve`], over TLS with `config` (see [`tls_config`]). A failed handshake closes
/// that connection only.
pub async fn serve_tls(listener: TcpListener, identity: EchoIdentity, config: Arc<ServerConfig>) {
    serve_with(
        listener,
        identity,
        Some(TlsAcceptor::from(config)),
        None,
        Arc::default(),
    )
    .await;
}

async fn serve_with(
    listener: TcpListener,
    identity: EchoIdentity,
    tls: Option<TlsAcceptor>,
    counts: Option<Arc<ConnectionCounts>>,
    switches: Arc<Switches>,
) {
    let state = Arc::new(State {
        identity,
        switches,
        seen: Mutex::new(VecDeque::new()),
        attempts: Mutex::new(HashMap::new()),
    });
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let state = state.clone();
        let tls = tls.clone();
        let counts = counts.clone();
        let number = counts.as_ref().map(|c| {
            c.open.fetch_add(1, Ordering::SeqCst);
            c.accepted.fetch_add(1, Ordering::SeqCst) + 1
        });
        tokio::spawn(async move {
            let _closed = counts.map(Closed);
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            match tls {
                None => {
                    let service = service_fn(move |req| handle(state.clone(), None, number, req));
                    let _ = builder
                        .serve_connection_with_upgrades(TokioIo::new(stream), service)
                        .await;
                }
                Some(acceptor) => {
                    let Ok(stream) = acceptor.accept(stream).await else {
                        return;
                    };
                    let seen = Arc::new(handshake(stream.get_ref().1));
                    let service = service_fn(move |req| {
                        handle(state.clone(), Some(seen.clone()), number, req)
                    });
                    let _ = builder
                        .serve_connection_with_upgrades(TokioIo::new(stream), service)
                        .await;
                }
            }
        });
    }
}

/// A TLS server configuration with `cert_pem`/`key_pem`, offering ALPN `h2` and `http/1.1`.
/// With `client_ca_pem`, a client certificate signed by that CA is required.
pub fn tls_config(
    cert_pem: &str,
    key_pem: &str,
    client_ca_pem: Option<&str>,
) -> anyhow::Result<Arc<ServerConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain =
        CertificateDer::pem_slice_iter(cert_pem.as_bytes()).collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let builder = match client_ca_pem {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(ca.as_bytes()) {
                roots.add(cert?)?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// What the handshake of one connection settled.
pub(crate) fn handshake(session: &rustls::ServerConnection) -> EchoTls {
    let client_subject = session
        .peer_certificates()
        .and_then(|certs| certs.first())
        .and_then(|der| x509_parser::parse_x509_certificate(der).ok())
        .map(|(_, cert)| cert.subject().to_string());
    EchoTls {
        sni: session.server_name().map(str::to_owned),
        alpn: session
            .alpn_protocol()
            .map(|p| String::from_utf8_lossy(p).into_owned()),
        client_subject,
    }
}

/// Binds `addr` and serves; returns the bound address and the serving task.
pub async fn spawn(
    addr: SocketAddr,
    identity: EchoIdentity,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    Ok((bound, tokio::spawn(serve(listener, identity))))
}

/// Like [`spawn`], counting and numbering the backend's connections.
pub async fn spawn_counting(
    addr: SocketAddr,
    identity: EchoIdentity,
) -> std::io::Result<(
    SocketAddr,
    Arc<ConnectionCounts>,
    tokio::task::JoinHandle<()>,
)> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let counts = Arc::new(ConnectionCounts::default());
    let task = tokio::spawn(serve_with(
        listener,
        identity,
        None,
        Some(counts.clone()),
        Arc::default(),
    ));
    Ok((bound, counts, task))
}

/// Like [`spawn`], with [`Switches`] the test flips while the backend runs.
pub async fn spawn_switchable(
    addr: SocketAddr,
    identity: EchoIdentity,
) -> std::io::Result<(SocketAddr, Arc<Switches>, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let switches = Arc::new(Switches::default());
    let task = tokio::spawn(serve_with(listener, identity, None, None, switches.clone()));
    Ok((bound, switches, task))
}

/// Counts a connection closed when dropped.
struct Closed(Arc<ConnectionCounts>);

impl Drop for Closed {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Like [`spawn`], serving HTTPS with `config`.
pub async fn spawn_tls(
    addr: SocketAddr,
    identity: EchoIdentity,
    config: Arc<ServerConfig>,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    Ok((bound, tokio::spawn(serve_tls(listener, identity, config))))
}

async fn handle(
    state: Arc<State>,
    tls: Option<Arc<EchoTls>>,
    connection: Option<u64>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Hangup> {
    if state.identity.plain {
        return Ok(Response::new(Full::new(Bytes::from_static(b"ok\n"))));
    }
    if req.uri().path() == "/_echo/seen" {
        let seen: Vec<Echo> = state
            .seen
            .lock()
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        return Ok(json_response(StatusCode::OK, &seen));
    }
    if req.uri().path() == "/_echo/health" {
        let status = StatusCode::from_u16(state.switches.health.load(Ordering::SeqCst))
            .unwrap_or(StatusCode::OK);
        return Ok(json_response(status, &state.identity.name));
    }
    if is_websocket_upgrade(req.headers()) {
        return Ok(upgrade_websocket(req));
    }
    let query = req.uri().query();
    let mut delay = header_number(req.headers(), "x-echo-delay-ms")
        .or_else(|| query_number(query, "echo-delay-ms"));
    let mut status = header_number(req.headers(), "x-echo-status")
        .or_else(|| query_number(query, "echo-status"))
        .and_then(|s| StatusCode::from_u16(u16::try_from(s).ok()?).ok())
        .unwrap_or(StatusCode::OK);
    if let Ok(failing) = StatusCode::from_u16(state.switches.fail.load(Ordering::SeqCst)) {
        status = failing;
    }
    let mut attempt = None;
    if let Some(fail_first) = header_number(req.headers(), "x-echo-fail-first") {
        let id = req
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let seen = state
            .attempts
            .lock()
            .map(|mut a| {
                let n = a.entry(id).or_insert(0);
                *n += 1;
                *n
            })
            .unwrap_or(1);
        attempt = Some(seen);
        if seen <= fail_first {
            match Failure::parse(req.headers()) {
                Failure::Status(failed) => status = failed,
                Failure::Close => return Err(Hangup),
                Failure::Slow(wait) => delay = Some(u64::try_from(wait.as_millis()).unwrap_or(0)),
            }
        }
    }
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in &parts.headers {
        headers
            .entry(name.as_str().to_owned())
            .or_default()
            .push(String::from_utf8_lossy(value.as_bytes()).into_owned());
    }
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| parts.uri.authority().map(|a| a.to_string()))
        .unwrap_or_default();
    let echo = Echo {
        name: state.identity.name.clone(),
        namespace: state.identity.namespace.clone(),
        method: parts.method.to_string(),
        path: parts
            .uri
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_else(|| "/".to_owned()),
        host,
        authority: parts.uri.authority().map(ToString::to_string),
        protocol: format!("{:?}", parts.version),
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
        tls: tls.as_deref().cloned(),
        attempt,
        connection,
    };
    if let Ok(mut seen) = state.seen.lock() {
        if seen.len() == SEEN_LIMIT {
            seen.pop_front();
        }
        seen.push_back(echo.clone());
    }
    if let Some(ms) = delay {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    Ok(json_response(status, &echo))
}

fn json_response<T: Serialize>(status: StatusCode, value: &T) -> Response<Full<Bytes>> {
    let body = serde_json::to_vec_pretty(value).unwrap_or_default();
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}

fn query_number(query: Option<&str>, name: &str) -> Option<u64> {
    query?
        .split('&')
        .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))?
        .parse()
        .ok()
}

fn header_number(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

fn is_websocket_upgrade(headers: &HeaderMap) -> bool {
    let has_token = |name: header::HeaderName, token: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    has_token(header::CONNECTION, "upgrade") && has_token(header::UPGRADE, "websocket")
}

/// Completes the WebSocket handshake and echoes every text and binary message back.
fn upgrade_websocket(mut req: Request<Incoming>) -> Response<Full<Bytes>> {
    let Some(key) = req.headers().get(header::SEC_WEBSOCKET_KEY) else {
        let mut r = Response::new(Full::new(Bytes::from_static(b"missing Sec-WebSocket-Key")));
        *r.status_mut() = StatusCode::BAD_REQUEST;
        return r;
    };
    let accept = derive_accept_key(key.as_bytes());
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        let (mut tx, mut rx) = ws.split();
        while let Some(Ok(msg)) = rx.next().await {
            if msg.is_text() || msg.is_binary() {
                if tx.send(msg).await.is_err() {
                    break;
                }
            } else if msg.is_close() {
                break;
            }
        }
    });
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = response.headers_mut();
    h.insert(
        header::CONNECTION,
        header::HeaderValue::from_static("upgrade"),
    );
    h.insert(
        header::UPGRADE,
        header::HeaderValue::from_static("websocket"),
    );
    if let Ok(v) = header::HeaderValue::from_str(&accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    response
}
