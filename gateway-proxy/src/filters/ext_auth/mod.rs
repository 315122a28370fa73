//! The ExternalAuth filter (GEP-1494): before the request goes on, an authorization service
//! decides, over HTTP (a `200` allows; any other answer goes back to the client as it is) or
//! over gRPC (Envoy's `ext_authz` v3 `Check`). An allowed request carries the headers the
//! service adds; "if there is any problem communicating with the external service, this
//! filter MUST fail closed": a service that cannot be reached, times out or answers
//! nonsense refuses the request (403), and a filter whose backendRef did not resolve refuses
//! it with 500.
//!
//! The pipeline runs a rule's ExternalAuth filters first, after the SecurityPolicy and before
//! the rule's other filters, with the request as the client sent it (and the body, up to
//! `forwardBody.maxSize`, when asked); then a chosen backend's.

mod grpc;
mod http1;
pub mod proto;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderName};
use http::request::Parts;
use http::{HeaderMap, Response, StatusCode};

use crate::upstream::{Cluster, ProxyBody, Upstreams};
use gantry_translate::ir::{ExternalAuthIr, ExternalAuthProtocol};

/// The largest answer body of a denying HTTP service passed to the client.
const DENIAL_BODY_LIMIT: usize = 64 * 1024;

/// One ExternalAuth filter, compiled.
#[derive(Debug)]
pub struct ExternalAuth {
    protocol: ExternalAuthProtocol,
    cluster: Option<Arc<str>>,
    path_prefix: String,
    request_headers: Vec<HeaderName>,
    response_headers: Vec<HeaderName>,
    /// Bytes of the body sent to the service; 0 for none.
    pub forward_body: usize,
    timeout: Duration,
}

/// What the check needs besides the request.
pub struct Call<'a> {
    pub upstreams: &'a Upstreams,
    /// `namespace/name` of the Gateway the request came through (its backend client
    /// certificate, for a TLS service).
    pub gateway: &'a str,
    pub client: SocketAddr,
    /// `http` or `https`, as the client connected.
    pub scheme: &'static str,
    /// The request's `x-request-id`.
    pub request_id: &'a str,
}

/// The service's decision.
#[derive(Debug)]
pub enum Verdict {
    /// Go on; the request's headers carry the service's edits.
    Allow,
    /// Answer the client with the service's own denial.
    Deny(Response<ProxyBody>),
}

/// The check could not be made: the request is refused (fail closed).
#[derive(Debug)]
pub struct Failure {
    pub status: StatusCode,
    pub message: String,
}

impl Failure {
    fn closed(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::FORBIDDEN,
            message: format!("external authorization failed closed: {}", message.into()),
        }
    }
}

impl ExternalAuth {
    pub fn compile(ir: &ExternalAuthIr) -> Result<Self, super::FilterError> {
        let names = |list: &[String]| -> Result<Vec<HeaderName>, super::FilterError> {
            list.iter()
                .map(|n| {
                    HeaderName::from_bytes(n.as_bytes())
                        .map_err(|_| super::FilterError::HeaderName(n.clone()))
                })
                .collect()
        };
        Ok(Self {
            protocol: ir.protocol,
            cluster: ir.cluster.as_deref().map(Arc::from),
            path_prefix: ir.path_prefix.clone(),
            request_headers: names(&ir.allowed_request_headers)?,
            response_headers: names(&ir.allowed_response_headers)?,
            forward_body: ir.forward_body_max_bytes,
            timeout: Duration::from_millis(ir.timeout_ms),
        })
    }

    /// The cluster of the authorization service, when its backendRef resolved.
    pub fn cluster(&self) -> Option<&str> {
        self.cluster.as_deref()
    }

    /// Asks the service about `request` (with `body`, already cut to `forward_body`).
    /// `cluster` is the snapshot's cluster of [`ExternalAuth::cluster`].
    pub async fn check(
        &self,
        cluster: Option<&Arc<Cluster>>,
        call: &Call<'_>,
        request: &mut Parts,
        body: Option<&Bytes>,
    ) -> Result<Verdict, Failure> {
        let Some(cluster) = cluster else {
            return Err(Failure {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                message: "the ExternalAuth filter's backendRef does not resolve (see the \
                          route's ResolvedRefs condition)"
                    .to_owned(),
            });
        };
        let exchange = async {
            match self.protocol {
                ExternalAuthProtocol::Http => {
                    http1::check(self, cluster, call, request, body).await
                }
                ExternalAuthProtocol::Grpc => grpc::check(self, cluster, call, request, body).await,
            }
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(Failure::closed(format!(
                "no answer from the authorization service within {:?}",
                self.timeout
            ))),
        }
    }
}

/// Headers never copied from a service's answer onto the request, nor passed back from a
/// denial as they are: the connection's and the message framing's own.
fn is_framing(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "content-length"
    )
}

/// The headers of a denial the client receives: the service's, without framing ones.
fn denial_headers(from: &HeaderMap, to: &mut HeaderMap) {
    for (name, value) in from {
        if !is_framing(name) {
            to.append(name.clone(), value.clone());
        }
    }
}

/// A denial response with `body`.
fn denial(status: StatusCode, headers: HeaderMap, body: Bytes) -> Response<ProxyBody> {
    let mut response = Response::new(crate::upstream::full(body));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response.headers_mut().remove(header::CONTENT_LENGTH);
    response
}
