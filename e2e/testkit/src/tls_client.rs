//! A TLS client for the tests (tokio-rustls): chosen SNI, ALPN, TLS versions and client
//! certificate, then HTTP/1.1 or HTTP/2 by the negotiated ALPN.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::{ClientConfig, RootCertStore, SignatureScheme, SupportedProtocolVersion};
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::certs::Leaf;
use crate::harness::Reply;

/// How to connect.
#[derive(Clone)]
pub struct TlsClient {
    pub roots: Arc<RootCertStore>,
    /// ALPN protocols offered; empty offers none.
    pub alpn: Vec<Vec<u8>>,
    /// TLS versions offered.
    pub versions: Vec<&'static SupportedProtocolVersion>,
    /// A client certificate to present.
    pub identity: Option<Leaf>,
    /// When set, the only signature schemes offered for the server's handshake signature.
    pub signature_schemes: Option<Vec<SignatureScheme>>,
}

/// An open TLS connection and what was negotiated.
pub struct Connected {
    pub stream: TlsStream<TcpStream>,
}

impl Connected {
    pub fn alpn(&self) -> Option<Vec<u8>> {
        self.stream.get_ref().1.alpn_protocol().map(<[u8]>::to_vec)
    }

    pub fn version(&self) -> Option<rustls::ProtocolVersion> {
        self.stream.get_ref().1.protocol_version()
    }

    /// The server's leaf certificate.
    pub fn server_certificate(&self) -> Option<CertificateDer<'static>> {
        self.stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.clone().into_owned())
    }
}

impl TlsClient {
    /// Trusts `roots`, offers h2 and http/1.1, TLS 1.3 and 1.2, no client certificate.
    pub fn new(roots: Arc<RootCertStore>) -> Self {
        Self {
            roots,
            alpn: vec![b"h2".to_vec(), b"http/1.1".to_vec()],
            versions: vec![&rustls::version::TLS13, &rustls::version::TLS12],
            identity: None,
            signature_schemes: None,
        }
    }

    /// Offers only `schemes` for the server's handshake signature (the server must then use a
    /// certificate whose key can sign with one of them).
    pub fn signature_schemes(mut self, schemes: &[SignatureScheme]) -> Self {
        self.signature_schemes = Some(schemes.to_vec());
        self
    }

    fn provider(&self) -> Arc<CryptoProvider> {
        let mut provider = rustls::crypto::ring::default_provider();
        if let Some(schemes) = &self.signature_schemes {
            let all = provider.signature_verification_algorithms;
            let mapping: Vec<_> = all
                .mapping
                .iter()
                .filter(|(scheme, _)| schemes.contains(scheme))
                .copied()
                .collect();
            // The provider wants 'static tables; a test client leaks one small table.
            provider.signature_verification_algorithms = WebPkiSupportedAlgorithms {
                all: all.all,
                mapping: Box::leak(mapping.into_boxed_slice()),
            };
        }
        Arc::new(provider)
    }

    pub fn alpn(mut self, protocols: &[&[u8]]) -> Self {
        self.alpn = protocols.iter().map(|p| p.to_vec()).collect();
        self
    }

    pub fn versions(mut self, versions: &[&'static SupportedProtocolVersion]) -> Self {
        self.versions = versions.to_vec();
        self
    }

    pub fn identity(mut self, leaf: &Leaf) -> Self {
        self.identity = Some(leaf.clone());
        self
    }

    fn config(&self) -> anyhow::Result<Arc<ClientConfig>> {
        let builder = ClientConfig::builder_with_provider(self.provider())
            .with_protocol_versions(&self.versions)?
            .with_root_certificates(self.roots.clone());
        let mut config = match &self.identity {
            Some(leaf) => builder.with_client_auth_cert(leaf.chain(), leaf.key())?,
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = self.alpn.clone();
        Ok(Arc::new(config))
    }

    /// Connects to `addr` with `server_name` as SNI (and as the name the server's
    /// certificate must be valid for). An IP address sends no SNI.
    pub async fn connect(&self, addr: SocketAddr, server_name: &str) -> anyhow::Result<Connected> {
        let name = ServerName::try_from(server_name.to_owned())?;
        let tcp = TcpStream::connect(addr).await?;
        let stream = TlsConnector::from(self.config()?)
            .connect(name, tcp)
            .await?;
        Ok(Connected { stream })
    }

    /// One `GET path` with `Host: host` over a new connection whose SNI is `server_name`.
    pub async fn get(
        &self,
        addr: SocketAddr,
        server_name: &str,
        host: &str,
        path: &str,
    ) -> anyhow::Result<Reply> {
        let connection = self.connect(addr, server_name).await?;
        let mut http = HttpOverTls::open(connection).await?;
        http.get(host, path).await
    }
}

/// HTTP over one TLS connection: HTTP/2 when ALPN chose h2, else HTTP/1.1.
pub enum HttpOverTls {
    Http1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    Http2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

impl HttpOverTls {
    pub async fn open(connection: Connected) -> anyhow::Result<Self> {
        let h2 = connection.alpn().as_deref() == Some(b"h2");
        let io = TokioIo::new(connection.stream);
        if h2 {
            let (sender, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await?;
            tokio::spawn(conn);
            Ok(Self::Http2(sender))
        } else {
            let (sender, conn) = hyper::client::conn::http1::handshake(io).await?;
            tokio::spawn(conn);
            Ok(Self::Http1(sender))
        }
    }

    /// `GET path` for `host` (the Host header on HTTP/1.1, `:authority` on HTTP/2).
    pub async fn get(&mut self, host: &str, path: &str) -> anyhow::Result<Reply> {
        let response = match self {
            Self::Http1(sender) => {
                sender.ready().await?;
                let request = Request::builder()
                    .uri(path)
                    .header("host", host)
                    .body(Full::new(Bytes::new()))?;
                sender.send_request(request).await?
            }
            Self::Http2(sender) => {
                sender.ready().await?;
                let request = Request::builder()
                    .uri(format!("https://{host}{path}"))
                    .body(Full::new(Bytes::new()))?;
                sender.send_request(request).await?
            }
        };
        let (parts, body) = response.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok(Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }
}

/// True when a reply is a 200 from the echo backend named `backend`.
pub fn served_by(reply: &Reply, backend: &str) -> bool {
    reply.status == StatusCode::OK && reply.echo().name == backend
}
