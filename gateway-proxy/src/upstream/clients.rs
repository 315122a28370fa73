//! The plaintext clients of a cluster that a BackendConfigPolicy governs: an HTTP/1.1 pool and
//! an HTTP/2 (h2c) pool of its own, built with its connection settings, so its connections are
//! never shared with clusters under other settings. (A TLS cluster's own clients take the
//! policy the same way, see `tls`.)

use std::sync::Arc;

use http::uri::Scheme;
use hyper_util::client::legacy::connect::HttpConnector;

use super::connect::ConnectionPolicy;
use super::counted::Counted;
use super::{Http1Pool, Http2Pool};

/// One cluster's own plaintext pools.
#[derive(Debug)]
pub struct ClusterClients {
    pub policy: Arc<ConnectionPolicy>,
    pub(super) http1: Http1Pool<Counted<HttpConnector>>,
    pub(super) h2c: Http2Pool<Counted<HttpConnector>>,
}

impl ClusterClients {
    pub fn new(policy: Arc<ConnectionPolicy>) -> Self {
        let connector = Counted::new(policy.http_connector(), Some(policy.clone()));
        Self {
            http1: Http1Pool::with_policy(connector.clone(), Scheme::HTTP, policy.clone()),
            h2c: Http2Pool::with_policy(connector, Scheme::HTTP, policy.clone()),
            policy,
        }
    }
}
