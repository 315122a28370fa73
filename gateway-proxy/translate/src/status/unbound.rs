//! Listener status for ports the data plane could not bind.
//!
//! The translator does no IO, so it cannot know that a port is taken; the control loop overlays
//! these conditions on the translated statuses after an apply, and the other listeners keep
//! serving. Spec (Gateway API `ListenerConditionReason`): `Accepted` is `False` with
//! `PortUnavailable`, "used ... when the Listener requests a port that cannot be used on the
//! Gateway ... including: The port is already in use"; `Programmed` is `False` with `Pending`,
//! for a Listener "not yet online and ready to accept client traffic" (the bind is retried).
//! The Gateway's `Accepted` becomes `ListenersNotValid`, `True` while another listener is
//! served and `False` when none is, as the translator does for invalid listeners.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::Serialize;

use super::types::{Condition, GatewayStatus, ObjectStatus, StatusBody};
use crate::ir::Ir;

const ACCEPTED: &str = "Accepted";
const PROGRAMMED: &str = "Programmed";
const REASON_PORT_UNAVAILABLE: &str = "PortUnavailable";
const REASON_PENDING: &str = "Pending";
const REASON_LISTENERS_NOT_VALID: &str = "ListenersNotValid";
const REASON_INVALID: &str = "Invalid";

/// A listener port the data plane could not bind.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UnboundPort {
    /// The IR port (as the Gateway listener declares it).
    pub port: u16,
    /// The socket address that was tried (`--bind-address`, `--port-offset`).
    pub address: SocketAddr,
    pub error: String,
}

/// Marks every listener on an unbound port as not accepted and not programmed, and updates
/// the conditions of the Gateways or ListenerSets that declare them.
pub fn mark_unbound(statuses: &mut [ObjectStatus], ir: &Ir, unbound: &[UnboundPort]) {
    if unbound.is_empty() {
        return;
    }
    // (kind, namespace, name) of the Gateway or ListenerSet → listener name → why.
    let mut affected: BTreeMap<(&str, String, String), BTreeMap<String, String>> = BTreeMap::new();
    for failed in unbound {
        let Some(port) = ir.ports.iter().find(|p| p.port == failed.port) else {
            continue;
        };
        let why = format!(
            "port {} cannot be bound on {}: {}; free the port or choose another one for this \
             listener (the proxy tries again every few seconds and on every change)",
            failed.port, failed.address, failed.error
        );
        for listener in &port.listeners {
            let (owner, kind, name) = match &listener.listener_set {
                Some(set) => (&set.listener_set, "ListenerSet", &set.name),
                None => (&listener.gateway, "Gateway", &listener.name),
            };
            affected
                .entry((kind, owner.namespace.clone(), owner.name.clone()))
                .or_default()
                .insert(name.clone(), why.clone());
        }
    }
    for object in statuses.iter_mut() {
        let StatusBody::Gateway(gateway) = &mut object.status else {
            continue;
        };
        let id = (&*object.kind, object.namespace.clone(), object.name.clone());
        let Some(listeners) = affected.get(&id) else {
            continue;
        };
        mark_gateway(gateway, listeners);
    }
}

fn mark_gateway(gateway: &mut GatewayStatus, unbound: &BTreeMap<String, String>) {
    for listener in &mut gateway.listeners {
        let Some(why) = unbound.get(&listener.name) else {
            continue;
        };
        let generation = observed_generation(&listener.conditions);
        set(
            &mut listener.conditions,
            Condition::new(
                ACCEPTED,
                false,
                REASON_PORT_UNAVAILABLE,
                why.clone(),
                generation,
            ),
        );
        set(
            &mut listener.conditions,
            Condition::new(
                PROGRAMMED,
                false,
                REASON_PENDING,
                format!("Listener is not served: {why}"),
                generation,
            ),
        );
    }
    let programmed: Vec<&str> = gateway
        .listeners
        .iter()
        .filter(|l| is_true(&l.conditions, PROGRAMMED))
        .map(|l| l.name.as_str())
        .collect();
    let names: Vec<&str> = unbound.keys().map(String::as_str).collect();
    let generation = observed_generation(&gateway.conditions);
    let accepted = if programmed.is_empty() {
        Condition::new(
            ACCEPTED,
            false,
            REASON_LISTENERS_NOT_VALID,
            format!(
                "no listener can be served; listeners whose port cannot be bound: {}",
                names.join(", ")
            ),
            generation,
        )
    } else {
        Condition::new(
            ACCEPTED,
            true,
            REASON_LISTENERS_NOT_VALID,
            format!(
                "listeners whose port cannot be bound: {}; listeners served: {}",
                names.join(", "),
                programmed.join(", ")
            ),
            generation,
        )
    };
    set(&mut gateway.conditions, accepted);
    if programmed.is_empty() {
        set(
            &mut gateway.conditions,
            Condition::new(
                PROGRAMMED,
                false,
                REASON_INVALID,
                "no listener is programmed; see the listener conditions",
                generation,
            ),
        );
    }
}

/// Replaces the condition of the same type, or adds it.
fn set(conditions: &mut Vec<Condition>, condition: Condition) {
    match conditions.iter_mut().find(|c| c.type_ == condition.type_) {
        Some(existing) => *existing = condition,
        None => conditions.push(condition),
    }
}

fn is_true(conditions: &[Condition], type_: &str) -> bool {
    conditions
        .iter()
        .any(|c| c.type_ == type_ && c.status == "True")
}

fn observed_generation(conditions: &[Condition]) -> i64 {
    conditions
        .iter()
        .map(|c| c.observed_generation)
        .max()
        .unwrap_or(0)
}
