//! TLS ports: HTTPS and TLS listeners sharing a port, told apart by the ClientHello's SNI.
//!
//! A connection goes: ClientHello peeked (bounded in size and time, [`client_hello`]) → SNI →
//! listener on the port by hostname, from the snapshot current at that moment ([`table`]) →
//! `Terminate`: a rustls handshake with the listener's precompiled configuration, replaying
//! the peeked bytes ([`prefixed`]), then HTTP/1.1 or HTTP/2 through the request pipeline;
//! `Passthrough`: the stream and peeked bytes go to the [`passthrough`] forwarder.
//!
//! A new configuration (a rotated certificate) is used by every handshake after it is
//! published; connections already open keep their session. Every failure before the first
//! request is counted in `gantry_tls_handshake_errors_total{port,reason}`.

mod certificates;
mod client_auth;
pub mod client_hello;
mod config;
mod passthrough;
mod prefixed;
mod table;

use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

pub use self::prefixed::Prefixed;
pub use self::table::{TlsAction, TlsListener, TlsPort, TlsPorts};
use super::Shared;
use super::drain::Watcher;
use super::listener::{self, ConnectionInfo};

/// How long a client may take to send its ClientHello.
const CLIENT_HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the rest of the handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What a request knows about the TLS session it came on.
#[derive(Debug)]
pub struct TlsSession {
    /// `namespace/name` of the Gateway whose listener the SNI selected.
    pub gateway: Arc<str>,
    /// The listener's name.
    pub listener: Arc<str>,
    pub server_name: Option<String>,
    /// The client presented a certificate (verified, unless the listener's validation is
    /// `AllowInsecureFallback`).
    pub client_certificate: bool,
}

/// Serves one connection on a TLS port.
pub(super) async fn serve(
    mut stream: TcpStream,
    info: ConnectionInfo,
    shared: Arc<Shared>,
    drain: Watcher,
) {
    let port = info.port;
    let failed = |reason: &'static str, detail: &dyn std::fmt::Display| {
        shared.metrics.tls_handshake_error(port, reason);
        tracing::debug!(port, peer = %info.peer, reason, %detail, "TLS connection refused");
    };
    let peeked = match client_hello::read(&mut stream, CLIENT_HELLO_TIMEOUT).await {
        Ok(peeked) => peeked,
        Err(error) => return failed(error.reason(), &error),
    };
    let server_name = peeked.hello.server_name.clone();
    let snapshot = shared.snapshot.load_full();
    let Some(listener) = snapshot
        .tls
        .port(port)
        .and_then(|p| p.select(server_name.as_deref()))
    else {
        // RFC 6066 §3: a server that recognises no name may send a fatal
        // `unrecognized_name` alert.
        let _ = stream.write_all(&UNRECOGNIZED_NAME_ALERT).await;
        let shown = server_name.as_deref().unwrap_or("(no SNI)");
        return failed("no_listener", &format_args!("no listener for {shown}"));
    };
    let config = match &listener.action {
        TlsAction::Terminate(config) => config.clone(),
        TlsAction::Passthrough => {
            return passthrough::forward(
                Prefixed::new(peeked.bytes, stream),
                listener,
                &info,
                &shared,
            )
            .await;
        }
    };
    let session_of = |client_certificate| TlsSession {
        gateway: listener.gateway.clone(),
        listener: listener.name.clone(),
        server_name: server_name.clone(),
        client_certificate,
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let handshake = acceptor.accept(Prefixed::new(peeked.bytes, stream));
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(error)) => return failed(handshake_reason(&error), &error),
        Err(_) => return failed("handshake_timeout", &"handshake timed out"),
    };
    let session = session_of(tls.get_ref().1.peer_certificates().is_some());
    drop(snapshot);
    let info = ConnectionInfo {
        tls: Some(Arc::new(session)),
        ..info
    };
    listener::serve_http(tls, info, shared, drain).await;
}

/// A TLS 1.2-framed fatal `unrecognized_name` (112) alert.
const UNRECOGNIZED_NAME_ALERT: [u8; 7] = [21, 3, 3, 0, 2, 2, 112];

/// The `reason` label of a failed handshake.
fn handshake_reason(error: &std::io::Error) -> &'static str {
    let Some(tls) = error
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
    else {
        return "client_closed";
    };
    match tls {
        rustls::Error::NoCertificatesPresented
        | rustls::Error::InvalidCertificate(_)
        | rustls::Error::InvalidCertRevocationList(_) => "client_certificate",
        rustls::Error::NoApplicationProtocol => "no_application_protocol",
        rustls::Error::PeerIncompatible(_) => "incompatible_client",
        rustls::Error::AlertReceived(_) => "client_alert",
        rustls::Error::General(_) => "no_certificate",
        _ => "handshake",
    }
}
