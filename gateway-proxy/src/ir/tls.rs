//! TLS of HTTPS and TLS listeners: certificates, mode, client-certificate validation.

use serde::{Deserialize, Serialize};

/// How an HTTPS or TLS listener handles TLS.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListenerTlsIr {}
