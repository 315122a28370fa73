//! What every policy attached to Services shares: BackendTLSPolicy, XBackendTrafficPolicy and
//! BackendConfigPolicy are GEP-713 Direct policies whose `targetRefs` name Services of their
//! own namespace (optionally one port, by `sectionName`).
//!
//! - [`target`]: a reference resolved against the store, or why it does not attach.
//! - [`Resolved`]: every policy of a kind and, for each target, the one that takes precedence
//!   (the oldest, then the first by `namespace/name`), and the policy governing a Service port
//!   (the one naming the port before the one naming the whole Service).
//! - [`ancestors`]: the Gateways each policy is relevant to (those whose routes use a targeted
//!   Service), its `ancestors[]` status, and the `TargetNotFound` and `Conflicted` conditions.

pub mod ancestors;
pub mod target;

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

pub use self::ancestors::Ancestors;
pub use self::target::{Target, TargetProblem};
use crate::store::{ObjectKey, Store};

/// PolicyConditionReason for a policy another one takes precedence over.
pub const REASON_CONFLICTED: &str = "Conflicted";

/// A policy after validation, as far as attachment goes.
pub trait ServicePolicy {
    fn key(&self) -> &ObjectKey;
    /// `metadata.creationTimestamp`.
    fn created(&self) -> Option<&Time>;
    /// Targets by `targetRefs` index.
    fn targets(&self) -> &[Result<Target, TargetProblem>];
}

/// Every policy of a kind, and the one that takes precedence for each target.
#[derive(Debug)]
pub struct Resolved<P> {
    policies: BTreeMap<ObjectKey, P>,
    winners: BTreeMap<Target, ObjectKey>,
}

impl<P> Default for Resolved<P> {
    fn default() -> Self {
        Self {
            policies: BTreeMap::new(),
            winners: BTreeMap::new(),
        }
    }
}

impl<P: ServicePolicy> Resolved<P> {
    /// Settles precedence between `policies` for each target.
    pub fn new(policies: BTreeMap<ObjectKey, P>) -> Self {
        let winners = precedence(&policies);
        Self { policies, winners }
    }

    /// Every policy, by key.
    pub fn policies(&self) -> &BTreeMap<ObjectKey, P> {
        &self.policies
    }

    /// The policy that takes precedence for each target, by key.
    pub fn winners(&self) -> &BTreeMap<Target, ObjectKey> {
        &self.winners
    }

    /// Whether there is no policy at all.
    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }

    /// The policy that takes precedence for exactly `target`.
    pub fn for_target(&self, target: &Target) -> Option<&P> {
        self.winners
            .get(target)
            .and_then(|key| self.policies.get(key))
    }

    /// The policy governing a Service port: the one naming the port (`sectionName`) takes
    /// precedence over one for the whole Service. It may be one whose values cannot be used.
    pub fn governing(&self, store: &Store, service: &ObjectKey, port: u16) -> Option<&P> {
        let specific = target::port_name(store, service, port).and_then(|name| {
            self.for_target(&Target {
                service: service.clone(),
                port_name: Some(name),
            })
        });
        specific.or_else(|| {
            self.for_target(&Target {
                service: service.clone(),
                port_name: None,
            })
        })
    }
}

/// The policy that takes precedence for each target. BackendTLSPolicy `targetRefs`: "When
/// more than one BackendTLSPolicy selects the same target and sectionName, implementations
/// MUST determine precedence using the following criteria, continuing on ties: The older
/// policy by creation timestamp takes precedence. ... The policy appearing first in
/// alphabetical order by {namespace}/{name}." (GEP-713's rule for conflicting Direct
/// policies.) A policy without a creation timestamp counts as newer than any with one.
fn precedence<P: ServicePolicy>(policies: &BTreeMap<ObjectKey, P>) -> BTreeMap<Target, ObjectKey> {
    let mut winners: BTreeMap<Target, &P> = BTreeMap::new();
    for policy in policies.values() {
        for target in policy.targets().iter().flatten() {
            let better = winners
                .get(target)
                .is_none_or(|current| precedes(policy, *current));
            if better {
                winners.insert(target.clone(), policy);
            }
        }
    }
    winners
        .into_iter()
        .map(|(target, policy)| (target, policy.key().clone()))
        .collect()
}

/// Whether `a` takes precedence over `b`: older first (no timestamp is newest), then by
/// `namespace/name`.
pub fn precedes<P: ServicePolicy>(a: &P, b: &P) -> bool {
    rank(a.created(), a.key()) < rank(b.created(), b.key())
}

/// The order of precedence between policies: by creation time (none last), then by key.
pub fn rank<'a>(
    created: Option<&Time>,
    key: &'a ObjectKey,
) -> (bool, Option<k8s_openapi::jiff::Timestamp>, &'a ObjectKey) {
    (created.is_none(), created.map(|t| t.0), key)
}
