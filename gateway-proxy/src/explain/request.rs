//! The request `explain` is asked about: `METHOD URL`, headers, SNI and client address, turned
//! into the request head the data plane would receive.

use std::net::{IpAddr, Ipv4Addr};

use http::header::{HOST, HeaderName, HeaderValue};
use http::request::Parts;
use http::{Method, Request, Uri};

/// `http` or `https`: which decides the port's default and whether there is a handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Https => "https",
        }
    }
}

/// A request as given on the command line.
#[derive(Clone, Debug)]
pub struct Query {
    /// `GET`, `POST`...
    pub method: String,
    /// `http://host[:port]/path?query` or `https://...`.
    pub url: String,
    /// `name: value`, in order.
    pub headers: Vec<String>,
    /// The TLS server name, when it is not the URL's host.
    pub sni: Option<String>,
    /// The client's address (what `${client_ip}` and source-IP hashing see).
    pub client_ip: Option<IpAddr>,
}

/// The request, ready to be routed.
#[derive(Debug)]
pub struct Prepared {
    pub scheme: Scheme,
    /// The listener port (the URL's, or the scheme's default).
    pub port: u16,
    /// The server name a TLS client sends: `--sni`, else the URL's host unless it is an IP
    /// address (RFC 6066 §3: "Literal IPv4 and IPv6 addresses are not permitted").
    pub sni: Option<String>,
    /// Method, origin-form target, `Host` (the URL's authority unless a `host` header is
    /// given) and the headers, HTTP/1.1.
    pub parts: Parts,
    pub client: IpAddr,
}

/// Why a request cannot be explained: a usage error.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("invalid method {0:?}")]
    Method(String),
    #[error("invalid URL {0:?}: {1}")]
    Url(String, String),
    #[error("the URL {0:?} needs a scheme, http:// or https://")]
    Scheme(String),
    #[error("invalid header {0:?}: give it as 'name: value'")]
    Header(String),
}

impl Query {
    pub fn prepare(&self) -> Result<Prepared, RequestError> {
        let method = Method::from_bytes(self.method.trim().as_bytes())
            .map_err(|_| RequestError::Method(self.method.clone()))?;
        if !self.url.contains("://") {
            return Err(RequestError::Scheme(self.url.clone()));
        }
        let uri: Uri = self.url.parse().map_err(|e: http::uri::InvalidUri| {
            RequestError::Url(self.url.clone(), e.to_string())
        })?;
        let scheme = match uri.scheme_str() {
            Some(s) if s.eq_ignore_ascii_case("http") => Scheme::Http,
            Some(s) if s.eq_ignore_ascii_case("https") => Scheme::Https,
            _ => return Err(RequestError::Scheme(self.url.clone())),
        };
        let authority = uri
            .authority()
            .ok_or_else(|| RequestError::Url(self.url.clone(), "no host".into()))?;
        let port = uri.port_u16().unwrap_or(match scheme {
            Scheme::Http => 80,
            Scheme::Https => 443,
        });
        let target = uri.path_and_query().map_or("/", |pq| pq.as_str());
        let mut request = Request::builder()
            .method(method)
            .uri(target)
            .body(())
            .map_err(|e| RequestError::Url(self.url.clone(), e.to_string()))?;
        let headers = request.headers_mut();
        headers.insert(
            HOST,
            HeaderValue::from_str(authority.as_str())
                .map_err(|e| RequestError::Url(self.url.clone(), e.to_string()))?,
        );
        let mut host_given = false;
        for header in &self.headers {
            let (name, value) = header
                .split_once(':')
                .ok_or_else(|| RequestError::Header(header.clone()))?;
            let name = HeaderName::from_bytes(name.trim().as_bytes())
                .map_err(|_| RequestError::Header(header.clone()))?;
            let value = HeaderValue::from_str(value.trim())
                .map_err(|_| RequestError::Header(header.clone()))?;
            // A `host` header replaces the URL's authority as the Host sent; the URL still
            // gives the port and the default SNI.
            if name == HOST && !host_given {
                headers.remove(HOST);
                host_given = true;
            }
            headers.append(name, value);
        }
        let host = authority.host();
        let sni = match &self.sni {
            Some(sni) => Some(sni.to_ascii_lowercase()),
            None if host.starts_with('[') || host.parse::<IpAddr>().is_ok() => None,
            None => Some(host.trim_end_matches('.').to_ascii_lowercase()),
        };
        let (parts, ()) = request.into_parts();
        Ok(Prepared {
            scheme,
            port,
            sni: sni.filter(|_| scheme == Scheme::Https),
            parts,
            client: self
                .client_ip
                .unwrap_or(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(url: &str, headers: &[&str], sni: Option<&str>) -> Query {
        Query {
            method: "GET".into(),
            url: url.into(),
            headers: headers.iter().map(|h| (*h).to_owned()).collect(),
            sni: sni.map(Into::into),
            client_ip: None,
        }
    }

    #[test]
    fn the_url_gives_port_host_and_sni() {
        let p = query("https://Shop.example.com/cart?x=1", &["cookie: a=b"], None)
            .prepare()
            .expect("valid");
        assert_eq!(p.scheme, Scheme::Https);
        assert_eq!(p.port, 443);
        assert_eq!(p.sni.as_deref(), Some("shop.example.com"));
        assert_eq!(p.parts.uri, "/cart?x=1");
        assert_eq!(p.parts.headers[HOST], "Shop.example.com");
        assert_eq!(p.parts.headers["cookie"], "a=b");

        let p = query("http://a.example.com:8080", &["Host: b.example.com"], None)
            .prepare()
            .expect("valid");
        assert_eq!((p.scheme, p.port, p.sni), (Scheme::Http, 8080, None));
        assert_eq!(p.parts.uri, "/");
        assert_eq!(p.parts.headers.get_all(HOST).iter().count(), 1);
        assert_eq!(p.parts.headers[HOST], "b.example.com");

        let p = query("https://127.0.0.1:8443/", &[], None)
            .prepare()
            .expect("valid");
        assert_eq!(p.sni, None, "no SNI for an IP address");
        let p = query("https://127.0.0.1:8443/", &[], Some("b.example.com"))
            .prepare()
            .expect("valid");
        assert_eq!(p.sni.as_deref(), Some("b.example.com"));
    }

    #[test]
    fn usage_errors() {
        assert!(matches!(
            query("shop.example.com/cart", &[], None).prepare(),
            Err(RequestError::Scheme(_))
        ));
        assert!(matches!(
            query("ftp://shop.example.com/", &[], None).prepare(),
            Err(RequestError::Scheme(_))
        ));
        assert!(matches!(
            query("http://a/", &["no-colon"], None).prepare(),
            Err(RequestError::Header(_))
        ));
    }
}
