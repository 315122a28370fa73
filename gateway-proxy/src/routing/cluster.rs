//! A compiled upstream cluster: parsed endpoint addresses and a round-robin cursor.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use http::uri::Authority;

use super::CompileError;
use crate::ir::{ClusterIr, UpstreamProtocol};

/// One cluster of the snapshot. Endpoints are taken in turn.
#[derive(Debug)]
pub struct Cluster {
    pub name: Arc<str>,
    pub protocol: UpstreamProtocol,
    endpoints: Vec<Authority>,
    next: AtomicUsize,
}

impl Cluster {
    pub fn compile(ir: &ClusterIr) -> Result<Self, CompileError> {
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
        Ok(Self {
            name: Arc::from(ir.name.as_str()),
            protocol: ir.protocol,
            endpoints,
            next: AtomicUsize::new(0),
        })
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
        let cluster = Cluster::compile(&ClusterIr {
            name: "ns/svc:80".into(),
            service: ObjectKey::new("ns", "svc"),
            port: 80,
            protocol: UpstreamProtocol::Http1,
            endpoints: vec!["10.0.0.1:8080".into(), "[::1]:8080".into()],
            tls: None,
        })
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
