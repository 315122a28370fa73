//! One active health check probe: HTTP, TCP or gRPC, over the cluster's transport (TLS when
//! the cluster has a BackendTLSPolicy, HTTP/2 with prior knowledge for an h2c cluster). Each
//! probe opens its own connection, so a probe never rides on (or spoils) a pooled one.

use std::io;
use std::sync::Arc;

use bytes::{Buf, Bytes};
use http::uri::Authority;
use http::{Method, Request, Version};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::upstream::tls::{Handshake, TlsUpstream};
use gantry_translate::ir::{HealthProbeIr, UpstreamProtocol};

/// ALPN of HTTP probes over TLS.
const ALPN_H2: &[u8] = b"h2";
const ALPN_HTTP1: &[u8] = b"http/1.1";

/// How probes reach an endpoint of one cluster.
#[derive(Clone, Debug)]
pub struct Transport {
    pub cluster: Arc<str>,
    pub protocol: UpstreamProtocol,
    /// The handshake with the ALPN the probe needs; `Err`: TLS settings that cannot be used
    /// (every probe fails).
    pub tls: Option<Result<Handshake, Arc<str>>>,
}

impl Transport {
    /// The transport of a cluster speaking `protocol`, with `tls` when it has it.
    pub fn new(
        cluster: Arc<str>,
        protocol: UpstreamProtocol,
        tls: Option<&TlsUpstream>,
        probe: &HealthProbeIr,
    ) -> Self {
        let alpn: &[&[u8]] = match probe {
            HealthProbeIr::Tcp { .. } => &[],
            HealthProbeIr::Grpc { .. } => &[ALPN_H2],
            HealthProbeIr::Http { .. } if protocol == UpstreamProtocol::H2c => &[ALPN_H2],
            HealthProbeIr::Http { .. } => &[ALPN_HTTP1],
        };
        let tls = tls.map(|tls| {
            // The Gateway-independent clients: a probe presents no client certificate.
            tls.clients("").stream.clone().map(|handshake| {
                let mut config = (*handshake.config).clone();
                config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
                Handshake {
                    config: Arc::new(config),
                    server_name: handshake.server_name,
                }
            })
        });
        Self {
            cluster,
            protocol,
            tls,
        }
    }

    /// Runs one probe of `endpoint`; `Ok(true)`: healthy. The caller bounds it by the timeout.
    pub async fn probe(&self, endpoint: &Authority, probe: &HealthProbeIr) -> io::Result<bool> {
        let tcp = TcpStream::connect(endpoint.as_str()).await?;
        tcp.set_nodelay(true)?;
        match &self.tls {
            None => run(tcp, endpoint, probe, self.protocol).await,
            Some(Err(why)) => Err(io::Error::other(why.to_string())),
            Some(Ok(handshake)) => {
                let tls = handshake
                    .connect(tcp, &self.cluster, endpoint.as_str())
                    .await?;
                run(tls, endpoint, probe, self.protocol).await
            }
        }
    }
}

async fn run<S>(
    mut stream: S,
    endpoint: &Authority,
    probe: &HealthProbeIr,
    protocol: UpstreamProtocol,
) -> io::Result<bool>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    match probe {
        HealthProbeIr::Tcp { send, receive } => {
            if let Some(send) = send {
                stream.write_all(send).await?;
                stream.flush().await?;
            }
            let Some(receive) = receive else {
                return Ok(true);
            };
            let mut read = Vec::new();
            let mut buf = [0u8; 1024];
            loop {
                let n = stream.read(&mut buf).await?;
                if n == 0 {
                    return Ok(false);
                }
                read.extend_from_slice(&buf[..n]);
                if contains(&read, receive) {
                    return Ok(true);
                }
            }
        }
        HealthProbeIr::Http {
            path,
            method,
            expected_statuses,
            hostname,
        } => {
            let method = Method::from_bytes(method.as_bytes()).map_err(io::Error::other)?;
            let http2 = protocol == UpstreamProtocol::H2c;
            let request = request(method, path, hostname, http2, Bytes::new(), None)?;
            let (status, _) = exchange(stream, request, http2, false).await?;
            Ok(expected_statuses.binary_search(&status).is_ok())
        }
        HealthProbeIr::Grpc { service } => {
            let path = "/grpc.health.v1.Health/Check";
            let host = endpoint.as_str();
            let body = grpc_check_request(service);
            let request = request(
                Method::POST,
                path,
                host,
                true,
                body,
                Some("application/grpc"),
            )?;
            let (status, body) = exchange(stream, request, true, true).await?;
            Ok(status == 200 && grpc_serving(&body))
        }
    }
}

fn request(
    method: Method,
    path: &str,
    host: &str,
    http2: bool,
    body: Bytes,
    content_type: Option<&str>,
) -> io::Result<Request<Full<Bytes>>> {
    let mut builder = Request::builder().method(method);
    builder = if http2 {
        builder
            .version(Version::HTTP_2)
            .uri(format!("http://{host}{path}"))
    } else {
        builder
            .version(Version::HTTP_11)
            .uri(path)
            .header(http::header::HOST, host)
    };
    builder = builder.header(http::header::USER_AGENT, "gantry-health-check");
    if let Some(content_type) = content_type {
        builder = builder
            .header(http::header::CONTENT_TYPE, content_type)
            .header("te", "trailers");
    }
    builder.body(Full::new(body)).map_err(io::Error::other)
}

/// Sends `request` over a new connection and returns the status and, when asked, the body.
async fn exchange<S>(
    stream: S,
    request: Request<Full<Bytes>>,
    http2: bool,
    read_body: bool,
) -> io::Result<(u16, Bytes)>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(stream);
    if http2 {
        let (mut sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                .await
                .map_err(io::Error::other)?;
        let driver = tokio::spawn(connection);
        let response = sender.send_request(request).await;
        let result = collect(response, read_body).await;
        driver.abort();
        result
    } else {
        let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(io::Error::other)?;
        let driver = tokio::spawn(connection);
        let response = sender.send_request(request).await;
        let result = collect(response, read_body).await;
        driver.abort();
        result
    }
}

async fn collect(
    response: hyper::Result<http::Response<hyper::body::Incoming>>,
    read_body: bool,
) -> io::Result<(u16, Bytes)> {
    let response = response.map_err(io::Error::other)?;
    let status = response.status().as_u16();
    if !read_body {
        return Ok((status, Bytes::new()));
    }
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(io::Error::other)?;
    Ok((status, body.to_bytes()))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

/// A length-prefixed `grpc.health.v1.HealthCheckRequest { service }` (field 1, a string).
pub fn grpc_check_request(service: &str) -> Bytes {
    let mut message = Vec::new();
    if !service.is_empty() {
        message.push(0x0a);
        varint(&mut message, service.len() as u64);
        message.extend_from_slice(service.as_bytes());
    }
    let mut framed = Vec::with_capacity(5 + message.len());
    framed.push(0);
    framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
    framed.extend_from_slice(&message);
    Bytes::from(framed)
}

fn varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// True when the body is one uncompressed `HealthCheckResponse` whose `status` (field 1, an
/// enum) is `SERVING` (1).
pub fn grpc_serving(body: &[u8]) -> bool {
    let mut body = body;
    if body.len() < 5 || body[0] != 0 {
        return false;
    }
    body.advance(1);
    let length = body.get_u32() as usize;
    let Some(mut message) = body.get(..length) else {
        return false;
    };
    let mut status = 0;
    while let Some((&key, rest)) = message.split_first() {
        message = rest;
        let Some(value) = read_varint(&mut message) else {
            return false;
        };
        match (key >> 3, key & 7) {
            (1, 0) => status = value,
            (_, 0) => {}
            (_, 2) => {
                let Some(rest) = message.get(value as usize..) else {
                    return false;
                };
                message = rest;
            }
            _ => return false,
        }
    }
    status == 1
}

fn read_varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = bytes.split_first()?;
        *bytes = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_health_messages() {
        assert_eq!(&grpc_check_request("")[..], &[0, 0, 0, 0, 0]);
        assert_eq!(
            &grpc_check_request("ab")[..],
            &[0, 0, 0, 0, 4, 0x0a, 2, b'a', b'b']
        );
        assert!(grpc_serving(&[0, 0, 0, 0, 2, 0x08, 1]));
        assert!(!grpc_serving(&[0, 0, 0, 0, 2, 0x08, 2]), "NOT_SERVING");
        assert!(!grpc_serving(&[0, 0, 0, 0, 0]), "UNKNOWN (default)");
        assert!(!grpc_serving(&[1, 0, 0, 0, 2, 0x08, 1]), "compressed");
        assert!(!grpc_serving(&[0, 0, 0, 0, 9, 0x08, 1]), "truncated");
    }

    #[test]
    fn tcp_receive_is_a_substring() {
        assert!(contains(b"+PONG\r\n", b"PONG"));
        assert!(!contains(b"PON", b"PONG"));
    }
}
