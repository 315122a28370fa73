//! Metrics of L4 forwarding (TCPRoute, TLSRoute, UDPRoute): plain counters and gauges, no
//! per-route labels, so recording is one atomic operation.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Counters and gauges of TCP, TLS and UDP forwarding.
#[derive(Clone, Debug, Default)]
pub struct L4Metrics {
    /// Client connections (TCP, TLS passthrough, TLS terminate) connected to a backend.
    pub connections: Counter,
    /// Client connections closed without a backend: no route, an invalid backendRef's share,
    /// no ready endpoint, or the backend refused.
    pub connections_rejected: Counter,
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

impl L4Metrics {
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
            "TCP and TLS client connections closed without a backend (no route, invalid backendRef, no endpoint, connect failure)",
            m.connections_rejected.clone(),
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
