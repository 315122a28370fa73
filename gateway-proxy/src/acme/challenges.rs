//! Challenge answers the listeners serve while the CA validates: HTTP-01 key authorizations
//! by token (RFC 8555 §8.3) and TLS-ALPN-01 certificates by hostname (RFC 8737).

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;

use rcgen::{CertificateParams, CustomExtension, KeyPair};
use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use super::store::AcmeStore;

/// RFC 8555 §8.3: where HTTP-01 answers are served.
pub const HTTP01_PREFIX: &str = "/.well-known/acme-challenge/";

/// RFC 8737 §6.2: the ALPN protocol of a TLS-ALPN-01 validation handshake.
pub const TLS_ALPN01_PROTOCOL: &[u8] = b"acme-tls/1";

/// The pending challenges; cheap to clone (shared).
#[derive(Clone, Default)]
pub struct Challenges {
    /// Copy-on-write maps: a lookup on the data path takes no lock.
    http01: Arc<ArcSwap<HashMap<String, String>>>,
    tls_alpn01: Arc<ArcSwap<HashMap<String, Arc<CertifiedKey>>>>,
    /// A storage directory shared with other proxies: answers they published are read on a
    /// miss.
    store: Option<AcmeStore>,
}

impl std::fmt::Debug for Challenges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Counts only: key authorizations and challenge keys stay out of logs.
        f.debug_struct("Challenges")
            .field("http01", &self.http01.load().len())
            .field("tls_alpn01", &self.tls_alpn01.load().len())
            .finish_non_exhaustive()
    }
}

impl Challenges {
    pub fn new(store: Option<AcmeStore>) -> Self {
        Self {
            store,
            ..Self::default()
        }
    }

    /// The answer for a request path, when it is an HTTP-01 challenge path of a token this
    /// process or one sharing its storage published; `None` lets the request route as usual.
    pub fn http01_response(&self, path: &str) -> Option<String> {
        let token = path.strip_prefix(HTTP01_PREFIX)?;
        if let Some(found) = self.http01.load().get(token) {
            return Some(found.clone());
        }
        self.store.as_ref()?.http01(token).ok().flatten()
    }

    pub async fn add_http01(&self, token: &str, key_authorization: &str) -> std::io::Result<()> {
        if let Some(store) = &self.store {
            store.save_http01(token, key_authorization).await?;
        }
        self.http01.rcu(|map| {
            let mut map = HashMap::clone(map);
            map.insert(token.to_owned(), key_authorization.to_owned());
            map
        });
        Ok(())
    }

    pub async fn remove_http01(&self, token: &str) {
        if let Some(store) = &self.store {
            let _ = store.remove_http01(token).await;
        }
        self.http01.rcu(|map| {
            let mut map = HashMap::clone(map);
            map.remove(token);
            map
        });
    }

    /// The TLS-ALPN-01 certificate for `hostname` (the SNI of an `acme-tls/1` handshake):
    /// one this process published, else one built from the answer another process sharing
    /// the storage directory published.
    pub fn tls_alpn01_cert(&self, hostname: &str) -> Option<Arc<CertifiedKey>> {
        let hostname = hostname.to_ascii_lowercase();
        if let Some(found) = self.tls_alpn01.load().get(&hostname) {
            return Some(found.clone());
        }
        let digest = self.store.as_ref()?.tls_alpn01(&hostname).ok().flatten()?;
        challenge_certificate(&hostname, &digest).ok()
    }

    /// Publishes the RFC 8737 §3 challenge certificate for `hostname`.
    pub async fn add_tls_alpn01(
        &self,
        hostname: &str,
        key_auth_sha256: &[u8],
    ) -> Result<(), String> {
        let hostname = hostname.to_ascii_lowercase();
        let certified = challenge_certificate(&hostname, key_auth_sha256)?;
        if let Some(store) = &self.store {
            store
                .save_tls_alpn01(&hostname, key_auth_sha256)
                .await
                .map_err(|e| format!("ACME storage: writing the challenge: {e}"))?;
        }
        self.tls_alpn01.rcu(|map| {
            let mut map = HashMap::clone(map);
            map.insert(hostname.clone(), Arc::clone(&certified));
            map
        });
        Ok(())
    }

    pub async fn remove_tls_alpn01(&self, hostname: &str) {
        let hostname = hostname.to_ascii_lowercase();
        if let Some(store) = &self.store {
            let _ = store.remove_tls_alpn01(&hostname).await;
        }
        self.tls_alpn01.rcu(|map| {
            let mut map = HashMap::clone(map);
            map.remove(&hostname);
            map
        });
    }
}

/// The RFC 8737 §3 challenge certificate: self-signed, one dNSName SAN, and the critical
/// `acmeIdentifier` extension holding SHA-256 of the key authorization.
fn challenge_certificate(
    hostname: &str,
    key_auth_sha256: &[u8],
) -> Result<Arc<CertifiedKey>, String> {
    let mut params =
        CertificateParams::new(vec![hostname.to_owned()]).map_err(|e| e.to_string())?;
    params
        .custom_extensions
        .push(CustomExtension::new_acme_identifier(key_auth_sha256));
    let key = KeyPair::generate().map_err(|e| e.to_string())?;
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let signing =
        rustls::crypto::ring::sign::any_supported_type(&key_der).map_err(|e| e.to_string())?;
    Ok(Arc::new(CertifiedKey::new(
        vec![CertificateDer::from(cert.der().to_vec())],
        signing,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acme::store::SharedState;

    #[tokio::test]
    async fn http01_answers_known_tokens_only() {
        let challenges = Challenges::new(None);
        challenges
            .add_http01("tok", "tok.thumb")
            .await
            .expect("add");
        assert_eq!(
            challenges.http01_response("/.well-known/acme-challenge/tok"),
            Some("tok.thumb".to_owned())
        );
        assert_eq!(
            challenges.http01_response("/.well-known/acme-challenge/other"),
            None
        );
        assert_eq!(challenges.http01_response("/tok"), None);
        challenges.remove_http01("tok").await;
        assert_eq!(
            challenges.http01_response("/.well-known/acme-challenge/tok"),
            None
        );
    }

    #[tokio::test]
    async fn tls_alpn01_cert_carries_the_acme_identifier() {
        let challenges = Challenges::new(None);
        challenges
            .add_tls_alpn01("Example.com", &[7u8; 32])
            .await
            .expect("cert");
        let cert = challenges.tls_alpn01_cert("example.com").expect("cert");
        let der = cert.cert[0].as_ref().to_vec();
        // id-pe-acmeIdentifier, 1.3.6.1.5.5.7.1.31, DER-encoded.
        let oid = [0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x01, 0x1f];
        assert!(
            der.windows(oid.len()).any(|w| w == oid),
            "no acmeIdentifier"
        );
        assert!(challenges.tls_alpn01_cert("other.com").is_none());
    }

    /// A [`SharedState`] in memory, as every replica sees the cluster's.
    #[derive(Default)]
    struct Memory(parking_lot::Mutex<std::collections::BTreeMap<String, String>>);

    impl SharedState for Memory {
        fn get(&self, key: &str) -> Option<String> {
            self.0.lock().get(key).cloned()
        }
        fn set(
            &self,
            writes: Vec<(String, Option<String>)>,
        ) -> futures::future::BoxFuture<'_, std::io::Result<()>> {
            let mut map = self.0.lock();
            for (key, value) in writes {
                match value {
                    Some(v) => map.insert(key, v),
                    None => map.remove(&key),
                };
            }
            Box::pin(async { Ok(()) })
        }
    }

    #[tokio::test]
    async fn a_replica_answers_what_another_published_in_the_shared_state() {
        let state = Arc::new(Memory::default());
        let leader = Challenges::new(Some(AcmeStore::shared(state.clone())));
        let other = Challenges::new(Some(AcmeStore::shared(state.clone())));
        leader.add_http01("tok", "tok.thumb").await.expect("add");
        leader
            .add_tls_alpn01("a.example.com", &[9u8; 32])
            .await
            .expect("add");
        assert_eq!(
            other.http01_response("/.well-known/acme-challenge/tok"),
            Some("tok.thumb".to_owned())
        );
        assert!(other.tls_alpn01_cert("A.example.com").is_some());
        // Keys a Secret's data accepts.
        let keys: Vec<String> = state.0.lock().keys().cloned().collect();
        assert_eq!(keys, ["http-01.tok", "tls-alpn-01.a.example.com"]);
        leader.remove_http01("tok").await;
        leader.remove_tls_alpn01("a.example.com").await;
        assert_eq!(
            other.http01_response("/.well-known/acme-challenge/tok"),
            None
        );
        assert!(other.tls_alpn01_cert("a.example.com").is_none());
        assert!(state.0.lock().is_empty());
    }

    #[tokio::test]
    async fn an_order_is_stored_whole_in_the_shared_state() {
        let state = Arc::new(Memory::default());
        let store = AcmeStore::shared(state.clone());
        store
            .save_pending_order("a.example.com", "https://ca/order/1", "KEY")
            .await
            .expect("save");
        assert_eq!(
            store.pending_order("a.example.com").expect("read"),
            Some(("https://ca/order/1".to_owned(), "KEY".to_owned()))
        );
        assert!(store.lock_orders("a.example.com").expect("lock").is_none());
        store
            .clear_pending_order("a.example.com")
            .await
            .expect("clear");
        assert!(state.0.lock().is_empty());
    }
}
