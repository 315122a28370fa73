//! TLS ports: HTTPS and TLS listeners sharing a port, told apart by the ClientHello's SNI.
//!
//! A connection goes: ClientHello peeked (bounded in size and time, [`client_hello`]) → SNI →
//! listener on the port by hostname, from the snapshot current at that moment (`routing::tls`) →
//! `Terminate`: a rustls handshake with the listener's precompiled configuration, replaying
//! the peeked bytes ([`prefixed`]), then HTTP/1.1 or HTTP/2 through the request pipeline;
//! `Passthrough`: the stream and peeked bytes go to the [`passthrough`] forwarder.
//!
//! A new configuration (a rotated certificate) is used by every handshake after it is
//! published; connections already open carry on as they are. Every failure before the first
//! request is counted in `gantry_tls_handshake_errors_total{port,reason}`.

pub mod client_hello;
mod passthrough;
mod prefixed;

use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

pub use self::prefixed::Prefixed;
use super::Shared;
use super::drain::Watcher;
use super::http_version::HttpVersion;
use super::listener::{self, ConnectionInfo};
use crate::routing::tls::TlsAction;

/// How long a client may take to send its ClientHello.
const CLIENT_HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the rest of the handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What a request knows about the TLS connection it came on.
#[derive(Debug)]
pub struct TlsInfo {
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
    // ACME TLS-ALPN-01 (RFC 8737): the CA's validation handshake gets the challenge
    // certificate for its name, before listener selection (the listener waiting for that
    // certificate is not served yet).
    if let Some(challenges) = &shared.acme
        && crate::acme::tls_alpn01::is_validation(&peeked.hello.alpn)
    {
        let stream = Prefixed::new(peeked.bytes, stream);
        if let Err(error) =
            crate::acme::tls_alpn01::answer(stream, server_name.as_deref(), challenges).await
        {
            failed("acme_tls_alpn01", &error);
        }
        return;
    }
    let snapshot = shared.snapshot.load_full();
    let Some(listener) = snapshot
        .tls
        .port(port)
        .and_then(|p| p.select(server_name.as_deref()))
    else {
        // Counted before the client can see the refusal.
        let shown = server_name.as_deref().unwrap_or("(no SNI)");
        failed("no_listener", &format_args!("no listener for {shown}"));
        // RFC 6066 §3: a server that recognises no name may send a fatal
        // `unrecognized_name` alert.
        let _ = stream.write_all(&UNRECOGNIZED_NAME_ALERT).await;
        return;
    };
    let config = match &listener.action {
        TlsAction::Terminate(config) => config.clone(),
        TlsAction::Passthrough => {
            // The connection may last long: it does not keep this configuration alive.
            let (gateway, name) = (listener.gateway.clone(), listener.name.clone());
            drop(snapshot);
            return passthrough::forward(
                Prefixed::new(peeked.bytes, stream),
                (&gateway, &name),
                server_name.as_deref(),
                &info,
                &shared,
                drain,
            )
            .await;
        }
    };
    let info_of = |client_certificate| TlsInfo {
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
    // A `TLS` listener in `Terminate` mode: the decrypted stream goes to its TLSRoute as TCP
    // (GEP-2643, "TLSRoute + TLS Termination"), re-encrypted where a BackendTLSPolicy covers
    // the backend.
    if super::l4::serves_tls_routes(&snapshot, port, &listener.gateway, &listener.name) {
        let (gateway, name) = (listener.gateway.clone(), listener.name.clone());
        drop(snapshot);
        let conn = super::l4::TlsConnection {
            port,
            gateway: &gateway,
            listener: &name,
            sni: server_name.as_deref(),
            peer: info.peer,
            passthrough: false,
        };
        super::l4::forward_tls(&shared, conn, tls, &[], drain.into_signaled()).await;
        return;
    }
    let tls_info = info_of(tls.get_ref().1.peer_certificates().is_some());
    let version = HttpVersion::of_alpn(tls.get_ref().1.alpn_protocol());
    drop(snapshot);
    let info = ConnectionInfo {
        tls: Some(Arc::new(tls_info)),
        ..info
    };
    listener::serve_http(tls, version, info, shared, drain).await;
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
