//! Gateways of our classes: their listeners and their `Accepted`/`Programmed` status.

use std::collections::{BTreeMap, BTreeSet};

use gantry_crds::gateway::gateways::Gateway;

use super::addresses;
use super::conditions::{self as c, Problem};
use super::listener::{ListenerState, validate_merged};
use super::listener_set::{self, ListenerSetState};
use super::{API_VERSION, TranslateOptions, generation_of};
use super::{frontend_tls, listener_tls};
use crate::status::{GatewayStatus, ObjectStatus, StatusBody};
use crate::store::{ObjectKey, Store};

/// A Gateway we serve, with its validated listeners.
#[derive(Clone, Debug)]
pub struct GatewayState {
    pub key: ObjectKey,
    pub generation: i64,
    /// The Gateway's own listeners (`origin: None`), then those of each attached ListenerSet
    /// in precedence order (see `listener_set`).
    pub listeners: Vec<ListenerState>,
    /// Why the Gateway is refused, if it is: `spec.infrastructure.parametersRef` cannot be
    /// used (`InvalidParameters`) or `spec.addresses` asks for an unsupported type
    /// (`UnsupportedAddress`). It is then `Accepted=False` and none of its listeners is served.
    pub refusal: Option<Problem>,
    /// Why `spec.addresses` keeps the Gateway from being `Programmed` (`AddressNotUsable`,
    /// `AddressNotAssigned`); its listeners still serve on the addresses it has.
    pub address_problem: Option<Problem>,
    /// `spec.tls.frontend` lets clients without a valid certificate in (`AllowInsecureFallback`
    /// by default or on some port): the Gateway says so in `InsecureFrontendValidationMode`.
    pub insecure_frontend_validation: bool,
    /// ListenerSets whose `parentRef` names this Gateway, attached or not.
    pub listener_sets: Vec<ListenerSetState>,
    /// Whether status reports `attachedListenerSets`: the Gateway allows ListenerSets or one
    /// names it.
    reports_listener_sets: bool,
}

/// The Gateways we serve: those whose class is ours, narrowed to `options.gateways` when set.
pub fn our_gateways(
    store: &Store,
    classes: &BTreeSet<String>,
    options: &TranslateOptions,
) -> BTreeMap<ObjectKey, GatewayState> {
    store
        .gateways
        .iter()
        .filter(|(key, gw)| {
            classes.contains(&gw.spec.gateway_class_name)
                && options
                    .gateways
                    .as_ref()
                    .is_none_or(|only| only.contains(key))
        })
        .map(|(key, gw)| {
            let mut state = gateway_state(store, key, gw, options.namespace_labels);
            if options.parameters_refs {
                state.refuse(parameters_problem(store, key, gw));
            }
            let addresses = addresses::judge(gw, &options.addresses);
            state.refuse(addresses.refusal);
            state.address_problem = addresses.not_programmed;
            if !options.namespace_labels {
                for listener in &mut state.listeners {
                    listener.allowed_namespaces.labels_unreadable();
                }
            }
            (key.clone(), state)
        })
        .collect()
}

fn gateway_state(
    store: &Store,
    key: &ObjectKey,
    gw: &Gateway,
    namespace_labels: bool,
) -> GatewayState {
    let (candidates, mut listener_sets) =
        listener_set::for_gateway(store, key, gw, namespace_labels);
    let mut groups = vec![(None, gw.spec.listeners.as_slice())];
    groups.extend(
        candidates
            .iter()
            .map(|c| (Some(c.key), c.listeners.as_slice())),
    );
    let specs: Vec<_> = groups.iter().flat_map(|(_, l)| l.iter()).collect();
    let mut listeners = validate_merged(&groups);
    listener_tls::apply(store, key, gw, &specs, &mut listeners);
    let own = gw.spec.listeners.len();
    // GEP-1713 `ParentNotAccepted`: "the `parentRef` isn't accepted". A Gateway none of
    // whose own listeners can be served is not accepted (see `status`); its ListenerSets'
    // listeners are then not taken.
    let parent_accepted = listeners[..own].iter().any(ListenerState::programmed);
    let mut start = own;
    for candidate in &candidates {
        let end = start + candidate.listeners.len();
        listener_sets.push(ListenerSetState {
            key: candidate.key.clone(),
            generation: generation_of(&candidate.set.metadata),
            listeners: parent_accepted.then_some(start..end),
            rejected: (!parent_accepted).then(|| {
                Problem::new(
                    c::REASON_PARENT_NOT_ACCEPTED,
                    format!(
                        "Gateway {key} is not accepted (no listener of its own can be served; see its status)"
                    ),
                )
            }),
        });
        start = end;
    }
    if !parent_accepted {
        listeners.truncate(own);
    }
    listener_sets.sort_by(|a, b| a.key.cmp(&b.key));
    let reports_listener_sets = !listener_sets.is_empty()
        || gw
            .spec
            .allowed_listeners
            .as_ref()
            .and_then(|a| a.namespaces.as_ref())
            .and_then(|n| n.from.as_ref())
            .is_some_and(|from| {
                *from != gantry_crds::gateway::gateways::GatewayAllowedListenersNamespacesFrom::None
            });
    GatewayState {
        key: key.clone(),
        generation: generation_of(&gw.metadata),
        listeners,
        refusal: None,
        address_problem: None,
        insecure_frontend_validation: frontend_tls::allows_insecure_fallback(gw),
        listener_sets,
        reports_listener_sets,
    }
}

/// Gateway `spec.infrastructure.parametersRef`: "If the referent cannot be found, refers to an
/// unsupported kind, or when the data within that resource is malformed, the Gateway SHOULD
/// be rejected with the "Accepted" status condition set to "False" and an
/// "InvalidParameters" reason." The referent is in the Gateway's namespace.
fn parameters_problem(store: &Store, key: &ObjectKey, gw: &Gateway) -> Option<Problem> {
    let reference = gw.spec.infrastructure.as_ref()?.parameters_ref.as_ref()?;
    if reference.group != gantry_crds::GROUP
        || reference.kind != gantry_crds::GATEWAY_PARAMETERS_KIND
    {
        return Some(Problem::new(
            c::REASON_INVALID_PARAMETERS,
            format!(
                "spec.infrastructure.parametersRef names kind {} of group {:?}; Gantry reads {} of group {}",
                reference.kind,
                reference.group,
                gantry_crds::GATEWAY_PARAMETERS_KIND,
                gantry_crds::GROUP
            ),
        ));
    }
    let target = ObjectKey::new(key.namespace.clone(), reference.name.clone());
    (!store.gateway_parameters.contains_key(&target)).then(|| {
        Problem::new(
            c::REASON_INVALID_PARAMETERS,
            format!(
                "spec.infrastructure.parametersRef names GatewayParameters {target}, which does not exist; create it or remove the reference"
            ),
        )
    })
}

impl GatewayState {
    /// Refuses the Gateway (the first refusal stands): no listener is served.
    fn refuse(&mut self, problem: Option<Problem>) {
        let Some(problem) = problem else {
            return;
        };
        if self.refusal.is_some() {
            return;
        }
        for listener in &mut self.listeners {
            listener.not_programmed.get_or_insert_with(|| {
                Problem::new(
                    c::REASON_INVALID,
                    format!("the Gateway is not accepted: {}", problem.message),
                )
            });
        }
        self.refusal = Some(problem);
    }

    /// The Gateway's own listeners (GEP-1713: the Gateway's `Accepted` and `Programmed`
    /// "remain unchanged and reflect the status of the local configuration").
    pub fn own_listeners(&self) -> impl Iterator<Item = &ListenerState> {
        self.listeners.iter().filter(|l| l.origin.is_none())
    }

    /// The status of every ListenerSet naming this Gateway.
    pub fn listener_set_statuses(&self) -> impl Iterator<Item = ObjectStatus> + '_ {
        self.listener_sets
            .iter()
            .map(|set| set.status(&self.listeners))
    }

    pub fn status(&self) -> ObjectStatus {
        let generation = self.generation;
        let own: Vec<&ListenerState> = self.own_listeners().collect();
        let invalid: Vec<&str> = own
            .iter()
            .filter(|l| !l.fully_valid())
            .map(|l| l.name.as_str())
            .collect();
        let programmed: Vec<&str> = own
            .iter()
            .filter(|l| l.programmed())
            .map(|l| l.name.as_str())
            .collect();
        // Gateway `ListenersNotValid`: "This can be the reason when "Accepted" is "True" or
        // "False", depending on whether the listener being invalid causes the entire Gateway
        // to not be accepted." We accept the Gateway while one listener can be served.
        let accepted = if let Some(problem) = &self.refusal {
            c::not_ok(c::ACCEPTED, problem, generation)
        } else if programmed.is_empty() {
            let problem = Problem::new(
                c::REASON_LISTENERS_NOT_VALID,
                if own.is_empty() {
                    "Gateway has no listeners; add at least one".to_owned()
                } else {
                    format!(
                        "no listener can be served; listeners with problems: {}",
                        invalid.join(", ")
                    )
                },
            );
            c::not_ok(c::ACCEPTED, &problem, generation)
        } else if !invalid.is_empty() {
            c::ok(
                c::ACCEPTED,
                c::REASON_LISTENERS_NOT_VALID,
                format!(
                    "listeners with problems: {}; listeners served: {}",
                    invalid.join(", "),
                    programmed.join(", ")
                ),
                generation,
            )
        } else {
            c::ok(
                c::ACCEPTED,
                c::REASON_ACCEPTED,
                "Gateway is accepted",
                generation,
            )
        };
        let programmed_cond = if programmed.is_empty() {
            let problem = Problem::new(
                c::REASON_INVALID,
                "no listener is programmed; see the listener conditions",
            );
            c::not_ok(c::PROGRAMMED, &problem, generation)
        } else if let Some(problem) = &self.address_problem {
            c::not_ok(c::PROGRAMMED, problem, generation)
        } else {
            c::ok(
                c::PROGRAMMED,
                c::REASON_PROGRAMMED,
                "Gateway is programmed",
                generation,
            )
        };
        let mut conditions = vec![accepted, programmed_cond];
        if self.insecure_frontend_validation {
            // Gateway API: "This reason MUST be set for GatewayConditionInsecureFrontendValidationMode
            // when client change FrontendValidationModeType for a Gateway or per port override
            // to `AllowInsecureFallback`."
            conditions.push(c::ok(
                c::INSECURE_FRONTEND_VALIDATION_MODE,
                c::REASON_CONFIGURATION_CHANGED,
                "spec.tls.frontend uses AllowInsecureFallback: HTTPS clients without a valid certificate are let in; use AllowValidOnly to require one",
                generation,
            ));
        }
        ObjectStatus {
            api_version: API_VERSION.into(),
            kind: "Gateway".into(),
            namespace: self.key.namespace.clone(),
            name: self.key.name.clone(),
            status: StatusBody::Gateway(Box::new(GatewayStatus {
                addresses: Vec::new(),
                attached_listener_sets: self.reports_listener_sets.then(|| {
                    let attached = self
                        .listener_sets
                        .iter()
                        .filter(|set| set.attached(&self.listeners))
                        .count();
                    i32::try_from(attached).unwrap_or(i32::MAX)
                }),
                conditions,
                listeners: own.iter().map(|l| l.status(generation)).collect(),
            })),
        }
    }
}
