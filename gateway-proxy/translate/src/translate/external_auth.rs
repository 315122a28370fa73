//! The ExternalAuth HTTPRoute filter (GEP-1494), validated into [`ExternalAuthIr`].
//!
//! The filter's backendRef resolves like any other (ReferenceGrant across namespaces,
//! BackendTLSPolicy for TLS); one that does not resolve leaves the rule served but refusing
//! every request, since "if there is any problem communicating with the external service,
//! this filter MUST fail closed", and the route says why in `ResolvedRefs`.

use std::collections::BTreeMap;

use gantry_crds::gateway::httproutes::{
    HttpRouteRulesFiltersExternalAuth, HttpRouteRulesFiltersExternalAuthProtocol,
};

use super::backend::{self, BackendRef};
use super::conditions::{self as c, Problem};
use super::filters::FilterContext;
use crate::ir::{ClusterIr, ExternalAuthIr, ExternalAuthProtocol};

/// How long an authorization service may take to answer. GEP-1494 sets no timeout; 10 s is
/// Envoy Gateway's default for its external authorization, so a route moved from it behaves
/// the same.
pub const TIMEOUT_MS: u64 = 10_000;

/// The largest `forwardBody.maxSize` accepted: the body is buffered in memory for the check.
pub const MAX_FORWARD_BODY: i64 = 1 << 20;

/// Validates the filter; an `Err` makes the rule invalid, the `Option` is a backendRef that
/// did not resolve.
pub fn translate(
    auth: &HttpRouteRulesFiltersExternalAuth,
    ctx: &FilterContext<'_>,
    clusters: &mut BTreeMap<String, ClusterIr>,
) -> Result<(ExternalAuthIr, Option<Problem>), Problem> {
    let bad = |msg: String| Problem::new(c::REASON_UNSUPPORTED_VALUE, msg);
    let protocol = match auth.protocol {
        HttpRouteRulesFiltersExternalAuthProtocol::Http => ExternalAuthProtocol::Http,
        HttpRouteRulesFiltersExternalAuthProtocol::Grpc => ExternalAuthProtocol::Grpc,
    };
    let path_prefix = path_prefix(
        "ExternalAuth http.path",
        auth.http.as_ref().and_then(|h| h.path.as_deref()),
    )
    .map_err(bad)?;
    let headers = |list: Option<&Vec<String>>, field: &str| -> Result<Vec<String>, Problem> {
        header_names(
            &format!("ExternalAuth {field}"),
            list.map_or(&[][..], Vec::as_slice),
        )
        .map_err(bad)
    };
    let (allowed_request_headers, allowed_response_headers) = match protocol {
        ExternalAuthProtocol::Http => {
            let http = auth.http.as_ref();
            (
                headers(
                    http.and_then(|h| h.allowed_headers.as_ref()),
                    "http.allowedHeaders",
                )?,
                headers(
                    http.and_then(|h| h.allowed_response_headers.as_ref()),
                    "http.allowedResponseHeaders",
                )?,
            )
        }
        ExternalAuthProtocol::Grpc => (
            headers(
                auth.grpc.as_ref().and_then(|g| g.allowed_headers.as_ref()),
                "grpc.allowedHeaders",
            )?,
            Vec::new(),
        ),
    };
    let forward_body_max_bytes = match auth.forward_body.as_ref().and_then(|b| b.max_size) {
        None => 0,
        Some(size) if (0..=MAX_FORWARD_BODY).contains(&size) => usize::try_from(size).unwrap_or(0),
        Some(size) => {
            return Err(bad(format!(
                "ExternalAuth forwardBody.maxSize {size} is outside 0..={MAX_FORWARD_BODY} bytes"
            )));
        }
    };
    let b = &auth.backend_ref;
    let (cluster, problem) = match backend::resolve(
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
    ) {
        Ok(name) => (Some(name), None),
        Err(problem) => (
            None,
            Some(Problem::new(
                problem.reason,
                format!(
                    "ExternalAuth backendRef: {}; requests to this rule are refused (500) until it resolves",
                    problem.message
                ),
            )),
        ),
    };
    Ok((
        ExternalAuthIr {
            protocol,
            cluster,
            path_prefix,
            allowed_request_headers,
            allowed_response_headers,
            forward_body_max_bytes,
            timeout_ms: TIMEOUT_MS,
        },
        problem,
    ))
}

/// The prefix an HTTP service's path gets (`http.path`): empty for none; the same rule as a
/// path match's value: absolute, no query or fragment, no whitespace or control characters.
pub fn path_prefix(field: &str, path: Option<&str>) -> Result<String, String> {
    match path {
        None | Some("") => Ok(String::new()),
        Some(path) => {
            if !path.starts_with('/')
                || path
                    .chars()
                    .any(|ch| ch == '?' || ch == '#' || ch.is_whitespace() || ch.is_control())
            {
                return Err(format!(
                    "{field} {path:?} must be an absolute path without a query, fragment or whitespace"
                ));
            }
            Ok(path.trim_end_matches('/').to_owned())
        }
    }
}

/// Header names, checked, lower-cased and without repeats.
pub fn header_names(field: &str, list: &[String]) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for name in list {
        if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            return Err(format!("{field} has an invalid header name {name:?}"));
        }
        let lower = name.to_ascii_lowercase();
        if !out.contains(&lower) {
            out.push(lower);
        }
    }
    Ok(out)
}
