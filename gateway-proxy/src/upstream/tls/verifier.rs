//! The backend certificate check for `validation.subjectAltNames`.
//!
//! webpki's verifier checks a chain and one server name; it cannot express "any of these DNS
//! names or URIs" (URI SANs such as SPIFFE IDs have no server name form at all). So when a
//! policy lists subjectAltNames this verifier checks the chain with rustls' own function and
//! then the names; without them the standard `WebPkiServerVerifier` is used.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{verify_server_cert_signed_by_trust_anchor, verify_server_name};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, DigitallySignedStruct, Error, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use gantry_translate::ir::SubjectAltNameIr;

/// Accepts a certificate that chains to `roots` and carries at least one of `names`.
/// BackendTLSPolicy: "When specified the certificate served from the backend MUST have at
/// least one Subject Alternate Name matching one of the specified SubjectAltNames", and the
/// hostname "MUST NOT be used for authentication" then, so the SNI is ignored here.
#[derive(Debug)]
pub struct SubjectAltNameVerifier {
    roots: Arc<RootCertStore>,
    names: Vec<SubjectAltNameIr>,
    provider: Arc<CryptoProvider>,
}

impl SubjectAltNameVerifier {
    pub fn new(
        roots: Arc<RootCertStore>,
        names: Vec<SubjectAltNameIr>,
        provider: Arc<CryptoProvider>,
    ) -> Self {
        Self {
            roots,
            names,
            provider,
        }
    }

    fn carries_a_name(
        &self,
        end_entity: &CertificateDer<'_>,
        cert: &ParsedCertificate<'_>,
    ) -> bool {
        let uris: Vec<String> = webpki::EndEntityCert::try_from(end_entity)
            .map(|c| c.valid_uri_names().map(str::to_owned).collect())
            .unwrap_or_default();
        self.names.iter().any(|name| match name {
            SubjectAltNameIr::Hostname(host) => ServerName::try_from(host.as_str())
                .is_ok_and(|server_name| verify_server_name(cert, &server_name).is_ok()),
            SubjectAltNameIr::Uri(uri) => uris.iter().any(|presented| presented == uri),
        })
    }
}

impl ServerCertVerifier for SubjectAltNameVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let cert = ParsedCertificate::try_from(end_entity)?;
        verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )?;
        if self.carries_a_name(end_entity, &cert) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(Error::InvalidCertificate(CertificateError::NotValidForName))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};

    use super::*;

    struct Ca {
        cert: CertificateDer<'static>,
        issuer: Issuer<'static, KeyPair>,
    }

    fn ca() -> Ca {
        named_ca("test CA")
    }

    fn named_ca(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Ca {
            cert: cert.der().clone(),
            issuer: Issuer::new(params, key),
        }
    }

    fn leaf(ca: &Ca, sans: Vec<SanType>) -> CertificateDer<'static> {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names = sans;
        let key = KeyPair::generate().unwrap();
        params.signed_by(&key, &ca.issuer).unwrap().der().clone()
    }

    fn verifier(ca: &Ca, names: Vec<SubjectAltNameIr>) -> SubjectAltNameVerifier {
        let mut roots = RootCertStore::empty();
        roots.add(ca.cert.clone()).unwrap();
        SubjectAltNameVerifier::new(
            Arc::new(roots),
            names,
            Arc::new(rustls::crypto::ring::default_provider()),
        )
    }

    fn check(v: &SubjectAltNameVerifier, cert: &CertificateDer<'_>) -> Result<(), Error> {
        // The SNI is deliberately unrelated: with subjectAltNames it is not used to
        // authenticate the backend.
        let sni = ServerName::try_from("sni.example.com").unwrap();
        v.verify_server_cert(cert, &[], &sni, &[], UnixTime::now())
            .map(|_| ())
    }

    fn dns(name: &str) -> SanType {
        SanType::DnsName(name.try_into().unwrap())
    }

    fn uri(value: &str) -> SanType {
        SanType::URI(value.try_into().unwrap())
    }

    #[test]
    fn any_listed_hostname_matches_including_wildcards_and_the_sni_is_not_used() {
        let ca = ca();
        let cert = leaf(&ca, vec![dns("a.example.com"), dns("*.b.example.com")]);
        let v = verifier(
            &ca,
            vec![
                SubjectAltNameIr::Hostname("nope.example.com".into()),
                SubjectAltNameIr::Hostname("x.b.example.com".into()),
            ],
        );
        assert_eq!(check(&v, &cert), Ok(()));
        let v = verifier(
            &ca,
            vec![SubjectAltNameIr::Hostname("sni.example.com".into())],
        );
        assert_eq!(
            check(&v, &cert),
            Err(Error::InvalidCertificate(CertificateError::NotValidForName))
        );
    }

    #[test]
    fn uri_names_match_exactly() {
        let ca = ca();
        let spiffe = "spiffe://cluster.local/ns/apps/sa/api";
        let cert = leaf(&ca, vec![uri(spiffe)]);
        let v = verifier(&ca, vec![SubjectAltNameIr::Uri(spiffe.into())]);
        assert_eq!(check(&v, &cert), Ok(()));
        let v = verifier(
            &ca,
            vec![SubjectAltNameIr::Uri(
                "spiffe://cluster.local/ns/apps/sa/other".into(),
            )],
        );
        assert!(check(&v, &cert).is_err());
        // A DNS name equal to the URI's text is not a URI SAN.
        let v = verifier(
            &ca,
            vec![SubjectAltNameIr::Hostname("cluster.local".into())],
        );
        assert!(check(&v, &cert).is_err());
    }

    #[test]
    fn a_certificate_from_another_ca_fails_even_with_a_matching_name() {
        let trusted = ca();
        let other = named_ca("another CA");
        let cert = leaf(&other, vec![dns("a.example.com")]);
        let v = verifier(
            &trusted,
            vec![SubjectAltNameIr::Hostname("a.example.com".into())],
        );
        assert_eq!(
            check(&v, &cert),
            Err(Error::InvalidCertificate(CertificateError::UnknownIssuer))
        );
    }
}
