//! The workload that runs a fleet's pods (a Deployment or a DaemonSet, GatewayParameters
//! `workload`) as the API server has it, and the switch from one kind to the other without a
//! moment in which no pod serves.

use gantry_crds::params::Workload;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use kube::Api;
use kube::api::DeleteParams;

use super::{Context, Error};
use crate::infra::apply::is_not_found;
use crate::infra::plan::FleetRef;

/// Each kind's object of the fleet, if it exists, with whether it has an available pod of its
/// current revision.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Workloads {
    pub deployment: Option<bool>,
    pub daemon_set: Option<bool>,
}

impl Workloads {
    /// Whether any of the fleet's workloads exists.
    pub fn exists(&self) -> bool {
        self.deployment.is_some() || self.daemon_set.is_some()
    }

    /// Whether a pod of the fleet serves (any kind).
    pub fn available(&self) -> bool {
        self.deployment == Some(true) || self.daemon_set == Some(true)
    }

    fn of(&self, kind: Workload) -> Option<bool> {
        match kind {
            Workload::Deployment => self.deployment,
            Workload::DaemonSet => self.daemon_set,
        }
    }
}

/// Reads the fleet's Deployment and DaemonSet.
pub async fn workloads(ctx: &Context, fleet: &FleetRef) -> Result<Workloads, Error> {
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), &fleet.namespace);
    let daemon_sets: Api<DaemonSet> = Api::namespaced(ctx.client.clone(), &fleet.namespace);
    let read = |kind: &str, e| {
        Error::kube(
            format!("reading {kind} {}/{}", fleet.namespace, fleet.name),
            e,
        )
    };
    let deployment = match deployments.get_opt(&fleet.name).await {
        Ok(d) => d.map(|d| deployment_available(&d)),
        Err(e) => return Err(read("Deployment", e)),
    };
    let daemon_set = match daemon_sets.get_opt(&fleet.name).await {
        Ok(d) => d.map(|d| daemon_set_available(&d)),
        // A cluster or a test that never served DaemonSets has none.
        Err(e) if is_not_found(&e) => None,
        Err(e) => return Err(read("DaemonSet", e)),
    };
    Ok(Workloads {
        deployment,
        daemon_set,
    })
}

/// Whether a Deployment has at least one available pod of its current revision.
pub fn deployment_available(deployment: &Deployment) -> bool {
    let Some(status) = deployment.status.as_ref() else {
        return false;
    };
    let current = status.observed_generation >= deployment.metadata.generation;
    let wanted = deployment
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1);
    current && (wanted == 0 || status.available_replicas.unwrap_or(0) >= 1)
}

/// Whether a DaemonSet has at least one available pod of its current revision (or no node to
/// run on, so nothing to wait for).
pub fn daemon_set_available(daemon_set: &DaemonSet) -> bool {
    let Some(status) = daemon_set.status.as_ref() else {
        return false;
    };
    let current = status.observed_generation >= daemon_set.metadata.generation;
    current
        && (status.desired_number_scheduled == 0
            || (status.number_available.unwrap_or(0) >= 1
                && status.updated_number_scheduled.unwrap_or(0) >= 1))
}

/// After a switch of `workload` kind: the other kind's object goes once the wanted one has an
/// available pod, deleted in the foreground so its pods drain as in any teardown. `true` while
/// the switch waits for the new kind.
pub async fn retire_other(
    ctx: &Context,
    fleet: &FleetRef,
    wanted: Workload,
) -> Result<bool, Error> {
    let state = workloads(ctx, fleet).await?;
    let (other, other_kind) = match wanted {
        Workload::Deployment => (state.daemon_set, "DaemonSet"),
        Workload::DaemonSet => (state.deployment, "Deployment"),
    };
    if other.is_none() {
        return Ok(false);
    }
    if state.of(wanted) != Some(true) {
        return Ok(true);
    }
    tracing::info!(fleet = %fleet.name, from = other_kind, "workload switched; removing the old one");
    let deleted = match wanted {
        Workload::Deployment => Api::<DaemonSet>::namespaced(ctx.client.clone(), &fleet.namespace)
            .delete(&fleet.name, &DeleteParams::foreground())
            .await
            .map(|_| ()),
        Workload::DaemonSet => Api::<Deployment>::namespaced(ctx.client.clone(), &fleet.namespace)
            .delete(&fleet.name, &DeleteParams::foreground())
            .await
            .map(|_| ()),
    };
    match deleted {
        Ok(()) => Ok(false),
        Err(e) if is_not_found(&e) => Ok(false),
        Err(e) => Err(Error::kube(
            format!("deleting {other_kind} {}/{}", fleet.namespace, fleet.name),
            e,
        )),
    }
}
