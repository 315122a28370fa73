//! `XBackendTrafficPolicy.spec.sessionPersistence`: the policy that governs a Service's
//! session persistence.
//!
//! A policy applies to the Services its `targetRefs` name (core group, kind `Service`, in the
//! policy's namespace; a target carries no port). When several policies target one Service
//! the oldest wins, then the first by `namespace/name` (GEP-713's conflict rule, as for
//! BackendTLSPolicy, `service_policy::rank`); the others do not apply to it, whichever fields
//! they set.

use std::sync::Arc;

use gantry_crds::gateway::experimental::xbackendtrafficpolicies::XBackendTrafficPolicy;
use gantry_crds::gateway::httproutes::HttpRouteRulesSessionPersistence;

use crate::store::{ObjectKey, Store};
use crate::translate::service_policy::rank;

/// The policy that governs `service`, if any targets it.
pub fn governing_policy<'a>(
    store: &'a Store,
    service: &ObjectKey,
) -> Option<(&'a ObjectKey, &'a Arc<XBackendTrafficPolicy>)> {
    store
        .backend_traffic_policies
        .iter()
        .filter(|(key, policy)| {
            key.namespace == service.namespace
                && policy
                    .spec
                    .target_refs
                    .iter()
                    .any(|t| t.group.is_empty() && t.kind == "Service" && t.name == service.name)
        })
        .min_by_key(|(key, policy)| rank(policy.metadata.creation_timestamp.as_ref(), key))
}

/// The `sessionPersistence` of the policy that governs `service`, in the shape of a route
/// rule's (the two types are field-for-field the same), with the policy's key.
pub fn policy_session(
    store: &Store,
    service: &ObjectKey,
) -> Option<(ObjectKey, HttpRouteRulesSessionPersistence)> {
    let (key, policy) = governing_policy(store, service)?;
    let session = policy.spec.session_persistence.as_ref()?;
    let as_rule = serde_json::to_value(session)
        .and_then(serde_json::from_value)
        .ok()?;
    Some((key.clone(), as_rule))
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_crds::gateway::experimental::xbackendtrafficpolicies::{
        XBackendTrafficPolicySessionPersistence, XBackendTrafficPolicySpec,
        XBackendTrafficPolicyTargetRefs,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    fn policy(
        name: &str,
        created: Option<i64>,
        target: &str,
        session: &str,
    ) -> XBackendTrafficPolicy {
        XBackendTrafficPolicy {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                creation_timestamp: created
                    .map(|s| Time(k8s_openapi::jiff::Timestamp::from_second(s).expect("time"))),
                ..Default::default()
            },
            spec: XBackendTrafficPolicySpec {
                target_refs: vec![XBackendTrafficPolicyTargetRefs {
                    group: String::new(),
                    kind: "Service".into(),
                    name: target.into(),
                }],
                session_persistence: Some(XBackendTrafficPolicySessionPersistence {
                    session_name: Some(session.into()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            status: None,
        }
    }

    fn store(policies: Vec<XBackendTrafficPolicy>) -> Store {
        let mut store = Store::default();
        for p in policies {
            let key = ObjectKey::new("ns", p.metadata.name.as_deref().unwrap_or_default());
            store.backend_traffic_policies.insert(key, Arc::new(p));
        }
        store
    }

    #[test]
    fn the_oldest_policy_wins_then_the_first_by_name() {
        let svc = ObjectKey::new("ns", "svc");
        let s = store(vec![
            policy("b-new", Some(200), "svc", "new"),
            policy("c-old", Some(100), "svc", "old"),
            policy("a-none", None, "svc", "undated"),
            policy("other", Some(1), "other", "x"),
        ]);
        let (key, session) = policy_session(&s, &svc).expect("a policy");
        assert_eq!(key, ObjectKey::new("ns", "c-old"));
        assert_eq!(session.session_name.as_deref(), Some("old"));
        let tie = store(vec![
            policy("b", Some(100), "svc", "b"),
            policy("a", Some(100), "svc", "a"),
        ]);
        assert_eq!(policy_session(&tie, &svc).expect("a policy").0.name, "a");
        // A Service of another namespace is not targeted.
        assert!(policy_session(&s, &ObjectKey::new("elsewhere", "svc")).is_none());
    }
}
