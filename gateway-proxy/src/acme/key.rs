//! The private key of an ACME certificate and its CSR.
//!
//! rcgen signs with ring, which signs with RSA keys but cannot generate them: an RSA key is
//! generated with the RustCrypto `rsa` crate, exported as PKCS#8 and loaded into rcgen like
//! any stored key. Keys are kept as PKCS#8 PEM (`PRIVATE KEY`), which rustls loads for
//! serving whatever the algorithm.

use rcgen::{
    CertificateParams, DistinguishedName, KeyPair, PKCS_ECDSA_P256_SHA256, PKCS_RSA_SHA256,
};
use rustls_pki_types::PrivatePkcs8KeyDer;
use rustls_pki_types::pem::PemObject;

/// The certificate key's algorithm (`--acme-key-type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyType {
    /// ECDSA on P-256 with SHA-256: small and fast, what every current client accepts.
    #[default]
    EcdsaP256,
    /// RSA 2048 with PKCS#1 v1.5 SHA-256 signatures, for clients without ECDSA.
    Rsa2048,
}

impl KeyType {
    /// The flag's spelling.
    pub fn name(self) -> &'static str {
        match self {
            Self::EcdsaP256 => "ecdsa-p256",
            Self::Rsa2048 => "rsa-2048",
        }
    }
}

const RSA_BITS: usize = 2048;

/// A new private key of type `key_type`. CPU-bound (an RSA key takes tens to hundreds of
/// milliseconds): call it off the async workers.
pub fn generate(key_type: KeyType) -> Result<KeyPair, String> {
    match key_type {
        KeyType::EcdsaP256 => {
            KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|e| format!("ECDSA key: {e}"))
        }
        KeyType::Rsa2048 => {
            use rsa::pkcs8::EncodePrivateKey;
            let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, RSA_BITS)
                .map_err(|e| format!("RSA key: {e}"))?;
            let der = key
                .to_pkcs8_der()
                .map_err(|e| format!("RSA key as PKCS#8: {e}"))?;
            KeyPair::from_pkcs8_der_and_sign_algo(
                &PrivatePkcs8KeyDer::from(der.as_bytes()),
                &PKCS_RSA_SHA256,
            )
            .map_err(|e| format!("RSA key: {e}"))
        }
    }
}

/// A stored key (PKCS#8 PEM) of either type, as an order in progress keeps it.
pub fn load(pem: &str) -> Result<KeyPair, String> {
    let der = PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| format!("the stored key is not PKCS#8 PEM: {e}"))?;
    KeyPair::from_pkcs8_der_and_sign_algo(&der, &PKCS_ECDSA_P256_SHA256)
        .or_else(|_| KeyPair::from_pkcs8_der_and_sign_algo(&der, &PKCS_RSA_SHA256))
        .map_err(|e| format!("the stored key is neither ECDSA P-256 nor RSA: {e}"))
}

/// The type of a loaded key, `None` for one Gantry does not make.
pub fn key_type(key: &KeyPair) -> Option<KeyType> {
    if key.algorithm() == &PKCS_ECDSA_P256_SHA256 {
        Some(KeyType::EcdsaP256)
    } else if key.algorithm() == &PKCS_RSA_SHA256 {
        Some(KeyType::Rsa2048)
    } else {
        None
    }
}

/// A DER certificate signing request for `hostname` alone (no subject: the CA takes the name
/// from the subjectAltName), signed with `key`.
pub fn csr(hostname: &str, key: &KeyPair) -> Result<Vec<u8>, String> {
    let mut params =
        CertificateParams::new(vec![hostname.to_owned()]).map_err(|e| e.to_string())?;
    params.distinguished_name = DistinguishedName::new();
    let csr = params.serialize_request(key).map_err(|e| e.to_string())?;
    Ok(csr.der().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::prelude::{FromDer, X509CertificationRequest};
    use x509_parser::public_key::PublicKey;

    fn csr_key(der: &[u8]) -> (usize, bool) {
        let (_, request) = X509CertificationRequest::from_der(der).expect("CSR parses");
        let info = &request.certification_request_info;
        let key = info.subject_pki.parsed().expect("public key");
        (key.key_size(), matches!(key, PublicKey::RSA(_)))
    }

    #[test]
    fn an_rsa_key_round_trips_through_pem_and_signs_a_csr() {
        let key = generate(KeyType::Rsa2048).expect("RSA key");
        let pem = key.serialize_pem();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"), "{pem}");
        let loaded = load(&pem).expect("stored RSA key loads");
        assert_eq!(key_type(&loaded), Some(KeyType::Rsa2048));
        assert_eq!(loaded.serialize_der(), key.serialize_der());
        let der = csr("rsa.example.com", &loaded).expect("CSR");
        assert_eq!(csr_key(&der), (2048, true));
        // rustls (ring) signs with it, as the listener will.
        let der = rustls_pki_types::PrivateKeyDer::from_pem_slice(pem.as_bytes()).expect("PEM");
        rustls::crypto::ring::sign::any_supported_type(&der).expect("rustls loads the RSA key");
    }

    #[test]
    fn an_ecdsa_key_round_trips_and_stays_the_default() {
        assert_eq!(KeyType::default(), KeyType::EcdsaP256);
        let key = generate(KeyType::default()).expect("ECDSA key");
        let loaded = load(&key.serialize_pem()).expect("stored ECDSA key loads");
        assert_eq!(key_type(&loaded), Some(KeyType::EcdsaP256));
        let der = csr("ec.example.com", &loaded).expect("CSR");
        assert_eq!(csr_key(&der), (256, false));
    }

    #[test]
    fn a_key_of_rcgens_default_type_loads() {
        // Orders stored before key types existed hold `KeyPair::generate()` keys.
        let old = KeyPair::generate().expect("key");
        assert_eq!(
            key_type(&load(&old.serialize_pem()).expect("loads")),
            Some(KeyType::EcdsaP256)
        );
        assert!(load("not a key").is_err());
    }
}
