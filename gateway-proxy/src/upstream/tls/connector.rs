//! A hyper-util connector that opens TCP with `HttpConnector` and then TLS with one fixed
//! rustls configuration and server name (the policy's hostname, not the endpoint address).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::Uri;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
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
            let Handshake {
                config,
                server_name,
            } = match settings {
                Ok(settings) => settings,
                Err(why) => {
                    tracing::warn!(%cluster, %endpoint, reason = %why, "no TLS connection to the backend: its TLS settings cannot be used");
                    return Err(io::Error::other(why.to_string()).into());
                }
            };
            let tcp = connecting.await?.into_inner();
            let tls = tokio_rustls::TlsConnector::from(config);
            match tls.connect(server_name.clone(), tcp).await {
                Ok(stream) => Ok(TlsConnection(TokioIo::new(stream))),
                Err(error) => {
                    tracing::warn!(
                        %cluster,
                        %endpoint,
                        sni = %server_name.to_str(),
                        %error,
                        "TLS handshake with the backend failed; check the BackendTLSPolicy's CA certificates and hostname or subjectAltNames against the backend's certificate"
                    );
                    Err(error.into())
                }
            }
        })
    }
}

/// An established TLS connection to a backend.
#[derive(Debug)]
pub struct TlsConnection(TokioIo<TlsStream<TcpStream>>);

impl Connection for TlsConnection {
    fn connected(&self) -> Connected {
        let (tcp, session) = self.0.inner().get_ref();
        let connected = tcp.connected();
        if session.alpn_protocol() == Some(b"h2") {
            connected.negotiated_h2()
        } else {
            connected
        }
    }
}

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
