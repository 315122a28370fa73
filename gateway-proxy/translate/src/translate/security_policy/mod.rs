//! SecurityPolicy (`gantry.dev/v1alpha1`): each policy validated once into a [`SecurityIr`]
//! (API keys as SHA-256 digests, htpasswd users, JWT providers with their checked JWKS or
//! JWKS URL, the OpenID provider and client secret of `oidc`, client CIDRs, the external authorization service, the Consumers its keys and users map to), attached to route entries through `route_policy` (rule > route > listener >
//! Gateway; the winner applies whole), and its `ancestors[]` status.
//!
//! A policy that cannot be used (a Secret missing or not permitted, a malformed htpasswd line,
//! a bad CIDR) is `Accepted=False`, reason `Invalid`, and still attaches: the entries it
//! governs carry `refuse`, so their requests are answered 500 until it is fixed. A route with a
//! broken policy is closed, never open.

mod api_key;
mod authorization;
mod basic_auth;
mod ext_auth;
mod jwt;
mod oidc;
mod secrets;

pub(super) use self::authorization::normalise_cidr;

use std::collections::BTreeMap;
use std::sync::Arc;

use gantry_crds::SecurityPolicy;

use super::conditions::{self as c, Problem};
use super::route_policy::{self, Resolved};
use super::service_policy::ancestors::PolicyKind;
use crate::ir::{ClusterIr, PortIr, SecurityIr};
use crate::status::ObjectStatus;
use crate::store::{ObjectKey, Store};

const KIND: PolicyKind = PolicyKind {
    kind: gantry_crds::SECURITY_POLICY_KIND,
    api_version: "gantry.dev/v1alpha1",
};

type Validated = route_policy::Validated<SecurityIr>;

/// Every SecurityPolicy of one translation.
#[derive(Debug, Default)]
pub struct Security {
    resolved: Resolved<Validated>,
    /// The clusters of `jwt` `remoteJWKS.backendRefs`, `oidc` `provider.backendRefs` and
    /// `extAuth` backendRefs, for the IR's clusters.
    clusters: BTreeMap<String, ClusterIr>,
}

impl Security {
    /// Validates every policy of `store` and settles precedence per target.
    pub fn resolve(store: &Store) -> Self {
        let mut clusters = BTreeMap::new();
        let policies = store
            .security_policies
            .iter()
            .map(|(key, p)| (key.clone(), validate(store, key, p, &mut clusters)))
            .collect();
        Self {
            resolved: Resolved::new(policies),
            clusters,
        }
    }

    /// Adds the clusters JWKS are fetched through (their endpoints are read with every other
    /// cluster's).
    pub fn add_clusters(&self, clusters: &mut BTreeMap<String, ClusterIr>) {
        for (name, cluster) in &self.clusters {
            clusters
                .entry(name.clone())
                .or_insert_with(|| cluster.clone());
        }
    }

    /// Gives every HTTP route entry of `ports` the policy governing it.
    pub fn attach(&mut self, ports: &mut [PortIr]) {
        self.resolved.attach(ports, |entry, policy| {
            entry.security = Some(policy.ir.clone())
        });
    }

    /// Status of every policy in use at a served Gateway, or with a target that does not
    /// attach.
    pub fn policy_statuses(&self, controller_name: &Arc<str>) -> Vec<ObjectStatus> {
        route_policy::ancestors::policy_statuses(KIND, &self.resolved, controller_name)
    }
}

fn validate(
    store: &Store,
    key: &ObjectKey,
    policy: &SecurityPolicy,
    clusters: &mut BTreeMap<String, ClusterIr>,
) -> Validated {
    let ns = key.namespace.as_str();
    let targets = route_policy::target::resolve_all(store, ns, &policy.spec.target_refs);
    let consumers = api_key::Consumers::select(store, key, policy);
    let mut problems = Vec::new();
    let api_key_auth = policy.spec.api_key_auth.as_ref().and_then(|a| {
        api_key::validate(store, key, a, &consumers)
            .map_err(|p| problems.extend(p))
            .ok()
    });
    let basic_auth = policy.spec.basic_auth.as_ref().and_then(|b| {
        basic_auth::validate(store, key, b, &consumers)
            .map_err(|p| problems.extend(p))
            .ok()
    });
    let jwt = policy.spec.jwt.as_ref().and_then(|j| {
        jwt::validate(store, key, j, clusters)
            .map_err(|p| problems.extend(p))
            .ok()
    });
    let oidc = policy.spec.oidc.as_ref().and_then(|o| {
        oidc::validate(store, key, o, clusters)
            .map_err(|p| problems.extend(p))
            .ok()
    });
    let authorization = policy.spec.authorization.as_ref().and_then(|a| {
        authorization::validate(a)
            .map_err(|p| problems.extend(p))
            .ok()
    });
    let ext_auth = policy.spec.ext_auth.as_ref().and_then(|a| {
        ext_auth::validate(store, key, a, clusters)
            .map_err(|p| problems.extend(p))
            .ok()
    });
    let consumer_header = api_key::header(
        "consumerHeader",
        policy.spec.consumer_header.as_deref(),
        &mut problems,
    );
    if api_key_auth.is_none()
        && basic_auth.is_none()
        && jwt.is_none()
        && oidc.is_none()
        && authorization.is_none()
        && ext_auth.is_none()
        && problems.is_empty()
    {
        problems.push(
            "the policy sets none of apiKeyAuth, basicAuth, jwt, oidc, authorization and extAuth"
                .to_owned(),
        );
    }
    let invalid = (!problems.is_empty()).then(|| {
        Problem::new(
            c::REASON_INVALID,
            format!(
                "{}; requests it governs are refused with 500 until it is fixed",
                problems.join("; ")
            ),
        )
    });
    let ir = SecurityIr {
        policy: key.clone(),
        refuse: invalid.as_ref().map(|_| {
            format!(
                "SecurityPolicy {key} cannot be used: {}",
                problems.join("; ")
            )
        }),
        api_key_auth: api_key_auth.filter(|_| invalid.is_none()),
        basic_auth: basic_auth.filter(|_| invalid.is_none()),
        jwt: jwt.filter(|_| invalid.is_none()),
        oidc: oidc.filter(|_| invalid.is_none()),
        authorization: authorization.filter(|_| invalid.is_none()),
        ext_auth: ext_auth.filter(|_| invalid.is_none()),
        consumer_header: consumer_header.filter(|_| invalid.is_none()),
    };
    Validated {
        key: key.clone(),
        created: policy.metadata.creation_timestamp.clone(),
        generation: super::generation_of(&policy.metadata),
        targets,
        invalid,
        ir: Arc::new(ir),
    }
}

/// Labels of a Consumer, for the IR.
pub(super) type Labels = BTreeMap<String, String>;
