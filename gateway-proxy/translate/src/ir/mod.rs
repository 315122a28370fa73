//! The routing IR: everything the data plane needs, and nothing it does not.
//!
//! The translator produces an [`Ir`] from the object store; the router compiles it into lookup
//! tables. It is plain data (serialisable, comparable) so that goldens can pin it and
//! `GET /config` can show it. Route entries are already in the spec's precedence order:
//! the data plane takes the first entry that matches.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::store::ObjectKey;

mod backend_config;
mod http;
mod l4;
mod rate_limit;
mod security;
mod tls;
mod transform;
mod upstream_tls;

pub use backend_config::*;
pub use http::*;
pub use l4::*;
pub use rate_limit::*;
pub use security::*;
pub use tls::*;
pub use transform::*;
pub use upstream_tls::*;

/// The whole routing configuration for one proxy.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ir {
    /// One entry per port the proxy binds, sorted by port.
    pub ports: Vec<PortIr>,
    /// Upstream clusters by [`ClusterIr::name`]. Endpoints live here so an endpoint-only change
    /// can be applied without re-translating routes.
    pub clusters: BTreeMap<String, ClusterIr>,
}

/// A bound port and every listener that shares it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortIr {
    pub port: u16,
    pub protocol: PortProtocol,
    /// Listeners on this port, most specific hostname first (exact, then wildcards by length,
    /// then the listener without a hostname). A request goes to the first listener whose
    /// hostname matches its Host.
    pub listeners: Vec<ListenerIr>,
}

/// What a port speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PortProtocol {
    /// HTTP listeners: HTTP/1.1 and HTTP/2 with prior knowledge (h2c).
    #[serde(rename = "HTTP")]
    Http,
    /// HTTPS and TLS listeners (which may share a port): the ClientHello's SNI selects the
    /// listener, which terminates TLS (HTTPS, TLS `Terminate`) or passes it through (TLS
    /// `Passthrough`).
    #[serde(rename = "TLS")]
    Tls,
    /// One TCP listener: TCPRoute forwarding.
    #[serde(rename = "TCP")]
    Tcp,
    /// One UDP listener: UDPRoute forwarding.
    #[serde(rename = "UDP")]
    Udp,
}

/// One Gateway listener that was accepted and programmed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListenerIr {
    pub gateway: ObjectKey,
    /// `spec.listeners[].name`.
    pub name: String,
    /// `None` matches every host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Virtual hosts, most specific hostname first. A request tries every virtual host whose
    /// hostname matches its Host, from the most specific to the least (hostname precedence
    /// orders candidates, it does not exclude them); the first matching entry wins, and if
    /// none matches the answer is 404.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub virtual_hosts: Vec<VirtualHostIr>,
    /// TLS settings of an HTTPS or TLS listener.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<Arc<ListenerTlsIr>>,
    /// TLSRoute, TCPRoute and UDPRoute forwarding of this listener.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub l4_routes: Vec<L4RouteIr>,
    /// A `TLS` listener: its connections go to TLSRoutes (passed through, or terminated and
    /// forwarded as TCP), never to HTTP, even when it has no route.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub serves_tls_routes: bool,
    /// A listener of a ListenerSet attached to `gateway`. Its `name` is then
    /// `<namespace>/<ListenerSet>/<listener>`: listener names need only be unique within one
    /// resource (GEP-1713), and the data plane tells listeners apart by Gateway and name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listener_set: Option<ListenerSetListenerIr>,
}

/// Where a listener merged from a ListenerSet was declared.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListenerSetListenerIr {
    pub listener_set: ObjectKey,
    /// The listener's name in the ListenerSet.
    pub name: String,
}

/// All route entries for one effective hostname (the intersection of listener and route
/// hostnames).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VirtualHostIr {
    /// An exact name (`foo.example.com`), a wildcard (`*.example.com`, matching one or more
    /// labels in front of the suffix) or `*` for any host.
    pub hostname: String,
    /// In precedence order (Gateway API HTTPRouteRule precedence); first match wins.
    pub routes: Vec<RouteEntryIr>,
}

/// An upstream: one Service port and its ready endpoints.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterIr {
    /// `namespace/service:port`.
    pub name: String,
    pub service: ObjectKey,
    /// The Service port.
    pub port: u16,
    pub protocol: UpstreamProtocol,
    /// Ready endpoint addresses (`ip:port`, IPv6 in brackets). Empty means 503.
    pub endpoints: Vec<String>,
    /// TLS to the backend (BackendTLSPolicy); `None` is plaintext.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<Arc<UpstreamTlsIr>>,
    /// The retry budget of the Service (XBackendTrafficPolicy `retryConstraint`); `None` is no
    /// budget: retries are limited only by each rule's `attempts`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_budget: Option<RetryBudgetIr>,
    /// Load balancing, health checks, circuit breaking and connection settings of the
    /// BackendConfigPolicy governing the Service port; `None`: no policy governs it, and the
    /// data plane uses round robin and [`ConnectionIr::DEFAULT`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_config: Option<Arc<BackendConfigIr>>,
}

/// How to speak to an upstream, from the Service port's `appProtocol`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum UpstreamProtocol {
    /// HTTP/1.1 (the default).
    #[serde(rename = "HTTP/1.1")]
    Http1,
    /// HTTP/2 with prior knowledge (`appProtocol: kubernetes.io/h2c`).
    #[serde(rename = "h2c")]
    H2c,
}
