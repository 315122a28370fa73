//! TLS of HTTPS and TLS listeners: certificates, mode, client-certificate validation.
//!
//! Private keys never leave this module in readable form: [`PrivateKeyPem`] serialises and
//! prints as `<redacted>`, so neither `GET /config`, goldens nor logs can show one.
//! Certificates and CA bundles are public, but long: they serialise as the SHA-256
//! fingerprints of their certificates.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::store::ObjectKey;

/// How an HTTPS or TLS listener handles TLS.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListenerTlsIr {
    pub mode: TlsModeIr,
    /// The valid certificates of `certificateRefs`, in the order given (`Terminate` only).
    /// The handshake uses the one whose name matches the SNI most specifically, else the
    /// first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub certificates: Vec<CertificateIr>,
    /// Client-certificate validation from the Gateway's `spec.tls.frontend` (HTTPS only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_validation: Option<ClientValidationIr>,
}

/// `tls.mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TlsModeIr {
    /// The proxy completes the handshake with the listener's certificates.
    Terminate,
    /// The proxy reads the ClientHello only and forwards the encrypted stream.
    Passthrough,
}

/// One certificate and key pair, from a `kubernetes.io/tls` Secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CertificateIr {
    /// The Secret it came from.
    pub secret: ObjectKey,
    /// DNS names of the leaf's subjectAltName (wildcards included), used to pick a
    /// certificate by SNI.
    pub dns_names: Vec<String>,
    /// `tls.crt`: the leaf first, then intermediates.
    pub chain: PemCertificates,
    /// `tls.key`.
    pub private_key: PrivateKeyPem,
    /// The leaf's `notAfter`, in seconds since the Unix epoch.
    #[serde(default)]
    pub not_after: i64,
}

/// Client-certificate validation of an HTTPS listener (GEP-91, Gateway
/// `spec.tls.frontend`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientValidationIr {
    pub mode: ClientValidationMode,
    /// The ConfigMaps whose `ca.crt` bundles were valid.
    pub sources: Vec<ObjectKey>,
    /// Every CA certificate of those bundles: the trust anchors for client certificates.
    pub ca_certificates: PemCertificates,
}

/// `validation.mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientValidationMode {
    /// A client must present a certificate that chains to one of the CAs.
    AllowValidOnly,
    /// A client without a certificate, or with one that does not verify, is still served.
    AllowInsecureFallback,
}

/// PEM text of one or more certificates. Serialises as their SHA-256 fingerprints
/// (`sha256:<hex>`), which is enough to tell which certificate is in use.
#[derive(Clone, PartialEq, Eq)]
pub struct PemCertificates(pub String);

impl PemCertificates {
    /// The DER of each certificate, in order.
    pub fn der(&self) -> Vec<rustls_pki_types::CertificateDer<'static>> {
        use rustls_pki_types::pem::PemObject;
        rustls_pki_types::CertificateDer::pem_slice_iter(self.0.as_bytes())
            .filter_map(Result::ok)
            .collect()
    }

    /// `sha256:<hex>` of each certificate's DER.
    pub fn fingerprints(&self) -> Vec<String> {
        self.der()
            .iter()
            .map(|der| {
                let digest = ring::digest::digest(&ring::digest::SHA256, der.as_ref());
                let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
                format!("sha256:{hex}")
            })
            .collect()
    }
}

impl fmt::Debug for PemCertificates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PemCertificates")
            .field(&self.fingerprints())
            .finish()
    }
}

impl Serialize for PemCertificates {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.fingerprints().serialize(serializer)
    }
}

/// Reads PEM text (the serialised form is one-way: fingerprints cannot be read back).
impl<'de> Deserialize<'de> for PemCertificates {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Self)
    }
}

/// PEM text of a private key. Never shown: `Debug` and `Serialize` print `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct PrivateKeyPem(String);

/// What a private key looks like anywhere it could be shown.
pub const REDACTED: &str = "<redacted>";

impl PrivateKeyPem {
    pub fn new(pem: impl Into<String>) -> Self {
        Self(pem.into())
    }

    /// The key's DER, for the TLS stack only.
    pub fn der(&self) -> Option<rustls_pki_types::PrivateKeyDer<'static>> {
        use rustls_pki_types::pem::PemObject;
        rustls_pki_types::PrivateKeyDer::from_pem_slice(self.0.as_bytes()).ok()
    }
}

impl fmt::Debug for PrivateKeyPem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl Serialize for PrivateKeyPem {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(REDACTED)
    }
}

/// Reads PEM text (the serialised form is one-way: a redacted key cannot be read back).
impl<'de> Deserialize<'de> for PrivateKeyPem {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_keys_never_show() {
        let key = PrivateKeyPem::new(
            "-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----\n",
        );
        assert_eq!(format!("{key:?}"), REDACTED);
        assert_eq!(serde_json::to_string(&key).unwrap(), "\"<redacted>\"");
        let certificate = CertificateIr {
            secret: ObjectKey::new("ns", "s"),
            dns_names: vec!["a.example.com".to_owned()],
            chain: PemCertificates(String::new()),
            private_key: key,
            not_after: 0,
        };
        let shown = format!(
            "{certificate:?} {}",
            serde_json::to_string(&certificate).unwrap()
        );
        assert!(!shown.contains("c2VjcmV0"), "{shown}");
        assert!(!shown.contains("BEGIN"), "{shown}");
    }
}
