//! TCP listeners: every connection goes to the listener's TCPRoute.

use std::sync::Arc;

use tokio::net::TcpStream;

use super::forward::{Origination, open_backend, reject, relay};
use crate::server::Shared;
use crate::server::drain::Watcher;
use crate::server::listener::ConnectionInfo;

/// Forwards one connection accepted on a TCP port. The backend is chosen with the
/// configuration current when the connection was accepted; a later change leaves the
/// connection with the backend it has. Draining closes it.
pub(crate) async fn serve_tcp(
    stream: TcpStream,
    info: ConnectionInfo,
    shared: Arc<Shared>,
    drain: Watcher,
) {
    let _ = stream.set_nodelay(true);
    let snapshot = shared.snapshot.load_full();
    let table = snapshot.ports.l4.port(info.port);
    let route = table.and_then(|table| table.only_route()).cloned();
    // The Gateway of the listener: its backend client certificate, if any, is presented.
    let gateway = table
        .and_then(|table| table.listeners.first())
        .map(|listener| listener.gateway.clone())
        .unwrap_or_else(|| Arc::from(""));
    let origination = Origination::AsConfigured { gateway: &gateway };
    let opened = open_backend(
        &snapshot,
        &shared.metrics,
        route.as_deref(),
        info.peer.ip(),
        origination,
    )
    .await;
    drop(snapshot);
    let route = route.as_ref().map(|r| &*r.name);
    match opened {
        Ok((upstream, _in_flight)) => {
            let closing = drain.into_signaled();
            let (sent, received) = relay(&shared.metrics, stream, upstream, &[], closing).await;
            tracing::debug!(port = info.port, peer = %info.peer, route, sent, received, "TCP connection closed");
        }
        Err(error) => {
            tracing::info!(port = info.port, peer = %info.peer, route, %error, "TCP connection rejected");
            reject(stream).await;
        }
    }
}
