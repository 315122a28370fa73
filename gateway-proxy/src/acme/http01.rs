//! The HTTP-01 answer (RFC 8555 §8.3) the request pipeline gives before routing.

use http::request::Parts;
use http::{HeaderValue, Method, Response, header};

use super::Challenges;
use crate::upstream::{self, ProxyBody};

/// The key authorization for a `GET /.well-known/acme-challenge/<token>` of a published
/// token; `None` for anything else.
pub fn answer(challenges: &Challenges, parts: &Parts) -> Option<Response<ProxyBody>> {
    if parts.method != Method::GET {
        return None;
    }
    let key_authorization = challenges.http01_response(parts.uri.path())?;
    let mut response = Response::new(upstream::full(key_authorization));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    Some(response)
}
