//! Gateways of our classes: their listeners and their `Accepted`/`Programmed` status.

use std::collections::{BTreeMap, BTreeSet};

use gantry_crds::gateway::gateways::Gateway;

use super::conditions::{self as c, Problem};
use super::listener::{ListenerState, validate_listeners};
use super::{API_VERSION, TranslateOptions, generation_of};
use super::{frontend_tls, listener_tls};
use crate::status::{GatewayStatus, ObjectStatus, StatusBody};
use crate::store::{ObjectKey, Store};

/// A Gateway we serve, with its validated listeners.
#[derive(Clone, Debug)]
pub struct GatewayState {
    pub key: ObjectKey,
    pub generation: i64,
    pub listeners: Vec<ListenerState>,
    /// `spec.tls.frontend` lets clients without a valid certificate in (`AllowInsecureFallback`
    /// by default or on some port): the Gateway says so in `InsecureFrontendValidationMode`.
    pub insecure_frontend_validation: bool,
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
            let mut state = gateway_state(store, key, gw);
            if !options.namespace_labels {
                for listener in &mut state.listeners {
                    listener.allowed_namespaces.labels_unreadable();
                }
            }
            (key.clone(), state)
        })
        .collect()
}

fn gateway_state(store: &Store, key: &ObjectKey, gw: &Gateway) -> GatewayState {
    let mut listeners = validate_listeners(&gw.spec.listeners);
    listener_tls::apply(store, key, gw, &mut listeners);
    GatewayState {
        key: key.clone(),
        generation: generation_of(&gw.metadata),
        listeners,
        insecure_frontend_validation: frontend_tls::allows_insecure_fallback(gw),
    }
}

impl GatewayState {
    pub fn status(&self) -> ObjectStatus {
        let generation = self.generation;
        let invalid: Vec<&str> = self
            .listeners
            .iter()
            .filter(|l| !l.fully_valid())
            .map(|l| l.name.as_str())
            .collect();
        let programmed: Vec<&str> = self
            .listeners
            .iter()
            .filter(|l| l.programmed())
            .map(|l| l.name.as_str())
            .collect();
        // Gateway `ListenersNotValid`: "This can be the reason when "Accepted" is "True" or
        // "False", depending on whether the listener being invalid causes the entire Gateway
        // to not be accepted." We accept the Gateway while one listener can be served.
        let accepted = if programmed.is_empty() {
            let problem = Problem::new(
                c::REASON_LISTENERS_NOT_VALID,
                if self.listeners.is_empty() {
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
            api_version: API_VERSION.to_owned(),
            kind: "Gateway".to_owned(),
            namespace: self.key.namespace.clone(),
            name: self.key.name.clone(),
            status: StatusBody::Gateway(GatewayStatus {
                addresses: Vec::new(),
                conditions,
                listeners: self
                    .listeners
                    .iter()
                    .map(|l| l.status(generation))
                    .collect(),
            }),
        }
    }
}
