//! Per-Gateway status entries (a route's `parents[]`, a policy's `ancestors[]`): the kinds that
//! carry them, owned entries for writing, and borrowed views for comparing without copies.

use ::kube::api::ApiResource;
use gantry_crds::backend_config::BackendConfigPolicy;
use gantry_crds::gateway::backendtlspolicies::BackendTlsPolicy;
use gantry_crds::gateway::experimental::tcproutes::TcpRoute;
use gantry_crds::gateway::experimental::udproutes::UdpRoute;
use gantry_crds::gateway::experimental::xbackendtrafficpolicies::XBackendTrafficPolicy;
use gantry_crds::gateway::grpcroutes::GrpcRoute;
use gantry_crds::gateway::httproutes::HttpRoute;
use gantry_crds::gateway::tlsroutes::TlsRoute;
use gantry_crds::{RateLimitPolicy, SecurityPolicy};
use serde::Serialize;
use serde_json::{Value, json};

use super::GATEWAY_GROUP;
use super::compare::same_conditions;
use gantry_translate::status::types::{
    Condition, ParentReference, PolicyAncestorStatus, RouteParentStatus,
};
use gantry_translate::store::ObjectKey;

/// A kind whose status holds per-Gateway entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum Kind {
    HttpRoute,
    GrpcRoute,
    TlsRoute,
    TcpRoute,
    UdpRoute,
    BackendTlsPolicy,
    XBackendTrafficPolicy,
    BackendConfigPolicy,
    SecurityPolicy,
    RateLimitPolicy,
}

impl Kind {
    pub(super) const ALL: [Self; 10] = [
        Self::HttpRoute,
        Self::GrpcRoute,
        Self::TlsRoute,
        Self::TcpRoute,
        Self::UdpRoute,
        Self::BackendTlsPolicy,
        Self::XBackendTrafficPolicy,
        Self::BackendConfigPolicy,
        Self::SecurityPolicy,
        Self::RateLimitPolicy,
    ];

    /// The kind an `ObjectStatus` names; `None` for kinds without entries (and Gateways).
    pub(super) fn parse(kind: &str) -> Option<Self> {
        Some(match kind {
            "HTTPRoute" => Self::HttpRoute,
            "GRPCRoute" => Self::GrpcRoute,
            "TLSRoute" => Self::TlsRoute,
            "TCPRoute" => Self::TcpRoute,
            "UDPRoute" => Self::UdpRoute,
            "BackendTLSPolicy" => Self::BackendTlsPolicy,
            "XBackendTrafficPolicy" => Self::XBackendTrafficPolicy,
            "BackendConfigPolicy" => Self::BackendConfigPolicy,
            "SecurityPolicy" => Self::SecurityPolicy,
            "RateLimitPolicy" => Self::RateLimitPolicy,
            _ => return None,
        })
    }

    /// The Kubernetes kind, as statuses, errors and metrics name it.
    pub(super) fn name(self) -> &'static str {
        match self {
            Self::HttpRoute => "HTTPRoute",
            Self::GrpcRoute => "GRPCRoute",
            Self::TlsRoute => "TLSRoute",
            Self::TcpRoute => "TCPRoute",
            Self::UdpRoute => "UDPRoute",
            Self::BackendTlsPolicy => "BackendTLSPolicy",
            Self::XBackendTrafficPolicy => "XBackendTrafficPolicy",
            Self::BackendConfigPolicy => "BackendConfigPolicy",
            Self::SecurityPolicy => "SecurityPolicy",
            Self::RateLimitPolicy => "RateLimitPolicy",
        }
    }

    /// Position in [`Kind::ALL`], for per-kind tables.
    pub(super) fn index(self) -> usize {
        self as usize
    }

    pub(super) fn is_policy(self) -> bool {
        matches!(
            self,
            Self::BackendTlsPolicy
                | Self::XBackendTrafficPolicy
                | Self::BackendConfigPolicy
                | Self::SecurityPolicy
                | Self::RateLimitPolicy
        )
    }

    pub(super) fn shape(self) -> Shape {
        if self.is_policy() {
            Shape {
                list: "ancestors",
                reference: "ancestorRef",
            }
        } else {
            Shape {
                list: "parents",
                reference: "parentRef",
            }
        }
    }

    /// Where the kind's status is written, newest version first: TCPRoute and UDPRoute are
    /// served at `v1` from Gateway API v1.6 and at `v1alpha2` before (a `404` at one version
    /// moves the write to the next).
    pub(super) fn resources(self) -> Vec<ApiResource> {
        let at_v1 = |mut r: ApiResource| {
            r.version = "v1".to_owned();
            r.api_version = format!("{}/v1", r.group);
            r
        };
        match self {
            Self::TcpRoute | Self::UdpRoute => vec![at_v1(self.resource()), self.resource()],
            _ => vec![self.resource()],
        }
    }

    pub(super) fn resource(self) -> ApiResource {
        match self {
            Self::HttpRoute => ApiResource::erase::<HttpRoute>(&()),
            Self::GrpcRoute => ApiResource::erase::<GrpcRoute>(&()),
            Self::TlsRoute => ApiResource::erase::<TlsRoute>(&()),
            Self::TcpRoute => ApiResource::erase::<TcpRoute>(&()),
            Self::UdpRoute => ApiResource::erase::<UdpRoute>(&()),
            Self::BackendTlsPolicy => ApiResource::erase::<BackendTlsPolicy>(&()),
            Self::XBackendTrafficPolicy => ApiResource::erase::<XBackendTrafficPolicy>(&()),
            Self::BackendConfigPolicy => ApiResource::erase::<BackendConfigPolicy>(&()),
            Self::SecurityPolicy => ApiResource::erase::<SecurityPolicy>(&()),
            Self::RateLimitPolicy => ApiResource::erase::<RateLimitPolicy>(&()),
        }
    }
}

/// Where an object keeps its per-Gateway status entries.
#[derive(Clone, Copy, Debug)]
pub(super) struct Shape {
    /// The list under `status`.
    pub list: &'static str,
    /// The reference field of each entry.
    pub reference: &'static str,
}

/// The Gateways this proxy serves, sorted, so that a lookup by name allocates nothing.
#[derive(Debug, Default)]
pub(super) struct Served(Vec<ObjectKey>);

impl Served {
    pub(super) fn new(mut keys: Vec<ObjectKey>) -> Self {
        keys.sort_unstable();
        keys.dedup();
        Self(keys)
    }

    pub(super) fn contains(&self, namespace: &str, name: &str) -> bool {
        self.0
            .binary_search_by(|k| (k.namespace.as_str(), k.name.as_str()).cmp(&(namespace, name)))
            .is_ok()
    }

    pub(super) fn contains_key(&self, key: &ObjectKey) -> bool {
        self.contains(&key.namespace, &key.name)
    }
}

/// Whether a reference (group, kind, namespace already defaulted, name) names a Gateway in
/// `served`. An unset group is the Gateway API group and an unset kind is `Gateway`, as the
/// `ParentReference` and `ParentReference`-shaped ancestor defaults say.
pub(super) fn is_served_gateway(
    group: Option<&str>,
    kind: Option<&str>,
    namespace: &str,
    name: &str,
    served: &Served,
) -> bool {
    group.unwrap_or(GATEWAY_GROUP) == GATEWAY_GROUP
        && kind.unwrap_or("Gateway") == "Gateway"
        && served.contains(namespace, name)
}

/// One per-Gateway status entry: a route's `RouteParentStatus` or a policy's
/// `PolicyAncestorStatus` (the same fields under different names).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Entry {
    pub reference: ParentReference,
    pub controller_name: String,
    pub conditions: Vec<Condition>,
}

impl Entry {
    pub(super) fn from_value(v: &Value, shape: Shape) -> Option<Self> {
        Some(Self {
            reference: serde_json::from_value(v[shape.reference].clone()).ok()?,
            controller_name: v["controllerName"].as_str()?.to_owned(),
            conditions: serde_json::from_value(v["conditions"].clone()).ok()?,
        })
    }

    pub(super) fn to_value(&self, shape: Shape) -> Value {
        json!({
            shape.reference: self.reference,
            "controllerName": self.controller_name,
            "conditions": self.conditions,
        })
    }

    fn view(&self) -> EntryRef<'_> {
        EntryRef {
            reference: &self.reference,
            controller_name: &self.controller_name,
            conditions: &self.conditions,
        }
    }
}

/// An [`Entry`] borrowed from the translator's statuses.
#[derive(Clone, Copy, Debug)]
pub(super) struct EntryRef<'a> {
    reference: &'a ParentReference,
    controller_name: &'a str,
    conditions: &'a [Condition],
}

impl EntryRef<'_> {
    fn to_entry(self) -> Entry {
        Entry {
            reference: self.reference.clone(),
            controller_name: self.controller_name.to_owned(),
            conditions: self.conditions.to_vec(),
        }
    }
}

impl<'a> From<&'a RouteParentStatus> for EntryRef<'a> {
    fn from(p: &'a RouteParentStatus) -> Self {
        Self {
            reference: &p.parent_ref,
            controller_name: &p.controller_name,
            conditions: &p.conditions,
        }
    }
}

impl<'a> From<&'a PolicyAncestorStatus> for EntryRef<'a> {
    fn from(a: &'a PolicyAncestorStatus) -> Self {
        Self {
            reference: &a.ancestor_ref,
            controller_name: &a.controller_name,
            conditions: &a.conditions,
        }
    }
}

/// The entries of ours one object should carry, borrowed from the translator's statuses.
#[derive(Clone, Copy, Debug)]
pub(super) enum Entries<'a> {
    Parents(&'a [RouteParentStatus]),
    Ancestors(&'a [PolicyAncestorStatus]),
}

impl<'a> Entries<'a> {
    /// No entry of ours: an object that detached, or that no served Gateway uses any more.
    pub(super) const NONE: Self = Self::Parents(&[]);

    fn len(self) -> usize {
        match self {
            Self::Parents(p) => p.len(),
            Self::Ancestors(a) => a.len(),
        }
    }

    fn iter(self) -> impl Iterator<Item = EntryRef<'a>> {
        let (parents, ancestors): (&[RouteParentStatus], &[PolicyAncestorStatus]) = match self {
            Self::Parents(p) => (p, &[]),
            Self::Ancestors(a) => (&[], a),
        };
        parents
            .iter()
            .map(EntryRef::from)
            .chain(ancestors.iter().map(EntryRef::from))
    }

    /// Owned copies, for an object that is about to be written.
    pub(super) fn to_vec(self) -> Vec<Entry> {
        self.iter().map(EntryRef::to_entry).collect()
    }
}

/// Whether `settled` is what `wanted` asks for: the same entries with the same conditions in
/// the same order, times aside.
pub(super) fn same_wish(settled: &[Entry], wanted: Entries<'_>) -> bool {
    let same_condition = |x: &Condition, y: &Condition| {
        x.type_ == y.type_
            && x.status == y.status
            && x.reason == y.reason
            && x.message == y.message
            && x.observed_generation == y.observed_generation
    };
    settled.len() == wanted.len()
        && settled
            .iter()
            .map(Entry::view)
            .zip(wanted.iter())
            .all(|(x, y)| {
                x.reference == y.reference
                    && x.controller_name == y.controller_name
                    && x.conditions.len() == y.conditions.len()
                    && x.conditions
                        .iter()
                        .zip(y.conditions)
                        .all(|(c, d)| same_condition(c, d))
            })
}

/// The same entries in any order, each with the same conditions in any order, times aside.
pub(super) fn same_entries(a: &[Entry], b: &[Entry]) -> bool {
    a.len() == b.len()
        && a.iter().all(|x| {
            b.iter().any(|y| {
                x.reference == y.reference
                    && x.controller_name == y.controller_name
                    && same_conditions(&x.conditions, &y.conditions)
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn parent(gateway: &str, reason: &'static str, time: Option<&str>) -> RouteParentStatus {
        let mut accepted = Condition::new("Accepted", true, reason, "m", 1);
        accepted.last_transition_time = time.map_or_else(
            gantry_translate::status::TransitionTime::unset,
            gantry_translate::status::TransitionTime::at,
        );
        RouteParentStatus {
            parent_ref: Arc::new(ParentReference {
                group: None,
                kind: None,
                namespace: None,
                name: gateway.to_owned(),
                section_name: None,
                port: None,
            }),
            controller_name: "c".into(),
            conditions: vec![accepted],
        }
    }

    #[test]
    fn a_settled_wish_matches_the_same_entries_whatever_their_times() {
        let wanted = [parent("gw", "Accepted", None)];
        let settled = Entries::Parents(&[parent("gw", "Accepted", Some("T1"))]).to_vec();
        assert!(same_wish(&settled, Entries::Parents(&wanted)));
        assert!(!same_wish(
            &settled,
            Entries::Parents(&[parent("gw", "Other", None)])
        ));
        assert!(!same_wish(
            &settled,
            Entries::Parents(&[
                parent("gw", "Accepted", None),
                parent("b", "Accepted", None)
            ])
        ));
        assert!(!same_wish(&settled, Entries::NONE));
        assert!(same_wish(&[], Entries::NONE));
    }

    #[test]
    fn ancestors_compare_like_parents() {
        let p = parent("gw", "Accepted", None);
        let ancestor = PolicyAncestorStatus {
            ancestor_ref: (*p.parent_ref).clone(),
            controller_name: p.controller_name.clone(),
            conditions: p.conditions.clone(),
        };
        let settled = Entries::Parents(std::slice::from_ref(&p)).to_vec();
        assert!(same_wish(
            &settled,
            Entries::Ancestors(std::slice::from_ref(&ancestor))
        ));
    }

    #[test]
    fn served_gateways_are_found_by_name() {
        let served = Served::new(vec![
            ObjectKey::new("b", "gw"),
            ObjectKey::new("a", "gw"),
            ObjectKey::new("a", "gw"),
        ]);
        assert!(served.contains("a", "gw") && served.contains("b", "gw"));
        assert!(!served.contains("a", "other") && !served.contains("c", "gw"));
    }

    #[test]
    fn every_kind_parses_back_from_its_name() {
        for kind in Kind::ALL {
            assert_eq!(Kind::parse(kind.name()), Some(kind));
            assert_eq!(Kind::ALL[kind.index()], kind);
        }
        assert_eq!(Kind::parse("Gateway"), None);
    }
}
