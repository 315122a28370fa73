//! A gRPC test backend and client (tonic, with hand-written prost messages, so no protoc).
//!
//! The backend serves h2c with prior knowledge and implements two services:
//! `gantry.test.Echo` (methods `Hello` and `Bye`) and `gantry.test.Other` (method `Ping`).
//! Every call is answered with a [`CallReply`] naming the backend that answered, the method
//! path and `:authority` it saw and the request headers (metadata) it received. Any other method is answered
//! `UNIMPLEMENTED` by the backend itself, with `x-answered-by` in its trailers so a test can
//! tell a backend's answer from the proxy's.
//!
//! It also serves the gRPC health checking protocol (`grpc.health.v1.Health/Check`, for the
//! whole server whatever service is asked about): `SERVING`, unless the test flips the
//! [`GrpcHealth`] of a backend started with [`spawn_backend_with_health`].

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};

use http::uri::PathAndQuery;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tonic::server::{Grpc, UnaryService};
use tonic::transport::{Channel, Endpoint};
use tonic_prost::ProstCodec;

/// The services and methods the backend implements, as `/{service}/{method}` paths.
pub const ECHO_HELLO: &str = "/gantry.test.Echo/Hello";
pub const ECHO_BYE: &str = "/gantry.test.Echo/Bye";
pub const OTHER_PING: &str = "/gantry.test.Other/Ping";
const METHODS: [&str; 3] = [ECHO_HELLO, ECHO_BYE, OTHER_PING];

/// The request of every method.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CallRequest {
    #[prost(string, tag = "1")]
    pub name: String,
}

/// The answer of every method.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CallReply {
    /// The backend's name, given when it was started.
    #[prost(string, tag = "1")]
    pub backend: String,
    /// The method path the backend saw.
    #[prost(string, tag = "2")]
    pub path: String,
    /// Request metadata (headers) by lower-case name; repeated values joined with `, `.
    #[prost(btree_map = "string, string", tag = "3")]
    pub headers: BTreeMap<String, String>,
    /// `CallRequest.name`, echoed.
    #[prost(string, tag = "4")]
    pub name: String,
    /// The call's `:authority`, as the backend received it.
    #[prost(string, tag = "5")]
    pub authority: String,
}

/// The health checking protocol's method.
pub const HEALTH_CHECK: &str = "/grpc.health.v1.Health/Check";

/// `grpc.health.v1.HealthCheckRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HealthCheckRequest {
    #[prost(string, tag = "1")]
    pub service: String,
}

/// `grpc.health.v1.HealthCheckResponse`; `status` is a `ServingStatus`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HealthCheckResponse {
    #[prost(int32, tag = "1")]
    pub status: i32,
}

/// `ServingStatus.SERVING`.
pub const SERVING: i32 = 1;
/// `ServingStatus.NOT_SERVING`.
pub const NOT_SERVING: i32 = 2;

/// The status a backend's health service reports; `SERVING` at first.
#[derive(Debug)]
pub struct GrpcHealth(AtomicI32);

impl Default for GrpcHealth {
    fn default() -> Self {
        Self(AtomicI32::new(SERVING))
    }
}

impl GrpcHealth {
    /// Reports `SERVING` or `NOT_SERVING` from now on.
    pub fn set_serving(&self, serving: bool) {
        let status = if serving { SERVING } else { NOT_SERVING };
        self.0.store(status, Ordering::SeqCst);
    }
}

/// Starts a gRPC backend named `backend` on `addr` (port 0 for any); returns its address.
pub async fn spawn_backend(addr: SocketAddr, backend: &str) -> std::io::Result<SocketAddr> {
    Ok(spawn_backend_with_health(addr, backend).await?.0)
}

/// [`spawn_backend`], with the switch of its health service.
pub async fn spawn_backend_with_health(
    addr: SocketAddr,
    backend: &str,
) -> std::io::Result<(SocketAddr, Arc<GrpcHealth>)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let backend = backend.to_owned();
    let health = Arc::new(GrpcHealth::default());
    let switch = health.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let backend = backend.clone();
            let health = health.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request| {
                    let backend = backend.clone();
                    let health = health.clone();
                    async move { Ok::<_, Infallible>(answer(backend, health, request).await) }
                });
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok((local, switch))
}

async fn answer(
    backend: String,
    health: Arc<GrpcHealth>,
    request: http::Request<Incoming>,
) -> http::Response<tonic::body::Body> {
    let path = request.uri().path().to_owned();
    if path == HEALTH_CHECK {
        let mut grpc = Grpc::new(ProstCodec::<HealthCheckResponse, HealthCheckRequest>::default());
        return grpc.unary(Check(health), request).await;
    }
    if !METHODS.contains(&path.as_str()) {
        let mut status = tonic::Status::unimplemented(format!("{backend} has no method {path}"));
        if let Ok(value) = backend.parse() {
            status.metadata_mut().insert("x-answered-by", value);
        }
        return status.into_http();
    }
    let authority = request
        .uri()
        .authority()
        .map(ToString::to_string)
        .unwrap_or_default();
    let mut grpc = Grpc::new(ProstCodec::<CallReply, CallRequest>::default());
    grpc.unary(
        Method {
            backend,
            path,
            authority,
        },
        request,
    )
    .await
}

/// `grpc.health.v1.Health/Check`.
struct Check(Arc<GrpcHealth>);

impl UnaryService<HealthCheckRequest> for Check {
    type Response = HealthCheckResponse;
    type Future = std::future::Ready<Result<tonic::Response<HealthCheckResponse>, tonic::Status>>;

    fn call(&mut self, _: tonic::Request<HealthCheckRequest>) -> Self::Future {
        let status = self.0.0.load(Ordering::SeqCst);
        std::future::ready(Ok(tonic::Response::new(HealthCheckResponse { status })))
    }
}

/// One call: the answer says who answered and what it saw.
struct Method {
    backend: String,
    path: String,
    authority: String,
}

impl UnaryService<CallRequest> for Method {
    type Response = CallReply;
    type Future =
        Pin<Box<dyn Future<Output = Result<tonic::Response<CallReply>, tonic::Status>> + Send>>;

    fn call(&mut self, request: tonic::Request<CallRequest>) -> Self::Future {
        let mut headers: BTreeMap<String, String> = BTreeMap::new();
        for (name, value) in request.metadata().clone().into_headers() {
            let Some(name) = name else { continue };
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            headers
                .entry(name.as_str().to_owned())
                .and_modify(|v| {
                    v.push_str(", ");
                    v.push_str(&value);
                })
                .or_insert(value);
        }
        let reply = CallReply {
            backend: self.backend.clone(),
            path: self.path.clone(),
            headers,
            name: request.into_inner().name,
            authority: self.authority.clone(),
        };
        Box::pin(async move { Ok(tonic::Response::new(reply)) })
    }
}

/// A gRPC client connected to `addr` whose calls carry `authority` as `:authority` (so
/// hostnames need not resolve).
pub async fn connect(addr: SocketAddr, authority: &str) -> anyhow::Result<Client> {
    let origin: http::Uri = format!("http://{authority}").parse()?;
    let channel = Endpoint::from_shared(format!("http://{addr}"))?
        .origin(origin)
        .connect()
        .await?;
    Ok(Client { channel })
}

/// Calls methods by path.
#[derive(Clone, Debug)]
pub struct Client {
    channel: Channel,
}

impl Client {
    /// Calls `path` (`/{service}/{method}`) with `metadata` as request headers; returns the
    /// reply and the response metadata (headers), or the status.
    pub async fn call(
        &self,
        path: &str,
        metadata: &[(&str, &str)],
    ) -> Result<(CallReply, tonic::metadata::MetadataMap), tonic::Status> {
        let mut grpc = tonic::client::Grpc::new(self.channel.clone());
        grpc.ready()
            .await
            .map_err(|e| tonic::Status::unavailable(format!("channel not ready: {e}")))?;
        let mut request = tonic::Request::new(CallRequest {
            name: "gantry".to_owned(),
        });
        for (name, value) in metadata {
            let name: tonic::metadata::MetadataKey<tonic::metadata::Ascii> =
                name.parse().map_err(|_| {
                    tonic::Status::invalid_argument(format!("bad metadata name {name}"))
                })?;
            let value = value.parse().map_err(|_| {
                tonic::Status::invalid_argument(format!("bad metadata value {value}"))
            })?;
            request.metadata_mut().insert(name, value);
        }
        let path = PathAndQuery::try_from(path)
            .map_err(|_| tonic::Status::invalid_argument(format!("bad path {path}")))?;
        let response = grpc
            .unary(
                request,
                path,
                ProstCodec::<CallRequest, CallReply>::default(),
            )
            .await?;
        let (metadata, reply, _) = response.into_parts();
        Ok((reply, metadata))
    }
}
