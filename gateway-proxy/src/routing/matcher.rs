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

/// A condition of a match that a request does not meet, as `explain` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mismatch {
    /// `wanted`: `Exact /a`, `PathPrefix /a` or `RegularExpression /a.*`.
    Path {
        wanted: String,
    },
    Method {
        wanted: String,
    },
    /// `got`: the request's value (repeated headers joined), `None` when it has none.
    Header {
        name: String,
        wanted: String,
        got: Option<String>,
    },
    Query {
        name: String,
        wanted: String,
        got: Option<String>,
    },
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let got = |got: &Option<String>| match got {
            Some(value) => format!("{value:?}"),
            None => "none".to_owned(),
        };
        match self {
            Self::Path { wanted } => write!(f, "path does not match {wanted}"),
            Self::Method { wanted } => write!(f, "method is not {wanted}"),
            Self::Header {
                name,
                wanted,
                got: g,
            } => {
                write!(f, "header {name} is not {wanted} (request has {})", got(g))
            }
            Self::Query {
                name,
                wanted,
                got: g,
            } => write!(
                f,
                "query parameter {name} is not {wanted} (request has {})",
                got(g)
            ),
        }
    }
}

/// The whole match as written, e.g. `PathPrefix /cart, method GET, header x-a = "1"`.
impl std::fmt::Display for RequestMatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.path)?;
        if let Some(method) = &self.method {
            write!(f, ", method {method}")?;
        }
        for (name, value) in &self.headers {
            write!(f, ", header {name} = {value}")?;
        }
        for (name, value) in &self.query {
            write!(f, ", query {name} = {value}")?;
        }
        Ok(())
    }
}

/// The match as written: `Exact /a`, `PathPrefix /a`, `RegularExpression /a.*`.
impl std::fmt::Display for PathMatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Exact(value) => write!(f, "Exact {value}"),
            // The key has no trailing slash; the root prefix's key is empty.
            Self::Prefix(prefix) if prefix.is_empty() => write!(f, "PathPrefix /"),
            Self::Prefix(prefix) => write!(f, "PathPrefix {prefix}"),
            Self::Regex(regex) => write!(f, "RegularExpression {}", pattern(regex)),
        }
    }
}

impl std::fmt::Display for ValueMatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Exact(value) => write!(f, "{value:?}"),
            Self::Regex(regex) => write!(f, "RegularExpression {:?}", pattern(regex)),
        }
    }
}

/// The pattern as written, without the anchors [`full_match`] adds.
fn pattern(regex: &Regex) -> &str {
    let full = regex.as_str();
    full.strip_prefix("^(?:")
        .and_then(|p| p.strip_suffix(")$"))
        .unwrap_or(full)
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

    /// Whether every condition holds. The data plane's test; [`Self::mismatches`] applies the
    /// same predicates one by one to say which fail.
    pub fn matches(&self, request: &RequestView<'_>) -> bool {
        self.path_matches(request.path)
            && self.method_matches(request.method)
            && self
                .headers
                .iter()
                .all(|(name, value)| header_matches(request.headers, name, value))
            && self
                .query
                .iter()
                .all(|(name, value)| query_matches(request.query, name, value))
    }

    /// Every condition that does not hold, in the order path, method, headers, query
    /// parameters; empty exactly when [`Self::matches`] is true. For `explain`, off the
    /// request path.
    pub fn mismatches(&self, request: &RequestView<'_>) -> Vec<Mismatch> {
        let mut out = Vec::new();
        if !self.path_matches(request.path) {
            out.push(Mismatch::Path {
                wanted: self.path.to_string(),
            });
        }
        if !self.method_matches(request.method) {
            out.push(Mismatch::Method {
                wanted: self
                    .method
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
            });
        }
        for (name, value) in &self.headers {
            if !header_matches(request.headers, name, value) {
                out.push(Mismatch::Header {
                    name: name.to_string(),
                    wanted: value.to_string(),
                    got: header_value(request.headers, name).map(Cow::into_owned),
                });
            }
        }
        for (name, value) in &self.query {
            if !query_matches(request.query, name, value) {
                out.push(Mismatch::Query {
                    name: name.clone(),
                    wanted: value.to_string(),
                    got: query_value(request.query, name).map(Cow::into_owned),
                });
            }
        }
        out
    }

    fn path_matches(&self, path: &str) -> bool {
        match &self.path {
            PathMatcher::Exact(value) => value == path,
            PathMatcher::Prefix(prefix) => prefix_matches(prefix, path),
            PathMatcher::Regex(regex) => regex.is_match(path),
        }
    }

    fn method_matches(&self, method: &Method) -> bool {
        self.method.as_ref().is_none_or(|m| m == method)
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

/// HTTPHeaderMatch: the request has the header and its value matches.
fn header_matches(headers: &HeaderMap, name: &HeaderName, value: &ValueMatcher) -> bool {
    header_value(headers, name).is_some_and(|v| value.matches(&v))
}

/// HTTPQueryParamMatch: the request has the parameter and its first value matches.
fn query_matches(query: Option<&str>, name: &str, value: &ValueMatcher) -> bool {
    query_value(query, name).is_some_and(|v| value.matches(&v))
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
    use gantry_translate::ir::{ValueMatchIr, ValueMatchKind};

    #[test]
    fn mismatches_name_each_failed_condition_and_are_empty_exactly_on_a_match() {
        let value = |name: &str, kind, value: &str| ValueMatchIr {
            name: name.into(),
            kind,
            value: value.into(),
        };
        let matcher = RequestMatcher::compile(&HttpMatchIr {
            path: PathMatchIr::Prefix("/cart/".into()),
            headers: vec![value("x-a", ValueMatchKind::Exact, "1")],
            query_params: vec![value("q", ValueMatchKind::RegularExpression, "[0-9]+")],
            method: Some("GET".into()),
        })
        .expect("compiles");
        assert_eq!(
            matcher.to_string(),
            "PathPrefix /cart, method GET, header x-a = \"1\", query q = RegularExpression \"[0-9]+\""
        );
        let mut wrong = HeaderMap::new();
        wrong.insert("x-a", "2".parse().expect("value"));
        let all_wrong = RequestView {
            method: &Method::POST,
            path: "/cartx",
            query: Some("q=a"),
            headers: &wrong,
        };
        let found: Vec<String> = matcher
            .mismatches(&all_wrong)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            found,
            [
                "path does not match PathPrefix /cart",
                "method is not GET",
                "header x-a is not \"1\" (request has \"2\")",
                "query parameter q is not RegularExpression \"[0-9]+\" (request has \"a\")",
            ]
        );
        assert!(!matcher.matches(&all_wrong));
        let mut good = HeaderMap::new();
        good.insert("x-a", "1".parse().expect("value"));
        let right = RequestView {
            method: &Method::GET,
            path: "/cart/a",
            query: Some("q=12"),
            headers: &good,
        };
        assert!(matcher.matches(&right));
        assert!(matcher.mismatches(&right).is_empty());
        let no_query = RequestView {
            query: None,
            ..right
        };
        assert_eq!(
            matcher.mismatches(&no_query),
            [Mismatch::Query {
                name: "q".into(),
                wanted: "RegularExpression \"[0-9]+\"".into(),
                got: None
            }]
        );
    }

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
