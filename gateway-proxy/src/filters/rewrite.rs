//! URLRewrite: replaces the Host header and/or the path before the request goes upstream.

use http::header::{HOST, HeaderValue};
use http::request::Parts;
use http::uri::{PathAndQuery, Uri};

use super::path::replace_path;
use super::{FilterContext, FilterError};
use gantry_translate::ir::{PathModifierIr, UrlRewriteIr};

/// A validated URLRewrite.
#[derive(Debug)]
pub struct UrlRewrite {
    hostname: Option<HeaderValue>,
    path: Option<PathModifierIr>,
}

impl UrlRewrite {
    pub fn compile(ir: &UrlRewriteIr) -> Result<Self, FilterError> {
        let hostname = ir
            .hostname
            .as_deref()
            .map(|h| HeaderValue::from_str(h).map_err(|_| FilterError::Hostname(h.to_owned())))
            .transpose()?;
        Ok(Self {
            hostname,
            path: ir.path.clone(),
        })
    }

    pub fn apply(&self, request: &mut Parts, context: &FilterContext<'_>) {
        if let Some(hostname) = &self.hostname {
            request.headers.insert(HOST, hostname.clone());
        }
        if let Some(modifier) = &self.path {
            let path = replace_path(modifier, request.uri.path(), context.matched_prefix);
            if let Ok(uri) = with_path(&request.uri, &path) {
                request.uri = uri;
            }
        }
    }
}

/// `uri` with its path replaced; query, scheme and authority are kept. Used by URLRewrite and
/// by path normalisation.
pub fn with_path(uri: &Uri, path: &str) -> Result<Uri, http::Error> {
    let path_and_query = match uri.query() {
        Some(query) => format!("{path}?{query}"),
        None => path.to_owned(),
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(PathAndQuery::try_from(path_and_query)?);
    Ok(Uri::from_parts(parts)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewrite(ir: UrlRewriteIr, uri: &str, prefix: Option<&str>) -> Parts {
        let (mut parts, ()) = http::Request::get(uri)
            .header(HOST, "example.com")
            .body(())
            .unwrap()
            .into_parts();
        let context = FilterContext {
            scheme: "http",
            listener_port: 80,
            host: "example.com",
            matched_prefix: prefix,
            client: std::net::Ipv4Addr::LOCALHOST.into(),
            route: "default/r",
        };
        UrlRewrite::compile(&ir)
            .unwrap()
            .apply(&mut parts, &context);
        parts
    }

    #[test]
    fn hostname_sets_host() {
        let parts = rewrite(
            UrlRewriteIr {
                hostname: Some("internal.svc".into()),
                path: None,
            },
            "/a",
            None,
        );
        assert_eq!(parts.headers[HOST], "internal.svc");
        assert_eq!(parts.uri, "/a");
    }

    #[test]
    fn path_full_and_prefix_keep_query() {
        let parts = rewrite(
            UrlRewriteIr {
                hostname: None,
                path: Some(PathModifierIr::ReplaceFullPath("/full".into())),
            },
            "/a/b?q=1",
            Some("/a"),
        );
        assert_eq!(parts.uri, "/full?q=1");
        let parts = rewrite(
            UrlRewriteIr {
                hostname: None,
                path: Some(PathModifierIr::ReplacePrefixMatch("/".into())),
            },
            "/a/b?q=1",
            Some("/a"),
        );
        assert_eq!(parts.uri, "/b?q=1");
        assert_eq!(parts.headers[HOST], "example.com");
    }
}
