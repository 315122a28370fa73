//! What every Gantry policy attached to Gateways and routes shares (GEP-713 Direct policies):
//! SecurityPolicy and RateLimitPolicy. Their `targetRefs` (LocalPolicyTargetReferenceWithSectionName, in the
//! policy's namespace) name a Gateway, one Gateway listener (`sectionName`), an HTTPRoute or
//! GRPCRoute, or one rule of a route (`sectionName` = the rule's `name`).
//!
//! - [`target`]: a reference resolved against the store, or why it does not attach
//!   (`TargetNotFound`).
//! - [`Resolved`]: every policy of a kind and, per target, the one that takes precedence: the
//!   oldest `creationTimestamp`, then the first by `namespace/name` (GEP-713's rule for
//!   conflicting Direct policies; the others are `Conflicted`).
//! - [`Resolved::attach`]: walks the assembled IR once and hands every route entry the policy
//!   that governs it: the most specific attachment wins, rule > route > listener > Gateway, and
//!   applies whole (fields never merge, as in Envoy Gateway's SecurityPolicy). The data plane
//!   never resolves attachment per request.
//! - [`ancestors`]: the `ancestors[]` status (one entry per Gateway, with `sectionName` when
//!   the policy targets a listener) with `Accepted`, `TargetNotFound`, `Conflicted`, `Invalid`.
//!
//! SecurityPolicy and RateLimitPolicy use it the same way: validate each object into a
//! [`Validated`] (its targets from [`target::resolve_all`], the problem that makes it `Invalid`,
//! and the IR for the entries), build `Resolved::new(policies)`, call `attach` after
//! `into_ports` with a closure setting the entry's field for that kind, and add
//! `ancestors::policy_statuses(...)` to the statuses.

pub mod ancestors;
pub mod target;

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

pub use self::target::{Target, TargetProblem};
use crate::ir::{PortIr, RouteEntryIr};
use crate::store::ObjectKey;
use crate::translate::conditions::Problem;
use crate::translate::service_policy::rank;

/// A policy after validation, as far as attachment goes.
pub trait RoutePolicy {
    fn key(&self) -> &ObjectKey;
    /// `metadata.creationTimestamp`.
    fn created(&self) -> Option<&Time>;
    /// `metadata.generation`.
    fn generation(&self) -> i64;
    /// Targets by `targetRefs` index.
    fn targets(&self) -> &[Result<Target, Box<TargetProblem>>];
    /// Why the policy's own values cannot be used (`Invalid`), if they cannot.
    fn invalid(&self) -> Option<&Problem>;
}

/// A policy of a kind after validation: what attachment needs, and the IR it gives the entries
/// it governs (shared by all of them).
#[derive(Debug)]
pub struct Validated<I> {
    pub key: ObjectKey,
    pub created: Option<Time>,
    pub generation: i64,
    pub targets: Vec<Result<Target, Box<TargetProblem>>>,
    pub invalid: Option<Problem>,
    pub ir: std::sync::Arc<I>,
}

impl<I> RoutePolicy for Validated<I> {
    fn key(&self) -> &ObjectKey {
        &self.key
    }
    fn created(&self) -> Option<&Time> {
        self.created.as_ref()
    }
    fn generation(&self) -> i64 {
        self.generation
    }
    fn targets(&self) -> &[Result<Target, Box<TargetProblem>>] {
        &self.targets
    }
    fn invalid(&self) -> Option<&Problem> {
        self.invalid.as_ref()
    }
}

/// Where a policy was found relevant: a Gateway, and the listener when the policy targets one.
pub type Ancestor = (ObjectKey, Option<String>);

/// Every policy of a kind, and for each target the policies naming it, in precedence order.
#[derive(Debug)]
pub struct Resolved<P> {
    policies: BTreeMap<ObjectKey, P>,
    by_target: BTreeMap<Target, Vec<ObjectKey>>,
    /// Filled by [`Resolved::attach`]: per policy, the ancestors where one of its targets is
    /// in use, each with the targets in use there.
    used: BTreeMap<ObjectKey, BTreeMap<Ancestor, BTreeSet<Target>>>,
}

impl<P> Default for Resolved<P> {
    fn default() -> Self {
        Self {
            policies: BTreeMap::new(),
            by_target: BTreeMap::new(),
            used: BTreeMap::new(),
        }
    }
}

impl<P: RoutePolicy> Resolved<P> {
    /// Settles precedence between `policies` for each target: GEP-713, "If two Policies of the
    /// same type target the same object, the one with the oldest creationTimestamp wins; on a
    /// tie, the one appearing first in alphabetical order by {namespace}/{name}".
    pub fn new(policies: BTreeMap<ObjectKey, P>) -> Self {
        let mut by_target: BTreeMap<Target, Vec<ObjectKey>> = BTreeMap::new();
        for policy in policies.values() {
            for target in policy.targets().iter().flatten() {
                let keys = by_target.entry(target.clone()).or_default();
                if !keys.contains(policy.key()) {
                    keys.push(policy.key().clone());
                }
            }
        }
        for keys in by_target.values_mut() {
            keys.sort_by(|a, b| {
                let (pa, pb) = (&policies[a], &policies[b]);
                rank(pa.created(), pa.key()).cmp(&rank(pb.created(), pb.key()))
            });
        }
        Self {
            policies,
            by_target,
            used: BTreeMap::new(),
        }
    }

    /// The policy that takes precedence for exactly `target`.
    pub fn winner(&self, target: &Target) -> Option<&ObjectKey> {
        self.by_target.get(target).and_then(|keys| keys.first())
    }

    /// Hands every HTTP route entry of `ports` the policy governing it (`set` is not called
    /// for an entry no policy governs), and notes where each policy is in use for its status.
    /// Precedence between attachments: the most specific wins, a rule (`sectionName` of a
    /// route) over its route, a route over the listener, a listener over its Gateway; the
    /// winner applies whole.
    pub fn attach(&mut self, ports: &mut [PortIr], mut set: impl FnMut(&mut RouteEntryIr, &P)) {
        if self.policies.is_empty() {
            return;
        }
        for port in ports.iter_mut() {
            for listener in &mut port.listeners {
                let gateway = listener.gateway.clone();
                // A ListenerSet's listener is not one of the Gateway's `spec.listeners`: only a
                // Gateway-wide policy reaches it.
                let own_listener = listener
                    .listener_set
                    .is_none()
                    .then(|| Target::Listener(gateway.clone(), listener.name.clone()));
                for vhost in &mut listener.virtual_hosts {
                    for entry in &mut vhost.routes {
                        let Some(kind) = route_kind(&entry.route.kind) else {
                            continue;
                        };
                        let route = ObjectKey::new(
                            entry.route.namespace.as_str(),
                            entry.route.name.as_str(),
                        );
                        let mut candidates = Vec::with_capacity(4);
                        if let Some(rule) = &entry.rule.name {
                            candidates.push(Target::Rule(kind, route.clone(), rule.clone()));
                        }
                        candidates.push(Target::Route(kind, route));
                        candidates.extend(own_listener.clone());
                        candidates.push(Target::Gateway(gateway.clone()));
                        let mut governing = None;
                        for target in candidates {
                            let Some(keys) = self.by_target.get(&target) else {
                                continue;
                            };
                            let section = match &target {
                                Target::Listener(_, l) => Some(l.clone()),
                                _ => None,
                            };
                            for key in keys {
                                self.used
                                    .entry(key.clone())
                                    .or_default()
                                    .entry((gateway.clone(), section.clone()))
                                    .or_default()
                                    .insert(target.clone());
                            }
                            if governing.is_none() {
                                governing = keys.first().cloned();
                            }
                        }
                        if let Some(policy) = governing.and_then(|k| self.policies.get(&k)) {
                            set(entry, policy);
                        }
                    }
                }
            }
        }
    }
}

/// The route kinds policies attach to.
fn route_kind(kind: &str) -> Option<&'static str> {
    match kind {
        "HTTPRoute" => Some("HTTPRoute"),
        "GRPCRoute" => Some("GRPCRoute"),
        _ => None,
    }
}
