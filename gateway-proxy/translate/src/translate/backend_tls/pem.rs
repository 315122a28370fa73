//! The check of a CA bundle, so a bad one becomes a status condition here instead of a failed
//! handshake later. Pure: bytes in, verdict out. (Client certificate pairs are checked as
//! listener certificates are, in `translate::certificate`.)

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

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
    fn a_generated_ca_is_accepted() {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = params.self_signed(&ca_key).unwrap();
        assert_eq!(check_ca_bundle(&ca.pem()), Ok(1));
    }
}
