//! ExternalAuth over gRPC (GEP-1494 `protocol: GRPC`): Envoy's
//! `envoy.service.auth.v3.Authorization/Check`, over HTTP/2 (h2c, or TLS with a
//! BackendTLSPolicy). Status `OK` allows and applies `ok_response`'s header edits; any other
//! status denies with `denied_response` (403 when it names no status).

use std::collections::HashMap;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use http::header::{CONTENT_TYPE, COOKIE, HOST, HeaderName, TE};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode, Version};
use http_body_util::BodyExt as _;
use prost::Message as _;

use super::proto::{
    self, Address, AttributeContext, CheckRequest, CheckResponse, HttpRequest, HttpResponse, Peer,
    SocketAddress,
};
use super::{Call, ExternalAuth, Failure, Verdict, denial};
use crate::upstream::{self, Cluster};
use gantry_translate::ir::UpstreamProtocol;

/// The largest `CheckResponse` read.
const ANSWER_LIMIT: usize = 256 * 1024;

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
    let message = check_request(auth, call, request, body).encode_to_vec();
    let mut framed = BytesMut::with_capacity(message.len() + 5);
    framed.put_u8(0);
    framed.put_u32(u32::try_from(message.len()).unwrap_or(u32::MAX));
    framed.put_slice(&message);
    let mut ask = Request::new(upstream::full(framed.freeze()));
    *ask.method_mut() = Method::POST;
    *ask.uri_mut() = http::Uri::from_static(proto::CHECK);
    *ask.version_mut() = Version::HTTP_2;
    let headers = ask.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    headers.insert(TE, HeaderValue::from_static("trailers"));
    if let Some(host) = request.headers.get(HOST) {
        headers.insert(HOST, host.clone());
    }
    let via = cluster.via(call.gateway, UpstreamProtocol::H2c);
    let answer = call
        .upstreams
        .send_via(via, endpoint, ask)
        .await
        .map_err(|error| {
            Failure::unreachable(format!(
                "the authorization service cannot be reached: {error}"
            ))
        })?;
    let (parts, answer_body) = answer.into_parts();
    if parts.status != StatusCode::OK {
        return Err(Failure::closed(format!(
            "the authorization service answered HTTP {} to Check",
            parts.status.as_u16()
        )));
    }
    let collected = answer_body
        .collect()
        .await
        .map_err(|error| Failure::closed(format!("reading the Check answer: {error}")))?;
    let trailers = collected.trailers().cloned().unwrap_or_default();
    let grpc_status = trailers
        .get("grpc-status")
        .or_else(|| parts.headers.get("grpc-status"))
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok());
    if grpc_status != Some(0) {
        let message = trailers
            .get("grpc-message")
            .or_else(|| parts.headers.get("grpc-message"))
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        return Err(Failure::closed(format!(
            "Check failed with gRPC status {}{}",
            grpc_status.map_or_else(|| "none".to_owned(), |s| s.to_string()),
            if message.is_empty() {
                String::new()
            } else {
                format!(": {message}")
            }
        )));
    }
    let bytes = collected.to_bytes();
    let response = decode(&bytes).map_err(Failure::closed)?;
    if response.status.as_ref().is_none_or(|s| s.code == 0) {
        if let Some(HttpResponse::OkResponse(ok)) = &response.http_response {
            apply_ok(ok, &mut request.headers);
        }
        return Ok(Verdict::Allow);
    }
    let (status, headers, body) = match response.http_response {
        Some(HttpResponse::DeniedResponse(denied)) => {
            let status = denied
                .status
                .and_then(|s| u16::try_from(s.code).ok())
                .and_then(|code| StatusCode::from_u16(code).ok())
                .filter(|s| s.as_u16() >= 200)
                .unwrap_or(StatusCode::FORBIDDEN);
            let mut headers = HeaderMap::new();
            for option in &denied.headers {
                if let Some((name, value)) = header_of(option)
                    && !super::is_framing(&name)
                {
                    headers.append(name, value);
                }
            }
            (status, headers, Bytes::from(denied.body))
        }
        _ => (StatusCode::FORBIDDEN, HeaderMap::new(), Bytes::new()),
    };
    Ok(Verdict::Deny(denial(status, headers, body)))
}

/// The `CheckRequest` for `request`: the client's address, the request line, Host, scheme,
/// protocol, `x-request-id`, the headers (`allowedHeaders`, or all: "if this list is empty,
/// then all headers must be sent") and the body, when forwarded.
fn check_request(
    auth: &ExternalAuth,
    call: &Call<'_>,
    request: &Parts,
    body: Option<&Bytes>,
) -> CheckRequest {
    let mut headers: HashMap<String, String> = HashMap::new();
    let sent =
        |name: &HeaderName| auth.request_headers.is_empty() || auth.request_headers.contains(name);
    for (name, value) in &request.headers {
        if !sent(name) {
            continue;
        }
        let Ok(value) = value.to_str() else { continue };
        // Repeated headers merged as HTTP allows (RFC 9110 §5.3; cookies with `; `, RFC
        // 6265 §5.4).
        let separator = if name == COOKIE { "; " } else { "," };
        headers
            .entry(name.as_str().to_owned())
            .and_modify(|joined| {
                joined.push_str(separator);
                joined.push_str(value);
            })
            .or_insert_with(|| value.to_owned());
    }
    let host = request
        .headers
        .get(HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let protocol = match request.version {
        Version::HTTP_2 => "HTTP/2",
        Version::HTTP_10 => "HTTP/1.0",
        _ => "HTTP/1.1",
    };
    let size = body.map_or_else(
        || {
            request
                .headers
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or(-1)
        },
        |b| i64::try_from(b.len()).unwrap_or(-1),
    );
    CheckRequest {
        attributes: Some(AttributeContext {
            source: Some(Peer {
                address: Some(Address {
                    socket_address: Some(SocketAddress {
                        address: call.client.ip().to_string(),
                        port_value: u32::from(call.client.port()),
                    }),
                }),
            }),
            destination: None,
            request: Some(proto::Request {
                http: Some(HttpRequest {
                    id: call.request_id.to_owned(),
                    method: request.method.as_str().to_owned(),
                    headers,
                    path: request
                        .uri
                        .path_and_query()
                        .map_or("/", |pq| pq.as_str())
                        .to_owned(),
                    host,
                    scheme: call.scheme.to_owned(),
                    size,
                    protocol: protocol.to_owned(),
                    raw_body: body.map(|b| b.to_vec()).unwrap_or_default(),
                }),
            }),
        }),
    }
}

/// One length-prefixed, uncompressed `CheckResponse`.
fn decode(bytes: &[u8]) -> Result<CheckResponse, String> {
    if bytes.len() > ANSWER_LIMIT {
        return Err(format!(
            "the Check answer is larger than {ANSWER_LIMIT} bytes"
        ));
    }
    let [compressed, a, b, c, d, message @ ..] = bytes else {
        return Err("the Check answer is not a gRPC message".to_owned());
    };
    if *compressed != 0 {
        return Err("the Check answer is compressed, which was not asked for".to_owned());
    }
    let length = u32::from_be_bytes([*a, *b, *c, *d]) as usize;
    if message.len() != length {
        return Err("the Check answer's length prefix does not match".to_owned());
    }
    CheckResponse::decode(message).map_err(|error| format!("the Check answer is invalid: {error}"))
}

/// `ok_response`'s edits: each header set (or appended when `append` is true, or as its
/// `append_action` says; "the `append` field ... defaults to false when used in this
/// message"), then `headers_to_remove` (never Host).
fn apply_ok(ok: &proto::OkHttpResponse, headers: &mut HeaderMap) {
    for option in &ok.headers {
        let Some((name, value)) = header_of(option) else {
            continue;
        };
        if name == HOST || super::is_framing(&name) {
            continue;
        }
        match (
            option.append.as_ref().map(|a| a.value),
            option.append_action,
        ) {
            (Some(true), _) => {
                headers.append(name, value);
            }
            // ADD_IF_ABSENT
            (None, 1) => {
                headers.entry(name).or_insert(value);
            }
            // OVERWRITE_IF_EXISTS
            (None, 3) => {
                if headers.contains_key(&name) {
                    headers.insert(name, value);
                }
            }
            _ => {
                headers.insert(name, value);
            }
        }
    }
    for name in &ok.headers_to_remove {
        if let Ok(name) = HeaderName::from_bytes(name.as_bytes())
            && name != HOST
        {
            headers.remove(name);
        }
    }
}

fn header_of(option: &proto::HeaderValueOption) -> Option<(HeaderName, HeaderValue)> {
    let header = option.header.as_ref()?;
    let name = HeaderName::from_bytes(header.key.as_bytes()).ok()?;
    let value = if header.raw_value.is_empty() {
        HeaderValue::from_str(&header.value).ok()?
    } else {
        HeaderValue::from_bytes(&header.raw_value).ok()?
    };
    Some((name, value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::{BoolValue, HeaderValueOption, OkHttpResponse};

    fn option(key: &str, value: &str, append: Option<bool>, action: i32) -> HeaderValueOption {
        HeaderValueOption {
            header: Some(proto::HeaderValue {
                key: key.to_owned(),
                value: value.to_owned(),
                raw_value: Vec::new(),
            }),
            append: append.map(|value| BoolValue { value }),
            append_action: action,
        }
    }

    #[test]
    fn ok_edits_set_append_and_remove_headers() {
        let mut headers = HeaderMap::new();
        headers.insert("x-user", HeaderValue::from_static("forged"));
        headers.insert("x-tag", HeaderValue::from_static("a"));
        headers.insert("authorization", HeaderValue::from_static("Bearer t"));
        headers.insert("x-kept", HeaderValue::from_static("k"));
        apply_ok(
            &OkHttpResponse {
                headers: vec![
                    option("x-user", "alice", None, 0),
                    option("x-tag", "b", Some(true), 0),
                    option("x-kept", "replaced", None, 1),
                    option("x-absent", "no", None, 3),
                    option("host", "evil.example", None, 0),
                ],
                headers_to_remove: vec!["authorization".to_owned(), "host".to_owned()],
            },
            &mut headers,
        );
        assert_eq!(headers["x-user"], "alice");
        let tags: Vec<_> = headers.get_all("x-tag").iter().collect();
        assert_eq!(tags, ["a", "b"]);
        assert_eq!(headers["x-kept"], "k");
        assert!(!headers.contains_key("x-absent"));
        assert!(!headers.contains_key("authorization"));
        assert!(!headers.contains_key("host"));
    }

    #[test]
    fn a_check_answer_is_one_uncompressed_message() {
        let message = CheckResponse {
            status: Some(proto::Status {
                code: 7,
                message: "no".to_owned(),
            }),
            http_response: None,
        }
        .encode_to_vec();
        let mut framed = vec![0, 0, 0, 0, u8::try_from(message.len()).expect("small")];
        framed.extend_from_slice(&message);
        assert_eq!(
            decode(&framed)
                .expect("decodes")
                .status
                .expect("status")
                .code,
            7
        );
        framed[0] = 1;
        assert!(decode(&framed).is_err(), "compressed");
        assert!(decode(&framed[..3]).is_err(), "truncated");
    }
}
