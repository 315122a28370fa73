//! XBackendTrafficPolicy status: one `ancestors[]` entry per Gateway the policy is relevant
//! to, with `Accepted` (PolicyConditionReason: `Accepted`, `TargetNotFound`, `Conflicted`,
//! `Invalid`), written the way BackendTLSPolicy's are (`service_policy::ancestors`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::resolve::{ResolvedPolicies, TrafficPolicy};
use crate::status::{Condition, ObjectStatus};
use crate::store::ObjectKey;
use crate::translate::conditions as c;
use crate::translate::service_policy::ancestors::{self, PolicyKind};

pub const KIND: &str = "XBackendTrafficPolicy";
/// The experimental group's version the policy is served at.
pub const API_VERSION: &str = "gateway.networking.x-k8s.io/v1alpha1";

const POLICY_KIND: PolicyKind = PolicyKind {
    kind: KIND,
    api_version: API_VERSION,
};

/// The policy's status for the Gateways it is relevant to, each with the Services used there
/// that the policy targets.
pub fn policy_status(
    policy: &TrafficPolicy,
    gateways: &BTreeMap<ObjectKey, BTreeSet<ObjectKey>>,
    resolved: &ResolvedPolicies,
    controller_name: &Arc<str>,
) -> ObjectStatus {
    ancestors::policy_status(
        POLICY_KIND,
        &policy.key,
        gateways,
        controller_name,
        |_, services| vec![accepted(policy, services, resolved)],
    )
}

/// `Accepted` for one ancestor, from the targets naming `services`: a target that does not
/// exist first, then a Service another policy takes, then the policy's own values.
fn accepted(
    policy: &TrafficPolicy,
    services: &BTreeSet<ObjectKey>,
    resolved: &ResolvedPolicies,
) -> Condition {
    let generation = policy.generation;
    if let Some(problem) =
        ancestors::attachment_problem(POLICY_KIND, policy, services, resolved.winners())
    {
        return c::not_ok(c::ACCEPTED, &problem, generation);
    }
    match &policy.retry_budget {
        Err(problem) => c::not_ok(c::ACCEPTED, problem, generation),
        Ok(budget) => {
            let mut message = match budget {
                Some(b) => format!(
                    "Policy is accepted; retries to its targets are limited to {}% of the requests of the last {} ms, and at least {} per {} ms are allowed",
                    b.percent, b.interval_ms, b.min_retry_count, b.min_retry_interval_ms
                ),
                None => "Policy is accepted; it sets no retryConstraint".to_owned(),
            };
            if policy.policy.spec.session_persistence.is_some() {
                message.push_str(
                    "; its sessionPersistence applies to route rules that do not set their own",
                );
            }
            c::ok(c::ACCEPTED, c::REASON_ACCEPTED, message, generation)
        }
    }
}
