//! A compiled upstream cluster: parsed endpoint addresses, a round-robin cursor and, for a
//! TLS cluster, its TLS clients.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use http::uri::Authority;

use super::CompileError;
use crate::ir::{ClusterIr, UpstreamProtocol};
use crate::upstream::Via;
use crate::upstream::tls::TlsUpstream;

/// One cluster of the snapshot. Endpoints are taken in turn.
#[derive(Debug)]
pub struct Cluster {
    pub name: Arc<str>,
    pub protocol: UpstreamProtocol,
    endpoints: Vec<Authority>,
    next: AtomicUsize,
    /// TLS to the endpoints (BackendTLSPolicy); `None` is plaintext.
    tls: Option<Arc<TlsUpstream>>,
}

impl Cluster {
    /// Compiles `ir`. The TLS clients of `previous` (the same cluster in the configuration
    /// being replaced) are kept when its TLS settings did not change, and with them their
    /// pooled connections.
    pub fn compile(ir: &ClusterIr, previous: Option<&Cluster>) -> Result<Self, CompileError> {
        let endpoints = ir
            .endpoints
            .iter()
            .map(|e| {
                e.parse::<Authority>().map_err(|_| CompileError::Endpoint {
                    cluster: ir.name.clone(),
                    endpoint: e.clone(),
                })
            })
            .collect::<Result<_, _>>()?;
        let tls = ir.tls.as_ref().map(|settings| {
            previous
                .and_then(|p| p.tls.as_ref())
                .filter(|old| old.is_built_from(settings, ir.protocol))
                .cloned()
                .unwrap_or_else(|| Arc::new(TlsUpstream::build(&ir.name, settings, ir.protocol)))
        });
        Ok(Self {
            name: Arc::from(ir.name.as_str()),
            protocol: ir.protocol,
            endpoints,
            next: AtomicUsize::new(0),
            tls,
        })
    }

    /// How to send a request that came through `gateway` (`namespace/name`).
    pub fn via(&self, gateway: &str) -> Via<'_> {
        match &self.tls {
            Some(tls) => Via::Tls(self.protocol, tls.clients(gateway)),
            None => Via::Plain(self.protocol),
        }
    }

    /// The TLS clients, when the cluster uses TLS.
    pub fn tls(&self) -> Option<&Arc<TlsUpstream>> {
        self.tls.as_ref()
    }

    /// The next endpoint in round-robin order; `None` when the cluster has none (503).
    pub fn pick(&self) -> Option<&Authority> {
        if self.endpoints.is_empty() {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.endpoints.len();
        self.endpoints.get(i)
    }

    pub fn endpoints(&self) -> &[Authority] {
        &self.endpoints
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ObjectKey;

    #[test]
    fn round_robin() {
        let cluster = Cluster::compile(
            &ClusterIr {
                name: "ns/svc:80".into(),
                service: ObjectKey::new("ns", "svc"),
                port: 80,
                protocol: UpstreamProtocol::Http1,
                endpoints: vec!["10.0.0.1:8080".into(), "[::1]:8080".into()],
                tls: None,
            },
            None,
        )
        .unwrap();
        let picks: Vec<_> = (0..4)
            .map(|_| cluster.pick().unwrap().to_string())
            .collect();
        assert_eq!(
            picks,
            ["10.0.0.1:8080", "[::1]:8080", "10.0.0.1:8080", "[::1]:8080"]
        );
    }
}
