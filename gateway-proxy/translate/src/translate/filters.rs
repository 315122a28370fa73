//! HTTPRoute filters (rule- and backendRef-level), validated into the IR.

use std::collections::BTreeMap;

use gantry_crds::gateway::httproutes::{
    HttpRouteRulesBackendRefsFilters, HttpRouteRulesFilters, HttpRouteRulesFiltersCors,
    HttpRouteRulesFiltersRequestHeaderModifier, HttpRouteRulesFiltersRequestMirror,
    HttpRouteRulesFiltersRequestRedirect, HttpRouteRulesFiltersRequestRedirectPathType,
    HttpRouteRulesFiltersRequestRedirectScheme, HttpRouteRulesFiltersType,
    HttpRouteRulesFiltersUrlRewrite, HttpRouteRulesFiltersUrlRewritePathType,
};

use super::backend::{self, BackendRef, Referrer};
use super::conditions::{self as c, Problem};
use super::{extension_ref, external_auth, hostname};
use crate::ir::{
    ClusterIr, CorsIr, HeaderModifierIr, HeaderValueIr, HttpFilterIr, MirrorIr, PathModifierIr,
    RedirectIr, UrlRewriteIr,
};
use crate::store::Store;

/// What translating a rule's filters needs to know.
pub struct FilterContext<'a> {
    pub store: &'a Store,
    pub referrer: Referrer<'a>,
    /// `ReplacePrefixMatch` is only valid when the rule has exactly one match, a `PathPrefix`.
    pub single_prefix_match: bool,
}

/// Filters that translated, or why the rule cannot be served as written.
#[derive(Debug, Default)]
pub struct Filters {
    pub filters: Vec<HttpFilterIr>,
    /// A RequestMirror or ExternalAuth whose backendRef did not resolve (the rule is still
    /// served: without the mirror, or refusing every request).
    pub unresolved: Vec<Problem>,
    /// A filter the proxy does not implement. The filter "MUST NOT be skipped": the rule
    /// answers 500 instead.
    pub unsupported: Option<Problem>,
}

/// Converts a backendRef-level filter to the rule-level type: the generated types are
/// field-for-field identical.
pub fn from_backend_filter(
    f: &HttpRouteRulesBackendRefsFilters,
) -> Result<HttpRouteRulesFilters, Problem> {
    serde_json::to_value(f)
        .and_then(serde_json::from_value)
        .map_err(|e| {
            Problem::new(
                c::REASON_UNSUPPORTED_VALUE,
                format!("backendRef filter cannot be read: {e}"),
            )
        })
}

/// Translates a list of filters. An `Err` makes the whole rule invalid (it is dropped).
pub fn translate_filters(
    filters: &[HttpRouteRulesFilters],
    ctx: &FilterContext<'_>,
    clusters: &mut BTreeMap<String, ClusterIr>,
) -> Result<Filters, Problem> {
    check_combination(filters)?;
    // What a request to a rule that cannot be served as written gets.
    let answer = if ctx.referrer.kind == super::grpc_route::KIND {
        "gRPC status UNAVAILABLE"
    } else {
        "500"
    };
    let mut out = Filters::default();
    for f in filters {
        let missing = |field: &str| {
            Problem::new(
                c::REASON_UNSUPPORTED_VALUE,
                format!("filter of type {:?} has no `{field}` field", f.r#type),
            )
        };
        let ir = match f.r#type {
            HttpRouteRulesFiltersType::RequestHeaderModifier => {
                HttpFilterIr::RequestHeaderModifier(header_modifier(
                    f.request_header_modifier
                        .as_ref()
                        .ok_or_else(|| missing("requestHeaderModifier"))?,
                )?)
            }
            HttpRouteRulesFiltersType::ResponseHeaderModifier => {
                let m = f
                    .response_header_modifier
                    .as_ref()
                    .ok_or_else(|| missing("responseHeaderModifier"))?;
                // Same shape as the request modifier.
                let as_request: HttpRouteRulesFiltersRequestHeaderModifier =
                    serde_json::to_value(m)
                        .and_then(serde_json::from_value)
                        .map_err(|e| Problem::new(c::REASON_UNSUPPORTED_VALUE, e.to_string()))?;
                HttpFilterIr::ResponseHeaderModifier(header_modifier(&as_request)?)
            }
            HttpRouteRulesFiltersType::RequestRedirect => HttpFilterIr::RequestRedirect(redirect(
                f.request_redirect
                    .as_ref()
                    .ok_or_else(|| missing("requestRedirect"))?,
                ctx,
            )?),
            HttpRouteRulesFiltersType::UrlRewrite => HttpFilterIr::UrlRewrite(url_rewrite(
                f.url_rewrite
                    .as_ref()
                    .ok_or_else(|| missing("urlRewrite"))?,
                ctx,
            )?),
            HttpRouteRulesFiltersType::RequestMirror => {
                let (mirror, problem) = mirror(
                    f.request_mirror
                        .as_ref()
                        .ok_or_else(|| missing("requestMirror"))?,
                    ctx,
                    clusters,
                )?;
                out.unresolved.extend(problem);
                HttpFilterIr::RequestMirror(mirror)
            }
            HttpRouteRulesFiltersType::ExtensionRef => {
                let e = f
                    .extension_ref
                    .as_ref()
                    .ok_or_else(|| missing("extensionRef"))?;
                match extension_ref::resolve(
                    &e.group,
                    &e.kind,
                    &e.name,
                    ctx.store,
                    ctx.referrer,
                    clusters,
                ) {
                    Ok((ir, problems)) => {
                        out.unresolved.extend(problems);
                        ir
                    }
                    Err(problem) => {
                        out.unsupported.get_or_insert(Problem::new(
                            problem.reason,
                            format!("{}; requests to this rule get {answer}", problem.message),
                        ));
                        continue;
                    }
                }
            }
            HttpRouteRulesFiltersType::ExternalAuth => {
                let (auth, problem) = external_auth::translate(
                    f.external_auth
                        .as_ref()
                        .ok_or_else(|| missing("externalAuth"))?,
                    ctx,
                    clusters,
                )?;
                out.unresolved.extend(problem);
                HttpFilterIr::ExternalAuth(Box::new(auth))
            }
            HttpRouteRulesFiltersType::Cors => {
                HttpFilterIr::Cors(cors(f.cors.as_ref().ok_or_else(|| missing("cors"))?)?)
            }
        };
        out.filters.push(ir);
    }
    Ok(out)
}

/// The API's CEL rules on a filter list: each of CORS, RequestHeaderModifier,
/// ResponseHeaderModifier, RequestRedirect and URLRewrite at most once, and RequestRedirect
/// never with URLRewrite ("which may not be combined"; reason `IncompatibleFilters`).
fn check_combination(filters: &[HttpRouteRulesFilters]) -> Result<(), Problem> {
    let count = |t: HttpRouteRulesFiltersType| filters.iter().filter(|f| f.r#type == t).count();
    for t in [
        HttpRouteRulesFiltersType::Cors,
        HttpRouteRulesFiltersType::RequestHeaderModifier,
        HttpRouteRulesFiltersType::ResponseHeaderModifier,
        HttpRouteRulesFiltersType::RequestRedirect,
        HttpRouteRulesFiltersType::UrlRewrite,
    ] {
        if count(t.clone()) > 1 {
            return Err(Problem::new(
                c::REASON_UNSUPPORTED_VALUE,
                format!("filter {t:?} appears more than once; it may be used once per rule"),
            ));
        }
    }
    if count(HttpRouteRulesFiltersType::RequestRedirect) > 0
        && count(HttpRouteRulesFiltersType::UrlRewrite) > 0
    {
        return Err(Problem::new(
            c::REASON_INCOMPATIBLE_FILTERS,
            "RequestRedirect and URLRewrite filters may not be combined in one rule",
        ));
    }
    // An HTTPComposition answers the request itself, as a redirect does: one per rule, and
    // never beside a redirect.
    let compositions = composition_count(filters);
    if compositions > 1 {
        return Err(Problem::new(
            c::REASON_INCOMPATIBLE_FILTERS,
            "a rule may reference one HTTPComposition; it answers the request itself",
        ));
    }
    if compositions > 0 && count(HttpRouteRulesFiltersType::RequestRedirect) > 0 {
        return Err(Problem::new(
            c::REASON_INCOMPATIBLE_FILTERS,
            "RequestRedirect and an HTTPComposition may not be combined in one rule: both answer the request",
        ));
    }
    Ok(())
}

/// How many of `filters` are ExtensionRefs to an HTTPComposition.
pub fn composition_count(filters: &[HttpRouteRulesFilters]) -> usize {
    filters
        .iter()
        .filter(|f| {
            f.r#type == HttpRouteRulesFiltersType::ExtensionRef
                && f.extension_ref.as_ref().is_some_and(|e| {
                    e.group == gantry_crds::GROUP && e.kind == gantry_crds::HTTP_COMPOSITION_KIND
                })
        })
        .count()
}

fn header_name(name: &str) -> Result<String, Problem> {
    let lower = name.to_ascii_lowercase();
    http::HeaderName::from_bytes(lower.as_bytes())
        .map(|_| lower)
        .map_err(|_| {
            Problem::new(
                c::REASON_UNSUPPORTED_VALUE,
                format!("{name:?} is not a valid HTTP header name"),
            )
        })
}

fn header_value(name: &str, value: &str) -> Result<HeaderValueIr, Problem> {
    http::HeaderValue::from_str(value).map_err(|_| {
        Problem::new(
            c::REASON_UNSUPPORTED_VALUE,
            format!("value of header {name:?} has characters not allowed in HTTP"),
        )
    })?;
    Ok(HeaderValueIr {
        name: header_name(name)?,
        value: value.to_owned(),
    })
}

fn header_modifier(
    m: &HttpRouteRulesFiltersRequestHeaderModifier,
) -> Result<HeaderModifierIr, Problem> {
    Ok(HeaderModifierIr {
        set: m
            .set
            .iter()
            .flatten()
            .map(|h| header_value(&h.name, &h.value))
            .collect::<Result<_, _>>()?,
        add: m
            .add
            .iter()
            .flatten()
            .map(|h| header_value(&h.name, &h.value))
            .collect::<Result<_, _>>()?,
        remove: m
            .remove
            .iter()
            .flatten()
            .map(|n| header_name(n))
            .collect::<Result<_, _>>()?,
    })
}

/// A precise hostname (no wildcard) for redirects and rewrites.
fn precise_hostname(h: &str) -> Result<String, Problem> {
    if hostname::is_valid(h) && !h.starts_with("*.") {
        Ok(h.to_owned())
    } else {
        Err(Problem::new(
            c::REASON_UNSUPPORTED_VALUE,
            format!("hostname {h:?} is not a valid precise hostname"),
        ))
    }
}

fn path_modifier(
    kind: bool, // true = ReplacePrefixMatch
    full: Option<&String>,
    prefix: Option<&String>,
    ctx: &FilterContext<'_>,
) -> Result<PathModifierIr, Problem> {
    if kind {
        // HTTPPathModifier: "ReplacePrefixMatch is only compatible with a `PathPrefix`
        // HTTPRouteMatch" (and the CEL rule requires exactly one such match).
        if !ctx.single_prefix_match {
            return Err(Problem::new(
                c::REASON_UNSUPPORTED_VALUE,
                "ReplacePrefixMatch needs the rule to have exactly one match, of type PathPrefix",
            ));
        }
        let v = prefix.ok_or_else(|| {
            Problem::new(
                c::REASON_UNSUPPORTED_VALUE,
                "path type ReplacePrefixMatch needs replacePrefixMatch",
            )
        })?;
        Ok(PathModifierIr::ReplacePrefixMatch(v.clone()))
    } else {
        let v = full.ok_or_else(|| {
            Problem::new(
                c::REASON_UNSUPPORTED_VALUE,
                "path type ReplaceFullPath needs replaceFullPath",
            )
        })?;
        Ok(PathModifierIr::ReplaceFullPath(v.clone()))
    }
}

fn redirect(
    r: &HttpRouteRulesFiltersRequestRedirect,
    ctx: &FilterContext<'_>,
) -> Result<RedirectIr, Problem> {
    let status_code = match r.status_code.unwrap_or(302) {
        code @ (301 | 302 | 303 | 307 | 308) => code as u16,
        other => {
            return Err(Problem::new(
                c::REASON_UNSUPPORTED_VALUE,
                format!(
                    "redirect statusCode {other} is not supported; use 301, 302, 303, 307 or 308"
                ),
            ));
        }
    };
    let port = r
        .port
        .map(|p| {
            u16::try_from(p).ok().filter(|p| *p != 0).ok_or_else(|| {
                Problem::new(
                    c::REASON_UNSUPPORTED_VALUE,
                    format!("redirect port {p} is out of range"),
                )
            })
        })
        .transpose()?;
    let path = r
        .path
        .as_ref()
        .map(|p| {
            path_modifier(
                p.r#type == HttpRouteRulesFiltersRequestRedirectPathType::ReplacePrefixMatch,
                p.replace_full_path.as_ref(),
                p.replace_prefix_match.as_ref(),
                ctx,
            )
        })
        .transpose()?;
    Ok(RedirectIr {
        scheme: r.scheme.as_ref().map(|s| {
            match s {
                HttpRouteRulesFiltersRequestRedirectScheme::Http => "http",
                HttpRouteRulesFiltersRequestRedirectScheme::Https => "https",
            }
            .to_owned()
        }),
        hostname: r.hostname.as_deref().map(precise_hostname).transpose()?,
        port,
        path,
        status_code,
    })
}

fn url_rewrite(
    r: &HttpRouteRulesFiltersUrlRewrite,
    ctx: &FilterContext<'_>,
) -> Result<UrlRewriteIr, Problem> {
    Ok(UrlRewriteIr {
        hostname: r.hostname.as_deref().map(precise_hostname).transpose()?,
        path: r
            .path
            .as_ref()
            .map(|p| {
                path_modifier(
                    p.r#type == HttpRouteRulesFiltersUrlRewritePathType::ReplacePrefixMatch,
                    p.replace_full_path.as_ref(),
                    p.replace_prefix_match.as_ref(),
                    ctx,
                )
            })
            .transpose()?,
    })
}

/// RequestMirror: the backendRef resolves like any backend (an invalid one mirrors nothing
/// and is reported in `ResolvedRefs`); `percent` or `fraction` set the share.
fn mirror(
    m: &HttpRouteRulesFiltersRequestMirror,
    ctx: &FilterContext<'_>,
    clusters: &mut BTreeMap<String, ClusterIr>,
) -> Result<(MirrorIr, Option<Problem>), Problem> {
    let bad = |msg: String| Problem::new(c::REASON_UNSUPPORTED_VALUE, msg);
    let (numerator, denominator) = match (m.percent, &m.fraction) {
        (Some(_), Some(_)) => {
            return Err(bad(
                "RequestMirror sets both percent and fraction; use one".to_owned()
            ));
        }
        (Some(p), None) if (0..=100).contains(&p) => (p, 100),
        (Some(p), None) => {
            return Err(bad(format!(
                "RequestMirror percent {p} is not within 0..100"
            )));
        }
        (None, Some(f)) => {
            let d = f.denominator.unwrap_or(100);
            if d <= 0 || f.numerator < 0 || f.numerator > d {
                return Err(bad(format!(
                    "RequestMirror fraction {}/{d} is invalid; need 0 <= numerator <= denominator and denominator > 0",
                    f.numerator
                )));
            }
            (f.numerator, d)
        }
        (None, None) => (100, 100),
    };
    let b = &m.backend_ref;
    let resolved = backend::resolve(
        ctx.store,
        ctx.referrer,
        BackendRef {
            group: b.group.as_deref(),
            kind: b.kind.as_deref(),
            name: &b.name,
            namespace: b.namespace.as_deref(),
            port: b.port,
        },
        clusters,
    );
    let (cluster, problem) = match resolved {
        Ok(name) => (Some(name), None),
        Err(p) => (None, Some(p)),
    };
    Ok((
        MirrorIr {
            cluster,
            // Both checked non-negative above.
            numerator: numerator.unsigned_abs(),
            denominator: denominator.unsigned_abs(),
        },
        problem,
    ))
}

/// The methods `allowMethods` may name (`HTTPMethodWithWildcard`: RFC 9110's methods, PATCH,
/// and `*`).
const CORS_METHODS: [&str; 10] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "*",
];

/// The CORS filter (GEP-1767). Values the API's validation would refuse (an origin that is
/// not `*` or `http(s)://host[:port]`, `*` beside other origins or methods, an unknown
/// method, a header name that is not a token, `maxAge` below 1) make the rule invalid
/// (`UnsupportedValue`), as for every filter.
fn cors(f: &HttpRouteRulesFiltersCors) -> Result<CorsIr, Problem> {
    let bad = |msg: String| Problem::new(c::REASON_UNSUPPORTED_VALUE, msg);
    let origins = f.allow_origins.clone().unwrap_or_default();
    if origins.iter().any(|o| o == "*") && origins.len() > 1 {
        return Err(bad(
            "CORS allowOrigins cannot contain '*' alongside other origins".to_owned(),
        ));
    }
    let allow_origins = origins
        .iter()
        .map(|o| cors_origin(o).ok_or_else(|| bad(format!(
            "CORS allowOrigins entry {o:?} is not '*' or an origin such as https://example.com, https://*.example.com or http://example.com:8080 (scheme http or https; `*` only at the start of the host)"
        ))))
        .collect::<Result<Vec<_>, _>>()?;
    let methods = f.allow_methods.clone().unwrap_or_default();
    if methods.iter().any(|m| m == "*") && methods.len() > 1 {
        return Err(bad(
            "CORS allowMethods cannot contain '*' alongside other methods".to_owned(),
        ));
    }
    if let Some(m) = methods.iter().find(|m| !CORS_METHODS.contains(&m.as_str())) {
        return Err(bad(format!(
            "CORS allowMethods entry {m:?} is not one of {} (method names are case-sensitive)",
            CORS_METHODS.join(", ")
        )));
    }
    let names = |field: &str, list: &Option<Vec<String>>| -> Result<Vec<String>, Problem> {
        let list = list.clone().unwrap_or_default();
        if list.iter().any(|h| h == "*") {
            if list.len() > 1 {
                return Err(bad(format!(
                    "CORS {field} cannot contain '*' alongside header names"
                )));
            }
            return Ok(list);
        }
        let mut out: Vec<String> = list
            .iter()
            .map(|h| {
                header_name(h).map_err(|_| {
                    bad(format!(
                        "CORS {field} entry {h:?} is not a valid HTTP header name"
                    ))
                })
            })
            .collect::<Result<_, _>>()?;
        // A set: the API lists it as one (`listType=set`), so duplicates say nothing more.
        let mut seen = std::collections::BTreeSet::new();
        out.retain(|h| seen.insert(h.clone()));
        Ok(out)
    };
    let max_age = match f.max_age {
        // "When the MaxAge field is unspecified, the gateway sets the response header
        // Access-Control-Max-Age: 5 by default."
        None => 5,
        Some(age) if age >= 1 => age.unsigned_abs(),
        Some(age) => {
            return Err(bad(format!(
                "CORS maxAge {age} is not allowed; it must be at least 1 (second)"
            )));
        }
    };
    Ok(CorsIr {
        allow_origins,
        allow_credentials: f.allow_credentials.unwrap_or(false),
        allow_methods: methods,
        allow_headers: names("allowHeaders", &f.allow_headers)?,
        expose_headers: names("exposeHeaders", &f.expose_headers)?,
        max_age,
    })
}

/// An `allowOrigins` entry, lower-cased, when valid: `*`, or `http`/`https` `://` a host
/// (DNS labels or an IP address, optionally starting with a `*` wildcard) and an optional
/// port 1 to 65535.
fn cors_origin(origin: &str) -> Option<String> {
    if origin == "*" {
        return Some(origin.to_owned());
    }
    let lower = origin.to_ascii_lowercase();
    let (scheme, rest) = lower.split_once("://")?;
    if !matches!(scheme, "http" | "https") || rest.is_empty() {
        return None;
    }
    let (host, port) = match rest.rsplit_once(':') {
        // An IPv6 literal's colons are inside brackets.
        Some((host, port)) if !port.contains(']') => (host, Some(port)),
        _ => (rest, None),
    };
    if let Some(port) = port {
        let n: u32 = port
            .parse()
            .ok()
            .filter(|_| port.bytes().all(|b| b.is_ascii_digit()))?;
        if !(1..=65535).contains(&n) {
            return None;
        }
    }
    let literal = host.strip_prefix('*').unwrap_or(host);
    let valid_host = if literal.is_empty() {
        // `scheme://*`: every host.
        host == "*"
    } else if host.starts_with('*') {
        // The wildcard matches labels to its left: what follows must be a domain suffix.
        literal.starts_with('.')
            && literal.len() > 1
            && literal[1..]
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
            && !literal[1..].split('.').any(str::is_empty)
    } else if let Some(v6) = literal.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        v6.parse::<std::net::Ipv6Addr>().is_ok()
    } else {
        literal
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
            && !literal.split('.').any(str::is_empty)
    };
    valid_host.then_some(lower)
}

#[cfg(test)]
mod cors_tests {
    use super::cors_origin;

    #[test]
    fn origins_the_api_allows() {
        for ok in [
            "*",
            "https://www.foo.com",
            "HTTP://Example.COM:8080",
            "https://*.bar.com",
            "https://*",
            "http://10.0.0.1:80",
            "http://[::1]:8080",
        ] {
            assert!(cors_origin(ok).is_some(), "{ok} should be valid");
        }
        assert_eq!(
            cors_origin("HTTPS://WWW.Foo.com").as_deref(),
            Some("https://www.foo.com")
        );
        for bad in [
            "www.foo.com",
            "ftp://foo.com",
            "https://",
            "https://foo.com/path",
            "https://foo*.com",
            "https://a.*.com",
            "https://foo.com:0",
            "https://foo.com:70000",
            "https://foo..com",
            "https://*.",
            "*.foo.com",
        ] {
            assert!(cors_origin(bad).is_none(), "{bad} should be invalid");
        }
    }
}
