//! A TCP load balancer in front of proxy processes, driven the way kube-proxy is: a backend
//! takes new connections only while it is in rotation, and it is in rotation while its admin
//! `/readyz` answers 200 (kube-proxy follows endpoint readiness; here the balancer polls the
//! probe itself). Each client connection goes to one backend chosen when it arrives, round
//! robin, and stays there until either side closes it, as a connection tracked by conntrack
//! stays on its pod after the pod leaves the endpoints. A connection that finds no backend in
//! rotation is closed at once; a refused connect is not retried elsewhere (a SYN sent to a
//! pod is not rerouted either).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How often each backend's `/readyz` is asked.
const PROBE_EVERY: Duration = Duration::from_millis(20);
/// A probe not answered within this fails (as a kubelet probe's `timeoutSeconds`).
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// A running balancer; its tasks stop on drop.
pub struct Balancer {
    addr: SocketAddr,
    state: Arc<State>,
    tasks: Vec<JoinHandle<()>>,
}

struct State {
    backends: Mutex<Vec<Arc<Backend>>>,
    next: AtomicUsize,
    /// Bumped whenever a backend enters or leaves the rotation.
    rotation: watch::Sender<u64>,
}

struct Backend {
    name: String,
    traffic: SocketAddr,
    admin: SocketAddr,
    in_rotation: std::sync::atomic::AtomicBool,
    /// Client connections sent to it.
    connections: AtomicU64,
}

impl Balancer {
    /// Listens on an ephemeral loopback port, with no backend yet.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding the balancer");
        let addr = listener.local_addr().expect("balancer address");
        let state = Arc::new(State {
            backends: Mutex::new(Vec::new()),
            next: AtomicUsize::new(0),
            rotation: watch::Sender::new(0),
        });
        let tasks = vec![
            tokio::spawn(accept(listener, state.clone())),
            tokio::spawn(probe(state.clone())),
        ];
        Self { addr, state, tasks }
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Adds a backend: its traffic address and its admin address. It enters the rotation
    /// once its `/readyz` answers 200.
    pub fn add(&self, name: &str, traffic: SocketAddr, admin: SocketAddr) {
        let backend = Arc::new(Backend {
            name: name.to_owned(),
            traffic,
            admin,
            in_rotation: false.into(),
            connections: AtomicU64::new(0),
        });
        lock(&self.state.backends).push(backend);
    }

    /// Whether `name` takes new connections now.
    pub fn in_rotation(&self, name: &str) -> bool {
        self.backend(name)
            .is_some_and(|b| b.in_rotation.load(Ordering::Acquire))
    }

    /// Client connections sent to `name` so far.
    pub fn connections(&self, name: &str) -> u64 {
        self.backend(name)
            .map_or(0, |b| b.connections.load(Ordering::Acquire))
    }

    /// Waits until `name` is in rotation (`true`) or out of it (`false`); fails the test after
    /// `within`.
    pub async fn wait_rotation(&self, name: &str, want: bool, within: Duration) {
        let mut changes = self.state.rotation.subscribe();
        let waited = tokio::time::timeout(within, async {
            loop {
                if self.in_rotation(name) == want {
                    return;
                }
                if changes.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        })
        .await;
        let state = if want { "in" } else { "out of" };
        assert!(
            waited.is_ok(),
            "{name} did not go {state} rotation within {within:?}"
        );
    }

    fn backend(&self, name: &str) -> Option<Arc<Backend>> {
        lock(&self.state.backends)
            .iter()
            .find(|b| b.name == name)
            .cloned()
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn accept(listener: TcpListener, state: Arc<State>) {
    while let Ok((client, _)) = listener.accept().await {
        let chosen = {
            let backends = lock(&state.backends);
            let ready: Vec<&Arc<Backend>> = backends
                .iter()
                .filter(|b| b.in_rotation.load(Ordering::Acquire))
                .collect();
            (!ready.is_empty())
                .then(|| ready[state.next.fetch_add(1, Ordering::Relaxed) % ready.len()].clone())
        };
        let Some(backend) = chosen else {
            drop(client);
            continue;
        };
        backend.connections.fetch_add(1, Ordering::AcqRel);
        tokio::spawn(forward(client, backend.traffic));
    }
}

/// Copies both ways, passing half-closes on, until both sides have closed.
async fn forward(mut client: TcpStream, to: SocketAddr) {
    let Ok(mut upstream) = TcpStream::connect(to).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
}

/// Polls every backend's `/readyz` and moves it in or out of rotation.
async fn probe(state: Arc<State>) {
    loop {
        let backends: Vec<Arc<Backend>> = lock(&state.backends).clone();
        for backend in backends {
            let url = format!("http://{}/readyz", backend.admin);
            let answer = tokio::time::timeout(PROBE_TIMEOUT, crate::harness::get(&url)).await;
            let ready = matches!(answer, Ok(Ok(r)) if r.status == 200);
            if backend.in_rotation.swap(ready, Ordering::AcqRel) != ready {
                state.rotation.send_modify(|n| *n += 1);
            }
        }
        tokio::time::sleep(PROBE_EVERY).await;
    }
}
