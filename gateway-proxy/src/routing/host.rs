//! Hostname index: exact names, wildcard suffixes (most specific first) and `*`.

use std::borrow::Cow;
use std::collections::HashMap;

/// Finds the entry for a request host without scanning: one map probe for the exact name, one
/// per label for wildcard suffixes (longest suffix first), then `*`.
///
/// Entries are numbered in insertion order; when two entries have the same hostname the first
/// one wins, like the first-match rule of the IR.
#[derive(Debug, Default)]
pub struct HostIndex {
    exact: HashMap<String, usize>,
    /// Keyed by the suffix including its leading dot: `*.example.com` → `.example.com`.
    wildcard: HashMap<String, usize>,
    any: Option<usize>,
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

    /// `host` must already be normalised with [`normalize_host`].
    pub fn lookup(&self, host: &str) -> Option<usize> {
        if let Some(i) = self.exact.get(host) {
            return Some(*i);
        }
        if !self.wildcard.is_empty() {
            // A wildcard needs at least one label in front of its suffix, so start after the
            // first character; the first hit is the longest, most specific suffix.
            for (pos, _) in host.match_indices('.').filter(|(pos, _)| *pos > 0) {
                if let Some(i) = self.wildcard.get(&host[pos..]) {
                    return Some(*i);
                }
            }
        }
        self.any
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
        match raw.rsplit_once(':') {
            Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
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
    fn wildcard_needs_a_label() {
        let index = HostIndex::build([Some("*.example.com")]);
        assert_eq!(index.lookup("example.com"), None);
        assert_eq!(index.lookup(".example.com"), None);
        assert_eq!(index.lookup("a.example.com"), Some(0));
    }
}
