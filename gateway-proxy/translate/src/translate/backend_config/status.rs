//! BackendConfigPolicy status: one `ancestors[]` entry per Gateway whose routes use a targeted
//! Service, with `Accepted` (PolicyConditionReason `Accepted`, `TargetNotFound`, `Conflicted`,
//! `Invalid`), written the way BackendTLSPolicy's and XBackendTrafficPolicy's are.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::policy::ConfigPolicy;
use crate::status::{Condition, ObjectStatus};
use crate::store::ObjectKey;
use crate::translate::conditions as c;
use crate::translate::service_policy::Target;
use crate::translate::service_policy::ancestors::{self, PolicyKind};

pub const KIND: &str = gantry_crds::BACKEND_CONFIG_POLICY_KIND;
pub const API_VERSION: &str = "gantry.dev/v1alpha1";

const POLICY_KIND: PolicyKind = PolicyKind {
    kind: KIND,
    api_version: API_VERSION,
};

/// The policy's status for the Gateways it is relevant to, each with the Services used there
/// that the policy targets.
pub fn policy_status(
    policy: &ConfigPolicy,
    gateways: &BTreeMap<ObjectKey, BTreeSet<ObjectKey>>,
    winners: &BTreeMap<Target, ObjectKey>,
    controller_name: &Arc<str>,
) -> ObjectStatus {
    ancestors::policy_status(
        POLICY_KIND,
        &policy.key,
        gateways,
        controller_name,
        |_, services| vec![accepted(policy, services, winners)],
    )
}

/// `Accepted` for one ancestor: a target naming a used Service that does not attach first,
/// then one another policy takes precedence for, then the policy's own values.
fn accepted(
    policy: &ConfigPolicy,
    services: &BTreeSet<ObjectKey>,
    winners: &BTreeMap<Target, ObjectKey>,
) -> Condition {
    let generation = policy.generation;
    if let Some(problem) = ancestors::attachment_problem(POLICY_KIND, policy, services, winners) {
        return c::not_ok(c::ACCEPTED, &problem, generation);
    }
    match &policy.settings {
        Ok(_) => c::ok(
            c::ACCEPTED,
            c::REASON_ACCEPTED,
            "Policy is accepted; its settings apply to the targeted Service ports",
            generation,
        ),
        Err(problem) => c::not_ok(c::ACCEPTED, problem, generation),
    }
}
