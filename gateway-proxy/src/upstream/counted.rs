//! The connector wrapper of clusters with a BackendConfigPolicy: [`Counted`] counts the
//! connections it opens in the cluster's open-connections gauge, for as long as each is open.
//! [`ConnectionState`] is an HTTP/2 connection's age and request count, for the pool to retire
//! it after `maxRequestsPerConnection` requests or `maxConnectionDuration`.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::task::{Context, Poll};

use http::Uri;
use hyper::rt::{Read, ReadBufCursor, Write};
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

/// What one HTTP/2 connection knows about itself: its age and the requests it carried, for
/// retiring it after `maxRequestsPerConnection` requests or `maxConnectionDuration`.
#[derive(Debug)]
pub struct ConnectionState {
    opened: Instant,
    requests: AtomicU32,
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
        })
    }

    pub(super) fn opened(&self) -> Instant {
        self.opened
    }

    /// Counts one more request; the count with it.
    pub(super) fn count_request(&self) -> u32 {
        self.requests
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1)
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
            let open = policy.map(|policy| policy.count_open());
            Ok(CountedIo { io, _open: open })
        })
    }
}

/// A connection opened by [`Counted`], counted in its cluster's gauge until it is dropped
/// (an upgraded connection included).
#[derive(Debug)]
pub struct CountedIo<T> {
    io: T,
    /// Held for its `Drop`: the gauge goes down when the connection does.
    _open: Option<OpenConnection>,
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
