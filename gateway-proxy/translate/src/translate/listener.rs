//! Gateway listeners: protocol support, route kinds, conflicts, and their status.

use std::sync::Arc;

use gantry_crds::gateway::gateways::GatewayListeners;

use super::allowed_routes::AllowedNamespaces;
use super::conditions::{self as c, Problem};
use super::hostname;
use super::listener_tls;
use crate::ir::ListenerTlsIr;
use crate::status::{Condition, ListenerStatus, RouteGroupKind};
use crate::store::ObjectKey;

/// The Gateway API group, the default group of route kinds.
pub const GATEWAY_GROUP: &str = gantry_crds::GATEWAY_GROUP;

/// Protocols the Gateway API defines. Listeners with any of them take part in conflict
/// detection even when the proxy does not serve them yet, so their status does not change
/// meaning when support lands.
const KNOWN_PROTOCOLS: &[&str] = &["HTTP", "HTTPS", "TLS", "TCP", "UDP"];

/// The route kinds an HTTP or HTTPS listener serves. GRPCRoute: "Implementations supporting
/// GRPCRoute with the HTTP ProtocolType MUST support HTTP/2 over cleartext TCP (h2c) without an
/// initial upgrade from HTTP/1.1, i.e. with prior knowledge", and with HTTPS "MUST accept
/// HTTP/2 connections without an initial upgrade from HTTP/1.1, i.e. via ALPN"; HTTP listeners
/// serve HTTP/1.1 and h2c with prior knowledge on one port.
pub const HTTP_ROUTE_KINDS: &[&str] = &["HTTPRoute", "GRPCRoute"];

/// Protocols this proxy serves today, with the route kinds each accepts.
fn served_kinds(protocol: &str) -> Option<&'static [&'static str]> {
    match protocol {
        "HTTP" | "HTTPS" => Some(HTTP_ROUTE_KINDS),
        "TLS" => Some(&["TLSRoute"]),
        "TCP" => Some(&["TCPRoute"]),
        "UDP" => Some(&["UDPRoute"]),
        _ => None,
    }
}

/// Protocols listed in the `UnsupportedProtocol` message.
const SERVED_PROTOCOLS: &str = "HTTP, HTTPS, TLS, TCP, UDP";

/// Protocols whose listeners are told apart by hostname on a shared port.
pub(super) fn distinct_by_hostname(protocol: &str) -> bool {
    matches!(protocol, "HTTP" | "HTTPS" | "TLS")
}

/// Whether a listener of this protocol listens on a UDP socket (all others use TCP).
pub fn is_udp(protocol: &str) -> bool {
    protocol == "UDP"
}

/// Protocols that can share a port: HTTPS and TLS listeners are both chosen by the
/// ClientHello's SNI, so they mix on one port (and must then differ in hostname); any other
/// protocol needs a port of its own.
pub(super) fn share_a_port(a: &str, b: &str) -> bool {
    a == b || (listener_tls::has_tls(a) && listener_tls::has_tls(b))
}

/// One listener after validation.
#[derive(Clone, Debug)]
pub struct ListenerState {
    pub name: String,
    pub protocol: String,
    pub port: u16,
    pub hostname: Option<String>,
    pub supported_kinds: Vec<RouteGroupKind>,
    pub allowed_namespaces: AllowedNamespaces,
    /// Why the listener is not accepted, if it is not.
    pub accepted: Option<Problem>,
    /// Why the listener conflicts with another, if it does.
    pub conflicted: Option<Problem>,
    /// Why a reference (route kinds) could not be resolved, if one could not.
    pub resolved_refs: Option<Problem>,
    /// Why an accepted listener still cannot be served (an HTTPS listener without a valid
    /// certificate), if it cannot.
    pub not_programmed: Option<Problem>,
    /// TLS of an HTTPS or TLS listener, once its references are resolved.
    pub tls: Option<Arc<ListenerTlsIr>>,
    /// Not programmed, but its port must accept connections for the CA's TLS-ALPN-01
    /// validation of the certificate it waits for.
    pub acme_port: bool,
    /// Routes attached (counted whether or not the listener is accepted).
    pub attached_routes: i32,
    /// The ListenerSet that declares this listener; `None` for the Gateway's own listeners.
    pub origin: Option<ObjectKey>,
}

impl ListenerState {
    /// Whether routes on this listener are served.
    pub fn programmed(&self) -> bool {
        self.accepted.is_none()
            && self.conflicted.is_none()
            && self.not_programmed.is_none()
            && !self.supported_kinds.is_empty()
    }

    /// Whether this is a `TLS` listener in `Passthrough` mode: the client's TLS goes to the
    /// backend untouched, so the proxy never originates TLS there.
    pub fn is_tls_passthrough(&self) -> bool {
        self.protocol == "TLS"
            && self
                .tls
                .as_ref()
                .is_some_and(|tls| tls.mode == crate::ir::TlsModeIr::Passthrough)
    }

    /// Adds a `ResolvedRefs=False` problem: the first one gives the reason, the message
    /// lists them all.
    pub fn add_resolved_refs_problem(&mut self, problem: Problem) {
        match &mut self.resolved_refs {
            Some(first) => {
                let message = first.message.to_mut();
                message.push_str("; ");
                message.push_str(&problem.message);
            }
            None => self.resolved_refs = Some(problem),
        }
    }

    /// Whether every condition is healthy.
    pub fn fully_valid(&self) -> bool {
        self.accepted.is_none() && self.conflicted.is_none() && self.resolved_refs.is_none()
    }

    /// The namespace `allowedRoutes.namespaces.from: Same` means: the ListenerSet's for its
    /// listeners (ListenerEntry `allowedRoutes` defaults to routes "in the same namespace"
    /// as the ListenerSet, GEP-1713 conformance `ListenerSetAllowedRoutesSameNamespace`),
    /// else the Gateway's.
    pub fn owner_namespace<'a>(&'a self, gateway: &'a ObjectKey) -> &'a str {
        self.origin.as_ref().unwrap_or(gateway).namespace.as_str()
    }

    /// Whether the listener is accepted and not conflicted (a ListenerSet counts as accepted
    /// while one of its listeners is).
    pub fn accepted(&self) -> bool {
        self.accepted.is_none() && self.conflicted.is_none()
    }

    pub fn supports_kind(&self, group: &str, kind: &str) -> bool {
        self.supported_kinds
            .iter()
            .any(|k| k.group.as_deref().unwrap_or(GATEWAY_GROUP) == group && k.kind == kind)
    }

    pub fn status(&self, generation: i64) -> ListenerStatus {
        // Gateway `spec.listeners`: "ALL indistinct Listeners must not be accepted", and
        // their status "SHOULD indicate which Listeners are conflicted and not Accepted".
        let accepted = match (&self.accepted, &self.conflicted) {
            (Some(p), _) | (None, Some(p)) => c::not_ok(c::ACCEPTED, p, generation),
            (None, None) => c::ok(
                c::ACCEPTED,
                c::REASON_ACCEPTED,
                "Listener is accepted",
                generation,
            ),
        };
        let programmed = if self.programmed() {
            c::ok(
                c::PROGRAMMED,
                c::REASON_PROGRAMMED,
                "Listener is programmed",
                generation,
            )
        } else if let (Some(conflict), Some(_), None) =
            (&self.conflicted, &self.origin, &self.accepted)
        {
            // A conflicted ListenerSet listener: `Programmed=False` with the conflict's reason
            // (conformance `ListenerSetHostnameConflict` expects `HostnameConflict` on
            // `Accepted`, `Programmed` and `Conflicted` alike).
            let problem = Problem::new(
                conflict.reason,
                format!("Listener is not served: {}", conflict.message),
            );
            c::not_ok(c::PROGRAMMED, &problem, generation)
        } else {
            let why = [
                &self.accepted,
                &self.conflicted,
                &self.not_programmed,
                &self.resolved_refs,
            ]
            .into_iter()
            .flatten()
            .map(|p| &*p.message)
            .next()
            .unwrap_or("Listener supports no route kind");
            // Accepted, and waiting only for its certificate (ACME): `Pending`, "the Listener
            // is waiting for some resources"; anything else is `Invalid`.
            let reason = match (&self.accepted, &self.conflicted, &self.not_programmed) {
                (None, None, Some(p)) if p.reason == c::REASON_PENDING => c::REASON_PENDING,
                _ => c::REASON_INVALID,
            };
            let problem = Problem::new(reason, format!("Listener is not served: {why}"));
            c::not_ok(c::PROGRAMMED, &problem, generation)
        };
        let resolved = match &self.resolved_refs {
            None => c::ok(
                c::RESOLVED_REFS,
                c::REASON_RESOLVED_REFS,
                "All references are resolved",
                generation,
            ),
            Some(p) => c::not_ok(c::RESOLVED_REFS, p, generation),
        };
        let conflicted = match &self.conflicted {
            None => Condition::new(
                c::CONFLICTED,
                false,
                c::REASON_NO_CONFLICTS,
                "No conflicts",
                generation,
            ),
            Some(p) => Condition::new(c::CONFLICTED, true, p.reason, p.message.clone(), generation),
        };
        ListenerStatus {
            name: self.name.clone(),
            supported_kinds: self.supported_kinds.clone(),
            attached_routes: self.attached_routes,
            conditions: vec![accepted, programmed, resolved, conflicted],
        }
    }
}

/// Validates the merged listener list of a Gateway: its own listeners (first group, origin
/// `None`), then each attached ListenerSet's, in the GEP-1713 precedence order ("parent"
/// Gateway, then ListenerSets oldest first, then by `{namespace}/{name}`).
///
/// GEP-1713 "Listener Validation": implementations "MUST treat the parent Gateways as having
/// the merged list of all listeners from itself and attached ListenerSets and validation of
/// this list of listeners MUST behave the same as if the list were part of a single Gateway
/// with the relaxed listener name constraints" (names need only be unique within one
/// resource), and on a conflict "the first Listener on the precedence list MUST be accepted,
/// and should not have a `Conflicted` condition, while the conflicting listeners MUST have a
/// `Conflicted` condition set to True". So a listener conflicts with the listeners of its own
/// resource (all of them marked, as within one Gateway) and with those of resources before
/// it, never with those after it.
pub fn validate_merged(groups: &[(Option<&ObjectKey>, &[GatewayListeners])]) -> Vec<ListenerState> {
    let flat: Vec<(usize, &GatewayListeners)> = groups
        .iter()
        .enumerate()
        .flat_map(|(g, (_, listeners))| listeners.iter().map(move |l| (g, l)))
        .collect();
    let mut states: Vec<ListenerState> = Vec::with_capacity(flat.len());
    for (origin, listeners) in groups {
        for l in *listeners {
            let mut state = validate_one(l);
            state.origin = origin.cloned();
            states.push(state);
        }
    }
    for (i, state) in states.iter_mut().enumerate() {
        state.conflicted = conflict_of(&flat, i);
    }
    states
}

fn validate_one(l: &GatewayListeners) -> ListenerState {
    let port = u16::try_from(l.port).ok().filter(|p| *p != 0);
    let mut accepted = None;
    if port.is_none() {
        accepted = Some(Problem::new(
            c::REASON_PORT_UNAVAILABLE,
            format!(
                "port {} is out of range; use a port from 1 to 65535",
                l.port
            ),
        ));
    }
    let served = served_kinds(&l.protocol);
    if served.is_none() {
        accepted = accepted.or(Some(Problem::new(
            c::REASON_UNSUPPORTED_PROTOCOL,
            format!(
                "protocol {} is not a protocol this proxy knows; supported protocols: {SERVED_PROTOCOLS}",
                l.protocol
            ),
        )));
    }
    if let Some(h) = &l.hostname
        && !hostname::is_valid(h)
    {
        accepted = accepted.or(Some(Problem::new(
            c::REASON_UNSUPPORTED_VALUE,
            format!(
                "hostname {h:?} is not a valid DNS name (an IP address is not allowed; a wildcard must be the whole first label, as in *.example.com)"
            ),
        )));
    }
    if let Some(problem) = listener_tls::check_tls_field(l) {
        accepted = accepted.or(Some(problem));
    }
    let served = served.unwrap_or_default();
    let (supported_kinds, resolved_refs) = route_kinds(l, served);
    ListenerState {
        name: l.name.clone(),
        protocol: l.protocol.clone(),
        port: port.unwrap_or(0),
        hostname: l.hostname.clone(),
        supported_kinds,
        allowed_namespaces: AllowedNamespaces::from_spec(
            l.allowed_routes
                .as_ref()
                .and_then(|a| a.namespaces.as_ref()),
        ),
        accepted,
        conflicted: None,
        resolved_refs,
        not_programmed: None,
        tls: None,
        acme_port: false,
        attached_routes: 0,
        origin: None,
    }
}

/// `allowedRoutes.kinds`: the supported subset, and `InvalidRouteKinds` naming the rest.
/// Without kinds, the protocol's default kinds apply.
fn route_kinds(l: &GatewayListeners, served: &[&str]) -> (Vec<RouteGroupKind>, Option<Problem>) {
    let to_kind = |k: &str| RouteGroupKind {
        group: Some(GATEWAY_GROUP.to_owned()),
        kind: k.to_owned(),
    };
    let listed = l
        .allowed_routes
        .as_ref()
        .and_then(|a| a.kinds.as_ref())
        .filter(|k| !k.is_empty());
    let Some(listed) = listed else {
        return (served.iter().map(|k| to_kind(k)).collect(), None);
    };
    let mut supported: Vec<RouteGroupKind> = Vec::new();
    let mut invalid = Vec::new();
    for k in listed {
        let group = k.group.as_deref().unwrap_or(GATEWAY_GROUP);
        if group == GATEWAY_GROUP && served.contains(&k.kind.as_str()) {
            let kind = to_kind(&k.kind);
            if !supported.contains(&kind) {
                supported.push(kind);
            }
        } else {
            invalid.push(format!("{group}/{}", k.kind));
        }
    }
    let problem = (!invalid.is_empty()).then(|| {
        Problem::new(
            c::REASON_INVALID_ROUTE_KINDS,
            format!(
                "unsupported route kinds: {}; a {} listener supports: {}",
                invalid.join(", "),
                l.protocol,
                if served.is_empty() {
                    "none yet".to_owned()
                } else {
                    served.join(", ")
                }
            ),
        )
    });
    (supported, problem)
}

/// Gateway `spec.listeners` ("Distinct Listeners"): listeners sharing a port must share a
/// protocol, HTTPS and TLS aside, which SNI tells apart on one port (else
/// `ProtocolConflict`), and for HTTP, HTTPS and TLS must differ in hostname (else
/// `HostnameConflict`, also between an HTTPS and a TLS listener: SNI could not choose);
/// two TCP or two UDP listeners cannot share a port at all. A UDP listener and a listener of a
/// TCP-based protocol are distinct on one port number (GEP-2644): they listen on different
/// sockets and never see each other's traffic. No conflicting listener wins: all of them are
/// marked. Listeners with a protocol outside the Gateway API's set, or an invalid port, take
/// no part.
fn conflict_of(listeners: &[(usize, &GatewayListeners)], i: usize) -> Option<Problem> {
    let (my_group, me) = listeners[i];
    if !KNOWN_PROTOCOLS.contains(&me.protocol.as_str()) {
        return None;
    }
    let peers: Vec<(usize, &GatewayListeners)> = listeners
        .iter()
        .enumerate()
        .filter(|(j, (group, l))| {
            *j != i
                && *group <= my_group
                && l.port == me.port
                && KNOWN_PROTOCOLS.contains(&l.protocol.as_str())
                && is_udp(&l.protocol) == is_udp(&me.protocol)
        })
        .map(|(_, peer)| *peer)
        .collect();
    // A peer of another resource is named only as "a listener of higher precedence":
    // GEP-1713 asks to "avoid setting any Condition that exposes information from other
    // users, but still provide meaningful information of why a ListenerSet was not accepted".
    let other_name = |group: usize, l: &GatewayListeners| {
        if group == my_group {
            l.name.clone()
        } else if group == 0 {
            "a listener of the Gateway".to_owned()
        } else {
            "a listener of an older ListenerSet (or one before it by namespace/name)".to_owned()
        }
    };
    // "listeners a and b", or "listener a and a listener of the Gateway".
    let pair = |group: usize, l: &GatewayListeners, annotate: bool| {
        let (mine, theirs) = if annotate {
            (
                format!("{} ({})", me.name, me.protocol),
                format!("{} ({})", other_name(group, l), l.protocol),
            )
        } else {
            (me.name.clone(), other_name(group, l))
        };
        let noun = if group == my_group {
            "listeners"
        } else {
            "listener"
        };
        format!("{noun} {mine} and {theirs}")
    };
    if let Some(other) = peers
        .iter()
        .find(|(_, l)| !share_a_port(&l.protocol, &me.protocol))
    {
        return Some(Problem::new(
            c::REASON_PROTOCOL_CONFLICT,
            format!(
                "port {} is used with protocol {} by listener {} and {} by {}{}; give each protocol its own port",
                me.port,
                me.protocol,
                me.name,
                other.1.protocol,
                if other.0 == my_group { "listener " } else { "" },
                other_name(other.0, other.1)
            ),
        ));
    }
    if !distinct_by_hostname(&me.protocol) {
        return peers.first().map(|other| {
            Problem::new(
                c::REASON_PROTOCOL_CONFLICT,
                format!(
                    "{} {} share port {}; {} listeners need a port each",
                    me.protocol,
                    pair(other.0, other.1, false),
                    me.port,
                    me.protocol
                ),
            )
        });
    }
    peers
        .iter()
        .find(|(_, l)| l.hostname == me.hostname)
        .map(|other| {
            let host = me.hostname.as_deref().unwrap_or("(any)");
            let (_, peer) = *other;
            if peer.protocol != me.protocol {
                return Problem::new(
                    c::REASON_HOSTNAME_CONFLICT,
                    format!(
                        "{} share port {} and hostname {host}, so SNI cannot choose between them; change the hostname or port of one",
                        pair(other.0, peer, true),
                        me.port
                    ),
                );
            }
            Problem::new(
                c::REASON_HOSTNAME_CONFLICT,
                format!(
                    "{} share port {}, protocol {} and hostname {host}; change the hostname or port of one",
                    pair(other.0, peer, false),
                    me.port,
                    me.protocol
                ),
            )
        })
}
