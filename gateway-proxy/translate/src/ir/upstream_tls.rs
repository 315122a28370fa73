//! TLS from the proxy to a backend (BackendTLSPolicy, the Gateway's `spec.tls.backend`).
//!
//! A cluster with [`UpstreamTlsIr`] is only ever reached over TLS: the translator leaves a
//! backend whose policy is not usable without a cluster (500, or a closed connection), so there
//! is no plaintext fallback to express here. A TLS Passthrough listener, which never originates
//! TLS, reaches such a Service port through a plaintext cluster of its own
//! (`namespace/service:port/passthrough`).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{CertificateIr, PemCertificates};
use crate::store::ObjectKey;

/// How to reach one Service port over TLS: the name to send and verify, the trust anchors,
/// and the client certificate each Gateway presents.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpstreamTlsIr {
    /// The BackendTLSPolicy in effect (`namespace/name`), for logs and `GET /config`.
    pub policy: ObjectKey,
    /// SNI of every connection: the policy's `validation.hostname`.
    pub sni: String,
    /// `validation.subjectAltNames`. Empty: the certificate must be valid for [`Self::sni`].
    /// Otherwise it must carry at least one of these names, and the hostname is not used to
    /// authenticate it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subject_alt_names: Vec<SubjectAltNameIr>,
    /// Which certificate authorities the backend's chain must lead to.
    pub trust: TrustIr,
    /// Client certificates (`spec.tls.backend.clientCertificateRef`) by Gateway
    /// (`namespace/name`). A request through a Gateway that is not listed presents none. The
    /// key is redacted wherever it could be shown (see [`super::PrivateKeyPem`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub client_certificates: BTreeMap<String, Arc<CertificateIr>>,
}

/// A name the backend certificate may carry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SubjectAltNameIr {
    /// A DNS name (`type: Hostname`), matched as webpki matches a server name.
    Hostname(String),
    /// A URI (`type: URI`), such as a SPIFFE ID, matched exactly.
    Uri(String),
}

/// Trust anchors.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum TrustIr {
    /// The certificates of the policy's valid `caCertificateRefs`, in order (shown as
    /// fingerprints).
    CaCertificates {
        /// The ConfigMaps they came from (`namespace/name`).
        sources: Vec<ObjectKey>,
        certificates: PemCertificates,
    },
    /// `wellKnownCACertificates: System`: the operating system's trust store, read once by
    /// the data plane.
    System,
}
