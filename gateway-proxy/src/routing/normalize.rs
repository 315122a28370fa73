//! Request path normalisation, done once per request before route matching; the upstream
//! receives the normalised path.
//!
//! Without it, `/public/../admin` would match a `/public` prefix and reach a backend that
//! resolves it to `/admin`, and `/%70ublic` would miss `/public`. The steps, in the order
//! RFC 3986 §6.2.2 gives them:
//!
//! 1. percent-encodings of unreserved characters are decoded (§6.2.2.2: `%70` → `p`,
//!    `%2E` → `.`), the hex digits of the others uppercased (§6.2.2.1);
//! 2. with `merge_slashes`, runs of `/` become one (not in RFC 3986; what Envoy Gateway does by
//!    default, so `//public` matches `/public`);
//! 3. dot segments are removed (§5.2.4: `/a/./b/../c` → `/a/c`; a path never climbs above `/`).
//!
//! What cannot be normalised safely is rejected, and the caller answers 400: an encoded `/` or
//! `\` (`%2F`, `%5C`; servers disagree on whether it separates segments), a raw `\`, a `%` not
//! followed by two hex digits, and a dot segment carrying parameters (`..;x`, which servlet
//! containers treat as `..`).
//!
//! The common path (no `%`, `\`, `;`, `//` or dot segment) is checked in one pass and borrowed.

use std::borrow::Cow;

/// How paths are normalised; fixed for the life of the process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PathOptions {
    /// Merge runs of `/` into one (`--path-merge-slashes`, default on).
    pub merge_slashes: bool,
    /// What to do with `%2F` and `%5C` (`--path-escaped-slashes`, default `reject`).
    pub escaped_slashes: EscapedSlashes,
}

impl Default for PathOptions {
    fn default() -> Self {
        Self {
            merge_slashes: true,
            escaped_slashes: EscapedSlashes::Reject,
        }
    }
}

/// Handling of encoded slashes and backslashes in paths.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum EscapedSlashes {
    /// Answer 400 (Envoy Gateway's `RejectRequest`).
    Reject,
    /// Keep them encoded (uppercased) and treat them as ordinary characters of a segment
    /// (Envoy Gateway's `KeepUnchanged`).
    Keep,
}

/// Why a path was rejected; `reason()` labels the metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PathRejection {
    #[error("the request path does not start with `/`")]
    NotAbsolute,
    #[error("the request path has a `%` not followed by two hex digits")]
    InvalidEscape,
    #[error("the request path has an encoded `/` or `\\` (%2F, %5C)")]
    EscapedSlash,
    #[error("the request path has a `\\`")]
    Backslash,
    #[error("the request path has a `.` or `..` segment with parameters (`..;`)")]
    DotSegmentParameters,
}

impl PathRejection {
    /// A short label for `gantry_requests_rejected_total{reason}`.
    pub fn reason(self) -> &'static str {
        match self {
            Self::NotAbsolute => "path_not_absolute",
            Self::InvalidEscape => "path_invalid_escape",
            Self::EscapedSlash => "path_escaped_slash",
            Self::Backslash => "path_backslash",
            Self::DotSegmentParameters => "path_dot_segment_parameters",
        }
    }
}

/// The normalised form of `path` (a request path without its query).
pub fn normalize_path<'a>(
    path: &'a str,
    options: &PathOptions,
) -> Result<Cow<'a, str>, PathRejection> {
    if path == "*" {
        // `OPTIONS *` (RFC 9112 §3.2.4): no path to normalise.
        return Ok(Cow::Borrowed(path));
    }
    if !path.starts_with('/') {
        return Err(PathRejection::NotAbsolute);
    }
    if is_normal(path.as_bytes(), options.merge_slashes) {
        return Ok(Cow::Borrowed(path));
    }
    let decoded = decode(path, options.escaped_slashes)?;
    remove_dot_segments(&decoded, options.merge_slashes).map(Cow::Owned)
}

/// True when `path` has nothing to normalise: no `%`, `\` or `;`, no `//` (when merging) and
/// no `.` or `..` segment.
fn is_normal(path: &[u8], merge_slashes: bool) -> bool {
    let mut previous = b'/';
    for (i, &b) in path.iter().enumerate() {
        match b {
            b'%' | b'\\' | b';' => return false,
            b'/' if merge_slashes && previous == b'/' && i > 0 => return false,
            b'.' if previous == b'/' => {
                let rest = &path[i + 1..];
                if rest.is_empty()
                    || rest[0] == b'/'
                    || (rest[0] == b'.' && (rest.len() == 1 || rest[1] == b'/'))
                {
                    return false;
                }
            }
            _ => {}
        }
        previous = b;
    }
    true
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex_value(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Step 1: decodes unreserved characters, uppercases other escapes, rejects what is unsafe.
fn decode(path: &str, escaped_slashes: EscapedSlashes) -> Result<String, PathRejection> {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => return Err(PathRejection::Backslash),
            b'%' => {
                let (Some(hi), Some(lo)) = (
                    bytes.get(i + 1).copied().and_then(hex_value),
                    bytes.get(i + 2).copied().and_then(hex_value),
                ) else {
                    return Err(PathRejection::InvalidEscape);
                };
                let value = hi << 4 | lo;
                if is_unreserved(value) {
                    out.push(value as char);
                } else {
                    if matches!(value, b'/' | b'\\') && escaped_slashes == EscapedSlashes::Reject {
                        return Err(PathRejection::EscapedSlash);
                    }
                    out.push('%');
                    out.push(HEX[usize::from(hi)] as char);
                    out.push(HEX[usize::from(lo)] as char);
                }
                i += 3;
            }
            _ => {
                // Copied as it is up to the next `%` or `\`. A parsed URI may carry bytes
                // above 0x7F (the `http` crate admits them in paths): they must stay UTF-8,
                // not become one `char` per byte (found by the `path_normalise` fuzz target).
                let end = bytes[i..]
                    .iter()
                    .position(|b| matches!(b, b'%' | b'\\'))
                    .map_or(bytes.len(), |n| i + n);
                out.push_str(&path[i..end]);
                i = end;
            }
        }
    }
    Ok(out)
}

/// Steps 2 and 3 on a decoded path that starts with `/`.
fn remove_dot_segments(path: &str, merge_slashes: bool) -> Result<String, PathRejection> {
    let segments: Vec<&str> = path[1..].split('/').collect();
    let last = segments.len() - 1;
    let mut out: Vec<&str> = Vec::with_capacity(segments.len());
    for (i, segment) in segments.into_iter().enumerate() {
        let is_last = i == last;
        let name = segment.split(';').next().unwrap_or(segment);
        match name {
            "." | ".." if name.len() != segment.len() => {
                return Err(PathRejection::DotSegmentParameters);
            }
            "." => {}
            ".." => {
                out.pop();
            }
            "" if merge_slashes && !is_last => {}
            _ => {
                out.push(segment);
                continue;
            }
        }
        // A path ending in a dot segment ends in `/` (`/a/b/..` → `/a/`).
        if is_last && !name.is_empty() {
            out.push("");
        }
    }
    let mut result = String::with_capacity(path.len());
    for segment in &out {
        result.push('/');
        result.push_str(segment);
    }
    if result.is_empty() {
        result.push('/');
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(path: &str) -> Result<String, PathRejection> {
        normalize_path(path, &PathOptions::default()).map(Cow::into_owned)
    }

    /// Regression (fuzz target `path_normalise`): a path with non-ASCII characters that needs
    /// normalising kept them as one Latin-1 `char` per UTF-8 byte, so `/a/./ҟ` became
    /// `/a/Ã\u{92}Â\u{9f}` and normalising twice changed the path again.
    #[test]
    fn non_ascii_characters_survive_normalisation() {
        assert_eq!(
            norm("/a/./\u{49f}/b/../v%41"),
            Ok("/a/\u{49f}/vA".to_owned())
        );
        assert_eq!(norm("/é//x/%2e%2E/ü"), Ok("/é/ü".to_owned()));
        let crash = "/a/\0\0.;/B/\u{49f}/v.";
        let once = norm(crash).expect("normalises");
        assert_eq!(norm(&once), Ok(once.clone()), "idempotent");
        assert!(once.contains('\u{49f}'), "{once:?}");
    }

    #[test]
    fn normal_paths_are_borrowed() {
        for path in ["/", "/a", "/a/b/", "/a.b/c..d/.e/..f", "/a-b_c~d", "*"] {
            let options = PathOptions::default();
            assert!(
                matches!(normalize_path(path, &options), Ok(Cow::Borrowed(p)) if p == path),
                "{path}"
            );
        }
    }

    /// RFC 3986 §5.4 examples of dot-segment removal, as absolute paths, plus traversal.
    #[test]
    fn dot_segments_are_removed() {
        let cases = [
            ("/a/b/c/./../../g", "/a/g"),
            ("/mid/content=5/../6", "/mid/6"),
            ("/public/../admin/secret", "/admin/secret"),
            ("/./public/x", "/public/x"),
            ("/..", "/"),
            ("/../../etc/passwd", "/etc/passwd"),
            ("/a/b/..", "/a/"),
            ("/a/b/.", "/a/b/"),
            ("/a/.", "/a/"),
            ("/.", "/"),
            ("/a/..b/c", "/a/..b/c"),
        ];
        for (path, want) in cases {
            assert_eq!(norm(path).as_deref(), Ok(want), "{path}");
        }
    }

    #[test]
    fn unreserved_escapes_are_decoded_and_others_uppercased() {
        assert_eq!(norm("/%70ublic/x").as_deref(), Ok("/public/x"));
        assert_eq!(norm("/public/%2e%2e/admin").as_deref(), Ok("/admin"));
        assert_eq!(norm("/public/%2E./admin").as_deref(), Ok("/admin"));
        assert_eq!(norm("/a%7eb").as_deref(), Ok("/a~b"));
        assert_eq!(norm("/a%20b%3f").as_deref(), Ok("/a%20b%3F"));
        assert_eq!(norm("/caf%c3%a9").as_deref(), Ok("/caf%C3%A9"));
    }

    #[test]
    fn slashes_are_merged_when_asked() {
        assert_eq!(norm("//public/x").as_deref(), Ok("/public/x"));
        assert_eq!(norm("/v1//evil.com/x").as_deref(), Ok("/v1/evil.com/x"));
        assert_eq!(norm("/a///").as_deref(), Ok("/a/"));
        assert_eq!(norm("//").as_deref(), Ok("/"));
        let keep = PathOptions {
            merge_slashes: false,
            ..PathOptions::default()
        };
        assert_eq!(
            normalize_path("//public//x", &keep).as_deref(),
            Ok("//public//x")
        );
        assert_eq!(
            normalize_path("//public/./x/..", &keep).as_deref(),
            Ok("//public/")
        );
    }

    #[test]
    fn unsafe_paths_are_rejected() {
        assert_eq!(norm("/a%2Fb"), Err(PathRejection::EscapedSlash));
        assert_eq!(norm("/a%2fb"), Err(PathRejection::EscapedSlash));
        assert_eq!(norm("/a%5cb"), Err(PathRejection::EscapedSlash));
        assert_eq!(norm("/a\\b"), Err(PathRejection::Backslash));
        assert_eq!(norm("/a%zzb"), Err(PathRejection::InvalidEscape));
        assert_eq!(norm("/a%4"), Err(PathRejection::InvalidEscape));
        assert_eq!(
            norm("/public/..;/admin"),
            Err(PathRejection::DotSegmentParameters)
        );
        assert_eq!(
            norm("/public/.;x/admin"),
            Err(PathRejection::DotSegmentParameters)
        );
        assert_eq!(
            norm("/public/%2e%2e;/admin"),
            Err(PathRejection::DotSegmentParameters)
        );
        assert_eq!(norm("public"), Err(PathRejection::NotAbsolute));
        assert_eq!(norm("/a;b/c").as_deref(), Ok("/a;b/c"));
        let keep = PathOptions {
            escaped_slashes: EscapedSlashes::Keep,
            ..PathOptions::default()
        };
        assert_eq!(normalize_path("/a%2fb/../c", &keep).as_deref(), Ok("/c"));
        assert_eq!(normalize_path("/a%2fb", &keep).as_deref(), Ok("/a%2Fb"));
    }

    /// Normalising twice changes nothing.
    #[test]
    fn normalisation_is_idempotent() {
        let paths = [
            "/a/b/c/./../../g",
            "//x//y/",
            "/%70ublic/%2e%2e/admin",
            "/a%20b/%7e/..",
            "/..//..//a/./b",
        ];
        for merge_slashes in [true, false] {
            let options = PathOptions {
                merge_slashes,
                ..PathOptions::default()
            };
            for path in paths {
                let once = normalize_path(path, &options).unwrap().into_owned();
                let twice = normalize_path(&once, &options).unwrap();
                assert_eq!(twice, once, "{path}");
            }
        }
    }
}
