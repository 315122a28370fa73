//! OpenTelemetry tracing: one SERVER span per request, W3C Trace Context in and out, OTLP
//! export over HTTP or gRPC ([`export`]).
//!
//! Per request ([`Tracer::begin`]): the incoming `traceparent` is read (an invalid one starts
//! a new trace, and its `tracestate` is dropped); the sampling decision is the parent's
//! sampled flag (parent-based, the default) or the trace ID ratio (OpenTelemetry's
//! `TraceIdRatioBased`: the trace ID's low 64 bits against the ratio, so every replica
//! decides the same for one trace); the request goes upstream with a `traceparent` naming
//! the proxy's span as parent. [`Tracer::end`] queues the finished span of a sampled request.
//! Without `--tracing-endpoint` there is no tracer: the request path tests one `Option`.

mod context;
mod export;
pub mod otlp;

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Uri};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use tokio::sync::{mpsc, watch};

pub use context::{TraceParent, format as format_traceparent, hex};

/// `traceparent` (W3C Trace Context).
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
/// `tracestate` (W3C Trace Context).
pub const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// How spans are sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Protocol {
    /// OTLP/HTTP with protobuf bodies (`POST /v1/traces`, port 4318 by convention).
    Http,
    /// OTLP/gRPC over h2c (port 4317 by convention).
    Grpc,
}

/// `--tracing-*`.
#[derive(Clone, Debug)]
pub struct TracingOptions {
    /// `http://host:port[/path]` of the OTLP receiver.
    pub endpoint: Uri,
    pub protocol: Protocol,
    /// Share of new traces sampled, 0.0 to 1.0.
    pub ratio: f64,
    /// Follow the caller's sampled flag when the request carries a valid `traceparent`.
    pub parent_based: bool,
    /// `service.name` of the spans' resource.
    pub service_name: String,
    /// Spans waiting for export; more are dropped and counted.
    pub queue: usize,
    /// Spans per export.
    pub batch: usize,
    /// The longest a span waits for its batch.
    pub interval: Duration,
}

impl TracingOptions {
    pub fn new(endpoint: Uri, protocol: Protocol) -> Self {
        Self {
            endpoint,
            protocol,
            ratio: 1.0,
            parent_based: true,
            service_name: "gantry-proxy".to_owned(),
            queue: 2048,
            batch: 512,
            interval: Duration::from_secs(1),
        }
    }
}

/// Labels of `gantry_tracing_spans_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SpanLabels {
    /// `exported`, `export_failed` (the batch was dropped), `queue_full` (dropped before
    /// export).
    result: &'static str,
}

/// `gantry_tracing_spans_total{result}`.
#[derive(Clone, Debug, Default)]
pub struct TracingMetrics {
    spans: Family<SpanLabels, Counter>,
}

impl TracingMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "tracing_spans",
            "Spans of sampled requests, by result: exported, export_failed (the receiver \
             refused or could not be reached; the batch is dropped), queue_full (dropped before \
             export so that no request waits)",
            metrics.spans.clone(),
        );
        for result in ["exported", "export_failed", "queue_full"] {
            metrics
                .spans
                .get_or_create(&SpanLabels { result })
                .inc_by(0);
        }
        metrics
    }

    fn count(&self, result: &'static str, n: u64) {
        self.spans.get_or_create(&SpanLabels { result }).inc_by(n);
    }

    fn exported(&self, n: u64) {
        self.count("exported", n);
    }

    fn failed(&self, n: u64) {
        self.count("export_failed", n);
    }
}

/// The process's tracer.
#[derive(Debug)]
pub struct Tracer {
    /// Sampled when the trace ID's low 64 bits are below this.
    threshold: u64,
    parent_based: bool,
    queue: mpsc::Sender<otlp::Span>,
    metrics: TracingMetrics,
    stop: watch::Sender<bool>,
    finished: watch::Receiver<bool>,
}

/// A request being traced: what [`Tracer::end`] needs.
#[derive(Debug)]
pub struct Active {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    parent: Option<[u8; 8]>,
    pub sampled: bool,
    trace_state: String,
    start: SystemTime,
}

/// What is known of a request when it ends.
#[derive(Debug)]
pub struct Finished<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub scheme: &'static str,
    pub host: &'a str,
    pub listener_port: u16,
    pub peer: SocketAddr,
    pub status: u16,
    pub gateway: Option<&'a str>,
    pub route: Option<&'a str>,
    pub upstream: Option<&'a str>,
    /// Requests sent upstream (0 when none was).
    pub attempts: u32,
    /// Why the proxy answered itself, when it did.
    pub error: Option<String>,
    pub duration: Duration,
}

impl Tracer {
    /// Starts the exporter task (call within a Tokio runtime).
    pub fn start(options: TracingOptions, metrics: TracingMetrics) -> Self {
        let (queue, spans) = mpsc::channel(options.queue.max(1));
        let (stop, stop_rx) = watch::channel(false);
        let (finished_tx, finished) = watch::channel(false);
        let resource = otlp::Resource {
            attributes: vec![
                otlp::KeyValue::string("service.name", options.service_name.clone()),
                otlp::KeyValue::string("service.version", env!("CARGO_PKG_VERSION")),
                otlp::KeyValue::string("telemetry.sdk.name", "gantry-proxy"),
            ],
        };
        // `ratio * 2^64`, saturating at 1.0 (every trace).
        let ratio = options.ratio.clamp(0.0, 1.0);
        let threshold = if ratio >= 1.0 {
            u64::MAX
        } else {
            (ratio * 18_446_744_073_709_551_616.0) as u64
        };
        let parent_based = options.parent_based;
        tokio::spawn(
            export::Exporter {
                options,
                spans,
                metrics: metrics.clone(),
                resource,
                stop: stop_rx,
                finished: finished_tx,
            }
            .run(),
        );
        Self {
            threshold,
            parent_based,
            queue,
            metrics,
            stop,
            finished,
        }
    }

    /// Reads the request's trace context, decides sampling, and replaces `traceparent` with
    /// the proxy's span as the upstream's parent.
    pub fn begin(&self, headers: &mut HeaderMap) -> Active {
        let parent = headers
            .get(TRACEPARENT)
            .and_then(|v| TraceParent::parse(v.as_bytes()));
        let trace_id = parent.map_or_else(random_trace_id, |p| p.trace_id);
        let span_id = random_span_id();
        let sampled = match parent {
            Some(p) if self.parent_based => p.sampled(),
            _ => self.ratio_samples(&trace_id),
        };
        let trace_state = match parent {
            // Passed on as it came: the proxy adds no entry of its own.
            Some(_) if sampled => headers
                .get(TRACESTATE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned(),
            Some(_) => String::new(),
            // "If the vendor failed to parse traceparent, it MUST NOT attempt to parse
            // tracestate": a new trace starts without it.
            None => {
                headers.remove(TRACESTATE);
                String::new()
            }
        };
        if let Ok(value) = HeaderValue::from_str(&context::format(&trace_id, &span_id, sampled)) {
            headers.insert(TRACEPARENT, value);
        }
        Active {
            trace_id,
            span_id,
            parent: parent.map(|p| p.parent_id),
            sampled,
            trace_state,
            start: SystemTime::now(),
        }
    }

    /// `TraceIdRatioBased`: the low 64 bits of the trace ID, compared with the ratio.
    fn ratio_samples(&self, trace_id: &[u8; 16]) -> bool {
        let mut low = [0u8; 8];
        low.copy_from_slice(&trace_id[8..]);
        self.threshold == u64::MAX || u64::from_be_bytes(low) < self.threshold
    }

    /// Queues the span of a sampled request; never waits (a full queue drops it).
    pub fn end(&self, active: Active, done: &Finished<'_>) {
        if !active.sampled {
            return;
        }
        let span = span(active, done);
        if self.queue.try_send(span).is_err() {
            self.metrics.count("queue_full", 1);
        }
    }

    /// Sends what is queued, waiting at most until `deadline`.
    pub async fn shutdown(&self, deadline: tokio::time::Instant) {
        let _ = self.stop.send(true);
        let mut finished = self.finished.clone();
        let _ = tokio::time::timeout_at(deadline, finished.wait_for(|done| *done)).await;
    }
}

fn span(active: Active, done: &Finished<'_>) -> otlp::Span {
    let start = nanos(active.start);
    let end = start.saturating_add(u64::try_from(done.duration.as_nanos()).unwrap_or(u64::MAX));
    let mut attributes = vec![
        otlp::KeyValue::string("http.request.method", done.method),
        otlp::KeyValue::string("url.path", done.path),
        otlp::KeyValue::string("url.scheme", done.scheme),
        otlp::KeyValue::string("server.address", done.host),
        otlp::KeyValue::int("server.port", i64::from(done.listener_port)),
        otlp::KeyValue::string("client.address", done.peer.ip().to_string()),
        otlp::KeyValue::string("network.peer.address", done.peer.ip().to_string()),
        otlp::KeyValue::int("network.peer.port", i64::from(done.peer.port())),
        otlp::KeyValue::int("http.response.status_code", i64::from(done.status)),
    ];
    if let Some(gateway) = done.gateway {
        attributes.push(otlp::KeyValue::string("gantry.gateway", gateway));
    }
    if let Some(route) = done.route {
        attributes.push(otlp::KeyValue::string("gantry.route", route));
    }
    if let Some(upstream) = done.upstream {
        attributes.push(otlp::KeyValue::string("gantry.upstream.address", upstream));
    }
    if done.attempts > 1 {
        attributes.push(otlp::KeyValue::int(
            "http.request.resend_count",
            i64::from(done.attempts - 1),
        ));
    }
    let mut events = Vec::new();
    if let Some(error) = &done.error {
        events.push(otlp::Event {
            time_unix_nano: end,
            name: "gantry.proxy_answer".to_owned(),
            attributes: vec![otlp::KeyValue::string("message", error.clone())],
        });
    }
    // Server spans: 5xx are errors, 4xx are the client's (OpenTelemetry HTTP semantic
    // conventions), so they leave the status unset.
    let status = (done.status >= 500).then(|| {
        attributes.push(otlp::KeyValue::string(
            "error.type",
            done.status.to_string(),
        ));
        otlp::Status {
            message: String::new(),
            code: otlp::STATUS_ERROR,
        }
    });
    otlp::Span {
        trace_id: active.trace_id.to_vec(),
        span_id: active.span_id.to_vec(),
        trace_state: active.trace_state,
        parent_span_id: active.parent.map(|p| p.to_vec()).unwrap_or_default(),
        name: match done.route {
            Some(route) => format!("{} {route}", done.method),
            None => done.method.to_owned(),
        },
        kind: otlp::KIND_SERVER,
        start_time_unix_nano: start,
        end_time_unix_nano: end,
        attributes,
        events,
        status,
    }
}

fn nanos(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn random_trace_id() -> [u8; 16] {
    loop {
        let id = fastrand::u128(..).to_be_bytes();
        if id != [0; 16] {
            return id;
        }
    }
}

fn random_span_id() -> [u8; 8] {
    loop {
        let id = fastrand::u64(..).to_be_bytes();
        if id != [0; 8] {
            return id;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracer(ratio: f64, parent_based: bool) -> Tracer {
        let mut options =
            TracingOptions::new(Uri::from_static("http://127.0.0.1:9"), Protocol::Http);
        options.ratio = ratio;
        options.parent_based = parent_based;
        Tracer::start(options, TracingMetrics::default())
    }

    #[tokio::test]
    async fn a_valid_parent_is_continued_and_its_flag_followed() {
        let tracer = tracer(0.0, true);
        let mut headers = HeaderMap::new();
        headers.insert(
            TRACEPARENT,
            HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        );
        headers.insert(TRACESTATE, HeaderValue::from_static("vendor=1"));
        let active = tracer.begin(&mut headers);
        assert!(active.sampled, "parent-based: the parent sampled it");
        assert_eq!(hex(&active.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
        let sent = TraceParent::parse(headers[TRACEPARENT].as_bytes()).expect("valid");
        assert_eq!(sent.trace_id, active.trace_id);
        assert_eq!(
            sent.parent_id, active.span_id,
            "the proxy's span is the parent upstream"
        );
        assert_eq!(headers[TRACESTATE], "vendor=1");
    }

    #[tokio::test]
    async fn an_invalid_parent_starts_a_new_trace_without_its_state() {
        let tracer = tracer(1.0, true);
        let mut headers = HeaderMap::new();
        headers.insert(TRACEPARENT, HeaderValue::from_static("garbage"));
        headers.insert(TRACESTATE, HeaderValue::from_static("vendor=1"));
        let active = tracer.begin(&mut headers);
        assert!(active.sampled && active.parent.is_none());
        assert!(!headers.contains_key(TRACESTATE));
    }

    #[tokio::test]
    async fn the_ratio_samples_its_share_of_trace_ids() {
        let tracer = tracer(0.25, false);
        let sampled = (0..20_000)
            .filter(|_| tracer.begin(&mut HeaderMap::new()).sampled)
            .count();
        // Binomial(20000, 0.25): sd = 61; 5 sd either way.
        assert!((4_695..=5_305).contains(&sampled), "{sampled}");
        assert!(
            !self::tracer(0.0, false)
                .begin(&mut HeaderMap::new())
                .sampled
        );
    }
}
