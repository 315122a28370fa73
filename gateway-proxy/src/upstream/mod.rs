//! Upstream connections: pooled HTTP/1.1 clients and HTTP/2 connection pools
//! (`http2_pool`) that outlive configuration swaps, TLS clients per cluster (`tls`), and the
//! own clients of clusters a BackendConfigPolicy governs (`clients`, `connect`, `counted`,
//! `limits`).

pub mod balancer;
mod body;
pub mod clients;
pub mod close;
mod cluster;
pub mod connect;
pub mod counted;
pub mod health;
mod http1_pool;
mod http2_pool;
pub mod in_flight;
pub mod limits;
pub mod retry;
pub mod session;
pub mod tls;
pub mod upgrade;

use std::sync::Arc;
use std::time::Duration;

use http::header::HOST;
use http::uri::{Authority, Scheme, Uri};
use http::{HeaderMap, Request, Response, Version};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use prometheus_client::metrics::counter::Counter;

pub use body::{BoxError, ProxyBody, UpstreamBody, empty, full, stream};
pub use cluster::{Cluster, ClusterError, Picked};
pub use http1_pool::Http1Pool;
pub use http2_pool::Http2Pool;

use crate::telemetry::Metrics;
use gantry_translate::ir::{ConnectionIr, UpstreamProtocol};

/// How long a new upstream connection may take (also a BackendConfigPolicy's default).
const CONNECT_TIMEOUT: Duration = Duration::from_millis(ConnectionIr::DEFAULT.connect_timeout_ms);
/// Idle pooled connections are closed after this (also a BackendConfigPolicy's default).
pub(crate) const POOL_IDLE_TIMEOUT: Duration =
    Duration::from_millis(ConnectionIr::DEFAULT.idle_timeout_ms);

/// Why an upstream call failed.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("cannot connect to {endpoint}: {source}")]
    Connect {
        endpoint: Authority,
        source: BoxError,
    },
    /// No connection within the connect timeout (BackendConfigPolicy `connectTimeout`, or the
    /// default).
    #[error("connect to {endpoint} timed out")]
    ConnectTimeout { endpoint: Authority },
    #[error("request to {endpoint} failed: {source}")]
    Request {
        endpoint: Authority,
        source: BoxError,
    },
    #[error("cannot build the upstream URI: {0}")]
    Uri(#[from] http::Error),
    /// Refused by the cluster's circuit breaker connection limits.
    #[error(transparent)]
    Overflow(#[from] limits::Overflow),
}

impl UpstreamError {
    /// A connect error whose cause is a timeout becomes [`UpstreamError::ConnectTimeout`].
    fn name_timeout(self) -> Self {
        match self {
            Self::Connect { endpoint, source } if connect::is_timeout(source.as_ref()) => {
                Self::ConnectTimeout { endpoint }
            }
            other => other,
        }
    }
}

/// What the pools dial with: a `tower` service that opens a connection to `scheme://endpoint/`
/// (plain TCP or TLS, counted in a cluster's gauge or not).
pub trait Connector:
    tower_service::Service<
        Uri,
        Response: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
        Future: Send,
        Error: Into<BoxError>,
    > + Clone
    + Send
    + Sync
    + 'static
{
}

impl<C> Connector for C where
    C: tower_service::Service<
            Uri,
            Response: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
            Future: Send,
            Error: Into<BoxError>,
        > + Clone
        + Send
        + Sync
        + 'static
{
}

/// How a request reaches its endpoint.
#[derive(Clone, Copy, Debug)]
pub enum Via<'a> {
    /// Plaintext, over the shared pools.
    Plain(UpstreamProtocol),
    /// TLS, over the cluster's own pools (see [`tls`]).
    Tls(UpstreamProtocol, &'a tls::TlsClients),
    /// Plaintext, over the own pools of a cluster with a BackendConfigPolicy.
    Own(UpstreamProtocol, &'a clients::ClusterClients),
}

impl Via<'_> {
    /// The cluster's connection settings, when a policy governs it.
    fn policy(&self) -> Option<&connect::ConnectionPolicy> {
        match self {
            Self::Plain(_) => None,
            Self::Tls(_, clients) => clients.policy.as_deref(),
            Self::Own(_, clients) => Some(&clients.policy),
        }
    }
}

/// The TCP connector every upstream client starts from.
pub(crate) fn http_connector() -> HttpConnector {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
    connector
}

/// Connection pools, one per upstream protocol. Pools are keyed by endpoint, so they
/// survive configuration swaps and endpoint changes.
#[derive(Clone, Debug)]
pub struct Upstreams {
    /// Plain HTTP/1.1 requests.
    http1: Http1Pool,
    h2c: Http2Pool<HttpConnector>,
    connect_errors: Counter,
}

impl Upstreams {
    pub fn new(metrics: &Metrics) -> Self {
        let connector = http_connector();
        let http1 = Http1Pool::new(connector.clone(), Scheme::HTTP, POOL_IDLE_TIMEOUT);
        let h2c = Http2Pool::new(connector, Scheme::HTTP, POOL_IDLE_TIMEOUT);
        Self {
            http1,
            h2c,
            connect_errors: metrics.upstream_connect_errors.clone(),
        }
    }

    /// Sends `request` to `endpoint`. Its URI only needs a path and query. Over HTTP/1.1 the
    /// Host header is passed as it is; over HTTP/2 it becomes `:authority`. Upgrade requests
    /// always go over HTTP/1.1.
    pub async fn send(
        &self,
        protocol: UpstreamProtocol,
        endpoint: &Authority,
        request: Request<ProxyBody>,
    ) -> Result<Response<UpstreamBody>, UpstreamError> {
        self.send_via(Via::Plain(protocol), endpoint, request).await
    }

    /// Sends `request` to `endpoint` the way `via` says: plaintext, or over a TLS cluster's
    /// own clients (a failed handshake is a connect error, so a 502).
    ///
    /// For a cluster with a BackendConfigPolicy: an HTTP/1.1 request first takes a connection
    /// from the circuit breaker (waiting as a pending request, or refused with
    /// [`UpstreamError::Overflow`]) and holds it until its response body ends; the connection
    /// it used is not pooled again once it carried `maxRequestsPerConnection` requests or is
    /// `maxConnectionDuration` old.
    pub async fn send_via(
        &self,
        via: Via<'_>,
        endpoint: &Authority,
        mut request: Request<ProxyBody>,
    ) -> Result<Response<UpstreamBody>, UpstreamError> {
        // An upgrade goes over HTTP/1.1 whatever the cluster's protocol; the headers are looked
        // at only when it is HTTP/2.
        let http2 = match via {
            Via::Plain(protocol) | Via::Tls(protocol, _) | Via::Own(protocol, _) => {
                protocol == UpstreamProtocol::H2c && !upgrade::is_upgrade_request(request.headers())
            }
        };
        let policy = via.policy();
        // The rarer steps' futures are boxed where they are awaited: inline, each would add
        // its size to this future (an HTTP/2 checkout holds a whole connect and handshake),
        // and every request would copy all of it as the future moves (docs/benchmarks.md).
        let held = match policy.and_then(|p| p.limits()) {
            Some(limits) if !http2 => match Box::pin(limits.acquire()).await {
                Ok(held) => Some(held),
                Err(overflow) => {
                    if let Some(policy) = policy {
                        policy.rejected(overflow);
                    }
                    return Err(overflow.into());
                }
            },
            _ => None,
        };
        // HTTP/1.1 goes out in origin form on a connection to `endpoint`; HTTP/2 needs the
        // URI absolute (its authority becomes `:authority`).
        if http2 {
            endpoint_uri(&via, endpoint, &mut request)?;
        }
        *request.version_mut() = if http2 {
            Version::HTTP_2
        } else {
            Version::HTTP_11
        };
        let sent = match via {
            Via::Plain(_) if http2 => Box::pin(self.h2c.send(endpoint, request)).await.map(unlent),
            Via::Tls(_, clients) if http2 => Box::pin(clients.h2.send(endpoint, request))
                .await
                .map(unlent),
            Via::Own(_, clients) if http2 => Box::pin(clients.h2c.send(endpoint, request))
                .await
                .map(unlent),
            Via::Plain(_) => self.http1.send(endpoint, request).await,
            // Boxed: its connect holds a whole TLS handshake (rustls's connection state), which
            // inline would grow every request's future.
            Via::Tls(_, clients) => Box::pin(clients.http1.send(endpoint, request)).await,
            Via::Own(_, clients) => clients.http1.send(endpoint, request).await,
        };
        let sent = sent.map_err(UpstreamError::name_timeout);
        match &sent {
            Err(UpstreamError::Connect { .. } | UpstreamError::ConnectTimeout { .. }) => {
                self.connect_errors.inc();
            }
            Err(UpstreamError::Overflow(overflow)) => {
                if let Some(policy) = policy {
                    policy.rejected(*overflow);
                }
            }
            _ => {}
        }
        let (mut response, lent) = sent?;
        // An HTTP/2 stream counted against `maxConcurrentStreams`, kept with the body.
        let held = match policy {
            Some(_) => held
                .map(Arc::new)
                .or_else(|| response.extensions_mut().remove::<Arc<limits::Held>>()),
            None => None,
        };
        Ok(response.map(|body| UpstreamBody::new(body, held, lent)))
    }
}

/// Makes an HTTP/2 `request`'s URI absolute for the HTTP/2 pools: the scheme `via` dials, and
/// the Host header as its authority (HTTP/2's `:authority`).
fn endpoint_uri(
    via: &Via<'_>,
    endpoint: &Authority,
    request: &mut Request<ProxyBody>,
) -> Result<(), UpstreamError> {
    let mut parts = std::mem::take(request.uri_mut()).into_parts();
    parts.scheme = Some(match via {
        Via::Plain(_) | Via::Own(..) => Scheme::HTTP,
        Via::Tls(..) => Scheme::HTTPS,
    });
    parts.authority = Some(authority_from_host(request.headers_mut(), endpoint));
    if parts.path_and_query.is_none() {
        parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
    }
    *request.uri_mut() = Uri::from_parts(parts).map_err(http::Error::from)?;
    Ok(())
}

/// A response whose connection the pool does not lend (it is pooled on its own).
fn unlent(response: Response<Incoming>) -> (Response<Incoming>, Option<http1_pool::Lent>) {
    (response, None)
}

/// The `:authority` of an HTTP/2 request to a backend: the Host header, taken out of the
/// headers. RFC 9113 §8.3.1: an intermediary forwarding a request over HTTP/2 constructs
/// `:authority` from the original request's authority, and a `host` header must not differ
/// from it; sending only `:authority` is what strict servers (and gRPC servers that check
/// the authority) expect. The endpoint's address stands in only when the request has no
/// usable Host (an HTTP/1.0 request without one), as the HTTP/1.1 client does for a missing
/// Host header.
fn authority_from_host(headers: &mut HeaderMap, endpoint: &Authority) -> Authority {
    headers
        .remove(HOST)
        .and_then(|host| Authority::try_from(host.as_bytes()).ok())
        .filter(|authority| !authority.host().is_empty())
        .unwrap_or_else(|| endpoint.clone())
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    #[test]
    fn http2_authority_is_the_host_header_taken_out() {
        let endpoint: Authority = "10.0.0.7:8080".parse().expect("authority");
        let mut headers = HeaderMap::new();
        headers.insert(HOST, HeaderValue::from_static("app.example.com:8443"));
        headers.insert("x-other", HeaderValue::from_static("kept"));
        let authority = authority_from_host(&mut headers, &endpoint);
        assert_eq!(authority, "app.example.com:8443");
        assert!(!headers.contains_key(HOST), "no separate host header");
        assert_eq!(headers["x-other"], "kept");

        // No usable Host (an HTTP/1.0 request without one, or an empty one): the endpoint.
        let mut headers = HeaderMap::new();
        assert_eq!(authority_from_host(&mut headers, &endpoint), endpoint);
        headers.insert(HOST, HeaderValue::from_static(""));
        assert_eq!(authority_from_host(&mut headers, &endpoint), endpoint);
        assert!(!headers.contains_key(HOST));
    }
}
