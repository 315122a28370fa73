//! What a consistent hash hashes (`HashKeyIr`), read from a request or a connection, and the
//! cookie a request without its hash cookie is given.

use std::net::IpAddr;

use http::header::COOKIE;
use http::{HeaderMap, HeaderValue};

use super::maglev::hash_key;
use gantry_translate::ir::HashKeyIr;

/// What a request or connection offers to a balancer.
#[derive(Clone, Copy, Debug)]
pub struct RequestKey<'a> {
    /// The client's address as the proxy's socket sees it.
    pub client: IpAddr,
    /// The request's headers; `None` for TCP and TLS connections.
    pub headers: Option<&'a HeaderMap>,
    /// The request's query (without `?`).
    pub query: Option<&'a str>,
}

impl<'a> RequestKey<'a> {
    /// A TCP or TLS connection: only the client's address.
    pub fn connection(client: IpAddr) -> Self {
        Self {
            client,
            headers: None,
            query: None,
        }
    }
}

/// The hash of the request's key; `None` when the request does not carry it.
pub fn hash(key: &HashKeyIr, request: &RequestKey<'_>) -> Option<u64> {
    match key {
        HashKeyIr::SourceIp => Some(match request.client {
            IpAddr::V4(ip) => hash_key(&ip.octets()),
            IpAddr::V6(ip) => match ip.to_ipv4_mapped() {
                Some(v4) => hash_key(&v4.octets()),
                None => hash_key(&ip.octets()),
            },
        }),
        HashKeyIr::Header { name } => {
            let mut values = request.headers?.get_all(name.as_str()).iter();
            let first = values.next()?;
            let Some(second) = values.next() else {
                return Some(hash_key(first.as_bytes()));
            };
            // Several values: joined with `,`, in order.
            let mut joined = [first, second].map(|v| v.as_bytes()).join(&b","[..]);
            for value in values {
                joined.push(b',');
                joined.extend_from_slice(value.as_bytes());
            }
            Some(hash_key(&joined))
        }
        HashKeyIr::Cookie { name, .. } => cookie(request.headers?, name).map(hash_key),
        HashKeyIr::QueryParams { names } => {
            let query = request.query?;
            let mut joined = Vec::new();
            let mut found = false;
            for name in names {
                let value = query
                    .split('&')
                    .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
                    .find(|(n, _)| *n == name.as_str())
                    .map(|(_, v)| v);
                if let Some(value) = value {
                    found = true;
                    joined.extend_from_slice(value.as_bytes());
                }
                // A separator after each parameter, present or not, so `a=x` and `b=x` differ.
                joined.push(0);
            }
            found.then(|| hash_key(&joined))
        }
    }
}

/// The value of cookie `name` in the request's `Cookie` headers (RFC 6265 §4.2.1), the first
/// when there are several.
fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h [u8]> {
    headers
        .get_all(COOKIE)
        .iter()
        .flat_map(|value| value.as_bytes().split(|b| *b == b';'))
        .find_map(|pair| {
            let pair = pair.trim_ascii();
            let eq = pair.iter().position(|b| *b == b'=')?;
            (&pair[..eq] == name.as_bytes()).then(|| pair[eq + 1..].trim_ascii())
        })
}

/// For a cookie key with a `ttl_ms`: a new cookie value (random, 16 hex digits) and its
/// `Set-Cookie` header. The value's hash chooses the endpoint, so the client's next requests,
/// sending it, go to the same one.
pub fn new_cookie(key: &HashKeyIr) -> Option<(u64, HeaderValue)> {
    let HashKeyIr::Cookie {
        name,
        ttl_ms: Some(ttl_ms),
        attributes,
    } = key
    else {
        return None;
    };
    let value = format!("{:016x}", fastrand::u64(..));
    let mut header = format!("{name}={value}");
    if *ttl_ms > 0 {
        header.push_str(&format!("; Max-Age={}", ttl_ms.div_ceil(1000)));
    }
    for (attribute, attribute_value) in attributes {
        header.push_str("; ");
        header.push_str(attribute);
        if !attribute_value.is_empty() {
            header.push('=');
            header.push_str(attribute_value);
        }
    }
    let header = HeaderValue::from_str(&header).ok()?;
    Some((hash_key(value.as_bytes()), header))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn request<'a>(headers: &'a HeaderMap, query: Option<&'a str>) -> RequestKey<'a> {
        RequestKey {
            client: "10.1.2.3".parse().unwrap_or(IpAddr::from([0, 0, 0, 0])),
            headers: Some(headers),
            query,
        }
    }

    #[test]
    fn keys_are_read_from_the_request() {
        let mut headers = HeaderMap::new();
        headers.append("x-user", HeaderValue::from_static("a"));
        headers.append("x-user", HeaderValue::from_static("b"));
        headers.append(COOKIE, HeaderValue::from_static("other=1; user=alice"));
        let r = request(&headers, Some("tenant=t1&x&region=eu"));
        let header = HashKeyIr::Header {
            name: "x-user".into(),
        };
        // Several values joined with `,`.
        assert_eq!(hash(&header, &r), Some(hash_key(b"a,b")));
        let cookie = HashKeyIr::Cookie {
            name: "user".into(),
            ttl_ms: None,
            attributes: BTreeMap::new(),
        };
        assert_eq!(hash(&cookie, &r), Some(hash_key(b"alice")));
        let query = HashKeyIr::QueryParams {
            names: vec!["region".into(), "tenant".into()],
        };
        assert_eq!(hash(&query, &r), Some(hash_key(b"eu\0t1\0")));
        let source = HashKeyIr::SourceIp;
        assert_eq!(hash(&source, &r), Some(hash_key(&[10, 1, 2, 3])));
        let mapped = RequestKey::connection("::ffff:10.1.2.3".parse().unwrap_or(r.client));
        assert_eq!(hash(&source, &mapped), hash(&source, &r));

        // Absent keys.
        let empty = HeaderMap::new();
        let bare = request(&empty, Some("other=1"));
        for key in [header, cookie, query] {
            assert_eq!(hash(&key, &bare), None, "{key:?}");
            assert_eq!(hash(&key, &RequestKey::connection(r.client)), None);
        }
    }

    #[test]
    fn a_new_cookie_hashes_to_the_endpoint_it_was_made_for() {
        let key = HashKeyIr::Cookie {
            name: "lb".into(),
            ttl_ms: Some(1_500),
            attributes: BTreeMap::from([
                ("Path".to_owned(), "/".to_owned()),
                ("Secure".to_owned(), String::new()),
            ]),
        };
        let (hashed, header) = new_cookie(&key).expect("a cookie");
        let text = header.to_str().unwrap_or_default();
        let value = text
            .strip_prefix("lb=")
            .and_then(|rest| rest.split(';').next())
            .unwrap_or_default();
        assert_eq!(value.len(), 16);
        assert!(text.ends_with("; Max-Age=2; Path=/; Secure"), "{text}");
        let mut headers = HeaderMap::new();
        headers.insert(
            COOKIE,
            HeaderValue::from_str(&format!("lb={value}")).unwrap_or(header),
        );
        assert_eq!(hash(&key, &request(&headers, None)), Some(hashed));

        let session = HashKeyIr::Cookie {
            name: "lb".into(),
            ttl_ms: Some(0),
            attributes: BTreeMap::new(),
        };
        let (_, header) = new_cookie(&session).expect("a cookie");
        assert!(!header.to_str().unwrap_or_default().contains("Max-Age"));
        let no_ttl = HashKeyIr::Cookie {
            name: "lb".into(),
            ttl_ms: None,
            attributes: BTreeMap::new(),
        };
        assert!(new_cookie(&no_ttl).is_none());
    }
}
