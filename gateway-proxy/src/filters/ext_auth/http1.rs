//! ExternalAuth over HTTP (GEP-1494 `protocol: HTTP`): the request's method and path (after
//! `http.path`), with Host, Authorization, Content-Length and `allowedHeaders`; a `200`
//! allows, copying the answer's headers (`allowedResponseHeaders`, or all but Host and the
//! framing ones) onto the request; any other status is the client's answer.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http::header::{AUTHORIZATION, CONTENT_LENGTH, HOST};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Request, StatusCode, Uri};
use http_body_util::BodyExt as _;

use super::{Call, DENIAL_BODY_LIMIT, ExternalAuth, Failure, Verdict, denial, denial_headers};
use crate::upstream::{self, Cluster};

pub async fn check(
    auth: &ExternalAuth,
    cluster: &Arc<Cluster>,
    call: &Call<'_>,
    request: &mut Parts,
    body: Option<&Bytes>,
) -> Result<Verdict, Failure> {
    let endpoint = cluster
        .pick()
        .ok_or_else(|| Failure::unreachable("the authorization service has no ready endpoint"))?;
    let target = request.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let uri: Uri = format!("{}{target}", auth.path_prefix)
        .parse()
        .map_err(|_| Failure::closed("the authorization request's path is not valid"))?;
    let mut headers = HeaderMap::new();
    // Always sent (GEP-1494): Host, Authorization and Content-Length (the method and path
    // are the request line's); then the allowed ones.
    for name in [HOST, AUTHORIZATION].iter().chain(&auth.request_headers) {
        if name == CONTENT_LENGTH || headers.contains_key(name) {
            continue;
        }
        for value in request.headers.get_all(name) {
            headers.append(name.clone(), value.clone());
        }
    }
    let body = body.cloned().unwrap_or_default();
    headers.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
    let mut ask = Request::new(upstream::full(body));
    *ask.method_mut() = request.method.clone();
    *ask.uri_mut() = uri;
    *ask.headers_mut() = headers;
    let via = cluster.via(call.gateway, cluster.protocol);
    let answer = call
        .upstreams
        .send_via(via, endpoint, ask)
        .await
        .map_err(|error| {
            Failure::unreachable(format!(
                "the authorization service cannot be reached: {error}"
            ))
        })?;
    let (parts, mut answer_body) = answer.into_parts();
    if parts.status == StatusCode::OK {
        copy_allowed(auth, &parts.headers, &mut request.headers);
        return Ok(Verdict::Allow);
    }
    if auth.server_errors_fail && parts.status.is_server_error() {
        return Err(Failure::closed(format!(
            "the authorization service answered with an error, HTTP {}",
            parts.status.as_u16()
        )));
    }
    // A denial: its status, headers and body (up to a limit) are the client's answer.
    let mut bytes = BytesMut::new();
    while let Some(frame) = answer_body.frame().await {
        let frame = frame.map_err(|error| {
            Failure::closed(format!(
                "reading the authorization service's answer: {error}"
            ))
        })?;
        if let Ok(data) = frame.into_data() {
            if bytes.len() + data.len() > DENIAL_BODY_LIMIT {
                return Err(Failure::closed(format!(
                    "the authorization service's denial is larger than {DENIAL_BODY_LIMIT} bytes"
                )));
            }
            bytes.extend_from_slice(&data);
        }
    }
    let mut headers = HeaderMap::new();
    denial_headers(&parts.headers, &mut headers);
    Ok(Verdict::Deny(denial(parts.status, headers, bytes.freeze())))
}

/// Copies the allowed headers of the service's `200` onto the request, replacing the
/// request's own: `allowedResponseHeaders`, or, when it is empty, every header "except
/// Authority or Host", and never the answer's framing or its own `Content-Type`, `Date` and
/// `Server`, which describe the answer, not the request.
fn copy_allowed(auth: &ExternalAuth, from: &HeaderMap, to: &mut HeaderMap) {
    let copy = |name: &http::HeaderName, to: &mut HeaderMap| {
        let mut values = from.get_all(name).iter();
        if let Some(first) = values.next() {
            to.insert(name.clone(), first.clone());
            for value in values {
                to.append(name.clone(), value.clone());
            }
        }
    };
    if auth.response_headers.is_empty() {
        for name in from.keys() {
            if name == HOST
                || super::is_framing(name)
                || matches!(name.as_str(), "content-type" | "date" | "server")
            {
                continue;
            }
            copy(name, to);
        }
    } else {
        for name in &auth.response_headers {
            if name != HOST && !super::is_framing(name) {
                copy(name, to);
            }
        }
    }
}
