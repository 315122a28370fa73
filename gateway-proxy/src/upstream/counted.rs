//! The connector wrapper of clusters with a BackendConfigPolicy: [`Counted`] counts the
//! connections it opens in the cluster's open-connections gauge and gives each one a
//! [`ConnectionState`] (its age and request count), which HTTP/1.1 responses carry in their
//! extensions so the pools can retire a connection after `maxRequestsPerConnection` requests or
//! `maxConnectionDuration`.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::task::{Context, Poll};

use arc_swap::ArcSwapOption;
use http::Uri;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{CaptureConnection, Connected, Connection};
use prometheus_client::metrics::gauge::Gauge;
use tokio::time::Instant;

use super::BoxError;
use super::connect::ConnectionPolicy;

/// One connection counted in its cluster's `upstream_connections_open` gauge.
#[derive(Debug)]
pub struct OpenConnection(Gauge);

impl OpenConnection {
    pub fn new(gauge: &Gauge) -> Self {
        gauge.inc();
        Self(gauge.clone())
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// What one connection knows about itself: its age and the requests it carried. HTTP/1.1
/// responses carry it in their extensions (hyper-util's `Connected::extra`).
pub struct ConnectionState {
    opened: Instant,
    requests: AtomicU32,
    /// An HTTP/1.1 connection's handle in hyper-util's pool, from its first response: what
    /// poisons it (it is not pooled again) once it gets too old. Taken out when the connection
    /// closes (the handle refers back to this state).
    pool_entry: ArcSwapOption<CaptureConnection>,
    /// Too old (`maxConnectionDuration`): takes no new request.
    expired: AtomicBool,
}

impl ConnectionState {
    pub(super) fn age(&self) -> std::time::Duration {
        self.opened.elapsed()
    }

    /// Counts one more request; the count with it.
    pub(super) fn count_request(&self) -> u32 {
        self.requests
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1)
    }
}

impl std::fmt::Debug for ConnectionState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionState")
            .field("opened", &self.opened)
            .field("requests", &self.requests)
            .field("expired", &self.expired)
            .finish_non_exhaustive()
    }
}

impl ConnectionState {
    pub fn new() -> Arc<Self> {
        Self::opened_at(Instant::now())
    }

    /// The state of a connection opened at `opened`.
    pub(super) fn opened_at(opened: Instant) -> Arc<Self> {
        Arc::new(Self {
            opened,
            requests: AtomicU32::new(0),
            pool_entry: ArcSwapOption::empty(),
            expired: AtomicBool::new(false),
        })
    }

    /// Keeps the pool handle of the HTTP/1.1 connection this state is of, from a response it
    /// carried, so it can be poisoned when it gets too old; poisons it at once when it already
    /// is (or `retire`).
    pub fn remember(&self, entry: CaptureConnection, retire: bool) {
        if retire || self.expired.load(Ordering::Acquire) {
            poison(&entry);
            return;
        }
        // The first response's handle is kept; later ones are of the same connection.
        if self.pool_entry.load().is_none() {
            self.pool_entry.store(Some(Arc::new(entry)));
        }
        // It may have expired meanwhile.
        if self.expired.load(Ordering::Acquire) {
            self.expire();
        }
    }

    /// Marks the connection too old: a pooled HTTP/1.1 connection is poisoned, so hyper-util
    /// does not hand it out again and closes it.
    fn expire(&self) {
        self.expired.store(true, Ordering::Release);
        if let Some(entry) = self.pool_entry.swap(None) {
            poison(&entry);
        }
    }

    fn forget_pool_entry(&self) {
        self.pool_entry.store(None);
    }
}

fn poison(entry: &CaptureConnection) {
    if let Some(connection) = entry.connection_metadata().as_ref() {
        connection.poison();
    }
}

/// A connector that counts the connections it opens for a cluster with a policy (`None`: a
/// cluster without one; the connection passes through untouched).
#[derive(Clone, Debug)]
pub struct Counted<C> {
    inner: C,
    policy: Option<Arc<ConnectionPolicy>>,
}

impl<C> Counted<C> {
    pub fn new(inner: C, policy: Option<Arc<ConnectionPolicy>>) -> Self {
        Self { inner, policy }
    }
}

impl<C> tower_service::Service<Uri> for Counted<C>
where
    C: tower_service::Service<Uri> + Send + 'static,
    C::Future: Send + 'static,
    C::Error: Into<BoxError>,
{
    type Response = CountedIo<C::Response>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connecting = self.inner.call(uri);
        let policy = self.policy.clone();
        Box::pin(async move {
            let io = connecting.await.map_err(Into::into)?;
            let counted = policy.map(|policy| {
                let state = ConnectionState::new();
                if let Some(age) = policy.max_age() {
                    // Too old at `age`: not pooled again from then on.
                    let state = Arc::downgrade(&state);
                    tokio::spawn(async move {
                        tokio::time::sleep(age).await;
                        if let Some(state) = state.upgrade() {
                            state.expire();
                        }
                    });
                }
                (state, policy.count_open())
            });
            Ok(CountedIo { io, counted })
        })
    }
}

/// A connection opened by [`Counted`].
#[derive(Debug)]
pub struct CountedIo<T> {
    io: T,
    counted: Option<(Arc<ConnectionState>, OpenConnection)>,
}

impl<T> Drop for CountedIo<T> {
    fn drop(&mut self) {
        if let Some((state, _)) = &self.counted {
            state.forget_pool_entry();
        }
    }
}

impl<T: Connection> Connection for CountedIo<T> {
    fn connected(&self) -> Connected {
        let connected = self.io.connected();
        match &self.counted {
            Some((state, _)) => connected.extra(state.clone()),
            None => connected,
        }
    }
}

impl<T: Read + Unpin> Read for CountedIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: Write + Unpin> Write for CountedIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
}
