//! Path index: narrows a virtual host's route entries to those whose path match can apply.

use super::FastMap;
use gantry_translate::ir::PathMatchIr;

/// Entry indices by path. A lookup probes the exact map once and the prefix map once per
/// segment boundary of the request path; regex entries are always candidates. Indices stay
/// in IR order, so the caller keeps the IR's precedence by taking the lowest index that
/// fully matches.
#[derive(Debug, Default)]
pub struct PathIndex {
    pub(super) exact: FastMap<String, Vec<usize>>,
    /// Keyed by the prefix without trailing slashes (`/` becomes the empty key).
    pub(super) prefix: FastMap<String, Vec<usize>>,
    pub(super) regex: Vec<usize>,
}

impl PathIndex {
    /// Entries must be inserted in increasing index order.
    pub fn insert(&mut self, index: usize, path: &PathMatchIr) {
        match path {
            PathMatchIr::Exact(value) => self.exact.entry(value.clone()).or_default().push(index),
            PathMatchIr::Prefix(value) => self
                .prefix
                .entry(prefix_key(value).to_owned())
                .or_default()
                .push(index),
            PathMatchIr::RegularExpression(_) => self.regex.push(index),
        }
    }

    /// Fills `out` with the sorted, deduplicated indices of entries whose path match may hold.
    pub fn candidates(&self, path: &str, out: &mut Vec<usize>) {
        out.clear();
        if let Some(list) = self.exact.get(path) {
            out.extend_from_slice(list);
        }
        if !self.prefix.is_empty() {
            // Every segment boundary of the path: "", "/a", "/a/b", and the whole path
            // without trailing slashes.
            for (pos, _) in path.match_indices('/') {
                if let Some(list) = self.prefix.get(&path[..pos]) {
                    out.extend_from_slice(list);
                }
            }
            // Duplicates with a boundary already probed are removed by the dedup below.
            if let Some(list) = self.prefix.get(prefix_key(path)) {
                out.extend_from_slice(list);
            }
        }
        out.extend_from_slice(&self.regex);
        out.sort_unstable();
        out.dedup();
    }
}

/// The key of a prefix value or request path: trailing slashes removed.
pub fn prefix_key(value: &str) -> &str {
    value.trim_end_matches('/')
}

/// The spec's segment rule: `/foo` matches `/foo`, `/foo/` and `/foo/bar`, not `/foobar`.
/// `prefix` is a [`prefix_key`].
pub fn prefix_matches(prefix: &str, path: &str) -> bool {
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(paths: &[PathMatchIr]) -> PathIndex {
        let mut index = PathIndex::default();
        for (i, p) in paths.iter().enumerate() {
            index.insert(i, p);
        }
        index
    }

    fn candidates(index: &PathIndex, path: &str) -> Vec<usize> {
        let mut out = Vec::new();
        index.candidates(path, &mut out);
        out
    }

    #[test]
    fn segment_rule() {
        assert!(prefix_matches("/foo", "/foo"));
        assert!(prefix_matches("/foo", "/foo/"));
        assert!(prefix_matches("/foo", "/foo/bar"));
        assert!(!prefix_matches("/foo", "/foobar"));
        assert!(prefix_matches("", "/anything"));
        assert_eq!(prefix_key("/foo/"), "/foo");
        assert_eq!(prefix_key("/"), "");
    }

    #[test]
    fn candidates_follow_segments_and_keep_order() {
        let idx = index(&[
            PathMatchIr::Exact("/foo/bar".into()),
            PathMatchIr::Prefix("/foo/".into()),
            PathMatchIr::RegularExpression("/f.*".into()),
            PathMatchIr::Prefix("/".into()),
            PathMatchIr::Prefix("/foo/bar".into()),
            PathMatchIr::Prefix("/foob".into()),
        ]);
        assert_eq!(candidates(&idx, "/foo/bar"), vec![0, 1, 2, 3, 4]);
        assert_eq!(candidates(&idx, "/foo/bar/"), vec![1, 2, 3, 4]);
        assert_eq!(candidates(&idx, "/foo"), vec![1, 2, 3]);
        assert_eq!(candidates(&idx, "/foo/"), vec![1, 2, 3]);
        assert_eq!(candidates(&idx, "/foobar"), vec![2, 3]);
        assert_eq!(candidates(&idx, "/foob"), vec![2, 3, 5]);
        assert_eq!(candidates(&idx, "/"), vec![2, 3]);
    }
}
