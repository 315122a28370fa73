//! BackendTLSPolicy status: one `ancestors[]` entry per Gateway the policy is relevant to,
//! with `Accepted` and `ResolvedRefs`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::policy::PolicyState;
use crate::status::{Condition, ObjectStatus};
use crate::store::ObjectKey;
use crate::translate::API_VERSION;
use crate::translate::conditions as c;
use crate::translate::service_policy::Target;
use crate::translate::service_policy::ancestors::{self, PolicyKind};

pub const KIND: &str = "BackendTLSPolicy";

const POLICY_KIND: PolicyKind = PolicyKind {
    kind: KIND,
    api_version: API_VERSION,
};

/// The policy's status for the Gateways it is relevant to, each with the Services used
/// there that the policy targets.
pub fn policy_status(
    policy: &PolicyState,
    gateways: &BTreeMap<ObjectKey, BTreeSet<ObjectKey>>,
    originating: &BTreeMap<ObjectKey, BTreeSet<ObjectKey>>,
    winners: &BTreeMap<Target, ObjectKey>,
    controller_name: &Arc<str>,
) -> ObjectStatus {
    ancestors::policy_status(
        POLICY_KIND,
        &policy.key,
        gateways,
        controller_name,
        |gateway, services| {
            // Whether the Gateway reaches one of these Services through a listener that
            // originates TLS (anything but a TLS `Passthrough` listener).
            let originates = services.iter().any(|service| {
                originating
                    .get(service)
                    .is_some_and(|gateways| gateways.contains(gateway))
            });
            conditions(policy, services, originates, winners)
        },
    )
}

/// `Accepted` and `ResolvedRefs` for one ancestor, from the targets naming `services`;
/// `originates` says whether the ancestor originates TLS to any of them.
fn conditions(
    policy: &PolicyState,
    services: &BTreeSet<ObjectKey>,
    originates: bool,
    winners: &BTreeMap<Target, ObjectKey>,
) -> Vec<Condition> {
    let generation = policy.generation;
    let accepted = match ancestors::attachment_problem(POLICY_KIND, policy, services, winners) {
        Some(problem) => c::not_ok(c::ACCEPTED, &problem, generation),
        None => match &policy.config {
            Ok(_) if originates => c::ok(
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
        },
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
