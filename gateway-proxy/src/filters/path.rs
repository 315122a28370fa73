//! Path modifiers of RequestRedirect and URLRewrite: `ReplaceFullPath`, `ReplacePrefixMatch`.

use gantry_translate::ir::PathModifierIr;

/// The new path for `path` (no query). `matched_prefix` is the entry's `PathPrefix` without
/// trailing slashes; without one, `ReplacePrefixMatch` treats the empty prefix as matched.
pub fn replace_path(modifier: &PathModifierIr, path: &str, matched_prefix: Option<&str>) -> String {
    match modifier {
        PathModifierIr::ReplaceFullPath(full) => full.clone(),
        PathModifierIr::ReplacePrefixMatch(replacement) => {
            replace_prefix(matched_prefix.unwrap_or(""), path, replacement)
        }
    }
}

/// Replaces the segment-matched `prefix` of `path` with `replacement`:
/// `/foo` → `/xyz` turns `/foo/bar` into `/xyz/bar`; replacing with `/` or the empty string
/// never produces `//` and never an empty path. Nor does a rest that starts with `//` (paths
/// keep doubled slashes with `--path-merge-slashes false`): `/v1//evil.com/x` with `/v1` → `/`
/// is `/evil.com/x`, never the scheme-relative `//evil.com/x`.
pub fn replace_prefix(prefix: &str, path: &str, replacement: &str) -> String {
    let prefix = prefix.trim_end_matches('/');
    let rest = path.strip_prefix(prefix).unwrap_or(path);
    let head = replacement.trim_end_matches('/');
    let mut out = String::with_capacity(head.len() + rest.len() + 1);
    if !head.is_empty() && !head.starts_with('/') {
        out.push('/');
    }
    out.push_str(head);
    out.push_str(rest);
    if out.is_empty() {
        out.push('/');
    }
    if out.starts_with("//") {
        let rest = out.trim_start_matches('/');
        out = format!("/{rest}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table from the Gateway API spec (`HTTPPathModifier`), plus the `/` cases.
    #[test]
    fn replace_prefix_table() {
        let cases = [
            ("/foo/bar", "/foo", "/xyz", "/xyz/bar"),
            ("/foo/bar", "/foo", "/xyz/", "/xyz/bar"),
            ("/foo/bar", "/foo/", "/xyz", "/xyz/bar"),
            ("/foo/bar", "/foo/", "/xyz/", "/xyz/bar"),
            ("/foo", "/foo", "/xyz", "/xyz"),
            ("/foo/", "/foo", "/xyz", "/xyz/"),
            ("/foo/bar", "/foo", "", "/bar"),
            ("/foo/", "/foo", "", "/"),
            ("/foo", "/foo", "", "/"),
            ("/foo/", "/foo", "/", "/"),
            ("/foo", "/foo", "/", "/"),
            ("/foo/bar", "/foo", "/", "/bar"),
            ("/prefix/one/two", "/prefix/one", "/one", "/one/two"),
            ("/anything", "/", "/new", "/new/anything"),
            ("/", "/", "/new", "/new/"),
            ("/v1//evil.com/x", "/v1", "/", "/evil.com/x"),
            ("/v1//evil.com/x", "/v1", "", "/evil.com/x"),
            ("/v1///x", "/v1", "/a", "/a///x"),
        ];
        for (path, prefix, replacement, want) in cases {
            assert_eq!(
                replace_prefix(prefix, path, replacement),
                want,
                "{path} with {prefix} -> {replacement}"
            );
        }
    }

    #[test]
    fn full_path_replacement() {
        let modifier = PathModifierIr::ReplaceFullPath("/full".into());
        assert_eq!(replace_path(&modifier, "/a/b", Some("/a")), "/full");
        let modifier = PathModifierIr::ReplacePrefixMatch("/b".into());
        assert_eq!(replace_path(&modifier, "/a/c", Some("/a")), "/b/c");
    }
}
