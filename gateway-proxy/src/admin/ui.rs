//! The dashboard (`GET /ui`): one page, embedded in the binary, that shows what the admin
//! endpoints know (`/status`, `/config`, `/metrics`) and runs `explain` on the live
//! configuration (`GET /ui/api/explain`). Served only where `/status` and `/config` are
//! ([`super::Placement`]); nothing is loaded from anywhere else.
//!
//! Every view has its own path (`/ui/gateways`, `/ui/routes`, `/ui/backends`, `/ui/reloads`,
//! `/ui/explain?request=...`): the server answers each with the same page, which draws the
//! view its path names and moves between views with the History API, so the back button and
//! a pasted URL work.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;
use serde::Serialize;

use crate::control::Published;

const INDEX: &str = include_str!("ui/index.html");
const SCRIPT: &str = include_str!("ui/app.js");
const STYLE: &str = include_str!("ui/style.css");

/// The views of the page (the server answers each with the page).
pub const VIEWS: [&str; 6] = ["", "gateways", "routes", "backends", "reloads", "explain"];

/// A request the dashboard asks `explain` about.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExplainAsk {
    /// `METHOD URL`, or a URL (GET).
    pub request: String,
    /// `name: value`.
    pub headers: Vec<String>,
    pub sni: Option<String>,
}

impl ExplainAsk {
    /// From `request=...&header=...&sni=...`.
    pub fn from_query(query: &str) -> Self {
        let mut ask = Self::default();
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            match &*key {
                "request" => ask.request = value.into_owned(),
                "header" if !value.trim().is_empty() => ask.headers.push(value.into_owned()),
                "sni" => ask.sni = Some(value.into_owned()),
                _ => {}
            }
        }
        ask
    }
}

/// What `explain` said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExplainAnswer {
    Explained {
        /// The snapshot version explained.
        version: u64,
        text: String,
        json: String,
    },
    /// The request could not be read (a usage error).
    BadRequest(String),
    /// Nothing to explain against yet.
    Unavailable(String),
}

type ExplainFn = dyn Fn(&Published, &ExplainAsk) -> ExplainAnswer + Send + Sync;

/// How the admin server runs `explain` (installed by the command line, which sits above the
/// admin server in the layer order).
#[derive(Clone)]
pub struct Explainer(Arc<ExplainFn>);

impl Explainer {
    pub fn new(
        explain: impl Fn(&Published, &ExplainAsk) -> ExplainAnswer + Send + Sync + 'static,
    ) -> Self {
        Self(Arc::new(explain))
    }
}

impl fmt::Debug for Explainer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Explainer")
    }
}

/// Answers a path under `/ui`, or `None` when it is not one.
pub fn route(
    published: &Published,
    explainer: Option<&Explainer>,
    path: &str,
    query: &str,
) -> Option<Response<Full<Bytes>>> {
    let rest = path.strip_prefix("/ui")?;
    let rest = match rest {
        "" => "",
        r => r.strip_prefix('/')?,
    };
    Some(match rest {
        "assets/app.js" => asset(SCRIPT, "text/javascript; charset=utf-8"),
        "assets/style.css" => asset(STYLE, "text/css; charset=utf-8"),
        "api/explain" => explain(published, explainer, query),
        view if VIEWS.contains(&view.trim_end_matches('/')) => page(),
        _ => super::text(StatusCode::NOT_FOUND, "no such dashboard view; try /ui\n"),
    })
}

fn page() -> Response<Full<Bytes>> {
    let mut response = asset(INDEX, "text/html; charset=utf-8");
    // The page runs only its own script and style, and talks only to this server.
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    response
}

fn asset(body: &'static str, content_type: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Assets change with the binary only: never cached across an upgrade.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ExplainBody<'a> {
    version: u64,
    text: &'a str,
    explanation: serde_json::Value,
}

fn explain(
    published: &Published,
    explainer: Option<&Explainer>,
    query: &str,
) -> Response<Full<Bytes>> {
    let Some(explainer) = explainer else {
        return super::text(
            StatusCode::NOT_FOUND,
            "explain is not available in this process\n",
        );
    };
    let ask = ExplainAsk::from_query(query);
    if ask.request.trim().is_empty() {
        return super::text(
            StatusCode::BAD_REQUEST,
            "give the request to explain: ?request=GET%20http://host/path\n",
        );
    }
    match (explainer.0)(published, &ask) {
        ExplainAnswer::Explained {
            version,
            text,
            json,
        } => super::json(&ExplainBody {
            version,
            text: &text,
            explanation: serde_json::from_str(&json).unwrap_or(serde_json::Value::Null),
        }),
        ExplainAnswer::BadRequest(why) => super::text(StatusCode::BAD_REQUEST, &format!("{why}\n")),
        ExplainAnswer::Unavailable(why) => {
            super::text(StatusCode::SERVICE_UNAVAILABLE, &format!("{why}\n"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ask_reads_its_query_string() {
        let ask = ExplainAsk::from_query(
            "request=GET%20http%3A%2F%2Fshop.example.com%2Fcart%3Fx%3D1&header=cookie%3A%20a%3Db&header=&sni=shop",
        );
        assert_eq!(ask.request, "GET http://shop.example.com/cart?x=1");
        assert_eq!(ask.headers, vec!["cookie: a=b".to_owned()]);
        assert_eq!(ask.sni.as_deref(), Some("shop"));
    }

    /// Everything the page loads comes from this server: no asset from the internet.
    #[test]
    fn the_page_loads_nothing_from_another_origin() {
        for attribute in ["src=\"", "href=\""] {
            for (at, _) in INDEX.match_indices(attribute) {
                let value = &INDEX[at + attribute.len()..];
                assert!(
                    value.starts_with('/') || value.starts_with("data:"),
                    "index.html loads {}",
                    &value[..value.find('"').unwrap_or(value.len())]
                );
            }
        }
        assert!(!STYLE.contains("url(") && !STYLE.contains("@import"));
        for (at, _) in SCRIPT.match_indices("fetch(") {
            let argument = &SCRIPT[at + "fetch(".len()..];
            assert!(
                argument.starts_with("\"/") || argument.starts_with("path,"),
                "app.js fetches {}",
                &argument[..argument.find(')').unwrap_or(argument.len())]
            );
        }
        assert!(!SCRIPT.contains("import ") && !SCRIPT.contains("XMLHttpRequest"));
    }
}
