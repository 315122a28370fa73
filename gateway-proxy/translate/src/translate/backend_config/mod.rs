//! BackendConfigPolicy (`gantry.dev/v1alpha1`): load balancing, health checks, circuit
//! breaking and connection settings of the Services (or Service ports) it targets, and its
//! status.
//!
//! Policies are resolved once per translation ([`BackendConfig::resolve`]); once routes are
//! translated, every cluster in use gets the settings of the policy governing its Service port
//! ([`BackendConfig::apply`]). Attachment, precedence and ancestors are those of every policy
//! targeting Services (`service_policy`): a policy naming the port (`sectionName`) governs it
//! before one naming the whole Service, and between equals the oldest, then the first by
//! `namespace/name`. Fields do not merge: the governing policy decides every field, its unset
//! ones taking their defaults, and an invalid governing policy applies nothing (the port keeps
//! the data plane's defaults; no other policy stands in).

mod check;
mod connection;
mod health_check;
mod load_balancer;
mod policy;
mod status;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use self::policy::ConfigPolicy;
use super::service_policy::{Ancestors, Resolved};
use crate::ir::{BackendConfigIr, ClusterIr, HealthProbeIr};
use crate::status::ObjectStatus;
use crate::store::{ObjectKey, Store};

/// Every BackendConfigPolicy of one translation, and the Gateways each is relevant to.
#[derive(Debug, Default)]
pub struct BackendConfig {
    resolved: Resolved<ConfigPolicy>,
    ancestors: Ancestors,
}

impl BackendConfig {
    /// Validates every policy of `store` and settles precedence.
    pub fn resolve(store: &Store) -> Self {
        let policies: BTreeMap<ObjectKey, ConfigPolicy> = store
            .backend_config_policies
            .iter()
            .map(|(key, p)| (key.clone(), policy::resolve(store, key, p)))
            .collect();
        let ancestors = Ancestors::new(policies.values());
        Self {
            resolved: Resolved::new(policies),
            ancestors,
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

    /// Gives each cluster the settings of the valid policy governing its Service port.
    pub fn apply(&self, store: &Store, clusters: &mut BTreeMap<String, ClusterIr>) {
        if self.resolved.is_empty() {
            return;
        }
        for cluster in clusters.values_mut() {
            cluster.backend_config = self
                .resolved
                .governing(store, &cluster.service, cluster.port)
                .and_then(|p| p.settings.as_ref().ok())
                .map(|settings| for_service(settings, &cluster.service));
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
                    self.resolved.winners(),
                    controller_name,
                ))
            })
            .collect()
    }
}

/// The policy's settings for one Service: an HTTP probe without a `hostname` sends the
/// Service's in-cluster name.
fn for_service(settings: &Arc<BackendConfigIr>, service: &ObjectKey) -> Arc<BackendConfigIr> {
    let unset = |ir: &BackendConfigIr| {
        matches!(
            ir.health_check.as_ref().and_then(|h| h.active.as_ref()).map(|a| &a.probe),
            Some(HealthProbeIr::Http { hostname, .. }) if hostname == health_check::HOSTNAME_OF_SERVICE
        )
    };
    if !unset(settings) {
        return settings.clone();
    }
    let mut ir = BackendConfigIr::clone(settings);
    if let Some(HealthProbeIr::Http { hostname, .. }) = ir
        .health_check
        .as_mut()
        .and_then(|h| h.active.as_mut())
        .map(|a| &mut a.probe)
    {
        *hostname = format!("{}.{}.svc", service.name, service.namespace);
    }
    Arc::new(ir)
}
