//! `apiKeyAuth`: the key is looked up by its SHA-256 (so the lookup's timing depends on the
//! digest, not on how many leading bytes of a real key were guessed), and removed from the
//! request (header, query parameter, cookie) before it goes upstream. A key that verified is
//! remembered ([`KnownKeys`]), so its next request skips the digest.

use std::borrow::Cow;
use std::collections::HashMap;

use gantry_translate::ir::{ApiKeyAuthIr, KeySourceIr};
use http::header::{COOKIE, HeaderValue};
use http::request::Parts;
use http::{HeaderName, StatusCode, Uri};

use super::known_keys::KnownKeys;
use super::{Denial, Identity, identity_of};

#[derive(Debug)]
pub struct ApiKeys {
    sources: Vec<Source>,
    clients: Vec<Client>,
    /// Index into `clients` by SHA-256 of the key, looked up with foldhash (a digest needs no
    /// SipHash).
    by_digest: HashMap<[u8; 32], usize, foldhash::fast::RandomState>,
    known: KnownKeys,
    forward_client_id: Option<HeaderName>,
}

#[derive(Debug)]
pub(super) enum Source {
    Header(HeaderName),
    Param(String),
    Cookie(String),
}

#[derive(Debug)]
struct Client {
    id: HeaderValue,
    identity: Identity,
}

impl ApiKeys {
    pub fn compile(ir: &ApiKeyAuthIr) -> Self {
        let sources = ir
            .extract_from
            .iter()
            .filter_map(|s| match s {
                KeySourceIr::Header(h) => HeaderName::from_bytes(h.as_bytes())
                    .ok()
                    .map(Source::Header),
                KeySourceIr::Param(p) => Some(Source::Param(p.clone())),
                KeySourceIr::Cookie(c) => Some(Source::Cookie(c.clone())),
            })
            .collect();
        let mut by_digest = HashMap::with_hasher(foldhash::fast::RandomState::default());
        let mut clients = Vec::new();
        for c in &ir.clients {
            let Some(digest) = from_hex(&c.key_sha256) else {
                continue;
            };
            let Ok(id) = HeaderValue::from_str(&c.client_id) else {
                continue;
            };
            by_digest.entry(digest).or_insert_with(|| {
                clients.push(Client {
                    id,
                    identity: identity_of(&c.client_id, c.consumer.as_ref()),
                });
                clients.len() - 1
            });
        }
        Self {
            sources,
            known: KnownKeys::new(clients.len()),
            clients,
            by_digest,
            forward_client_id: ir
                .forward_client_id_header
                .as_deref()
                .and_then(|h| HeaderName::from_bytes(h.as_bytes()).ok()),
        }
    }

    /// Finds the key (the first source present), strips every configured source from the
    /// request, and names the client.
    pub fn authenticate(&self, parts: &mut Parts) -> Result<Identity, Denial> {
        // `None`: no key was presented; `Some(None)`: the key is not valid. A header source is
        // read by removing it (one lookup for both), the others are read, then stripped.
        let mut found: Option<Option<usize>> = None;
        for source in &self.sources {
            if let Source::Header(h) = source {
                let value = parts.headers.remove(h);
                if found.is_none()
                    && let Some(key) = value.as_ref().and_then(header_text)
                {
                    found = Some(self.find(key));
                }
            } else {
                if found.is_none()
                    && let Some(key) = extract(source, parts)
                {
                    found = Some(self.find(&key));
                }
                strip(source, parts);
            }
        }
        if let Some(h) = &self.forward_client_id {
            parts.headers.remove(h);
        }
        let Some(found) = found else {
            return Err(Denial::new(
                StatusCode::UNAUTHORIZED,
                "api_key",
                "an API key is required",
            ));
        };
        let Some(client) = found.and_then(|i| self.clients.get(i)) else {
            return Err(Denial::new(
                StatusCode::UNAUTHORIZED,
                "api_key",
                "the API key is not valid",
            ));
        };
        if let Some(h) = &self.forward_client_id {
            parts.headers.insert(h.clone(), client.id.clone());
        }
        Ok(client.identity.clone())
    }

    /// The client a presented key belongs to.
    fn find(&self, key: &str) -> Option<usize> {
        self.known.get(key).or_else(|| {
            let digest = ring::digest::digest(&ring::digest::SHA256, key.as_bytes());
            let mut d = [0u8; 32];
            d.copy_from_slice(digest.as_ref());
            let index = *self.by_digest.get(&d)?;
            self.known.insert(key, index);
            Some(index)
        })
    }
}

fn from_hex(hex: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    if hex.len() != 64 {
        return None;
    }
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// A credential from where `source` says, borrowed from the request where it can be.
pub(super) fn extract<'p>(source: &Source, parts: &'p Parts) -> Option<Cow<'p, str>> {
    match source {
        Source::Header(h) => parts
            .headers
            .get(h)
            .and_then(header_text)
            .map(Cow::Borrowed),
        Source::Param(name) => parts.uri.query().and_then(|q| {
            q.split('&').find_map(|pair| {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                (k == name && !v.is_empty()).then(|| Cow::Owned(percent_decode(v)))
            })
        }),
        Source::Cookie(name) => parts
            .headers
            .get_all(COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .find_map(|c| {
                let (k, v) = c.trim().split_once('=')?;
                (k == name && !v.is_empty()).then_some(Cow::Borrowed(v))
            }),
    }
}

/// A header's value as a credential: trimmed, not empty.
fn header_text(value: &HeaderValue) -> Option<&str> {
    value.to_str().ok().map(str::trim).filter(|v| !v.is_empty())
}

/// Removes a source's key from the request.
pub(super) fn strip(source: &Source, parts: &mut Parts) {
    match source {
        Source::Header(h) => {
            parts.headers.remove(h);
        }
        Source::Param(name) => {
            let Some(query) = parts.uri.query() else {
                return;
            };
            let kept: Vec<&str> = query
                .split('&')
                .filter(|pair| pair.split_once('=').map_or(*pair, |(k, _)| k) != name)
                .collect();
            if kept.len() == query.split('&').count() {
                return;
            }
            let path = parts.uri.path();
            let path_and_query = if kept.is_empty() {
                path.to_owned()
            } else {
                format!("{path}?{}", kept.join("&"))
            };
            let mut uri = parts.uri.clone().into_parts();
            if let Ok(pq) = path_and_query.parse() {
                uri.path_and_query = Some(pq);
                if let Ok(new) = Uri::from_parts(uri) {
                    parts.uri = new;
                }
            }
        }
        Source::Cookie(name) => {
            let values: Vec<String> = parts
                .headers
                .get_all(COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .map(str::to_owned)
                .collect();
            if values.is_empty() {
                return;
            }
            let kept: Vec<&str> = values
                .iter()
                .flat_map(|v| v.split(';'))
                .map(str::trim)
                .filter(|c| !c.is_empty() && c.split_once('=').map_or(*c, |(k, _)| k) != name)
                .collect();
            parts.headers.remove(COOKIE);
            if !kept.is_empty()
                && let Ok(v) = HeaderValue::from_str(&kept.join("; "))
            {
                parts.headers.insert(COOKIE, v);
            }
        }
    }
}

/// `%XX` and `+` decoded (query string form encoding); invalid escapes are kept as written.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_translate::ir::ApiClientIr;

    fn keys() -> ApiKeys {
        let digest = ring::digest::digest(&ring::digest::SHA256, b"s3cret");
        let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        ApiKeys::compile(&ApiKeyAuthIr {
            extract_from: vec![
                KeySourceIr::Header("x-api-key".into()),
                KeySourceIr::Param("api_key".into()),
                KeySourceIr::Cookie("key".into()),
            ],
            clients: vec![ApiClientIr {
                client_id: "client-a".into(),
                key_sha256: hex,
                consumer: None,
            }],
            forward_client_id_header: Some("x-client-id".into()),
        })
    }

    fn parts(uri: &str, headers: &[(&str, &str)]) -> Parts {
        let mut b = http::Request::builder().uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn key_in_header_is_accepted_and_stripped() {
        let mut p = parts("/a", &[("x-api-key", "s3cret"), ("x-client-id", "forged")]);
        let id = keys().authenticate(&mut p).unwrap();
        assert_eq!(id.subject.as_deref(), Some("client-a"));
        assert!(p.headers.get("x-api-key").is_none());
        assert_eq!(p.headers["x-client-id"], "client-a");
    }

    #[test]
    fn key_in_query_is_removed_from_the_url() {
        let mut p = parts("/a?x=1&api_key=s3cr%65t&y=2", &[]);
        keys().authenticate(&mut p).unwrap();
        assert_eq!(p.uri.to_string(), "/a?x=1&y=2");
        let mut p = parts("/a?api_key=s3cret", &[]);
        keys().authenticate(&mut p).unwrap();
        assert_eq!(p.uri.to_string(), "/a");
    }

    #[test]
    fn key_in_cookie_is_removed_from_cookie() {
        let mut p = parts("/a", &[("cookie", "a=1; key=s3cret; b=2")]);
        keys().authenticate(&mut p).unwrap();
        assert_eq!(p.headers["cookie"], "a=1; b=2");
    }

    #[test]
    fn wrong_or_missing_key_is_refused_and_still_stripped() {
        let mut p = parts("/a", &[("x-api-key", "nope")]);
        let denial = keys().authenticate(&mut p).unwrap_err();
        assert_eq!(denial.status, StatusCode::UNAUTHORIZED);
        assert!(keys().authenticate(&mut parts("/a", &[])).is_err());
    }
}
