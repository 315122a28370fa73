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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::load::load_store;
    use crate::translate::{TranslateOptions, translate};

    const OBJECTS: &str = r"
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: gantry}
spec: {controllerName: gantry.dev/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: default}
spec:
  gatewayClassName: gantry
  listeners: [{name: http, port: 80, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: a, namespace: default}
spec:
  parentRefs: [{name: gw}]
  rules: [{matches: [{path: {type: PathPrefix, value: /a}}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: b, namespace: default}
spec:
  parentRefs: [{name: gw}]
  rules: [{matches: [{path: {type: PathPrefix, value: /b}}]}]
---
apiVersion: gantry.dev/v1alpha1
kind: RateLimitPolicy
metadata: {name: global, namespace: default}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: HTTPRoute, name: a}]
  global:
    failClosed: true
    rules: [{name: all, limit: {requests: 10, unit: Minute}}]
---
apiVersion: gantry.dev/v1alpha1
kind: RateLimitPolicy
metadata: {name: local, namespace: default}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: HTTPRoute, name: b}]
  local:
    rules: [{name: all, limit: {requests: 10, unit: Minute}}]
";

    fn degraded<'a>(statuses: &'a [ObjectStatus], name: &str) -> Option<&'a Condition> {
        let object = statuses
            .iter()
            .find(|o| o.kind == KIND && o.name == name)
            .expect("the policy's status");
        let StatusBody::Policy(policy) = &object.status else {
            panic!("a policy status")
        };
        policy.ancestors[0]
            .conditions
            .iter()
            .find(|c| c.type_ == DEGRADED)
    }

    #[test]
    fn only_policies_with_global_rules_are_marked_with_their_fail_mode() {
        let store = load_store([("t.yaml", OBJECTS)]).expect("loads").0;
        let translation = translate(&store, &TranslateOptions::default());
        let mut statuses = translation.statuses.clone();
        mark_store_unavailable(&mut statuses, &translation.ir, None);
        assert_eq!(
            statuses, translation.statuses,
            "nothing while Redis answers"
        );

        let down = StoreUnavailable {
            address: "redis.internal:6379",
            error: "connection refused",
        };
        mark_store_unavailable(&mut statuses, &translation.ir, Some(&down));
        let condition = degraded(&statuses, "global").expect("marked");
        assert_eq!(condition.status, "True");
        assert_eq!(condition.reason, REASON_BACKEND_UNAVAILABLE);
        assert!(
            condition
                .message
                .contains("Redis at redis.internal:6379 cannot be reached")
                && condition.message.contains("fail closed"),
            "{}",
            condition.message
        );
        assert!(degraded(&statuses, "local").is_none(), "no global rule");
        // Marking again keeps one condition.
        mark_store_unavailable(&mut statuses, &translation.ir, Some(&down));
        let object = statuses
            .iter()
            .find(|o| o.kind == KIND && o.name == "global")
            .expect("status");
        let StatusBody::Policy(policy) = &object.status else {
            panic!("a policy status")
        };
        assert_eq!(
            policy.ancestors[0]
                .conditions
                .iter()
                .filter(|c| c.type_ == DEGRADED)
                .count(),
            1
        );
    }
}
