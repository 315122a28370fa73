//! The admin server: health, readiness, metrics, status and the configuration in use.
//!
//! `GET /healthz` (process up), `GET /readyz` (200 once the first configuration is applied,
//! until draining; a port that cannot be bound does not hold it back), `GET /metrics`
//! (Prometheus text): served wherever the admin server listens. `GET /status` (the status of
//! every object the proxy owns, as Kubernetes would store it) and `GET /config` (the IR in use,
//! with its version, what the source last reported and, for clusters with health checks, this
//! replica's view of their endpoints' health) say more about the cluster than a
//! scraper needs: they are served only on the debug address ([`Placement`]), which is the
//! loopback interface unless the command line names another. The dashboard (`/ui`, [`ui`])
//! is served with them.

pub mod ui;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::net::TcpListener;

use crate::control::{Published, Reload, View};
use crate::upstream::health::ClusterHealthView;

/// Where `/status` and `/config` are served, given `--admin-addr` and `--admin-debug-addr`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// On the admin address itself: it was named as the debug address too, or no debug address
    /// was given and the admin address is a loopback address (the standalone default).
    OnAdmin,
    /// On a listener of their own at this address (the admin address serves only health,
    /// readiness and metrics).
    Separate(SocketAddr),
    /// Nowhere: the admin address is reachable from outside the host and no debug address was
    /// given.
    Nowhere,
}

impl Placement {
    /// The rule: an explicit debug address wins; without one, only a loopback admin address
    /// also serves the debug endpoints.
    pub fn new(admin: SocketAddr, debug: Option<SocketAddr>) -> Self {
        match debug {
            Some(debug) if debug == admin => Self::OnAdmin,
            Some(debug) => Self::Separate(debug),
            None if admin.ip().is_loopback() => Self::OnAdmin,
            None => Self::Nowhere,
        }
    }
}

/// Which endpoints one listener serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoints {
    /// `/healthz`, `/readyz`, `/metrics`.
    Public,
    /// Those and `/status`, `/config`, `/ui`.
    WithDebug,
}

/// Binds the admin address and serves until the returned task is aborted.
pub async fn serve(
    addr: SocketAddr,
    published: Arc<Published>,
    endpoints: Endpoints,
    explainer: Option<ui::Explainer>,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let published = published.clone();
            let explainer = explainer.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let published = published.clone();
                    let explainer = explainer.clone();
                    async move {
                        Ok::<_, Infallible>(route(&published, explainer.as_ref(), &req, endpoints))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok((bound, task))
}

fn route(
    published: &Published,
    explainer: Option<&ui::Explainer>,
    req: &Request<Incoming>,
    endpoints: Endpoints,
) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET is supported\n");
    }
    let path = req.uri().path();
    if endpoints == Endpoints::WithDebug
        && let Some(response) =
            ui::route(published, explainer, path, req.uri().query().unwrap_or(""))
    {
        return response;
    }
    match path {
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
        "/status" | "/config" | "/ui" if endpoints == Endpoints::Public => text(
            StatusCode::NOT_FOUND,
            "/status, /config and /ui are served only on the debug address \
             (--admin-debug-addr, by default the loopback interface)\n",
        ),
        p if p.starts_with("/ui/") && endpoints == Endpoints::Public => text(
            StatusCode::NOT_FOUND,
            "the dashboard is served only on the debug address (--admin-debug-addr, by \
             default the loopback interface)\n",
        ),
        "/status" => json(&*published.view().statuses),
        "/config" => json(&Config {
            view: &published.view(),
            endpoint_health: published.endpoint_health(),
            reloads: published.reloads(),
        }),
        _ => text(
            StatusCode::NOT_FOUND,
            match endpoints {
                Endpoints::Public => "unknown path; try /healthz, /readyz or /metrics\n",
                Endpoints::WithDebug => {
                    "unknown path; try /healthz, /readyz, /metrics, /status, /config or /ui\n"
                }
            },
        ),
    }
}

/// `GET /config`: the configuration in use and, per cluster with health checks, the health of
/// its endpoints as this replica sees it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Config<'a> {
    #[serde(flatten)]
    view: &'a View,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    endpoint_health: BTreeMap<String, ClusterHealthView>,
    /// The last configuration changes handled, oldest first.
    reloads: Arc<Vec<Reload>>,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("an address")
    }

    #[test]
    fn debug_endpoints_stay_on_loopback_unless_named() {
        let pod = addr("10.1.2.3:9901");
        let local = addr("127.0.0.1:9901");
        assert_eq!(Placement::new(local, None), Placement::OnAdmin);
        assert_eq!(Placement::new(addr("[::1]:9901"), None), Placement::OnAdmin);
        assert_eq!(Placement::new(pod, None), Placement::Nowhere);
        assert_eq!(
            Placement::new(addr("0.0.0.0:9901"), None),
            Placement::Nowhere
        );
        assert_eq!(
            Placement::new(pod, Some(addr("127.0.0.1:9902"))),
            Placement::Separate(addr("127.0.0.1:9902"))
        );
        assert_eq!(Placement::new(pod, Some(pod)), Placement::OnAdmin);
        assert_eq!(
            Placement::new(local, Some(addr("127.0.0.1:9902"))),
            Placement::Separate(addr("127.0.0.1:9902"))
        );
    }
}
