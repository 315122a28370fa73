//! HTTP/2 to backends: one multiplexed connection per endpoint, pooled by the endpoint it
//! dials, so the request URI is free to carry the authority the backend should see.
//!
//! hyper-util's pooled client takes both its pool key and HTTP/2's `:authority` from the
//! request URI: it could either pool by endpoint and send the endpoint's address as
//! `:authority`, or send the client's Host and pool (and dial) by that name. Here the
//! endpoint is given beside the request, and the URI's authority is what goes out as
//! `:authority` (RFC 9113 §8.3.1).
//!
//! A connection is opened by the first request to an endpoint (concurrent first requests share
//! that one connect) and shared by every request after it. It is replaced once it closes
//! (GOAWAY, an error, the backend hanging up), and let go after the idle timeout without a new
//! request: it then closes once its last stream ends. The table of connections is read without
//! a lock; it is copied only when a connection is opened or let go.
//!
//! A pool built for a cluster with a BackendConfigPolicy ([`Http2Pool::with_policy`]) also
//! lets a connection go once it carried `maxRequestsPerConnection` requests or is
//! `maxConnectionDuration` old (it closes once its streams end, and the next request opens
//! another), and takes each new connection from the circuit breaker's `maxConnections` (waiting
//! as a pending request when none is free). With `http2.maxConcurrentStreams`, a connection
//! carrying that many streams takes no new request: the next one opens another connection, and
//! the full one is let go (it closes once its streams end). The stream a response holds is
//! given back when its body ends: the response carries it in its extensions, for the caller to
//! keep with the body.

use std::collections::HashMap;
use std::fmt;
use std::future::{Future, poll_fn};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use http::uri::{Authority, Scheme, Uri};
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http2::{self, SendRequest};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::sync::OnceCell;
use tokio::time::Instant;

use super::connect::ConnectionPolicy;
use super::counted::ConnectionState;
use super::limits::{ConnectionLimits, Held, Overflow};
use super::{BoxError, Connector, ProxyBody, UpstreamError};

/// Endpoint → its connection (or the connect under way).
type Table = ArcSwap<HashMap<Authority, Arc<Slot>>>;

/// HTTP/2 connections to endpoints, opened with connector `C`. Cheap to clone: clones share
/// the connections.
pub struct Http2Pool<C> {
    inner: Arc<Inner<C>>,
}

struct Inner<C> {
    connector: C,
    builder: http2::Builder<TokioExecutor>,
    /// The scheme of the URI the connector is called with (`https` lets a TLS connector past
    /// `HttpConnector`'s plaintext check).
    scheme: Scheme,
    table: Arc<Table>,
    idle_timeout: Duration,
    /// What [`Slot::last_used`] counts from.
    epoch: Instant,
    /// The cluster's connection settings, when a policy governs it.
    policy: Option<Arc<ConnectionPolicy>>,
}

/// An open connection.
#[derive(Clone)]
struct Open {
    sender: SendRequest<ProxyBody>,
    /// Its age and request count.
    state: Arc<ConnectionState>,
    /// Its streams in flight, when `http2.maxConcurrentStreams` limits them.
    streams: Option<Arc<ConnectionLimits>>,
}

/// One endpoint's connection.
struct Slot {
    /// Set once, by the first request that needs it; the others wait for the same connect.
    connection: OnceCell<Result<Open, SharedError>>,
    /// When a request last started on it: milliseconds since the pool's epoch.
    last_used: AtomicU64,
}

impl<C> Clone for Http2Pool<C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<C> fmt::Debug for Http2Pool<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Http2Pool")
            .field("scheme", &self.inner.scheme)
            .field("endpoints", &self.inner.table.load().len())
            .finish_non_exhaustive()
    }
}

impl<C: Connector> Http2Pool<C> {
    /// A pool dialling with `connector` (called with `scheme://endpoint/`); connections
    /// without a new request for `idle_timeout` are let go.
    pub fn new(connector: C, scheme: Scheme, idle_timeout: Duration) -> Self {
        Self::build(connector, scheme, idle_timeout, None)
    }

    /// A pool for a cluster with a policy: its idle timeout, connection age and request
    /// limits, and circuit breaker connection limits.
    pub fn with_policy(connector: C, scheme: Scheme, policy: Arc<ConnectionPolicy>) -> Self {
        Self::build(connector, scheme, policy.idle_timeout(), Some(policy))
    }

    fn build(
        connector: C,
        scheme: Scheme,
        idle_timeout: Duration,
        policy: Option<Arc<ConnectionPolicy>>,
    ) -> Self {
        let mut builder = http2::Builder::new(TokioExecutor::new());
        builder.timer(TokioTimer::new());
        Self {
            inner: Arc::new(Inner {
                connector,
                builder,
                scheme,
                table: Arc::new(ArcSwap::default()),
                idle_timeout,
                epoch: Instant::now(),
                policy,
            }),
        }
    }

    /// Sends `request` to `endpoint` over that endpoint's connection. The request URI must be
    /// absolute: its scheme and authority become `:scheme` and `:authority`.
    pub async fn send(
        &self,
        endpoint: &Authority,
        mut request: Request<ProxyBody>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let mut retried = false;
        loop {
            let (slot, open) = self.checkout(endpoint).await?;
            let Open {
                mut sender,
                state,
                streams,
            } = open;
            let stream = match streams.as_ref().map(|streams| streams.try_acquire()) {
                Some(None) => {
                    // Full: let it go, and open another.
                    self.inner.forget(endpoint, Arc::as_ptr(&slot));
                    continue;
                }
                Some(stream) => stream,
                None => None,
            };
            slot.touch(self.inner.now_ms());
            if let Some(policy) = &self.inner.policy
                && policy.retire_after_request(&state)
            {
                // This request is its last: the next one opens another connection.
                self.inner.forget(endpoint, Arc::as_ptr(&slot));
            }
            match sender.try_send_request(request).await {
                Ok(mut response) => {
                    if let Some(stream) = stream {
                        response.extensions_mut().insert(Arc::new(stream));
                    }
                    return Ok(response);
                }
                Err(mut failed) => {
                    // Never sent: the connection closed between the checkout and the send
                    // (GOAWAY, the backend hanging up). Once more, on a new connection.
                    if !retried && let Some(unsent) = failed.take_message() {
                        self.inner.forget(endpoint, Arc::as_ptr(&slot));
                        request = unsent;
                        retried = true;
                        continue;
                    }
                    return Err(UpstreamError::Request {
                        endpoint: endpoint.clone(),
                        source: failed.into_error().into(),
                    });
                }
            }
        }
    }

    /// The endpoint's open connection, opened now if there is none.
    async fn checkout(&self, endpoint: &Authority) -> Result<(Arc<Slot>, Open), UpstreamError> {
        let inner = &self.inner;
        let mut replaced = false;
        loop {
            let slot = inner.slot(endpoint);
            // A connect this request started and abandoned (it was dropped while connecting)
            // leaves no empty slot behind; once the connect is done, this does nothing.
            let started = AtomicBool::new(false);
            let _abandoned = ForgetUnconnected {
                table: &inner.table,
                endpoint,
                slot: &slot,
                started: &started,
            };
            let connection = slot
                .connection
                .get_or_init(|| {
                    started.store(true, Ordering::Relaxed);
                    inner.connect(endpoint, &slot)
                })
                .await;
            match connection {
                Ok(open) if replaced || open.sender.is_ready() => {
                    return Ok((slot.clone(), open.clone()));
                }
                // Closed since it was last used: open another.
                Ok(_) => {
                    inner.forget(endpoint, Arc::as_ptr(&slot));
                    replaced = true;
                }
                Err(error) => {
                    // The next request tries again.
                    inner.forget(endpoint, Arc::as_ptr(&slot));
                    if let Some(overflow) = error.0.downcast_ref::<Overflow>() {
                        return Err(UpstreamError::Overflow(*overflow));
                    }
                    return Err(UpstreamError::Connect {
                        endpoint: endpoint.clone(),
                        source: Box::new(error.clone()),
                    });
                }
            }
        }
    }
}

impl<C: Connector> Inner<C> {
    /// Opens a connection to `endpoint` and starts the task that drives it.
    async fn connect(&self, endpoint: &Authority, slot: &Arc<Slot>) -> Result<Open, SharedError> {
        // The circuit breaker's connection, held for as long as the connection is open.
        let held = match self.policy.as_ref().and_then(|p| p.limits()) {
            Some(limits) => Some(
                limits
                    .acquire()
                    .await
                    .map_err(|overflow| SharedError::from(BoxError::from(overflow)))?,
            ),
            None => None,
        };
        let uri = Uri::builder()
            .scheme(self.scheme.clone())
            .authority(endpoint.clone())
            .path_and_query("/")
            .build()
            .map_err(|e| SharedError::from(BoxError::from(e)))?;
        let mut connector = self.connector.clone();
        poll_fn(|cx| connector.poll_ready(cx))
            .await
            .map_err(|e| SharedError::from(e.into()))?;
        let io = connector
            .call(uri)
            .await
            .map_err(|e| SharedError::from(e.into()))?;
        let (sender, connection) = self
            .builder
            .handshake(io)
            .await
            .map_err(|e| SharedError::from(BoxError::from(e)))?;
        let max_age = self.policy.as_ref().and_then(|p| p.max_age());
        tokio::spawn(drive(
            connection,
            Arc::downgrade(&self.table),
            endpoint.clone(),
            Arc::downgrade(slot),
            Limits {
                idle: self.idle_timeout,
                epoch: self.epoch,
                retire_at: max_age.map(|age| Instant::now() + age),
                held,
            },
        ));
        let streams = self
            .policy
            .as_ref()
            .and_then(|p| p.max_streams())
            .map(|max| ConnectionLimits::new(max, 0));
        Ok(Open {
            sender,
            state: ConnectionState::new(),
            streams,
        })
    }
}

impl<C> Inner<C> {
    fn now_ms(&self) -> u64 {
        millis(self.epoch.elapsed())
    }

    /// The endpoint's slot, added when it has none.
    fn slot(&self, endpoint: &Authority) -> Arc<Slot> {
        if let Some(slot) = self.table.load().get(endpoint) {
            return slot.clone();
        }
        let fresh = Arc::new(Slot {
            connection: OnceCell::new(),
            last_used: AtomicU64::new(self.now_ms()),
        });
        let before = self.table.rcu(|table| {
            if table.contains_key(endpoint) {
                table.clone()
            } else {
                let mut table = HashMap::clone(table);
                table.insert(endpoint.clone(), fresh.clone());
                Arc::new(table)
            }
        });
        before.get(endpoint).cloned().unwrap_or(fresh)
    }

    /// Removes the endpoint's slot if it is still `slot`.
    fn forget(&self, endpoint: &Authority, slot: *const Slot) {
        forget(&self.table, endpoint, slot);
    }
}

fn forget(table: &Table, endpoint: &Authority, slot: *const Slot) {
    let is_current = |table: &HashMap<Authority, Arc<Slot>>| {
        table
            .get(endpoint)
            .is_some_and(|current| std::ptr::eq(Arc::as_ptr(current), slot))
    };
    if !is_current(&table.load()) {
        return;
    }
    table.rcu(|current| {
        if is_current(current) {
            let mut table = HashMap::clone(current);
            table.remove(endpoint);
            Arc::new(table)
        } else {
            current.clone()
        }
    });
}

/// Removes a slot whose connect was abandoned by the request that started it. (A request
/// waiting for it then starts it again, and one arriving later opens its own.)
struct ForgetUnconnected<'a> {
    table: &'a Table,
    endpoint: &'a Authority,
    slot: &'a Arc<Slot>,
    started: &'a AtomicBool,
}

impl Drop for ForgetUnconnected<'_> {
    fn drop(&mut self) {
        if self.started.load(Ordering::Relaxed) && !self.slot.connection.initialized() {
            forget(self.table, self.endpoint, Arc::as_ptr(self.slot));
        }
    }
}

impl Slot {
    fn touch(&self, now_ms: u64) {
        self.last_used.store(now_ms, Ordering::Relaxed);
    }
}

/// What ends a connection's use, for [`drive`].
struct Limits {
    idle: Duration,
    epoch: Instant,
    /// When it gets too old (`maxConnectionDuration`).
    retire_at: Option<Instant>,
    /// The circuit breaker's connection, given back when the connection closes.
    held: Option<Held>,
}

/// Drives one connection until it closes. After `idle` without a new request, or once it is
/// too old, it is let go: no new request gets it, and it closes once its last stream ends.
async fn drive<F>(
    connection: F,
    table: Weak<Table>,
    endpoint: Authority,
    slot: Weak<Slot>,
    limits: Limits,
) where
    F: Future<Output = hyper::Result<()>>,
{
    let let_go = |table: &Weak<Table>| {
        if let Some(table) = table.upgrade() {
            forget(&table, &endpoint, slot.as_ptr());
        }
    };
    let last_used = |slot: &Weak<Slot>| slot.upgrade().map(|s| s.last_used.load(Ordering::Relaxed));
    let Limits {
        idle,
        epoch,
        retire_at,
        held: _held,
    } = limits;
    let mut connection = std::pin::pin!(connection);
    // While the pool or a request holds the slot; once neither does, the connection is closing.
    while let Some(used) = last_used(&slot) {
        let idle_at = epoch + Duration::from_millis(used) + idle;
        let deadline = retire_at.map_or(idle_at, |at| at.min(idle_at));
        tokio::select! {
            closed = &mut connection => {
                if let Err(error) = closed {
                    tracing::debug!(%endpoint, %error, "HTTP/2 connection to the backend failed");
                }
                let_go(&table);
                return;
            }
            () = tokio::time::sleep_until(deadline) => {
                // No request since (idle), or too old.
                if last_used(&slot) == Some(used) || retire_at.is_some_and(|at| at <= deadline) {
                    let_go(&table);
                    break;
                }
            }
        }
    }
    if let Err(error) = connection.await {
        tracing::debug!(%endpoint, %error, "HTTP/2 connection to the backend failed");
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// A connect failure, shared by every request that waited for that connect.
#[derive(Clone, Debug)]
struct SharedError(Arc<dyn std::error::Error + Send + Sync>);

impl From<BoxError> for SharedError {
    fn from(error: BoxError) -> Self {
        Self(Arc::from(error))
    }
}

impl fmt::Display for SharedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for SharedError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use bytes::Bytes;
    use http::Version;
    use http_body_util::Full;
    use hyper::service::service_fn;
    use hyper_util::client::legacy::connect::HttpConnector;
    use hyper_util::rt::TokioIo;
    use tokio::net::TcpListener;
    use tokio::sync::mpsc;

    use super::*;
    use crate::upstream::{empty, http_connector};

    /// What the backend saw.
    #[derive(Debug, PartialEq)]
    enum Event {
        Request {
            connection: usize,
            authority: Option<String>,
            host: Option<String>,
        },
        Closed {
            connection: usize,
        },
    }

    /// An HTTP/2 backend (prior knowledge) reporting each request's `:authority` and `host`
    /// header, numbering its connections; `/hang-up` drops the connection instead of answering,
    /// `/hold` never answers.
    async fn backend() -> (Authority, mpsc::UnboundedReceiver<Event>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let (events, seen) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            for connection in 0.. {
                let (stream, _) = listener.accept().await.expect("accept");
                let events = events.clone();
                tokio::spawn(async move {
                    let (hang_up, mut hung_up) = mpsc::unbounded_channel::<()>();
                    let reports = events.clone();
                    let service = service_fn(move |request: Request<Incoming>| {
                        let _ = reports.send(Event::Request {
                            connection,
                            authority: request.uri().authority().map(ToString::to_string),
                            host: request
                                .headers()
                                .get(http::header::HOST)
                                .map(|h| String::from_utf8_lossy(h.as_bytes()).into_owned()),
                        });
                        let hang_up = hang_up.clone();
                        async move {
                            if request.uri().path() == "/hang-up" {
                                let _ = hang_up.send(());
                                std::future::pending::<()>().await;
                            }
                            if request.uri().path() == "/hold" {
                                std::future::pending::<()>().await;
                            }
                            Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
                        }
                    });
                    let serving = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service);
                    tokio::select! {
                        _ = serving => {}
                        _ = hung_up.recv() => {}
                    }
                    let _ = events.send(Event::Closed { connection });
                });
            }
        });
        let endpoint = addr.to_string().parse().expect("authority");
        (endpoint, seen)
    }

    fn pool(idle: Duration) -> Http2Pool<HttpConnector> {
        Http2Pool::new(http_connector(), Scheme::HTTP, idle)
    }

    fn request(authority: &str, path: &str) -> Request<ProxyBody> {
        Request::builder()
            .uri(format!("http://{authority}{path}"))
            .version(Version::HTTP_2)
            .body(empty())
            .expect("request")
    }

    fn on(connection: usize, authority: &str) -> Event {
        Event::Request {
            connection,
            authority: Some(authority.to_owned()),
            host: None,
        }
    }

    async fn next(seen: &mut mpsc::UnboundedReceiver<Event>) -> Event {
        tokio::time::timeout(Duration::from_secs(10), seen.recv())
            .await
            .expect("the backend saw nothing")
            .expect("backend running")
    }

    const LONG: Duration = Duration::from_secs(3600);

    #[tokio::test]
    async fn requests_to_one_endpoint_share_a_connection_and_carry_their_own_authority() {
        let (endpoint, mut seen) = backend().await;
        let pool = pool(LONG);
        for authority in ["a.example.com", "b.example.com:8443"] {
            let response = pool
                .send(&endpoint, request(authority, "/"))
                .await
                .expect("answered");
            assert_eq!(response.status(), 200);
            assert_eq!(next(&mut seen).await, on(0, authority));
        }
    }

    #[tokio::test]
    async fn concurrent_first_requests_share_one_connect() {
        let (endpoint, mut seen) = backend().await;
        let pool = pool(LONG);
        let sends = (0..8).map(|_| pool.send(&endpoint, request("app.example.com", "/")));
        for answer in futures::future::join_all(sends).await {
            assert_eq!(answer.expect("answered").status(), 200);
        }
        for _ in 0..8 {
            assert_eq!(next(&mut seen).await, on(0, "app.example.com"));
        }
    }

    #[tokio::test]
    async fn a_failed_connection_is_replaced() {
        let (endpoint, mut seen) = backend().await;
        let pool = pool(LONG);
        let failed = pool
            .send(&endpoint, request("app.example.com", "/hang-up"))
            .await;
        assert!(
            matches!(failed, Err(UpstreamError::Request { .. })),
            "{failed:?}"
        );
        assert_eq!(next(&mut seen).await, on(0, "app.example.com"));
        assert_eq!(next(&mut seen).await, Event::Closed { connection: 0 });
        let response = pool
            .send(&endpoint, request("app.example.com", "/"))
            .await
            .expect("answered on a new connection");
        assert_eq!(response.status(), 200);
        assert_eq!(next(&mut seen).await, on(1, "app.example.com"));
    }

    #[tokio::test]
    async fn an_idle_connection_is_let_go() {
        let (endpoint, mut seen) = backend().await;
        let pool = pool(Duration::from_millis(20));
        let response = pool
            .send(&endpoint, request("app.example.com", "/"))
            .await
            .expect("answered");
        drop(response);
        assert_eq!(next(&mut seen).await, on(0, "app.example.com"));
        // Closed by the proxy's side once idle: the backend sees its connection end.
        assert_eq!(next(&mut seen).await, Event::Closed { connection: 0 });
        assert!(pool.inner.table.load().is_empty());
        pool.send(&endpoint, request("app.example.com", "/"))
            .await
            .expect("answered on a new connection");
        assert_eq!(next(&mut seen).await, on(1, "app.example.com"));
    }

    #[tokio::test]
    async fn a_failed_connect_is_a_connect_error_and_is_not_kept() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let endpoint: Authority = listener
            .local_addr()
            .expect("address")
            .to_string()
            .parse()
            .expect("authority");
        drop(listener);
        let pool = pool(LONG);
        let failed = pool.send(&endpoint, request("app.example.com", "/")).await;
        assert!(
            matches!(failed, Err(UpstreamError::Connect { .. })),
            "{failed:?}"
        );
        assert!(pool.inner.table.load().is_empty());
    }

    /// A connector whose connects never finish.
    #[derive(Clone)]
    struct Stalling;

    impl tower_service::Service<Uri> for Stalling {
        type Response = TokioIo<tokio::net::TcpStream>;
        type Error = BoxError;
        type Future =
            std::pin::Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

        fn poll_ready(
            &mut self,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), BoxError>> {
            std::task::Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: Uri) -> Self::Future {
            Box::pin(std::future::pending())
        }
    }

    #[tokio::test]
    async fn an_abandoned_connect_leaves_no_slot_behind() {
        use futures::FutureExt;
        let pool = Http2Pool::new(Stalling, Scheme::HTTP, LONG);
        let endpoint: Authority = "127.0.0.1:1".parse().expect("authority");
        let sending = pool.send(&endpoint, request("app.example.com", "/"));
        // Polled once: the slot is there and its connect under way; then the request is
        // dropped (the client went away).
        assert!(sending.now_or_never().is_none());
        assert!(pool.inner.table.load().is_empty());
    }

    /// A pool with a policy of `connection` and `breaker`.
    fn policy_pool(
        connection: gantry_translate::ir::ConnectionIr,
        breaker: Option<gantry_translate::ir::CircuitBreakerIr>,
    ) -> Http2Pool<HttpConnector> {
        let config = gantry_translate::ir::BackendConfigIr {
            policy: "ns/p".into(),
            load_balancer: gantry_translate::ir::LoadBalancerIr::Random,
            health_check: None,
            circuit_breaker: breaker,
            connection,
        };
        let policy = ConnectionPolicy::new("ns/svc:80", &config, &crate::telemetry::Metrics::new());
        Http2Pool::with_policy(policy.http_connector(), Scheme::HTTP, policy)
    }

    fn breaker(
        connections: u32,
        pending: u32,
        per_connection: Option<u32>,
    ) -> gantry_translate::ir::CircuitBreakerIr {
        gantry_translate::ir::CircuitBreakerIr {
            max_connections: connections,
            max_pending_requests: pending,
            max_parallel_requests: 1024,
            max_parallel_retries: 1024,
            max_requests_per_connection: per_connection,
        }
    }

    /// The connection each of `count` events reports.
    async fn connections(seen: &mut mpsc::UnboundedReceiver<Event>, count: usize) -> Vec<usize> {
        let mut numbers = Vec::new();
        while numbers.len() < count {
            if let Event::Request { connection, .. } = next(seen).await {
                numbers.push(connection);
            }
        }
        numbers.sort_unstable();
        numbers
    }

    #[tokio::test]
    async fn a_connection_at_its_stream_limit_takes_no_new_request() {
        let (endpoint, mut seen) = backend().await;
        let pool = policy_pool(
            gantry_translate::ir::ConnectionIr {
                http2_max_concurrent_streams: Some(2),
                ..gantry_translate::ir::ConnectionIr::DEFAULT
            },
            None,
        );
        let held: Vec<_> = (0..3)
            .map(|_| {
                let pool = pool.clone();
                let endpoint = endpoint.clone();
                tokio::spawn(async move {
                    pool.send(&endpoint, request("app.example.com", "/hold"))
                        .await
                })
            })
            .collect();
        // Two streams on the first connection, the third on a second one.
        assert_eq!(connections(&mut seen, 3).await, [0, 0, 1]);
        for request in held {
            request.abort();
        }
    }

    #[tokio::test]
    async fn a_connection_is_retired_after_its_requests_and_max_connections_refuses_more() {
        let (endpoint, mut seen) = backend().await;
        let pool = policy_pool(
            gantry_translate::ir::ConnectionIr::DEFAULT,
            Some(breaker(1, 0, Some(2))),
        );
        for _ in 0..2 {
            drop(
                pool.send(&endpoint, request("app.example.com", "/"))
                    .await
                    .expect("answered"),
            );
        }
        assert_eq!(connections(&mut seen, 2).await, [0, 0]);
        // The retired connection closes once its streams end; only then may another open.
        let mut closed = false;
        while !closed {
            closed = matches!(next(&mut seen).await, Event::Closed { connection: 0 });
        }
        let third = loop {
            match pool.send(&endpoint, request("app.example.com", "/")).await {
                // The pool's driver may not have seen the close yet: the limit still counts it.
                Err(UpstreamError::Overflow(_)) => tokio::task::yield_now().await,
                other => break other,
            }
        };
        assert_eq!(third.expect("answered").status(), 200);
        assert_eq!(connections(&mut seen, 1).await, [1]);

        // With one connection open and none allowed to wait, another endpoint is refused.
        let (other, _other_seen) = backend().await;
        let refused = pool.send(&other, request("app.example.com", "/")).await;
        assert!(
            matches!(
                refused,
                Err(UpstreamError::Overflow(Overflow {
                    limit: crate::upstream::limits::Limit::MaxConnections
                }))
            ),
            "{refused:?}"
        );
    }
}
