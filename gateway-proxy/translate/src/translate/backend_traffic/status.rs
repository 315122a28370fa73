//! XBackendTrafficPolicy status: one `ancestors[]` entry per Gateway the policy is relevant
//! to, with `Accepted` (PolicyConditionReason: `Accepted`, `TargetNotFound`, `Conflicted`,
//! `Invalid`), written the way BackendTLSPolicy's are.

use std::collections::{BTreeMap, BTreeSet};

use super::resolve::{REASON_CONFLICTED, ResolvedPolicies, TrafficPolicy};
use crate::status::{
    Condition, ObjectStatus, ParentReference, PolicyAncestorStatus, PolicyStatus, StatusBody,
};
use crate::store::ObjectKey;
use crate::translate::conditions::{self as c, Problem};

pub const KIND: &str = "XBackendTrafficPolicy";
/// The experimental group's version the policy is served at.
pub const API_VERSION: &str = "gateway.networking.x-k8s.io/v1alpha1";

/// PolicyStatus `ancestors`: "A maximum of 16 ancestors will be represented in this list."
const MAX_ANCESTORS: usize = 16;

/// The policy's status for the Gateways it is relevant to, each with the Services used there
/// that the policy targets.
pub fn policy_status(
    policy: &TrafficPolicy,
    gateways: &BTreeMap<ObjectKey, BTreeSet<ObjectKey>>,
    resolved: &ResolvedPolicies,
    controller_name: &str,
) -> ObjectStatus {
    let ancestors = gateways
        .iter()
        .take(MAX_ANCESTORS)
        .map(|(gateway, services)| PolicyAncestorStatus {
            ancestor_ref: ParentReference {
                group: Some(gantry_crds::GATEWAY_GROUP.to_owned()),
                kind: Some("Gateway".to_owned()),
                namespace: Some(gateway.namespace.clone()),
                name: gateway.name.clone(),
                section_name: None,
                port: None,
            },
            controller_name: controller_name.to_owned(),
            conditions: vec![accepted(policy, services, resolved)],
        })
        .collect();
    ObjectStatus {
        api_version: API_VERSION.to_owned(),
        kind: KIND.to_owned(),
        namespace: policy.key.namespace.clone(),
        name: policy.key.name.clone(),
        status: StatusBody::Policy(PolicyStatus { ancestors }),
    }
}

/// `Accepted` for one ancestor, from the targets naming `services`: a target that does not
/// exist first, then a Service another policy takes, then the policy's own values.
fn accepted(
    policy: &TrafficPolicy,
    services: &BTreeSet<ObjectKey>,
    resolved: &ResolvedPolicies,
) -> Condition {
    let generation = policy.generation;
    let mut not_found = Vec::new();
    let mut lost = Vec::new();
    for target in &policy.targets {
        match target {
            Ok(service) if services.contains(service) => match resolved.winner(service) {
                Some(winner) if winner != &policy.key => lost.push((service, winner)),
                _ => {}
            },
            Err(p) if p.service.as_ref().is_some_and(|s| services.contains(s)) => {
                not_found.push(&p.problem);
            }
            _ => {}
        }
    }
    if let Some(first) = not_found.first() {
        let message = not_found
            .iter()
            .map(|p| p.message.as_str())
            .collect::<Vec<_>>()
            .join("; ");
        return c::not_ok(
            c::ACCEPTED,
            &Problem::new(first.reason, message),
            generation,
        );
    }
    if !lost.is_empty() {
        let message = lost
            .iter()
            .map(|(service, winner)| {
                format!(
                    "XBackendTrafficPolicy {winner} also targets Service {service} and takes precedence (the older policy wins, then the first by name); this policy is not applied there"
                )
            })
            .collect::<Vec<_>>()
            .join("; ");
        return c::not_ok(
            c::ACCEPTED,
            &Problem::new(REASON_CONFLICTED, message),
            generation,
        );
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
