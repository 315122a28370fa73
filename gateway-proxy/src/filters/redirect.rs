//! RequestRedirect: builds the `Location` header as the Gateway API spec describes.

use http::StatusCode;
use http::header::HeaderValue;
use http::request::Parts;

use super::path::replace_path;
use super::{FilterContext, FilterError};
use gantry_translate::ir::RedirectIr;

/// A validated RequestRedirect.
#[derive(Debug)]
pub struct Redirect {
    ir: RedirectIr,
    status: StatusCode,
}

/// The answer to a redirected request.
#[derive(Debug)]
pub struct RedirectResponse {
    pub status: StatusCode,
    /// `None` when the pieces do not form a valid header value (the pipeline answers 500).
    pub location: Option<HeaderValue>,
}

impl Redirect {
    pub fn compile(ir: &RedirectIr) -> Result<Self, FilterError> {
        let status = match ir.status_code {
            301 | 302 | 303 | 307 | 308 => StatusCode::from_u16(ir.status_code)
                .map_err(|_| FilterError::StatusCode(ir.status_code))?,
            other => return Err(FilterError::StatusCode(other)),
        };
        if let Some(hostname) = &ir.hostname
            && HeaderValue::from_str(hostname).is_err()
        {
            return Err(FilterError::Hostname(hostname.clone()));
        }
        Ok(Self {
            ir: ir.clone(),
            status,
        })
    }

    pub fn respond(&self, request: &Parts, context: &FilterContext<'_>) -> RedirectResponse {
        let location = HeaderValue::try_from(self.location(request, context)).ok();
        RedirectResponse {
            status: self.status,
            location,
        }
    }

    /// `scheme://host[:port]path[?query]`.
    pub fn location(&self, request: &Parts, context: &FilterContext<'_>) -> String {
        // RequestRedirect `scheme`: "When empty, the scheme of the request is used."
        let scheme = self.ir.scheme.as_deref().unwrap_or(context.scheme);
        let host = self.ir.hostname.as_deref().unwrap_or(context.host);
        let port = match (self.ir.port, self.ir.scheme.as_deref()) {
            (Some(port), _) => port,
            (None, Some(scheme)) => well_known_port(scheme).unwrap_or(context.listener_port),
            (None, None) => context.listener_port,
        };
        let path = match &self.ir.path {
            Some(modifier) => replace_path(modifier, request.uri.path(), context.matched_prefix),
            None => request.uri.path().to_owned(),
        };
        let mut location = format!("{scheme}://{host}");
        if well_known_port(scheme) != Some(port) {
            location.push(':');
            location.push_str(&port.to_string());
        }
        location.push_str(&path);
        if let Some(query) = request.uri.query() {
            location.push('?');
            location.push_str(query);
        }
        location
    }
}

fn well_known_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_translate::ir::PathModifierIr;

    fn location(ir: RedirectIr, uri: &str, listener_port: u16, prefix: Option<&str>) -> String {
        let (parts, ()) = http::Request::get(uri).body(()).unwrap().into_parts();
        let context = FilterContext {
            scheme: "http",
            listener_port,
            host: "example.com",
            matched_prefix: prefix,
            client: std::net::Ipv4Addr::LOCALHOST.into(),
            route: "default/r",
        };
        Redirect::compile(&ir).unwrap().location(&parts, &context)
    }

    fn redirect() -> RedirectIr {
        RedirectIr {
            scheme: None,
            hostname: None,
            port: None,
            path: None,
            status_code: 302,
        }
    }

    #[test]
    fn location_table() {
        let cases = [
            // Nothing set: same host, the listener port (omitted when it is 80).
            (redirect(), 80, "http://example.com/a?x=1"),
            (redirect(), 8080, "http://example.com:8080/a?x=1"),
            // Scheme set, no port: the scheme's well-known port, omitted.
            (
                RedirectIr {
                    scheme: Some("https".into()),
                    ..redirect()
                },
                8080,
                "https://example.com/a?x=1",
            ),
            (
                RedirectIr {
                    scheme: Some("http".into()),
                    ..redirect()
                },
                8080,
                "http://example.com/a?x=1",
            ),
            // Port set: kept unless it is the scheme's well-known port.
            (
                RedirectIr {
                    port: Some(8443),
                    scheme: Some("https".into()),
                    ..redirect()
                },
                80,
                "https://example.com:8443/a?x=1",
            ),
            (
                RedirectIr {
                    port: Some(443),
                    scheme: Some("https".into()),
                    ..redirect()
                },
                80,
                "https://example.com/a?x=1",
            ),
            (
                RedirectIr {
                    port: Some(80),
                    ..redirect()
                },
                8080,
                "http://example.com/a?x=1",
            ),
            (
                RedirectIr {
                    port: Some(443),
                    ..redirect()
                },
                80,
                "http://example.com:443/a?x=1",
            ),
            // Hostname set.
            (
                RedirectIr {
                    hostname: Some("other.org".into()),
                    ..redirect()
                },
                80,
                "http://other.org/a?x=1",
            ),
            // Path replaced.
            (
                RedirectIr {
                    path: Some(PathModifierIr::ReplaceFullPath("/full".into())),
                    ..redirect()
                },
                80,
                "http://example.com/full?x=1",
            ),
        ];
        for (ir, port, want) in cases {
            assert_eq!(location(ir.clone(), "/a?x=1", port, None), want, "{ir:?}");
        }
    }

    #[test]
    fn prefix_replacement_in_location() {
        let ir = RedirectIr {
            path: Some(PathModifierIr::ReplacePrefixMatch("/".into())),
            ..redirect()
        };
        assert_eq!(
            location(ir.clone(), "/old/rest", 80, Some("/old")),
            "http://example.com/rest"
        );
        assert_eq!(
            location(ir, "/old", 80, Some("/old")),
            "http://example.com/"
        );
        let ir = RedirectIr {
            path: Some(PathModifierIr::ReplacePrefixMatch("/new".into())),
            ..redirect()
        };
        assert_eq!(
            location(ir, "/old/rest", 80, Some("/old")),
            "http://example.com/new/rest"
        );
    }

    #[test]
    fn bad_status_is_rejected() {
        let ir = RedirectIr {
            status_code: 200,
            ..redirect()
        };
        assert!(Redirect::compile(&ir).is_err());
    }
}
