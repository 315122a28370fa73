//! The admin server: health, readiness, metrics, status and the configuration in use.
//!
//! `GET /healthz` (process up), `GET /readyz` (200 once the first configuration is applied,
//! until draining; a port that cannot be bound does not hold it back), `GET /metrics` (Prometheus text), `GET /status` (the status of
//! every object the proxy owns, as Kubernetes would store it), `GET /config` (the IR in use,
//! with its version and what the source last reported).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::control::Published;

/// Binds the admin address and serves until the returned task is aborted.
pub async fn serve(
    addr: SocketAddr,
    published: Arc<Published>,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let published = published.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let published = published.clone();
                    async move { Ok::<_, Infallible>(route(&published, &req)) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok((bound, task))
}

fn route(published: &Published, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET is supported\n");
    }
    match req.uri().path() {
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" => match published.ready() {
            Ok(()) => text(StatusCode::OK, "ready\n"),
            Err(why) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("not ready: {why}\n"),
            ),
        },
        "/metrics" => with_type(
            StatusCode::OK,
            published.metrics().encode(),
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        ),
        "/status" => json(&*published.view().statuses),
        "/config" => json(&*published.view()),
        _ => text(
            StatusCode::NOT_FOUND,
            "unknown path; try /healthz, /readyz, /metrics, /status or /config\n",
        ),
    }
}

fn json<T: serde::Serialize + ?Sized>(value: &T) -> Response<Full<Bytes>> {
    match serde_json::to_string_pretty(value) {
        Ok(body) => with_type(StatusCode::OK, body, "application/json"),
        Err(error) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("cannot encode: {error}\n"),
        ),
    }
}

fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    with_type(status, body.to_owned(), "text/plain; charset=utf-8")
}

fn with_type(
    status: StatusCode,
    body: String,
    content_type: &'static str,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    response
}
