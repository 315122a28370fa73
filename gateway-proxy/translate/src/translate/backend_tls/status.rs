//! BackendTLSPolicy status: one `ancestors[]` entry per Gateway the policy is relevant to,
//! with `Accepted` and `ResolvedRefs`.

use std::collections::{BTreeMap, BTreeSet};

use super::policy::{PolicyState, REASON_CONFLICTED, Target};
use crate::status::{
    Condition, ObjectStatus, ParentReference, PolicyAncestorStatus, PolicyStatus, StatusBody,
};
use crate::store::ObjectKey;
use crate::translate::API_VERSION;
use crate::translate::conditions::{self as c, Problem};

pub const KIND: &str = "BackendTLSPolicy";

/// PolicyStatus `ancestors`: "A maximum of 16 ancestors will be represented in this list."
const MAX_ANCESTORS: usize = 16;

/// How one Gateway uses the Services a policy targets.
#[derive(Debug, Default)]
pub struct Uses {
    /// Every targeted Service the Gateway's routes use.
    services: BTreeSet<ObjectKey>,
    /// Whether one of them is used through a listener that originates TLS to it (anything but
    /// a TLS `Passthrough` listener).
    originating: bool,
}

impl Uses {
    pub fn add(&mut self, service: &ObjectKey, through_passthrough: bool) {
        if !self.services.contains(service) {
            self.services.insert(service.clone());
        }
        self.originating |= !through_passthrough;
    }
}

/// The policy's status for the Gateways it is relevant to, each with the Services used
/// there that the policy targets.
pub fn policy_status(
    policy: &PolicyState,
    gateways: &BTreeMap<ObjectKey, Uses>,
    winners: &BTreeMap<Target, ObjectKey>,
    controller_name: &str,
) -> ObjectStatus {
    let ancestors = gateways
        .iter()
        .take(MAX_ANCESTORS)
        .map(|(gateway, uses)| PolicyAncestorStatus {
            ancestor_ref: ParentReference {
                group: Some(gantry_crds::GATEWAY_GROUP.to_owned()),
                kind: Some("Gateway".to_owned()),
                namespace: Some(gateway.namespace.clone()),
                name: gateway.name.clone(),
                section_name: None,
                port: None,
            },
            controller_name: controller_name.to_owned(),
            conditions: conditions(policy, uses, winners),
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

/// `Accepted` and `ResolvedRefs` for one ancestor, from the targets naming `services`.
fn conditions(
    policy: &PolicyState,
    uses: &Uses,
    winners: &BTreeMap<Target, ObjectKey>,
) -> Vec<Condition> {
    let services = &uses.services;
    let generation = policy.generation;
    let mut not_found = Vec::new();
    let mut lost = Vec::new();
    for target in &policy.targets {
        match target {
            Ok(t) if services.contains(&t.service) => match winners.get(t) {
                Some(winner) if winner != &policy.key => lost.push((t, winner)),
                _ => {}
            },
            Err(p) if p.service.as_ref().is_some_and(|s| services.contains(s)) => {
                not_found.push(&p.problem);
            }
            _ => {}
        }
    }
    let accepted = if let Some(first) = not_found.first() {
        let message = not_found
            .iter()
            .map(|p| p.message.as_str())
            .collect::<Vec<_>>()
            .join("; ");
        c::not_ok(
            c::ACCEPTED,
            &Problem::new(first.reason, message),
            generation,
        )
    } else if !lost.is_empty() {
        let message = lost
            .iter()
            .map(|(t, winner)| {
                format!(
                    "BackendTLSPolicy {winner} also targets {} and takes precedence (the older policy wins, then the first by name); this policy is not applied there",
                    describe(t)
                )
            })
            .collect::<Vec<_>>()
            .join("; ");
        c::not_ok(
            c::ACCEPTED,
            &Problem::new(REASON_CONFLICTED, message),
            generation,
        )
    } else {
        match &policy.config {
            Ok(_) if uses.originating => c::ok(
                c::ACCEPTED,
                c::REASON_ACCEPTED,
                "Policy is accepted; connections to its targets use TLS",
                generation,
            ),
            // The policy is valid and attached, so it is accepted; but this Gateway reaches its
            // targets only through TLS Passthrough listeners, which never originate TLS
            // (GEP-1897, "How a client behaves": TLSRoute, "Listener Mode: Passthrough", "Connect
            // to backend with TLS? No"). The message says so rather than promise TLS.
            Ok(_) => c::ok(
                c::ACCEPTED,
                c::REASON_ACCEPTED,
                "Policy is accepted; this Gateway uses its targets only through TLS Passthrough listeners, where the client's own TLS reaches the backend and the Gateway originates none",
                generation,
            ),
            Err(problem) => c::not_ok(c::ACCEPTED, problem, generation),
        }
    };
    let resolved = match &policy.unresolved {
        None => c::ok(
            c::RESOLVED_REFS,
            c::REASON_RESOLVED_REFS,
            "All references are resolved",
            generation,
        ),
        Some(problem) => c::not_ok(c::RESOLVED_REFS, problem, generation),
    };
    vec![accepted, resolved]
}

fn describe(t: &Target) -> String {
    match &t.port_name {
        Some(port) => format!("Service {} port {port}", t.service),
        None => format!("Service {}", t.service),
    }
}
