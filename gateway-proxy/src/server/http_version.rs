//! Which HTTP a client connection speaks, decided before hyper reads from it where that can
//! be done without consuming a byte, and the connection served with that protocol's builder.
//!
//! hyper-util's `auto` builder tells the HTTP/2 preface from an HTTP/1 request by reading up
//! to 24 bytes and handing them back through a prefix that hyper reads first. hyper then asks
//! its read buffer for 8 KiB more with those bytes still in it, so the buffer doubles to
//! 16 KiB, and it keeps that buffer for the life of the connection: 8 KiB more per open
//! connection, idle keep-alive connections included. Here a cleartext connection is peeked at
//! instead (the bytes stay in the socket), and a TLS connection's ALPN names its protocol;
//! only a connection that neither settles (a first segment that is only the start of the
//! preface, a TLS client without ALPN) goes through `auto`. The figures are in
//! docs/benchmarks.md, "Memory per connection".

use std::error::Error as StdError;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{Request, Response};
use hyper::body::{Body, Incoming};
use hyper::rt::{Read, Write};
use hyper::server::conn::{http1, http2};
use hyper::service::{HttpService, Service};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpStream;

use super::{
    ConnectionOptions, HTTP2_KEEP_ALIVE_INTERVAL, HTTP2_MAX_HEADER_LIST, HTTP2_MAX_SEND_BUFFER,
};

/// The HTTP/2 connection preface (RFC 9113 §3.4) a client with prior knowledge sends first.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

type BoxError = Box<dyn StdError + Send + Sync>;

/// The protocol of a connection, as far as it is known before serving it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HttpVersion {
    Http1,
    Http2,
    /// Not known yet: hyper-util reads the first bytes to tell.
    Unknown,
}

impl HttpVersion {
    /// What the first bytes of a cleartext connection say. Any byte that departs from the
    /// HTTP/2 preface makes it HTTP/1; a complete preface makes it HTTP/2; a part of the
    /// preface, or nothing, leaves it unknown.
    pub(crate) fn of_first_bytes(bytes: &[u8]) -> Self {
        if bytes.is_empty() {
            Self::Unknown
        } else if !H2_PREFACE.starts_with(&bytes[..bytes.len().min(H2_PREFACE.len())]) {
            Self::Http1
        } else if bytes.len() >= H2_PREFACE.len() {
            Self::Http2
        } else {
            Self::Unknown
        }
    }

    /// The protocol a TLS handshake agreed on through ALPN (RFC 7301); without ALPN a client
    /// may still send the HTTP/2 preface, so it is unknown.
    pub(crate) fn of_alpn(protocol: Option<&[u8]>) -> Self {
        match protocol {
            Some(b"h2") => Self::Http2,
            Some(b"http/1.1" | b"http/1.0") => Self::Http1,
            _ => Self::Unknown,
        }
    }

    /// Peeks at what a cleartext client sent first, waiting for it. The bytes stay in the
    /// socket; an error leaves the protocol unknown (serving it then fails as it would).
    pub(crate) async fn peek(stream: &TcpStream) -> Self {
        let mut first = [0u8; H2_PREFACE.len()];
        match stream.peek(&mut first).await {
            Ok(n) => Self::of_first_bytes(&first[..n]),
            Err(_) => Self::Unknown,
        }
    }
}

/// A service each of the three builders can serve: what hyper asks of it and of its body.
pub(crate) trait ServedService:
    Service<
        Request<Incoming>,
        Response = Response<Self::Body>,
        Error: Into<BoxError>,
        Future: Send + 'static,
    > + 'static
{
    type Body: Body<Data: Send, Error: Into<BoxError>> + Send + 'static;
}

impl<S, B> ServedService for S
where
    S: Service<Request<Incoming>, Response = Response<B>> + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Body = B;
}

/// The builders of the three ways of serving, configured alike.
pub(crate) struct HttpBuilders {
    auto: auto::Builder<TokioExecutor>,
    http1: http1::Builder,
    http2: http2::Builder<TokioExecutor>,
}

impl HttpBuilders {
    /// The three builders with the same settings: `limits`' HTTP/2 stream limit, and the data
    /// plane's HTTP/2 keep-alive and buffer bounds.
    pub(crate) fn new(limits: &ConnectionOptions) -> Self {
        // `auto`'s builders and hyper's are different types with the same methods: each
        // protocol's settings are written once, in a macro, and applied to both.
        //
        // The header timeout is the connection watchdog's (`activity.rs`), which bounds every
        // HTTP/1 head, the first and each one after: hyper's own (on by default) boxes a new
        // timer for every request, registers it in the runtime's timer wheel while the head
        // is read and takes it out again, about 1,200 instructions per request
        // (`gantry-bench --instructions-only`; docs/benchmarks.md, "Instructions per
        // request: the header timeout").
        macro_rules! http1_settings {
            ($builder:expr) => {
                $builder
                    .keep_alive(true)
                    .header_read_timeout(None)
                    .timer(TokioTimer::new())
            };
        }
        macro_rules! http2_settings {
            ($builder:expr) => {
                $builder
                    .keep_alive_interval(HTTP2_KEEP_ALIVE_INTERVAL)
                    .max_concurrent_streams(limits.http2_max_streams)
                    .max_send_buf_size(HTTP2_MAX_SEND_BUFFER)
                    .max_header_list_size(HTTP2_MAX_HEADER_LIST)
                    .timer(TokioTimer::new())
            };
        }
        let mut auto = auto::Builder::new(TokioExecutor::new());
        http1_settings!(auto.http1());
        http2_settings!(auto.http2());
        let mut http1 = http1::Builder::new();
        http1_settings!(http1);
        let mut http2 = http2::Builder::new(TokioExecutor::new());
        http2_settings!(http2);
        Self { auto, http1, http2 }
    }

    /// Serves `io` with `service` over `version`, with HTTP/1 upgrades.
    pub(crate) fn serve<I, S>(&self, version: HttpVersion, io: I, service: S) -> Served<'_, I, S>
    where
        S: ServedService,
        I: Read + Write + Unpin + Send + 'static,
    {
        match version {
            HttpVersion::Http1 => Served::Http1 {
                connection: self.http1.serve_connection(io, service).with_upgrades(),
            },
            HttpVersion::Http2 => Served::Http2 {
                connection: self.http2.serve_connection(io, service),
            },
            HttpVersion::Unknown => Served::Auto {
                connection: self.auto.serve_connection_with_upgrades(io, service),
            },
        }
    }
}

pin_project_lite::pin_project! {
    /// A connection being served, by whichever builder served it.
    #[project = ServedProj]
    pub(crate) enum Served<'a, I, S>
    where
        S: HttpService<Incoming>,
    {
        Http1 { #[pin] connection: http1::UpgradeableConnection<I, S> },
        Http2 { #[pin] connection: http2::Connection<I, S, TokioExecutor> },
        Auto { #[pin] connection: auto::UpgradeableConnection<'a, I, S, TokioExecutor> },
    }
}

impl<I, S> Served<'_, I, S>
where
    S: ServedService,
    I: Read + Write + Unpin + Send + 'static,
{
    /// Starts a graceful shutdown: HTTP/1 finishes the request in flight, HTTP/2 sends GOAWAY.
    pub(crate) fn graceful_shutdown(self: Pin<&mut Self>) {
        match self.project() {
            ServedProj::Http1 { connection } => connection.graceful_shutdown(),
            ServedProj::Http2 { connection } => connection.graceful_shutdown(),
            ServedProj::Auto { connection } => connection.graceful_shutdown(),
        }
    }
}

impl<I, S> Future for Served<'_, I, S>
where
    S: ServedService,
    I: Read + Write + Unpin + Send + 'static,
{
    type Output = Result<(), BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            ServedProj::Http1 { connection } => connection.poll(cx).map_err(Into::into),
            ServedProj::Http2 { connection } => connection.poll(cx).map_err(Into::into),
            ServedProj::Auto { connection } => connection.poll(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_bytes_settle_the_protocol_as_soon_as_they_can() {
        assert_eq!(
            HttpVersion::of_first_bytes(b"GET / HTTP/1.1\r\n"),
            HttpVersion::Http1
        );
        // One byte off the preface is enough; "P" alone is not.
        assert_eq!(
            HttpVersion::of_first_bytes(b"POST / HTTP/1.1"),
            HttpVersion::Http1
        );
        assert_eq!(HttpVersion::of_first_bytes(b"G"), HttpVersion::Http1);
        assert_eq!(HttpVersion::of_first_bytes(b"P"), HttpVersion::Unknown);
        assert_eq!(
            HttpVersion::of_first_bytes(b"PRI * HTTP/2.0\r\n"),
            HttpVersion::Unknown
        );
        assert_eq!(HttpVersion::of_first_bytes(H2_PREFACE), HttpVersion::Http2);
        assert_eq!(HttpVersion::of_first_bytes(b""), HttpVersion::Unknown);
    }

    /// A connected pair: the client's end, which has sent `first`, and the server's.
    async fn sent(listener: &tokio::net::TcpListener, first: &[u8]) -> (TcpStream, TcpStream) {
        use tokio::io::AsyncWriteExt;
        let mut client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        client.write_all(first).await.unwrap();
        (client, server)
    }

    /// The peek leaves the bytes in the socket for hyper, and waits for the first segment.
    #[tokio::test]
    async fn a_peek_reads_nothing_away() {
        use tokio::io::AsyncReadExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        for (first, version) in [
            (&b"P"[..], HttpVersion::Unknown),
            (b"GET / HTTP/1.1\r\n\r\n", HttpVersion::Http1),
        ] {
            let (_client, mut server) = sent(&listener, first).await;
            assert_eq!(HttpVersion::peek(&server).await, version);
            let mut read = vec![0u8; first.len()];
            server.read_exact(&mut read).await.unwrap();
            assert_eq!(read, first);
        }
        let (_client, server) = sent(&listener, H2_PREFACE).await;
        let mut version = HttpVersion::peek(&server).await;
        // The preface may arrive in more than one segment; it is HTTP/2 once all of it is in.
        while version == HttpVersion::Unknown {
            server.readable().await.unwrap();
            version = HttpVersion::peek(&server).await;
        }
        assert_eq!(version, HttpVersion::Http2);
    }

    /// Answers a request on a new connection to `listener`, speaking HTTP/2 or HTTP/1.1; `Err`
    /// when the proxy side refuses it.
    async fn ask(
        listener: std::net::SocketAddr,
        h2: bool,
    ) -> Result<http::StatusCode, hyper::Error> {
        use http_body_util::Empty;
        let io = hyper_util::rt::TokioIo::new(TcpStream::connect(listener).await.unwrap());
        let request = || Request::get("http://a.example/").body(Empty::<bytes::Bytes>::new());
        if h2 {
            let (mut send, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await?;
            tokio::spawn(conn);
            Ok(send.send_request(request().unwrap()).await?.status())
        } else {
            let (mut send, conn) = hyper::client::conn::http1::handshake(io).await?;
            tokio::spawn(conn);
            Ok(send.send_request(request().unwrap()).await?.status())
        }
    }

    /// Each way of serving speaks the protocol it is given, and `auto` either.
    #[tokio::test]
    async fn each_version_is_served_by_its_builder() {
        let builders = std::sync::Arc::new(HttpBuilders::new(&ConnectionOptions::default()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cases = [
            (HttpVersion::Http1, false, true),
            (HttpVersion::Http1, true, false),
            (HttpVersion::Http2, true, true),
            (HttpVersion::Http2, false, false),
            (HttpVersion::Unknown, false, true),
            (HttpVersion::Unknown, true, true),
        ];
        for (version, h2, served) in cases {
            let client = tokio::spawn(ask(addr, h2));
            let (stream, _) = listener.accept().await.unwrap();
            let builders = builders.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|_| async {
                    Ok::<_, std::convert::Infallible>(Response::new(http_body_util::Empty::<
                        bytes::Bytes,
                    >::new()))
                });
                let _ = builders
                    .serve(version, hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
            let answer = client.await.unwrap();
            assert_eq!(
                answer.as_ref().is_ok_and(|s| *s == 200),
                served,
                "{version:?}, HTTP/2 client {h2}: {answer:?}"
            );
        }
    }

    #[test]
    fn alpn_names_the_protocol_and_its_absence_leaves_it_open() {
        assert_eq!(HttpVersion::of_alpn(Some(b"h2")), HttpVersion::Http2);
        assert_eq!(HttpVersion::of_alpn(Some(b"http/1.1")), HttpVersion::Http1);
        assert_eq!(HttpVersion::of_alpn(None), HttpVersion::Unknown);
    }
}
