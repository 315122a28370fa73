//! Request ID, X-Forwarded-* and hop-by-hop header handling.

use std::net::IpAddr;

use http::header::{
    CONNECTION, CONTENT_LENGTH, EXPECT, Entry, FORWARDED, HOST, HeaderMap, HeaderName, HeaderValue,
    PROXY_AUTHENTICATE, PROXY_AUTHORIZATION, TE, TRAILER, TRANSFER_ENCODING, UPGRADE,
};

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// The request's `x-request-id`, generated (UUID v4) and inserted when absent or empty.
pub fn ensure_request_id(headers: &mut HeaderMap) -> HeaderValue {
    // One entry lookup, not a `get` and an `insert`: the name is hashed once.
    let entry = match headers.entry(X_REQUEST_ID) {
        Entry::Occupied(id) if !id.get().is_empty() => return id.get().clone(),
        entry => entry,
    };
    // Written into a buffer on the stack, not through `fmt`: one copy, into the value.
    let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let text = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut text);
    // A hyphenated UUID is always a valid header value.
    let id = HeaderValue::from_str(text).unwrap_or(HeaderValue::from_static("invalid"));
    match entry {
        // Every empty value goes, as `insert` would remove them.
        Entry::Occupied(mut empty) => {
            empty.insert(id.clone());
        }
        Entry::Vacant(vacant) => {
            vacant.insert(id.clone());
        }
    }
    id
}

/// The peer's address as a header value (IPv4-mapped IPv6 addresses as IPv4), made once per
/// connection: what X-Forwarded-For says when no proxy in front is trusted.
pub fn address_value(ip: IpAddr) -> HeaderValue {
    // An IP address in text is always a valid header value.
    HeaderValue::from_str(&ip.to_canonical().to_string())
        .unwrap_or(HeaderValue::from_static("unknown"))
}

/// What the proxy tells the upstream about the client.
#[derive(Clone, Debug)]
pub struct Forwarding {
    /// The peer of the client connection.
    pub client: IpAddr,
    /// `client` as a header value ([`address_value`]).
    pub client_value: HeaderValue,
    /// `http` or `https`, as the client connected.
    pub scheme: &'static str,
    /// Proxies in front of Gantry whose forwarding headers are trusted
    /// (`--trusted-proxy-hops`).
    pub trusted_hops: u32,
}

/// What a request carries of the headers the proxy removes or rewrites on its way upstream,
/// found in one pass over its fields ([`carried`]): one that is absent then costs no hashed
/// lookup or removal (about 90 instructions each; `gantry-bench --instructions-only`,
/// docs/benchmarks.md).
#[derive(Debug, Default)]
pub struct Carried {
    /// Any hop-by-hop header, `Upgrade` among them ([`strip_hop_by_hop`] has work to do).
    pub hop_by_hop: bool,
    /// An `Upgrade` header (the request may ask for one).
    pub upgrade: bool,
    /// An `Expect` header.
    pub expect: bool,
    /// A `Forwarded` header.
    pub forwarded: bool,
    /// The Host, for X-Forwarded-Host.
    pub host: Option<HeaderValue>,
}

/// What `headers` carry; a standard name compares as an integer.
pub fn carried(headers: &HeaderMap) -> Carried {
    let mut carried = Carried::default();
    for (name, value) in headers {
        if name == HOST {
            carried.host.get_or_insert_with(|| value.clone());
        } else if name == EXPECT {
            carried.expect = true;
        } else if name == FORWARDED {
            carried.forwarded = true;
        } else if is_hop_by_hop(name) {
            carried.hop_by_hop = true;
            carried.upgrade |= name == UPGRADE;
        }
    }
    carried
}

/// Sets X-Forwarded-For, X-Forwarded-Proto, X-Forwarded-Host and `Forwarded` (RFC 7239);
/// `carried` is what [`carried`] found in `headers`.
///
/// With no trusted hops (the default), what the client sent in them is a claim nobody vouches
/// for: X-Forwarded-For becomes the peer address alone, X-Forwarded-Proto and -Host are set
/// from the connection and the Host, and `Forwarded` is removed. With trusted hops in front,
/// the peer is appended to X-Forwarded-For and to `Forwarded`, and a proxy's X-Forwarded-Proto
/// and -Host are kept.
pub fn add_forwarded(headers: &mut HeaderMap, forwarding: &Forwarding, carried: Carried) {
    let client = forwarding.client.to_canonical();
    let trusted = forwarding.trusted_hops > 0;
    let host = carried.host;
    // The client's own X-Forwarded-For is read only when it is trusted.
    let existing = trusted
        .then(|| headers.get(X_FORWARDED_FOR).and_then(|v| v.to_str().ok()))
        .flatten();
    let appended = match existing {
        Some(existing) if !existing.is_empty() => {
            HeaderValue::from_str(&format!("{existing}, {client}")).ok()
        }
        _ => None,
    };
    headers.insert(
        X_FORWARDED_FOR,
        appended.unwrap_or_else(|| forwarding.client_value.clone()),
    );
    if !trusted || !headers.contains_key(X_FORWARDED_PROTO) {
        headers.insert(
            X_FORWARDED_PROTO,
            HeaderValue::from_static(forwarding.scheme),
        );
    }
    if let Some(host) = host
        && (!trusted || !headers.contains_key(X_FORWARDED_HOST))
    {
        headers.insert(X_FORWARDED_HOST, host);
    }
    if trusted && let Some(existing) = headers.get(FORWARDED).and_then(|v| v.to_str().ok()) {
        // RFC 7239 §6: an IPv6 address is quoted and bracketed.
        let node = match client {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => format!("\"[{v6}]\""),
        };
        let appended = format!("{existing}, for={node};proto={}", forwarding.scheme);
        if let Ok(value) = HeaderValue::from_str(&appended) {
            headers.insert(FORWARDED, value);
        }
    } else if carried.forwarded {
        headers.remove(FORWARDED);
    }
}

/// The headers `strip_hop_by_hop` removes by name (`Upgrade` too, unless an upgrade is kept;
/// the others go only when the `Connection` header, itself one of these, names them).
const HOP_BY_HOP: [HeaderName; 8] = [
    CONNECTION,
    KEEP_ALIVE,
    PROXY_CONNECTION,
    TRANSFER_ENCODING,
    TE,
    TRAILER,
    PROXY_AUTHENTICATE,
    PROXY_AUTHORIZATION,
];

fn is_hop_by_hop(name: &HeaderName) -> bool {
    name == UPGRADE || HOP_BY_HOP.contains(name)
}

/// Headers a `Connection` token never removes: the request's identity and framing, which the
/// proxy sets or relies on, and the request ID it adds.
fn protected(name: &HeaderName) -> bool {
    name == HOST || name == CONTENT_LENGTH || name == X_REQUEST_ID
}

/// The client's address for authorization: with `n` trusted proxy hops in front, the `n`-th
/// address from the right of the X-Forwarded-For that [`add_forwarded`] wrote (the rightmost is
/// the connection's peer, which the nearest trusted proxy appended to); with fewer entries, the
/// leftmost; with none trusted, the peer. Read only by routes whose SecurityPolicy authorizes
/// by address.
pub fn client_address(headers: &HeaderMap, forwarding: &Forwarding) -> IpAddr {
    let peer = forwarding.client.to_canonical();
    if forwarding.trusted_hops == 0 {
        return peer;
    }
    let Some(list) = headers.get(X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) else {
        return peer;
    };
    let entries: Vec<&str> = list.split(',').map(str::trim).collect();
    let index = entries
        .len()
        .saturating_sub(1)
        .saturating_sub(forwarding.trusted_hops as usize);
    entries
        .get(index)
        .and_then(|e| e.parse::<IpAddr>().ok())
        .map_or(peer, |a| a.to_canonical())
}

/// Removes hop-by-hop headers (RFC 9110 §7.6.1), including those the Connection header
/// names. `TE: trailers` survives (gRPC needs it). With `keep_upgrade`, `Connection: upgrade`
/// and `Upgrade` are kept so the upgrade reaches the other side.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    // Most messages carry none of them: one pass over the names (a standard name compares as
    // an integer) instead of a hashed removal per hop-by-hop header.
    if !keep_upgrade && !headers.keys().any(is_hop_by_hop) {
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|token| HeaderName::from_bytes(token.trim().as_bytes()).ok())
        .filter(|name| !(protected(name) || (keep_upgrade && name == UPGRADE)))
        .collect();
    for name in named {
        headers.remove(name);
    }
    let te_trailers = headers
        .get(TE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("trailers"))
        });
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
    if te_trailers {
        headers.insert(TE, HeaderValue::from_static("trailers"));
    }
    if keep_upgrade {
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        headers.remove(UPGRADE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_id_is_kept_or_generated() {
        let mut headers = HeaderMap::new();
        let id = ensure_request_id(&mut headers);
        assert_eq!(id.len(), 36);
        assert_eq!(headers[X_REQUEST_ID], id);
        headers.insert(X_REQUEST_ID, HeaderValue::from_static("abc"));
        assert_eq!(ensure_request_id(&mut headers), "abc");
        // An empty ID is replaced, every copy of it.
        headers.insert(X_REQUEST_ID, HeaderValue::from_static(""));
        headers.append(X_REQUEST_ID, HeaderValue::from_static(""));
        let id = ensure_request_id(&mut headers);
        assert_eq!(id.len(), 36);
        let all: Vec<_> = headers.get_all(X_REQUEST_ID).iter().collect();
        assert_eq!(all, [&id]);
    }

    /// What the pipeline does: the request's headers looked at once, then forwarding added.
    fn add(headers: &mut HeaderMap, forwarding: &Forwarding) {
        let found = carried(headers);
        add_forwarded(headers, forwarding, found);
    }

    fn forwarding(trusted_hops: u32) -> Forwarding {
        Forwarding {
            client: "10.0.0.1".parse().unwrap(),
            client_value: address_value("10.0.0.1".parse().unwrap()),
            scheme: "http",
            trusted_hops,
        }
    }

    fn spoofed() -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(HOST, HeaderValue::from_static("example.com:8080"));
        headers.insert(X_FORWARDED_FOR, HeaderValue::from_static("1.2.3.4"));
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("https"));
        headers.insert(X_FORWARDED_HOST, HeaderValue::from_static("admin.internal"));
        headers.insert(FORWARDED, HeaderValue::from_static("for=1.2.3.4"));
        headers
    }

    #[test]
    fn client_address_counts_trusted_hops_from_the_right() {
        let mut headers = HeaderMap::new();
        add(&mut headers, &forwarding(0));
        assert_eq!(
            client_address(&headers, &forwarding(0)).to_string(),
            "10.0.0.1"
        );
        for (sent, hops, want) in [
            ("192.0.2.9", 1, "192.0.2.9"),
            ("198.51.100.1, 192.0.2.9", 1, "192.0.2.9"),
            ("198.51.100.1, 192.0.2.9", 2, "198.51.100.1"),
            // Fewer entries than hops: the leftmost.
            ("192.0.2.9", 3, "192.0.2.9"),
            ("not-an-address", 1, "10.0.0.1"),
        ] {
            let mut headers = HeaderMap::new();
            headers.insert(X_FORWARDED_FOR, HeaderValue::from_static(sent));
            add(&mut headers, &forwarding(hops));
            let got = client_address(&headers, &forwarding(hops)).to_string();
            assert_eq!(got, want, "{sent} with {hops} hops");
        }
        // Untrusted: whatever the client sent is ignored.
        let mut headers = HeaderMap::new();
        headers.insert(X_FORWARDED_FOR, HeaderValue::from_static("192.0.2.9"));
        add(&mut headers, &forwarding(0));
        assert_eq!(
            client_address(&headers, &forwarding(0)).to_string(),
            "10.0.0.1"
        );
    }

    #[test]
    fn carried_names_what_the_request_has_to_remove_or_rewrite() {
        let plain = carried(&HeaderMap::new());
        assert!(!plain.hop_by_hop && !plain.upgrade && !plain.expect && !plain.forwarded);
        assert_eq!(plain.host, None);
        let mut headers = spoofed();
        headers.append(HOST, HeaderValue::from_static("second.example"));
        headers.insert(EXPECT, HeaderValue::from_static("100-continue"));
        let found = carried(&headers);
        assert_eq!(
            found.host.as_ref().map(|h| h.as_bytes()),
            Some(&b"example.com:8080"[..])
        );
        assert!(found.expect && found.forwarded);
        assert!(!found.hop_by_hop && !found.upgrade);
        headers.insert(TE, HeaderValue::from_static("trailers"));
        let found = carried(&headers);
        assert!(found.hop_by_hop && !found.upgrade);
        headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
        assert!(carried(&headers).upgrade);
    }

    #[test]
    fn untrusted_forwarding_headers_are_overwritten() {
        let mut headers = spoofed();
        add(&mut headers, &forwarding(0));
        assert_eq!(headers[X_FORWARDED_FOR], "10.0.0.1");
        assert_eq!(headers[X_FORWARDED_PROTO], "http");
        assert_eq!(headers[X_FORWARDED_HOST], "example.com:8080");
        assert!(!headers.contains_key(FORWARDED));
    }

    #[test]
    fn trusted_forwarding_headers_are_appended() {
        let mut headers = spoofed();
        add(&mut headers, &forwarding(1));
        assert_eq!(headers[X_FORWARDED_FOR], "1.2.3.4, 10.0.0.1");
        assert_eq!(headers[X_FORWARDED_PROTO], "https");
        assert_eq!(headers[X_FORWARDED_HOST], "admin.internal");
        assert_eq!(headers[FORWARDED], "for=1.2.3.4, for=10.0.0.1;proto=http");
        let mut headers = HeaderMap::new();
        add(&mut headers, &forwarding(1));
        assert_eq!(headers[X_FORWARDED_FOR], "10.0.0.1");
        assert!(!headers.contains_key(FORWARDED));
    }

    #[test]
    fn connection_tokens_never_remove_what_the_proxy_needs() {
        let mut headers = HeaderMap::new();
        headers.insert(
            CONNECTION,
            HeaderValue::from_static("x-request-id, host, content-length, x-other"),
        );
        headers.insert(X_REQUEST_ID, HeaderValue::from_static("id"));
        headers.insert(HOST, HeaderValue::from_static("a"));
        headers.insert(CONTENT_LENGTH, HeaderValue::from_static("3"));
        headers.insert("x-other", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut headers, false);
        assert_eq!(headers[X_REQUEST_ID], "id");
        assert_eq!(headers[HOST], "a");
        assert_eq!(headers[CONTENT_LENGTH], "3");
        assert!(!headers.contains_key("x-other"));
    }

    #[test]
    fn hop_by_hop_headers_go() {
        let mut headers = HeaderMap::new();
        headers.insert(
            CONNECTION,
            HeaderValue::from_static("keep-alive, x-private"),
        );
        headers.insert("x-private", HeaderValue::from_static("1"));
        headers.insert(KEEP_ALIVE, HeaderValue::from_static("timeout=5"));
        headers.insert(TE, HeaderValue::from_static("trailers, deflate"));
        headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert("x-keep", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut headers, false);
        assert!(!headers.contains_key(CONNECTION));
        assert!(!headers.contains_key("x-private"));
        assert!(!headers.contains_key(KEEP_ALIVE));
        assert!(!headers.contains_key(UPGRADE));
        assert_eq!(headers[TE], "trailers");
        assert_eq!(headers["x-keep"], "1");
    }

    #[test]
    fn each_hop_by_hop_header_goes_on_its_own_and_others_stay() {
        for name in [
            CONNECTION,
            KEEP_ALIVE,
            PROXY_CONNECTION,
            TRANSFER_ENCODING,
            TE,
            TRAILER,
            PROXY_AUTHENTICATE,
            PROXY_AUTHORIZATION,
            UPGRADE,
        ] {
            let mut headers = HeaderMap::new();
            headers.insert(name.clone(), HeaderValue::from_static("x"));
            headers.insert("x-keep", HeaderValue::from_static("1"));
            strip_hop_by_hop(&mut headers, false);
            assert!(!headers.contains_key(&name), "{name} stays");
            assert_eq!(headers.len(), 1, "{name}: {headers:?}");
        }
        let mut plain = HeaderMap::new();
        plain.insert(HOST, HeaderValue::from_static("a"));
        plain.insert("x-keep", HeaderValue::from_static("1"));
        let before = plain.clone();
        strip_hop_by_hop(&mut plain, false);
        assert_eq!(plain, before);
    }

    #[test]
    fn upgrades_keep_their_headers() {
        let mut headers = HeaderMap::new();
        headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
        headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
        strip_hop_by_hop(&mut headers, true);
        assert_eq!(headers[CONNECTION], "upgrade");
        assert_eq!(headers[UPGRADE], "websocket");
    }
}
