//! Which XBackendTrafficPolicy applies to which Service: every policy validated once per
//! translation, and for each targeted Service the one that takes precedence.
//!
//! It decides it for `retryConstraint` (the retry budget, read here) and for the policy's
//! status; `session` applies the same rule when a route rule reads `sessionPersistence` (the
//! route cache translates rules one at a time, without this resolution at hand).
//!
//! Precedence follows the Gateway API's policy attachment rule for conflicting Direct policies
//! (GEP-713), as BackendTLSPolicy spells it out: "the older policy by creation timestamp takes
//! precedence ... the policy appearing first in alphabetical order by {namespace}/{name}". A
//! policy without a creation timestamp counts as newer than any with one. A policy that loses
//! on a Service is `Accepted=False, Conflicted` there and changes nothing for it.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;

use gantry_crds::gateway::Duration;
use gantry_crds::gateway::experimental::xbackendtrafficpolicies::{
    XBackendTrafficPolicy, XBackendTrafficPolicyRetryConstraint, XBackendTrafficPolicyTargetRefs,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::ir::RetryBudgetIr;
use crate::store::{ObjectKey, Store};
use crate::translate::conditions::{self as c, Problem};
use crate::translate::generation_of;
pub use crate::translate::service_policy::REASON_CONFLICTED;
pub use crate::translate::service_policy::target::REASON_TARGET_NOT_FOUND;
use crate::translate::service_policy::target::{self, MissingService, TargetRef};
use crate::translate::service_policy::{Resolved, ServicePolicy};
pub use crate::translate::service_policy::{Target, TargetProblem};

/// `retryConstraint.budget` defaults, from the API (`+kubebuilder:default={percent: 20,
/// interval: "10s"}`).
const DEFAULT_PERCENT: u32 = 20;
const DEFAULT_INTERVAL_MS: u64 = 10_000;
/// `retryConstraint.minRetryRate` defaults (`+kubebuilder:default={count: 10, interval:
/// "1s"}`).
const DEFAULT_MIN_RETRY_COUNT: u32 = 10;
const DEFAULT_MIN_RETRY_INTERVAL_MS: u64 = 1_000;
/// `budget.interval`: "can not be greater than one hour or less than one second".
const MIN_INTERVAL_MS: u64 = 1_000;
const MAX_INTERVAL_MS: u64 = 3_600_000;

/// One policy after validation.
#[derive(Clone, Debug)]
pub struct TrafficPolicy {
    pub key: ObjectKey,
    pub generation: i64,
    pub created: Option<Time>,
    /// The object as written, for the fields this module does not interpret
    /// (`sessionPersistence`).
    pub policy: Arc<XBackendTrafficPolicy>,
    /// Targets by `targetRefs` index: a Service of the policy's namespace (the whole Service:
    /// these references carry no `sectionName`), or why the reference does not attach
    /// (`TargetNotFound`).
    pub targets: Vec<Result<Target, TargetProblem>>,
    /// The retry budget (`None` when the policy sets no `retryConstraint`), or why the policy's
    /// values cannot be used (`Accepted=False, Invalid`).
    pub retry_budget: Result<Option<RetryBudgetIr>, Problem>,
}

impl TrafficPolicy {
    /// Whether the policy's values can be used.
    pub fn is_valid(&self) -> bool {
        self.retry_budget.is_ok()
    }
}

impl ServicePolicy for TrafficPolicy {
    fn key(&self) -> &ObjectKey {
        &self.key
    }
    fn created(&self) -> Option<&Time> {
        self.created.as_ref()
    }
    fn targets(&self) -> &[Result<Target, TargetProblem>] {
        &self.targets
    }
}

/// Every policy of a store, and the one that applies to each Service.
#[derive(Debug, Default)]
pub struct ResolvedPolicies(Resolved<TrafficPolicy>);

impl ResolvedPolicies {
    /// Validates every XBackendTrafficPolicy of `store` and settles precedence.
    pub fn resolve(store: &Store) -> Self {
        Self(Resolved::new(
            store
                .backend_traffic_policies
                .iter()
                .map(|(key, policy)| (key.clone(), resolve_one(store, key, policy)))
                .collect(),
        ))
    }

    /// The policy that applies to `service`, if any: the oldest of those targeting it. It may
    /// be invalid ([`TrafficPolicy::is_valid`]); then nothing of it applies.
    pub fn for_service(&self, service: &ObjectKey) -> Option<&TrafficPolicy> {
        self.0.for_target(&Target {
            service: service.clone(),
            port_name: None,
        })
    }

    /// The policy that takes precedence for each target, by key.
    pub fn winners(&self) -> &BTreeMap<Target, ObjectKey> {
        self.0.winners()
    }

    /// Every policy, by key.
    pub fn policies(&self) -> &BTreeMap<ObjectKey, TrafficPolicy> {
        self.0.policies()
    }

    /// Whether the store has no policy at all.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn resolve_one(
    store: &Store,
    key: &ObjectKey,
    policy: &Arc<XBackendTrafficPolicy>,
) -> TrafficPolicy {
    TrafficPolicy {
        key: key.clone(),
        generation: generation_of(&policy.metadata),
        created: policy.metadata.creation_timestamp.clone(),
        policy: policy.clone(),
        targets: policy
            .spec
            .target_refs
            .iter()
            .map(|t| target(store, &key.namespace, t))
            .collect(),
        retry_budget: policy
            .spec
            .retry_constraint
            .as_ref()
            .map(|r| retry_budget(key, r))
            .transpose(),
    }
}

/// `targetRefs` are `LocalPolicyTargetReference`s: a Service in the policy's namespace ("Currently,
/// Backends ... are the only valid API target references"; Gantry's backends are core
/// Services).
fn target(
    store: &Store,
    namespace: &str,
    t: &XBackendTrafficPolicyTargetRefs,
) -> Result<Target, TargetProblem> {
    target::resolve(
        store,
        namespace,
        TargetRef {
            group: &t.group,
            kind: &t.kind,
            name: &t.name,
            section_name: None,
        },
        MissingService::NotFound,
    )
}

/// `retryConstraint` with the API's defaults filled in and its ranges checked.
fn retry_budget(
    key: &ObjectKey,
    r: &XBackendTrafficPolicyRetryConstraint,
) -> Result<RetryBudgetIr, Problem> {
    let invalid = |message: String| Problem::new(c::REASON_INVALID, message);
    let budget = r.budget.as_ref();
    let percent = match budget.and_then(|b| b.percent) {
        None => DEFAULT_PERCENT,
        Some(p) => u32::try_from(p).ok().filter(|&p| p <= 100).ok_or_else(|| {
            invalid(format!(
                "retryConstraint.budget.percent {p} is not a percentage from 0 to 100"
            ))
        })?,
    };
    let interval_ms = match budget.and_then(|b| b.interval.as_deref()) {
        None => DEFAULT_INTERVAL_MS,
        Some(text) => duration_ms("retryConstraint.budget.interval", text).map_err(invalid)?,
    };
    if !(MIN_INTERVAL_MS..=MAX_INTERVAL_MS).contains(&interval_ms) {
        return Err(invalid(format!(
            "retryConstraint.budget.interval {} can not be greater than one hour or less than one second",
            budget
                .and_then(|b| b.interval.as_deref())
                .unwrap_or_default()
        )));
    }
    let rate = r.min_retry_rate.as_ref();
    let min_retry_count = match rate.and_then(|m| m.count) {
        None => DEFAULT_MIN_RETRY_COUNT,
        Some(n) => u32::try_from(n).map_err(|_| {
            invalid(format!(
                "retryConstraint.minRetryRate.count {n} is not a count of requests (0 or more)"
            ))
        })?,
    };
    let min_retry_interval_ms = match rate.and_then(|m| m.interval.as_deref()) {
        None => DEFAULT_MIN_RETRY_INTERVAL_MS,
        Some(text) => {
            let ms = duration_ms("retryConstraint.minRetryRate.interval", text).map_err(invalid)?;
            if ms == 0 {
                return Err(invalid(format!(
                    "retryConstraint.minRetryRate.interval {text:?} is zero; a rate needs a time to divide by"
                )));
            }
            ms
        }
    };
    Ok(RetryBudgetIr {
        policy: key.to_string(),
        percent,
        interval_ms,
        min_retry_count,
        min_retry_interval_ms,
    })
}

fn duration_ms(field: &str, text: &str) -> Result<u64, String> {
    let d = Duration::from_str(text).map_err(|e| {
        format!("{field} {text:?} is not a Gateway API duration such as \"10s\" or \"500ms\": {e}")
    })?;
    Ok(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_crds::gateway::experimental::xbackendtrafficpolicies::{
        XBackendTrafficPolicyRetryConstraintBudget,
        XBackendTrafficPolicyRetryConstraintMinRetryRate,
    };

    fn constraint(
        percent: Option<i64>,
        interval: Option<&str>,
        count: Option<i64>,
        per: Option<&str>,
    ) -> XBackendTrafficPolicyRetryConstraint {
        XBackendTrafficPolicyRetryConstraint {
            budget: Some(XBackendTrafficPolicyRetryConstraintBudget {
                percent,
                interval: interval.map(str::to_owned),
            }),
            min_retry_rate: Some(XBackendTrafficPolicyRetryConstraintMinRetryRate {
                count,
                interval: per.map(str::to_owned),
            }),
        }
    }

    #[test]
    fn defaults_are_the_apis() {
        let key = ObjectKey::new("ns", "p");
        let b = retry_budget(&key, &XBackendTrafficPolicyRetryConstraint::default()).unwrap();
        assert_eq!(
            (
                b.percent,
                b.interval_ms,
                b.min_retry_count,
                b.min_retry_interval_ms
            ),
            (20, 10_000, 10, 1_000)
        );
        assert_eq!(b.policy, "ns/p");
    }

    #[test]
    fn out_of_range_values_are_invalid() {
        let key = ObjectKey::new("ns", "p");
        for bad in [
            constraint(Some(101), None, None, None),
            constraint(Some(-1), None, None, None),
            constraint(None, Some("500ms"), None, None),
            constraint(None, Some("2h"), None, None),
            constraint(None, Some("soon"), None, None),
            constraint(None, None, Some(-3), None),
            constraint(None, None, None, Some("0s")),
        ] {
            let problem = retry_budget(&key, &bad).unwrap_err();
            assert_eq!(problem.reason, c::REASON_INVALID, "{bad:?}");
        }
        let ok = retry_budget(&key, &constraint(Some(0), Some("1h"), Some(0), Some("1m"))).unwrap();
        assert_eq!(
            (ok.percent, ok.interval_ms, ok.min_retry_count),
            (0, 3_600_000, 0)
        );
    }
}
