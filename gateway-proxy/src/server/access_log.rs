//! One structured access-log line per request, written by [`crate::telemetry::access_log`].

use std::time::Instant;

use http::header::{CONTENT_LENGTH, HeaderValue};
use http::uri::Authority;
use http::{Method, Response, Uri};

use crate::telemetry::access_log;

/// What the access log needs, filled in as the request moves through the stack. When the
/// access log is off, nothing is copied into it.
#[derive(Debug)]
pub struct Record<'s> {
    enabled: bool,
    pub method: Method,
    /// The request's URI as the client sent it (a clone shares its bytes).
    pub uri: Uri,
    pub host: String,
    /// `namespace/name` of the Gateway whose listener took the request.
    pub gateway: Option<&'s str>,
    /// `namespace/name` of the matched route.
    pub route: Option<&'s str>,
    /// Kind of the matched route (`HTTPRoute`, `GRPCRoute`).
    pub route_kind: Option<&'s str>,
    pub upstream: Option<Authority>,
    /// Why the proxy answered itself, when it did.
    pub error: Option<String>,
    /// The gRPC status of a gRPC request the proxy answered itself.
    pub grpc_status: Option<u8>,
    /// Requests sent upstream for this one (1 without retries; 0 when none was sent).
    pub attempts: u32,
    /// Why a retry the rule asked for was not made, when one was not (for example a request
    /// body over the retry buffer).
    pub retry: Option<&'static str>,
    /// The trace ID, when the request is traced.
    pub trace_id: Option<String>,
    /// `RateLimit-Policy` and `RateLimit` for the response, set by the route's RateLimitPolicy
    /// (carried here, with the rest of what the request learnt on its way, to the step that
    /// has the response).
    pub rate_limit_headers: Option<crate::rate_limit::RateHeaders<'s>>,
    /// When the request arrived, for the steps that need the time (local rate limits) without
    /// reading the clock again.
    pub arrived: Instant,
    /// `Set-Cookie` for the response: a session an `oidc` SecurityPolicy refreshed (never
    /// logged).
    pub set_cookie: Option<HeaderValue>,
}

impl<'s> Record<'s> {
    /// The record of a request that arrived at `arrived`; with the access log off, its method
    /// and URI are not copied.
    pub fn new<B>(enabled: bool, request: &http::Request<B>, arrived: Instant) -> Self {
        let enabled = enabled && access_log::enabled();
        Self {
            enabled,
            method: if enabled {
                request.method().clone()
            } else {
                Method::default()
            },
            uri: if enabled {
                request.uri().clone()
            } else {
                Uri::default()
            },
            host: String::new(),
            gateway: None,
            route: None,
            route_kind: None,
            upstream: None,
            error: None,
            grpc_status: None,
            attempts: 0,
            retry: None,
            trace_id: None,
            rate_limit_headers: None,
            arrived,
            set_cookie: None,
        }
    }

    pub fn set_host(&mut self, host: &str) {
        if self.enabled {
            self.host.clear();
            self.host.push_str(host);
        }
    }

    pub fn set_trace_id(&mut self, trace_id: impl FnOnce() -> String) {
        if self.enabled {
            self.trace_id = Some(trace_id());
        }
    }

    pub fn set_error(&mut self, error: impl FnOnce() -> String) {
        if self.enabled {
            self.error = Some(error());
        }
    }

    /// Writes the event, when the access log is on.
    pub fn emit<B>(&self, response: &Response<B>, request_id: &HeaderValue, duration_ms: f64) {
        if !self.enabled {
            return;
        }
        let bytes = response
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        access_log::write(|line| self.fields(line, response, request_id, duration_ms, bytes));
    }

    /// The line's fields, in the order `tracing` wrote them.
    fn fields<B>(
        &self,
        line: &mut access_log::Line<'_>,
        response: &Response<B>,
        request_id: &HeaderValue,
        duration_ms: f64,
        bytes: Option<u64>,
    ) {
        {
            line.bare("method", self.method.as_str());
            line.bare("path", self.uri.path());
            line.bare("host", &self.host);
            line.number("status", u64::from(response.status().as_u16()));
            line.float("duration_ms", duration_ms);
            line.quoted("route", self.route.unwrap_or(""));
            line.quoted("route_kind", self.route_kind.unwrap_or(""));
            line.quoted(
                "upstream",
                self.upstream.as_ref().map(Authority::as_str).unwrap_or(""),
            );
            line.quoted("request_id", request_id.to_str().unwrap_or(""));
            if let Some(bytes) = bytes {
                line.number("bytes", bytes);
            }
            if let Some(error) = &self.error {
                line.quoted("error", error);
            }
            if let Some(status) = self.grpc_status {
                line.number("grpc_status", u64::from(status));
            }
            line.number("attempts", u64::from(self.attempts));
            if let Some(retry) = self.retry {
                line.quoted("retry", retry);
            }
            if let Some(trace_id) = &self.trace_id {
                line.quoted("trace_id", trace_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_structured_fields() {
        let request = http::Request::get("/a/b?q=1").body(()).unwrap();
        let mut record = Record::new(true, &request, Instant::now());
        record.set_host("example.com");
        record.route = Some("default/web");
        record.route_kind = Some("GRPCRoute");
        record.grpc_status = Some(14);
        record.upstream = Some("10.0.0.1:8080".parse().unwrap());
        record.attempts = 2;
        record.retry = Some("not retried: request body over the 64 KiB retry buffer");
        let response = Response::builder()
            .status(201)
            .header(CONTENT_LENGTH, "42")
            .body(())
            .unwrap();
        let id = HeaderValue::from_static("id-1");
        let out = access_log::render(true, |line| {
            record.fields(line, &response, &id, 1.5, Some(42));
        });
        let line: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(line["target"], crate::telemetry::logging::ACCESS_LOG_TARGET);
        assert_eq!(line["method"], "GET");
        assert_eq!(line["path"], "/a/b");
        assert_eq!(line["host"], "example.com");
        assert_eq!(line["status"], 201);
        assert_eq!(line["duration_ms"], 1.5);
        assert_eq!(line["route"], "default/web");
        assert_eq!(line["route_kind"], "GRPCRoute");
        assert_eq!(line["grpc_status"], 14);
        assert_eq!(line["upstream"], "10.0.0.1:8080");
        assert_eq!(line["request_id"], "id-1");
        assert_eq!(line["bytes"], 42);
        assert_eq!(line["attempts"], 2);
        assert_eq!(
            line["retry"],
            "not retried: request body over the 64 KiB retry buffer"
        );
        assert!(line.get("trace_id").is_none(), "{line}");
        assert!(line.get("error").is_none(), "{line}");
    }

    #[test]
    fn a_disabled_record_copies_nothing() {
        let request = http::Request::get("/a/b?q=1").body(()).unwrap();
        let record = Record::new(false, &request, Instant::now());
        assert!(!record.enabled);
        assert_eq!(record.uri, Uri::default());
    }
}
