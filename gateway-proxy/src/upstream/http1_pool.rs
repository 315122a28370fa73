//! HTTP/1.1 to plaintext backends without a BackendConfigPolicy: keep-alive connections
//! pooled by the endpoint they dial, most recently used first.
//!
//! It replaces hyper-util's pooled client on the proxy's most common path, where that client
//! cost about 9,500 instructions per request (callgrind, `e2e/bench/run.sh --instructions-only`,
//! docs/benchmarks.md): its checkout and return each hashed the pool key (scheme and
//! authority) byte by byte with SipHash under one process-wide lock, and rebuilt the request
//! URI. Here the endpoint's idle stack is found by its address string (one foldhash, in a
//! lock-free map) and popped or pushed under its own lock, held for that push or pop only.
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
//! Clusters with a BackendConfigPolicy (connection limits, retirement by age or request
//! count) and TLS clusters keep hyper-util's client (`clients`, `tls`).

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
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use tokio::time::Instant;

use super::{BoxError, ProxyBody, UpstreamError};

/// Endpoint address → its idle connections.
type Endpoints = papaya::HashMap<Box<str>, Arc<IdleStack>, RandomState>;

/// HTTP/1.1 connections to endpoints. Cheap to clone: clones share the connections.
#[derive(Clone)]
pub struct Http1Pool {
    inner: Arc<Inner>,
}

struct Inner {
    connector: HttpConnector,
    builder: http1::Builder,
    idle_timeout: Duration,
    endpoints: Endpoints,
    /// Set while a sweep task runs.
    sweeping: std::sync::atomic::AtomicBool,
}

/// One endpoint's idle connections, the most recently used last.
#[derive(Default)]
pub(super) struct IdleStack {
    connections: Mutex<Vec<Idle>>,
}

struct Idle {
    sender: SendRequest<ProxyBody>,
    since: Instant,
}

/// A connection lent to one request: given back to its endpoint's stack when the response
/// body ends ([`super::UpstreamBody`] holds it), closed when dropped before that.
pub struct Lent {
    sender: SendRequest<ProxyBody>,
    stack: Arc<IdleStack>,
}

impl Lent {
    /// Gives the connection back: its response is over. It is pushed once the task driving
    /// it is ready for the next request, at once in the common case; otherwise a small task
    /// waits for that (the last bytes are still being read or the request body written).
    pub(super) fn give_back(self) {
        let Self { mut sender, stack } = self;
        let mut cx = Context::from_waker(Waker::noop());
        match sender.poll_ready(&mut cx) {
            Poll::Ready(Ok(())) => stack.push(sender),
            Poll::Ready(Err(_)) => {}
            Poll::Pending => {
                if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                    runtime.spawn(async move {
                        if sender.ready().await.is_ok() {
                            stack.push(sender);
                        }
                    });
                }
            }
        }
    }
}

impl IdleStack {
    fn push(&self, sender: SendRequest<ProxyBody>) {
        self.connections.lock().push(Idle {
            sender,
            since: Instant::now(),
        });
    }
}

impl std::fmt::Debug for Lent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lent").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Http1Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Http1Pool")
            .field("endpoints", &self.inner.endpoints.len())
            .finish_non_exhaustive()
    }
}

impl Http1Pool {
    /// A pool dialling with `connector`; connections idle for `idle_timeout` are closed.
    pub fn new(connector: HttpConnector, idle_timeout: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                connector,
                builder: http1::Builder::new(),
                idle_timeout,
                endpoints: Endpoints::with_hasher(RandomState::default()),
                sweeping: std::sync::atomic::AtomicBool::new(false),
            }),
        }
    }

    /// Sends `request` (its URI a path and query) to `endpoint` over a pooled connection, or
    /// a new one. The Host header goes as it is; a request without one gets the endpoint's
    /// address, as hyper-util's client does. The connection comes back with the response,
    /// to be given back when its body ends; a `101 Switching Protocols` keeps it (the
    /// upgraded stream owns it).
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
            let (mut sender, reused) = match self.checkout(&stack) {
                Some(sender) => (sender, true),
                None => (self.inner.connect(endpoint).await?, false),
            };
            match sender.try_send_request(request).await {
                Ok(response) => {
                    let lent =
                        (response.status() != StatusCode::SWITCHING_PROTOCOLS).then(|| Lent {
                            sender,
                            stack: stack.clone(),
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

    /// The most recently used idle connection that is still open and fresh; the closed and
    /// stale ones on the way are dropped (closing them).
    fn checkout(&self, stack: &IdleStack) -> Option<SendRequest<ProxyBody>> {
        let mut cx = Context::from_waker(Waker::noop());
        loop {
            let mut idle = stack.connections.lock().pop()?;
            if idle.since.elapsed() >= self.inner.idle_timeout {
                continue;
            }
            // Only ready connections are pushed; not ready now means it closed.
            if let Poll::Ready(Ok(())) = idle.sender.poll_ready(&mut cx) {
                return Some(idle.sender);
            }
        }
    }

    /// How many idle connections the pool holds for `endpoint` (tests).
    #[cfg(test)]
    fn idle(&self, endpoint: &str) -> usize {
        self.inner
            .endpoints
            .pin()
            .get(endpoint)
            .map_or(0, |stack| stack.connections.lock().len())
    }
}

impl Inner {
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
            .scheme(Scheme::HTTP)
            .authority(endpoint.clone())
            .path_and_query("/")
            .build()?;
        let mut connector = self.connector.clone();
        let io = tower_service::Service::call(&mut connector, uri)
            .await
            .map_err(|e| connect_error(e.into()))?;
        let (sender, connection) = self
            .builder
            .handshake::<TokioIo<tokio::net::TcpStream>, ProxyBody>(io)
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

/// Every `every`, drops the idle connections past the idle timeout (closing them) and the
/// endpoints left with none; ends with the pool, or when no endpoint is left (the next new
/// endpoint starts it again).
async fn sweep(pool: Weak<Inner>, every: Duration) {
    use std::sync::atomic::Ordering;
    loop {
        tokio::time::sleep(every).await;
        let Some(inner) = pool.upgrade() else {
            return;
        };
        let endpoints = inner.endpoints.pin();
        endpoints.retain(|_, stack| {
            let mut connections = stack.connections.lock();
            connections.retain(|idle| {
                idle.since.elapsed() < inner.idle_timeout && !idle.sender.is_closed()
            });
            // An endpoint in use (a lent connection will come back to this stack) stays.
            !connections.is_empty() || Arc::strong_count(stack) > 1
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
        Http1Pool::new(super::super::http_connector(), Duration::from_secs(60))
    }

    fn get() -> Request<ProxyBody> {
        Request::get("/x")
            .header(HOST, "app.example")
            .body(empty())
            .unwrap()
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
        for _ in 0..4 {
            let (response, lent) = pool.send(&endpoint, get()).await.unwrap();
            assert_eq!(read(response, lent).await, "hello");
        }
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
        let pool = Http1Pool::new(super::super::http_connector(), Duration::from_millis(200));
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
}
