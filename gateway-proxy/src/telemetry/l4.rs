//! Metrics of L4 forwarding (TCPRoute, TLSRoute, UDPRoute): plain counters and gauges, no
//! per-route labels, so recording is one atomic operation. The one labelled family, failed
//! TLS to backends by reason, is recorded only on that failure path.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Counters and gauges of TCP, TLS and UDP forwarding.
#[derive(Clone, Debug, Default)]
pub struct L4Metrics {
    /// Client connections (TCP, TLS passthrough, TLS terminate) connected to a backend.
    pub connections: Counter,
    /// Client connections closed without a backend: no route, an invalid backendRef's share,
    /// no ready endpoint, the backend refused, or TLS to it failed.
    pub connections_rejected: Counter,
    /// Of those, the ones whose TLS to the backend (BackendTLSPolicy) failed, by reason.
    backend_tls_errors: Family<ReasonLabels, Counter>,
    /// Forwarded client connections open now.
    pub connections_active: Gauge,
    /// UDP sessions (one per client address) created.
    pub udp_sessions: Counter,
    /// UDP sessions open now.
    pub udp_sessions_active: Gauge,
    /// UDP sessions closed after their idle timeout.
    pub udp_sessions_expired: Counter,
    /// Datagrams from clients dropped: no route, an invalid backendRef's share, no ready
    /// endpoint, or the session limit reached.
    pub udp_datagrams_dropped: Counter,
}

/// Labels of `l4_backend_tls_errors`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

impl L4Metrics {
    /// Counts a connection closed because TLS to its backend failed; `reason` is one of a
    /// small fixed set (`upstream::tls::failure_reason`, or `unusable_settings`).
    pub fn backend_tls_error(&self, reason: &'static str) {
        self.backend_tls_errors
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    /// The count for one reason, for tests.
    pub fn backend_tls_errors(&self, reason: &'static str) -> u64 {
        self.backend_tls_errors
            .get_or_create(&ReasonLabels { reason })
            .get()
    }

    /// Creates the metrics and registers them.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "l4_connections",
            "TCP and TLS client connections forwarded to a backend",
            m.connections.clone(),
        );
        registry.register(
            "l4_connections_rejected",
            "TCP and TLS client connections closed without a backend (no route, invalid backendRef, no endpoint, connect failure, TLS to the backend failed)",
            m.connections_rejected.clone(),
        );
        registry.register(
            "l4_backend_tls_errors",
            "TCP and TLS client connections closed because TLS to the backend (BackendTLSPolicy) failed, by reason (unknown_issuer, name_mismatch, certificate_expired, bad_certificate, backend_alert, backend_closed, handshake, timeout, unusable_settings, other)",
            m.backend_tls_errors.clone(),
        );
        registry.register(
            "l4_connections_active",
            "TCP and TLS client connections being forwarded",
            m.connections_active.clone(),
        );
        registry.register(
            "udp_sessions",
            "UDP sessions created (one per client address)",
            m.udp_sessions.clone(),
        );
        registry.register(
            "udp_sessions_active",
            "UDP sessions open",
            m.udp_sessions_active.clone(),
        );
        registry.register(
            "udp_sessions_expired",
            "UDP sessions closed after their idle timeout",
            m.udp_sessions_expired.clone(),
        );
        registry.register(
            "udp_datagrams_dropped",
            "Client datagrams dropped (no route, invalid backendRef, no endpoint, session limit)",
            m.udp_datagrams_dropped.clone(),
        );
        m
    }
}
