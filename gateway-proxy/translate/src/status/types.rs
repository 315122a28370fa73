//! Status payloads: conditions, Gateway listeners, Route parents.

use std::borrow::Cow;
use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize};

/// A `metav1.Condition`. `last_transition_time` is left empty by the translator and stamped by
/// the status writer (kept from the previous status when the condition did not change).
///
/// Every route keeps its conditions between translations, so a condition should cost little:
/// the type, status and reason are constants of the spec, as most messages are, and are
/// borrowed rather than copied; all conditions stamped at one time share that time. Heap per
/// route: docs/benchmarks.md, "Memory per route: status".
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: Cow<'static, str>,
    /// "True", "False" or "Unknown".
    pub status: Cow<'static, str>,
    pub reason: Cow<'static, str>,
    pub message: Cow<'static, str>,
    pub observed_generation: i64,
    #[serde(default, skip_serializing_if = "TransitionTime::is_unset")]
    pub last_transition_time: TransitionTime,
}

/// A condition's `lastTransitionTime`: unset as the translator makes a condition, set once
/// when it is stamped. It can be set through a shared reference, so a route's status, which
/// the route cache and the statuses in use share, is stamped in place rather than copied
/// (docs/benchmarks.md, "Memory per route: status").
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TransitionTime(OnceLock<Arc<str>>);

impl TransitionTime {
    pub fn unset() -> Self {
        Self::default()
    }

    pub fn at(time: impl Into<Arc<str>>) -> Self {
        Self(OnceLock::from(time.into()))
    }

    pub fn get(&self) -> Option<&Arc<str>> {
        self.0.get()
    }

    pub fn as_deref(&self) -> Option<&str> {
        self.0.get().map(|time| &**time)
    }

    pub fn is_unset(&self) -> bool {
        self.0.get().is_none()
    }

    /// Sets the time unless it is set already.
    pub fn set_once(&self, time: &Arc<str>) {
        let _ = self.0.set(time.clone());
    }
}

impl Serialize for TransitionTime {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.get().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for TransitionTime {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let time = Option::<Arc<str>>::deserialize(deserializer)?;
        Ok(time.map_or_else(Self::unset, Self::at))
    }
}

impl Condition {
    pub fn new(
        type_: &'static str,
        ok: bool,
        reason: &'static str,
        message: impl Into<Cow<'static, str>>,
        observed_generation: i64,
    ) -> Self {
        Self {
            type_: Cow::Borrowed(type_),
            status: Cow::Borrowed(if ok { "True" } else { "False" }),
            reason: Cow::Borrowed(reason),
            message: message.into(),
            observed_generation,
            last_transition_time: TransitionTime::unset(),
        }
    }
}

/// One object's status, as served by `GET /status`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectStatus {
    /// Static for every object the translator reports on: a status is copied into every
    /// translation's list, and these two were half of the copy's allocations.
    pub api_version: Cow<'static, str>,
    pub kind: Cow<'static, str>,
    /// Empty for cluster-scoped objects (GatewayClass).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    pub name: String,
    pub status: StatusBody,
}

/// The `status` stanza of each kind.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum StatusBody {
    GatewayClass(GatewayClassStatus),
    /// A Gateway, or a ListenerSet (`ListenerSetStatus` has the same `conditions` and
    /// `listeners[]`, without `addresses` and `attachedListenerSets`): `ObjectStatus::kind`
    /// tells them apart. Boxed: the list of statuses holds one entry per route, and this
    /// one is the largest kind by far (the entries were 176 bytes, 128 with it boxed).
    Gateway(Box<GatewayStatus>),
    /// Shared with the translator's route cache, which replays it while the route is unchanged.
    Route(Arc<RouteStatus>),
    /// A policy (BackendTLSPolicy): one entry per ancestor this controller handles.
    Policy(PolicyStatus),
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayClassStatus {
    pub conditions: Vec<Condition>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<GatewayStatusAddress>,
    /// ListenerSets attached to the Gateway ("selected by the Gateway's AllowedListeners
    /// field", "a valid ParentRef selecting the Gateway", "Accepted: true"). Written for
    /// Gateways that allow ListenerSets or that one names; never for a ListenerSet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attached_listener_sets: Option<i32>,
    pub conditions: Vec<Condition>,
    #[serde(default)]
    pub listeners: Vec<ListenerStatus>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayStatusAddress {
    #[serde(rename = "type")]
    pub type_: String,
    pub value: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListenerStatus {
    pub name: String,
    pub supported_kinds: Vec<RouteGroupKind>,
    pub attached_routes: i32,
    pub conditions: Vec<Condition>,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteGroupKind {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    pub kind: String,
}

/// Status of any route kind: one entry per parentRef this controller handles.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteStatus {
    pub parents: Vec<RouteParentStatus>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteParentStatus {
    /// Shared by every route status that echoes an equal parentRef (thousands of routes name
    /// the same Gateway): 48 bytes a parent rather than 168 (`route_cache`).
    pub parent_ref: Arc<ParentReference>,
    /// One per translation, shared by every parent's status.
    pub controller_name: Arc<str>,
    pub conditions: Vec<Condition>,
}

/// `PolicyStatus`: the policy's status per ancestor (for BackendTLSPolicy, the Gateways whose
/// routes use the targeted Services).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyStatus {
    pub ancestors: Vec<PolicyAncestorStatus>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyAncestorStatus {
    pub ancestor_ref: ParentReference,
    pub controller_name: Arc<str>,
    pub conditions: Vec<Condition>,
}

/// A `ParentReference` echoed back exactly as the route wrote it (fields it left out stay out).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ParentReference {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub section_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The list of statuses holds one entry per route: a Gateway's status, the largest kind,
    /// is boxed so that it does not size every route's entry.
    #[test]
    #[cfg(target_pointer_width = "64")]
    fn a_status_entry_is_sized_for_a_route() {
        assert_eq!(std::mem::size_of::<StatusBody>(), 32);
        assert_eq!(std::mem::size_of::<ObjectStatus>(), 128);
    }
}
