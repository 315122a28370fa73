//! HTTPComposition: the rule answers with one JSON object joining the JSON answers of several
//! backends, called in parallel through the same upstream clients as any request (endpoint
//! choice, TLS, pools). Each part is bounded in time (`timeout`) and size
//! (`maxResponseBytes`); the request's own timeout bounds the whole.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderName, HeaderValue, TRANSFER_ENCODING};
use http::request::Parts;
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::BodyExt;

use super::template::Template;
use super::{FilterContext, FilterError};
use crate::upstream::{self, Cluster, ProxyBody, Upstreams};
use gantry_translate::ir::CompositionIr;

/// Names the parts left out of an `Omit` composition, comma-separated in part order.
pub const OMITTED_HEADER: HeaderName = HeaderName::from_static("x-gantry-composition-omitted");

/// A compiled HTTPComposition.
#[derive(Debug)]
pub struct Composition {
    omit_failed: bool,
    parts: Vec<Part>,
}

#[derive(Debug)]
struct Part {
    name: String,
    /// The name as a JSON string, with its colon: `"name":`.
    key: String,
    cluster: Option<Arc<str>>,
    method: Method,
    path: Template,
    timeout: Duration,
    max_bytes: usize,
}

/// A composition with its paths rendered for one request.
#[derive(Debug)]
pub struct PreparedComposition<'a> {
    composition: &'a Composition,
    paths: Vec<String>,
}

impl Composition {
    pub fn compile(ir: &CompositionIr) -> Result<Self, FilterError> {
        let parts = ir
            .parts
            .iter()
            .map(|p| {
                Ok(Part {
                    key: format!(
                        "{}:",
                        serde_json::to_string(&p.name).unwrap_or_else(|_| "\"\"".to_owned())
                    ),
                    name: p.name.clone(),
                    cluster: p.cluster.as_deref().map(Arc::from),
                    method: Method::from_bytes(p.method.as_bytes())
                        .map_err(|_| FilterError::Method(p.method.clone()))?,
                    path: Template::compile(&p.path)?,
                    timeout: Duration::from_millis(p.timeout_ms),
                    max_bytes: usize::try_from(p.max_response_bytes).unwrap_or(usize::MAX),
                })
            })
            .collect::<Result<_, FilterError>>()?;
        Ok(Self {
            omit_failed: ir.omit_failed,
            parts,
        })
    }

    /// Renders each part's path from the request as the filter sees it.
    pub fn prepare<'a>(
        &'a self,
        request: &Parts,
        context: &FilterContext<'_>,
    ) -> PreparedComposition<'a> {
        PreparedComposition {
            composition: self,
            paths: self
                .parts
                .iter()
                .map(|p| p.path.render(request, context))
                .collect(),
        }
    }
}

/// Where the parts' clusters are, and how to reach them.
pub struct Upstream<'a, F> {
    pub upstreams: &'a Upstreams,
    /// `namespace/name` of the Gateway the request came through (its client certificate).
    pub gateway: &'a str,
    /// A cluster of the snapshot by name.
    pub clusters: F,
}

impl PreparedComposition<'_> {
    /// Calls every part at once and builds the answer. `request` gives the headers each part
    /// is sent (those of the request as the filters left it, without its body's).
    pub async fn answer<'c, F>(
        &self,
        request: &Parts,
        upstream: Upstream<'_, F>,
    ) -> Response<ProxyBody>
    where
        F: Fn(&str) -> Option<&'c Arc<Cluster>>,
    {
        let mut headers = request.headers.clone();
        for name in [CONTENT_LENGTH, CONTENT_TYPE, TRANSFER_ENCODING] {
            headers.remove(name);
        }
        let calls = self
            .composition
            .parts
            .iter()
            .zip(&self.paths)
            .map(|(part, path)| {
                let cluster = part.cluster.as_deref().and_then(&upstream.clusters);
                call(part, path, &headers, cluster, &upstream)
            });
        let results = futures::future::join_all(calls).await;
        let mut body = BytesMut::from(&b"{"[..]);
        let mut omitted = Vec::new();
        for (part, result) in self.composition.parts.iter().zip(results) {
            match result {
                Ok(json) => {
                    if body.len() > 1 {
                        body.extend_from_slice(b",");
                    }
                    body.extend_from_slice(part.key.as_bytes());
                    body.extend_from_slice(&json);
                }
                Err(reason) if self.composition.omit_failed => {
                    tracing::debug!(part = %part.name, %reason, "composition part omitted");
                    omitted.push(part.name.as_str());
                }
                Err(reason) => {
                    tracing::debug!(part = %part.name, %reason, "composition part failed");
                    let error = serde_json::json!({
                        "error": "a part of the composed answer failed",
                        "part": part.name,
                        "reason": reason,
                    });
                    return json_response(StatusCode::BAD_GATEWAY, error.to_string().into());
                }
            }
        }
        body.extend_from_slice(b"}");
        let mut response = json_response(StatusCode::OK, body.freeze());
        if !omitted.is_empty()
            && let Ok(value) = HeaderValue::from_str(&omitted.join(","))
        {
            response.headers_mut().insert(OMITTED_HEADER, value);
        }
        response
    }
}

fn json_response(status: StatusCode, body: Bytes) -> Response<ProxyBody> {
    let length = body.len();
    let mut response = Response::new(upstream::full(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
        .headers_mut()
        .insert(CONTENT_LENGTH, HeaderValue::from(length));
    response
}

/// One part: its JSON answer, or why it failed.
async fn call<F>(
    part: &Part,
    path: &str,
    headers: &http::HeaderMap,
    cluster: Option<&Arc<Cluster>>,
    upstream: &Upstream<'_, F>,
) -> Result<Bytes, String> {
    let cluster = cluster.ok_or("its backendRef is invalid")?;
    let endpoint = cluster.pick().ok_or("its backend has no ready endpoint")?;
    let uri: Uri = path
        .parse()
        .map_err(|_| format!("the rendered path {path:?} is not a valid request target"))?;
    let mut request = Request::new(upstream::empty());
    *request.method_mut() = part.method.clone();
    *request.uri_mut() = uri;
    *request.headers_mut() = headers.clone();
    let via = cluster.via(upstream.gateway, cluster.protocol);
    let exchange = async {
        let response = upstream
            .upstreams
            .send_via(via, endpoint, request)
            .await
            .map_err(|e| format!("the upstream call failed: {e}"))?;
        if !response.status().is_success() {
            return Err(format!(
                "the backend answered {}",
                response.status().as_u16()
            ));
        }
        let too_large = || {
            format!(
                "the answer is larger than maxResponseBytes ({})",
                part.max_bytes
            )
        };
        let declared = response
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|n| n > part.max_bytes) {
            return Err(too_large());
        }
        let mut body = response.into_body();
        let mut buf = BytesMut::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| format!("reading the answer failed: {e}"))?;
            if let Ok(data) = frame.into_data() {
                if buf.len() + data.len() > part.max_bytes {
                    return Err(too_large());
                }
                buf.extend_from_slice(&data);
            }
        }
        let bytes = buf.freeze();
        serde_json::from_slice::<serde::de::IgnoredAny>(&bytes)
            .map_err(|_| "the answer is not JSON".to_owned())?;
        Ok(bytes)
    };
    tokio::time::timeout(part.timeout, exchange)
        .await
        .unwrap_or_else(|_| Err(format!("no complete answer within {:?}", part.timeout)))
}
