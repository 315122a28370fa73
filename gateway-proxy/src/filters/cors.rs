//! The CORS filter (GEP-1767).
//!
//! A preflight (an `OPTIONS` request with `Origin` and `Access-Control-Request-Method`) is
//! answered by the proxy, `200` with no body: with the CORS headers when the origin is
//! allowed, without them when it is not ("the gateway returns 204/200 response but doesn't set
//! the relevant cross-origin response headers"). Any other request goes to the backend, and
//! when its `Origin` is allowed the response gets `Access-Control-Allow-Origin`, `-Credentials`
//! and `-Expose-Headers`. Every response of the rule gets `Vary: Origin`, since what it carries
//! depends on the request's origin.
//!
//! Wildcards, as the API describes them:
//! - `allowOrigins: ["*"]` allows every origin; the answer is `*` unless `allowCredentials`
//!   is true, when it is the request's origin ("the gateway must return a single origin ...
//!   instead of specifying the `*` wildcard").
//! - A host starting with `*` matches any number of labels to its left (`https://*.bar.com`
//!   matches `https://a.b.bar.com`, not `https://bar.com`); `scheme://*` matches every host
//!   of that scheme. A missing port is the scheme's default (80, 443) on both sides.
//! - `allowMethods: ["*"]` and `allowHeaders: ["*"]` answer with the requested method and
//!   headers (always valid; with credentials the only valid answer). Without
//!   `Access-Control-Request-Headers` there is nothing to list: `*` without credentials, no
//!   header with them.
//! - `exposeHeaders: ["*"]` is `*` without credentials; with them the names of the headers
//!   the backend's response carries (a preflight, having none, gets no header).

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use http::{Method, StatusCode};

use super::FilterError;
use gantry_translate::ir::CorsIr;

/// One allowed origin.
#[derive(Debug, PartialEq, Eq)]
enum OriginPattern {
    /// `scheme://host:port`, with the scheme's default port made explicit.
    Exact {
        scheme: String,
        host: String,
        port: u16,
    },
    /// `scheme://*suffix:port`: any host ending with `suffix` (empty: every host).
    Wildcard {
        scheme: String,
        suffix: String,
        port: u16,
    },
}

/// A list that may be the wildcard.
#[derive(Debug)]
enum Listed {
    Any,
    /// The names and, when there are any, the header value that lists them.
    Names(Option<HeaderValue>),
}

/// A compiled CORS filter.
#[derive(Debug)]
pub struct Cors {
    /// `None`: every origin (`*`).
    origins: Option<Vec<OriginPattern>>,
    credentials: bool,
    methods: Listed,
    headers: Listed,
    expose: Listed,
    max_age: HeaderValue,
}

/// What the filter decided for one request.
#[derive(Debug)]
pub enum CorsOutcome {
    /// A preflight, answered by the proxy with these headers.
    Preflight(HeaderMap),
    /// An actual request: these headers go on the backend's response.
    Actual(CorsHeaders),
}

/// Headers for the response to an actual request.
#[derive(Debug, Default)]
pub struct CorsHeaders {
    headers: HeaderMap,
    /// `exposeHeaders: ["*"]` with credentials: list the response's own header names.
    expose_response_headers: bool,
}

const VARY_ORIGIN: HeaderValue = HeaderValue::from_static("origin");
const TRUE: HeaderValue = HeaderValue::from_static("true");
const ANY: HeaderValue = HeaderValue::from_static("*");

impl Cors {
    pub fn compile(ir: &CorsIr) -> Result<Self, FilterError> {
        let origins = if ir.allow_origins.iter().any(|o| o == "*") {
            None
        } else {
            Some(
                ir.allow_origins
                    .iter()
                    .map(|o| parse_pattern(o).ok_or_else(|| FilterError::Origin(o.clone())))
                    .collect::<Result<_, _>>()?,
            )
        };
        Ok(Self {
            origins,
            credentials: ir.allow_credentials,
            methods: listed(&ir.allow_methods)?,
            headers: listed(&ir.allow_headers)?,
            expose: listed(&ir.expose_headers)?,
            max_age: HeaderValue::from(ir.max_age),
        })
    }

    /// Decides for `request`. `None` when it carries no `Origin` (not a CORS request).
    pub fn evaluate(&self, request: &Parts) -> Option<CorsOutcome> {
        let origin = request.headers.get(header::ORIGIN)?;
        let preflight = request.method == Method::OPTIONS
            && request
                .headers
                .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
        let allow_origin = self.allow_origin(origin);
        let mut headers = HeaderMap::new();
        headers.append(header::VARY, VARY_ORIGIN);
        let Some(allow_origin) = allow_origin else {
            return Some(if preflight {
                CorsOutcome::Preflight(headers)
            } else {
                CorsOutcome::Actual(CorsHeaders {
                    headers,
                    expose_response_headers: false,
                })
            });
        };
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow_origin);
        if self.credentials {
            headers.insert(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, TRUE);
        }
        let expose_response_headers = match &self.expose {
            Listed::Any if self.credentials => true,
            Listed::Any => {
                headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, ANY);
                false
            }
            Listed::Names(Some(list)) => {
                headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, list.clone());
                false
            }
            Listed::Names(None) => false,
        };
        if !preflight {
            return Some(CorsOutcome::Actual(CorsHeaders {
                headers,
                expose_response_headers,
            }));
        }
        let requested_method = request.headers.get(header::ACCESS_CONTROL_REQUEST_METHOD);
        match &self.methods {
            Listed::Any => {
                if let Some(method) = requested_method {
                    headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, method.clone());
                    headers.append(
                        header::VARY,
                        HeaderValue::from_static("access-control-request-method"),
                    );
                }
            }
            Listed::Names(Some(list)) => {
                headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, list.clone());
            }
            Listed::Names(None) => {}
        }
        let requested_headers = joined(&request.headers, &header::ACCESS_CONTROL_REQUEST_HEADERS);
        match &self.headers {
            Listed::Any => match requested_headers {
                Some(list) => {
                    headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, list);
                    headers.append(
                        header::VARY,
                        HeaderValue::from_static("access-control-request-headers"),
                    );
                }
                None if !self.credentials => {
                    headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, ANY);
                }
                None => {}
            },
            Listed::Names(Some(list)) => {
                headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, list.clone());
            }
            Listed::Names(None) => {}
        }
        headers.insert(header::ACCESS_CONTROL_MAX_AGE, self.max_age.clone());
        Some(CorsOutcome::Preflight(headers))
    }

    /// The `Access-Control-Allow-Origin` value for `origin`, or `None` when it is not allowed.
    fn allow_origin(&self, origin: &HeaderValue) -> Option<HeaderValue> {
        let Some(patterns) = &self.origins else {
            return Some(if self.credentials {
                origin.clone()
            } else {
                ANY
            });
        };
        let (scheme, host, port) = parse_origin(origin.to_str().ok()?)?;
        patterns
            .iter()
            .any(|p| match p {
                OriginPattern::Exact {
                    scheme: s,
                    host: h,
                    port: p,
                } => *s == scheme && *h == host && *p == port,
                OriginPattern::Wildcard {
                    scheme: s,
                    suffix,
                    port: p,
                } => {
                    *s == scheme
                        && *p == port
                        && host.len() > suffix.len()
                        && host.ends_with(suffix.as_str())
                }
            })
            .then(|| origin.clone())
    }
}

impl CorsHeaders {
    /// Adds the headers to a response; an allowed origin's replace any the backend set.
    pub fn apply(&self, response: &mut HeaderMap) {
        let mut expose = None;
        if self.expose_response_headers {
            let mut names: Vec<&str> = response
                .keys()
                .map(HeaderName::as_str)
                .filter(|n| !n.starts_with("access-control-") && *n != "set-cookie")
                .collect();
            names.sort_unstable();
            names.dedup();
            if !names.is_empty() {
                expose = HeaderValue::from_str(&names.join(", ")).ok();
            }
        }
        apply_headers(&self.headers, response);
        if let Some(expose) = expose {
            response.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, expose);
        }
    }
}

/// Puts `headers` on `response`: `Vary` is added to (once per value), the others replace.
pub fn apply_headers(headers: &HeaderMap, response: &mut HeaderMap) {
    for (name, value) in headers {
        if name == header::VARY {
            add_vary(response, value);
        } else {
            response.insert(name.clone(), value.clone());
        }
    }
}

/// Appends `value` to `Vary` unless a value already names it (or is `*`).
fn add_vary(headers: &mut HeaderMap, value: &HeaderValue) {
    let Ok(wanted) = value.to_str() else { return };
    let present = headers.get_all(header::VARY).iter().any(|v| {
        v.to_str().is_ok_and(|v| {
            v.split(',')
                .map(str::trim)
                .any(|item| item == "*" || item.eq_ignore_ascii_case(wanted))
        })
    });
    if !present {
        headers.append(header::VARY, value.clone());
    }
}

/// Every value of a header, joined with `, ` (HTTP/2 clients may split lists).
fn joined(headers: &HeaderMap, name: &HeaderName) -> Option<HeaderValue> {
    let mut values = headers.get_all(name).iter();
    let first = values.next()?;
    let rest: Vec<&HeaderValue> = values.collect();
    if rest.is_empty() {
        return Some(first.clone());
    }
    let mut text = first.to_str().ok()?.to_owned();
    for v in rest {
        text.push_str(", ");
        text.push_str(v.to_str().ok()?);
    }
    HeaderValue::from_str(&text).ok()
}

fn listed(names: &[String]) -> Result<Listed, FilterError> {
    if names.iter().any(|n| n == "*") {
        return Ok(Listed::Any);
    }
    if names.is_empty() {
        return Ok(Listed::Names(None));
    }
    let joined = names.join(", ");
    HeaderValue::from_str(&joined)
        .map(|v| Listed::Names(Some(v)))
        .map_err(|_| FilterError::HeaderValue(joined))
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

/// `scheme://host[:port]` → lower-case scheme and host, and the port (the scheme's default
/// when absent). `None` for anything else (`null`, a path, an unknown scheme).
fn parse_origin(origin: &str) -> Option<(String, String, u16)> {
    let lower = origin.to_ascii_lowercase();
    let (scheme, rest) = lower.split_once("://")?;
    let default = default_port(scheme)?;
    if rest.is_empty() || rest.contains(['/', '?', '#', '@']) {
        return None;
    }
    let (host, port) = match rest.rsplit_once(':') {
        Some((host, port)) if !port.contains(']') => (host, port.parse().ok()?),
        _ => (rest, default),
    };
    if host.is_empty() {
        return None;
    }
    Some((scheme.to_owned(), host.to_owned(), port))
}

fn parse_pattern(pattern: &str) -> Option<OriginPattern> {
    let (scheme, rest) = pattern.split_once("://")?;
    let default = default_port(scheme)?;
    let (host, port) = match rest.rsplit_once(':') {
        Some((host, port)) if !port.contains(']') => (host, port.parse().ok()?),
        _ => (rest, default),
    };
    let host = host.to_ascii_lowercase();
    let scheme = scheme.to_ascii_lowercase();
    Some(match host.strip_prefix('*') {
        Some(suffix) => OriginPattern::Wildcard {
            scheme,
            suffix: suffix.to_owned(),
            port,
        },
        None => OriginPattern::Exact { scheme, host, port },
    })
}

/// Whether the request is a CORS preflight that one of `filters` answers (an `OPTIONS`
/// request with `Origin` and `Access-Control-Request-Method` on a rule with a CORS filter).
pub fn is_preflight_for(filters: &[super::Filter], request: &Parts) -> bool {
    request.method == Method::OPTIONS
        && request.headers.contains_key(http::header::ORIGIN)
        && request
            .headers
            .contains_key(http::header::ACCESS_CONTROL_REQUEST_METHOD)
        && filters.iter().any(|f| matches!(f, super::Filter::Cors(_)))
}

/// The preflight answer's status: "always an OK status (i.e., 204 or 200)".
pub const PREFLIGHT_STATUS: StatusCode = StatusCode::OK;

#[cfg(test)]
mod tests {
    use super::*;

    fn cors(f: impl FnOnce(&mut CorsIr)) -> Cors {
        let mut ir = CorsIr {
            max_age: 5,
            ..Default::default()
        };
        f(&mut ir);
        Cors::compile(&ir).expect("compiles")
    }

    fn request(method: Method, headers: &[(&str, &str)]) -> Parts {
        let mut builder = http::Request::builder().method(method).uri("/");
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        builder.body(()).expect("request").into_parts().0
    }

    fn preflight(c: &Cors, origin: &str, extra: &[(&str, &str)]) -> HeaderMap {
        let mut headers = vec![("origin", origin), ("access-control-request-method", "PUT")];
        headers.extend_from_slice(extra);
        match c.evaluate(&request(Method::OPTIONS, &headers)) {
            Some(CorsOutcome::Preflight(h)) => h,
            other => panic!("not a preflight: {other:?}"),
        }
    }

    fn actual(c: &Cors, origin: &str) -> HeaderMap {
        match c.evaluate(&request(Method::GET, &[("origin", origin)])) {
            Some(CorsOutcome::Actual(h)) => {
                let mut response = HeaderMap::new();
                response.insert("x-backend", HeaderValue::from_static("1"));
                h.apply(&mut response);
                response
            }
            other => panic!("not an actual request: {other:?}"),
        }
    }

    fn get<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
        h.get(name).and_then(|v| v.to_str().ok())
    }

    #[test]
    fn exact_and_wildcard_origins_with_default_ports() {
        let c = cors(|ir| {
            ir.allow_origins = vec![
                "https://www.foo.com".into(),
                "https://*.bar.com".into(),
                "http://localhost:3000".into(),
            ];
        });
        for allowed in [
            "https://www.foo.com",
            "https://www.foo.com:443",
            "HTTPS://WWW.FOO.COM",
            "https://a.bar.com",
            "https://x.y.bar.com",
            "http://localhost:3000",
        ] {
            assert_eq!(
                get(&actual(&c, allowed), "access-control-allow-origin"),
                Some(allowed),
                "{allowed}"
            );
        }
        for refused in [
            "https://bar.com",
            "http://www.foo.com",
            "https://www.foo.com:8443",
            "https://evilbar.com",
            "http://localhost",
            "null",
            "https://www.foo.com/",
        ] {
            let h = actual(&c, refused);
            assert_eq!(get(&h, "access-control-allow-origin"), None, "{refused}");
            assert_eq!(get(&h, "vary"), Some("origin"));
        }
    }

    #[test]
    fn scheme_wildcard_matches_every_host_of_the_scheme() {
        let c = cors(|ir| ir.allow_origins = vec!["https://*".into()]);
        assert!(
            get(
                &actual(&c, "https://anything.example"),
                "access-control-allow-origin"
            )
            .is_some()
        );
        assert!(
            get(
                &actual(&c, "http://anything.example"),
                "access-control-allow-origin"
            )
            .is_none()
        );
    }

    #[test]
    fn preflight_lists_what_is_configured() {
        let c = cors(|ir| {
            ir.allow_origins = vec!["https://www.foo.com".into()];
            ir.allow_credentials = true;
            ir.allow_methods = vec!["GET".into(), "OPTIONS".into()];
            ir.allow_headers = vec!["x-header-1".into(), "x-header-2".into()];
            ir.expose_headers = vec!["x-header-3".into()];
            ir.max_age = 3600;
        });
        let h = preflight(&c, "https://www.foo.com", &[]);
        assert_eq!(
            get(&h, "access-control-allow-origin"),
            Some("https://www.foo.com")
        );
        assert_eq!(get(&h, "access-control-allow-credentials"), Some("true"));
        assert_eq!(
            get(&h, "access-control-allow-methods"),
            Some("GET, OPTIONS")
        );
        assert_eq!(
            get(&h, "access-control-allow-headers"),
            Some("x-header-1, x-header-2")
        );
        assert_eq!(get(&h, "access-control-expose-headers"), Some("x-header-3"));
        assert_eq!(get(&h, "access-control-max-age"), Some("3600"));
        // A refused origin's preflight carries no CORS header at all.
        let refused = preflight(&c, "https://evil.com", &[]);
        assert_eq!(refused.len(), 1, "{refused:?}");
        assert_eq!(get(&refused, "vary"), Some("origin"));
    }

    #[test]
    fn wildcards_without_credentials() {
        let c = cors(|ir| {
            ir.allow_origins = vec!["*".into()];
            ir.allow_methods = vec!["*".into()];
            ir.allow_headers = vec!["*".into()];
            ir.expose_headers = vec!["*".into()];
        });
        let h = preflight(
            &c,
            "https://foobar.com:12345",
            &[("access-control-request-headers", "x-a")],
        );
        assert_eq!(get(&h, "access-control-allow-origin"), Some("*"));
        assert_eq!(get(&h, "access-control-allow-methods"), Some("PUT"));
        assert_eq!(get(&h, "access-control-allow-headers"), Some("x-a"));
        assert_eq!(get(&h, "access-control-allow-credentials"), None);
        assert_eq!(get(&h, "access-control-max-age"), Some("5"));
        let h = preflight(&c, "https://foobar.com", &[]);
        assert_eq!(get(&h, "access-control-allow-headers"), Some("*"));
        let a = actual(&c, "null");
        assert_eq!(get(&a, "access-control-allow-origin"), Some("*"));
        assert_eq!(get(&a, "access-control-expose-headers"), Some("*"));
    }

    #[test]
    fn wildcards_with_credentials_never_answer_star() {
        let c = cors(|ir| {
            ir.allow_origins = vec!["*".into()];
            ir.allow_credentials = true;
            ir.allow_methods = vec!["*".into()];
            ir.allow_headers = vec!["*".into()];
            ir.expose_headers = vec!["*".into()];
        });
        let h = preflight(&c, "https://foobar.com", &[]);
        assert_eq!(
            get(&h, "access-control-allow-origin"),
            Some("https://foobar.com")
        );
        assert_eq!(get(&h, "access-control-allow-credentials"), Some("true"));
        assert_eq!(get(&h, "access-control-allow-methods"), Some("PUT"));
        // Nothing requested, nothing to list, and `*` is not allowed.
        assert_eq!(get(&h, "access-control-allow-headers"), None);
        assert_eq!(get(&h, "access-control-expose-headers"), None);
        let a = actual(&c, "https://foobar.com");
        assert_eq!(
            get(&a, "access-control-allow-origin"),
            Some("https://foobar.com")
        );
        assert_eq!(get(&a, "access-control-expose-headers"), Some("x-backend"));
    }

    #[test]
    fn requests_without_origin_are_not_cors() {
        let c = cors(|ir| ir.allow_origins = vec!["*".into()]);
        assert!(
            c.evaluate(&request(
                Method::OPTIONS,
                &[("access-control-request-method", "GET")]
            ))
            .is_none()
        );
        // OPTIONS with an Origin but no Access-Control-Request-Method is an actual request.
        assert!(matches!(
            c.evaluate(&request(Method::OPTIONS, &[("origin", "https://a.com")])),
            Some(CorsOutcome::Actual(_))
        ));
    }

    #[test]
    fn vary_is_added_once() {
        let mut response = HeaderMap::new();
        response.insert(
            header::VARY,
            HeaderValue::from_static("Accept-Encoding, Origin"),
        );
        add_vary(&mut response, &VARY_ORIGIN);
        assert_eq!(response.get_all(header::VARY).iter().count(), 1);
        add_vary(
            &mut response,
            &HeaderValue::from_static("access-control-request-method"),
        );
        assert_eq!(response.get_all(header::VARY).iter().count(), 2);
    }
}
