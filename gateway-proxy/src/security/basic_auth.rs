//! `basicAuth`: `Authorization: Basic` checked against htpasswd hashes (bcrypt, `{SHA}`).
//!
//! bcrypt is slow on purpose (about 50 ms at cost 10), so a successful verification is
//! remembered for as long as this compiled policy lives (until its users change), keyed by the
//! SHA-256 of the `Authorization` value: a table of [`CACHE_LIMIT`] slots of atomics (no lock),
//! each holding 128 bits of one such digest, a newer verification replacing the older one in
//! its slot. Failures are never cached. bcrypt runs on the blocking thread pool so that it
//! does not stall other requests of the same worker.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine as _;
use gantry_translate::ir::BasicAuthIr;
use http::header::{AUTHORIZATION, HeaderValue};
use http::request::Parts;
use http::{HeaderName, StatusCode};

use super::{Denial, Identity, identity_of};

/// Verified credentials remembered per compiled policy.
pub const CACHE_LIMIT: usize = 4096;

#[derive(Debug)]
pub struct BasicAuth {
    users: HashMap<String, User>,
    challenge: HeaderValue,
    forward_username: Option<HeaderName>,
    verified: Verified,
}

/// Digests of verified `Authorization` values, direct-mapped.
struct Verified(Box<[[AtomicU64; 2]]>);

impl std::fmt::Debug for Verified {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Verified")
    }
}

impl Verified {
    fn new() -> Self {
        Self(
            (0..CACHE_LIMIT)
                .map(|_| [AtomicU64::new(0), AtomicU64::new(0)])
                .collect(),
        )
    }

    fn parts(&self, key: &[u8; 32]) -> (&[AtomicU64; 2], u64, u64) {
        let word = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&key[i..i + 8]);
            u64::from_le_bytes(w)
        };
        let index = (word(16) % self.0.len() as u64) as usize;
        (&self.0[index], word(0), word(8))
    }

    fn contains(&self, key: &[u8; 32]) -> bool {
        let (slot, a, b) = self.parts(key);
        slot[0].load(Ordering::Relaxed) == a && slot[1].load(Ordering::Relaxed) == b
    }

    fn insert(&self, key: &[u8; 32]) {
        let (slot, a, b) = self.parts(key);
        slot[0].store(a, Ordering::Relaxed);
        slot[1].store(b, Ordering::Relaxed);
    }
}

#[derive(Debug)]
struct User {
    hash: Hash,
    identity: Identity,
}

#[derive(Debug, Clone)]
enum Hash {
    Bcrypt(String),
    /// SHA-1 of the password.
    Sha([u8; 20]),
    /// A hash the data plane cannot verify: never matches.
    Unusable,
}

impl BasicAuth {
    pub fn compile(ir: &BasicAuthIr) -> Self {
        let users = ir
            .users
            .iter()
            .map(|u| {
                let text = u.hash.expose();
                let hash = if let Some(b64) = text.strip_prefix("{SHA}") {
                    base64::engine::general_purpose::STANDARD
                        .decode(b64)
                        .ok()
                        .and_then(|b| <[u8; 20]>::try_from(b.as_slice()).ok())
                        .map_or(Hash::Unusable, Hash::Sha)
                } else if text.starts_with("$2") {
                    Hash::Bcrypt(text.to_owned())
                } else {
                    Hash::Unusable
                };
                let identity = identity_of(&u.name, u.consumer.as_ref());
                (u.name.clone(), User { hash, identity })
            })
            .collect();
        let realm = ir.realm.replace(['"', '\\'], "");
        Self {
            users,
            challenge: HeaderValue::from_str(&format!("Basic realm=\"{realm}\""))
                .unwrap_or(HeaderValue::from_static("Basic")),
            forward_username: ir
                .forward_username_header
                .as_deref()
                .and_then(|h| HeaderName::from_bytes(h.as_bytes()).ok()),
            verified: Verified::new(),
        }
    }

    fn deny(&self, message: &str) -> Denial {
        let mut d = Denial::new(StatusCode::UNAUTHORIZED, "basic_auth", message);
        d.challenge = Some(self.challenge.clone());
        d
    }

    /// Checks the credentials, removes `Authorization`, and names the user upstream when
    /// configured (a client's own value in that header is removed).
    pub async fn authenticate(&self, parts: &mut Parts) -> Result<Identity, Denial> {
        if let Some(h) = &self.forward_username {
            parts.headers.remove(h);
        }
        let header = parts.headers.remove(AUTHORIZATION);
        let Some(value) = header.as_ref().and_then(|v| v.to_str().ok()) else {
            return Err(self.deny("basic authentication is required"));
        };
        let (user, password) =
            decode(value).ok_or_else(|| self.deny("malformed Basic credentials"))?;
        let Some(known) = self.users.get(&user) else {
            return Err(self.deny("unknown user or wrong password"));
        };
        let digest = ring::digest::digest(&ring::digest::SHA256, value.as_bytes());
        let mut key = [0u8; 32];
        key.copy_from_slice(digest.as_ref());
        if !self.verified.contains(&key) {
            if !verify(&known.hash, password).await {
                return Err(self.deny("unknown user or wrong password"));
            }
            self.verified.insert(&key);
        }
        if let Some(h) = &self.forward_username
            && let Ok(v) = HeaderValue::from_str(&user)
        {
            parts.headers.insert(h.clone(), v);
        }
        Ok(known.identity.clone())
    }
}

/// `Basic <base64(user:password)>`.
fn decode(value: &str) -> Option<(String, String)> {
    let (scheme, b64) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

async fn verify(hash: &Hash, password: String) -> bool {
    match hash {
        Hash::Sha(expected) => {
            let digest =
                ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, password.as_bytes());
            constant_time_eq(digest.as_ref(), expected)
        }
        Hash::Bcrypt(hash) => {
            let hash = hash.clone();
            tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash).unwrap_or(false))
                .await
                .unwrap_or(false)
        }
        Hash::Unusable => false,
    }
}

/// `a == b` in time that depends on the lengths only.
pub(super) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_translate::ir::{HtpasswdUserIr, PasswordHash};

    fn auth() -> BasicAuth {
        // `htpasswd -s` of "password"; bcrypt at the lowest cost, of "secret".
        let bcrypt = bcrypt::hash_with_salt("secret", 4, [7u8; 16])
            .unwrap()
            .format_for_version(bcrypt::Version::TwoY);
        BasicAuth::compile(&BasicAuthIr {
            realm: "r".into(),
            users: vec![
                HtpasswdUserIr {
                    name: "sha".into(),
                    hash: PasswordHash::new("{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g="),
                    consumer: None,
                },
                HtpasswdUserIr {
                    name: "bc".into(),
                    hash: PasswordHash::new(bcrypt),
                    consumer: None,
                },
            ],
            forward_username_header: Some("x-user".into()),
        })
    }

    fn parts(user: &str, password: &str) -> Parts {
        let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        http::Request::builder()
            .header("authorization", format!("Basic {b64}"))
            .body(())
            .unwrap()
            .into_parts()
            .0
    }

    #[tokio::test]
    async fn sha_and_bcrypt_users_verify_and_wrong_passwords_do_not() {
        let a = auth();
        let mut p = parts("sha", "password");
        assert!(a.authenticate(&mut p).await.is_ok());
        assert_eq!(p.headers["x-user"], "sha");
        assert!(p.headers.get("authorization").is_none());
        assert!(a.authenticate(&mut parts("bc", "secret")).await.is_ok());
        // Cached now; still only for the exact credentials.
        assert!(a.authenticate(&mut parts("bc", "secret")).await.is_ok());
        let denial = a.authenticate(&mut parts("bc", "wrong")).await.unwrap_err();
        assert_eq!(denial.status, StatusCode::UNAUTHORIZED);
        assert_eq!(denial.challenge.unwrap(), "Basic realm=\"r\"");
        assert!(a.authenticate(&mut parts("nobody", "x")).await.is_err());
    }
}
