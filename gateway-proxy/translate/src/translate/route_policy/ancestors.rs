//! The status of a policy attached to Gateways and routes: one `ancestors[]` entry per Gateway
//! where it is in use (GEP-713: "the relevant object for status is the Gateway"), with
//! `sectionName` when the policy targets a listener, and one per target that does not attach
//! (naming the missing object), each with `Accepted`: `TargetNotFound`, `Conflicted`,
//! `Invalid` or `Accepted`.

use std::sync::Arc;

use super::{Ancestor, Resolved, RoutePolicy};
use crate::status::{
    Condition, ObjectStatus, ParentReference, PolicyAncestorStatus, PolicyStatus, StatusBody,
};
use crate::translate::conditions as c;
use crate::translate::service_policy::ancestors::PolicyKind;

/// PolicyStatus `ancestors`: "A maximum of 16 ancestors will be represented in this list."
const MAX_ANCESTORS: usize = 16;

/// PolicyConditionReason for a policy another one takes precedence over on the same target.
pub const REASON_CONFLICTED: &str = "Conflicted";

/// The status of every policy in use at a Gateway or with a target that does not attach.
pub fn policy_statuses<P: RoutePolicy>(
    kind: PolicyKind,
    resolved: &Resolved<P>,
    controller_name: &Arc<str>,
) -> Vec<ObjectStatus> {
    resolved
        .policies
        .values()
        .filter_map(|policy| {
            let mut ancestors: Vec<PolicyAncestorStatus> = Vec::new();
            let empty = Default::default();
            let used = resolved.used.get(policy.key()).unwrap_or(&empty);
            for ((gateway, section), targets) in used {
                let ancestor: Ancestor = (gateway.clone(), section.clone());
                ancestors.push(PolicyAncestorStatus {
                    ancestor_ref: parent_ref("Gateway", &ancestor.0, ancestor.1.clone()),
                    controller_name: controller_name.clone(),
                    conditions: vec![accepted(kind, resolved, policy, targets)],
                });
            }
            for problem in policy.targets().iter().filter_map(|t| t.as_ref().err()) {
                ancestors.push(PolicyAncestorStatus {
                    ancestor_ref: parent_ref(
                        &problem.kind,
                        &problem.object,
                        problem.section_name.clone(),
                    ),
                    controller_name: controller_name.clone(),
                    conditions: vec![c::not_ok(
                        c::ACCEPTED,
                        &problem.problem,
                        policy.generation(),
                    )],
                });
            }
            if ancestors.is_empty() {
                return None;
            }
            ancestors.truncate(MAX_ANCESTORS);
            Some(ObjectStatus {
                api_version: kind.api_version.into(),
                kind: kind.kind.into(),
                namespace: policy.key().namespace.clone(),
                name: policy.key().name.clone(),
                status: StatusBody::Policy(PolicyStatus { ancestors }),
            })
        })
        .collect()
}

fn parent_ref(
    kind: &str,
    key: &crate::store::ObjectKey,
    section_name: Option<String>,
) -> ParentReference {
    ParentReference {
        group: Some(gantry_crds::GATEWAY_GROUP.to_owned()),
        kind: Some(kind.to_owned()),
        namespace: Some(key.namespace.clone()),
        name: key.name.clone(),
        section_name,
        port: None,
    }
}

/// `Accepted` at one Gateway: `Conflicted` when another policy of the kind takes precedence
/// on a target in use there (naming it), else `Invalid` when the policy's values cannot be
/// used, else `Accepted`.
fn accepted<P: RoutePolicy>(
    kind: PolicyKind,
    resolved: &Resolved<P>,
    policy: &P,
    targets: &std::collections::BTreeSet<super::Target>,
) -> Condition {
    let generation = policy.generation();
    let lost: Vec<String> = targets
        .iter()
        .filter_map(|t| {
            let winner = resolved.winner(t)?;
            (winner != policy.key()).then(|| {
                format!(
                    "{} {winner} also targets {} and takes precedence (the older policy wins, then the first by namespace/name); this policy is not applied there",
                    kind.kind,
                    t.describe()
                )
            })
        })
        .collect();
    if !lost.is_empty() {
        return c::not_ok(
            c::ACCEPTED,
            &c::Problem::new(REASON_CONFLICTED, lost.join("; ")),
            generation,
        );
    }
    match policy.invalid() {
        Some(problem) => c::not_ok(c::ACCEPTED, problem, generation),
        None => c::ok(
            c::ACCEPTED,
            c::REASON_ACCEPTED,
            "Policy is accepted",
            generation,
        ),
    }
}
