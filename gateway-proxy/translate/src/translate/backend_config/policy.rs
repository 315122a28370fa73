//! One BackendConfigPolicy on its own: its targets, and its settings with every default filled
//! in, or every reason they cannot be used.

use std::sync::Arc;

use gantry_crds::backend_config::BackendConfigPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::check::Check;
use super::{connection, health_check, load_balancer};
use crate::ir::BackendConfigIr;
use crate::store::{ObjectKey, Store};
use crate::translate::conditions::{self as c, Problem};
use crate::translate::generation_of;
use crate::translate::service_policy::target::{self, MissingService, TargetRef};
use crate::translate::service_policy::{ServicePolicy, Target, TargetProblem};

/// A policy after validation.
#[derive(Clone, Debug)]
pub struct ConfigPolicy {
    pub key: ObjectKey,
    pub generation: i64,
    pub created: Option<Time>,
    /// Targets by `targetRefs` index: a Service of the policy's namespace and optionally one
    /// of its ports by name, or why the reference does not attach (`TargetNotFound`).
    pub targets: Vec<Result<Target, TargetProblem>>,
    /// The settings (an HTTP probe's `Host` still to be filled in per Service, see
    /// [`health_check::HOSTNAME_OF_SERVICE`]), or why the policy cannot be used
    /// (`Accepted=False, Invalid`): then nothing of it applies.
    pub settings: Result<Arc<BackendConfigIr>, Problem>,
}

impl ServicePolicy for ConfigPolicy {
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

/// Validates one policy against the store.
pub fn resolve(store: &Store, key: &ObjectKey, policy: &BackendConfigPolicy) -> ConfigPolicy {
    ConfigPolicy {
        key: key.clone(),
        generation: generation_of(&policy.metadata),
        created: policy.metadata.creation_timestamp.clone(),
        targets: policy
            .spec
            .target_refs
            .iter()
            .map(|t| {
                // A target naming a Service that does not exist is shown as TargetNotFound on
                // the Gateways whose routes reference it, as for XBackendTrafficPolicy.
                target::resolve(
                    store,
                    &key.namespace,
                    TargetRef {
                        group: &t.group,
                        kind: &t.kind,
                        name: &t.name,
                        section_name: t.section_name.as_deref(),
                    },
                    MissingService::NotFound,
                )
            })
            .collect(),
        settings: settings(key, policy).map(Arc::new),
    }
}

/// Every field of the spec, defaults filled in; every value against its rule.
fn settings(key: &ObjectKey, policy: &BackendConfigPolicy) -> Result<BackendConfigIr, Problem> {
    let spec = &policy.spec;
    let mut check = Check::default();
    let ir = BackendConfigIr {
        policy: key.to_string(),
        load_balancer: load_balancer::load_balancer(&mut check, spec.load_balancer.as_ref()),
        health_check: spec
            .health_check
            .as_ref()
            .map(|hc| health_check::health_check(&mut check, hc)),
        circuit_breaker: spec
            .circuit_breaker
            .as_ref()
            .map(|cb| connection::circuit_breaker(&mut check, cb)),
        connection: connection::connection(
            &mut check,
            spec.timeout.as_ref(),
            spec.tcp_keepalive.as_ref(),
            spec.http2.as_ref(),
        ),
    };
    match check.finish() {
        None => Ok(ir),
        Some(problems) => Err(Problem::new(
            c::REASON_INVALID,
            format!("{problems}; nothing of this policy is applied"),
        )),
    }
}
