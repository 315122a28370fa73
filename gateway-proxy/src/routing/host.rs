//! Hostname index: exact names, wildcard suffixes (most specific first) and `*`.

use std::borrow::Cow;

use super::FastMap;

/// Finds the entry for a request host without scanning: one map probe for the exact name, one
/// per label for wildcard suffixes (longest suffix first), then `*`.
///
/// Entries are numbered in insertion order; when two entries have the same hostname the first
/// one wins, like the first-match rule of the IR.
#[derive(Debug, Default)]
pub struct HostIndex {
    pub(super) exact: FastMap<String, usize>,
    /// Keyed by the suffix including its leading dot: `*.example.com` → `.example.com`.
    pub(super) wildcard: FastMap<String, usize>,
    pub(super) any: Option<usize>,
}

impl HostIndex {
    /// `None` and `"*"` match every host.
    pub fn build<'a>(hostnames: impl IntoIterator<Item = Option<&'a str>>) -> Self {
        let mut index = Self::default();
        for (i, hostname) in hostnames.into_iter().enumerate() {
            match hostname {
                None | Some("*") => {
                    index.any.get_or_insert(i);
                }
                Some(name) => {
                    let name = name.to_ascii_lowercase();
                    if let Some(suffix) = name.strip_prefix('*') {
                        index.wildcard.entry(suffix.to_owned()).or_insert(i);
                    } else {
                        index.exact.entry(name).or_insert(i);
                    }
                }
            }
        }
        index
    }

    /// The most specific entry for `host`, which must already be normalised with
    /// [`normalize_host`].
    pub fn lookup(&self, host: &str) -> Option<usize> {
        self.lookup_all(host).next()
    }

    /// Every entry whose hostname matches `host`, most specific first: the exact name, then
    /// wildcard suffixes from the longest to the shortest, then `*`. One map probe per label,
    /// no allocation.
    pub fn lookup_all<'a>(&'a self, host: &'a str) -> impl Iterator<Item = usize> + 'a {
        // Most listeners have no hostname and most virtual hosts no wildcard: an empty map is
        // not probed and its suffixes not scanned (the scan was about 500 instructions per
        // request, `gantry-bench --instructions-only`).
        let exact = if self.exact.is_empty() {
            None
        } else {
            self.exact.get(host).copied()
        };
        let scanned = if self.wildcard.is_empty() { "" } else { host };
        // A wildcard needs at least one label in front of its suffix, so a dot at position 0
        // does not count; the first hit is the longest, most specific suffix. Hostnames are
        // short: a byte loop finds their dots for less than `match_indices`' searcher.
        let wildcards = scanned
            .bytes()
            .enumerate()
            .skip(1)
            .filter(|&(_, byte)| byte == b'.')
            .filter_map(move |(pos, _)| self.wildcard.get(&host[pos..]).copied());
        exact.into_iter().chain(wildcards).chain(self.any)
    }
}

/// The host a request is for, as matched against hostnames: port removed, lower case, no
/// trailing dot. IPv6 literals keep their brackets.
pub fn normalize_host(raw: &str) -> Cow<'_, str> {
    let without_port = if raw.starts_with('[') {
        match raw.find(']') {
            Some(end) => &raw[..=end],
            None => raw,
        }
    } else {
        match raw.bytes().rposition(|b| b == b':') {
            Some(colon) if raw.as_bytes()[colon + 1..].iter().all(u8::is_ascii_digit) => {
                &raw[..colon]
            }
            _ => raw,
        }
    };
    let trimmed = without_port.strip_suffix('.').unwrap_or(without_port);
    if trimmed.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(trimmed.to_ascii_lowercase())
    } else {
        Cow::Borrowed(trimmed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_hosts() {
        assert_eq!(normalize_host("Example.COM:8080"), "example.com");
        assert_eq!(normalize_host("example.com."), "example.com");
        assert_eq!(normalize_host("[::1]:80"), "[::1]");
        assert_eq!(normalize_host("[::1]"), "[::1]");
        assert_eq!(normalize_host("plain"), "plain");
    }

    #[test]
    fn exact_beats_wildcard_beats_any() {
        let index = HostIndex::build([
            Some("foo.example.com"),
            Some("*.example.com"),
            Some("*.b.example.com"),
            None,
        ]);
        assert_eq!(index.lookup("foo.example.com"), Some(0));
        assert_eq!(index.lookup("bar.example.com"), Some(1));
        assert_eq!(index.lookup("a.b.example.com"), Some(2));
        assert_eq!(index.lookup("x.y.example.com"), Some(1));
        assert_eq!(index.lookup("example.com"), Some(3));
        assert_eq!(index.lookup("other.org"), Some(3));
        assert_eq!(index.lookup(""), Some(3));
    }

    #[test]
    fn lookup_all_lists_every_match_most_specific_first() {
        let index = HostIndex::build([
            Some("*.example.com"),
            Some("a.b.example.com"),
            None,
            Some("*.b.example.com"),
        ]);
        let all: Vec<usize> = index.lookup_all("a.b.example.com").collect();
        assert_eq!(all, vec![1, 3, 0, 2]);
        let all: Vec<usize> = index.lookup_all("example.com").collect();
        assert_eq!(all, vec![2]);
    }

    #[test]
    fn wildcard_needs_a_label() {
        let index = HostIndex::build([Some("*.example.com")]);
        assert_eq!(index.lookup("example.com"), None);
        assert_eq!(index.lookup(".example.com"), None);
        assert_eq!(index.lookup("a.example.com"), Some(0));
    }
}
