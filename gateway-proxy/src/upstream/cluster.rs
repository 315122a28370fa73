//! A compiled upstream cluster: parsed endpoint addresses, a round-robin cursor (or, under a
//! BackendConfigPolicy, its load balancer and request limits), for a TLS cluster its TLS
//! clients, and for a cluster with a policy its connection settings and own pools.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use http::HeaderValue;
use http::uri::Authority;

use super::Via;
use super::balancer::{Balancer, Choosable, RequestKey};
use super::clients::ClusterClients;
use super::connect::ConnectionPolicy;
use super::health::{ClusterHealth, ClusterHealthView, Outcome};
use super::in_flight::{InFlight, RequestLimits, Slot};
use super::retry::RetryBudget;
use super::tls::TlsUpstream;
use crate::telemetry::Metrics;
use gantry_translate::ir::{ClusterIr, UpstreamProtocol};

/// One cluster of the snapshot. Endpoints are taken in turn, unless a BackendConfigPolicy
/// gives the cluster a load balancer.
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
    /// The policy's load balancer; `None`: round robin on `next`, as without a policy.
    balancer: Option<Box<Balancer>>,
    /// The circuit breaker's request limits (none without a policy).
    limits: RequestLimits,
    /// Health checks (BackendConfigPolicy `healthCheck`); `None`: every endpoint is used.
    health: Option<ClusterHealth>,
}

/// An endpoint picked for a request.
#[derive(Debug)]
pub struct Picked<'c> {
    pub endpoint: &'c Authority,
    /// Its session id (see [`Cluster::endpoint_by_id`]).
    pub id: u64,
    /// Its in-flight count, held (least request).
    pub slot: Option<Slot>,
    /// A `Set-Cookie` for the response: a consistent hash's cookie, new to the client.
    pub set_cookie: Option<HeaderValue>,
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
        let endpoints: Vec<Authority> = ir
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
        let policy = ir.backend_config.as_deref();
        let balancer = policy.map(|policy| {
            let previous_names: Option<Vec<String>> =
                previous.map(|p| p.endpoints.iter().map(|e| e.as_str().to_owned()).collect());
            Box::new(Balancer::compile(
                &policy.load_balancer,
                &ir.endpoints,
                previous.and_then(|p| p.balancer.as_deref()),
                previous_names.as_deref(),
                Instant::now(),
            ))
        });
        let limits = RequestLimits::new(
            policy.and_then(|p| p.circuit_breaker.as_ref()),
            previous.map(|p| &p.limits),
        );
        let health = ClusterHealth::compile(
            ir,
            &endpoints,
            tls.as_ref(),
            previous.and_then(|p| p.health.as_ref()),
            &metrics.health,
        );
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
            balancer,
            limits,
            health,
        })
    }

    /// Which endpoints may be chosen now: every one without health checks; with them the
    /// healthy ones, all of them in panic mode, or none (see [`ClusterHealth::choosable`]).
    /// The one candidate filter of the load balancer, session persistence, retries and
    /// mirrors.
    pub fn choosable(&self) -> Choosable<'_> {
        match &self.health {
            Some(health) => health.choosable(),
            None => Choosable::all(self.endpoints.len()),
        }
    }

    /// Records how a request (or a TCP or TLS route's connection) to `endpoint` ended, for
    /// outlier detection; nothing without passive health checks.
    pub fn observe(&self, endpoint: &Authority, outcome: Outcome) {
        let Some(health) = &self.health else {
            return;
        };
        // Mostly `endpoint` is one of ours (a pick): found by address before by value.
        let index = self
            .endpoints
            .iter()
            .position(|e| std::ptr::eq(e, endpoint))
            .or_else(|| self.endpoints.iter().position(|e| e == endpoint));
        if let Some(index) = index {
            health.observe(index, outcome);
        }
    }

    /// Whether the cluster has health checks (its requests' outcomes are worth observing).
    pub fn has_health_checks(&self) -> bool {
        self.health.is_some()
    }

    /// This replica's view of its endpoints' health, for `GET /config`.
    pub fn health_view(&self) -> Option<ClusterHealthView> {
        self.health.as_ref().map(ClusterHealth::view)
    }

    /// Admits a request under the circuit breaker's `maxParallelRequests`: the counts it
    /// holds until its response body ends, or the name of the limit it is over (503).
    pub fn admit(&self) -> Result<InFlight, &'static str> {
        self.limits.admit()
    }

    /// Admits a retry under `maxParallelRetries` into the request's counts, or names the
    /// limit it is over (the retry is not made).
    pub fn admit_retry(&self, in_flight: &mut InFlight) -> Result<(), &'static str> {
        self.limits.admit_retry(in_flight)
    }

    /// The endpoint for `request`: the policy's load balancer's choice, or the next in
    /// round-robin order; `None` when none may be chosen (503).
    pub fn pick_for(&self, request: &RequestKey<'_>) -> Option<Picked<'_>> {
        let Some(balancer) = &self.balancer else {
            let (endpoint, id) = self.pick_with_id()?;
            return Some(Picked {
                endpoint,
                id,
                slot: None,
                set_cookie: None,
            });
        };
        let choice = balancer.choose(self.choosable(), request)?;
        Some(Picked {
            endpoint: self.endpoints.get(choice.index)?,
            id: *self.endpoint_ids.get(choice.index)?,
            slot: choice.slot,
            set_cookie: choice.set_cookie,
        })
    }

    /// The in-flight count of `endpoint`, taken, when the load balancer counts (least
    /// request): for a session's endpoint and a retry's.
    pub fn track(&self, endpoint: &Authority) -> Option<Slot> {
        let balancer = self.balancer.as_ref()?;
        let index = self.endpoints.iter().position(|e| e == endpoint)?;
        balancer.slot(index)
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

    /// The next endpoint in round-robin order that may be chosen; `None` when there is none
    /// (503).
    pub fn pick(&self) -> Option<&Authority> {
        self.endpoints.get(self.next_index()?)
    }

    /// The round-robin cursor's next index, or the first after it that may be chosen.
    fn next_index(&self) -> Option<usize> {
        if self.endpoints.is_empty() {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed) % self.endpoints.len();
        self.choosable().scan(start)
    }

    /// For a retry: the next endpoint in round-robin order that is not in `tried`, or, when
    /// every endpoint was tried, the next one ("a retry picks another endpoint where one
    /// exists").
    pub fn pick_other(&self, tried: &[Authority]) -> Option<&Authority> {
        if let Some(balancer) = &self.balancer {
            let other = balancer.choose_other(self.choosable(), |i| {
                self.endpoints.get(i).is_some_and(|e| tried.contains(e))
            })?;
            return self.endpoints.get(other);
        }
        let count = self.endpoints.len();
        if count == 0 {
            return None;
        }
        let choosable = self.choosable();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..count)
            .map(|offset| (start + offset) % count)
            .find(|&i| choosable.allows(i) && !tried.contains(&self.endpoints[i]))
            .or_else(|| choosable.scan(start % count))
            .and_then(|i| self.endpoints.get(i))
    }

    /// The retry budget of the cluster's Service, when an XBackendTrafficPolicy sets one.
    pub fn budget(&self) -> Option<&Arc<RetryBudget>> {
        self.budget.as_ref()
    }

    /// The next endpoint in round-robin order that may be chosen, with its session id.
    pub fn pick_with_id(&self) -> Option<(&Authority, u64)> {
        let i = self.next_index()?;
        Some((self.endpoints.get(i)?, *self.endpoint_ids.get(i)?))
    }

    /// The endpoint whose session id is `id`, while the cluster has it and it may be chosen:
    /// the session of an unhealthy endpoint moves, as when the endpoint is gone (see
    /// docs/routing.md, "Endpoint gone"), except in panic mode.
    pub fn endpoint_by_id(&self, id: u64) -> Option<&Authority> {
        let i = self.endpoint_ids.iter().position(|e| *e == id)?;
        if !self.choosable().allows(i) {
            return None;
        }
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

    fn with_policy(mut ir: ClusterIr, connect_timeout_ms: u64) -> ClusterIr {
        use gantry_translate::ir::{BackendConfigIr, ConnectionIr, LoadBalancerIr};
        ir.backend_config = Some(Arc::new(BackendConfigIr {
            policy: "ns/p".into(),
            load_balancer: LoadBalancerIr::RoundRobin {
                slow_start_window_ms: None,
            },
            health_check: None,
            circuit_breaker: None,
            connection: ConnectionIr {
                connect_timeout_ms,
                ..ConnectionIr::DEFAULT
            },
        }));
        ir
    }

    fn plain_cluster() -> ClusterIr {
        let mut ir = tls_cluster("a.internal", "");
        ir.tls = None;
        ir
    }

    /// Three endpoints under a policy with passive health checks: 2 consecutive 5xx eject,
    /// at most 67 % of the endpoints, panic below `panic` % healthy.
    fn with_outlier_detection(panic: u32, max_ejection_percent: u32) -> ClusterIr {
        use gantry_translate::ir::{HealthCheckIr, OutlierDetectionIr};
        let mut ir = with_policy(plain_cluster(), 1_000);
        ir.endpoints = vec![
            "10.0.0.1:80".into(),
            "10.0.0.2:80".into(),
            "10.0.0.3:80".into(),
        ];
        if let Some(config) = ir.backend_config.as_mut() {
            Arc::make_mut(config).health_check = Some(HealthCheckIr {
                active: None,
                passive: Some(OutlierDetectionIr {
                    consecutive_5xx_errors: 2,
                    consecutive_gateway_errors: 0,
                    consecutive_local_origin_failures: 0,
                    split_external_local_origin_errors: false,
                    interval_ms: 100,
                    base_ejection_time_ms: 60_000,
                    max_ejection_percent,
                }),
                panic_threshold_percent: panic,
            });
        }
        ir
    }

    fn eject(cluster: &Cluster, endpoint: &Authority) {
        cluster.observe(endpoint, Outcome::Status(500));
        cluster.observe(endpoint, Outcome::Status(503));
    }

    #[test]
    fn ejected_endpoints_are_no_candidate_for_any_choice() {
        // No Tokio runtime: no task returns an ejected endpoint while the test runs.
        let cluster = Cluster::compile(&with_outlier_detection(10, 67), None).unwrap();
        let endpoints = cluster.endpoints().to_vec();
        let key = RequestKey::connection([10, 1, 1, 1].into());
        cluster.observe(&endpoints[0], Outcome::Status(500));
        cluster.observe(&endpoints[0], Outcome::Status(200));
        cluster.observe(&endpoints[0], Outcome::Status(500));
        assert!(cluster.choosable().allows(0), "a success broke the run");
        eject(&cluster, &endpoints[0]);
        for _ in 0..6 {
            let picked = cluster.pick_for(&key).unwrap();
            assert_ne!(picked.endpoint, &endpoints[0]);
            assert_ne!(cluster.pick().unwrap(), &endpoints[0]);
            assert_ne!(
                cluster
                    .pick_other(std::slice::from_ref(&endpoints[1]))
                    .unwrap(),
                &endpoints[0],
                "a retry's other endpoint"
            );
        }
        let id = |i: usize| super::super::session::id(endpoints[i].as_str());
        assert!(cluster.endpoint_by_id(id(0)).is_none(), "its sessions move");
        assert_eq!(cluster.endpoint_by_id(id(1)), Some(&endpoints[1]));
        let view = cluster.health_view().unwrap();
        assert_eq!(view.endpoints[0].state, "ejected");
        assert_eq!(view.endpoints[0].ejections, 1);
        assert!(view.endpoints[0].ejected_until.is_some());
        assert_eq!(view.endpoints[1].state, "healthy");
        assert!(!view.panic);

        // 67 % of 3 is 2: a second ejection is allowed, a third is not.
        eject(&cluster, &endpoints[1]);
        eject(&cluster, &endpoints[2]);
        for _ in 0..6 {
            assert_eq!(cluster.pick_for(&key).unwrap().endpoint, &endpoints[2]);
        }
        let view = cluster.health_view().unwrap();
        assert_eq!(view.endpoints[2].state, "healthy");
        assert_eq!(view.endpoints[2].ejections, 0);
    }

    #[test]
    fn panic_mode_chooses_over_all_endpoints() {
        let cluster = Cluster::compile(&with_outlier_detection(50, 100), None).unwrap();
        let endpoints = cluster.endpoints().to_vec();
        let key = RequestKey::connection([10, 1, 1, 1].into());
        eject(&cluster, &endpoints[0]);
        assert!(!cluster.health_view().unwrap().panic, "2 of 3 healthy");
        eject(&cluster, &endpoints[1]);
        // 1 of 3 healthy is below 50 %: every endpoint is chosen again.
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..30 {
            seen.insert(cluster.pick_for(&key).unwrap().endpoint.to_string());
        }
        assert_eq!(seen.len(), 3);
        assert!(cluster.health_view().unwrap().panic);

        // A panic threshold of 0 and nothing healthy: no endpoint (503).
        let cluster = Cluster::compile(&with_outlier_detection(0, 100), None).unwrap();
        for endpoint in cluster.endpoints().to_vec() {
            eject(&cluster, &endpoint);
        }
        assert!(cluster.pick_for(&key).is_none());
        assert!(cluster.pick().is_none());
        assert!(!cluster.health_view().unwrap().panic);
    }

    #[test]
    fn health_state_survives_a_reload_that_keeps_its_settings() {
        let first = Cluster::compile(&with_outlier_detection(10, 67), None).unwrap();
        let ejected = first.endpoints()[0].clone();
        eject(&first, &ejected);
        // Another endpoint list, the same settings: the ejection is kept.
        let mut moved = with_outlier_detection(10, 67);
        moved.endpoints.push("10.0.0.4:80".into());
        moved.endpoints.reverse();
        let second = Cluster::compile(&moved, Some(&first)).unwrap();
        let index = second
            .endpoints()
            .iter()
            .position(|e| *e == ejected)
            .unwrap();
        assert!(!second.choosable().allows(index));
        assert_eq!(
            second.health_view().unwrap().endpoints[index].state,
            "ejected"
        );
        // New settings start afresh.
        let third = Cluster::compile(&with_outlier_detection(10, 100), Some(&second)).unwrap();
        assert_eq!(third.endpoints()[0], ejected);
        assert!(third.choosable().allows(0));
    }

    #[test]
    fn a_policy_s_pools_are_kept_while_its_connection_settings_stay() {
        let without = Cluster::compile(&plain_cluster(), None).unwrap();
        assert!(without.connection().is_none());
        assert!(matches!(
            without.via("ns/gw", UpstreamProtocol::Http1),
            Via::Plain(_)
        ));

        let first = Cluster::compile(&with_policy(plain_cluster(), 1_000), Some(&without)).unwrap();
        let own = |c: &Cluster| match c.via("ns/gw", UpstreamProtocol::Http1) {
            Via::Own(_, clients) => clients as *const ClusterClients,
            other => panic!("not the cluster's own pools: {other:?}"),
        };
        // Endpoints and the policy's other settings change: the pools (and their connections)
        // stay.
        let mut moved = with_policy(plain_cluster(), 1_000);
        moved.endpoints = vec!["10.0.0.9:8443".into()];
        if let Some(config) = moved.backend_config.as_mut() {
            Arc::make_mut(config).load_balancer = gantry_translate::ir::LoadBalancerIr::Random;
        }
        let second = Cluster::compile(&moved, Some(&first)).unwrap();
        assert_eq!(own(&first), own(&second));
        assert!(Arc::ptr_eq(
            first.connection().unwrap(),
            second.connection().unwrap()
        ));
        // New connection settings: new pools.
        let third = Cluster::compile(&with_policy(plain_cluster(), 2_000), Some(&second)).unwrap();
        assert_ne!(own(&second), own(&third));
        // The policy gone: the shared pools again.
        let fourth = Cluster::compile(&plain_cluster(), Some(&third)).unwrap();
        assert!(matches!(
            fourth.via("ns/gw", UpstreamProtocol::Http1),
            Via::Plain(_)
        ));
    }

    #[test]
    fn a_tls_cluster_s_clients_follow_its_policy() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = params.self_signed(&key).unwrap().pem();
        let tls = || tls_cluster("a.internal", &ca);

        let first = Cluster::compile(&with_policy(tls(), 1_000), None).unwrap();
        let clients = |c: &Cluster| match c.via("ns/gw", UpstreamProtocol::Http1) {
            Via::Tls(_, clients) => clients.policy.clone(),
            other => panic!("not TLS: {other:?}"),
        };
        assert!(clients(&first).is_some());
        let same = Cluster::compile(&with_policy(tls(), 1_000), Some(&first)).unwrap();
        assert!(Arc::ptr_eq(first.tls().unwrap(), same.tls().unwrap()));
        let other = Cluster::compile(&with_policy(tls(), 2_000), Some(&same)).unwrap();
        assert!(!Arc::ptr_eq(same.tls().unwrap(), other.tls().unwrap()));
        let none = Cluster::compile(&tls(), Some(&other)).unwrap();
        assert!(!Arc::ptr_eq(other.tls().unwrap(), none.tls().unwrap()));
        assert!(clients(&none).is_none());
    }
}
