//! The threads that serve traffic: one single-threaded tokio runtime per thread, the way nginx
//! runs one worker process per core.
//!
//! With `--worker-threads N`, the main thread is worker 0 and [`start`] adds workers 1 to
//! N − 1. Every listening TCP port has an accept loop on each worker (`server::listener`),
//! all on the same socket; whichever worker is free takes the next connection. A connection
//! and the requests it carries run on the worker that accepted it, and so do the HTTP/1.1
//! backend connections they open, which go back to that worker's idle stack
//! (`upstream::http1_pool`). Worker 0 also runs the control loop, the sources and the admin
//! server; translation and other blocking work go to the blocking pool's threads.
//!
//! One multi-threaded runtime with the same number of threads spent about 1.5 times the CPU
//! per request, and served about 0.7 times the requests per second, on 2 cores
//! (docs/benchmarks.md, "A runtime per worker thread"): a request's tasks (the client
//! connection's and the backend connection's) were woken across threads, each wake a system
//! call and a cache miss, and the scheduler shared its queues through atomics.

use std::cell::Cell;
use std::sync::OnceLock;

use tokio::runtime::{Builder, Handle};

/// The workers besides the main thread, in order (worker 1 first).
static OTHERS: OnceLock<Vec<Handle>> = OnceLock::new();

thread_local! {
    /// This thread's worker number; 0 on the main thread and on threads that are no worker.
    static INDEX: Cell<usize> = const { Cell::new(0) };
}

/// Starts `count` more workers, each a thread running a single-threaded runtime built by
/// `builder` (which should enable I/O and time). Once per process; a second call starts none.
pub fn start(count: usize, builder: impl Fn() -> Builder) -> std::io::Result<()> {
    if count == 0 || OTHERS.get().is_some() {
        return Ok(());
    }
    let mut handles = Vec::with_capacity(count);
    for index in 1..=count {
        let runtime = builder().build()?;
        handles.push(runtime.handle().clone());
        std::thread::Builder::new()
            .name(format!("gantry-worker-{index}"))
            .spawn(move || {
                INDEX.with(|i| i.set(index));
                // Runs the worker's tasks until the process exits.
                runtime.block_on(std::future::pending::<()>());
            })?;
    }
    let _ = OTHERS.set(handles);
    Ok(())
}

/// The runtimes of workers 1 to N − 1 that [`start`] started (none before it, and none with
/// one worker).
pub fn others() -> &'static [Handle] {
    OTHERS.get().map_or(&[], Vec::as_slice)
}

/// How many workers serve traffic: the main thread and the [`others`].
pub fn count() -> usize {
    1 + others().len()
}

/// The worker running on this thread (0 on the main thread and on any other thread).
pub fn index() -> usize {
    INDEX.with(Cell::get)
}
