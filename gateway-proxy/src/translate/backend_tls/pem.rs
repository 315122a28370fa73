//! Checks of PEM certificate material, so a bad bundle or key becomes a status condition here
//! instead of a failed handshake later. Pure: bytes in, verdict out.

use std::sync::Arc;

use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Checks a CA bundle: at least one `CERTIFICATE` block, each usable as a trust anchor.
/// Returns how many certificates it holds.
pub fn check_ca_bundle(pem: &str) -> Result<usize, String> {
    let certs = certificates(pem)?;
    for (i, der) in certs.iter().enumerate() {
        webpki::anchor_from_trusted_cert(der)
            .map_err(|e| format!("certificate {} is not a usable CA certificate: {e}", i + 1))?;
    }
    Ok(certs.len())
}

/// Checks a client certificate chain and its private key: both parse, and the key belongs to
/// the first certificate.
pub fn check_key_pair(cert_pem: &str, key_pem: &str) -> Result<(), String> {
    let chain = certificates(cert_pem)?;
    webpki::EndEntityCert::try_from(&chain[0])
        .map_err(|e| format!("the certificate cannot be parsed: {e}"))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| format!("no usable private key in PEM: {e}"))?;
    let provider = rustls::crypto::ring::default_provider();
    let signing_key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| format!("the private key cannot be used: {e}"))?;
    CertifiedKey::new(chain, Arc::clone(&signing_key))
        .keys_match()
        .map_err(|e| format!("the private key does not belong to the certificate: {e}"))
}

fn certificates(pem: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("invalid PEM: {e}"))?;
    if certs.is_empty() {
        return Err("no PEM CERTIFICATE block".to_owned());
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_and_garbage_bundles_are_rejected() {
        assert!(
            check_ca_bundle("")
                .unwrap_err()
                .contains("no PEM CERTIFICATE")
        );
        assert!(
            check_ca_bundle("hello")
                .unwrap_err()
                .contains("no PEM CERTIFICATE")
        );
        let bad = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(check_ca_bundle(bad).is_err());
    }

    #[test]
    fn generated_ca_and_key_pair_are_accepted_and_a_foreign_key_is_not() {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = params.self_signed(&ca_key).unwrap();
        assert_eq!(check_ca_bundle(&ca.pem()), Ok(1));

        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf = rcgen::CertificateParams::new(vec!["client".to_owned()])
            .unwrap()
            .self_signed(&leaf_key)
            .unwrap();
        assert_eq!(
            check_key_pair(&leaf.pem(), &leaf_key.serialize_pem()),
            Ok(())
        );
        let error = check_key_pair(&leaf.pem(), &ca_key.serialize_pem()).unwrap_err();
        assert!(error.contains("does not belong"), "{error}");
    }
}
