//! Value templates (HTTPTransform, HTTPComposition), rendered per request from the segments
//! the translator parsed.

use std::fmt::Write as _;

use http::HeaderName;
use http::request::Parts;

use super::{FilterContext, FilterError};
use gantry_translate::ir::{SegmentIr, TemplateIr};

/// A compiled template.
#[derive(Debug)]
pub struct Template(Vec<Segment>);

#[derive(Debug)]
enum Segment {
    Literal(String),
    ClientIp,
    RequestId,
    Route,
    Host,
    Path,
    Method,
    Query(String),
    Header(HeaderName),
}

const REQUEST_ID: &str = "x-request-id";

impl Template {
    pub fn compile(ir: &TemplateIr) -> Result<Self, FilterError> {
        ir.0.iter()
            .map(|s| {
                Ok(match s {
                    SegmentIr::Literal(text) => Segment::Literal(text.clone()),
                    SegmentIr::ClientIp => Segment::ClientIp,
                    SegmentIr::RequestId => Segment::RequestId,
                    SegmentIr::Route => Segment::Route,
                    SegmentIr::Host => Segment::Host,
                    SegmentIr::Path => Segment::Path,
                    SegmentIr::Method => Segment::Method,
                    SegmentIr::Query(name) => Segment::Query(name.clone()),
                    SegmentIr::Header(name) => Segment::Header(
                        HeaderName::from_bytes(name.as_bytes())
                            .map_err(|_| FilterError::HeaderName(name.clone()))?,
                    ),
                })
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }

    /// The template with the request's values; a missing query parameter or header is empty.
    pub fn render(&self, request: &Parts, context: &FilterContext<'_>) -> String {
        let mut out = String::new();
        for segment in &self.0 {
            match segment {
                Segment::Literal(text) => out.push_str(text),
                Segment::ClientIp => {
                    let _ = write!(out, "{}", context.client);
                }
                Segment::RequestId => out.push_str(header(request, REQUEST_ID)),
                Segment::Route => out.push_str(context.route),
                Segment::Host => out.push_str(context.host),
                Segment::Path => out.push_str(request.uri.path()),
                Segment::Method => out.push_str(request.method.as_str()),
                Segment::Query(name) => out.push_str(query(request.uri.query(), name)),
                Segment::Header(name) => out.push_str(header(request, name)),
            }
        }
        out
    }
}

fn header<K: http::header::AsHeaderName>(request: &Parts, name: K) -> &str {
    request
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// The first value of query parameter `name`, as sent (not decoded).
fn query<'q>(query: Option<&'q str>, name: &str) -> &'q str {
    query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|pair| match pair.split_once('=') {
            Some((n, v)) if n == name => Some(v),
            None if pair == name => Some(""),
            _ => None,
        })
        .unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_variable() {
        let template = Template::compile(&TemplateIr(vec![
            SegmentIr::ClientIp,
            SegmentIr::Literal(" ".into()),
            SegmentIr::RequestId,
            SegmentIr::Literal(" ".into()),
            SegmentIr::Route,
            SegmentIr::Literal(" ".into()),
            SegmentIr::Host,
            SegmentIr::Path,
            SegmentIr::Literal(" ".into()),
            SegmentIr::Method,
            SegmentIr::Literal(" q=".into()),
            SegmentIr::Query("q".into()),
            SegmentIr::Literal(" none=".into()),
            SegmentIr::Query("none".into()),
            SegmentIr::Literal(" u=".into()),
            SegmentIr::Header("x-user".into()),
        ]))
        .unwrap();
        let (parts, ()) = http::Request::post("/a/b?x=1&q=a%20b&q=2")
            .header("x-request-id", "id-1")
            .header("x-user", "ann")
            .body(())
            .unwrap()
            .into_parts();
        let context = FilterContext {
            scheme: "http",
            listener_port: 80,
            host: "example.com",
            matched_prefix: None,
            client: "10.1.2.3".parse().unwrap(),
            route: "default/r",
        };
        assert_eq!(
            template.render(&parts, &context),
            "10.1.2.3 id-1 default/r example.com/a/b POST q=a%20b none= u=ann"
        );
    }
}
