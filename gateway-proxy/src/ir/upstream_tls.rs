//! TLS from the proxy to a backend (BackendTLSPolicy, the Gateway's `spec.tls.backend`).

use serde::{Deserialize, Serialize};

/// How to verify a backend and which client certificate to present.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpstreamTlsIr {}
