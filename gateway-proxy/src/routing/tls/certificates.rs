//! The certificates of one listener, chosen per handshake by SNI: Gateway
//! `listeners[].tls`: "The GatewayClass MUST use the longest matching SNI out of all
//! available certificates for any TLS handshake."

use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// One certificate and the DNS names it is valid for.
#[derive(Debug)]
struct Entry {
    key: Arc<CertifiedKey>,
    /// Lower case; wildcards as `*.example.com`.
    names: Vec<String>,
}

/// A listener's certificates in `certificateRefs` order.
#[derive(Debug)]
pub struct ListenerCertificates {
    entries: Vec<Entry>,
}

impl ListenerCertificates {
    pub fn new(certificates: impl IntoIterator<Item = (Arc<CertifiedKey>, Vec<String>)>) -> Self {
        let entries = certificates
            .into_iter()
            .map(|(key, names)| Entry {
                key,
                names: names.iter().map(|n| n.to_ascii_lowercase()).collect(),
            })
            .collect();
        Self { entries }
    }

    /// The certificate for `server_name` among those whose key can sign with one of
    /// `schemes` (an RSA and an ECDSA certificate for the same names are both kept, and the
    /// client's signature algorithms decide): the longest matching name wins, an exact name
    /// beating any wildcard; without a match (or without SNI) the first usable certificate.
    fn choose(
        &self,
        server_name: Option<&str>,
        usable: impl Fn(&CertifiedKey) -> bool,
    ) -> Option<Arc<CertifiedKey>> {
        let usable: Vec<&Entry> = self.entries.iter().filter(|e| usable(&e.key)).collect();
        let best = server_name.and_then(|name| {
            usable
                .iter()
                .filter_map(|e| specificity(&e.names, name).map(|s| (s, *e)))
                // `max_by_key` keeps the last of equals: reverse to keep the first.
                .rev()
                .max_by_key(|(s, _)| *s)
                .map(|(_, e)| e)
        });
        best.or_else(|| usable.first().copied())
            .map(|e| e.key.clone())
    }
}

/// How specifically one of `names` matches `server_name`: `None` when none does. An exact
/// name scores above every wildcard; a wildcard (`*.example.com`, one label, as certificate
/// wildcards match) scores by the length of its suffix.
fn specificity(names: &[String], server_name: &str) -> Option<usize> {
    names
        .iter()
        .filter_map(|n| {
            if n == server_name {
                return Some(usize::MAX / 2 + n.len());
            }
            let suffix = n.strip_prefix("*.")?;
            let (label, rest) = server_name.split_once('.')?;
            (!label.is_empty() && rest == suffix).then_some(suffix.len())
        })
        .max()
}

impl ResolvesServerCert for ListenerCertificates {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let schemes = hello.signature_schemes();
        let name = hello.server_name().map(|n| n.to_ascii_lowercase());
        self.choose(name.as_deref(), |key| {
            key.key.choose_scheme(schemes).is_some()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(names: &[&str]) -> (Arc<CertifiedKey>, Vec<String>) {
        let pair = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(
            names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>(),
        )
        .unwrap()
        .self_signed(&pair)
        .unwrap();
        let der = rustls_pki_types::PrivateKeyDer::Pkcs8(pair.serialize_der().into());
        let certified = CertifiedKey::from_der(
            vec![cert.der().clone()],
            der,
            &rustls::crypto::ring::default_provider(),
        )
        .unwrap();
        (
            Arc::new(certified),
            names.iter().map(|n| (*n).to_owned()).collect(),
        )
    }

    #[test]
    fn the_longest_matching_name_wins_and_the_first_is_the_default() {
        let wildcard = key(&["*.example.com"]);
        let exact = key(&["a.example.com"]);
        let deeper = key(&["*.b.example.com"]);
        let certs = ListenerCertificates::new([wildcard.clone(), exact.clone(), deeper.clone()]);
        let pick = |name: Option<&str>| certs.choose(name, |_| true).unwrap();
        assert!(Arc::ptr_eq(&pick(Some("a.example.com")), &exact.0));
        assert!(Arc::ptr_eq(&pick(Some("z.example.com")), &wildcard.0));
        assert!(Arc::ptr_eq(&pick(Some("x.b.example.com")), &deeper.0));
        // A wildcard covers one label only; no match falls back to the first.
        assert!(Arc::ptr_eq(&pick(Some("x.y.c.example.com")), &wildcard.0));
        assert!(Arc::ptr_eq(&pick(None), &wildcard.0));
    }

    #[test]
    fn only_certificates_the_client_can_verify_are_chosen() {
        let first = key(&["a.example.com"]);
        let second = key(&["a.example.com"]);
        let certs = ListenerCertificates::new([first.clone(), second.clone()]);
        let not_first = |k: &CertifiedKey| !std::ptr::eq(k, first.0.as_ref());
        let chosen = certs.choose(Some("a.example.com"), not_first).unwrap();
        assert!(Arc::ptr_eq(&chosen, &second.0));
        assert!(certs.choose(Some("a.example.com"), |_| false).is_none());
    }
}
