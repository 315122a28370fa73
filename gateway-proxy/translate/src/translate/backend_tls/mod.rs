//! BackendTLSPolicy and the Gateway's `spec.tls.backend`: which Service ports are reached
//! over TLS and how, and the status of both.
//!
//! Resolved once per translation ([`BackendTls::resolve`]); each route's clusters then get
//! the TLS settings of the policy that governs their Service port ([`BackendTls::secure`] for
//! HTTPRoute and GRPCRoute; TCPRoute and TLSRoute through [`BackendTls::for_cluster`], see
//! `l4_routes::TranslatedL4Route::with_backend_tls` for which L4 connections originate TLS).
//! A backend whose governing policy cannot be used is marked invalid (no cluster, so 500, or
//! a closed connection): never plaintext. Policies are relevant to the Gateways whose routes
//! use their Services; those Gateways are the policy's status ancestors.

mod client_certificate;
mod pem;
mod policy;
mod status;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use self::policy::PolicyState;
use super::conditions::Problem;
use super::gateway::GatewayState;
use super::http_route::TranslatedRoute;
use super::service_policy::{Ancestors, Resolved};
use crate::ir::{CertificateIr, ClusterIr, HttpFilterIr, UpstreamTlsIr};
use crate::status::{ObjectStatus, StatusBody};
use crate::store::{ObjectKey, Store};

/// Route `ResolvedRefs` reason for a backend whose BackendTLSPolicy cannot be used. The API
/// lists no reason for this case and lets controllers "raise this condition with other
/// reasons"; this is the name other implementations use.
pub const REASON_INVALID_BACKEND_TLS: &str = "InvalidBackendTLS";

/// Every policy and Gateway client certificate of one translation, and where they apply.
#[derive(Debug, Default)]
pub struct BackendTls {
    /// Every policy, and the one that takes precedence for each target.
    resolved: Resolved<PolicyState>,
    /// The TLS settings of each usable policy, with every Gateway's client certificate.
    secured: BTreeMap<ObjectKey, Arc<UpstreamTlsIr>>,
    /// Gateways that set `spec.tls.backend.clientCertificateRef`.
    client_certificates: BTreeMap<ObjectKey, Result<Arc<CertificateIr>, Problem>>,
    /// The Gateways each policy is relevant to.
    ancestors: Ancestors,
    /// Service → the Gateways that reach it through listeners that originate TLS (anything but
    /// a TLS `Passthrough` listener).
    originating: BTreeMap<ObjectKey, BTreeSet<ObjectKey>>,
}

/// What BackendTLSPolicy makes of one cluster's Service port.
#[derive(Debug)]
pub enum ClusterTls<'a> {
    /// No policy governs the port.
    None,
    /// The governing policy's settings, with every Gateway's client certificate.
    Tls(Arc<UpstreamTlsIr>),
    /// The governing policy cannot be used.
    Unusable {
        policy: &'a ObjectKey,
        problem: &'a Problem,
    },
}

impl BackendTls {
    /// Validates every policy and every served Gateway's client certificate, and settles
    /// which policy takes precedence for each target.
    pub fn resolve(store: &Store, gateways: &BTreeMap<ObjectKey, GatewayState>) -> Self {
        let mut out = Self::default();
        for key in gateways.keys() {
            if let Some(gateway) = store.gateways.get(key)
                && let Some(resolved) = client_certificate::resolve(store, key, gateway)
            {
                out.client_certificates.insert(key.clone(), resolved);
            }
        }
        let presented: BTreeMap<String, Arc<CertificateIr>> = out
            .client_certificates
            .iter()
            .filter_map(|(k, r)| Some((k.to_string(), r.as_ref().ok()?.clone())))
            .collect();
        let mut policies = BTreeMap::new();
        for (key, policy) in &store.backend_tls_policies {
            let state = policy::resolve(store, key, policy);
            if let Ok(config) = &state.config {
                let mut config = UpstreamTlsIr::clone(config);
                config.client_certificates = presented.clone();
                out.secured.insert(key.clone(), Arc::new(config));
            }
            policies.insert(key.clone(), state);
        }
        out.ancestors = Ancestors::new(policies.values());
        out.resolved = Resolved::new(policies);
        out
    }

    /// Applies the governing policy of each Service port the route uses: its cluster gets
    /// the policy's TLS settings, or, when the policy cannot be used, the backends using it
    /// become invalid (500) with a `ResolvedRefs` problem.
    pub fn secure(&self, store: &Store, mut route: TranslatedRoute) -> TranslatedRoute {
        let mut unusable = BTreeSet::new();
        for cluster in &mut route.clusters {
            match self.for_cluster(store, cluster) {
                ClusterTls::Tls(tls) => Arc::make_mut(cluster).tls = Some(tls),
                ClusterTls::Unusable { policy, problem } => {
                    route.problems.unresolved.push(unusable_problem(
                        cluster,
                        policy,
                        problem,
                        "requests for it get 500, never plaintext",
                    ));
                    unusable.insert(cluster.name.clone());
                    route.unusable_tls_services.insert(cluster.service.clone());
                }
                ClusterTls::None => {
                    // A port that speaks TLS (`appProtocol: HTTPS` or `kubernetes.io/wss`) is a
                    // valid backend only with a BackendTLSPolicy that says how to verify it;
                    // never plaintext.
                    if let Some(app_protocol) =
                        tls_app_protocol_of(store, &cluster.service, cluster.port)
                    {
                        route.problems.unresolved.push(Problem::new(
                            "UnsupportedProtocol",
                            format!(
                                "Service {} port {} has appProtocol {app_protocol}, which needs TLS: add a BackendTLSPolicy for it; requests for it get 500, never plaintext",
                                cluster.service, cluster.port
                            ),
                        ));
                        unusable.insert(cluster.name.clone());
                    }
                }
            }
        }
        if !unusable.is_empty() {
            route
                .clusters
                .retain(|cluster| !unusable.contains(&cluster.name));
            for rule in &mut route.rules {
                invalidate(Arc::make_mut(&mut rule.rule), &unusable);
            }
        }
        route
    }

    /// What governs the Service port of `cluster`.
    pub fn for_cluster(&self, store: &Store, cluster: &ClusterIr) -> ClusterTls<'_> {
        let Some(policy) = self
            .resolved
            .governing(store, &cluster.service, cluster.port)
        else {
            return ClusterTls::None;
        };
        match (&policy.config, self.secured.get(&policy.key)) {
            (Ok(_), Some(tls)) => ClusterTls::Tls(tls.clone()),
            (Err(problem), _) => ClusterTls::Unusable {
                policy: &policy.key,
                problem,
            },
            (Ok(_), None) => ClusterTls::None, // every usable policy is in `secured`
        }
    }

    /// Records the Gateways serving routes that use each Service (see
    /// `routes::Attacher::services`): through listeners that originate TLS to covered
    /// backends (`services`), or through TLS `Passthrough` listeners, which never do
    /// (`passthrough`). Both make those Gateways ancestors of the policies targeting the
    /// Service: a passthrough Gateway is shown too, with a message saying the policy
    /// originates nothing there.
    pub fn record_use(
        &mut self,
        services: &BTreeMap<ObjectKey, BTreeSet<ObjectKey>>,
        passthrough: &BTreeMap<ObjectKey, BTreeSet<ObjectKey>>,
    ) {
        self.ancestors.record_use(services);
        self.ancestors.record_use(passthrough);
        for (service, gateways) in services {
            self.originating
                .entry(service.clone())
                .or_default()
                .extend(gateways.iter().cloned());
        }
    }

    /// The Gateway's status, with a `ResolvedRefs` condition when it sets a backend client
    /// certificate.
    pub fn gateway_status(&self, gateway: &GatewayState) -> ObjectStatus {
        let mut status = gateway.status();
        if let (Some(resolved), StatusBody::Gateway(body)) = (
            self.client_certificates.get(&gateway.key),
            &mut status.status,
        ) {
            body.conditions
                .push(client_certificate::condition(resolved, gateway.generation));
        }
        status
    }

    /// Status of every policy relevant to at least one served Gateway.
    pub fn policy_statuses(&self, controller_name: &Arc<str>) -> Vec<ObjectStatus> {
        self.ancestors
            .iter()
            .filter_map(|(key, gateways)| {
                let policy = self.resolved.policies().get(key)?;
                Some(status::policy_status(
                    policy,
                    gateways,
                    &self.originating,
                    self.resolved.winners(),
                    controller_name,
                ))
            })
            .collect()
    }
}

/// The route's `ResolvedRefs` problem for a backend whose governing policy cannot be used;
/// `consequence` says what happens to its traffic.
pub fn unusable_problem(
    cluster: &ClusterIr,
    policy: &ObjectKey,
    problem: &Problem,
    consequence: &str,
) -> Problem {
    Problem::new(
        REASON_INVALID_BACKEND_TLS,
        format!(
            "backendRef to Service {} port {}: its BackendTLSPolicy {policy} cannot be used ({}: {}); {consequence}",
            cluster.service, cluster.port, problem.reason, problem.message
        ),
    )
}

/// The `appProtocol` of a Service port that speaks TLS, if it does.
fn tls_app_protocol_of(store: &Store, service: &ObjectKey, port: u16) -> Option<String> {
    let app_protocol = store
        .services
        .get(service)?
        .spec
        .as_ref()?
        .ports
        .iter()
        .flatten()
        .find(|p| p.port == i32::from(port))?
        .app_protocol
        .clone();
    super::backend::tls_app_protocol(app_protocol.as_deref())
        .then(|| app_protocol.unwrap_or_default())
}

/// Clears every reference to the clusters in `unusable` from a rule: backends (which then
/// answer 500) and mirrors (which then mirror nothing).
fn invalidate(rule: &mut crate::ir::HttpRuleIr, unusable: &BTreeSet<String>) {
    let clear = |cluster: &mut Option<String>| {
        if cluster.as_ref().is_some_and(|c| unusable.contains(c)) {
            *cluster = None;
        }
    };
    let clear_mirrors = |filters: &mut Vec<HttpFilterIr>| {
        for filter in filters {
            if let HttpFilterIr::RequestMirror(mirror) = filter {
                clear(&mut mirror.cluster);
            }
        }
    };
    clear_mirrors(&mut rule.filters);
    for backend in &mut rule.backends {
        clear(&mut backend.cluster);
        clear_mirrors(&mut backend.filters);
    }
}
