//! Connection draining, in two steps. [`Drain::announce`]: the process is going away soon but
//! still serves (the drain delay); HTTP/1.1 responses then ask clients to reconnect
//! ([`Drain::announced`]). [`Drain::signal`]: every connection, present and future, shuts down
//! gracefully; [`Drain::drained`] resolves once all have closed.

use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::watch;

/// Owned by the data plane.
#[derive(Debug)]
pub struct Drain {
    tx: watch::Sender<bool>,
    announced: AtomicBool,
}

/// Held by each connection task for as long as the connection lives (a clone counts as one
/// more connection).
#[derive(Clone, Debug)]
pub struct Watcher {
    rx: watch::Receiver<bool>,
}

impl Default for Drain {
    fn default() -> Self {
        Self {
            tx: watch::channel(false).0,
            announced: AtomicBool::new(false),
        }
    }
}

impl Drain {
    pub fn watcher(&self) -> Watcher {
        Watcher {
            rx: self.tx.subscribe(),
        }
    }

    /// The process will stop: connections keep being served, but should move elsewhere.
    pub fn announce(&self) {
        self.announced.store(true, Ordering::Release);
    }

    /// True from [`Drain::announce`] (or [`Drain::signal`]) on.
    pub fn announced(&self) -> bool {
        self.announced.load(Ordering::Acquire)
    }

    /// Asks every connection, present and future, to finish.
    pub fn signal(&self) {
        self.announce();
        self.tx.send_replace(true);
    }

    /// Resolves once every [`Watcher`] is dropped.
    pub async fn drained(&self) {
        self.tx.closed().await;
    }

    /// Connections still open.
    pub fn open(&self) -> usize {
        self.tx.receiver_count()
    }
}

impl Watcher {
    /// Resolves once draining starts (at once when it already has).
    pub async fn signaled(&mut self) {
        if self.rx.wait_for(|draining| *draining).await.is_err() {
            // The data plane is gone without draining: keep serving until the client leaves.
            std::future::pending::<()>().await;
        }
    }

    /// [`Watcher::signaled`], owning the watcher.
    pub async fn into_signaled(mut self) {
        self.signaled().await;
    }
}
