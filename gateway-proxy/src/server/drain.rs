//! Connection draining: one signal shuts every connection down gracefully; wait until all close.

use tokio::sync::watch;

/// Owned by the data plane.
#[derive(Debug)]
pub struct Drain {
    tx: watch::Sender<bool>,
}

/// Held by each connection task for as long as the connection lives.
#[derive(Debug)]
pub struct Watcher {
    rx: watch::Receiver<bool>,
}

impl Default for Drain {
    fn default() -> Self {
        Self {
            tx: watch::channel(false).0,
        }
    }
}

impl Drain {
    pub fn watcher(&self) -> Watcher {
        Watcher {
            rx: self.tx.subscribe(),
        }
    }

    /// Asks every connection, present and future, to finish.
    pub fn signal(&self) {
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
}
