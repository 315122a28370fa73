//! Listener `certificateRefs`: a reference to a `kubernetes.io/tls` Secret becomes a checked
//! certificate and key pair, or the problem that keeps it from being one.
//!
//! Pure: the PEM is parsed and the key is matched against the certificate here, so the data
//! plane never meets a certificate it cannot load.

use gantry_crds::gateway::gateways::GatewayListenersTlsCertificateRefs;
use k8s_openapi::api::core::v1::Secret;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::conditions::{self as c, Problem};
use super::reference_grant;
use crate::ir::{CertificateIr, PemCertificates, PrivateKeyPem};
use crate::store::{ObjectKey, Store};

/// The Secret type that holds a certificate and its key.
pub const TLS_SECRET_TYPE: &str = "kubernetes.io/tls";

/// The object that declares a listener: its Gateway, or a ListenerSet attached to it.
/// A `certificateRefs` entry without a namespace is in the owner's namespace, and a reference
/// into another namespace needs a ReferenceGrant from the owner's kind (GEP-1713: "A
/// `ListenerSet` must be able to reference a secret/backend in the same namespace as itself
/// without a `ReferenceGrant`").
#[derive(Clone, Copy, Debug)]
pub struct Owner<'a> {
    /// `Gateway` or `ListenerSet`.
    pub kind: &'a str,
    pub namespace: &'a str,
}

impl<'a> Owner<'a> {
    pub fn gateway(key: &'a ObjectKey) -> Self {
        Self {
            kind: "Gateway",
            namespace: &key.namespace,
        }
    }
}

/// Resolves one `certificateRefs` entry of a listener declared by `owner`.
pub fn resolve(
    store: &Store,
    owner: Owner<'_>,
    index: usize,
    reference: &GatewayListenersTlsCertificateRefs,
) -> Result<CertificateIr, Problem> {
    let group = reference.group.as_deref().unwrap_or("");
    let kind = reference.kind.as_deref().unwrap_or("Secret");
    let namespace = reference
        .namespace
        .as_deref()
        .filter(|n| !n.is_empty())
        .unwrap_or(owner.namespace);
    let key = ObjectKey::new(namespace, reference.name.clone());
    let at = format!("certificateRefs[{index}] ({key})");
    let invalid =
        |why: String| Problem::new(c::REASON_INVALID_CERTIFICATE_REF, format!("{at}: {why}"));
    if !group.is_empty() || kind != "Secret" {
        let shown = if group.is_empty() { "core" } else { group };
        return Err(invalid(format!(
            "kind {kind} of group {shown} is not supported; reference a core Secret (group \"\", kind Secret)"
        )));
    }
    if !reference_grant::listener_owner_permits(store, owner.kind, owner.namespace, "Secret", &key)
    {
        return Err(Problem::new(
            c::REASON_REF_NOT_PERMITTED,
            format!(
                "{at}: Secret in namespace {namespace} is not allowed; add a ReferenceGrant there from {}s in {} to Secrets",
                owner.kind, owner.namespace
            ),
        ));
    }
    let Some(secret) = store.secrets.get(&key) else {
        // The proxy's ACME client is obtaining this Secret's certificate: say where it is.
        if let Some(acme) = store.acme_certificates.get(&key) {
            return Err(invalid(acme.message.clone()));
        }
        return Err(invalid("Secret does not exist".to_owned()));
    };
    let secret_type = secret.type_.as_deref().unwrap_or("Opaque");
    if secret_type != TLS_SECRET_TYPE {
        return Err(invalid(format!(
            "Secret has type {secret_type}; a certificate Secret must have type {TLS_SECRET_TYPE}"
        )));
    }
    let (Some(cert_pem), Some(key_pem)) = (
        secret_field(secret, "tls.crt"),
        secret_field(secret, "tls.key"),
    ) else {
        return Err(invalid(
            "Secret needs both tls.crt and tls.key, each non-empty".to_owned(),
        ));
    };
    let pair = check_pair(cert_pem, key_pem).map_err(invalid)?;
    Ok(pair.into_ir(key))
}

/// A non-empty data field of a Secret.
pub(super) fn secret_field<'a>(secret: &'a Secret, name: &str) -> Option<&'a [u8]> {
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(name))
        .map(|b| b.0.as_slice())
        .filter(|b| !b.is_empty())
}

/// A certificate chain and key that belong together.
pub(super) struct CheckedPair {
    pub(super) cert_pem: String,
    pub(super) key_pem: String,
    pub(super) dns_names: Vec<String>,
    /// The leaf's `notAfter`, in seconds since the Unix epoch.
    pub(super) not_after: i64,
}

impl CheckedPair {
    /// The certificate of `secret`, as listeners and backend connections present it.
    pub(super) fn into_ir(self, secret: ObjectKey) -> CertificateIr {
        CertificateIr {
            secret,
            dns_names: self.dns_names,
            not_after: self.not_after,
            chain: PemCertificates(self.cert_pem),
            private_key: PrivateKeyPem::new(self.key_pem),
        }
    }
}

/// Shows the names only: never the key.
impl std::fmt::Debug for CheckedPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckedPair")
            .field("dns_names", &self.dns_names)
            .finish_non_exhaustive()
    }
}

/// Parses `tls.crt` and `tls.key` and checks that the key is the certificate's. The error says
/// what is wrong without showing any of the key.
/// (Also the Gateway's backend client certificate, `backend_tls`.)
pub(super) fn check_pair(cert_pem: &[u8], key_pem: &[u8]) -> Result<CheckedPair, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("tls.crt is not valid PEM ({e})"))?;
    let Some(leaf) = chain.first() else {
        return Err("tls.crt holds no PEM CERTIFICATE block".to_owned());
    };
    let parsed = webpki::EndEntityCert::try_from(leaf)
        .map_err(|e| format!("tls.crt: the first certificate does not parse ({e:?})"))?;
    let dns_names = parsed.valid_dns_names().map(str::to_owned).collect();
    let not_after = x509_parser::parse_x509_certificate(leaf)
        .map_err(|e| format!("tls.crt: the first certificate does not parse ({e})"))?
        .1
        .validity()
        .not_after
        .timestamp();
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|_| "tls.key holds no PEM private key (PKCS#8, PKCS#1 or SEC1)".to_owned())?;
    let provider = rustls::crypto::ring::default_provider();
    let signing_key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|_| "tls.key is not a usable RSA, ECDSA or Ed25519 private key".to_owned())?;
    let certified = rustls::sign::CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(_) => {
            return Err(
                "tls.key does not belong to the certificate in tls.crt; put the matching pair in the Secret"
                    .to_owned(),
            );
        }
    }
    let text = |bytes: &[u8], what: &str| {
        String::from_utf8(bytes.to_vec()).map_err(|_| format!("{what} is not PEM text"))
    };
    Ok(CheckedPair {
        cert_pem: text(cert_pem, "tls.crt")?,
        key_pem: text(key_pem, "tls.key")?,
        dns_names,
        not_after,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(names: &[&str]) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(
            names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>(),
        )
        .unwrap();
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn a_matching_pair_passes_with_its_names() {
        let (cert, key) = pair(&["a.example.com", "*.b.example.com"]);
        let checked = check_pair(cert.as_bytes(), key.as_bytes()).expect("valid pair");
        assert_eq!(checked.dns_names, ["a.example.com", "*.b.example.com"]);
    }

    #[test]
    fn an_ed25519_pair_passes() {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["ed.example.com".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let checked = check_pair(cert.pem().as_bytes(), key.serialize_pem().as_bytes());
        assert_eq!(checked.expect("valid pair").dns_names, ["ed.example.com"]);
    }

    #[test]
    fn a_key_of_another_certificate_is_refused() {
        let (cert, _) = pair(&["a.example.com"]);
        let (_, other_key) = pair(&["a.example.com"]);
        let error = check_pair(cert.as_bytes(), other_key.as_bytes()).expect_err("refused");
        assert!(error.contains("does not belong"), "{error}");
        assert!(!error.contains("PRIVATE"), "{error}");
    }

    #[test]
    fn garbage_is_refused_with_a_reason() {
        let (cert, key) = pair(&["a.example.com"]);
        assert!(
            check_pair(b"not pem", key.as_bytes())
                .expect_err("refused")
                .contains("no PEM CERTIFICATE")
        );
        assert!(
            check_pair(cert.as_bytes(), b"nope")
                .expect_err("refused")
                .contains("tls.key")
        );
        let broken = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(
            check_pair(broken.as_bytes(), key.as_bytes())
                .expect_err("refused")
                .contains("does not parse")
        );
    }
}
