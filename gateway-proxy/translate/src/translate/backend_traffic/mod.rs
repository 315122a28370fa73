//! XBackendTrafficPolicy (GEP-3388, `gateway.networking.x-k8s.io/v1alpha1`): the retry budget
//! of the Services it targets, their session persistence (`session`, GEP-1619), and the
//! policy's status.
//!
//! [`resolve`] decides which policy applies to which Service ([`ResolvedPolicies`]); this
//! module puts each Service's `retryConstraint` on its clusters ([`BackendTraffic::apply`]) and
//! writes the status. As for BackendTLSPolicy, a policy is relevant to the Gateways whose
//! routes use its Services; those Gateways are its status ancestors.

pub mod resolve;
pub(crate) mod session;
mod status;

use std::collections::{BTreeMap, BTreeSet};

use self::resolve::ResolvedPolicies;
use crate::ir::ClusterIr;
use crate::status::ObjectStatus;
use crate::store::{ObjectKey, Store};

/// Every policy of one translation, and the Gateways each is relevant to.
#[derive(Debug, Default)]
pub struct BackendTraffic {
    resolved: ResolvedPolicies,
    /// Policies naming each Service in a target, attached or not (a Service that does not
    /// exist included, so its `TargetNotFound` can be shown).
    by_service: BTreeMap<ObjectKey, BTreeSet<ObjectKey>>,
    /// Per policy, the Gateways it is relevant to and the targeted Services used there.
    ancestors: BTreeMap<ObjectKey, BTreeMap<ObjectKey, BTreeSet<ObjectKey>>>,
}

impl BackendTraffic {
    pub fn resolve(store: &Store) -> Self {
        let resolved = ResolvedPolicies::resolve(store);
        let mut by_service: BTreeMap<ObjectKey, BTreeSet<ObjectKey>> = BTreeMap::new();
        for (key, policy) in resolved.policies() {
            for target in &policy.targets {
                let service = match target {
                    Ok(service) => Some(service),
                    Err(problem) => problem.service.as_ref(),
                };
                if let Some(service) = service {
                    by_service
                        .entry(service.clone())
                        .or_default()
                        .insert(key.clone());
                }
            }
        }
        Self {
            resolved,
            by_service,
            ancestors: BTreeMap::new(),
        }
    }

    /// Whether the store has no policy (the translator then records no Service use for it).
    pub fn is_empty(&self) -> bool {
        self.resolved.is_empty()
    }

    /// Gives each cluster the retry budget of its Service's policy, when that policy is valid
    /// and sets `retryConstraint`.
    pub fn apply(&self, clusters: &mut BTreeMap<String, ClusterIr>) {
        if self.resolved.is_empty() {
            return;
        }
        for cluster in clusters.values_mut() {
            cluster.retry_budget = self
                .resolved
                .for_service(&cluster.service)
                .and_then(|p| p.retry_budget.as_ref().ok().cloned().flatten());
        }
    }

    /// Records the Gateways serving routes that use each Service, existing or referenced but
    /// missing (each map: Service to Gateways): they are the ancestors of the policies
    /// targeting it.
    pub fn record_use(&mut self, uses: &[&BTreeMap<ObjectKey, BTreeSet<ObjectKey>>]) {
        for (service, gateways) in uses.iter().flat_map(|map| map.iter()) {
            for policy in self.by_service.get(service).into_iter().flatten() {
                let entry = self.ancestors.entry(policy.clone()).or_default();
                for gateway in gateways {
                    entry
                        .entry(gateway.clone())
                        .or_default()
                        .insert(service.clone());
                }
            }
        }
    }

    /// Status of every policy relevant to at least one served Gateway.
    pub fn policy_statuses(&self, controller_name: &str) -> Vec<ObjectStatus> {
        self.ancestors
            .iter()
            .filter_map(|(key, gateways)| {
                let policy = self.resolved.policies().get(key)?;
                Some(status::policy_status(
                    policy,
                    gateways,
                    &self.resolved,
                    controller_name,
                ))
            })
            .collect()
    }
}
