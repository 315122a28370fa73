//! Tokens whose signature already verified, so a client that sends the same token with every
//! request pays for one signature check, not one per request. An ES256 or RSA check costs far
//! more than the rest of a request (`e2e/bench/run.sh --instructions-only`, the `JWT (ES256)`
//! case in docs/benchmarks.md).
//!
//! Only the signature is remembered: `exp`, `nbf`, `iss`, `aud` and required claims are checked
//! on every request. A token is remembered whole (compared byte for byte, never by a hash
//! alone) together with the key set it verified against ([`super::KeySet::id`]): once the
//! JWKS is fetched again or the policy recompiled, the token is verified again, so a key
//! removed from the JWKS stops admitting its tokens at once. At most [`CAPACITY`] tokens are
//! kept per provider; when full, the table starts again empty.

use foldhash::fast::RandomState;

/// Tokens remembered per provider at most.
pub const CAPACITY: usize = 1024;

/// Signed tokens (`header.payload.signature`) → the id of the key set that verified them.
#[derive(Debug)]
pub struct VerifiedTokens {
    tokens: papaya::HashMap<Box<str>, u64, RandomState>,
}

impl Default for VerifiedTokens {
    fn default() -> Self {
        Self {
            tokens: papaya::HashMap::with_hasher(RandomState::default()),
        }
    }
}

impl VerifiedTokens {
    /// Whether `token`'s signature verified against the key set `keys`.
    pub fn holds(&self, token: &str, keys: u64) -> bool {
        self.tokens.pin().get(token) == Some(&keys)
    }

    /// Remembers that `token`'s signature verified against the key set `keys`.
    pub fn remember(&self, token: &str, keys: u64) {
        let tokens = self.tokens.pin();
        if tokens.len() >= CAPACITY {
            tokens.clear();
        }
        tokens.insert(token.into(), keys);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_held_only_for_the_key_set_that_verified_it() {
        let verified = VerifiedTokens::default();
        assert!(!verified.holds("a.b.c", 1));
        verified.remember("a.b.c", 1);
        assert!(verified.holds("a.b.c", 1));
        assert!(
            !verified.holds("a.b.c", 2),
            "another key set verifies again"
        );
        assert!(
            !verified.holds("a.b.d", 1),
            "another signature is another token"
        );
    }

    #[test]
    fn a_full_table_starts_again() {
        let verified = VerifiedTokens::default();
        for i in 0..CAPACITY {
            verified.remember(&format!("t.{i}.s"), 7);
        }
        assert!(verified.holds("t.0.s", 7));
        verified.remember("one.more.token", 7);
        assert!(!verified.holds("t.0.s", 7));
        assert!(verified.holds("one.more.token", 7));
    }
}
