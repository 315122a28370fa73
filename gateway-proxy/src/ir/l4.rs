//! Layer-4 forwarding: TLSRoute, TCPRoute and UDPRoute.

use serde::{Deserialize, Serialize};

/// One L4 route placed on a listener.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct L4RouteIr {}
