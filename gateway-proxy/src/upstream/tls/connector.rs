//! The connector of TLS clusters' pools (a `tower` service): it opens TCP with `HttpConnector`
//! and then TLS with one fixed rustls configuration and server name (the policy's hostname,
//! not the endpoint address).
//!
//! The handshake itself ([`Handshake::connect`], [`unusable`]) is shared with the L4
//! forwarder, which originates TLS for TCPRoute and terminated TLSRoute connections: one
//! implementation of backend TLS, and one log line for each way it fails.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::Uri;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::upstream::BoxError;

/// Connects to an endpoint and completes a verified TLS handshake. Cheap to clone: the
/// configuration is shared.
#[derive(Clone, Debug)]
pub struct TlsConnector {
    http: HttpConnector,
    /// The handshake settings, or why there are none: then every connection fails (the
    /// request gets a 502), never falling back to plaintext.
    settings: Result<Handshake, Arc<str>>,
    /// `namespace/service:port`, for the log.
    cluster: Arc<str>,
}

/// What every handshake of one connector uses.
#[derive(Clone, Debug)]
pub struct Handshake {
    pub config: Arc<ClientConfig>,
    /// SNI, and the name verified unless the policy lists subjectAltNames.
    pub server_name: ServerName<'static>,
}

impl Handshake {
    /// Completes a verified TLS handshake with the backend over `tcp`. A failure is logged
    /// with `cluster` (`namespace/service:port`), `endpoint` and the reason.
    pub async fn connect(
        &self,
        tcp: TcpStream,
        cluster: &str,
        endpoint: &str,
    ) -> io::Result<TlsStream<TcpStream>> {
        let tls = tokio_rustls::TlsConnector::from(self.config.clone());
        tls.connect(self.server_name.clone(), tcp)
            .await
            .inspect_err(|error| {
                tracing::warn!(
                    %cluster,
                    %endpoint,
                    sni = %self.server_name.to_str(),
                    %error,
                    "TLS handshake with the backend failed; check the BackendTLSPolicy's CA certificates and hostname or subjectAltNames against the backend's certificate"
                );
            })
    }
}

/// The error of a connection to a cluster whose TLS settings cannot be used (`why`): nothing
/// is sent, never plaintext. Logged with `cluster` and `endpoint`.
pub fn unusable(why: &str, cluster: &str, endpoint: &str) -> io::Error {
    tracing::warn!(%cluster, %endpoint, reason = %why, "no TLS connection to the backend: its TLS settings cannot be used");
    io::Error::other(why.to_owned())
}

/// A short, fixed label for why a TLS connection to a backend failed, for metrics.
pub fn failure_reason(error: &io::Error) -> &'static str {
    use rustls::{CertificateError, Error};
    let Some(tls) = error.get_ref().and_then(|e| e.downcast_ref::<Error>()) else {
        return match error.kind() {
            io::ErrorKind::TimedOut => "timeout",
            io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe => "backend_closed",
            _ => "other",
        };
    };
    match tls {
        Error::InvalidCertificate(CertificateError::UnknownIssuer) => "unknown_issuer",
        Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => "name_mismatch",
        Error::InvalidCertificate(
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. },
        ) => "certificate_expired",
        Error::InvalidCertificate(_) => "bad_certificate",
        Error::AlertReceived(_) => "backend_alert",
        _ => "handshake",
    }
}

impl TlsConnector {
    pub fn new(
        http: HttpConnector,
        settings: Result<Handshake, Arc<str>>,
        cluster: Arc<str>,
    ) -> Self {
        Self {
            http,
            settings,
            cluster,
        }
    }
}

impl tower_service::Service<Uri> for TlsConnector {
    type Response = TlsConnection;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<TlsConnection, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.http.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let endpoint = uri.authority().map(ToString::to_string).unwrap_or_default();
        let connecting = self.http.call(uri);
        let settings = self.settings.clone();
        let cluster = self.cluster.clone();
        Box::pin(async move {
            let handshake = match settings {
                Ok(handshake) => handshake,
                Err(why) => return Err(unusable(&why, &cluster, &endpoint).into()),
            };
            let tcp = connecting.await?.into_inner();
            let stream = handshake.connect(tcp, &cluster, &endpoint).await?;
            Ok(TlsConnection(TokioIo::new(stream)))
        })
    }
}

/// An established TLS connection to a backend.
#[derive(Debug)]
pub struct TlsConnection(TokioIo<TlsStream<TcpStream>>);

impl Read for TlsConnection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl Write for TlsConnection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }
}
