//! Listeners of different Gateways served by one proxy (a class's shared fleet, or standalone
//! mode with several Gateways) share its ports, so they must be distinct across Gateways as
//! the Gateway API requires them to be within one ("Distinct Listeners" on
//! `Gateway.spec.listeners`): on one port and transport, the same protocol (HTTPS and TLS may
//! mix) and, for HTTP, HTTPS and TLS, different hostnames.
//!
//! A conflict is never resolved silently. The listener of the older Gateway (creation time,
//! then `namespace/name`) keeps the port; the newer Gateway's listener is `Conflicted=True`
//! (`ProtocolConflict` or `HostnameConflict`), `Accepted=False` and not programmed, with a
//! message naming the listener that holds the port, and the Gateway reports it like any other
//! listener problem (`ListenersNotValid`).

use std::collections::BTreeMap;

use super::conditions::{self as c, Problem};
use super::gateway::GatewayState;
use super::listener::{distinct_by_hostname, is_udp, share_a_port};
use crate::store::{ObjectKey, Store};

/// A listener that holds a port.
struct Holder<'a> {
    gateway: &'a ObjectKey,
    name: String,
    protocol: String,
    port: u16,
    hostname: Option<String>,
}

/// Marks the listeners that conflict with a listener of an older Gateway.
pub fn mark_conflicts(store: &Store, gateways: &mut BTreeMap<ObjectKey, GatewayState>) {
    if gateways.len() < 2 {
        return;
    }
    let mut order: Vec<ObjectKey> = gateways.keys().cloned().collect();
    // Oldest first; a Gateway without a creation time (standalone files) sorts by name only.
    order.sort_by_cached_key(|key| {
        let created = store
            .gateways
            .get(key)
            .and_then(|g| g.metadata.creation_timestamp.clone());
        (created.is_none(), created, key.clone())
    });
    let mut holders: Vec<Holder<'_>> = Vec::new();
    let mut found: Vec<(ObjectKey, usize, Problem)> = Vec::new();
    for key in &order {
        let Some(gateway) = gateways.get(key) else {
            continue;
        };
        for (index, listener) in gateway.listeners.iter().enumerate() {
            if !listener.programmed() {
                continue;
            }
            let clash = holders.iter().find_map(|held| {
                if held.gateway == key
                    || held.port != listener.port
                    || is_udp(&held.protocol) != is_udp(&listener.protocol)
                {
                    return None;
                }
                let holder = format!(
                    "listener {} of Gateway {} (older)",
                    held.name, held.gateway
                );
                if !share_a_port(&held.protocol, &listener.protocol) {
                    return Some(Problem::new(
                        c::REASON_PROTOCOL_CONFLICT,
                        format!(
                            "port {} is used with protocol {} by {holder}, served by the same proxy; give this listener another port",
                            listener.port, held.protocol
                        ),
                    ));
                }
                if !distinct_by_hostname(&listener.protocol) {
                    return Some(Problem::new(
                        c::REASON_PROTOCOL_CONFLICT,
                        format!(
                            "port {} is used by {holder}, served by the same proxy; {} listeners need a port each",
                            listener.port, listener.protocol
                        ),
                    ));
                }
                (held.hostname == listener.hostname).then(|| {
                    Problem::new(
                        c::REASON_HOSTNAME_CONFLICT,
                        format!(
                            "port {} and hostname {} are used by {holder}, served by the same proxy; change the hostname or port",
                            listener.port,
                            listener.hostname.as_deref().unwrap_or("(any)")
                        ),
                    )
                })
            });
            match clash {
                Some(problem) => found.push((key.clone(), index, problem)),
                None => holders.push(Holder {
                    gateway: key,
                    name: listener.name.clone(),
                    protocol: listener.protocol.clone(),
                    port: listener.port,
                    hostname: listener.hostname.clone(),
                }),
            }
        }
    }
    drop(holders);
    for (key, index, problem) in found {
        if let Some(listener) = gateways
            .get_mut(&key)
            .and_then(|g| g.listeners.get_mut(index))
        {
            listener.conflicted = Some(problem);
        }
    }
}
