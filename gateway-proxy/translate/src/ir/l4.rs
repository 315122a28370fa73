//! Layer-4 forwarding: TLSRoute, TCPRoute and UDPRoute.
//!
//! A listener's `l4_routes` hold only what receives traffic: for a TCP or UDP listener the one
//! route that wins the listener (the oldest, then by `namespace/name`), for a TLS listener the
//! winning route of each SNI hostname. Routes that lose every hostname are accepted (their
//! status says so) but are not listed here.

use serde::{Deserialize, Serialize};

use super::RouteRef;

/// One L4 route placed on a listener.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct L4RouteIr {
    pub route: RouteRef,
    /// TLSRoute: the SNI hostnames this route serves on the listener (the intersection of the
    /// listener's and the route's hostnames, less those an older route took), most specific
    /// first; `*` is any SNI, including none. Empty for TCPRoute and UDPRoute.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hostnames: Vec<String>,
    /// The weighted backends of the route's rule.
    pub backends: Vec<L4BackendIr>,
}

/// One weighted backendRef of an L4 route.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct L4BackendIr {
    /// Relative weight; 0 never receives a connection.
    pub weight: u32,
    /// The resolved cluster, or `None` when the reference is invalid: that share of
    /// connections is rejected (TCPRoute and TLSRoute `backendRefs`: "Connection rejections
    /// must respect weight").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
}
