//! Tokens that already verified, with their decoded claims, so a client that sends the same
//! token with every request pays once for the signature check and for decoding and parsing
//! the token, not on every request. An ES256 or RSA check costs far more than the rest of a
//! request, and decoding the token's JSON about as much as the rest of a request
//! (`e2e/bench/run.sh --instructions-only`, the `JWT (ES256)` case in docs/benchmarks.md).
//!
//! What does not change while the token and the provider stay the same is remembered: the
//! signature, `iss` and `aud`. `exp` and `nbf` are checked against the clock, and required
//! claims, on every request. A token is remembered whole (compared byte for byte, never by a
//! hash alone) together with the key set it verified against ([`super::KeySet::id`]): once the
//! JWKS is fetched again or the policy recompiled, the token is verified again, so a key
//! removed from the JWKS stops admitting its tokens at once. At most [`CAPACITY`] tokens are
//! kept per provider; when full, the table starts again empty.

use std::sync::Arc;

use foldhash::fast::RandomState;

use super::Claims;

/// Tokens remembered per provider at most.
pub const CAPACITY: usize = 1024;

/// Signed tokens (`header.payload.signature`) → the id of the key set that verified them, and
/// their claims.
#[derive(Debug)]
pub struct VerifiedTokens {
    tokens: papaya::HashMap<Box<str>, (u64, Arc<Claims>), RandomState>,
}

impl Default for VerifiedTokens {
    fn default() -> Self {
        Self {
            tokens: papaya::HashMap::with_hasher(RandomState::default()),
        }
    }
}

impl VerifiedTokens {
    /// The claims of `token`, when it verified against the key set `keys`.
    pub fn get(&self, token: &str, keys: u64) -> Option<Arc<Claims>> {
        match self.tokens.pin().get(token) {
            Some((id, claims)) if *id == keys => Some(claims.clone()),
            _ => None,
        }
    }

    /// Remembers that `token` verified against the key set `keys`, with its claims.
    pub fn remember(&self, token: &str, keys: u64, claims: Arc<Claims>) {
        let tokens = self.tokens.pin();
        if tokens.len() >= CAPACITY {
            tokens.clear();
        }
        tokens.insert(token.into(), (keys, claims));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> Arc<Claims> {
        Arc::new(Claims::new(serde_json::Map::new()))
    }

    #[test]
    fn a_token_is_held_only_for_the_key_set_that_verified_it() {
        let verified = VerifiedTokens::default();
        assert!(verified.get("a.b.c", 1).is_none());
        let remembered = claims();
        verified.remember("a.b.c", 1, remembered.clone());
        let held = verified.get("a.b.c", 1).expect("held");
        assert!(Arc::ptr_eq(&held, &remembered), "the claims decoded once");
        assert!(
            verified.get("a.b.c", 2).is_none(),
            "another key set verifies again"
        );
        assert!(
            verified.get("a.b.d", 1).is_none(),
            "another signature is another token"
        );
    }

    #[test]
    fn a_full_table_starts_again() {
        let verified = VerifiedTokens::default();
        for i in 0..CAPACITY {
            verified.remember(&format!("t.{i}.s"), 7, claims());
        }
        assert!(verified.get("t.0.s", 7).is_some());
        verified.remember("one.more.token", 7, claims());
        assert!(verified.get("t.0.s", 7).is_none());
        assert!(verified.get("one.more.token", 7).is_some());
    }
}
