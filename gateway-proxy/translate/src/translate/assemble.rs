//! Builds the IR's ports, listeners and virtual hosts from the route entries of each listener.

use std::collections::{BTreeMap, HashMap};

use super::gateway::GatewayState;
use super::hostname;
use super::l4_routes::{self, L4Candidate, Superseded};
use super::precedence::{self, Ranked};
use crate::ir::{ListenerIr, ListenerSetListenerIr, PortIr, PortProtocol, VirtualHostIr};
use crate::store::ObjectKey;

/// A listener's route entries by effective hostname. Hashed, not ordered: every route is
/// placed on every translation, and with thousands of hostnames the searches of an ordered
/// map (each a run of string comparisons) were the largest part of a change's translation
/// (`docs/benchmarks.md`, "Route propagation at 5,000 routes: the cost of each change").
/// [`virtual_hosts`] sorts once.
type ByHost = HashMap<String, Vec<Ranked>, foldhash::fast::RandomState>;

/// Route entries collected per listener, then per effective hostname.
#[derive(Default)]
pub struct Collected {
    /// By Gateway, listener index and effective hostname.
    entries: BTreeMap<ObjectKey, BTreeMap<usize, ByHost>>,
    /// TLSRoutes, TCPRoutes and UDPRoutes placed on each listener, before precedence.
    l4: BTreeMap<(ObjectKey, usize), Vec<L4Candidate>>,
}

impl Collected {
    pub fn add(&mut self, gateway: &ObjectKey, listener: usize, hostname: &str, entry: Ranked) {
        // Looked up before inserting: keys are copied only for a new Gateway or hostname.
        let listeners = match self.entries.get_mut(gateway) {
            Some(listeners) => listeners,
            None => self.entries.entry(gateway.clone()).or_default(),
        };
        let hosts = listeners.entry(listener).or_default();
        match hosts.get_mut(hostname) {
            Some(entries) => entries.push(entry),
            None => {
                hosts.insert(hostname.to_owned(), vec![entry]);
            }
        }
    }

    /// Places an L4 route on a listener; precedence between the routes of one listener is
    /// decided in [`Collected::into_ports`].
    pub fn add_l4(&mut self, gateway: &ObjectKey, listener: usize, candidate: L4Candidate) {
        self.l4
            .entry((gateway.clone(), listener))
            .or_default()
            .push(candidate);
    }

    /// One [`PortIr`] per port and transport of the programmed listeners, sorted by port (a
    /// TCP-based port before a UDP port of the same number); listeners most specific hostname
    /// first.
    ///
    /// Listeners that share a port and transport share its protocol: otherwise they conflict,
    /// within a Gateway (`listener`) and across the Gateways one proxy serves
    /// (`shared_ports`), and the losers are not programmed. Should two still disagree, the
    /// port keeps the protocol of the first by `namespace/name`.
    ///
    /// With the ports, what older L4 routes take from newer ones on each listener.
    pub fn into_ports(
        mut self,
        gateways: &BTreeMap<ObjectKey, GatewayState>,
    ) -> (Vec<PortIr>, Superseded) {
        let mut ports: BTreeMap<(u16, bool), (PortProtocol, Vec<ListenerIr>)> = BTreeMap::new();
        let mut superseded = Superseded::new();
        for (key, gateway) in gateways {
            for (index, listener) in gateway.listeners.iter().enumerate() {
                if !listener.programmed() {
                    if listener.acme_port && listener.accepted.is_none() {
                        // A TLS port with no listener served yet, so the CA's TLS-ALPN-01
                        // validation can connect (RFC 8737); every other handshake is
                        // refused as for an unknown name.
                        ports
                            .entry((listener.port, false))
                            .or_insert_with(|| (PortProtocol::Tls, Vec::new()));
                    }
                    continue;
                }
                let by_host = self
                    .entries
                    .get_mut(key)
                    .and_then(|listeners| listeners.remove(&index))
                    .unwrap_or_default();
                let protocol = port_protocol(&listener.protocol);
                let (port_protocol, listeners) = ports
                    .entry((listener.port, protocol == PortProtocol::Udp))
                    .or_insert_with(|| (protocol, Vec::new()));
                if *port_protocol != protocol {
                    // Gateways merged onto one proxy that use a port with protocols that
                    // cannot share it: the first Gateway (by namespace/name) keeps the port.
                    continue;
                }
                let (name, listener_set) = match &listener.origin {
                    Some(set) => (
                        format!("{set}/{}", listener.name),
                        Some(ListenerSetListenerIr {
                            listener_set: set.clone(),
                            name: listener.name.clone(),
                        }),
                    ),
                    None => (listener.name.clone(), None),
                };
                listeners.push(ListenerIr {
                    gateway: key.clone(),
                    name,
                    listener_set,
                    hostname: listener.hostname.clone(),
                    virtual_hosts: virtual_hosts(by_host),
                    tls: listener.tls.clone(),
                    l4_routes: l4_routes::winners(
                        self.l4.remove(&(key.clone(), index)).unwrap_or_default(),
                        &match &listener.origin {
                            Some(set) => format!("ListenerSet {set}/{}", listener.name),
                            None => format!("{key}/{}", listener.name),
                        },
                        &mut superseded,
                    ),
                    serves_tls_routes: listener.protocol == "TLS",
                });
            }
        }
        let ports = ports
            .into_iter()
            .map(|((port, _udp), (protocol, mut listeners))| {
                listeners.sort_by(|a, b| {
                    hostname::most_specific_first(
                        a.hostname.as_deref().unwrap_or(hostname::ANY),
                        b.hostname.as_deref().unwrap_or(hostname::ANY),
                    )
                    .then_with(|| a.gateway.cmp(&b.gateway))
                    .then_with(|| a.name.cmp(&b.name))
                });
                PortIr {
                    port,
                    protocol,
                    listeners,
                }
            })
            .collect();
        (ports, superseded)
    }
}

/// What a port speaks, from the protocol of a listener on it.
fn port_protocol(listener_protocol: &str) -> PortProtocol {
    match listener_protocol {
        "HTTPS" | "TLS" => PortProtocol::Tls,
        "TCP" => PortProtocol::Tcp,
        "UDP" => PortProtocol::Udp,
        _ => PortProtocol::Http,
    }
}

/// Virtual hosts of one listener, most specific first.
///
/// HTTPRoute `spec.hostnames`: when routes have intersecting hostnames, "precedence must be
/// given to rules from the HTTPRoute with the largest number of characters in a matching
/// non-wildcard hostname [then] in a matching hostname. If ties exist across multiple
/// Routes, the matching precedence rules for HTTPRouteMatches takes over." So the rules of
/// a less specific hostname still apply to a more specific one, after its own (a
/// `*.example.com` route is tried for `foo.example.com` when no `foo.example.com` rule
/// matched). Each virtual host lists only its own entries, in match precedence; the data plane
/// tries the virtual hosts matching a request from the most specific to the least, so nothing
/// is copied between virtual hosts and translation stays linear in the number of routes.
fn virtual_hosts(by_host: ByHost) -> Vec<VirtualHostIr> {
    // By specificity, then alphabetically among equals: `most_specific_first`. Hostnames are
    // distinct, so the order is total and does not depend on the map's.
    let mut hosts: Vec<_> = by_host
        .into_iter()
        .map(|(host, entries)| (hostname::specificity(&host), host, entries))
        .collect();
    hosts.sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
    hosts
        .into_iter()
        .map(|(_, hostname, mut entries)| {
            entries.sort_by(precedence::compare);
            // A new list rather than `collect`, which would keep the larger allocation of the
            // `Ranked` list for the whole life of the IR.
            let mut routes = Vec::with_capacity(entries.len());
            routes.extend(entries.into_iter().map(|r| r.entry));
            VirtualHostIr { hostname, routes }
        })
        .collect()
}
