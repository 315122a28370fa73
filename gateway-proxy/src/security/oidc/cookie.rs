//! Sealed cookie values: AES-256-GCM (ring) with a random 96-bit nonce, the cookie's name as
//! associated data (a value cannot be moved to another cookie), base64url without padding:
//! `nonce || ciphertext || tag`. The key is derived with HKDF-SHA256 from the client secret and
//! the policy's `namespace/name`, so every replica derives the same key and a new client
//! secret ends every session.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::hkdf;
use ring::rand::{SecureRandom, SystemRandom};

/// HKDF salt: names the use, so the same secret elsewhere gives another key.
const SALT: &[u8] = b"gantry.dev/oidc/cookie/v1";
/// A sealed value longer than this is not opened.
const MAX_SEALED_BYTES: usize = 8 * 1024;

/// Seals and opens cookie values with one key.
pub struct Sealer {
    key: LessSafeKey,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(<redacted>)")
    }
}

impl Sealer {
    /// The key of `policy` (`namespace/name`) with `secret`.
    pub fn derive(secret: &[u8], policy: &str) -> Self {
        let info = [policy.as_bytes()];
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, SALT).extract(secret);
        let okm = prk
            .expand(&info, &AES_256_GCM)
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        Self {
            key: LessSafeKey::new(UnboundKey::from(okm)),
        }
    }

    /// `plaintext` sealed for the cookie `name`.
    pub fn seal(&self, name: &str, plaintext: &[u8]) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .expect("the system random generator works");
        let mut buffer = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(name.as_bytes()),
                &mut buffer,
            )
            .expect("AES-GCM seals any length a cookie has");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buffer);
        URL_SAFE_NO_PAD.encode(out)
    }

    /// The plaintext of a value sealed for the cookie `name`, or `None` when it was not
    /// sealed with this key for this name, or was altered.
    pub fn open(&self, name: &str, sealed: &str) -> Option<Vec<u8>> {
        if sealed.len() > MAX_SEALED_BYTES {
            return None;
        }
        let mut bytes = URL_SAFE_NO_PAD.decode(sealed).ok()?;
        if bytes.len() < NONCE_LEN + AES_256_GCM.tag_len() {
            return None;
        }
        let mut ciphertext = bytes.split_off(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(&bytes).ok()?;
        let plaintext = self
            .key
            .open_in_place(nonce, Aad::from(name.as_bytes()), &mut ciphertext)
            .ok()?;
        Some(plaintext.to_vec())
    }
}

/// `n` random bytes, base64url without padding.
pub fn random_token(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    SystemRandom::new()
        .fill(&mut bytes)
        .expect("the system random generator works");
    URL_SAFE_NO_PAD.encode(bytes)
}

/// RFC 7636 `S256`: base64url(SHA-256(verifier)).
pub fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(ring::digest::digest(
        &ring::digest::SHA256,
        verifier.as_bytes(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_value_opens_with_the_same_key_and_name_only() {
        let sealer = Sealer::derive(b"client-secret", "default/app");
        let sealed = sealer.seal("session", b"tokens");
        assert_eq!(
            sealer.open("session", &sealed).as_deref(),
            Some(&b"tokens"[..])
        );
        // Another replica derives the same key.
        let replica = Sealer::derive(b"client-secret", "default/app");
        assert_eq!(
            replica.open("session", &sealed).as_deref(),
            Some(&b"tokens"[..])
        );
        // Another cookie name, policy or secret does not open it.
        assert_eq!(sealer.open("state", &sealed), None);
        assert_eq!(
            Sealer::derive(b"client-secret", "default/other").open("session", &sealed),
            None
        );
        assert_eq!(
            Sealer::derive(b"rotated", "default/app").open("session", &sealed),
            None
        );
        // Two seals of the same text differ (random nonce).
        assert_ne!(sealer.seal("session", b"tokens"), sealed);
        assert!(!sealed.contains("tokens"));
    }

    #[test]
    fn a_tampered_value_is_refused() {
        let sealer = Sealer::derive(b"client-secret", "default/app");
        let sealed = sealer.seal("session", b"{\"s\":\"alice\"}");
        let mut bytes = URL_SAFE_NO_PAD.decode(&sealed).unwrap();
        for i in [0, NONCE_LEN, bytes.len() - 1] {
            bytes[i] ^= 1;
            assert_eq!(
                sealer.open("session", &URL_SAFE_NO_PAD.encode(&bytes)),
                None,
                "byte {i}"
            );
            bytes[i] ^= 1;
        }
        assert_eq!(sealer.open("session", &sealed[..sealed.len() - 2]), None);
        assert_eq!(sealer.open("session", ""), None);
        assert_eq!(sealer.open("session", "not base64 !"), None);
        assert_eq!(
            sealer.open("session", &"A".repeat(MAX_SEALED_BYTES + 1)),
            None
        );
    }

    #[test]
    fn pkce_s256_matches_rfc_7636_appendix_b() {
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        let verifier = random_token(32);
        assert_eq!(verifier.len(), 43);
        assert_ne!(random_token(32), verifier);
    }
}
