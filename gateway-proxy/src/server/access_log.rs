//! One structured access-log event per request.

use http::header::{CONTENT_LENGTH, HeaderValue};
use http::uri::Authority;
use http::{Method, Response};

use crate::telemetry::logging::ACCESS_LOG_TARGET;

/// What the access log needs, filled in as the request moves through the stack. When the
/// access log is off, nothing is copied into it.
#[derive(Debug, Default)]
pub struct Record<'s> {
    enabled: bool,
    pub method: Method,
    pub path: String,
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
    pub rate_limit_headers: Option<[(http::HeaderName, HeaderValue); 2]>,
    /// `Set-Cookie` for the response: a session an `oidc` SecurityPolicy refreshed (never
    /// logged).
    pub set_cookie: Option<HeaderValue>,
}

impl<'s> Record<'s> {
    pub fn new<B>(enabled: bool, request: &http::Request<B>) -> Self {
        if !enabled {
            return Self::default();
        }
        Self {
            enabled,
            method: request.method().clone(),
            path: request.uri().path().to_owned(),
            ..Self::default()
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
        tracing::info!(
            target: ACCESS_LOG_TARGET,
            method = %self.method,
            path = %self.path,
            host = %self.host,
            status = response.status().as_u16(),
            duration_ms,
            route = self.route.unwrap_or(""),
            route_kind = self.route_kind.unwrap_or(""),
            upstream = self.upstream.as_ref().map(Authority::as_str).unwrap_or(""),
            request_id = request_id.to_str().unwrap_or(""),
            bytes,
            error = self.error.as_deref(),
            grpc_status = self.grpc_status,
            attempts = self.attempts,
            retry = self.retry,
            trace_id = self.trace_id.as_deref(),
        );
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::Arc;

    use super::*;

    /// Collects what the subscriber writes. A test-only buffer, so a std lock is fine here.
    #[allow(clippy::disallowed_types)]
    #[derive(Clone, Default)]
    struct Buffer(Arc<std::sync::Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn emits_structured_fields() {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_writer(move || writer.clone())
            .finish();
        let request = http::Request::get("/a/b?q=1").body(()).unwrap();
        let mut record = Record::new(true, &request);
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
        tracing::subscriber::with_default(subscriber, || {
            record.emit(&response, &HeaderValue::from_static("id-1"), 1.5);
            Record::new(false, &request).emit(&response, &HeaderValue::from_static("id-2"), 1.0);
        });
        let out = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        let line: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(line["target"], ACCESS_LOG_TARGET);
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
        assert!(!out.contains("id-2"), "a disabled record wrote: {out}");
    }
}
