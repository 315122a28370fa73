//! Worker threads (`gantry_proxy::workers`): each accepts on every port, and each serves the
//! connections it is given, HTTP/1.1 backend connections included, on its own runtime.
//!
//! The test's runtime is worker 0. A request sent with a blocking socket from that runtime's
//! own thread can only be served by worker 1; a request sent while worker 1 is held busy can
//! only be served by worker 0. A worker that accepts a connection while another serves fewer
//! hands it on.

// Harness helpers outside #[test] functions panic on purpose: a panic is a test failure.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use gantry_proxy::server::{DataPlane, DataPlaneOptions};
use gantry_proxy::telemetry::Metrics;
use gantry_proxy::workers;
use gantry_translate::ir::{
    BackendIr, ClusterIr, HttpMatchIr, HttpRuleIr, Ir, ListenerIr, PathMatchIr, PortIr,
    PortProtocol, RouteEntryIr, RouteRef, UpstreamProtocol, VirtualHostIr,
};
use gantry_translate::store::ObjectKey;
use support::{eventually, free_port};

/// A keep-alive HTTP/1.1 backend on its own threads that answers `ok` and counts the
/// connections it accepted.
fn start_backend() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counted = accepted.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            counted.fetch_add(1, Ordering::SeqCst);
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut writer = stream;
                loop {
                    // A request without a body: its head ends with an empty line.
                    let mut line = String::new();
                    loop {
                        line.clear();
                        match reader.read_line(&mut line) {
                            Ok(0) | Err(_) => return,
                            Ok(_) if line == "\r\n" => break,
                            Ok(_) => {}
                        }
                    }
                    let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                    if writer.write_all(answer).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, accepted)
}

/// One port, every host, one route to `backend`.
fn ir(port: u16, backend: SocketAddr) -> Ir {
    let entry = RouteEntryIr {
        route: Arc::new(RouteRef {
            kind: "HTTPRoute".into(),
            namespace: "default".into(),
            name: "app".into(),
        }),
        rule_index: 0,
        match_index: 0,
        matches: Arc::new(HttpMatchIr {
            path: PathMatchIr::Prefix("/".into()),
            ..Default::default()
        }),
        rule: Arc::new(HttpRuleIr {
            backends: vec![BackendIr {
                weight: 1,
                cluster: Some("app".into()),
                filters: vec![],
                session_persistence: None,
            }],
            ..Default::default()
        }),
        security: None,
        rate_limit: None,
    };
    Ir {
        ports: vec![PortIr {
            port,
            protocol: PortProtocol::Http,
            listeners: vec![ListenerIr {
                gateway: ObjectKey::new("default", "gw"),
                name: "http".into(),
                hostname: None,
                virtual_hosts: vec![VirtualHostIr {
                    hostname: "*".into(),
                    routes: vec![entry],
                }],
                tls: None,
                l4_routes: Vec::new(),
                serves_tls_routes: false,
                listener_set: None,
            }],
        }],
        clusters: BTreeMap::from([(
            "app".to_owned(),
            ClusterIr {
                name: "app".into(),
                service: ObjectKey::new("default", "app"),
                port: 80,
                protocol: UpstreamProtocol::Http1,
                endpoints: vec![backend.to_string()],
                tls: None,
                retry_budget: None,
                backend_config: None,
            },
        )]),
    }
}

/// `GET /` on a new connection with a blocking socket, on the calling thread; the status line
/// and body, or why there is none within 5 s.
fn blocking_get(port: u16) -> Result<String, String> {
    let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nhost: app.example.com\r\nconnection: close\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .map_err(|e| format!("no answer: {e}"))?;
    let status = answer.lines().next().unwrap_or("").to_owned();
    let body = answer.rsplit("\r\n\r\n").next().unwrap_or("");
    Ok(format!("{status} {body}"))
}

/// Blocks the thread of the worker `runtime` belongs to until the returned sender sends.
fn hold(runtime: &tokio::runtime::Handle) -> std::sync::mpsc::Sender<()> {
    let (release, held) = std::sync::mpsc::channel::<()>();
    let (holding, busy) = std::sync::mpsc::channel::<()>();
    runtime.spawn(async move {
        holding.send(()).unwrap();
        let _ = held.recv();
    });
    busy.recv().unwrap();
    release
}

/// No worker serves a connection.
async fn no_connections() -> bool {
    workers::connections() == [0, 0]
}

#[tokio::test(flavor = "current_thread")]
async fn every_worker_accepts_and_keeps_its_own_backend_connections() {
    workers::start(1, || {
        let mut builder = tokio::runtime::Builder::new_current_thread();
        builder.enable_all();
        builder
    })
    .unwrap();
    assert_eq!(workers::count(), 2);
    let (backend, backend_connections) = start_backend();
    let plane = DataPlane::new(
        DataPlaneOptions {
            bind_address: Ipv4Addr::LOCALHOST.into(),
            port_offset: 0,
            drain_timeout: Duration::from_secs(5),
            access_log: false,
            l4: Default::default(),
            http: Default::default(),
            connections: Default::default(),
        },
        Arc::new(Metrics::new()),
    );
    let port = free_port();
    plane.apply(Arc::new(ir(port, backend)), 1).await.unwrap();

    // This thread (worker 0) is blocked in the request: worker 1 accepts and serves it.
    assert_eq!(blocking_get(port), Ok("HTTP/1.1 200 OK ok".to_owned()));
    assert_eq!(backend_connections.load(Ordering::SeqCst), 1);

    // Worker 1 held busy: worker 0 accepts and serves. The backend connection worker 1
    // opened stays with worker 1, so worker 0 opens its own.
    eventually(5, "the connection to end", no_connections).await;
    let release = hold(workers::others().next().unwrap());
    let served = tokio::task::spawn_blocking(move || blocking_get(port));
    // The blocking client runs on another thread; this runtime serves it.
    assert_eq!(served.await.unwrap(), Ok("HTTP/1.1 200 OK ok".to_owned()));
    assert_eq!(backend_connections.load(Ordering::SeqCst), 2);
    release.send(()).unwrap();

    // Worker 1 again: it takes the connection it left idle.
    eventually(5, "the connection to end", no_connections).await;
    assert_eq!(blocking_get(port), Ok("HTTP/1.1 200 OK ok".to_owned()));
    assert_eq!(backend_connections.load(Ordering::SeqCst), 2);

    // Connections are shared out: the worker that accepts hands each to the one serving the
    // fewest. With worker 1 held busy, worker 0 accepts six and hands three on; worker 1
    // serves them once it is free.
    eventually(5, "the connections above to end", no_connections).await;
    let release = hold(workers::others().next().unwrap());
    let clients = tokio::task::spawn_blocking(move || {
        (0..6)
            .map(|_| {
                let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap();
                stream
                    .set_read_timeout(Some(Duration::from_secs(5)))
                    .unwrap();
                stream
                    .write_all(b"GET / HTTP/1.1\r\nhost: app.example.com\r\n\r\n")
                    .unwrap();
                stream
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    eventually(5, "six connections to be accepted", || async {
        workers::connections().iter().sum::<usize>() == 6
    })
    .await;
    assert_eq!(workers::connections(), [3, 3]);
    release.send(()).unwrap();
    let answers = tokio::task::spawn_blocking(move || {
        clients
            .into_iter()
            .map(|mut stream| {
                // The answer is in once its 2-byte body is.
                let mut answer = Vec::new();
                let mut buf = [0u8; 1024];
                while !answer.ends_with(b"\r\n\r\nok") {
                    match stream.read(&mut buf) {
                        Ok(n) if n > 0 => answer.extend_from_slice(&buf[..n]),
                        _ => break,
                    }
                }
                String::from_utf8_lossy(&answer)
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_owned()
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    assert_eq!(answers, vec!["HTTP/1.1 200 OK"; 6]);

    // Stopping the port closes every worker's copy of the socket.
    plane.shutdown().await;
    assert!(TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err());
}
