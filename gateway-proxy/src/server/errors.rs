//! Every failure the proxy answers itself, mapped in one place to a status and a short body.
//! A failure never drops the client connection.

use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Response, StatusCode};

use super::request_checks::Refusal;
use crate::upstream::limits::Overflow;
use crate::upstream::{self, ProxyBody, UpstreamError};
use gantry_translate::ir::CIRCUIT_BREAKER_HEADER;

/// The status nginx logs for a client that went away before its request was answered.
pub const CLIENT_CLOSED_REQUEST: StatusCode = match StatusCode::from_u16(499) {
    Ok(status) => status,
    Err(_) => StatusCode::BAD_REQUEST,
};

/// Why the proxy answered instead of an upstream.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// No listener took the host, or no route of it matched.
    #[error("no route matched")]
    NoRoute,
    /// A request on a TLS connection whose Host belongs to another listener than the one the
    /// SNI selected (RFC 9110 §15.5.20; Gateway `listeners[].hostname`).
    #[error(
        "misdirected request: this connection's TLS server name does not cover this host; open a new connection for it"
    )]
    Misdirected,
    /// The chosen backendRef is invalid (or its cluster is missing).
    #[error("invalid backend")]
    InvalidBackend,
    /// The rule has no backend with weight and no redirect.
    #[error("no backend for this route")]
    NoBackend,
    /// A redirect whose Location is not a valid header value.
    #[error("invalid redirect")]
    InvalidRedirect,
    /// The cluster has no ready endpoint.
    #[error("no healthy upstream")]
    NoHealthyUpstream,
    #[error("upstream connect error")]
    UpstreamConnect(#[source] UpstreamError),
    #[error("upstream reset")]
    UpstreamReset(#[source] UpstreamError),
    /// The route's request timeout elapsed before response headers.
    #[error("request timeout")]
    RequestTimeout,
    /// The route's backendRequest timeout elapsed for the upstream attempt.
    #[error("upstream request timeout")]
    BackendTimeout,
    /// A retry the rule asked for was refused by the Service's retry budget (XBackendTrafficPolicy
    /// `retryConstraint`: "After the retry budget has been exceeded, additional retries to the
    /// backend MUST return a 503 response to the client").
    #[error("retry budget exhausted: the backend's retry budget allows no more retries now")]
    RetryBudgetExhausted,
    /// Refused by a BackendConfigPolicy circuit breaker connection limit: 503 at once, with
    /// `x-gantry-circuit-breaker` naming the limit.
    #[error("{0}")]
    CircuitBreaker(Overflow),
    /// The upstream answered `101 Switching Protocols` to a request that did not ask for that
    /// protocol; no tunnel is opened.
    #[error("upstream switched protocols without being asked")]
    UnexpectedUpgrade,
    /// Refused before routing: framing, Host, path or method.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// A request body an HTTPTransform edits is larger than its `maxBytes`, or one an
    /// ExternalAuth filter forwards larger than its `forwardBody.maxSize`.
    #[error("request body larger than the {0} bytes this route reads before forwarding")]
    BodyTooLarge(usize),
    /// A request body an HTTPTransform edits says it is JSON but is not.
    #[error("request body is not valid JSON")]
    InvalidJsonBody,
    /// The client's request body failed while it was forwarded: the client's fault, not the
    /// upstream's.
    #[error("{0}")]
    ClientBody(ClientBodyError),
    /// Refused by the route's SecurityPolicy: 401 (with `WWW-Authenticate` for basic auth),
    /// 403 (client address), or 500 (a policy that cannot be used).
    #[error("{}", .0.message)]
    Denied(crate::security::Denial),
    /// Refused by a RateLimitPolicy rule (429, with `Retry-After` and the `RateLimit`
    /// headers). Boxed: its headers would make every `Result` of the request path larger.
    #[error("rate limit {} of RateLimitPolicy {} exceeded; retry after {} s", .0.rule, .0.policy, .0.retry_after.as_secs_f64().ceil())]
    RateLimited(Box<crate::rate_limit::Limited>),
}

/// How a client's request body failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ClientBodyError {
    /// Invalid chunked framing or similar (400).
    #[error("invalid request body")]
    Invalid,
    /// No part of the body arrived within the body timeout (408).
    #[error("request body timeout: the client stopped sending the body")]
    Timeout,
    /// The client closed the connection before the body was complete. The answer goes
    /// nowhere; its status, 499 as nginx logs it, is for the access log and metrics.
    #[error("client closed the connection before the request body was complete")]
    Aborted,
}

impl ProxyError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::NoRoute => StatusCode::NOT_FOUND,
            Self::Misdirected => StatusCode::MISDIRECTED_REQUEST,
            Self::InvalidBackend | Self::NoBackend | Self::InvalidRedirect => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            Self::NoHealthyUpstream | Self::RetryBudgetExhausted | Self::CircuitBreaker(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            // No connection within the connect timeout: the endpoint is unavailable, as Envoy
            // answers it (BackendConfigPolicy `connectTimeout`, docs/policies.md).
            Self::UpstreamConnect(UpstreamError::ConnectTimeout { .. }) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::UpstreamConnect(_) | Self::UpstreamReset(_) | Self::UnexpectedUpgrade => {
                StatusCode::BAD_GATEWAY
            }
            Self::RequestTimeout | Self::BackendTimeout => StatusCode::GATEWAY_TIMEOUT,
            Self::Refused(refusal) => refusal.status,
            Self::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::InvalidJsonBody => StatusCode::BAD_REQUEST,
            Self::ClientBody(ClientBodyError::Invalid) => StatusCode::BAD_REQUEST,
            Self::ClientBody(ClientBodyError::Timeout) => StatusCode::REQUEST_TIMEOUT,
            Self::ClientBody(ClientBodyError::Aborted) => CLIENT_CLOSED_REQUEST,
            Self::Denied(denial) => denial.status,
            Self::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    /// The response sent to the client: the status and this error's message as plain text.
    /// The pipeline adds the request ID.
    pub fn to_response(&self) -> Response<ProxyBody> {
        let mut response = Response::new(upstream::full(format!("{self}\n")));
        *response.status_mut() = self.status();
        response.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        if let Self::Refused(refusal) = self
            && let Some((name, value)) = refusal.headers()
        {
            response.headers_mut().insert(name, value);
        }
        self.add_circuit_breaker_header(&mut response);
        if let Self::RateLimited(limited) = self {
            for (name, value) in &limited.headers {
                response.headers_mut().insert(name.clone(), value.clone());
            }
        }
        if let Self::Denied(denial) = self
            && let Some(challenge) = &denial.challenge
        {
            response
                .headers_mut()
                .insert(http::header::WWW_AUTHENTICATE, challenge.clone());
        }
        response
    }

    /// `x-gantry-circuit-breaker: <limit>` on a circuit breaker's refusal.
    pub fn add_circuit_breaker_header<B>(&self, response: &mut Response<B>) {
        if let Self::CircuitBreaker(overflow) = self {
            response.headers_mut().insert(
                CIRCUIT_BREAKER_HEADER,
                HeaderValue::from_static(overflow.limit.name()),
            );
        }
    }
}

impl From<UpstreamError> for ProxyError {
    fn from(error: UpstreamError) -> Self {
        match error {
            UpstreamError::Connect { .. } | UpstreamError::ConnectTimeout { .. } => {
                Self::UpstreamConnect(error)
            }
            UpstreamError::Overflow(overflow) => Self::CircuitBreaker(overflow),
            _ => Self::UpstreamReset(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        assert_eq!(ProxyError::NoRoute.status(), 404);
        assert_eq!(ProxyError::Misdirected.status(), 421);
        assert_eq!(ProxyError::InvalidBackend.status(), 500);
        assert_eq!(ProxyError::NoBackend.status(), 500);
        assert_eq!(ProxyError::NoHealthyUpstream.status(), 503);
        assert_eq!(ProxyError::RequestTimeout.status(), 504);
        assert_eq!(ProxyError::BackendTimeout.status(), 504);
        assert_eq!(ProxyError::RetryBudgetExhausted.status(), 503);
        let refused = ProxyError::from(UpstreamError::Overflow(Overflow {
            limit: upstream::limits::Limit::MaxPendingRequests,
        }));
        assert_eq!(refused.status(), 503);
        assert_eq!(
            refused.to_response().headers()[CIRCUIT_BREAKER_HEADER],
            "maxPendingRequests"
        );
        let endpoint = http::uri::Authority::from_static("10.0.0.1:80");
        let timed_out = ProxyError::from(UpstreamError::ConnectTimeout {
            endpoint: endpoint.clone(),
        });
        assert_eq!(timed_out.status(), 503);
        let refused = ProxyError::from(UpstreamError::Connect {
            endpoint,
            source: Box::new(std::io::Error::from(std::io::ErrorKind::ConnectionRefused)),
        });
        assert_eq!(refused.status(), 502);
        let refused = ProxyError::CircuitBreaker(Overflow {
            limit: upstream::limits::Limit::MaxParallelRequests,
        })
        .to_response();
        assert_eq!(refused.status(), 503);
        assert_eq!(
            refused.headers()[CIRCUIT_BREAKER_HEADER],
            "maxParallelRequests"
        );
        let response = ProxyError::NoHealthyUpstream.to_response();
        assert_eq!(response.status(), 503);
        assert_eq!(
            response.headers()[CONTENT_TYPE],
            "text/plain; charset=utf-8"
        );
    }
}
