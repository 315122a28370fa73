//! HTTP/1.1 to backends: keep-alive connections pooled by the endpoint they dial, most
//! recently used first. One pool serves every plaintext cluster without a BackendConfigPolicy;
//! each cluster with a policy, and each TLS cluster, has a pool of its own (`clients`, `tls`),
//! built with its connector and settings, so its connections are never shared with clusters
//! under other settings.
//!
//! It replaces hyper-util's pooled client, which cost about 9,500 instructions per request
//! (callgrind, `e2e/bench/run.sh --instructions-only`, docs/benchmarks.md): its checkout and
//! return each hashed the pool key (scheme and authority) byte by byte with SipHash under one
//! process-wide lock, and rebuilt the request URI. Here the endpoint's idle stack is found by
//! its address string (one foldhash, in a lock-free map) and popped or pushed under its own
//! lock, held for that push or pop only.
//!
//! A connection is taken from the stack when its request starts and given back when its
//! response body has ended (read to its end, or empty), so a connection carries one request at
//! a time, as HTTP/1.1 requires without pipelining. A body dropped before its end takes its
//! connection with it: the connection closes. A connection the backend closed while idle is
//! noticed at checkout (it is not ready) and skipped; a request that could not be written on a
//! reused connection (it closed between checkout and send) is sent once more on a new one, as
//! hyper-util's client does. Idle connections older than the idle timeout are closed by a
//! sweep that runs while the pool has any.
//!
//! A pool built for a cluster with a policy ([`Http1Pool::with_policy`]) uses the policy's idle
//! timeout, and retires a connection once it carried `maxRequestsPerConnection` requests or is
//! `maxConnectionDuration` old: it is not given back after that response (it closes once the
//! response is read), and an idle one that got too old is closed instead of handed out. Each
//! connection knows its own age and request count ([`Life`]); as one connection carries one
//! request at a time, they travel with it and need no lock. The circuit breaker's
//! `maxConnections` is taken per request by the caller (`Upstreams::send_via`), and the
//! connector (`counted::Counted`) counts open connections in the cluster's gauge.

use std::future::poll_fn;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use foldhash::fast::RandomState;
use http::header::HOST;
use http::uri::{Authority, PathAndQuery, Scheme, Uri};
use http::{HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::client::legacy::connect::HttpConnector;
use parking_lot::Mutex;
use tokio::time::Instant;

use super::connect::ConnectionPolicy;
use super::{BoxError, Connector, ProxyBody, UpstreamError};

/// Endpoint address → its idle connections.
type Endpoints = papaya::HashMap<Box<str>, Arc<IdleStack>, RandomState>;

/// HTTP/1.1 connections to endpoints, dialled with connector `C` (plain TCP by default).
/// Cheap to clone: clones share the connections.
pub struct Http1Pool<C = HttpConnector> {
    inner: Arc<Inner<C>>,
}

impl<C> Clone for Http1Pool<C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

struct Inner<C> {
    connector: C,
    /// What the connector is called with: `scheme://endpoint/`.
    scheme: Scheme,
    builder: http1::Builder,
    idle_timeout: Duration,
    /// The connection settings of a cluster a BackendConfigPolicy governs.
    policy: Option<Arc<ConnectionPolicy>>,
    endpoints: Endpoints,
    /// Set while a sweep task runs.
    sweeping: std::sync::atomic::AtomicBool,
}

/// One endpoint's idle connections, the most recently used last: a stack per worker thread
/// (`crate::workers`). A connection's task runs on the worker that opened it, and the
/// connection goes back to that worker's stack, so a request takes only connections whose
/// task runs on its own thread (a request on another thread would wake that thread to send
/// and to read).
pub(super) struct IdleStack {
    workers: Box<[Mutex<Vec<Idle>>]>,
}

impl Default for IdleStack {
    fn default() -> Self {
        Self {
            workers: (0..crate::workers::count())
                .map(|_| Mutex::default())
                .collect(),
        }
    }
}

impl IdleStack {
    /// The idle connections of `worker` (of worker 0 for a thread that is no worker).
    fn of(&self, worker: usize) -> &Mutex<Vec<Idle>> {
        self.workers.get(worker).unwrap_or(&self.workers[0])
    }

    /// The idle connections of the worker running now.
    fn here(&self) -> &Mutex<Vec<Idle>> {
        self.of(crate::workers::index())
    }
}

struct Idle {
    sender: SendRequest<ProxyBody>,
    since: Instant,
    life: Life,
}

/// What one connection has lived: when it was opened, how many requests it carried, and the
/// worker whose thread runs its task.
#[derive(Clone, Copy, Debug)]
struct Life {
    opened: Instant,
    carried: u32,
    worker: usize,
}

impl Life {
    fn new() -> Self {
        Self {
            opened: Instant::now(),
            carried: 0,
            worker: crate::workers::index(),
        }
    }
}

/// A connection lent to one request: given back to its endpoint's stack when the response
/// body ends ([`super::UpstreamBody`] holds it), closed when dropped before that.
pub struct Lent {
    sender: SendRequest<ProxyBody>,
    stack: Arc<IdleStack>,
    life: Life,
}

impl Lent {
    /// Gives the connection back: its response is over. It is pushed once the task driving
    /// it is ready for the next request, at once in the common case; otherwise a small task
    /// waits for that (the last bytes are still being read or the request body written).
    pub(super) fn give_back(self) {
        let Self {
            mut sender,
            stack,
            life,
        } = self;
        let mut cx = Context::from_waker(Waker::noop());
        match sender.poll_ready(&mut cx) {
            Poll::Ready(Ok(())) => stack.push(sender, life),
            Poll::Ready(Err(_)) => {}
            Poll::Pending => {
                if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                    runtime.spawn(async move {
                        if sender.ready().await.is_ok() {
                            stack.push(sender, life);
                        }
                    });
                }
            }
        }
    }
}

impl IdleStack {
    fn push(&self, sender: SendRequest<ProxyBody>, life: Life) {
        self.of(life.worker).lock().push(Idle {
            sender,
            since: Instant::now(),
            life,
        });
    }
}

impl std::fmt::Debug for Lent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lent").finish_non_exhaustive()
    }
}

impl<C> std::fmt::Debug for Http1Pool<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Http1Pool")
            .field("endpoints", &self.inner.endpoints.len())
            .finish_non_exhaustive()
    }
}

impl<C: Connector> Http1Pool<C> {
    /// A pool dialling with `connector` (called with `scheme://endpoint/`); connections idle
    /// for `idle_timeout` are closed.
    pub fn new(connector: C, scheme: Scheme, idle_timeout: Duration) -> Self {
        Self::build(connector, scheme, idle_timeout, None)
    }

    /// A pool for a cluster with a policy: its idle timeout, and connections retired after
    /// `maxRequestsPerConnection` requests or `maxConnectionDuration`.
    pub fn with_policy(connector: C, scheme: Scheme, policy: Arc<ConnectionPolicy>) -> Self {
        Self::build(connector, scheme, policy.idle_timeout(), Some(policy))
    }

    fn build(
        connector: C,
        scheme: Scheme,
        idle_timeout: Duration,
        policy: Option<Arc<ConnectionPolicy>>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                connector,
                scheme,
                builder: http1::Builder::new(),
                idle_timeout,
                policy,
                endpoints: Endpoints::with_hasher(RandomState::default()),
                sweeping: std::sync::atomic::AtomicBool::new(false),
            }),
        }
    }

    /// Sends `request` (its URI a path and query) to `endpoint` over a pooled connection, or
    /// a new one. The Host header goes as it is; a request without one gets the endpoint's
    /// address, as hyper-util's client does. The connection comes back with the response,
    /// to be given back when its body ends; a `101 Switching Protocols` keeps it (the
    /// upgraded stream owns it), and so does a connection this response retires (it closes
    /// once the response is read).
    pub async fn send(
        &self,
        endpoint: &Authority,
        mut request: Request<ProxyBody>,
    ) -> Result<(Response<Incoming>, Option<Lent>), UpstreamError> {
        if !request.headers().contains_key(HOST)
            && let Ok(host) = HeaderValue::from_str(endpoint.as_str())
        {
            request.headers_mut().insert(HOST, host);
        }
        let origin_form = request
            .uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        *request.uri_mut() = Uri::from(origin_form);
        let stack = self.inner.stack(endpoint);
        let mut retried = false;
        loop {
            let (mut sender, mut life, reused) = match self.checkout(&stack) {
                Some((sender, life)) => (sender, life, true),
                None => (self.inner.connect(endpoint).await?, Life::new(), false),
            };
            match sender.try_send_request(request).await {
                Ok(response) => {
                    life.carried = life.carried.saturating_add(1);
                    let kept = response.status() != StatusCode::SWITCHING_PROTOCOLS
                        && !self.inner.retires(&life);
                    let lent = kept.then(|| Lent {
                        sender,
                        stack: stack.clone(),
                        life,
                    });
                    return Ok((response, lent));
                }
                Err(mut failed) => {
                    // Never written: the reused connection closed between checkout and send.
                    // Once more, on the next idle connection or a new one.
                    if reused
                        && !retried
                        && let Some(unsent) = failed.take_message()
                    {
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

    /// The most recently used idle connection that is still open and fresh; the closed, stale
    /// and too old ones on the way are dropped (closing them).
    fn checkout(&self, stack: &IdleStack) -> Option<(SendRequest<ProxyBody>, Life)> {
        let mut cx = Context::from_waker(Waker::noop());
        loop {
            let mut idle = stack.here().lock().pop()?;
            if idle.since.elapsed() >= self.inner.idle_timeout || self.inner.retires(&idle.life) {
                continue;
            }
            // Only ready connections are pushed; not ready now means it closed.
            if let Poll::Ready(Ok(())) = idle.sender.poll_ready(&mut cx) {
                return Some((idle.sender, idle.life));
            }
        }
    }

    /// How many idle connections the pool holds for `endpoint` (tests).
    #[cfg(test)]
    fn idle(&self, endpoint: &str) -> usize {
        self.inner.endpoints.pin().get(endpoint).map_or(0, |stack| {
            stack.workers.iter().map(|w| w.lock().len()).sum()
        })
    }
}

impl<C> Inner<C> {
    /// True when the policy retires a connection that lived `life`: after its response, or
    /// when it is found idle (then only its age can retire it, as a connection that carried
    /// its last request was never given back).
    fn retires(&self, life: &Life) -> bool {
        self.policy
            .as_ref()
            .is_some_and(|policy| policy.retires(life.carried, life.opened))
    }
}

impl<C: Connector> Inner<C> {
    /// The endpoint's idle stack, added when it has none.
    fn stack(self: &Arc<Self>, endpoint: &Authority) -> Arc<IdleStack> {
        let endpoints = self.endpoints.pin();
        if let Some(stack) = endpoints.get(endpoint.as_str()) {
            return stack.clone();
        }
        let stack = endpoints
            .get_or_insert_with(endpoint.as_str().into(), Arc::default)
            .clone();
        drop(endpoints);
        self.start_sweeping();
        stack
    }

    /// Opens a connection to `endpoint` and starts the task that drives it.
    async fn connect(&self, endpoint: &Authority) -> Result<SendRequest<ProxyBody>, UpstreamError> {
        let connect_error = |source: BoxError| UpstreamError::Connect {
            endpoint: endpoint.clone(),
            source,
        };
        let uri = Uri::builder()
            .scheme(self.scheme.clone())
            .authority(endpoint.clone())
            .path_and_query("/")
            .build()?;
        let mut connector = self.connector.clone();
        poll_fn(|cx| connector.poll_ready(cx))
            .await
            .map_err(|e| connect_error(e.into()))?;
        let io = connector
            .call(uri)
            .await
            .map_err(|e| connect_error(e.into()))?;
        let (sender, connection) = self
            .builder
            .handshake::<C::Response, ProxyBody>(io)
            .await
            .map_err(|e| connect_error(e.into()))?;
        tokio::spawn(async move {
            // Ends when the connection closes: the backend hung up, an error, or the pool
            // (or a dropped body) let go of its sender.
            let _ = connection.with_upgrades().await;
        });
        Ok(sender)
    }

    /// Starts the task that closes idle connections past the idle timeout, unless one runs.
    fn start_sweeping(self: &Arc<Self>) {
        use std::sync::atomic::Ordering;
        if self.sweeping.swap(true, Ordering::AcqRel) {
            return;
        }
        let pool = Arc::downgrade(self);
        let every = (self.idle_timeout / 2).max(Duration::from_millis(100));
        tokio::spawn(sweep(pool, every));
    }
}

/// Every `every`, drops the idle connections past the idle timeout or too old (closing them)
/// and the endpoints left with none; ends with the pool, or when no endpoint is left (the next
/// new endpoint starts it again).
async fn sweep<C: Send + Sync + 'static>(pool: Weak<Inner<C>>, every: Duration) {
    use std::sync::atomic::Ordering;
    loop {
        tokio::time::sleep(every).await;
        let Some(inner) = pool.upgrade() else {
            return;
        };
        let endpoints = inner.endpoints.pin();
        endpoints.retain(|_, stack| {
            let mut empty = true;
            for worker in &stack.workers {
                let mut connections = worker.lock();
                connections.retain(|idle| {
                    idle.since.elapsed() < inner.idle_timeout
                        && !inner.retires(&idle.life)
                        && !idle.sender.is_closed()
                });
                empty &= connections.is_empty();
            }
            // An endpoint in use (a lent connection will come back to this stack) stays.
            !empty || Arc::strong_count(stack) > 1
        });
        if endpoints.is_empty() {
            inner.sweeping.store(false, Ordering::Release);
            // An endpoint added meanwhile saw this sweep running and started none.
            if endpoints.is_empty() || inner.sweeping.swap(true, Ordering::AcqRel) {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http_body_util::BodyExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;
    use crate::upstream::empty;

    /// A backend answering every request on a connection with `answer`, counting accepted
    /// connections; with `close_after_one`, it hangs up after each answer.
    async fn backend(answer: &'static str, close_after_one: bool) -> (Authority, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counted = accepted.clone();
        tokio::spawn(async move {
            loop {
                let (mut stream, _) = listener.accept().await.unwrap();
                counted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buffer = vec![0u8; 4096];
                    let mut seen = Vec::new();
                    loop {
                        let Ok(n) = stream.read(&mut buffer).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        seen.extend_from_slice(&buffer[..n]);
                        while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                            seen.drain(..end + 4);
                            if stream.write_all(answer.as_bytes()).await.is_err() {
                                return;
                            }
                            if close_after_one {
                                return;
                            }
                        }
                    }
                });
            }
        });
        (address.to_string().parse().unwrap(), accepted)
    }

    const OK: &str = "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello";

    fn pool() -> Http1Pool {
        Http1Pool::new(
            super::super::http_connector(),
            Scheme::HTTP,
            Duration::from_secs(60),
        )
    }

    fn get() -> Request<ProxyBody> {
        Request::get("/x")
            .header(HOST, "app.example")
            .body(empty())
            .unwrap()
    }

    /// Sends `times` GETs to `endpoint` one after the other, each answered "hello".
    async fn get_hello<C: Connector>(pool: &Http1Pool<C>, endpoint: &Authority, times: usize) {
        for _ in 0..times {
            let (response, lent) = pool.send(endpoint, get()).await.unwrap();
            assert_eq!(read(response, lent).await, "hello");
        }
    }

    async fn read(response: Response<Incoming>, lent: Option<Lent>) -> String {
        let body = response.into_body().collect().await.unwrap().to_bytes();
        if let Some(lent) = lent {
            lent.give_back();
        }
        String::from_utf8(body.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn a_connection_given_back_carries_the_next_request() {
        let (endpoint, accepted) = backend(OK, false).await;
        let pool = pool();
        for _ in 0..5 {
            let (response, lent) = pool.send(&endpoint, get()).await.unwrap();
            assert_eq!(response.status(), 200);
            assert_eq!(read(response, lent).await, "hello");
            assert_eq!(pool.idle(endpoint.as_str()), 1);
        }
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            1,
            "one keep-alive connection"
        );
    }

    #[tokio::test]
    async fn a_connection_not_given_back_is_not_reused() {
        let (endpoint, accepted) = backend(OK, false).await;
        let pool = pool();
        let (first, lent) = pool.send(&endpoint, get()).await.unwrap();
        // Its body is still being read: the next request needs another connection.
        let (second, second_lent) = pool.send(&endpoint, get()).await.unwrap();
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
        drop((first, lent));
        assert_eq!(read(second, second_lent).await, "hello");
        assert_eq!(
            pool.idle(endpoint.as_str()),
            1,
            "only the finished one is idle"
        );
    }

    #[tokio::test]
    async fn a_backend_that_hangs_up_costs_no_request() {
        let (endpoint, accepted) = backend(OK, true).await;
        let pool = pool();
        get_hello(&pool, &endpoint, 4).await;
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            4,
            "a new connection each time"
        );
    }

    #[tokio::test]
    async fn the_origin_form_goes_out_and_a_missing_host_is_the_endpoint() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint: Authority = listener.local_addr().unwrap().to_string().parse().unwrap();
        let seen = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            let mut buffer = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = stream.read(&mut buffer).await.unwrap();
                head.extend_from_slice(&buffer[..n]);
            }
            stream.write_all(OK.as_bytes()).await.unwrap();
            String::from_utf8(head).unwrap()
        });
        let request = Request::get("http://ignored.example/a?b=1")
            .body(empty())
            .unwrap();
        let (response, lent) = pool().send(&endpoint, request).await.unwrap();
        assert_eq!(read(response, lent).await, "hello");
        let head = seen.await.unwrap().to_ascii_lowercase();
        assert!(head.starts_with("get /a?b=1 http/1.1\r\n"), "{head}");
        assert!(head.contains(&format!("host: {endpoint}\r\n")), "{head}");
    }

    #[tokio::test]
    async fn a_refused_connect_is_a_connect_error() {
        let endpoint: Authority = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().to_string().parse().unwrap()
        };
        let error = pool().send(&endpoint, get()).await.unwrap_err();
        assert!(matches!(error, UpstreamError::Connect { .. }), "{error}");
    }

    #[tokio::test]
    async fn idle_connections_are_closed_after_the_idle_timeout() {
        let (endpoint, accepted) = backend(OK, false).await;
        let pool = Http1Pool::new(
            super::super::http_connector(),
            Scheme::HTTP,
            Duration::from_millis(200),
        );
        let (response, lent) = pool.send(&endpoint, get()).await.unwrap();
        read(response, lent).await;
        assert_eq!(pool.idle(endpoint.as_str()), 1);
        // The sweep runs every 100 ms; wait for it to close the connection.
        let deadline = Instant::now() + Duration::from_secs(10);
        while pool.idle(endpoint.as_str()) > 0 {
            assert!(
                Instant::now() < deadline,
                "the idle connection was never swept"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The next request opens a new connection.
        let (response, lent) = pool.send(&endpoint, get()).await.unwrap();
        assert_eq!(read(response, lent).await, "hello");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    /// A pool with a BackendConfigPolicy's connection settings, counting its connections.
    fn policy_pool(
        connection: gantry_translate::ir::ConnectionIr,
        max_requests: Option<u32>,
    ) -> (
        Http1Pool<crate::upstream::counted::Counted<HttpConnector>>,
        prometheus_client::metrics::gauge::Gauge,
    ) {
        use gantry_translate::ir::{BackendConfigIr, CircuitBreakerIr, LoadBalancerIr};
        let metrics = crate::telemetry::Metrics::new();
        let config = BackendConfigIr {
            policy: "ns/p".into(),
            load_balancer: LoadBalancerIr::Random,
            health_check: None,
            circuit_breaker: max_requests.map(|max| CircuitBreakerIr {
                max_connections: 100,
                max_pending_requests: 100,
                max_parallel_requests: 100,
                max_parallel_retries: 100,
                max_requests_per_connection: Some(max),
            }),
            connection,
        };
        let policy = ConnectionPolicy::new("ns/svc:80", &config, &metrics);
        let connector =
            crate::upstream::counted::Counted::new(policy.http_connector(), Some(policy.clone()));
        let open = metrics.upstream_connections.open("ns/svc:80");
        (
            Http1Pool::with_policy(connector, Scheme::HTTP, policy),
            open,
        )
    }

    #[tokio::test]
    async fn a_policy_retires_a_connection_after_max_requests_per_connection() {
        let (endpoint, accepted) = backend(OK, false).await;
        let (pool, open) = policy_pool(gantry_translate::ir::ConnectionIr::DEFAULT, Some(2));
        get_hello(&pool, &endpoint, 5).await;
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            3,
            "two requests per connection"
        );
        // The two retired ones close once their last response is read; the third, with one
        // request carried, stays pooled.
        let deadline = Instant::now() + Duration::from_secs(10);
        while open.get() != 1 {
            assert!(
                Instant::now() < deadline,
                "{} connections still counted open",
                open.get()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(pool.idle(endpoint.as_str()), 1);
    }

    #[tokio::test]
    async fn a_policy_never_hands_out_a_connection_older_than_its_max_duration() {
        let (endpoint, accepted) = backend(OK, false).await;
        let (pool, _open) = policy_pool(
            gantry_translate::ir::ConnectionIr {
                max_connection_duration_ms: Some(60_000),
                ..gantry_translate::ir::ConnectionIr::DEFAULT
            },
            None,
        );
        get_hello(&pool, &endpoint, 2).await;
        assert_eq!(accepted.load(Ordering::SeqCst), 1, "young: reused");
        // The idle connection turns 61 seconds old: closed instead of handed out.
        let stack = pool.inner.stack(&endpoint);
        for idle in stack.here().lock().iter_mut() {
            idle.life.opened = Instant::now() - Duration::from_secs(61);
        }
        get_hello(&pool, &endpoint, 1).await;
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
        assert_eq!(
            pool.idle(endpoint.as_str()),
            1,
            "only the new one is pooled"
        );
    }
}
