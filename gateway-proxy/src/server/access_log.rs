//! One structured access-log event per request.

use http::header::{CONTENT_LENGTH, HeaderValue};
use http::uri::Authority;
use http::{Method, Response};

use crate::telemetry::logging::ACCESS_LOG_TARGET;

/// What the access log and metrics need, filled in as the request moves through the stack.
#[derive(Debug, Default)]
pub struct Record<'s> {
    pub method: Method,
    pub path: String,
    pub host: String,
    /// `namespace/name` of the matched route.
    pub route: Option<&'s str>,
    pub upstream: Option<Authority>,
    /// Why the proxy answered itself, when it did.
    pub error: Option<String>,
}

impl Record<'_> {
    pub fn emit<B>(&self, response: &Response<B>, request_id: &HeaderValue, duration_ms: f64) {
        let bytes = response
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        tracing::info!(
            target: ACCESS_LOG_TARGET,
            method = %self.method,
            path = %self.path,
            host = %self.host,
            status = response.status().as_u16(),
            duration_ms,
            route = self.route.unwrap_or(""),
            upstream = self.upstream.as_ref().map(Authority::as_str).unwrap_or(""),
            request_id = request_id.to_str().unwrap_or(""),
            bytes,
            error = self.error.as_deref(),
        );
    }
}
