//! RateLimitPolicy status while the global store (Redis) cannot be reached.
//!
//! The translator does no IO, so it cannot know that Redis is away; the control loop overlays
//! this condition on the translated statuses while the data plane reports it, and removes it
//! once Redis answers again. Every policy that governs a route entry with a `global` rule gets,
//! on each of its ancestors, `gantry.dev/Degraded` `True` with reason `BackendUnavailable`,
//! naming the Redis address (never the URL, which may hold a password) and what its global
//! rules do meanwhile: fail open (requests pass uncounted) or closed (503).

use std::collections::BTreeMap;

use super::types::{Condition, ObjectStatus, StatusBody};
use crate::ir::Ir;
use crate::store::ObjectKey;

/// The condition's type: Gantry's own, so domain-prefixed (as `gantry.dev/ProxyVersions`).
pub const DEGRADED: &str = "gantry.dev/Degraded";
/// The condition's reason.
pub const REASON_BACKEND_UNAVAILABLE: &str = "BackendUnavailable";

const KIND: &str = "RateLimitPolicy";

/// The global store cannot be reached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreUnavailable<'a> {
    /// `host:port`.
    pub address: &'a str,
    /// The first failure's message.
    pub error: &'a str,
}

/// Adds the condition to the ancestors of every policy with global rules in use in `ir`.
pub fn mark_store_unavailable(
    statuses: &mut [ObjectStatus],
    ir: &Ir,
    store: Option<&StoreUnavailable<'_>>,
) {
    let Some(store) = store else {
        return;
    };
    // Policy → whether it fails closed.
    let mut policies: BTreeMap<&ObjectKey, bool> = BTreeMap::new();
    let entries = ir
        .ports
        .iter()
        .flat_map(|p| &p.listeners)
        .flat_map(|l| &l.virtual_hosts)
        .flat_map(|v| &v.routes);
    for entry in entries {
        if let Some(limit) = &entry.rate_limit
            && limit.rules.iter().any(|r| r.global)
        {
            policies.insert(&limit.policy, limit.fail_closed);
        }
    }
    if policies.is_empty() {
        return;
    }
    for object in statuses.iter_mut().filter(|o| o.kind == KIND) {
        let key = ObjectKey::new(object.namespace.as_str(), object.name.as_str());
        let Some(&fail_closed) = policies.get(&key) else {
            continue;
        };
        let StatusBody::Policy(policy) = &mut object.status else {
            continue;
        };
        let mode = if fail_closed {
            "its global rules fail closed: the requests they count are refused with 503"
        } else {
            "its global rules fail open: the requests they count pass uncounted"
        };
        let message = format!(
            "Redis at {} cannot be reached ({}); {mode} (gantry_rate_limit_uncounted_total) until it answers again",
            store.address, store.error
        );
        for ancestor in &mut policy.ancestors {
            let generation = ancestor
                .conditions
                .first()
                .map_or(0, |c| c.observed_generation);
            ancestor.conditions.retain(|c| c.type_ != DEGRADED);
            ancestor.conditions.push(Condition::new(
                DEGRADED,
                true,
                REASON_BACKEND_UNAVAILABLE,
                message.clone(),
                generation,
            ));
        }
    }
}
