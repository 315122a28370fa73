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
use std::sync::Arc;

use self::resolve::ResolvedPolicies;
use super::service_policy::Ancestors;
use crate::ir::ClusterIr;
use crate::status::ObjectStatus;
use crate::store::{ObjectKey, Store};

/// Every policy of one translation, and the Gateways each is relevant to.
#[derive(Debug, Default)]
pub struct BackendTraffic {
    resolved: ResolvedPolicies,
    /// The Gateways each policy is relevant to.
    ancestors: Ancestors,
}

impl BackendTraffic {
    pub fn resolve(store: &Store) -> Self {
        let resolved = ResolvedPolicies::resolve(store);
        let ancestors = Ancestors::new(resolved.policies().values());
        Self {
            resolved,
            ancestors,
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
        for services in uses {
            self.ancestors.record_use(services);
        }
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
                    &self.resolved,
                    controller_name,
                ))
            })
            .collect()
    }
}
