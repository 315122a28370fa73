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
//!
//! A SecurityPolicy's `extAuth` is the same check ([`ExternalAuth::with_server_errors_failing`]:
//! an HTTP `5xx` is an error rather than a denial), run at the policy's stage; a [`Failure`]'s
//! [`Cause`] tells its `failOpen` what may pass (never [`Cause::Unresolved`]).

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
    /// An HTTP service's `5xx` is an error, not a denial (a SecurityPolicy's `extAuth`, as
    /// Envoy treats it); the filter passes every non-`200` answer to the client (GEP-1494).
    server_errors_fail: bool,
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

/// The check could not be made: the request is refused (fail closed), unless a
/// SecurityPolicy's `failOpen` lets it through.
#[derive(Debug)]
pub struct Failure {
    pub status: StatusCode,
    pub cause: Cause,
    /// Names no credential: the service's address, status or timeout at most.
    pub message: String,
}

/// Why a check could not be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    /// The backendRef does not resolve: a configuration problem, never passed.
    Unresolved,
    /// No endpoint, or the connection or request failed.
    Unreachable,
    /// No answer within the timeout.
    Timeout,
    /// An answer that is neither an allow nor a denial: a gRPC error status, an HTTP `5xx`
    /// (for a SecurityPolicy), an answer that cannot be read.
    Error,
}

impl Cause {
    /// The metric's `reason` label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Unresolved => "unresolved",
            Self::Unreachable => "unreachable",
            Self::Timeout => "timeout",
            Self::Error => "error",
        }
    }
}

impl Failure {
    fn closed(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::FORBIDDEN,
            cause: Cause::Error,
            message: message.into(),
        }
    }

    /// The message of the refusal: why the check failed closed.
    pub fn refusal(&self) -> String {
        match self.cause {
            Cause::Unresolved => self.message.clone(),
            _ => format!("external authorization failed closed: {}", self.message),
        }
    }

    fn unreachable(message: impl Into<String>) -> Self {
        Self {
            cause: Cause::Unreachable,
            ..Self::closed(message)
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
            server_errors_fail: false,
        })
    }

    /// The check of a SecurityPolicy's `extAuth`: an HTTP service's `5xx` is an error (which
    /// `failOpen` may pass), not a denial.
    #[must_use]
    pub fn with_server_errors_failing(mut self) -> Self {
        self.server_errors_fail = true;
        self
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
                cause: Cause::Unresolved,
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
            Err(_) => Err(Failure {
                cause: Cause::Timeout,
                ..Failure::closed(format!(
                    "no answer from the authorization service within {:?}",
                    self.timeout
                ))
            }),
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
