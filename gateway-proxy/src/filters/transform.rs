//! HTTPTransform: templated header edits, a regex path rewrite, and JSON body edits.
//!
//! Request headers and the path change when the filter runs, in the rule's filter order. The
//! request body, the response headers and the response body change later (see
//! [`Deferred`]); their templates are rendered now, from the request as this filter sees it.

use std::borrow::Cow;

use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use regex::{Regex, RegexBuilder};

use super::json_body::JsonBody;
use super::rewrite::with_path;
use super::template::Template;
use super::{Deferred, FilterContext, FilterError, ResponseHeaders};
use gantry_translate::ir::{
    PATH_REGEX_SIZE_LIMIT, TemplateHeaderIr, TemplateHeadersIr, TransformIr,
};

/// A compiled HTTPTransform.
#[derive(Debug)]
pub struct Transform {
    request_headers: Option<TemplateHeaders>,
    path: Option<(Regex, String)>,
    request_body: Option<JsonBody>,
    response_headers: Option<TemplateHeaders>,
    response_body: Option<JsonBody>,
}

/// Header edits with templates: set, then add, then remove.
#[derive(Debug)]
pub struct TemplateHeaders {
    set: Vec<(HeaderName, Template)>,
    add: Vec<(HeaderName, Template)>,
    remove: Vec<HeaderName>,
}

/// Header edits rendered for one request, applied to its response.
#[derive(Debug)]
pub struct RenderedHeaders<'a> {
    set: Vec<(&'a HeaderName, HeaderValue)>,
    add: Vec<(&'a HeaderName, HeaderValue)>,
    remove: &'a [HeaderName],
}

impl Transform {
    pub fn compile(ir: &TransformIr) -> Result<Self, FilterError> {
        let path = ir
            .path_regex
            .as_ref()
            .map(|p| {
                RegexBuilder::new(&p.pattern)
                    .size_limit(PATH_REGEX_SIZE_LIMIT)
                    .build()
                    .map(|regex| (regex, p.substitution.clone()))
                    .map_err(|_| FilterError::Regex(p.pattern.clone()))
            })
            .transpose()?;
        Ok(Self {
            request_headers: ir
                .request_headers
                .as_ref()
                .map(TemplateHeaders::compile)
                .transpose()?,
            path,
            request_body: ir
                .request_body
                .as_ref()
                .map(JsonBody::compile)
                .transpose()?,
            response_headers: ir
                .response_headers
                .as_ref()
                .map(TemplateHeaders::compile)
                .transpose()?,
            response_body: ir
                .response_body
                .as_ref()
                .map(JsonBody::compile)
                .transpose()?,
        })
    }

    /// Changes the request's headers and path now; leaves the body and response work in
    /// `deferred`.
    pub fn apply<'a>(
        &'a self,
        request: &mut Parts,
        context: &FilterContext<'_>,
        deferred: &mut Deferred<'a>,
    ) {
        if let Some(headers) = &self.request_headers {
            let rendered = headers.render(request, context);
            rendered.apply(&mut request.headers);
        }
        if let Some((regex, substitution)) = &self.path {
            rewrite_path(request, regex, substitution);
        }
        if let Some(body) = &self.request_body {
            deferred.request_body.push(body.prepare(request, context));
        }
        if let Some(headers) = &self.response_headers {
            deferred
                .response_headers
                .push(ResponseHeaders::Rendered(headers.render(request, context)));
        }
        if let Some(body) = &self.response_body {
            deferred.response_body.push(body.prepare(request, context));
        }
    }
}

/// Every match of `regex` in the path replaced (Envoy's `regex_rewrite`, which Envoy Gateway's
/// `ReplaceRegexMatch` uses, replaces all of them). The query is kept; a result that is not
/// a valid path leaves the request unchanged.
fn rewrite_path(request: &mut Parts, regex: &Regex, substitution: &str) {
    let Cow::Owned(path) = regex.replace_all(request.uri.path(), substitution) else {
        return;
    };
    let path = if path.starts_with('/') {
        path
    } else {
        format!("/{path}")
    };
    match with_path(&request.uri, &path) {
        Ok(uri) => request.uri = uri,
        Err(_) => tracing::debug!(%path, "regex path rewrite gave an invalid path; not applied"),
    }
}

impl TemplateHeaders {
    fn compile(ir: &TemplateHeadersIr) -> Result<Self, FilterError> {
        let pair = |h: &TemplateHeaderIr| -> Result<(HeaderName, Template), FilterError> {
            Ok((name(&h.name)?, Template::compile(&h.value)?))
        };
        Ok(Self {
            set: ir.set.iter().map(pair).collect::<Result<_, _>>()?,
            add: ir.add.iter().map(pair).collect::<Result<_, _>>()?,
            remove: ir
                .remove
                .iter()
                .map(|n| name(n))
                .collect::<Result<_, _>>()?,
        })
    }

    /// The values for this request. A value a variable made invalid in a header (a control
    /// character from a header value, say) is left out.
    fn render<'a>(&'a self, request: &Parts, context: &FilterContext<'_>) -> RenderedHeaders<'a> {
        let render = |list: &'a [(HeaderName, Template)]| {
            list.iter()
                .filter_map(|(name, template)| {
                    let text = template.render(request, context);
                    match HeaderValue::try_from(text) {
                        Ok(value) => Some((name, value)),
                        Err(_) => {
                            tracing::debug!(header = %name, "templated header value is not valid in HTTP; left out");
                            None
                        }
                    }
                })
                .collect()
        };
        RenderedHeaders {
            set: render(&self.set),
            add: render(&self.add),
            remove: &self.remove,
        }
    }
}

impl RenderedHeaders<'_> {
    pub fn apply(&self, headers: &mut HeaderMap) {
        for (name, value) in &self.set {
            headers.insert(*name, value.clone());
        }
        for (name, value) in &self.add {
            headers.append(*name, value.clone());
        }
        for name in self.remove {
            headers.remove(name);
        }
    }
}

fn name(name: &str) -> Result<HeaderName, FilterError> {
    HeaderName::from_bytes(name.as_bytes()).map_err(|_| FilterError::HeaderName(name.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_translate::ir::{PathRegexIr, SegmentIr, TemplateIr};

    fn context() -> FilterContext<'static> {
        FilterContext {
            scheme: "http",
            listener_port: 80,
            host: "example.com",
            matched_prefix: None,
            client: "192.0.2.7".parse().unwrap(),
            route: "default/r",
        }
    }

    #[test]
    fn headers_and_regex_path() {
        let transform = Transform::compile(&TransformIr {
            source: "default/t".into(),
            request_headers: Some(TemplateHeadersIr {
                set: vec![TemplateHeaderIr {
                    name: "x-path-was".into(),
                    value: TemplateIr(vec![SegmentIr::Path]),
                }],
                add: vec![TemplateHeaderIr {
                    name: "x-client".into(),
                    value: TemplateIr(vec![SegmentIr::Literal("ip=".into()), SegmentIr::ClientIp]),
                }],
                remove: vec!["x-secret".into()],
            }),
            path_regex: Some(PathRegexIr {
                pattern: "^/api/(v[0-9]+)/(.*)$".into(),
                substitution: "/${2}/${1}".into(),
            }),
            ..Default::default()
        })
        .unwrap();
        let (mut parts, ()) = http::Request::get("/api/v2/users/7?full=1")
            .header("x-secret", "s")
            .header("x-client", "first")
            .body(())
            .unwrap()
            .into_parts();
        let mut deferred = Deferred::default();
        transform.apply(&mut parts, &context(), &mut deferred);
        assert_eq!(parts.uri, "/users/7/v2?full=1");
        assert_eq!(parts.headers["x-path-was"], "/api/v2/users/7");
        assert_eq!(
            parts.headers.get_all("x-client").iter().collect::<Vec<_>>(),
            ["first", "ip=192.0.2.7"]
        );
        assert!(!parts.headers.contains_key("x-secret"));
        assert!(deferred.request_body.is_empty() && deferred.response_headers.is_empty());
    }

    #[test]
    fn query_values_render_into_headers() {
        let headers = TemplateHeaders::compile(&TemplateHeadersIr {
            set: vec![TemplateHeaderIr {
                name: "x-q".into(),
                value: TemplateIr(vec![SegmentIr::Query("q".into())]),
            }],
            ..Default::default()
        })
        .unwrap();
        let (mut parts, ()) = http::Request::get("/?q=fine")
            .body(())
            .unwrap()
            .into_parts();
        headers.render(&parts, &context()).apply(&mut parts.headers);
        assert_eq!(parts.headers["x-q"], "fine");
    }
}
