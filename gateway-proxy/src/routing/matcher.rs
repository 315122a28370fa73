//! Compiled request matches: path, headers, query parameters and method.

use std::borrow::Cow;

use http::Method;
use http::header::{HeaderMap, HeaderName};
use regex::Regex;

use super::CompileError;
use super::path::{prefix_key, prefix_matches};
use gantry_translate::ir::{HttpMatchIr, PathMatchIr, ValueMatchIr, ValueMatchKind};

/// What a match looks at. Borrowed from the request, so matching allocates only to join a
/// repeated header or to decode an escaped query value.
#[derive(Clone, Copy, Debug)]
pub struct RequestView<'a> {
    pub method: &'a Method,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
}

/// One `HTTPRouteMatch`; every condition must hold.
#[derive(Debug)]
pub struct RequestMatcher {
    path: PathMatcher,
    /// The cookie `Path` of a rule's session persistence (GEP-1619): the prefix or exact
    /// path, or a regular expression's literal start up to its last `/`; `/` for everything.
    cookie_path: String,
    headers: Vec<(HeaderName, ValueMatcher)>,
    query: Vec<(String, ValueMatcher)>,
    method: Option<Method>,
}

#[derive(Debug)]
enum PathMatcher {
    Exact(String),
    /// A [`prefix_key`].
    Prefix(String),
    Regex(Regex),
}

#[derive(Debug)]
enum ValueMatcher {
    Exact(String),
    Regex(Regex),
}

impl RequestMatcher {
    pub fn compile(ir: &HttpMatchIr) -> Result<Self, CompileError> {
        let cookie_path = cookie_path(&ir.path);
        let path = match &ir.path {
            PathMatchIr::Exact(value) => PathMatcher::Exact(value.clone()),
            PathMatchIr::Prefix(value) => PathMatcher::Prefix(prefix_key(value).to_owned()),
            PathMatchIr::RegularExpression(pattern) => PathMatcher::Regex(full_match(pattern)?),
        };
        let headers = ir
            .headers
            .iter()
            .map(|m| {
                let name = HeaderName::from_bytes(m.name.as_bytes())
                    .map_err(|_| CompileError::HeaderName(m.name.clone()))?;
                Ok((name, ValueMatcher::compile(m)?))
            })
            .collect::<Result<_, CompileError>>()?;
        let query = ir
            .query_params
            .iter()
            .map(|m| Ok((m.name.clone(), ValueMatcher::compile(m)?)))
            .collect::<Result<_, CompileError>>()?;
        let method = ir
            .method
            .as_deref()
            .map(|m| Method::from_bytes(m.as_bytes()).map_err(|_| CompileError::Method(m.into())))
            .transpose()?;
        Ok(Self {
            cookie_path,
            path,
            headers,
            query,
            method,
        })
    }

    pub fn matches(&self, request: &RequestView<'_>) -> bool {
        self.path_matches(request.path)
            && self.method.as_ref().is_none_or(|m| m == request.method)
            && self.headers.iter().all(|(name, value)| {
                header_value(request.headers, name).is_some_and(|v| value.matches(&v))
            })
            && self.query.iter().all(|(name, value)| {
                query_value(request.query, name).is_some_and(|v| value.matches(&v))
            })
    }

    fn path_matches(&self, path: &str) -> bool {
        match &self.path {
            PathMatcher::Exact(value) => value == path,
            PathMatcher::Prefix(prefix) => prefix_matches(prefix, path),
            PathMatcher::Regex(regex) => regex.is_match(path),
        }
    }

    /// The cookie `Path` of the rule's session persistence when this match matched.
    pub fn cookie_path(&self) -> &str {
        &self.cookie_path
    }

    /// The matched `PathPrefix`, without trailing slashes, for `ReplacePrefixMatch`.
    pub fn prefix(&self) -> Option<&str> {
        match &self.path {
            PathMatcher::Prefix(prefix) => Some(prefix),
            _ => None,
        }
    }
}

impl ValueMatcher {
    fn compile(ir: &ValueMatchIr) -> Result<Self, CompileError> {
        Ok(match ir.kind {
            ValueMatchKind::Exact => Self::Exact(ir.value.clone()),
            ValueMatchKind::RegularExpression => Self::Regex(full_match(&ir.value)?),
        })
    }

    fn matches(&self, value: &str) -> bool {
        match self {
            Self::Exact(expected) => expected == value,
            Self::Regex(regex) => regex.is_match(value),
        }
    }
}

/// Compiles `pattern` anchored at both ends: the whole value must match.
/// GEP-1619's cookie `Path` for a path match: "For an xRoute that matches all paths, the
/// Path should be set to /"; with several paths, the one matched; "For an xRoute using a path
/// that is a regex, the Path should be set to the longest non-regex prefix". A path that could
/// not stand in a cookie attribute (`;`, `,`, spaces) falls back to `/`.
fn cookie_path(path: &PathMatchIr) -> String {
    let literal = match path {
        PathMatchIr::Exact(value) => value.as_str(),
        PathMatchIr::Prefix(value) => prefix_key(value),
        PathMatchIr::RegularExpression(pattern) => {
            let end = pattern
                .find(|c: char| "\\.^$*+?()[]{}|".contains(c))
                .unwrap_or(pattern.len());
            let literal = &pattern[..end];
            if end == pattern.len() {
                literal
            } else {
                literal.rfind('/').map_or("", |slash| &literal[..slash])
            }
        }
    };
    let literal = literal.trim_end_matches('/');
    if literal.is_empty()
        || !literal.starts_with('/')
        || literal
            .chars()
            .any(|c| c == ';' || c == ',' || c.is_whitespace() || c.is_control())
    {
        "/".to_owned()
    } else {
        literal.to_owned()
    }
}

fn full_match(pattern: &str) -> Result<Regex, CompileError> {
    Regex::new(&format!("^(?:{pattern})$")).map_err(|source| CompileError::Regex {
        pattern: pattern.to_owned(),
        source: Box::new(source),
    })
}

/// A header's value; repeated headers are joined with `, ` as RFC 9110 §5.3 allows. Values
/// that are not visible ASCII never match.
fn header_value<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<Cow<'a, str>> {
    let mut values = headers.get_all(name).iter();
    let first = values.next()?.to_str().ok()?;
    let mut joined: Option<String> = None;
    for value in values {
        let joined = joined.get_or_insert_with(|| first.to_owned());
        joined.push_str(", ");
        joined.push_str(value.to_str().ok()?);
    }
    Some(joined.map_or(Cow::Borrowed(first), Cow::Owned))
}

/// The first value of query parameter `name` (case-sensitive), percent-decoded.
fn query_value<'a>(query: Option<&'a str>, name: &str) -> Option<Cow<'a, str>> {
    query?.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(key) == name).then(|| percent_decode(value))
    })
}

/// Decodes `%XX` escapes; invalid escapes are kept as they are.
pub fn percent_decode(s: &str) -> Cow<'_, str> {
    if !s.contains('%') {
        return Cow::Borrowed(s);
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let decoded = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match decoded {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_paths_follow_the_gep() {
        let cases = [
            (PathMatchIr::Prefix("/".into()), "/"),
            (PathMatchIr::Prefix("/cart/".into()), "/cart"),
            (PathMatchIr::Exact("/a/b".into()), "/a/b"),
            (
                PathMatchIr::RegularExpression("/p1/p2/.*/p3".into()),
                "/p1/p2",
            ),
            (PathMatchIr::RegularExpression("/plain".into()), "/plain"),
            (PathMatchIr::RegularExpression(".*".into()), "/"),
            (PathMatchIr::Exact("/a;b".into()), "/"),
        ];
        for (path, want) in cases {
            assert_eq!(cookie_path(&path), want, "{path:?}");
        }
    }
}
