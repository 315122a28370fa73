//! Prometheus metrics. Label sets stay small: gateway, route and status class, never a path or
//! an endpoint address.
//!
//! The data plane does not look metrics up per request: the routing table holds a
//! [`RouteMetrics`] per route, created when the table is compiled, so recording is a couple of
//! atomic adds.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::acme::AcmeMetrics;
use super::certificates::CertificateMetrics;
use super::circuit_breaker::CircuitBreakerMetrics;
use super::health::HealthMetrics;
use super::histogram::AtomicHistogram;
use super::l4::L4Metrics;
use super::rate_limit::RateLimitMetrics;
use super::upstream_connections::UpstreamConnectionMetrics;

/// Labels of per-request series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// `namespace/name` of the Gateway, empty when no listener matched.
    pub gateway: String,
    /// `namespace/name` of the route, empty when no route matched.
    pub route: String,
    /// Kind of the route (`HTTPRoute`, `GRPCRoute`), empty when no route matched.
    pub route_kind: String,
    /// `1xx` … `5xx`.
    pub status_class: String,
}

/// Labels of per-route upstream series (attempts).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub gateway: String,
    pub route: String,
    pub route_kind: String,
}

/// Labels of the retry counters: the route and why.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RetryLabels {
    pub gateway: String,
    pub route: String,
    pub route_kind: String,
    pub reason: &'static str,
}

/// Why an attempt is tried again: the `reason` label of `gantry_upstream_retries_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetryReason {
    /// The backend answered one of the rule's `codes`.
    Status,
    /// No connection: refused, connect timeout, TLS handshake failure.
    ConnectFailure,
    /// The connection was reset or closed before response headers.
    Reset,
    /// The attempt ran out its `backendRequest` timeout.
    BackendTimeout,
}

impl RetryReason {
    pub const ALL: [Self; 4] = [
        Self::Status,
        Self::ConnectFailure,
        Self::Reset,
        Self::BackendTimeout,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Self::Status => "status_code",
            Self::ConnectFailure => "connect_failure",
            Self::Reset => "reset",
            Self::BackendTimeout => "backend_timeout",
        }
    }
}

/// Why a retry that the policy asked for was not made: the `reason` label of
/// `gantry_upstream_retries_skipped_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SkipReason {
    /// Every attempt the rule allows was made.
    AttemptsExhausted,
    /// The Service's retry budget had no room (the client gets a 503).
    BudgetExhausted,
    /// The request body was larger than the retry buffer, or could not be had back.
    BodyNotReplayable,
    /// The cluster's circuit breaker (`maxParallelRetries`) had no room.
    CircuitBreaker,
}

impl SkipReason {
    pub const ALL: [Self; 4] = [
        Self::AttemptsExhausted,
        Self::BudgetExhausted,
        Self::BodyNotReplayable,
        Self::CircuitBreaker,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Self::AttemptsExhausted => "attempts_exhausted",
            Self::BudgetExhausted => "budget_exhausted",
            Self::BodyNotReplayable => "body_not_replayable",
            Self::CircuitBreaker => "circuit_breaker",
        }
    }
}

/// Labels of the TLS handshake error counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HandshakeErrorLabels {
    /// The listener port (as the Gateway declares it).
    pub port: String,
    /// A short cause, such as `no_listener` or `client_certificate`.
    pub reason: String,
}

const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Labels of `requests_rejected`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectLabels {
    pub reason: &'static str,
}

/// Labels of `gantry_security_denied_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SecurityDeniedLabels {
    /// `namespace/name` of the route.
    pub route: String,
    /// `invalid_policy`, `client_address`, `api_key`, `basic_auth`, `jwt`, `jwt_claims`,
    /// `oidc`, `oidc_provider`, `external_auth`, `external_auth_error`; for
    /// `gantry_security_fail_open_total`, `unreachable`, `timeout`, `error`.
    pub reason: &'static str,
}

/// Labels of [`Metrics::observe_stage`].
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageLabels {
    pub stage: &'static str,
}

/// Every metric the proxy exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// The per-route families, shared by every route's [`RouteMetrics`].
    routes: Arc<RouteFamilies>,
    pub config_version: Gauge,
    pub config_reloads: Counter,
    pub config_reloads_rejected: Counter,
    pub upstream_connect_errors: Counter,
    pub active_connections: Gauge,
    /// Where a graceful stop is ([`DrainPhase`]).
    pub drain_phase: Gauge,
    /// TCP, TLS and UDP forwarding.
    pub l4: L4Metrics,
    /// Rejections by BackendConfigPolicy circuit breaker limits.
    pub circuit_breaker: CircuitBreakerMetrics,
    /// Connections open per cluster with a BackendConfigPolicy.
    pub upstream_connections: UpstreamConnectionMetrics,
    /// Endpoint health (BackendConfigPolicy `healthCheck`).
    pub health: HealthMetrics,
    /// Expiry of the listeners' certificates.
    pub certificates: CertificateMetrics,
    /// ACME orders and the expiry of the certificates they obtained.
    pub acme: AcmeMetrics,
    /// Requests refused (or, in shadow mode, counted) by RateLimitPolicy rules.
    pub rate_limit: RateLimitMetrics,
    /// Spans exported, failed and dropped (OpenTelemetry tracing).
    pub tracing: super::trace::TracingMetrics,
    /// Time spent in each stage of applying a change.
    stages: Family<StageLabels, AtomicHistogram>,
    tls_handshake_errors: Family<HandshakeErrorLabels, Counter>,
    requests_rejected: Family<RejectLabels, Counter>,
    security_denied: Family<SecurityDeniedLabels, Counter>,
    security_fail_open: Family<SecurityDeniedLabels, Counter>,
    connections_refused: Family<RejectLabels, Counter>,
    connections_closed: Family<RejectLabels, Counter>,
    body_transforms_skipped: Family<RejectLabels, Counter>,
}

/// The values of `gantry_drain_phase`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DrainPhase {
    Serving = 0,
    /// Unready, still accepting and serving: the drain delay.
    Delay = 1,
    /// No longer accepting; connections closing.
    Closing = 2,
}

impl Metrics {
    /// Sets `gantry_drain_phase`.
    pub fn set_drain_phase(&self, phase: DrainPhase) {
        self.drain_phase.set(phase as i64);
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        Self::with(|_| {})
    }

    /// Every metric the proxy exports, plus the families `register` adds (a mode's own).
    pub fn with(register: impl FnOnce(&mut Registry)) -> Self {
        let mut registry = Registry::with_prefix("gantry");
        let requests = Family::<RequestLabels, Counter>::default();
        let durations = Family::<RequestLabels, AtomicHistogram>::default();
        let upstream_attempts = Family::<RouteLabels, Counter>::default();
        let upstream_retries = Family::<RetryLabels, Counter>::default();
        let retries_skipped = Family::<RetryLabels, Counter>::default();
        let config_version = Gauge::default();
        let config_reloads = Counter::default();
        let config_reloads_rejected = Counter::default();
        let upstream_connect_errors = Counter::default();
        let active_connections = Gauge::default();
        let drain_phase = Gauge::default();
        let stages = Family::<StageLabels, AtomicHistogram>::default();
        let tls_handshake_errors = Family::<HandshakeErrorLabels, Counter>::default();
        let requests_rejected = Family::<RejectLabels, Counter>::default();
        let security_denied = Family::<SecurityDeniedLabels, Counter>::default();
        registry.register(
            "security_denied",
            "Requests refused by a route's SecurityPolicy, by route and reason (invalid_policy, \
             client_address, api_key, basic_auth, jwt, jwt_claims, external_auth, \
             external_auth_error)",
            security_denied.clone(),
        );
        let security_fail_open = Family::<SecurityDeniedLabels, Counter>::default();
        registry.register(
            "security_fail_open",
            "Requests a SecurityPolicy's extAuth let through with failOpen because the check \
             could not be made, by route and reason (unreachable, timeout, error)",
            security_fail_open.clone(),
        );
        let connections_refused = Family::<RejectLabels, Counter>::default();
        let connections_closed = Family::<RejectLabels, Counter>::default();
        let body_transforms_skipped = Family::<RejectLabels, Counter>::default();
        registry.register(
            "response_body_transforms_skipped",
            "Response bodies an HTTPTransform would have changed but passed unchanged, by reason \
             (over_limit, invalid_json)",
            body_transforms_skipped.clone(),
        );
        registry.register(
            "downstream_connections_refused",
            "Client connections closed on accept because a connection limit was reached \
             (process_limit, listener_limit)",
            connections_refused.clone(),
        );
        registry.register(
            "downstream_connections_closed",
            "Client connections the proxy closed for doing nothing: idle (no request for the \
             idle or header timeout), stalled (response bodies not moving for the stall timeout), \
             idle_unfinished (idle and not closed by a graceful shutdown)",
            connections_closed.clone(),
        );
        registry.register(
            "requests_rejected",
            "Requests refused before routing (malformed Host, unsafe path, CONNECT, unsupported \
             transfer coding), by reason",
            requests_rejected.clone(),
        );
        registry.register(
            "requests",
            "HTTP requests served, by gateway, route, route kind and status class",
            requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time from request received to response headers sent",
            durations.clone(),
        );
        registry.register(
            "upstream_attempts",
            "Requests sent to upstreams (first attempts and retries), by gateway, route and route \
             kind",
            upstream_attempts.clone(),
        );
        registry.register(
            "upstream_retries",
            "Retries sent to upstreams (HTTPRoute retry), by gateway, route, route kind and the \
             reason the previous attempt failed (status_code, connect_failure, reset, \
             backend_timeout)",
            upstream_retries.clone(),
        );
        registry.register(
            "upstream_retries_skipped",
            "Retries a rule asked for that were not made, by gateway, route, route kind and reason \
             (attempts_exhausted, budget_exhausted: the Service's XBackendTrafficPolicy retry \
             budget, body_not_replayable: a request body over the retry buffer, circuit_breaker: the \
             cluster's maxParallelRetries)",
            retries_skipped.clone(),
        );
        registry.register(
            "config_version",
            "Version of the configuration in use",
            config_version.clone(),
        );
        registry.register(
            "config_reloads",
            "Configurations applied",
            config_reloads.clone(),
        );
        registry.register(
            "config_reloads_rejected",
            "Configuration changes rejected (the last good configuration kept serving)",
            config_reloads_rejected.clone(),
        );
        registry.register(
            "upstream_connect_errors",
            "Failed connections to upstream endpoints",
            upstream_connect_errors.clone(),
        );
        registry.register(
            "downstream_connections_active",
            "Client connections open",
            active_connections.clone(),
        );
        registry.register(
            "drain_phase",
            "Where a graceful stop is: 0 serving; 1 draining, readiness failing but every listener \
             still serving for the drain delay; 2 draining, no longer accepting, open connections \
             closing within the drain timeout",
            drain_phase.clone(),
        );
        let l4 = L4Metrics::register(&mut registry);
        let circuit_breaker = CircuitBreakerMetrics::register(&mut registry);
        let upstream_connections = UpstreamConnectionMetrics::register(&mut registry);
        let health = HealthMetrics::register(&mut registry);
        let certificates = CertificateMetrics::register(&mut registry);
        let acme = AcmeMetrics::register(&mut registry);
        let rate_limit = RateLimitMetrics::register(&mut registry);
        let tracing = super::trace::TracingMetrics::register(&mut registry);
        registry.register(
            "config_stage_duration_seconds",
            "Time a configuration change spent in each stage: source (Kubernetes mode: first event of \
             a burst to the update published), translate, compile (compile, bind, swap), status \
             (statuses stamped and published)",
            stages.clone(),
        );
        registry.register(
            "tls_handshake_errors",
            "TLS connections that failed before serving a request, by port and reason",
            tls_handshake_errors.clone(),
        );
        register(&mut registry);
        Self {
            l4,
            circuit_breaker,
            upstream_connections,
            health,
            certificates,
            acme,
            rate_limit,
            tracing,
            tls_handshake_errors,
            requests_rejected,
            security_denied,
            security_fail_open,
            connections_refused,
            connections_closed,
            body_transforms_skipped,
            registry,
            routes: Arc::new(RouteFamilies {
                requests,
                durations,
                upstream_attempts,
                upstream_retries,
                retries_skipped,
            }),
            config_version,
            config_reloads,
            config_reloads_rejected,
            upstream_connect_errors,
            active_connections,
            drain_phase,
            stages,
        }
    }

    /// Records the time one change spent in `stage` (see `config_stage_duration_seconds`).
    pub fn observe_stage(&self, stage: &'static str, elapsed: Duration) {
        self.stages
            .get_or_create(&StageLabels { stage })
            .observe(elapsed);
    }

    /// Counts a failed TLS handshake. Reasons are a small fixed set, so the family stays
    /// small.
    pub fn tls_handshake_error(&self, port: u16, reason: &'static str) {
        self.tls_handshake_errors
            .get_or_create(&HandshakeErrorLabels {
                port: port.to_string(),
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// Counts a request refused before routing; `reason` is one of a small fixed set.
    pub fn request_rejected(&self, reason: &'static str) {
        self.requests_rejected
            .get_or_create(&RejectLabels { reason })
            .inc();
    }

    /// Counts a request a SecurityPolicy refused (only denied requests pay for the labels).
    pub fn security_denied(&self, route: &str, reason: &'static str) {
        self.security_denied
            .get_or_create(&SecurityDeniedLabels {
                route: route.to_owned(),
                reason,
            })
            .inc();
    }

    /// Counts a request an `extAuth` with `failOpen` let through unchecked.
    pub fn security_fail_open(&self, route: &str, reason: &'static str) {
        self.security_fail_open
            .get_or_create(&SecurityDeniedLabels {
                route: route.to_owned(),
                reason,
            })
            .inc();
    }

    /// Counts a connection refused on accept.
    pub fn connection_refused(&self, reason: &'static str) {
        self.connections_refused
            .get_or_create(&RejectLabels { reason })
            .inc();
    }

    /// Counts a response body an HTTPTransform passed unchanged.
    pub fn body_transform_skipped(&self, reason: &'static str) {
        self.body_transforms_skipped
            .get_or_create(&RejectLabels { reason })
            .inc();
    }

    /// Counts a connection the watchdog closed.
    pub fn connection_closed(&self, reason: &'static str) {
        self.connections_closed
            .get_or_create(&RejectLabels { reason })
            .inc();
    }

    /// Handles for one gateway/route pair (`route_kind` and `route` empty for requests no route
    /// took); call when compiling a routing table, not per request.
    /// Series are created on the first request of each status class, so routes that see no
    /// traffic cost about a hundred bytes and no exported series. The label values are
    /// shared with the caller when it passes `Arc<str>`s (the routing table does).
    pub fn route_metrics(
        &self,
        gateway: impl Into<Arc<str>>,
        route_kind: impl Into<Arc<str>>,
        route: impl Into<Arc<str>>,
    ) -> RouteMetrics {
        RouteMetrics {
            inner: Arc::new(LazySeries {
                families: self.routes.clone(),
                gateway: gateway.into(),
                route_kind: route_kind.into(),
                route: route.into(),
                traffic: OnceLock::new(),
                retries: OnceLock::new(),
            }),
        }
    }

    /// Drops the series of a route that no longer exists.
    pub fn forget_route(&self, gateway: &str, route_kind: &str, route: &str) {
        for class in STATUS_CLASSES {
            let labels = RequestLabels {
                gateway: gateway.to_owned(),
                route_kind: route_kind.to_owned(),
                route: route.to_owned(),
                status_class: class.to_owned(),
            };
            self.routes.requests.remove(&labels);
            self.routes.durations.remove(&labels);
        }
        let route_labels = RouteLabels {
            gateway: gateway.to_owned(),
            route: route.to_owned(),
            route_kind: route_kind.to_owned(),
        };
        self.routes.upstream_attempts.remove(&route_labels);
        let retry_labels = |reason| RetryLabels {
            gateway: gateway.to_owned(),
            route: route.to_owned(),
            route_kind: route_kind.to_owned(),
            reason,
        };
        for reason in RetryReason::ALL {
            self.routes
                .upstream_retries
                .remove(&retry_labels(reason.label()));
        }
        for reason in SkipReason::ALL {
            self.routes
                .retries_skipped
                .remove(&retry_labels(reason.label()));
        }
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// Series for one route: after the first request of a status class, recording is two atomic
/// adds and a load, with no lock and no allocation.
#[derive(Clone, Debug)]
pub struct RouteMetrics {
    inner: Arc<LazySeries>,
}

/// The families of per-route series, one for the process.
#[derive(Debug)]
struct RouteFamilies {
    requests: Family<RequestLabels, Counter>,
    durations: Family<RequestLabels, AtomicHistogram>,
    upstream_attempts: Family<RouteLabels, Counter>,
    upstream_retries: Family<RetryLabels, Counter>,
    retries_skipped: Family<RetryLabels, Counter>,
}

/// One route's handles. Every route of the routing table holds one, so it is kept small: the
/// families behind one shared pointer, label values shared with the table, and the series
/// themselves behind lazily made boxes, one for the requests (only routes that see traffic
/// need it) and one for the retries (only routes that retry). An idle route's handles take
/// 104 bytes instead of the 224 they took with the request series inline (docs/benchmarks.md,
/// "Memory per route: what is left").
#[derive(Debug)]
struct LazySeries {
    families: Arc<RouteFamilies>,
    gateway: Arc<str>,
    route_kind: Arc<str>,
    route: Arc<str>,
    traffic: OnceLock<Box<TrafficSeries>>,
    retries: OnceLock<Box<RetrySeries>>,
}

/// A route's request series: by status class, and its upstream attempts.
#[derive(Debug, Default)]
struct TrafficSeries {
    per_class: [OnceLock<(Counter, AtomicHistogram)>; 5],
    attempts: OnceLock<Counter>,
}

/// A route's retry counters, by reason.
#[derive(Debug, Default)]
struct RetrySeries {
    retries: [OnceLock<Counter>; RetryReason::ALL.len()],
    skipped: [OnceLock<Counter>; SkipReason::ALL.len()],
}

impl LazySeries {
    fn retry_labels(&self, reason: &'static str) -> RetryLabels {
        RetryLabels {
            gateway: self.gateway.to_string(),
            route: self.route.to_string(),
            route_kind: self.route_kind.to_string(),
            reason,
        }
    }

    fn retry_series(&self) -> &RetrySeries {
        self.retries.get_or_init(Box::default)
    }

    fn traffic(&self) -> &TrafficSeries {
        self.traffic.get_or_init(Box::default)
    }
}

impl RouteMetrics {
    pub fn record(&self, status: u16, elapsed: Duration) {
        let slot = usize::from(status / 100).clamp(1, 5) - 1;
        let series = &self.inner;
        let (count, duration) = series.traffic().per_class[slot].get_or_init(|| {
            // Once per route and status class: registering takes the family's lock.
            let labels = RequestLabels {
                gateway: series.gateway.to_string(),
                route_kind: series.route_kind.to_string(),
                route: series.route.to_string(),
                status_class: STATUS_CLASSES[slot].to_owned(),
            };
            (
                series.families.requests.get_or_create_owned(&labels),
                series.families.durations.get_or_create_owned(&labels),
            )
        });
        count.inc();
        duration.observe(elapsed);
    }

    /// Counts one request sent upstream (a first attempt or a retry).
    pub fn upstream_attempt(&self) {
        let series = &self.inner;
        series
            .traffic()
            .attempts
            .get_or_init(|| {
                series
                    .families
                    .upstream_attempts
                    .get_or_create_owned(&RouteLabels {
                        gateway: series.gateway.to_string(),
                        route: series.route.to_string(),
                        route_kind: series.route_kind.to_string(),
                    })
            })
            .inc();
    }

    /// Counts one retry, by why the attempt before it failed.
    pub fn retry(&self, reason: RetryReason) {
        let series = &self.inner;
        let slot = RetryReason::ALL
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(0);
        series.retry_series().retries[slot]
            .get_or_init(|| {
                series
                    .families
                    .upstream_retries
                    .get_or_create_owned(&series.retry_labels(reason.label()))
            })
            .inc();
    }

    /// Counts one retry the rule asked for and the proxy did not make.
    pub fn retry_skipped(&self, reason: SkipReason) {
        let series = &self.inner;
        let slot = SkipReason::ALL
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(0);
        series.retry_series().skipped[slot]
            .get_or_init(|| {
                series
                    .families
                    .retries_skipped
                    .get_or_create_owned(&series.retry_labels(reason.label()))
            })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idle_routes_handles_hold_no_series() {
        let metrics = Metrics::new();
        let route = metrics.route_metrics("default/gw", "HTTPRoute", "default/idle");
        // Every route of a routing table holds one: with 64-bit pointers, the families, three
        // labels and two empty lazy boxes, 88 bytes behind the `Arc`'s two counts.
        #[cfg(target_pointer_width = "64")]
        assert_eq!(std::mem::size_of::<LazySeries>(), 88);
        assert!(route.inner.traffic.get().is_none());
        assert!(route.inner.retries.get().is_none());
        route.upstream_attempt();
        assert!(
            route.inner.traffic.get().is_some(),
            "made on the first request"
        );
        assert!(
            route.inner.retries.get().is_none(),
            "no retry, no retry series"
        );
    }

    #[test]
    fn route_metrics_show_up_in_the_exposition() {
        let metrics = Metrics::new();
        let route = metrics.route_metrics("default/gw", "GRPCRoute", "default/web");
        assert!(
            !metrics.encode().contains("default/web"),
            "no series before the first request"
        );
        route.record(200, Duration::from_millis(3));
        route.record(503, Duration::from_millis(1));
        let text = metrics.encode();
        assert!(
            text.contains(
                r#"gantry_requests_total{gateway="default/gw",route="default/web",route_kind="GRPCRoute",status_class="2xx"} 1"#
            ),
            "{text}"
        );
        assert!(!text.contains(r#"status_class="4xx""#), "{text}");
        assert!(
            text.contains("gantry_request_duration_seconds_bucket"),
            "{text}"
        );
        metrics.forget_route("default/gw", "GRPCRoute", "default/web");
        assert!(!metrics.encode().contains("default/web"));
    }

    /// The routing table passes its `Arc<str>`s: a route's handles hold no copy of its labels,
    /// and the retry counters, made on the first retry, record under them.
    #[test]
    fn route_handles_share_the_label_values_and_count_retries() {
        let metrics = Metrics::new();
        let (gateway, kind, route): (Arc<str>, Arc<str>, Arc<str>) = (
            Arc::from("default/gw"),
            Arc::from("HTTPRoute"),
            Arc::from("default/web"),
        );
        let handles = metrics.route_metrics(gateway.clone(), kind.clone(), route.clone());
        assert!(Arc::ptr_eq(&handles.inner.gateway, &gateway));
        assert!(Arc::ptr_eq(&handles.inner.route_kind, &kind));
        assert!(Arc::ptr_eq(&handles.inner.route, &route));
        assert!(handles.inner.retries.get().is_none());
        handles.upstream_attempt();
        handles.retry(RetryReason::Reset);
        handles.retry(RetryReason::Reset);
        handles.retry_skipped(SkipReason::BudgetExhausted);
        let text = metrics.encode();
        for line in [
            r#"gantry_upstream_attempts_total{gateway="default/gw",route="default/web",route_kind="HTTPRoute"} 1"#,
            r#"gantry_upstream_retries_total{gateway="default/gw",route="default/web",route_kind="HTTPRoute",reason="reset"} 2"#,
            r#"gantry_upstream_retries_skipped_total{gateway="default/gw",route="default/web",route_kind="HTTPRoute",reason="budget_exhausted"} 1"#,
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
        metrics.forget_route("default/gw", "HTTPRoute", "default/web");
        assert!(!metrics.encode().contains("default/web"));
    }
}
