//! The threads that serve traffic: one single-threaded tokio runtime per thread, the way nginx
//! runs one worker process per core.
//!
//! With `--worker-threads N`, the main thread is worker 0 and [`start`] adds workers 1 to
//! N − 1. Every listening TCP port has an accept loop on each worker (`server::listener`),
//! all on the same socket. Whichever worker is free accepts, but a free worker takes a whole
//! burst at once, so it hands each connection to the worker serving the fewest
//! ([`Assigned::least_busy`]). A connection and the requests it carries run on that worker,
//! and so do the HTTP/1.1 backend connections they open, which go back to that worker's
//! idle stack (`upstream::http1_pool`). Worker 0 also runs the control loop, the sources and
//! the admin server; translation and other blocking work go to the blocking pool's threads.
//!
//! One multi-threaded runtime with as many threads spent 1.07 to 1.5 times the CPU per
//! request of these workers at 16 and 128 connections on 2 cores; for h2c, 0.97 times
//! nginx's against 0.77 (docs/benchmarks.md, "A runtime per worker thread"). A request's tasks (the client
//! connection's and the backend connection's) were woken across threads, each wake a system
//! call and a cache miss, and the scheduler shared its queues through atomics.

use std::cell::Cell;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::runtime::{Builder, Handle};

/// Every worker's runtime and the connections it serves, worker 0 first.
static WORKERS: OnceLock<Vec<Worker>> = OnceLock::new();

struct Worker {
    runtime: Handle,
    connections: AtomicUsize,
}

thread_local! {
    /// This thread's worker number; 0 on the main thread and on threads that are no worker.
    static INDEX: Cell<usize> = const { Cell::new(0) };
}

/// Starts `count` more workers, each a thread running a single-threaded runtime built by
/// `builder` (which should enable I/O and time). Called on worker 0's runtime, once per
/// process; a second call starts none.
pub fn start(count: usize, builder: impl Fn() -> Builder) -> std::io::Result<()> {
    if WORKERS.get().is_some() {
        return Ok(());
    }
    let worker = |runtime: Handle| Worker {
        runtime,
        connections: AtomicUsize::new(0),
    };
    let mut workers = vec![worker(Handle::current())];
    for index in 1..=count {
        let runtime = builder().build()?;
        workers.push(worker(runtime.handle().clone()));
        std::thread::Builder::new()
            .name(format!("gantry-worker-{index}"))
            .spawn(move || {
                INDEX.with(|i| i.set(index));
                // Runs the worker's tasks until the process exits.
                runtime.block_on(std::future::pending::<()>());
            })?;
    }
    let _ = WORKERS.set(workers);
    Ok(())
}

/// The runtimes of workers 1 to N − 1 (none before [`start`], and none with one worker).
pub fn others() -> impl Iterator<Item = &'static Handle> {
    all().iter().skip(1).map(|w| &w.runtime)
}

fn all() -> &'static [Worker] {
    WORKERS.get().map_or(&[], Vec::as_slice)
}

/// How many workers serve traffic.
pub fn count() -> usize {
    all().len().max(1)
}

/// The worker running on this thread (0 on the main thread and on any other thread).
pub fn index() -> usize {
    INDEX.with(Cell::get)
}

/// The connections each worker serves now, worker 0 first (empty before [`start`]).
pub fn connections() -> Vec<usize> {
    all()
        .iter()
        .map(|w| w.connections.load(Ordering::Relaxed))
        .collect()
}

/// A connection counted against the worker that serves it, until dropped.
#[derive(Debug)]
pub struct Assigned {
    worker: Option<usize>,
}

impl Assigned {
    /// The worker with the fewest connections, this one when it has no more than any other:
    /// its runtime, or `None` for this one. Whichever worker is free accepts, and takes a
    /// whole burst of connections at once, so the busier one hands them on (a connection
    /// moved to another runtime is registered there, one `epoll_ctl` more).
    pub fn least_busy() -> (Self, Option<&'static Handle>) {
        let workers = all();
        if workers.is_empty() {
            return (Self { worker: None }, None);
        }
        let here = index().min(workers.len() - 1);
        let load = |i: usize| workers[i].connections.load(Ordering::Relaxed);
        let mut chosen = here;
        for i in 0..workers.len() {
            if load(i) < load(chosen) {
                chosen = i;
            }
        }
        workers[chosen].connections.fetch_add(1, Ordering::Relaxed);
        let elsewhere = (chosen != here).then(|| &workers[chosen].runtime);
        (
            Self {
                worker: Some(chosen),
            },
            elsewhere,
        )
    }
}

impl Drop for Assigned {
    fn drop(&mut self) {
        if let Some(worker) = self.worker {
            all()[worker].connections.fetch_sub(1, Ordering::Relaxed);
        }
    }
}
