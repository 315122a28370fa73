//! Listening sockets: SO_REUSEADDR binding, per-port accept loops (TCP) and receive loops
//! (UDP), HTTP/1.1 + h2c connections; TLS ports hand their connections to [`super::tls`], which
//! comes back to [`serve_http`], TCP ports to L4 forwarding.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};
use tokio::task::JoinHandle;

use super::activity::{Activity, Verdict, Watchdog};
use super::drain::Watcher;
use super::http_version::HttpVersion;
use super::l4::{self, Transport};
use super::request_timer::RequestTimer;
use super::wake_gate::WakeGate;
use super::{Shared, headers, pipeline};
use crate::telemetry::logging::ACCESS_LOG_TARGET;
use gantry_translate::ir::PortProtocol;

/// Pending connections the kernel queues per port.
const BACKLOG: i32 = 1024;

/// Binds `addr` with SO_REUSEADDR so a restarted proxy can bind at once.
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    TcpListener::from_std(socket.into())
}

/// A socket bound for one port, not yet serving.
#[derive(Debug)]
pub enum Bound {
    Tcp(TcpListener),
    Udp(tokio::net::UdpSocket),
}

impl Bound {
    pub fn bind(transport: Transport, addr: SocketAddr) -> io::Result<Self> {
        match transport {
            Transport::Tcp => bind(addr).map(Self::Tcp),
            Transport::Udp => l4::udp::bind(addr).map(Self::Udp),
        }
    }

    pub fn transport(&self) -> Transport {
        match self {
            Self::Tcp(_) => Transport::Tcp,
            Self::Udp(_) => Transport::Udp,
        }
    }
}

/// What a request knows about the connection it came on.
#[derive(Debug)]
pub struct ConnectionInfo {
    /// The port the Gateway listener declares (the IR port, before any offset).
    pub port: u16,
    pub peer: SocketAddr,
    /// Set on connections of a TLS port once the handshake is done.
    pub tls: Option<Arc<super::tls::TlsInfo>>,
    /// What the connection's requests are doing, for its watchdog.
    pub activity: Arc<Activity>,
    /// The peer's address as X-Forwarded-For names it, made once for every request.
    pub forwarded_for: HeaderValue,
    /// The request timeout of an HTTP/1.1 connection's requests.
    pub request_timer: RequestTimer,
}

/// A port's running accept loops (one per worker, `crate::workers`) or receive loop. Stopping
/// it closes the socket; open connections carry on.
#[derive(Debug)]
pub struct PortListener {
    pub addr: SocketAddr,
    loops: Vec<(oneshot::Sender<()>, JoinHandle<()>)>,
}

impl PortListener {
    pub fn start(socket: Bound, addr: SocketAddr, port: u16, shared: Arc<Shared>) -> Self {
        let mut loops = Vec::new();
        match socket {
            Bound::Tcp(listener) => {
                // One place count for the port, whichever worker accepts.
                let per_listener =
                    Arc::new(Semaphore::new(shared.options.connections.per_listener));
                // Each worker accepts on a copy of the socket, registered with its own runtime
                // by the loop's task, which runs there. A copy that cannot be made (out of
                // descriptors) leaves a worker out; the port is still served.
                let sockets = match listener.into_std() {
                    Ok(socket) => {
                        let copy = |_| match socket.try_clone() {
                            Ok(copy) => Some(copy),
                            Err(error) => {
                                tracing::warn!(port, %error, "a worker cannot accept on this port");
                                None
                            }
                        };
                        let copies: Vec<_> = crate::workers::others().filter_map(copy).collect();
                        std::iter::once(socket).chain(copies).collect()
                    }
                    Err(error) => {
                        tracing::warn!(port, %error, "cannot accept on this port");
                        Vec::new()
                    }
                };
                let runtimes = std::iter::once(tokio::runtime::Handle::current())
                    .chain(crate::workers::others().cloned());
                for (socket, runtime) in sockets.into_iter().zip(runtimes) {
                    let (stop, stopped) = oneshot::channel();
                    let (shared, per_listener) = (shared.clone(), per_listener.clone());
                    let task = runtime.spawn(async move {
                        match TcpListener::from_std(socket) {
                            Ok(listener) => {
                                accept_loop(listener, port, shared, per_listener, stopped).await;
                            }
                            Err(error) => {
                                tracing::warn!(port, %error, "cannot accept on this port");
                            }
                        }
                    });
                    loops.push((stop, task));
                }
            }
            Bound::Udp(socket) => {
                let (stop, stopped) = oneshot::channel();
                let task = tokio::spawn(l4::udp::run(socket, port, shared, stopped));
                loops.push((stop, task));
            }
        }
        Self { addr, loops }
    }

    /// Stops accepting and waits until the socket is closed.
    pub async fn stop(self) {
        let mut tasks = Vec::with_capacity(self.loops.len());
        for (stop, task) in self.loops {
            let _ = stop.send(());
            tasks.push(task);
        }
        for task in tasks {
            let _ = task.await;
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    port: u16,
    shared: Arc<Shared>,
    per_listener: Arc<Semaphore>,
    mut stopped: oneshot::Receiver<()>,
) {
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    // Over a limit, the connection is closed at once: its descriptor is freed
                    // and the rest keep being served (the admin port included).
                    let Some(permits) = admit(&shared, &per_listener, port) else {
                        drop(stream);
                        continue;
                    };
                    let info = ConnectionInfo {
                        port,
                        peer,
                        tls: None,
                        activity: Arc::default(),
                        forwarded_for: headers::address_value(peer.ip()),
                        request_timer: RequestTimer::default(),
                    };
                    let watcher = shared.drain.watcher();
                    // The port's protocol in the configuration current now decides how the
                    // connection is served, so a port can change protocol without a rebind.
                    let tcp = shared
                        .snapshot
                        .load()
                        .ports
                        .l4
                        .port(port)
                        .is_some_and(|t| t.protocol == PortProtocol::Tcp);
                    let (worker, elsewhere) = crate::workers::Assigned::least_busy();
                    let accepted = Accepted {
                        info,
                        shared: shared.clone(),
                        watcher,
                        tcp,
                        places: (permits, worker),
                    };
                    match elsewhere {
                        None => {
                            tokio::spawn(accepted.serve(stream));
                        }
                        Some(runtime) => hand_on(stream, accepted, runtime),
                    }
                }
                Err(error) => {
                    // Usually out of file descriptors: back off instead of spinning.
                    tracing::warn!(%error, port, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
    tracing::debug!(port, "stopped accepting");
}

/// An accepted connection and what serving it takes.
struct Accepted {
    info: ConnectionInfo,
    shared: Arc<Shared>,
    watcher: Watcher,
    /// Forwarded as TCP (a TCP port), or served as HTTP or TLS.
    tcp: bool,
    /// Its places under the connection limits and on its worker, given up when it ends.
    places: (
        (OwnedSemaphorePermit, OwnedSemaphorePermit),
        crate::workers::Assigned,
    ),
}

impl Accepted {
    async fn serve(self, stream: TcpStream) {
        let Self {
            info,
            shared,
            watcher,
            tcp,
            places,
        } = self;
        if tcp {
            // Boxed: every connection's task would otherwise be sized for TCP forwarding's
            // future too (an idle HTTP connection took 24.7 KiB instead of 17.2 in
            // `gantry-bench --idle-connections-only`).
            Box::pin(l4::serve_tcp(stream, info, shared, watcher)).await;
        } else {
            serve(stream, info, shared, watcher).await;
        }
        drop(places);
    }
}

/// Serves `accepted` on the worker whose runtime is `runtime`: the socket is taken out of this
/// runtime and registered with that one.
fn hand_on(stream: TcpStream, accepted: Accepted, runtime: &tokio::runtime::Handle) {
    let port = accepted.info.port;
    let stream = match stream.into_std() {
        Ok(stream) => stream,
        Err(error) => {
            tracing::warn!(port, %error, "cannot hand a connection to another worker");
            return;
        }
    };
    runtime.spawn(async move {
        match TcpStream::from_std(stream) {
            Ok(stream) => accepted.serve(stream).await,
            Err(error) => {
                tracing::warn!(port, %error, "cannot hand a connection to another worker");
            }
        }
    });
}

/// A connection's places under the process-wide and the listener's connection limits; `None`
/// (and a count in `gantry_downstream_connections_refused_total`) when either is full.
fn admit(
    shared: &Shared,
    per_listener: &Arc<Semaphore>,
    port: u16,
) -> Option<(OwnedSemaphorePermit, OwnedSemaphorePermit)> {
    let Ok(process) = shared.connections.clone().try_acquire_owned() else {
        shared.metrics.connection_refused("process_limit");
        tracing::debug!(port, "connection refused: process connection limit reached");
        return None;
    };
    let Ok(listener) = per_listener.clone().try_acquire_owned() else {
        shared.metrics.connection_refused("listener_limit");
        tracing::debug!(
            port,
            "connection refused: listener connection limit reached"
        );
        return None;
    };
    Some((process, listener))
}

/// Serves one client connection until it closes: HTTP, or TLS when the port is a TLS port
/// in the configuration current when the connection arrives.
async fn serve(stream: TcpStream, info: ConnectionInfo, shared: Arc<Shared>, mut drain: Watcher) {
    let _open = OpenConnection::new(&shared);
    let _ = stream.set_nodelay(true);
    let tls_port = shared.snapshot.load().tls.port(info.port).is_some();
    if tls_port {
        // Boxed: a TLS connection's future holds the handshake and the TLS stream, some
        // 13 KiB a cleartext connection's task would otherwise be sized for.
        Box::pin(super::tls::serve(stream, info, shared, drain)).await;
    } else {
        // The first bytes name the protocol. A client that sends none within the header
        // timeout is closed, as the watchdog closes one later; one that has sent nothing when
        // draining starts has nothing to finish.
        let version = tokio::select! {
            biased;
            version = HttpVersion::peek(&stream) => version,
            () = drain.signaled() => return,
            () = tokio::time::sleep(shared.options.connections.timeouts.header) => {
                tracing::debug!(peer = %info.peer, "closing a connection that sent nothing");
                shared.metrics.connection_closed("idle");
                return;
            }
        };
        serve_http(stream, version, info, shared, drain).await;
    }
}

/// Serves HTTP/1.1 or HTTP/2 (`version`, when already known) on `stream` until it closes, or
/// until draining finishes it gracefully.
pub(super) async fn serve_http<S>(
    stream: S,
    version: HttpVersion,
    info: ConnectionInfo,
    shared: Arc<Shared>,
    mut drain: Watcher,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let handler = shared.clone();
    let peer = info.peer;
    let activity = info.activity.clone();
    // Shared by the connection's requests: one reference count per request, not one per field.
    let info = Arc::new(info);
    let service = service_fn(move |request: http::Request<hyper::body::Incoming>| {
        let shared = handler.clone();
        let info = info.clone();
        let http1 = request.version() < http::Version::HTTP_2;
        let pending = info.activity.request(http1);
        async move {
            let mut response = pipeline::handle(&shared, &info, request).await;
            drop(pending);
            if http1 && shared.drain.announced() {
                ask_to_reconnect(&mut response);
            }
            Ok::<_, Infallible>(response)
        }
    });
    let connection = shared.http.serve(version, TokioIo::new(stream), service);
    tokio::pin!(connection);
    let mut watchdog = Watchdog::new(activity, shared.options.connections.timeouts);
    let mut closing = false;
    let result = loop {
        // The connection first; the drain signal and the watchdog are gated (see `wake_gate`),
        // polled only when they have news.
        tokio::select! {
            biased;
            result = connection.as_mut() => break result,
            () = WakeGate::new(drain.signaled()), if !closing => {
                connection.as_mut().graceful_shutdown();
                closing = true;
            }
            verdict = WakeGate::new(watchdog.verdict()) => match verdict {
                // Idle: close gracefully (HTTP/2 GOAWAY); if that does not finish the
                // connection by the next verdict, it is dropped.
                Verdict::Idle if !closing => {
                    tracing::debug!(%peer, "closing an idle connection");
                    shared.metrics.connection_closed("idle");
                    connection.as_mut().graceful_shutdown();
                    closing = true;
                }
                Verdict::Idle | Verdict::Stalled => {
                    tracing::debug!(%peer, ?verdict, "dropping a connection that does not move");
                    shared.metrics.connection_closed(match verdict {
                        Verdict::Stalled => "stalled",
                        Verdict::Idle => "idle_unfinished",
                    });
                    return;
                }
            },
        }
    };
    if let Err(error) = result {
        log_connection_error(&shared, peer, &*error);
    }
}

/// During the drain delay, an HTTP/1.1 response carries `Connection: close` (RFC 9112 §9.6:
/// the connection closes once this response is sent), and the client's next request opens a
/// new connection, which the load balancer, told by the failing readiness, sends to another
/// replica. A keep-alive connection is otherwise pinned to this process (kube-proxy and load
/// balancers keep an established connection on its endpoint), and closing it when the delay
/// ends could race a request the client is sending on it at that moment, which fails without
/// an answer; a close the client asked for cannot race. The price is a new connection per
/// request for the length of the delay. HTTP/2 needs none of this: its GOAWAY, sent when the
/// delay ends, names the last stream served, so no request is lost. A `101` keeps the
/// connection: it becomes the upgraded stream, closed when the delay ends.
fn ask_to_reconnect<B>(response: &mut http::Response<B>) {
    if response.status() != http::StatusCode::SWITCHING_PROTOCOLS {
        response.headers_mut().insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("close"),
        );
    }
}

/// A connection that ended with an error. The HTTP/1 parser answers a request it cannot parse
/// itself (400, or 431 for a head over the size limit); such a request gets its access-log
/// line and a count in `gantry_requests_rejected_total{reason="unparsable"}` here.
fn log_connection_error(
    shared: &Shared,
    peer: SocketAddr,
    error: &(dyn std::error::Error + Send + Sync + 'static),
) {
    let Some(error) = error.downcast_ref::<hyper::Error>() else {
        tracing::debug!(%error, %peer, "connection ended with an error");
        return;
    };
    if error.is_parse() || error.is_parse_too_large() {
        let status: u16 = if error.is_parse_too_large() { 431 } else { 400 };
        shared.metrics.request_rejected("unparsable");
        if shared.options.access_log {
            tracing::info!(
                target: ACCESS_LOG_TARGET,
                status,
                peer = %peer,
                error = %error,
                "request rejected by the HTTP parser"
            );
        }
    } else {
        tracing::debug!(%error, %peer, "connection ended with an error");
    }
}

/// Counts the connection in `downstream_connections_active` while it lives.
struct OpenConnection(prometheus_client::metrics::gauge::Gauge);

impl OpenConnection {
    fn new(shared: &Shared) -> Self {
        let gauge = shared.metrics.active_connections.clone();
        super::trim::opened(gauge.inc() + 1);
        Self(gauge)
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}
