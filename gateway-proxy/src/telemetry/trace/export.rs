//! The batching exporter: spans wait in a bounded queue (a full queue drops the span and
//! counts it; a request never waits), and one task sends them in batches, by size or every
//! interval, as OTLP over HTTP (`POST {endpoint}/v1/traces`, `application/x-protobuf`) or
//! over gRPC (`TraceService/Export`, h2c). A failed export drops its batch and counts it;
//! nothing is retried, so a receiver that is down costs the proxy one bounded batch.

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use http::header::{CONTENT_TYPE, TE};
use http::{HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use prost::Message as _;
use tokio::sync::{mpsc, watch};

use super::otlp::{self, ExportTraceServiceRequest, ResourceSpans, ScopeSpans};
use super::{Protocol, TracingMetrics, TracingOptions};

/// How long one export may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Exporter {
    pub options: TracingOptions,
    pub spans: mpsc::Receiver<otlp::Span>,
    pub metrics: TracingMetrics,
    pub resource: otlp::Resource,
    pub stop: watch::Receiver<bool>,
    pub finished: watch::Sender<bool>,
}

impl Exporter {
    /// Runs until told to stop; then sends what is queued and says it finished.
    pub async fn run(mut self) {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new())
            .http2_only(self.options.protocol == Protocol::Grpc)
            .build(connector);
        let mut batch = Vec::with_capacity(self.options.batch);
        let mut flush_at = tokio::time::Instant::now() + self.options.interval;
        loop {
            tokio::select! {
                biased;
                _ = self.stop.changed() => {
                    while let Ok(span) = self.spans.try_recv() {
                        batch.push(span);
                        if batch.len() >= self.options.batch {
                            self.export(&client, std::mem::take(&mut batch)).await;
                        }
                    }
                    self.export(&client, batch).await;
                    let _ = self.finished.send(true);
                    return;
                }
                span = self.spans.recv() => match span {
                    Some(span) => {
                        if batch.is_empty() {
                            flush_at = tokio::time::Instant::now() + self.options.interval;
                        }
                        batch.push(span);
                        if batch.len() >= self.options.batch {
                            self.export(&client, std::mem::take(&mut batch)).await;
                        }
                    }
                    None => {
                        self.export(&client, batch).await;
                        let _ = self.finished.send(true);
                        return;
                    }
                },
                () = tokio::time::sleep_until(flush_at), if !batch.is_empty() => {
                    self.export(&client, std::mem::take(&mut batch)).await;
                }
            }
        }
    }

    async fn export(&self, client: &Client<HttpConnector, Full<Bytes>>, spans: Vec<otlp::Span>) {
        if spans.is_empty() {
            return;
        }
        let count = spans.len() as u64;
        let message = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(self.resource.clone()),
                scope_spans: vec![ScopeSpans {
                    scope: Some(otlp::InstrumentationScope {
                        name: "gantry-proxy".to_owned(),
                        version: env!("CARGO_PKG_VERSION").to_owned(),
                    }),
                    spans,
                }],
            }],
        }
        .encode_to_vec();
        let request = match self.options.protocol {
            Protocol::Http => http_request(&self.options.endpoint, message),
            Protocol::Grpc => grpc_request(&self.options.endpoint, message),
        };
        let outcome = match request {
            Ok(request) => {
                match tokio::time::timeout(
                    EXPORT_TIMEOUT,
                    send(client, request, self.options.protocol),
                )
                .await
                {
                    Ok(result) => result,
                    Err(_) => Err(format!("no answer within {EXPORT_TIMEOUT:?}")),
                }
            }
            Err(error) => Err(error),
        };
        match outcome {
            Ok(()) => self.metrics.exported(count),
            Err(error) => {
                self.metrics.failed(count);
                tracing::debug!(%error, spans = count, "trace export failed; the batch is dropped");
            }
        }
    }
}

fn http_request(endpoint: &Uri, message: Vec<u8>) -> Result<Request<Full<Bytes>>, String> {
    let base = endpoint.to_string();
    let url = if endpoint.path().ends_with("/v1/traces") {
        base
    } else {
        format!("{}/v1/traces", base.trim_end_matches('/'))
    };
    Request::builder()
        .method(Method::POST)
        .uri(url)
        .header(CONTENT_TYPE, "application/x-protobuf")
        .body(Full::new(Bytes::from(message)))
        .map_err(|e| e.to_string())
}

fn grpc_request(endpoint: &Uri, message: Vec<u8>) -> Result<Request<Full<Bytes>>, String> {
    let mut framed = BytesMut::with_capacity(message.len() + 5);
    framed.put_u8(0);
    framed.put_u32(u32::try_from(message.len()).unwrap_or(u32::MAX));
    framed.put_slice(&message);
    let authority = endpoint
        .authority()
        .ok_or("the tracing endpoint has no host")?;
    let uri = Uri::builder()
        .scheme("http")
        .authority(authority.clone())
        .path_and_query(otlp::GRPC_EXPORT)
        .build()
        .map_err(|e| e.to_string())?;
    let mut request = Request::new(Full::new(framed.freeze()));
    *request.method_mut() = Method::POST;
    *request.uri_mut() = uri;
    request
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    request
        .headers_mut()
        .insert(TE, HeaderValue::from_static("trailers"));
    Ok(request)
}

async fn send(
    client: &Client<HttpConnector, Full<Bytes>>,
    request: Request<Full<Bytes>>,
    protocol: Protocol,
) -> Result<(), String> {
    let response = client.request(request).await.map_err(|e| e.to_string())?;
    let status = response.status();
    let (parts, body) = response.into_parts();
    let collected = body.collect().await.map_err(|e| e.to_string())?;
    if status != StatusCode::OK && !(protocol == Protocol::Http && status.is_success()) {
        return Err(format!("the receiver answered HTTP {}", status.as_u16()));
    }
    if protocol == Protocol::Grpc {
        let grpc_status = collected
            .trailers()
            .and_then(|t| t.get("grpc-status"))
            .or_else(|| parts.headers.get("grpc-status"))
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if grpc_status != "0" {
            return Err(format!("the receiver answered gRPC status {grpc_status:?}"));
        }
    }
    Ok(())
}
