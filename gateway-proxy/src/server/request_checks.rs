//! Checks every request passes before it is routed: the framing and Host rules of RFC 9112,
//! RFC 9110 and RFC 9113, and the methods Gantry refuses. A request that fails one is answered
//! by the proxy (400, 405 or 501) and counted in `gantry_requests_rejected_total{reason}`.

use std::borrow::Cow;

use http::header::{ALLOW, HOST, HeaderValue, TRANSFER_ENCODING};
use http::request::Parts;
use http::{Method, StatusCode, Version};

use crate::filters::rewrite;
use crate::routing::normalize::{PathOptions, normalize_path};
use crate::routing::normalize_host;

/// Why a request was refused before routing.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Refusal {
    pub status: StatusCode,
    /// A short label for the metric.
    pub reason: &'static str,
    pub message: String,
}

impl Refusal {
    pub fn bad_request(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            reason,
            message: message.into(),
        }
    }

    /// Headers the response must carry (405 names the methods that are allowed).
    pub fn headers(&self) -> Option<(http::HeaderName, HeaderValue)> {
        (self.status == StatusCode::METHOD_NOT_ALLOWED).then(|| {
            (
                ALLOW,
                HeaderValue::from_static("GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH, TRACE"),
            )
        })
    }
}

/// The longest request target (path and query) served; longer ones get 414.
pub const MAX_URI_BYTES: usize = 16 * 1024;
/// The most header bytes (names and values) a request may carry; more get 431, answered here
/// with a request ID and an access-log line. (HTTP/2 header lists are capped at the same size
/// by the HTTP/2 settings.)
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// Everything a request goes through before it is routed, for the pipeline and for
/// `gantry-proxy explain` alike: [`check`], then the path normalised as routes see it (400),
/// then the host routes are matched on (normalised: no port, lower case). The request's URI
/// is rewritten to the normalised path.
pub fn prepare(parts: &mut Parts, paths: &PathOptions) -> Result<String, Refusal> {
    let host = check(parts)?;
    if let Cow::Owned(path) = normalize_path(parts.uri.path(), paths)
        .map_err(|r| Refusal::bad_request(r.reason(), r.to_string()))?
    {
        parts.uri = rewrite::with_path(&parts.uri, &path)
            .map_err(|_| Refusal::bad_request("path_invalid", "invalid request path"))?;
    }
    // `check` validated the Host (`validate_host`: ASCII only), so it is read as UTF-8 without
    // `to_str`'s check of every byte again.
    let host = host
        .as_ref()
        .and_then(|v| std::str::from_utf8(v.as_bytes()).ok())
        .unwrap_or("");
    Ok(normalize_host(host).into_owned())
}

/// Checks sizes, method, transfer codings and Host, and leaves exactly one valid `Host`
/// header: the authority the request is for, which it returns (none for an HTTP/1.0 request
/// without one).
pub fn check(parts: &mut Parts) -> Result<Option<HeaderValue>, Refusal> {
    let target = parts.uri.path_and_query().map_or(0, |pq| pq.as_str().len());
    if target > MAX_URI_BYTES {
        return Err(Refusal {
            status: StatusCode::URI_TOO_LONG,
            reason: "uri_too_long",
            message: format!("the request target is over {MAX_URI_BYTES} bytes"),
        });
    }
    // One pass over the fields: their size, and whether the Host and Transfer-Encoding checks
    // below have anything to look at (two hashed lookups fewer per request).
    let mut header_bytes = 0;
    let mut host = None;
    let mut hosts = 0;
    let mut transfer_coding = false;
    for (name, value) in &parts.headers {
        header_bytes += name.as_str().len() + value.len();
        if name == HOST {
            hosts += 1;
            host.get_or_insert(value);
        } else if name == TRANSFER_ENCODING {
            transfer_coding = true;
        }
    }
    if header_bytes > MAX_HEADER_BYTES {
        return Err(Refusal {
            status: StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            reason: "headers_too_large",
            message: format!("the request headers are over {MAX_HEADER_BYTES} bytes"),
        });
    }
    if parts.method == Method::CONNECT {
        // Gantry does not tunnel CONNECT, and no route kind can ask it to.
        return Err(Refusal {
            status: StatusCode::METHOD_NOT_ALLOWED,
            reason: "connect",
            message: "CONNECT is not served here".into(),
        });
    }
    if transfer_coding {
        check_transfer_coding(parts)?;
    }
    let host = host.cloned();
    check_host(parts, host, hosts > 1)
}

/// RFC 9112 §6.1: the proxy decodes `chunked` only; any other transfer coding would reach the
/// backend undeclared (the header is hop-by-hop), so it is not implemented (501). A request
/// whose last coding is not `chunked` never gets here: the parser answers 400.
fn check_transfer_coding(parts: &Parts) -> Result<(), Refusal> {
    for value in parts.headers.get_all(TRANSFER_ENCODING) {
        let codings = value.to_str().unwrap_or("?");
        let other = codings
            .split(',')
            .map(str::trim)
            .any(|coding| !coding.eq_ignore_ascii_case("chunked"));
        if other {
            return Err(Refusal {
                status: StatusCode::NOT_IMPLEMENTED,
                reason: "transfer_coding",
                message: format!("transfer coding `{codings}` is not supported; only chunked is"),
            });
        }
    }
    Ok(())
}

/// `header` is the first Host field, `repeated` whether there are more.
fn check_host(
    parts: &mut Parts,
    header: Option<HeaderValue>,
    repeated: bool,
) -> Result<Option<HeaderValue>, Refusal> {
    if repeated {
        return Err(Refusal::bad_request(
            "host_repeated",
            "more than one Host header",
        ));
    }
    // The authority of the target: HTTP/2's `:authority`, or an HTTP/1 absolute-form target.
    let target = parts.uri.authority().map(|a| a.as_str().to_owned());
    let host = match (parts.version, target, header) {
        (Version::HTTP_2 | Version::HTTP_3, Some(authority), Some(header)) => {
            // RFC 9113 §8.3.1: a `host` that names another entity than `:authority` makes
            // the request malformed.
            if !header.as_bytes().eq_ignore_ascii_case(authority.as_bytes()) {
                return Err(Refusal::bad_request(
                    "host_authority_mismatch",
                    "the host header and :authority differ",
                ));
            }
            authority
        }
        // RFC 9112 §3.2.2: with an absolute-form target the Host header is ignored and
        // replaced by the target's authority.
        (_, Some(authority), _) => authority,
        // The one Host header is the authority: validated, and left where it is.
        (_, None, Some(header)) => {
            let text = header
                .to_str()
                .map_err(|_| Refusal::bad_request("host_invalid", "invalid Host header"))?;
            validate_host(text)?;
            return Ok(Some(header));
        }
        // RFC 9112 §3.2: an HTTP/1.1 request without Host gets 400. HTTP/1.0 may omit it.
        (Version::HTTP_11, None, None) => {
            return Err(Refusal::bad_request(
                "host_missing",
                "an HTTP/1.1 request needs a Host header",
            ));
        }
        (_, None, None) => return Ok(None),
    };
    validate_host(&host)?;
    let value = HeaderValue::from_str(&host)
        .map_err(|_| Refusal::bad_request("host_invalid", "invalid Host header"))?;
    parts.headers.insert(HOST, value.clone());
    Ok(Some(value))
}

/// The bytes of a host name: letters, digits, `-`, `.` and `_`. A table, one load per byte: the
/// check runs on every request (`gantry-bench --instructions-only`).
const HOST_NAME_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let byte = b as u8;
        table[b] = byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_');
        b += 1;
    }
    table
};

/// `uri-host [ ":" port ]` (RFC 9110 §7.2) restricted to what names a host: a DNS name (letters,
/// digits, `-`, `.`, `_`), an IPv4 address or a bracketed IPv6 address, and a port of at most
/// 65535. No userinfo, path, list or space. An empty Host is allowed (RFC 9112 §3.2), and then
/// routes like a Host that matches no hostname.
pub fn validate_host(host: &str) -> Result<(), Refusal> {
    let invalid = |what: &str| {
        Err(Refusal::bad_request(
            "host_invalid",
            format!("invalid Host `{}`: {what}", host.escape_debug()),
        ))
    };
    if host.is_empty() {
        return Ok(());
    }
    let port = if let Some(rest) = host.strip_prefix('[') {
        let Some((address, after)) = rest.split_once(']') else {
            return invalid("unclosed IPv6 literal");
        };
        if address.parse::<std::net::Ipv6Addr>().is_err() {
            return invalid("not an IPv6 address");
        }
        match after {
            "" => None,
            _ => match after.strip_prefix(':') {
                Some(port) => Some(port),
                None => return invalid("junk after the IPv6 literal"),
            },
        }
    } else {
        // One pass: the first byte a host name cannot hold ends the name, and is either the
        // port's `:` or an error.
        let bytes = host.as_bytes();
        let (name, port) = match bytes.iter().position(|&b| !HOST_NAME_BYTES[usize::from(b)]) {
            None => (host, None),
            Some(colon) if bytes[colon] == b':' => (&host[..colon], Some(&host[colon + 1..])),
            Some(at) => {
                // Allowed bytes are ASCII, so `at` starts a character.
                let c = host[at..].chars().next().unwrap_or('?');
                return invalid(&format!(
                    "`{}` is not allowed in a host name",
                    c.escape_debug()
                ));
            }
        };
        if name.is_empty() {
            return invalid("no host name");
        }
        port
    };
    if let Some(port) = port
        && !port.is_empty()
        && (!port.bytes().all(|b| b.is_ascii_digit()) || port.parse::<u16>().is_err())
    {
        return invalid("the port is not a number from 0 to 65535");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(version: Version, uri: &str, hosts: &[&str]) -> Parts {
        let mut builder = http::Request::get(uri).version(version);
        for host in hosts {
            builder = builder.header(HOST, *host);
        }
        builder.body(()).unwrap().into_parts().0
    }

    fn reason(version: Version, uri: &str, hosts: &[&str]) -> Result<String, &'static str> {
        let mut parts = parts(version, uri, hosts);
        let host = check(&mut parts).map_err(|r| r.reason)?;
        // What `check` returns is the one Host header it leaves.
        let all: Vec<_> = parts.headers.get_all(HOST).iter().collect();
        assert_eq!(all, host.iter().collect::<Vec<_>>(), "{uri} {hosts:?}");
        Ok(host
            .map(|h| h.to_str().unwrap().to_owned())
            .unwrap_or_default())
    }

    #[test]
    fn host_name_bytes_are_letters_digits_dash_dot_underscore() {
        for byte in 0..=u8::MAX {
            let allowed = byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_');
            assert_eq!(HOST_NAME_BYTES[usize::from(byte)], allowed, "byte {byte}");
        }
        assert!(validate_host("Under_score-1.example:443").is_ok());
        assert!(validate_host("a%2e.example").is_err());
    }

    #[test]
    fn an_invalid_host_is_named_by_its_first_fault() {
        let message = |host: &str| validate_host(host).unwrap_err().message;
        assert!(
            message(":80").ends_with("no host name"),
            "{}",
            message(":80")
        );
        assert!(message("a b:80").ends_with("` ` is not allowed in a host name"));
        assert!(message("é.example").ends_with("`é` is not allowed in a host name"));
        assert!(message("a.example:8x").ends_with("the port is not a number from 0 to 65535"));
        // The first `:` ends the name; what follows is the port, all of it.
        assert!(message("a:1:2").ends_with("the port is not a number from 0 to 65535"));
        assert!(message("a.example:65536").ends_with("from 0 to 65535"));
        assert!(validate_host("a.example:").is_ok());
        assert!(validate_host("a.example").is_ok());
        assert!(validate_host("").is_ok());
    }

    #[test]
    fn host_rules_of_http1() {
        let h11 = Version::HTTP_11;
        assert_eq!(reason(h11, "/", &["a.example"]), Ok("a.example".into()));
        assert_eq!(
            reason(h11, "/", &["a.example:8080"]),
            Ok("a.example:8080".into())
        );
        assert_eq!(reason(h11, "/", &["[::1]:80"]), Ok("[::1]:80".into()));
        assert_eq!(reason(h11, "/", &["a", "b"]), Err("host_repeated"));
        assert_eq!(reason(h11, "/", &[]), Err("host_missing"));
        assert_eq!(reason(Version::HTTP_10, "/", &[]), Ok(String::new()));
        for bad in [
            "a, b",
            "a,b",
            "user@a.example",
            "a.example/x",
            "a:99999",
            "a:8x",
            "a b",
            "[::1",
            "[zz]",
            ":80",
        ] {
            assert_eq!(reason(h11, "/", &[bad]), Err("host_invalid"), "{bad}");
        }
        // Absolute form: the target's authority wins over Host.
        assert_eq!(
            reason(h11, "http://b.example/x", &["a.example"]),
            Ok("b.example".into())
        );
        assert_eq!(
            reason(h11, "http://u@b.example/x", &["a.example"]),
            Err("host_invalid")
        );
    }

    #[test]
    fn host_rules_of_http2() {
        let h2 = Version::HTTP_2;
        assert_eq!(
            reason(h2, "https://a.example/", &[]),
            Ok("a.example".into())
        );
        assert_eq!(
            reason(h2, "https://a.example/", &["A.example"]),
            Ok("a.example".into())
        );
        assert_eq!(
            reason(h2, "https://a.example/", &["b.example"]),
            Err("host_authority_mismatch")
        );
    }

    #[test]
    fn sizes() {
        let long = format!("/{}", "a".repeat(MAX_URI_BYTES));
        let mut p = parts(Version::HTTP_11, &long, &["a"]);
        assert_eq!(check(&mut p).unwrap_err().status, StatusCode::URI_TOO_LONG);
        let mut p = parts(Version::HTTP_11, "/", &["a"]);
        for i in 0..70 {
            p.headers.insert(
                http::HeaderName::from_bytes(format!("x-{i}").as_bytes()).unwrap(),
                HeaderValue::from_str(&"v".repeat(1000)).unwrap(),
            );
        }
        assert_eq!(
            check(&mut p).unwrap_err().status,
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
        );
    }

    #[test]
    fn methods_and_codings() {
        let mut connect = parts(Version::HTTP_11, "/", &["a"]);
        connect.method = Method::CONNECT;
        let refusal = check(&mut connect).unwrap_err();
        assert_eq!(refusal.status, StatusCode::METHOD_NOT_ALLOWED);
        assert!(refusal.headers().is_some());
        for (coding, ok) in [
            ("chunked", true),
            ("gzip, chunked", false),
            ("identity", false),
        ] {
            let mut p = parts(Version::HTTP_11, "/", &["a"]);
            p.headers
                .insert(TRANSFER_ENCODING, HeaderValue::from_static(coding));
            let result = check(&mut p);
            assert_eq!(result.is_ok(), ok, "{coding}");
            if let Err(refusal) = result {
                assert_eq!(refusal.status, StatusCode::NOT_IMPLEMENTED);
            }
        }
    }
}
