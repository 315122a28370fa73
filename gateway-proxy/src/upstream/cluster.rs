//! A compiled upstream cluster: parsed endpoint addresses, a round-robin cursor, for a TLS
//! cluster its TLS clients, and for a cluster with a BackendConfigPolicy its connection
//! settings and own pools.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use http::uri::Authority;

use super::Via;
use super::clients::ClusterClients;
use super::connect::ConnectionPolicy;
use super::retry::RetryBudget;
use super::tls::TlsUpstream;
use crate::telemetry::Metrics;
use gantry_translate::ir::{ClusterIr, UpstreamProtocol};

/// One cluster of the snapshot. Endpoints are taken in turn.
#[derive(Debug)]
pub struct Cluster {
    pub name: Arc<str>,
    pub protocol: UpstreamProtocol,
    endpoints: Vec<Authority>,
    /// [`super::session::id`] of each endpoint's address, in the same order: what a session
    /// token names.
    endpoint_ids: Vec<u64>,
    next: AtomicUsize,
    /// TLS to the endpoints (BackendTLSPolicy); `None` is plaintext.
    tls: Option<Arc<TlsUpstream>>,
    /// The Service's retry budget (XBackendTrafficPolicy), shared by its clusters.
    budget: Option<Arc<RetryBudget>>,
    /// Connection settings (BackendConfigPolicy); `None`: the shared pools and defaults.
    connection: Option<Arc<ConnectionPolicy>>,
    /// The own plaintext pools of a cluster with a policy (a TLS one has them in `tls`).
    own: Option<Arc<ClusterClients>>,
}

/// Why a cluster of the IR cannot be compiled.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("invalid endpoint {endpoint:?} in cluster {cluster}")]
    Endpoint { cluster: String, endpoint: String },
}

impl Cluster {
    /// Compiles `ir`. The TLS clients of `previous` (the same cluster in the configuration
    /// being replaced) are kept when its TLS settings did not change, and with them their
    /// pooled connections.
    pub fn compile(ir: &ClusterIr, previous: Option<&Cluster>) -> Result<Self, ClusterError> {
        Self::compile_with_budget(ir, previous, None)
    }

    /// [`Cluster::compile`] with the Service's retry budget (the same `Arc` for every cluster of
    /// one Service, see `Snapshot::compile`).
    pub fn compile_with_budget(
        ir: &ClusterIr,
        previous: Option<&Cluster>,
        budget: Option<Arc<RetryBudget>>,
    ) -> Result<Self, ClusterError> {
        static UNREGISTERED: std::sync::LazyLock<Metrics> = std::sync::LazyLock::new(Metrics::new);
        Self::compile_in(ir, previous, budget, &UNREGISTERED)
    }

    /// [`Cluster::compile_with_budget`], counting the connections and circuit breaker
    /// rejections of a cluster with a BackendConfigPolicy in `metrics`. Its connection
    /// settings and pools (with their connections) are kept from `previous` while its
    /// connection settings stay the same.
    pub fn compile_in(
        ir: &ClusterIr,
        previous: Option<&Cluster>,
        budget: Option<Arc<RetryBudget>>,
        metrics: &Metrics,
    ) -> Result<Self, ClusterError> {
        let endpoints = ir
            .endpoints
            .iter()
            .map(|e| {
                e.parse::<Authority>().map_err(|_| ClusterError::Endpoint {
                    cluster: ir.name.clone(),
                    endpoint: e.clone(),
                })
            })
            .collect::<Result<_, _>>()?;
        let endpoint_ids = ir.endpoints.iter().map(|e| super::session::id(e)).collect();
        let connection = ir.backend_config.as_ref().map(|config| {
            previous
                .and_then(|p| p.connection.as_ref())
                .filter(|old| old.is_built_from(config))
                .cloned()
                .unwrap_or_else(|| ConnectionPolicy::new(&ir.name, config, metrics))
        });
        let tls = ir.tls.as_ref().map(|settings| {
            previous
                .and_then(|p| p.tls.as_ref())
                .filter(|old| old.is_built_from(settings, connection.as_ref()))
                .cloned()
                .unwrap_or_else(|| {
                    Arc::new(TlsUpstream::build(&ir.name, settings, connection.as_ref()))
                })
        });
        let own = match (&tls, &connection) {
            (None, Some(policy)) => Some(
                previous
                    .and_then(|p| p.own.as_ref())
                    .filter(|old| Arc::ptr_eq(&old.policy, policy))
                    .cloned()
                    .unwrap_or_else(|| Arc::new(ClusterClients::new(policy.clone()))),
            ),
            _ => None,
        };
        Ok(Self {
            name: Arc::from(ir.name.as_str()),
            protocol: ir.protocol,
            endpoints,
            endpoint_ids,
            next: AtomicUsize::new(0),
            tls,
            budget,
            connection,
            own,
        })
    }

    /// How to send a request that came through `gateway` (`namespace/name`) and speaks
    /// `protocol` (the rule's choice: see `Rule::upstream_protocol`).
    pub fn via(&self, gateway: &str, protocol: UpstreamProtocol) -> Via<'_> {
        match (&self.tls, &self.own) {
            (Some(tls), _) => Via::Tls(protocol, tls.clients(gateway)),
            (None, Some(own)) => Via::Own(protocol, own),
            (None, None) => Via::Plain(protocol),
        }
    }

    /// The connection settings of a cluster with a BackendConfigPolicy.
    pub fn connection(&self) -> Option<&Arc<ConnectionPolicy>> {
        self.connection.as_ref()
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

    /// For a retry: the next endpoint in round-robin order that is not in `tried`, or, when
    /// every endpoint was tried, the next one ("a retry picks another endpoint where one
    /// exists").
    pub fn pick_other(&self, tried: &[Authority]) -> Option<&Authority> {
        let count = self.endpoints.len();
        if count == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..count)
            .map(|offset| &self.endpoints[(start + offset) % count])
            .find(|endpoint| !tried.contains(endpoint))
            .or_else(|| self.endpoints.get(start % count))
    }

    /// The retry budget of the cluster's Service, when an XBackendTrafficPolicy sets one.
    pub fn budget(&self) -> Option<&Arc<RetryBudget>> {
        self.budget.as_ref()
    }

    /// The next endpoint in round-robin order with its session id.
    pub fn pick_with_id(&self) -> Option<(&Authority, u64)> {
        if self.endpoints.is_empty() {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.endpoints.len();
        Some((self.endpoints.get(i)?, *self.endpoint_ids.get(i)?))
    }

    /// The endpoint whose session id is `id`, while the cluster has it.
    pub fn endpoint_by_id(&self, id: u64) -> Option<&Authority> {
        let i = self.endpoint_ids.iter().position(|e| *e == id)?;
        self.endpoints.get(i)
    }

    pub fn endpoints(&self) -> &[Authority] {
        &self.endpoints
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_translate::ir::{PemCertificates, TrustIr, UpstreamTlsIr};
    use gantry_translate::store::ObjectKey;

    fn tls_cluster(sni: &str, ca_pem: &str) -> ClusterIr {
        ClusterIr {
            name: "ns/svc:443".into(),
            service: ObjectKey::new("ns", "svc"),
            port: 443,
            protocol: UpstreamProtocol::Http1,
            endpoints: vec!["10.0.0.1:8443".into()],
            tls: Some(Arc::new(UpstreamTlsIr {
                policy: ObjectKey::new("ns", "p"),
                sni: sni.into(),
                subject_alt_names: Vec::new(),
                trust: TrustIr::CaCertificates {
                    sources: vec![ObjectKey::new("ns", "ca")],
                    certificates: PemCertificates(ca_pem.into()),
                },
                client_certificates: Default::default(),
            })),
            retry_budget: None,
            backend_config: None,
        }
    }

    #[test]
    fn tls_clients_and_their_pools_are_kept_while_the_settings_stay() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = params.self_signed(&key).unwrap().pem();

        let first = Cluster::compile(&tls_cluster("a.internal", &ca), None).unwrap();
        assert!(matches!(
            first.via("ns/gw", UpstreamProtocol::Http1),
            Via::Tls(..)
        ));
        // An endpoint change keeps the TLS clients (and so the pooled connections).
        let mut moved = tls_cluster("a.internal", &ca);
        moved.endpoints = vec!["10.0.0.2:8443".into()];
        let second = Cluster::compile(&moved, Some(&first)).unwrap();
        assert!(Arc::ptr_eq(first.tls().unwrap(), second.tls().unwrap()));
        // New settings get new clients.
        let third = Cluster::compile(&tls_cluster("b.internal", &ca), Some(&second)).unwrap();
        assert!(!Arc::ptr_eq(second.tls().unwrap(), third.tls().unwrap()));
        // Plaintext stays plaintext.
        let mut plain = tls_cluster("a.internal", &ca);
        plain.tls = None;
        let plain = Cluster::compile(&plain, Some(&third)).unwrap();
        assert!(matches!(
            plain.via("ns/gw", UpstreamProtocol::Http1),
            Via::Plain(UpstreamProtocol::Http1)
        ));
    }

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
                retry_budget: None,
                backend_config: None,
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
        // A retry takes an endpoint not tried yet, whatever the cursor says.
        let first: Authority = "10.0.0.1:8080".parse().unwrap();
        for _ in 0..4 {
            assert_eq!(
                cluster.pick_other(std::slice::from_ref(&first)).unwrap(),
                "[::1]:8080"
            );
        }
        let both: Vec<Authority> = cluster.endpoints().to_vec();
        assert!(cluster.pick_other(&both).is_some(), "all tried: any");
    }
}
