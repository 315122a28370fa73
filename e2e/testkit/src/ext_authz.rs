//! Authorization services for ExternalAuth tests (GEP-1494): one over HTTP and one over gRPC
//! (Envoy's `envoy.service.auth.v3.Authorization/Check`, with hand-written prost messages of
//! the fields used here, numbered as in Envoy's protos).
//!
//! Both allow a request whose `Authorization` is `Bearer good` (adding `x-auth-user: alice`)
//! and deny any other with 401, `WWW-Authenticate: Bearer realm="test"` and a body naming the
//! service; both record what they were asked ([`Seen`]). A request carrying [`SLOW_TOKEN`] is
//! recorded and never answered (a service slower than any timeout), one carrying
//! [`BROKEN_TOKEN`] gets an error rather than a decision (HTTP `500`, gRPC `UNAVAILABLE`).

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tonic::server::{Grpc, UnaryService};
use tonic_prost::ProstCodec;

/// The token the services accept.
pub const GOOD_TOKEN: &str = "Bearer good";

/// The token the services never answer.
pub const SLOW_TOKEN: &str = "Bearer slow";

/// The token the services answer with an error.
pub const BROKEN_TOKEN: &str = "Bearer broken";

/// One question a service was asked.
#[derive(Clone, Debug, Default)]
pub struct Seen {
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Lower-case names; repeated values joined with `,`.
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
    /// gRPC: the client address the proxy reported (`source.address`).
    pub source: Option<String>,
    /// gRPC: the `scheme`, `host` and `protocol` the proxy reported.
    pub scheme: String,
    pub host: String,
    pub protocol: String,
}

/// What a service was asked, in order.
#[derive(Clone, Debug, Default)]
pub struct Log(Arc<Mutex<Vec<Seen>>>);

impl Log {
    pub fn all(&self) -> Vec<Seen> {
        self.0.lock().expect("log").clone()
    }

    fn push(&self, seen: Seen) {
        self.0.lock().expect("log").push(seen);
    }
}

/// [`spawn_http`] or [`spawn_grpc`].
pub type Spawn = fn() -> std::pin::Pin<
    Box<dyn std::future::Future<Output = std::io::Result<(SocketAddr, Log)>> + Send>,
>;

/// The HTTP service: `200` with `x-auth-user: alice` (and a `content-type` and
/// `x-not-for-backend` the filter must not copy unless allowed) for the good token, else
/// `401`.
pub async fn spawn_http() -> std::io::Result<(SocketAddr, Log)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let log = Log::default();
    let kept = log.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let log = log.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request: http::Request<Incoming>| {
                    let log = log.clone();
                    async move { Ok::<_, Infallible>(answer_http(request, &log).await) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok((addr, kept))
}

async fn answer_http(request: http::Request<Incoming>, log: &Log) -> http::Response<Full<Bytes>> {
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let mut headers = BTreeMap::new();
    for (name, value) in &parts.headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        headers
            .entry(name.as_str().to_owned())
            .and_modify(|v: &mut String| {
                v.push(',');
                v.push_str(&value);
            })
            .or_insert(value);
    }
    let token = headers.get("authorization").cloned().unwrap_or_default();
    let allowed = token == GOOD_TOKEN;
    log.push(Seen {
        method: parts.method.to_string(),
        path: parts
            .uri
            .path_and_query()
            .map(ToString::to_string)
            .unwrap_or_default(),
        headers,
        body: body.to_vec(),
        ..Seen::default()
    });
    if token == SLOW_TOKEN {
        std::future::pending::<()>().await;
    }
    let builder = http::Response::builder();
    if token == BROKEN_TOKEN {
        builder
            .status(500)
            .body(Full::new(Bytes::from_static(b"the service is broken\n")))
    } else if allowed {
        builder
            .status(200)
            .header("x-auth-user", "alice")
            .header("x-not-for-backend", "1")
            .header("content-type", "text/plain")
            .body(Full::new(Bytes::from_static(b"ok")))
    } else {
        builder
            .status(401)
            .header("www-authenticate", "Bearer realm=\"test\"")
            .header("content-type", "text/plain")
            .body(Full::new(Bytes::from_static(
                b"denied by the HTTP service\n",
            )))
    }
    .expect("a valid response")
}

/// The gRPC service (h2c with prior knowledge).
pub async fn spawn_grpc() -> std::io::Result<(SocketAddr, Log)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let log = Log::default();
    let kept = log.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let log = log.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request: http::Request<Incoming>| {
                    let log = log.clone();
                    async move {
                        let mut grpc =
                            Grpc::new(ProstCodec::<CheckResponse, CheckRequest>::default());
                        Ok::<_, Infallible>(grpc.unary(Check(log), request).await)
                    }
                });
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok((addr, kept))
}

struct Check(Log);

impl UnaryService<CheckRequest> for Check {
    type Response = CheckResponse;
    type Future = std::pin::Pin<
        Box<
            dyn std::future::Future<Output = Result<tonic::Response<CheckResponse>, tonic::Status>>
                + Send,
        >,
    >;

    fn call(&mut self, request: tonic::Request<CheckRequest>) -> Self::Future {
        let attributes = request.into_inner().attributes.unwrap_or_default();
        let http = attributes.request.and_then(|r| r.http).unwrap_or_default();
        let source = attributes
            .source
            .and_then(|p| p.address)
            .and_then(|a| a.socket_address)
            .map(|s| format!("{}:{}", s.address, s.port_value));
        let token = http
            .headers
            .get("authorization")
            .cloned()
            .unwrap_or_default();
        let allowed = token == GOOD_TOKEN;
        self.0.push(Seen {
            method: http.method,
            path: http.path,
            headers: http.headers.into_iter().collect(),
            body: http.raw_body,
            source,
            scheme: http.scheme,
            host: http.host,
            protocol: http.protocol,
        });
        if token == SLOW_TOKEN {
            return Box::pin(std::future::pending());
        }
        if token == BROKEN_TOKEN {
            return Box::pin(std::future::ready(Err(tonic::Status::unavailable(
                "the service is broken",
            ))));
        }
        let header = |key: &str, value: &str| HeaderValueOption {
            header: Some(HeaderValue {
                key: key.to_owned(),
                value: value.to_owned(),
            }),
        };
        let response = if allowed {
            CheckResponse {
                status: Some(Status {
                    code: 0,
                    message: String::new(),
                }),
                http_response: Some(HttpResponse::OkResponse(OkHttpResponse {
                    headers: vec![header("x-auth-user", "alice")],
                    headers_to_remove: vec!["authorization".to_owned()],
                })),
            }
        } else {
            CheckResponse {
                // PERMISSION_DENIED
                status: Some(Status {
                    code: 7,
                    message: "no".to_owned(),
                }),
                http_response: Some(HttpResponse::DeniedResponse(DeniedHttpResponse {
                    status: Some(HttpStatus { code: 401 }),
                    headers: vec![header("www-authenticate", "Bearer realm=\"test\"")],
                    body: "denied by the gRPC service\n".to_owned(),
                })),
            }
        };
        Box::pin(std::future::ready(Ok(tonic::Response::new(response))))
    }
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct CheckRequest {
    #[prost(message, optional, tag = "1")]
    pub attributes: Option<AttributeContext>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct AttributeContext {
    #[prost(message, optional, tag = "1")]
    pub source: Option<Peer>,
    #[prost(message, optional, tag = "4")]
    pub request: Option<Request>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Peer {
    #[prost(message, optional, tag = "1")]
    pub address: Option<Address>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Address {
    #[prost(message, optional, tag = "1")]
    pub socket_address: Option<SocketAddress>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SocketAddress {
    #[prost(string, tag = "2")]
    pub address: String,
    #[prost(uint32, tag = "3")]
    pub port_value: u32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Request {
    #[prost(message, optional, tag = "2")]
    pub http: Option<HttpRequest>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct HttpRequest {
    #[prost(string, tag = "2")]
    pub method: String,
    #[prost(map = "string, string", tag = "3")]
    pub headers: HashMap<String, String>,
    #[prost(string, tag = "4")]
    pub path: String,
    #[prost(string, tag = "5")]
    pub host: String,
    #[prost(string, tag = "6")]
    pub scheme: String,
    #[prost(string, tag = "10")]
    pub protocol: String,
    #[prost(bytes = "vec", tag = "12")]
    pub raw_body: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct CheckResponse {
    #[prost(message, optional, tag = "1")]
    pub status: Option<Status>,
    #[prost(oneof = "HttpResponse", tags = "2, 3")]
    pub http_response: Option<HttpResponse>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum HttpResponse {
    #[prost(message, tag = "2")]
    DeniedResponse(DeniedHttpResponse),
    #[prost(message, tag = "3")]
    OkResponse(OkHttpResponse),
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Status {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct DeniedHttpResponse {
    #[prost(message, optional, tag = "1")]
    pub status: Option<HttpStatus>,
    #[prost(message, repeated, tag = "2")]
    pub headers: Vec<HeaderValueOption>,
    #[prost(string, tag = "3")]
    pub body: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct OkHttpResponse {
    #[prost(message, repeated, tag = "2")]
    pub headers: Vec<HeaderValueOption>,
    #[prost(string, repeated, tag = "5")]
    pub headers_to_remove: Vec<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct HttpStatus {
    #[prost(int32, tag = "1")]
    pub code: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct HeaderValueOption {
    #[prost(message, optional, tag = "1")]
    pub header: Option<HeaderValue>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct HeaderValue {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(string, tag = "2")]
    pub value: String,
}
