//! HTTPTransform JSON body edits, buffered within their `maxBytes`.
//!
//! A request body that is not JSON (by `Content-Type`, and not compressed) streams unchanged;
//! a JSON one over the limit is refused with 413 (the backend would otherwise get a body the
//! route says it must not see unedited), and one that does not parse with 400. A response
//! body over the limit, or that does not parse, passes unchanged: the backend's answer is
//! still the best one the client can get. It is logged and counted
//! (`gantry_response_body_transforms_skipped_total`). `Content-Length` is set to the edited
//! length.

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, HeaderMap, HeaderValue};
use http::{Response, StatusCode};
use serde_json::Value;

use super::client_body::Outcome;
use super::errors::ProxyError;
use crate::filters::json_body::{PreparedBody, is_json};
use crate::filters::mirror::{self, Buffered};
use crate::telemetry::Metrics;
use crate::upstream::{self, ProxyBody};

/// The smallest `maxBytes` of the edits.
fn limit(edits: &[PreparedBody<'_>]) -> usize {
    edits.iter().map(PreparedBody::max_bytes).min().unwrap_or(0)
}

fn declared_length(headers: &HeaderMap) -> Option<usize> {
    headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// The edited document, serialised; `None` when the bytes are not JSON.
fn edit(bytes: &[u8], edits: &[PreparedBody<'_>]) -> Option<Bytes> {
    let mut doc: Value = serde_json::from_slice(bytes).ok()?;
    for e in edits {
        e.apply(&mut doc);
    }
    serde_json::to_vec(&doc).ok().map(Bytes::from)
}

/// The request body with the edits applied: `Ok(Err(body))` when it streams unchanged.
pub async fn request(
    headers: &mut HeaderMap,
    body: ProxyBody,
    has_body: bool,
    edits: &[PreparedBody<'_>],
    client_body: Option<&Outcome>,
) -> Result<Result<Bytes, ProxyBody>, ProxyError> {
    if !has_body || !is_json(headers) {
        return Ok(Err(body));
    }
    let limit = limit(edits);
    if declared_length(headers).is_some_and(|n| n > limit) {
        return Err(ProxyError::BodyTooLarge(limit));
    }
    let bytes = match mirror::buffer(body, limit).await {
        Buffered::Complete(bytes) => bytes,
        Buffered::Streaming(_) => {
            return Err(match client_body.and_then(|o| o.get()) {
                Some(&failure) => ProxyError::ClientBody(failure),
                None => ProxyError::BodyTooLarge(limit),
            });
        }
    };
    if let Some(&failure) = client_body.and_then(|o| o.get()) {
        return Err(ProxyError::ClientBody(failure));
    }
    if bytes.is_empty() {
        return Ok(Ok(bytes));
    }
    let edited = edit(&bytes, edits).ok_or(ProxyError::InvalidJsonBody)?;
    headers.insert(CONTENT_LENGTH, HeaderValue::from(edited.len()));
    Ok(Ok(edited))
}

/// The response with the edits applied to its body, or unchanged (logged and counted) when
/// the body is over the limit or not valid JSON.
pub async fn response(
    response: Response<ProxyBody>,
    edits: &[PreparedBody<'_>],
    head_request: bool,
    metrics: &Metrics,
) -> Response<ProxyBody> {
    let status = response.status();
    if head_request
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
        || !is_json(response.headers())
    {
        return response;
    }
    let limit = limit(edits);
    let skipped = |reason: &'static str| {
        tracing::info!(
            reason,
            limit,
            "response body passed unchanged: an HTTPTransform could not edit it"
        );
        metrics.body_transform_skipped(reason);
    };
    if declared_length(response.headers()).is_some_and(|n| n > limit) {
        skipped("over_limit");
        return response;
    }
    let (mut parts, body) = response.into_parts();
    match mirror::buffer(body, limit).await {
        Buffered::Streaming(body) => {
            skipped("over_limit");
            Response::from_parts(parts, body)
        }
        Buffered::Complete(bytes) => match edit(&bytes, edits) {
            Some(edited) => {
                parts
                    .headers
                    .insert(CONTENT_LENGTH, HeaderValue::from(edited.len()));
                Response::from_parts(parts, upstream::full(edited))
            }
            None => {
                skipped("invalid_json");
                Response::from_parts(parts, upstream::full(bytes))
            }
        },
    }
}
