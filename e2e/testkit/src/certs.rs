//! Certificates generated at test time (rcgen): a CA, server and client certificates it
//! signs, and the Kubernetes objects (`kubernetes.io/tls` Secrets, CA ConfigMaps) that carry
//! them in a standalone config directory.

use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// A certificate authority that signs leaf certificates.
pub struct Ca {
    /// PEM of the CA certificate (what a trust bundle holds).
    pub cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// A leaf certificate and its private key, both PEM.
#[derive(Clone, Debug)]
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
}

impl Ca {
    /// A new self-signed CA named `name`.
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("self-sign CA");
        Self {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A server certificate for `names` (DNS names, wildcards such as `*.example.com`, or IP
    /// addresses); the first name is also the common name.
    pub fn server(&self, names: &[&str]) -> Leaf {
        self.leaf(names, ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// Like [`Ca::server`], with an Ed25519 key instead of ECDSA P-256: with both for the
    /// same names, the client's signature algorithms decide which one it gets.
    pub fn server_ed25519(&self, names: &[&str]) -> Leaf {
        let key = KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("Ed25519 key");
        self.leaf_with(names, Vec::new(), ExtendedKeyUsagePurpose::ServerAuth, key)
    }

    /// A server certificate for DNS names `names` that also carries URI SANs `uris` (such as
    /// SPIFFE IDs).
    pub fn server_with_uris(&self, names: &[&str], uris: &[&str]) -> Leaf {
        let mut extra = Vec::new();
        for uri in uris {
            let uri = (*uri).try_into().expect("URI SAN is ASCII");
            extra.push(SanType::URI(uri));
        }
        self.leaf_with(
            names,
            extra,
            ExtendedKeyUsagePurpose::ServerAuth,
            KeyPair::generate().expect("leaf key"),
        )
    }

    /// A client certificate whose common name (and DNS SAN) is `name`.
    pub fn client(&self, name: &str) -> Leaf {
        self.leaf(&[name], ExtendedKeyUsagePurpose::ClientAuth)
    }

    fn leaf(&self, names: &[&str], usage: ExtendedKeyUsagePurpose) -> Leaf {
        self.leaf_with(
            names,
            Vec::new(),
            usage,
            KeyPair::generate().expect("leaf key"),
        )
    }

    fn leaf_with(
        &self,
        names: &[&str],
        extra: Vec<SanType>,
        usage: ExtendedKeyUsagePurpose,
        key: KeyPair,
    ) -> Leaf {
        let sans: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(sans).expect("leaf params");
        params.subject_alt_names.extend(extra);
        if let Some(first) = names.first() {
            params.distinguished_name.push(DnType::CommonName, *first);
        }
        params.extended_key_usages = vec![usage];
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        let cert = params.signed_by(&key, &self.issuer).expect("sign leaf");
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    /// A rustls root store trusting only this CA.
    pub fn roots(&self) -> Arc<RootCertStore> {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(self.cert_pem.as_bytes()) {
            roots.add(cert.expect("CA PEM")).expect("add CA to roots");
        }
        Arc::new(roots)
    }
}

impl Leaf {
    /// The certificate chain, DER.
    pub fn chain(&self) -> Vec<CertificateDer<'static>> {
        CertificateDer::pem_slice_iter(self.cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .expect("leaf PEM")
    }

    /// The private key, DER.
    pub fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).expect("key PEM")
    }
}

/// A `kubernetes.io/tls` Secret holding `leaf`, with `data` base64-encoded as Kubernetes
/// stores it.
pub fn tls_secret_yaml(namespace: &str, name: &str, leaf: &Leaf) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n  namespace: {namespace}\ntype: kubernetes.io/tls\ndata:\n  tls.crt: {}\n  tls.key: {}\n",
        base64(leaf.cert_pem.as_bytes()),
        base64(leaf.key_pem.as_bytes()),
    )
}

/// A ConfigMap with the CA bundle `pem` under `ca.crt`, as BackendTLSPolicy and frontend
/// client validation reference it.
pub fn ca_config_map_yaml(namespace: &str, name: &str, pem: &str) -> String {
    let indented: String = pem.lines().map(|l| format!("    {l}\n")).collect();
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: {namespace}\ndata:\n  ca.crt: |\n{indented}"
    )
}

/// Standard base64 with padding (RFC 4648), as Secret `data` uses.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use rustls::client::danger::ServerCertVerifier;

    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (input, want) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), want);
        }
    }

    #[test]
    fn leaf_is_signed_by_the_ca() {
        let ca = Ca::new("test CA");
        let leaf = ca.server(&["a.example.com", "*.b.example.com"]);
        let roots = ca.roots();
        let server = rustls::client::WebPkiServerVerifier::builder_with_provider(
            roots,
            Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .expect("server verifier");
        let chain = leaf.chain();
        let name = rustls_pki_types::ServerName::try_from("x.b.example.com").expect("name");
        let now = rustls_pki_types::UnixTime::now();
        server
            .verify_server_cert(&chain[0], &chain[1..], &name, &[], now)
            .expect("leaf verifies against its CA for a wildcard name");
        let other = rustls_pki_types::ServerName::try_from("c.example.com").expect("name");
        assert!(
            server
                .verify_server_cert(&chain[0], &chain[1..], &other, &[], now)
                .is_err(),
            "a name outside the SANs must not verify"
        );
        assert!(matches!(leaf.key(), PrivateKeyDer::Pkcs8(_)));
    }
}
