//! HTTPRoute filters: compiled once per rule, applied per request.
//!
//! Request filters run in the order the rule lists them, then the chosen backend's filters.
//! A redirect, a CORS preflight or an HTTPComposition answers at once; mirrors, CORS headers,
//! response header edits and JSON body edits (HTTPTransform) are collected in [`Deferred`] and
//! run by the pipeline later. A rule without them allocates nothing for them.

pub mod composition;
pub mod cors;
pub mod ext_auth;
mod headers;
pub mod json_body;
pub mod mirror;
mod path;
mod redirect;
pub mod rewrite;
mod template;
pub mod transform;

use http::header::HOST;
use http::request::Parts;

pub use composition::{Composition, PreparedComposition};
pub use cors::{Cors, CorsHeaders, CorsOutcome};
pub use ext_auth::ExternalAuth;
pub use headers::HeaderModifier;
pub use mirror::Mirror;
pub use path::{replace_path, replace_prefix};
pub use redirect::{Redirect, RedirectResponse};
pub use rewrite::UrlRewrite;
pub use transform::{RenderedHeaders, Transform};

use gantry_translate::ir::HttpFilterIr;

/// A filter, validated and ready to apply.
#[derive(Debug)]
pub enum Filter {
    RequestHeaders(HeaderModifier),
    ResponseHeaders(HeaderModifier),
    Redirect(Redirect),
    UrlRewrite(UrlRewrite),
    Mirror(Mirror),
    Cors(Cors),
    Transform(Transform),
    Composition(Composition),
    /// Run by the pipeline before the other filters ([`authorizations`]).
    ExternalAuth(ExternalAuth),
}

/// Why a filter of the IR cannot be applied.
#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    #[error("invalid header name {0:?}")]
    HeaderName(String),
    #[error("invalid value for header {0:?}")]
    HeaderValue(String),
    #[error("invalid hostname {0:?}")]
    Hostname(String),
    #[error("invalid redirect status code {0}")]
    StatusCode(u16),
    #[error("invalid CORS origin {0:?}")]
    Origin(String),
    #[error("invalid regular expression {0:?}")]
    Regex(String),
    #[error("invalid method {0:?}")]
    Method(String),
}

impl Filter {
    pub fn compile(ir: &HttpFilterIr) -> Result<Self, FilterError> {
        Ok(match ir {
            HttpFilterIr::RequestHeaderModifier(m) => {
                Self::RequestHeaders(HeaderModifier::compile(m)?)
            }
            HttpFilterIr::ResponseHeaderModifier(m) => {
                Self::ResponseHeaders(HeaderModifier::compile(m)?)
            }
            HttpFilterIr::RequestRedirect(r) => Self::Redirect(Redirect::compile(r)?),
            HttpFilterIr::UrlRewrite(r) => Self::UrlRewrite(UrlRewrite::compile(r)?),
            HttpFilterIr::RequestMirror(m) => Self::Mirror(Mirror::compile(m)),
            HttpFilterIr::Cors(c) => Self::Cors(Cors::compile(c)?),
            HttpFilterIr::Transform(t) => Self::Transform(Transform::compile(t)?),
            HttpFilterIr::Composition(c) => Self::Composition(Composition::compile(c)?),
            HttpFilterIr::ExternalAuth(a) => Self::ExternalAuth(ExternalAuth::compile(a)?),
        })
    }
}

/// What request filters need to know besides the request.
#[derive(Clone, Copy, Debug)]
pub struct FilterContext<'a> {
    /// The scheme the client used: `https` on a TLS connection, else `http`.
    pub scheme: &'static str,
    /// The port the Gateway listener declares (before any `--port-offset`).
    pub listener_port: u16,
    /// The request host, normalised (no port, lower case).
    pub host: &'a str,
    /// The matched entry's `PathPrefix` without trailing slashes, when it has one.
    pub matched_prefix: Option<&'a str>,
    /// The connection's peer address (`${client_ip}`).
    pub client: std::net::IpAddr,
    /// `namespace/name` of the matched route (`${route}`).
    pub route: &'a str,
}

/// Work the request filters leave for later stages of the pipeline.
#[derive(Debug, Default)]
pub struct Deferred<'a> {
    pub mirrors: Vec<&'a Mirror>,
    /// Response header edits, in filter order.
    pub response_headers: Vec<ResponseHeaders<'a>>,
    /// CORS headers for the response (rule and backend filters may both add some).
    pub cors: Vec<CorsHeaders>,
    /// HTTPTransform JSON edits of the request body, in filter order.
    pub request_body: Vec<json_body::PreparedBody<'a>>,
    /// HTTPTransform JSON edits of the response body, in filter order.
    pub response_body: Vec<json_body::PreparedBody<'a>>,
}

/// One filter's response header edits.
#[derive(Debug)]
pub enum ResponseHeaders<'a> {
    /// ResponseHeaderModifier.
    Modifier(&'a HeaderModifier),
    /// An HTTPTransform's, rendered when it ran.
    Rendered(RenderedHeaders<'a>),
}

impl Deferred<'_> {
    /// The response-side work: CORS headers, then the response header edits (which may
    /// change them).
    pub fn apply_response(&self, headers: &mut http::HeaderMap) {
        for cors in &self.cors {
            cors.apply(headers);
        }
        for edits in &self.response_headers {
            match edits {
                ResponseHeaders::Modifier(modifier) => modifier.apply(headers),
                ResponseHeaders::Rendered(rendered) => rendered.apply(headers),
            }
        }
    }
}

/// A response the proxy gives itself, from a filter.
#[derive(Debug)]
pub enum LocalAnswer<'a> {
    Redirect(RedirectResponse),
    /// A CORS preflight: `200` with these headers.
    Preflight(http::HeaderMap),
    /// An HTTPComposition: the parts are called by the pipeline.
    Compose(PreparedComposition<'a>),
}

/// Applies request filters in order. Returns the answer to give, if a filter answers (a
/// redirect, a CORS preflight, a composition); the remaining filters are then skipped.
pub fn apply_request<'a>(
    filters: &'a [Filter],
    request: &mut Parts,
    context: &FilterContext<'_>,
    deferred: &mut Deferred<'a>,
) -> Option<LocalAnswer<'a>> {
    for filter in filters {
        match filter {
            Filter::RequestHeaders(m) => m.apply(&mut request.headers),
            Filter::ResponseHeaders(m) => {
                deferred.response_headers.push(ResponseHeaders::Modifier(m))
            }
            Filter::Redirect(r) => return Some(LocalAnswer::Redirect(r.respond(request, context))),
            Filter::Cors(c) => match c.evaluate(request) {
                None => {}
                Some(CorsOutcome::Preflight(headers)) => {
                    return Some(LocalAnswer::Preflight(headers));
                }
                Some(CorsOutcome::Actual(headers)) => deferred.cors.push(headers),
            },
            Filter::UrlRewrite(r) => r.apply(request, context),
            Filter::Mirror(m) => {
                if m.sampled() {
                    deferred.mirrors.push(m);
                }
            }
            Filter::Transform(t) => t.apply(request, context, deferred),
            Filter::Composition(c) => {
                return Some(LocalAnswer::Compose(c.prepare(request, context)));
            }
            // Already decided before the filters ran.
            Filter::ExternalAuth(_) => {}
        }
    }
    None
}

/// The ExternalAuth filters of a list, in order.
pub fn authorizations(filters: &[Filter]) -> impl Iterator<Item = &ExternalAuth> {
    filters.iter().filter_map(|f| match f {
        Filter::ExternalAuth(auth) => Some(auth),
        _ => None,
    })
}

/// The Host header value of a request (HTTP/2 requests get theirs from `:authority` before
/// filters run).
pub fn host_header(request: &Parts) -> Option<&str> {
    request.headers.get(HOST).and_then(|v| v.to_str().ok())
}
