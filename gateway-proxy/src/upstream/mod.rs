//! Upstream connections: pooled HTTP/1.1 and h2c clients that outlive configuration swaps,
//! and TLS clients per cluster (`tls`).

mod body;
mod cluster;
pub mod retry;
pub mod session;
pub mod tls;
pub mod upgrade;

use std::time::Duration;

use http::uri::{Authority, Scheme, Uri};
use http::{Request, Response, Version};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use prometheus_client::metrics::counter::Counter;

pub use body::{BoxError, ProxyBody, empty, full, stream};
pub use cluster::{Cluster, ClusterError};

use crate::telemetry::Metrics;
use gantry_translate::ir::{ConnectionIr, UpstreamProtocol};

/// How long a new upstream connection may take (also a BackendConfigPolicy's default).
const CONNECT_TIMEOUT: Duration = Duration::from_millis(ConnectionIr::DEFAULT.connect_timeout_ms);
/// Idle pooled connections are closed after this (also a BackendConfigPolicy's default).
const POOL_IDLE_TIMEOUT: Duration = Duration::from_millis(ConnectionIr::DEFAULT.idle_timeout_ms);

/// Why an upstream call failed.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("cannot connect to {endpoint}: {source}")]
    Connect {
        endpoint: Authority,
        source: hyper_util::client::legacy::Error,
    },
    #[error("request to {endpoint} failed: {source}")]
    Request {
        endpoint: Authority,
        source: hyper_util::client::legacy::Error,
    },
    #[error("cannot build the upstream URI: {0}")]
    Uri(#[from] http::Error),
}

/// How a request reaches its endpoint.
#[derive(Clone, Copy, Debug)]
pub enum Via<'a> {
    /// Plaintext, over the shared pools.
    Plain(UpstreamProtocol),
    /// TLS, over the cluster's own pools (see [`tls`]).
    Tls(UpstreamProtocol, &'a tls::TlsClients),
}

/// The TCP connector every upstream client starts from.
pub(crate) fn http_connector() -> HttpConnector {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
    connector
}

/// Pool and timer settings shared by every upstream client.
pub(crate) fn client_builder() -> hyper_util::client::legacy::Builder {
    let mut builder = Client::builder(TokioExecutor::new());
    builder
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new());
    builder
}

/// Connection pools, one client per upstream protocol. Pools are keyed by endpoint, so they
/// survive configuration swaps and endpoint changes.
#[derive(Clone, Debug)]
pub struct Upstreams {
    http1: Client<HttpConnector, ProxyBody>,
    h2c: Client<HttpConnector, ProxyBody>,
    connect_errors: Counter,
}

impl Upstreams {
    pub fn new(metrics: &Metrics) -> Self {
        let connector = http_connector();
        let http1 = client_builder().build(connector.clone());
        let h2c = client_builder().http2_only(true).build(connector);
        Self {
            http1,
            h2c,
            connect_errors: metrics.upstream_connect_errors.clone(),
        }
    }

    /// Sends `request` to `endpoint`. Its URI only needs a path and query; the Host header
    /// is passed as it is. Upgrade requests always go over HTTP/1.1.
    pub async fn send(
        &self,
        protocol: UpstreamProtocol,
        endpoint: &Authority,
        request: Request<ProxyBody>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        self.send_via(Via::Plain(protocol), endpoint, request).await
    }

    /// Sends `request` to `endpoint` the way `via` says: plaintext, or over a TLS cluster's
    /// own clients (a failed handshake is a connect error, so a 502).
    pub async fn send_via(
        &self,
        via: Via<'_>,
        endpoint: &Authority,
        mut request: Request<ProxyBody>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let upgrade = upgrade::is_upgrade_request(request.headers());
        let mut parts = std::mem::take(request.uri_mut()).into_parts();
        parts.scheme = Some(match via {
            Via::Plain(_) => Scheme::HTTP,
            Via::Tls(..) => Scheme::HTTPS,
        });
        parts.authority = Some(endpoint.clone());
        if parts.path_and_query.is_none() {
            parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
        }
        *request.uri_mut() = Uri::from_parts(parts).map_err(http::Error::from)?;
        let http2 = match via {
            Via::Plain(protocol) | Via::Tls(protocol, _) => {
                protocol == UpstreamProtocol::H2c && !upgrade
            }
        };
        *request.version_mut() = if http2 {
            Version::HTTP_2
        } else {
            Version::HTTP_11
        };
        let sent = match via {
            Via::Plain(_) if http2 => self.h2c.request(request),
            Via::Plain(_) => self.http1.request(request),
            Via::Tls(_, clients) if http2 => clients.h2.request(request),
            Via::Tls(_, clients) => clients.http1.request(request),
        };
        sent.await.map_err(|source| {
            if source.is_connect() {
                self.connect_errors.inc();
                UpstreamError::Connect {
                    endpoint: endpoint.clone(),
                    source,
                }
            } else {
                UpstreamError::Request {
                    endpoint: endpoint.clone(),
                    source,
                }
            }
        })
    }
}
