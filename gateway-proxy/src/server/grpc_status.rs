//! Proxy-generated failures on gRPC requests, answered as gRPC statuses.
//!
//! A gRPC client reads the outcome of a call from `grpc-status`, not from the HTTP status, so
//! for a request whose `content-type` is `application/grpc` (or `application/grpc+proto`,
//! `application/grpc-web`, ...) every [`ProxyError`] becomes a *Trailers-Only* response
//! (gRPC over HTTP/2: "HTTP-Status Content-Type Trailers"): HTTP 200, `content-type:
//! application/grpc`, `grpc-status` and a percent-encoded `grpc-message`, and no body.
//!
//! The mapping, in one place ([`ProxyError::grpc_code`]):
//!
//! | proxy error | HTTP answer | gRPC status |
//! |---|---|---|
//! | no route matched | 404 | `UNIMPLEMENTED` (12) |
//! | misdirected (HTTPS, Host of another listener) | 421, kept as HTTP | (`UNKNOWN` at the client) |
//! | invalid backend, no backend | 500 | `UNAVAILABLE` (14) |
//! | invalid redirect | 500 | `UNKNOWN` (2) |
//! | no ready endpoint | 503 | `UNAVAILABLE` (14) |
//! | connect failure, upstream reset | 502 | `UNAVAILABLE` (14) |
//! | request or backendRequest timeout | 504 | `DEADLINE_EXCEEDED` (4) |
//!
//! Where it comes from: gRPC's "HTTP to gRPC Status Code Mapping" (which Envoy's
//! `Grpc::Utility::httpToGrpcStatus` implements) maps 404 to `UNIMPLEMENTED`, 502, 503 and
//! 504 to `UNAVAILABLE`, and every other code, 500 included, to `UNKNOWN`. Two rules take
//! precedence over that table:
//! * GRPCRoute `backendRefs`: "When a GRPCBackendRef is invalid, `UNAVAILABLE` statuses MUST
//!   be returned for requests that would have otherwise been routed to an invalid backend",
//!   and a rule with no usable backend likewise; so the 500 of an invalid backend share is
//!   `UNAVAILABLE`, not `UNKNOWN`.
//! * A route timeout is a deadline that ran out: `DEADLINE_EXCEEDED`, as Envoy's router
//!   answers gRPC timeouts (it stopped mapping them through 504 to `UNAVAILABLE`, which made
//!   clients retry calls whose deadline had already passed) and as linkerd2-proxy does.

use http::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use http::{Response, StatusCode};

use super::errors::ProxyError;
use crate::upstream::{self, ProxyBody};

/// `grpc-status`.
pub const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
/// `grpc-message`.
pub const GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");

/// The gRPC status codes the proxy itself answers with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrpcCode {
    Unknown = 2,
    DeadlineExceeded = 4,
    PermissionDenied = 7,
    ResourceExhausted = 8,
    Unimplemented = 12,
    Internal = 13,
    Unavailable = 14,
    Unauthenticated = 16,
}

impl GrpcCode {
    /// The decimal value sent in `grpc-status`.
    pub fn value(self) -> u8 {
        self as u8
    }
}

/// Whether a request is a gRPC call: its `content-type` is `application/grpc` or starts with
/// `application/grpc+` / `application/grpc-` (gRPC over HTTP/2, gRPC-Web).
pub fn is_grpc_request(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            let ct = ct.trim_start();
            ct.get(..16)
                .is_some_and(|p| p.eq_ignore_ascii_case("application/grpc"))
                && matches!(ct.as_bytes().get(16), None | Some(b'+' | b'-' | b';'))
        })
}

impl ProxyError {
    /// The gRPC status a gRPC client gets for this failure (see the module table).
    pub fn grpc_code(&self) -> GrpcCode {
        match self {
            Self::NoRoute => GrpcCode::Unimplemented,
            // Answered as HTTP 421 even to gRPC calls (see the pipeline); a gRPC client maps
            // that status to `UNKNOWN`.
            Self::Misdirected => GrpcCode::Unknown,
            Self::InvalidBackend | Self::NoBackend => GrpcCode::Unavailable,
            Self::InvalidRedirect => GrpcCode::Unknown,
            Self::NoHealthyUpstream
            | Self::RetryBudgetExhausted
            | Self::CircuitBreaker(_)
            | Self::UpstreamConnect(_)
            | Self::UpstreamReset(_)
            | Self::UnexpectedUpgrade => GrpcCode::Unavailable,
            Self::RequestTimeout | Self::BackendTimeout => GrpcCode::DeadlineExceeded,
            Self::ClientBody(super::errors::ClientBodyError::Timeout) => GrpcCode::DeadlineExceeded,
            // Answered as HTTP (see the pipeline): the request was not a well-formed call.
            Self::Refused(_)
            | Self::ClientBody(_)
            | Self::BodyTooLarge(_)
            | Self::InvalidJsonBody => GrpcCode::Unknown,
            Self::Denied(denial) => match denial.status.as_u16() {
                401 => GrpcCode::Unauthenticated,
                403 => GrpcCode::PermissionDenied,
                _ => GrpcCode::Internal,
            },
            // gRPC's HTTP mapping: 429 is UNAVAILABLE; a rate limit is RESOURCE_EXHAUSTED.
            Self::RateLimited(_) => GrpcCode::ResourceExhausted,
        }
    }

    /// The Trailers-Only response for a gRPC request: HTTP 200 with `grpc-status` and
    /// `grpc-message` in the only header block. The pipeline adds the request ID.
    pub fn to_grpc_response(&self) -> Response<ProxyBody> {
        let mut response = Response::new(upstream::empty());
        *response.status_mut() = StatusCode::OK;
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        headers.insert(
            GRPC_STATUS,
            HeaderValue::from(u16::from(self.grpc_code().value())),
        );
        if let Ok(message) = HeaderValue::from_str(&percent_encode(&self.to_string())) {
            headers.insert(GRPC_MESSAGE, message);
        }
        self.add_circuit_breaker_header(&mut response);
        response
    }
}

/// `grpc-message` encoding: bytes outside printable ASCII, and `%` itself, as `%XX`.
fn percent_encode(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for byte in message.bytes() {
        if (0x20..=0x7e).contains(&byte) && byte != b'%' {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(content_type: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_TYPE, HeaderValue::from_str(content_type).unwrap());
        h
    }

    #[test]
    fn recognises_grpc_content_types() {
        for yes in [
            "application/grpc",
            "application/grpc+proto",
            "application/grpc-web",
            "Application/GRPC",
            "application/grpc; charset=utf-8",
        ] {
            assert!(is_grpc_request(&headers(yes)), "{yes}");
        }
        for no in ["application/json", "application/grpcx", "text/plain", ""] {
            assert!(!is_grpc_request(&headers(no)), "{no}");
        }
        assert!(!is_grpc_request(&HeaderMap::new()));
    }

    #[test]
    fn codes() {
        assert_eq!(ProxyError::NoRoute.grpc_code().value(), 12);
        assert_eq!(ProxyError::InvalidBackend.grpc_code().value(), 14);
        assert_eq!(ProxyError::NoBackend.grpc_code().value(), 14);
        assert_eq!(ProxyError::InvalidRedirect.grpc_code().value(), 2);
        assert_eq!(ProxyError::NoHealthyUpstream.grpc_code().value(), 14);
        assert_eq!(ProxyError::RequestTimeout.grpc_code().value(), 4);
        assert_eq!(ProxyError::BackendTimeout.grpc_code().value(), 4);
    }

    #[test]
    fn trailers_only_response() {
        let response = ProxyError::NoRoute.to_grpc_response();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()[CONTENT_TYPE], "application/grpc");
        assert_eq!(response.headers()[GRPC_STATUS], "12");
        assert_eq!(response.headers()[GRPC_MESSAGE], "no route matched");
        assert_eq!(percent_encode("50% ünïcode"), "50%25 %C3%BCn%C3%AFcode");
    }
}
