//! API keys that verified once, kept by the key itself so that the next request with the same
//! key skips SHA-256 (about half of what `apiKeyAuth` costs a request; the policy group of
//! `e2e/bench/run.sh --instructions-only` counts it).
//!
//! Only keys that matched a configured digest are kept, so the map holds at most one entry per
//! configured key and a client sending random keys adds nothing; it lives with the compiled
//! policy, so a changed Secret starts it empty. A lookup hashes the presented key with a
//! randomly seeded hasher and compares it in constant time, so its timing says nothing about
//! how much of a real key was guessed.

use std::hash::{Hash, Hasher};

use foldhash::fast::RandomState;
use papaya::Equivalent;

use super::basic_auth::constant_time_eq;

/// A key that verified.
struct Known(Box<[u8]>);

impl Hash for Known {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write(&self.0);
    }
}

impl PartialEq for Known {
    fn eq(&self, other: &Self) -> bool {
        constant_time_eq(&self.0, &other.0)
    }
}

impl Eq for Known {}

/// A presented key, looked up without copying it.
struct Presented<'a>(&'a [u8]);

impl Hash for Presented<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // As `Known` hashes: equal keys hash equally.
        state.write(self.0);
    }
}

impl Equivalent<Known> for Presented<'_> {
    fn equivalent(&self, key: &Known) -> bool {
        constant_time_eq(self.0, &key.0)
    }
}

/// Verified keys and what each names (an index into the policy's clients).
pub(super) struct KnownKeys {
    map: papaya::HashMap<Known, usize, RandomState>,
    /// At most this many: one per configured key.
    limit: usize,
}

impl std::fmt::Debug for KnownKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the keys.
        f.debug_struct("KnownKeys")
            .field("len", &self.map.len())
            .finish_non_exhaustive()
    }
}

impl KnownKeys {
    pub(super) fn new(limit: usize) -> Self {
        Self {
            map: papaya::HashMap::with_hasher(RandomState::default()),
            limit,
        }
    }

    pub(super) fn get(&self, key: &str) -> Option<usize> {
        self.map.pin().get(&Presented(key.as_bytes())).copied()
    }

    /// Remembers `key`, which verified as client `client`.
    pub(super) fn insert(&self, key: &str, client: usize) {
        if self.map.len() < self.limit {
            self.map.pin().insert(Known(key.as_bytes().into()), client);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_same_key_is_found_and_the_map_is_bounded() {
        let known = KnownKeys::new(1);
        known.insert("key-one", 0);
        assert_eq!(known.get("key-one"), Some(0));
        assert_eq!(known.get("key-on"), None);
        assert_eq!(known.get("key-one "), None);
        assert_eq!(known.get("KEY-ONE"), None);
        known.insert("key-two", 1);
        assert_eq!(known.get("key-two"), None, "bounded by the configured keys");
        assert!(!format!("{known:?}").contains("key-one"));
    }
}
