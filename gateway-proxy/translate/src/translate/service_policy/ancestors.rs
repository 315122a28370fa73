//! The status of a policy that targets Services: its ancestors are the Gateways whose routes
//! use a targeted Service (GEP-713: "the relevant object for status is the Gateway"), each with
//! the policy's conditions there.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::{REASON_CONFLICTED, ServicePolicy, Target};
use crate::status::{
    Condition, ObjectStatus, ParentReference, PolicyAncestorStatus, PolicyStatus, StatusBody,
};
use crate::store::ObjectKey;
use crate::translate::conditions::Problem;

/// PolicyStatus `ancestors`: "A maximum of 16 ancestors will be represented in this list."
const MAX_ANCESTORS: usize = 16;

/// Which Gateways each policy of a kind is relevant to, and through which Services.
#[derive(Debug, Default)]
pub struct Ancestors {
    /// Policies naming each Service in a target, attached or not (a Service that does not
    /// exist included, so that its `TargetNotFound` can be shown).
    by_service: BTreeMap<ObjectKey, BTreeSet<ObjectKey>>,
    /// Per policy, the Gateways it is relevant to and the targeted Services used there.
    of_policy: BTreeMap<ObjectKey, BTreeMap<ObjectKey, BTreeSet<ObjectKey>>>,
}

impl Ancestors {
    /// Notes the Services each of `policies` names.
    pub fn new<'p, P: ServicePolicy + 'p>(policies: impl IntoIterator<Item = &'p P>) -> Self {
        let mut by_service: BTreeMap<ObjectKey, BTreeSet<ObjectKey>> = BTreeMap::new();
        for policy in policies {
            for target in policy.targets() {
                let service = match target {
                    Ok(t) => Some(&t.service),
                    Err(problem) => problem.service.as_ref(),
                };
                if let Some(service) = service {
                    by_service
                        .entry(service.clone())
                        .or_default()
                        .insert(policy.key().clone());
                }
            }
        }
        Self {
            by_service,
            of_policy: BTreeMap::new(),
        }
    }

    /// Records the Gateways serving routes that use each Service (see
    /// `routes::Attacher::services`): they are the ancestors of the policies targeting it.
    pub fn record_use(&mut self, services: &BTreeMap<ObjectKey, BTreeSet<ObjectKey>>) {
        for (service, gateways) in services {
            for policy in self.by_service.get(service).into_iter().flatten() {
                let entry = self.of_policy.entry(policy.clone()).or_default();
                for gateway in gateways {
                    entry
                        .entry(gateway.clone())
                        .or_default()
                        .insert(service.clone());
                }
            }
        }
    }

    /// Every policy relevant to at least one Gateway, with those Gateways and the targeted
    /// Services used there.
    pub fn iter(
        &self,
    ) -> impl Iterator<Item = (&ObjectKey, &BTreeMap<ObjectKey, BTreeSet<ObjectKey>>)> {
        self.of_policy.iter()
    }
}

/// What a policy is called in the messages and status of its kind.
#[derive(Clone, Copy, Debug)]
pub struct PolicyKind {
    pub kind: &'static str,
    pub api_version: &'static str,
}

/// The policy's status: one `ancestors[]` entry per Gateway (at most 16), each with the
/// conditions `conditions` gives for that Gateway and the targeted Services used through it.
pub fn policy_status(
    kind: PolicyKind,
    key: &ObjectKey,
    gateways: &BTreeMap<ObjectKey, BTreeSet<ObjectKey>>,
    controller_name: &Arc<str>,
    conditions: impl Fn(&ObjectKey, &BTreeSet<ObjectKey>) -> Vec<Condition>,
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
            controller_name: controller_name.clone(),
            conditions: conditions(gateway, services),
        })
        .collect();
    ObjectStatus {
        api_version: kind.api_version.into(),
        kind: kind.kind.into(),
        namespace: key.namespace.clone(),
        name: key.name.clone(),
        status: StatusBody::Policy(PolicyStatus { ancestors }),
    }
}

/// Why the policy does not attach where `services` are used, if it does not: a target that
/// does not attach (its problem, every such target's message joined), else a target another
/// policy takes precedence for (`Conflicted`, naming the winner). `None` when every target
/// naming `services` attaches.
pub fn attachment_problem<P: ServicePolicy>(
    kind: PolicyKind,
    policy: &P,
    services: &BTreeSet<ObjectKey>,
    winners: &BTreeMap<Target, ObjectKey>,
) -> Option<Problem> {
    let mut not_attached = Vec::new();
    let mut lost = Vec::new();
    for target in policy.targets() {
        match target {
            Ok(t) if services.contains(&t.service) => match winners.get(t) {
                Some(winner) if winner != policy.key() => lost.push((t, winner)),
                _ => {}
            },
            Err(p) if p.service.as_ref().is_some_and(|s| services.contains(s)) => {
                not_attached.push(&p.problem);
            }
            _ => {}
        }
    }
    if let Some(first) = not_attached.first() {
        let message = not_attached
            .iter()
            .map(|p| &*p.message)
            .collect::<Vec<_>>()
            .join("; ");
        return Some(Problem::new(first.reason, message));
    }
    if lost.is_empty() {
        return None;
    }
    let message = lost
        .iter()
        .map(|(t, winner)| {
            format!(
                "{} {winner} also targets {} and takes precedence (the older policy wins, then the first by name); this policy is not applied there",
                kind.kind,
                t.describe()
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    Some(Problem::new(REASON_CONFLICTED, message))
}
