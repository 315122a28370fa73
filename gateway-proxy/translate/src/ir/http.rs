//! HTTP routing: route entries, matches, rules, filters and backends (HTTPRoute, GRPCRoute).

use std::borrow::Cow;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// One `HTTPRouteMatch` of one rule, with the rule's behaviour.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteEntryIr {
    /// Shared by every entry of the route.
    pub route: Arc<RouteRef>,
    /// Index of the rule in `spec.rules`.
    pub rule_index: usize,
    /// Index of the match in the rule's `matches` (0 for a rule without matches, whose one
    /// match is the default).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub match_index: usize,
    /// Shared with the translator's route cache: placing a route on every translation copies
    /// no match.
    #[serde(rename = "match")]
    pub matches: Arc<HttpMatchIr>,
    /// Shared by every entry of the same rule.
    pub rule: Arc<HttpRuleIr>,
    /// The SecurityPolicy governing the entry (the most specific attachment: rule, route,
    /// listener, Gateway), shared by every entry it governs; `None`: no policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security: Option<Arc<super::SecurityIr>>,
    /// The RateLimitPolicy governing the entry, by the same precedence; `None`: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<Arc<super::RateLimitIr>>,
}

/// Field by field, but a shared rule or policy (the same `Arc`, as the translator's route cache
/// hands out for an unchanged route) is equal without comparing its contents: comparing IRs
/// is how the control loop and the compiler find what did not change.
impl PartialEq for RouteEntryIr {
    fn eq(&self, other: &Self) -> bool {
        fn same<T: PartialEq>(a: &Arc<T>, b: &Arc<T>) -> bool {
            Arc::ptr_eq(a, b) || **a == **b
        }
        fn same_if_any<T: PartialEq>(a: &Option<Arc<T>>, b: &Option<Arc<T>>) -> bool {
            match (a, b) {
                (Some(a), Some(b)) => same(a, b),
                (a, b) => a.is_none() && b.is_none(),
            }
        }
        // Every field named, so that a new one cannot be forgotten here.
        let Self {
            route,
            rule_index,
            match_index,
            matches,
            rule,
            security,
            rate_limit,
        } = self;
        *route == other.route
            && *rule_index == other.rule_index
            && *match_index == other.match_index
            && same(matches, &other.matches)
            && same(rule, &other.rule)
            && same_if_any(security, &other.security)
            && same_if_any(rate_limit, &other.rate_limit)
    }
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// Which route an entry came from (metrics label and logs use it).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteRef {
    /// A constant of the translator for every route it translates, so not a copy per route.
    pub kind: Cow<'static, str>,
    pub namespace: String,
    pub name: String,
}

/// A request match; every present condition must hold.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpMatchIr {
    pub path: PathMatchIr,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<ValueMatchIr>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub query_params: Vec<ValueMatchIr>,
    /// Upper-case method name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
}

/// Path match. `Prefix` follows the spec's segment rule: `/foo` matches `/foo`, `/foo/` and
/// `/foo/bar` but not `/foobar`; a trailing `/` in the value is ignored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "value")]
pub enum PathMatchIr {
    Exact(String),
    #[serde(rename = "PathPrefix")]
    Prefix(String),
    RegularExpression(String),
}

impl Default for PathMatchIr {
    fn default() -> Self {
        Self::Prefix("/".to_owned())
    }
}

/// A header or query parameter match. Header names are lower-case; query names are
/// case-sensitive as the spec says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ValueMatchIr {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: ValueMatchKind,
    pub value: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ValueMatchKind {
    Exact,
    RegularExpression,
}

/// The behaviour of one rule.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRuleIr {
    /// `spec.rules[].name`, when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Applied in order before the backend is chosen.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<HttpFilterIr>,
    /// Weighted backends. Empty with no redirect filter means 500 (the spec: "If no
    /// backendRefs or filters are specified that would handle the request, a 500 status code
    /// MUST be returned").
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backends: Vec<BackendIr>,
    #[serde(default, skip_serializing_if = "TimeoutsIr::is_empty")]
    pub timeouts: TimeoutsIr,
    /// HTTPRoute `retry` (GEP-1731), validated; `None` when the rule sets none or disables
    /// retries (`attempts: 0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryIr>,
    /// A GRPCRoute rule: its backends and mirrors are spoken to with HTTP/2 (h2c in
    /// plaintext), whatever their Service port's `appProtocol` says.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub grpc: bool,
    /// The rule's own `sessionPersistence` (GEP-1619), for every backend of the rule. It
    /// overrides any XBackendTrafficPolicy of the backends' Services. Boxed: most rules have
    /// none, and every rule of every route is kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_persistence: Option<Box<SessionPersistenceIr>>,
}

/// Session persistence (GEP-1619): a signed token, in a cookie or a header, names the
/// backend and endpoint a client's session is bound to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionPersistenceIr {
    /// The cookie or header name: `sessionName`, or one generated from `scope`.
    pub name: String,
    #[serde(rename = "type")]
    pub kind: SessionKind,
    /// Cookies only: `Permanent` cookies carry `Max-Age` (the absolute timeout).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub permanent: bool,
    /// A session ends this long after it began, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub absolute_timeout_secs: Option<u64>,
    /// A session ends after this long without a request, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout_secs: Option<u64>,
    /// What a token is bound to (`Kind/namespace/name/rule`): a token made for one rule is
    /// never valid for another, as the GEP requires ("Route rules referencing the same service
    /// MUST NOT share persistent sessions"). Rule names are used when set, so reordering
    /// rules keeps their sessions.
    pub scope: String,
    /// Where the configuration came from: `rule`, or the XBackendTrafficPolicy's
    /// `namespace/name`. A rule's cookie gets the matched path as `Path`; a policy's none
    /// (GEP-1619: "the Path attribute MUST be left unset").
    pub source: String,
}

/// `sessionPersistence.type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SessionKind {
    Cookie,
    Header,
}

impl SessionPersistenceIr {
    /// The `source` of a rule's own configuration.
    pub const RULE: &'static str = "rule";

    /// Whether the configuration is the rule's own (not a policy's).
    pub fn from_rule(&self) -> bool {
        self.source == Self::RULE
    }
}

/// HTTPRoute `timeouts`, in milliseconds. `request_ms: 0` is a request timeout the route
/// disabled ("0s"), so the proxy's default request timeout does not apply either; `None` is
/// none set. A zero `backendRequest` is `None`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TimeoutsIr {
    /// Whole request, from the first byte received to the last byte of the response headers
    /// (including retries and filters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_ms: Option<u64>,
    /// One attempt to the backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_request_ms: Option<u64>,
}

impl TimeoutsIr {
    pub fn is_empty(&self) -> bool {
        self.request_ms.is_none() && self.backend_request_ms.is_none()
    }
}

/// HTTPRoute rule `retry`: when an upstream attempt is tried again. The data plane retries on
/// the listed status codes, on connection failures (refused, reset or closed before response
/// headers) and on an attempt that ran out its `backendRequest` timeout; never once response
/// headers were sent to the client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RetryIr {
    /// Retries after the first attempt: HTTPRouteRetry `attempts`, "the maximum number of times
    /// an individual request from the Gateway to a backend should be retried in addition to the
    /// initial request" (1 when unset). Never 0: a rule with `attempts: 0` has no `retry`.
    pub attempts: u32,
    /// Status codes (400 to 599) retried, sorted and de-duplicated; empty retries only
    /// connection failures and timed-out attempts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub codes: Vec<u16>,
    /// Base of the exponential backoff between attempts, in milliseconds.
    pub backoff_ms: u64,
}

/// XBackendTrafficPolicy `retryConstraint` (GEP-3388) of the Service a cluster belongs to:
/// retries to it are allowed while they stay within `percent` of the requests of the last
/// `interval_ms`, or within `min_retry_count` per `min_retry_interval_ms` whatever the
/// traffic. Every cluster of one Service carries the same budget, and shares its counts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RetryBudgetIr {
    /// The policy the budget comes from (`namespace/name`).
    pub policy: String,
    /// `budget.percent`: at most this share (0 to 100) of the requests of the interval may be
    /// retries.
    pub percent: u32,
    /// `budget.interval`.
    pub interval_ms: u64,
    /// `minRetryRate.count`: retries always allowed per `min_retry_interval_ms`.
    pub min_retry_count: u32,
    /// `minRetryRate.interval`.
    pub min_retry_interval_ms: u64,
}

/// One weighted backendRef.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackendIr {
    /// Relative weight; 0 never receives traffic.
    pub weight: u32,
    /// The resolved cluster, or `None` when the reference is invalid: that share of traffic
    /// gets a 500 (the spec: "requests that would have been sent to [an invalid backend] MUST
    /// receive a 500 status code", in proportion to the weight).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// backendRef-level filters, applied after the rule's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<HttpFilterIr>,
    /// Session persistence from an XBackendTrafficPolicy of the backend's Service, when the
    /// rule sets none of its own. Boxed, as the rule's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_persistence: Option<Box<SessionPersistenceIr>>,
}

/// An HTTPRoute filter, validated.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "PascalCase")]
pub enum HttpFilterIr {
    RequestHeaderModifier(HeaderModifierIr),
    ResponseHeaderModifier(HeaderModifierIr),
    RequestRedirect(RedirectIr),
    #[serde(rename = "URLRewrite")]
    UrlRewrite(UrlRewriteIr),
    RequestMirror(MirrorIr),
    #[serde(rename = "CORS")]
    Cors(CorsIr),
    /// An ExtensionRef to an HTTPTransform.
    #[serde(rename = "HTTPTransform")]
    Transform(Box<super::TransformIr>),
    /// An ExtensionRef to an HTTPComposition: the rule answers itself.
    #[serde(rename = "HTTPComposition")]
    Composition(super::CompositionIr),
    /// The ExternalAuth filter (GEP-1494): an authorization service decides first.
    ExternalAuth(Box<ExternalAuthIr>),
}

/// The ExternalAuth filter (GEP-1494), validated. Header names are lower-case.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExternalAuthIr {
    pub protocol: ExternalAuthProtocol,
    /// The authorization service; `None` when its backendRef did not resolve, and then every
    /// request is refused ("this filter MUST fail closed").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// HTTP: the prefix put before the request's path (`http.path`); empty for none.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path_prefix: String,
    /// HTTP: request headers sent besides the ones always sent (Host, Method, Path,
    /// Content-Length, Authorization). gRPC: the headers sent; empty sends all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_request_headers: Vec<String>,
    /// HTTP: headers of the service's `200` copied onto the request to the backend; empty
    /// copies all but Host (and hop-by-hop and framing headers).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_response_headers: Vec<String>,
    /// Bytes of the request body sent to the service (`forwardBody.maxSize`); 0 sends none.
    /// A larger body is refused with 413.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub forward_body_max_bytes: usize,
    /// How long the service may take to answer, in milliseconds (the check fails closed
    /// after it).
    pub timeout_ms: u64,
}

/// How the ExternalAuth filter talks to its service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExternalAuthProtocol {
    /// A `200` allows; any other answer is given to the client as it is.
    #[serde(rename = "HTTP")]
    Http,
    /// Envoy's `envoy.service.auth.v3.Authorization/Check`.
    #[serde(rename = "GRPC")]
    Grpc,
}

/// The CORS filter (GEP-1767), validated. Header names are lower-case.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CorsIr {
    /// `*` alone, or origins `scheme://host[:port]` (lower-case; the host may start with `*`,
    /// which matches any number of labels to its left). Empty allows no origin.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_origins: Vec<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_credentials: bool,
    /// Method names, or `*` alone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_methods: Vec<String>,
    /// Header names, or `*` alone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_headers: Vec<String>,
    /// Header names, or `*` alone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expose_headers: Vec<String>,
    /// `Access-Control-Max-Age` of preflight answers (the API's default: 5).
    pub max_age: u32,
}

/// Header edits, applied as set, then add, then remove. Names are lower-case.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeaderModifierIr {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub set: Vec<HeaderValueIr>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub add: Vec<HeaderValueIr>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeaderValueIr {
    pub name: String,
    pub value: String,
}

/// RequestRedirect. Absent fields keep the request's value (port: see the spec's rules, which
/// the data plane applies when building the Location header).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RedirectIr {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathModifierIr>,
    /// 301, 302, 303, 307 or 308.
    pub status_code: u16,
}

/// URLRewrite.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UrlRewriteIr {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathModifierIr>,
}

/// Path rewrite for redirects and URL rewrites. `ReplacePrefixMatch` replaces the part of the
/// path matched by the entry's `PathPrefix` match (the translator only allows it there).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "value")]
pub enum PathModifierIr {
    ReplaceFullPath(String),
    ReplacePrefixMatch(String),
}

/// RequestMirror: a copy of the request goes to `cluster` for the given share of requests;
/// its response is discarded.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MirrorIr {
    /// `None` when the mirror backendRef is invalid (nothing is mirrored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// Share of requests mirrored, as numerator over denominator (100/100 by default).
    pub numerator: u32,
    pub denominator: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(rule: Arc<HttpRuleIr>) -> RouteEntryIr {
        RouteEntryIr {
            route: Arc::new(RouteRef {
                kind: "HTTPRoute".into(),
                namespace: "default".into(),
                name: "web".into(),
            }),
            rule_index: 0,
            match_index: 0,
            matches: Arc::default(),
            rule,
            security: None,
            rate_limit: None,
        }
    }

    #[test]
    fn entries_compare_their_rules_by_value_unless_they_share_them() {
        let rule = Arc::new(HttpRuleIr::default());
        assert_eq!(entry(rule.clone()), entry(rule));
        assert_eq!(
            entry(Arc::new(HttpRuleIr::default())),
            entry(Arc::new(HttpRuleIr::default()))
        );
        let other = HttpRuleIr {
            name: Some("named".into()),
            ..HttpRuleIr::default()
        };
        assert_ne!(
            entry(Arc::new(HttpRuleIr::default())),
            entry(Arc::new(other))
        );
        let mut moved = entry(Arc::new(HttpRuleIr::default()));
        moved.match_index = 1;
        assert_ne!(moved, entry(Arc::new(HttpRuleIr::default())));
    }
}
