//! ListenerSets (GEP-1713): which attach to a Gateway we serve, in which order their
//! listeners join the Gateway's, and their status.
//!
//! A ListenerSet's listeners are merged into its Gateway's listener list (after the Gateway's
//! own, each marked with the ListenerSet as its origin), so validation, TLS, route attachment
//! and the data plane treat them exactly as the Gateway's own listeners; only status tells
//! them apart: the Gateway reports its own listeners and `attachedListenerSets`, each
//! ListenerSet its own listeners.

use std::cmp::Ordering;
use std::ops::Range;

use gantry_crds::gateway::gateways::{
    Gateway, GatewayAllowedListenersNamespacesFrom, GatewayListeners,
    GatewayListenersAllowedRoutesNamespacesSelector,
};
use gantry_crds::gateway::listenersets::ListenerSet;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::allowed_routes::AllowedNamespaces;
use super::conditions::{self as c, Problem};
use super::listener::{GATEWAY_GROUP, ListenerState};
use super::{API_VERSION, generation_of};
use crate::status::{GatewayStatus, ObjectStatus, StatusBody};
use crate::store::{ObjectKey, Store};

/// The kind, as routes' parentRefs and statuses name it.
pub const KIND: &str = "ListenerSet";

/// One ListenerSet whose `parentRef` names a Gateway we serve.
#[derive(Clone, Debug)]
pub struct ListenerSetState {
    pub key: ObjectKey,
    pub generation: i64,
    /// Where its listeners are in the Gateway's merged listener list; `None` when the
    /// ListenerSet is not attached (see `rejected`).
    pub listeners: Option<Range<usize>>,
    /// Why the Gateway does not take the ListenerSet's listeners: `NotAllowed` or
    /// `ParentNotAccepted`.
    pub rejected: Option<Problem>,
}

/// A ListenerSet that may attach, with its listeners in the Gateway's shape.
pub struct Candidate<'a> {
    pub key: &'a ObjectKey,
    pub set: &'a ListenerSet,
    pub listeners: Vec<GatewayListeners>,
}

/// The ListenerSets whose `parentRef` names the Gateway `gateway`, in the GEP-1713 precedence
/// order: "ListenerSet ordered by creation time (oldest first)", then "alphabetically by
/// `{namespace}/{name}`". Those the Gateway's `allowedListeners` admits come back as
/// candidates; the others as states with `NotAllowed`.
pub fn for_gateway<'a>(
    store: &'a Store,
    gateway: &ObjectKey,
    gw: &Gateway,
    namespace_labels: bool,
) -> (Vec<Candidate<'a>>, Vec<ListenerSetState>) {
    let mut sets: Vec<(&ObjectKey, &ListenerSet)> = store
        .listener_sets
        .iter()
        .filter(|(key, set)| parent_of(key, set).as_ref() == Some(gateway))
        .map(|(key, set)| (key, &**set))
        .collect();
    sets.sort_by(|(a_key, a), (b_key, b)| precedence(a_key, a, b_key, b));
    let allowed = Allowed::of(gw, namespace_labels);
    let mut candidates = Vec::new();
    let mut rejected = Vec::new();
    for (key, set) in sets {
        if let Err(problem) = allowed.admits(store, gateway, &key.namespace) {
            rejected.push(ListenerSetState {
                key: key.clone(),
                generation: generation_of(&set.metadata),
                listeners: None,
                rejected: Some(problem),
            });
            continue;
        }
        // ListenerEntry "is currently a copy of the `Listener` struct" (GEP-1713): the same
        // fields, so the same JSON.
        match convert::<_, Vec<GatewayListeners>>(&set.spec.listeners) {
            Some(listeners) => candidates.push(Candidate {
                key,
                set,
                listeners,
            }),
            None => rejected.push(ListenerSetState {
                key: key.clone(),
                generation: generation_of(&set.metadata),
                listeners: None,
                rejected: Some(Problem::new(
                    c::REASON_INVALID,
                    "spec.listeners could not be read as Gateway listeners",
                )),
            }),
        }
    }
    (candidates, rejected)
}

/// Whether the Gateway a ListenerSet's `parentRef` names is in `store` and its
/// `allowedListeners` admits the ListenerSet's namespace (Namespace labels read from `store`).
pub fn admitted_by_parent(store: &Store, key: &ObjectKey, set: &ListenerSet) -> bool {
    parent_of(key, set).is_some_and(|parent| {
        store.gateways.get(&parent).is_some_and(|gw| {
            Allowed::of(gw, true)
                .admits(store, &parent, &key.namespace)
                .is_ok()
        })
    })
}

/// The Gateway a ListenerSet's `parentRef` names, if it names a Gateway (ParentGatewayReference:
/// group defaults to the Gateway API group, kind to `Gateway`, namespace to the ListenerSet's).
pub fn parent_of(key: &ObjectKey, set: &ListenerSet) -> Option<ObjectKey> {
    let parent = &set.spec.parent_ref;
    let group = parent.group.as_deref().unwrap_or(GATEWAY_GROUP);
    let kind = parent.kind.as_deref().unwrap_or("Gateway");
    (group == GATEWAY_GROUP && kind == "Gateway").then(|| {
        ObjectKey::new(
            parent
                .namespace
                .as_deref()
                .filter(|n| !n.is_empty())
                .unwrap_or(&key.namespace),
            parent.name.as_str(),
        )
    })
}

fn precedence(a_key: &ObjectKey, a: &ListenerSet, b_key: &ObjectKey, b: &ListenerSet) -> Ordering {
    // A missing timestamp (standalone files rarely set one) sorts after every set one.
    let created = |s: &ListenerSet| s.metadata.creation_timestamp.as_ref().map(|t| t.0);
    match (created(a), created(b)) {
        (Some(x), Some(y)) => x.cmp(&y),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    }
    .then_with(|| a_key.cmp(b_key))
}

/// Gateway `spec.allowedListeners.namespaces`.
enum Allowed {
    /// `from: None`, the default: "Only listeners defined in the Gateway's spec are allowed".
    None,
    From(AllowedNamespaces),
}

impl Allowed {
    fn of(gw: &Gateway, namespace_labels: bool) -> Self {
        let Some(namespaces) = gw
            .spec
            .allowed_listeners
            .as_ref()
            .and_then(|a| a.namespaces.as_ref())
        else {
            return Self::None;
        };
        let mut from = match namespaces.from {
            None | Some(GatewayAllowedListenersNamespacesFrom::None) => return Self::None,
            Some(GatewayAllowedListenersNamespacesFrom::Same) => AllowedNamespaces::Same,
            Some(GatewayAllowedListenersNamespacesFrom::All) => AllowedNamespaces::All,
            // "Selector must be specified when From is set to "Selector"": without one,
            // nothing is selected.
            Some(GatewayAllowedListenersNamespacesFrom::Selector) => namespaces
                .selector
                .as_ref()
                .and_then(convert::<_, GatewayListenersAllowedRoutesNamespacesSelector>)
                .map_or(AllowedNamespaces::Nothing, AllowedNamespaces::Selector),
        };
        if !namespace_labels {
            from.labels_unreadable();
        }
        Self::From(from)
    }

    fn admits(&self, store: &Store, gateway: &ObjectKey, namespace: &str) -> Result<(), Problem> {
        let not_allowed = |why: &str| {
            Err(Problem::new(
                c::REASON_NOT_ALLOWED,
                format!("Gateway {gateway} {why}"),
            ))
        };
        match self {
            Self::None => not_allowed(
                "does not allow ListenerSets (spec.allowedListeners.namespaces.from is None, the default); its owner can set it to Same, Selector or All",
            ),
            Self::From(AllowedNamespaces::LabelsUnreadable) => not_allowed(
                "selects ListenerSet namespaces by label, which this proxy cannot read (it watches one namespace with Roles only); use spec.allowedListeners.namespaces.from Same",
            ),
            Self::From(from) if from.allows(&gateway.namespace, namespace, store) => Ok(()),
            Self::From(_) => not_allowed(&format!(
                "does not allow ListenerSets from namespace {namespace} (see its spec.allowedListeners)"
            )),
        }
    }
}

/// Converts between two generated types of the same JSON shape.
fn convert<A: Serialize, B: DeserializeOwned>(a: &A) -> Option<B> {
    serde_json::to_value(a)
        .ok()
        .and_then(|v| serde_json::from_value(v).ok())
}

impl ListenerSetState {
    /// Whether the ListenerSet counts in the Gateway's `attachedListenerSets`: selected by
    /// `allowedListeners`, a valid parentRef, and `Accepted: true`.
    pub fn attached(&self, listeners: &[ListenerState]) -> bool {
        self.own(listeners).iter().any(ListenerState::accepted)
    }

    fn own<'a>(&self, listeners: &'a [ListenerState]) -> &'a [ListenerState] {
        self.listeners
            .clone()
            .and_then(|range| listeners.get(range))
            .unwrap_or_default()
    }

    /// The ListenerSet's status: `Accepted`, `Programmed` and its own listeners (GEP-1713:
    /// "`ListenerSets` MUST NOT have their parent `Gateway`'s listeners in the associated
    /// `status.listeners`", and the conditions "MUST only summarize the `status.listeners`
    /// conditions that are exclusive to the `ListenerSet`").
    pub fn status(&self, listeners: &[ListenerState]) -> ObjectStatus {
        let generation = self.generation;
        let own = self.own(listeners);
        let (accepted, programmed) = match &self.rejected {
            // Conformance (`ListenerSetDefaultNotAllowed` and the GEP's scenarios):
            // `Accepted` and `Programmed` both `False` with `NotAllowed`.
            Some(problem) if problem.reason == c::REASON_NOT_ALLOWED => (
                c::not_ok(c::ACCEPTED, problem, generation),
                c::not_ok(c::PROGRAMMED, problem, generation),
            ),
            Some(problem) => {
                let programmed = if problem.reason == c::REASON_PARENT_NOT_ACCEPTED {
                    Problem::new(c::REASON_PARENT_NOT_PROGRAMMED, problem.message.clone())
                } else {
                    problem.clone()
                };
                (
                    c::not_ok(c::ACCEPTED, problem, generation),
                    c::not_ok(c::PROGRAMMED, &programmed, generation),
                )
            }
            None => summary(own, generation),
        };
        ObjectStatus {
            api_version: API_VERSION.into(),
            kind: KIND.into(),
            namespace: self.key.namespace.clone(),
            name: self.key.name.clone(),
            status: StatusBody::Gateway(Box::new(GatewayStatus {
                addresses: Vec::new(),
                attached_listener_sets: None,
                conditions: vec![accepted, programmed],
                listeners: own.iter().map(|l| l.status(generation)).collect(),
            })),
        }
    }
}

/// `Accepted` and `Programmed` of an attached ListenerSet from its listeners, as for a
/// Gateway: `ListenersNotValid` ("one or more listeners in the set are invalid") is `False`
/// when no listener is left, else `True` with the invalid ones named.
fn summary(
    own: &[ListenerState],
    generation: i64,
) -> (crate::status::Condition, crate::status::Condition) {
    let names = |f: fn(&ListenerState) -> bool| -> Vec<&str> {
        own.iter()
            .filter(|l| f(l))
            .map(|l| l.name.as_str())
            .collect()
    };
    let invalid = names(|l| !l.fully_valid());
    let accepted = names(ListenerState::accepted);
    let programmed = names(ListenerState::programmed);
    let listeners_not_valid = |what: &str| {
        Problem::new(
            c::REASON_LISTENERS_NOT_VALID,
            format!(
                "no listener {what}; listeners with problems: {} (see status.listeners)",
                invalid.join(", ")
            ),
        )
    };
    let accepted_cond = if accepted.is_empty() {
        c::not_ok(c::ACCEPTED, &listeners_not_valid("is accepted"), generation)
    } else if invalid.is_empty() {
        c::ok(
            c::ACCEPTED,
            c::REASON_ACCEPTED,
            "ListenerSet is accepted",
            generation,
        )
    } else {
        c::ok(
            c::ACCEPTED,
            c::REASON_LISTENERS_NOT_VALID,
            format!(
                "listeners with problems: {}; listeners accepted: {}",
                invalid.join(", "),
                accepted.join(", ")
            ),
            generation,
        )
    };
    let programmed_cond = if programmed.is_empty() {
        c::not_ok(
            c::PROGRAMMED,
            &listeners_not_valid("is programmed"),
            generation,
        )
    } else {
        c::ok(
            c::PROGRAMMED,
            c::REASON_PROGRAMMED,
            "ListenerSet is programmed",
            generation,
        )
    };
    (accepted_cond, programmed_cond)
}
