//! The walk: from the port and scheme to a listener, from the listener to a route entry, as
//! the data plane goes (the same tables and lookups), then the rule's outcomes and every other
//! candidate's reason.

use std::collections::BTreeSet;
use std::sync::Arc;

use gantry_translate::ir::{L4RouteIr, ListenerIr, PortIr, PortProtocol};
use gantry_translate::store::{ObjectKey, Store};
use gantry_translate::translate::Translation;

use super::report::{
    Answerer, BackendSummary, Candidate, Explanation, ListenerSummary, Outcome, RequestSummary,
    RouteSummary, Why,
};
use super::request::{Prepared, Query, RequestError, Scheme};
use super::{attachment, candidates, rule};
use crate::filters::FilterContext;
use crate::routing::normalize::PathOptions;
use crate::routing::tls::TlsAction;
use crate::routing::{ListenerTable, Lookup, PortTable, RequestView, Snapshot, winner};
use crate::server::errors::ProxyError;
use crate::server::{grpc_status, request_checks};

/// What `explain` works on: the objects, their translation and the compiled snapshot.
pub struct Loaded<'a> {
    pub store: &'a Store,
    pub translation: &'a Translation,
    pub snapshot: &'a Snapshot,
}

/// Explains `query` against a loaded configuration. `gateway` narrows the listeners
/// considered when several Gateways share the port.
pub fn explain_loaded(
    loaded: &Loaded<'_>,
    query: &Query,
    gateway: Option<&ObjectKey>,
) -> Result<Explanation, RequestError> {
    let prepared = query.prepare()?;
    let mut out = Explanation {
        request: RequestSummary {
            method: prepared.parts.method.to_string(),
            scheme: prepared.scheme.as_str().to_owned(),
            port: prepared.port,
            sni: prepared.sni.clone(),
            client_ip: prepared.client.to_string(),
            ..RequestSummary::default()
        },
        ..Explanation::default()
    };
    Walk {
        loaded,
        gateway,
        out: &mut out,
    }
    .run(prepared);
    Ok(out)
}

struct Walk<'l, 'o> {
    loaded: &'l Loaded<'l>,
    gateway: Option<&'l ObjectKey>,
    out: &'o mut Explanation,
}

impl Walk<'_, '_> {
    fn run(mut self, mut prepared: Prepared) {
        let snapshot = self.loaded.snapshot;
        let port = prepared.port;
        let Some(port_ir) = snapshot.ir.ports.iter().find(|p| p.port == port) else {
            let ports: Vec<String> = snapshot.port_numbers().map(|p| p.to_string()).collect();
            return self.no_http(
                "noListener",
                format!(
                    "no listener is on port {port}: the connection is refused (ports served: {})",
                    if ports.is_empty() {
                        "none".to_owned()
                    } else {
                        ports.join(", ")
                    }
                ),
            );
        };
        if let Some(gateway) = self.gateway
            && !port_ir.listeners.iter().any(|l| &l.gateway == gateway)
        {
            self.note(format!(
                "Gateway {gateway} has no listener on port {port}; the port's listeners belong to {}",
                gateways(port_ir)
            ));
        }
        // The connection: which listener the SNI selects on a TLS port.
        let tls_listener = match (port_ir.protocol, prepared.scheme) {
            (PortProtocol::Http, Scheme::Http) => None,
            (PortProtocol::Tls, Scheme::Https) => match self.select_tls(port_ir, &prepared) {
                Some(selected) => Some(selected),
                None => return,
            },
            (PortProtocol::Http, Scheme::Https) => {
                return self.no_http(
                    "notTls",
                    format!(
                        "port {port} serves plain HTTP: there is no TLS handshake for an https URL"
                    ),
                );
            }
            (PortProtocol::Tls, Scheme::Http) => {
                return self.no_http(
                    "notTls",
                    format!(
                        "port {port} serves TLS (HTTPS or TLS listeners): a plain HTTP request \
                         is not a ClientHello and the connection is closed"
                    ),
                );
            }
            (PortProtocol::Tcp, _) => return self.tcp(port_ir),
            (PortProtocol::Udp, _) => {
                return self.no_http(
                    "notHttp",
                    format!("port {port} is a UDP port: UDPRoutes forward datagrams, not HTTP"),
                );
            }
        };
        // The request head: checked, path normalised, host, as the pipeline does.
        let host = match request_checks::prepare(&mut prepared.parts, &PathOptions::default()) {
            Ok(host) => host,
            Err(refusal) => {
                let error = ProxyError::Refused(refusal);
                return self.proxy_answers(&error, &prepared, error.to_string());
            }
        };
        self.out.request.host = Some(host.clone());
        self.out.request.path = Some(prepared.parts.uri.path().to_owned());
        self.out.request.query = prepared.parts.uri.query().map(str::to_owned);
        let Some(table) = snapshot.port(port) else {
            return self.proxy_answers(
                &ProxyError::NoRoute,
                &prepared,
                "no HTTP routes on the port".into(),
            );
        };
        let parts = &prepared.parts;
        let view = RequestView {
            method: &parts.method,
            path: parts.uri.path(),
            query: parts.uri.query(),
            headers: &parts.headers,
        };
        let found = match &tls_listener {
            Some((gateway, name)) => table.lookup_on_listener(gateway, name, &host, &view),
            None => table.lookup(&host, &view),
        };
        let (listener, entry) = match found {
            Lookup::Route(listener, entry) => (listener, Some(entry)),
            Lookup::NoRoute(listener) => (listener, None),
            Lookup::NoListener => {
                self.out.candidates = listeners_not_matching(port_ir, &host);
                let message =
                    format!("no listener on port {port} has a hostname matching {host}: 404");
                return self.proxy_answers(&ProxyError::NoRoute, &prepared, message);
            }
            Lookup::Misdirected => {
                let (gateway, name) = tls_listener.unwrap_or_default();
                // The listener the host belongs to, as a connection without SNI would find it.
                let owner = match table.lookup(&host, &view) {
                    Lookup::Route(l, _) | Lookup::NoRoute(l) => Some(l),
                    _ => None,
                };
                let owner_text = owner.map_or("another listener".to_owned(), |l| {
                    format!("listener {} of Gateway {}", l.name, l.gateway)
                });
                if let Some(l) = find(table, &gateway, &name) {
                    self.listener(port_ir, table, l);
                }
                let message = format!(
                    "the connection's server name selected listener {name} of Gateway {gateway}, \
                     but host {host} belongs to {owner_text}: 421 Misdirected Request (Gateway \
                     listeners[].hostname; RFC 9110 §15.5.20), the client must open a new \
                     connection"
                );
                if let Some(l) = owner {
                    let (namespace, gateway) = l.gateway.split_once('/').unwrap_or_default();
                    let hostname = port_ir
                        .listeners
                        .iter()
                        .find(|i| i.gateway.to_string() == *l.gateway && i.name == l.name)
                        .and_then(|i| i.hostname.clone());
                    self.out.candidates.push(Candidate {
                        kind: "Listener".to_owned(),
                        namespace: namespace.to_owned(),
                        name: format!("{gateway}/{}", l.name),
                        rule: None,
                        match_index: None,
                        matched: None,
                        hostname,
                        reason: Why::Listener,
                        message: format!(
                            "it takes host {host}, but the connection's server name chose another \
                             listener"
                        ),
                    });
                }
                return self.proxy_answers(&ProxyError::Misdirected, &prepared, message);
            }
        };
        let listener_ir = self.listener(port_ir, table, listener);
        if let Some(gateway) = self.gateway
            && *listener.gateway != gateway.to_string()
        {
            self.note(format!(
                "the listener taking this host belongs to Gateway {}, not {gateway}",
                listener.gateway
            ));
        }
        // Every entry of the listener, tried with the matcher's own predicates.
        let trials = listener.trials(&host, &view);
        let chosen = winner(&trials);
        let same = match (chosen, entry) {
            (Some(t), Some(e)) => std::ptr::eq(t.entry, e),
            (None, None) => true,
            _ => false,
        };
        if !same {
            self.note(
                "internal: the walk over every entry disagrees with the data plane's lookup; \
                 the outcome shown is the lookup's (please report this)"
                    .to_owned(),
            );
        }
        if let Some(listener_ir) = listener_ir {
            self.out.candidates = candidates::entries(
                &trials,
                chosen.filter(|_| same),
                listener_ir,
                &host,
                self.loaded.store,
            );
            let on_listener: BTreeSet<(String, String)> = trials
                .iter()
                .map(|t| (t.entry.route_kind.to_string(), t.entry.route.to_string()))
                .collect();
            self.out.candidates.extend(attachment::not_attached(
                self.loaded.store,
                &self.loaded.translation.statuses,
                listener_ir,
                port,
                &on_listener,
            ));
        }
        let Some(entry) = entry else {
            let message = format!(
                "listener {} takes host {host}, but none of its routes matches: 404",
                listener.name
            );
            return self.proxy_answers(&ProxyError::NoRoute, &prepared, message);
        };
        let vhost_ir = chosen
            .filter(|_| same)
            .and_then(|t| listener_ir?.virtual_hosts.get(t.virtual_host));
        let entry_ir = vhost_ir.and_then(|v| {
            v.routes.iter().find(|r| {
                format!("{}/{}", r.route.namespace, r.route.name) == *entry.route
                    && r.rule_index == entry.rule_index
                    && r.match_index == entry.match_index
            })
        });
        let (namespace, name) = entry.route.split_once('/').unwrap_or_default();
        self.out.route = Some(RouteSummary {
            kind: entry.route_kind.to_string(),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            rule: entry.rule_index,
            rule_name: entry.rule.name.clone(),
            match_index: entry.match_index,
            matched: entry.matcher.to_string(),
            hostname: vhost_ir.map(|v| v.hostname.clone()).unwrap_or_default(),
        });
        let Some(entry_ir) = entry_ir else {
            return;
        };
        let context = FilterContext {
            scheme: prepared.scheme.as_str(),
            listener_port: port,
            host: &host,
            matched_prefix: entry.matcher.prefix(),
            client: prepared.client,
            route: &entry.route,
        };
        let report = rule::report(
            snapshot,
            entry,
            &entry_ir.rule,
            prepared.parts.clone(),
            &context,
        );
        self.out.filters = report.filters;
        self.out.policies = report.policies;
        if let Some(security) = &entry_ir.security {
            self.out.policies.insert(0, rule::security(security));
        }
        self.out.backends = report.backends;
        self.out.upstream_request = report.upstream_request;
        self.out.outcomes = report.outcomes;
    }

    /// The TLS listener the SNI selects (`(gateway, name)`), or `None` when the connection
    /// ends there: no listener for the name, or a TLS listener forwarding to a TLSRoute.
    fn select_tls(
        &mut self,
        port_ir: &PortIr,
        prepared: &Prepared,
    ) -> Option<(Arc<str>, Arc<str>)> {
        let snapshot = self.loaded.snapshot;
        let port = port_ir.port;
        let sni = prepared.sni.as_deref();
        let Some(selected) = snapshot.tls.port(port).and_then(|p| p.select(sni)) else {
            self.out.candidates = listeners_not_matching(port_ir, sni.unwrap_or(""));
            self.no_http(
                "tlsRefused",
                format!(
                    "no listener on port {port} takes server name {}: the handshake is refused \
                     with an unrecognized_name alert",
                    sni.unwrap_or("(none)")
                ),
            );
            return None;
        };
        let listener_ir = port_ir
            .listeners
            .iter()
            .find(|l| l.gateway.to_string() == *selected.gateway && l.name == *selected.name);
        if let Some(l) = listener_ir {
            self.out.listener = Some(summary(port_ir, l));
        }
        let to_tls_route = matches!(selected.action, TlsAction::Passthrough)
            || listener_ir.is_some_and(|l| l.serves_tls_routes);
        if to_tls_route {
            let routes = listener_ir.map_or(&[][..], |l| l.l4_routes.as_slice());
            let chosen = snapshot
                .ports
                .l4
                .port(port)
                .and_then(|t| t.listener(&selected.gateway, &selected.name))
                .and_then(|l| l.route_for_sni(sni));
            let how = if matches!(selected.action, TlsAction::Passthrough) {
                "passed through (TLS Passthrough)"
            } else {
                "terminated, then forwarded as TCP"
            };
            match chosen.and_then(|c| {
                routes
                    .iter()
                    .find(|r| format!("{}/{}", r.route.namespace, r.route.name) == *c.name)
            }) {
                Some(route) => {
                    self.l4_route(route, format!("SNI {}", sni.unwrap_or("(none)")), how)
                }
                None => self.no_http(
                    "noRoute",
                    format!(
                        "listener {} forwards TLS connections to TLSRoutes, and none takes \
                         server name {}: the connection is closed",
                        selected.name,
                        sni.unwrap_or("(none)")
                    ),
                ),
            }
            return None;
        }
        Some((selected.gateway.clone(), selected.name.clone()))
    }

    /// A TCP port: its one TCPRoute.
    fn tcp(&mut self, port_ir: &PortIr) {
        let Some(listener) = port_ir.listeners.first() else {
            return;
        };
        self.out.listener = Some(summary(port_ir, listener));
        match listener.l4_routes.first() {
            Some(route) => {
                self.l4_route(route, format!("port {}", port_ir.port), "forwarded as TCP")
            }
            None => self.no_http(
                "noRoute",
                format!(
                    "port {} is a TCP port with no TCPRoute: the connection is closed",
                    port_ir.port
                ),
            ),
        }
    }

    fn l4_route(&mut self, route: &L4RouteIr, by: String, how: &str) {
        self.out.route = Some(RouteSummary {
            kind: route.route.kind.to_string(),
            namespace: route.route.namespace.clone(),
            name: route.route.name.clone(),
            rule: 0,
            rule_name: None,
            match_index: 0,
            matched: by,
            hostname: route
                .hostnames
                .first()
                .cloned()
                .unwrap_or_else(|| "*".to_owned()),
        });
        let total: u64 = route.backends.iter().map(|b| u64::from(b.weight)).sum();
        for backend in &route.backends {
            let share = if total == 0 {
                0.0
            } else {
                f64::from(backend.weight) / total as f64
            };
            let cluster = backend
                .cluster
                .as_deref()
                .and_then(|c| self.loaded.snapshot.ir.clusters.get(c));
            self.out.backends.push(BackendSummary {
                cluster: backend.cluster.clone(),
                weight: backend.weight,
                share,
                endpoints: cluster.map(|c| c.endpoints.clone()).unwrap_or_default(),
                protocol: None,
                filters: Vec::new(),
            });
            if share > 0.0 {
                self.out.outcomes.push(Outcome {
                    by: if cluster.is_some() {
                        Answerer::Backend
                    } else {
                        Answerer::Proxy
                    },
                    kind: if cluster.is_some() {
                        "forwarded"
                    } else {
                        "invalidBackend"
                    }
                    .to_owned(),
                    status: None,
                    grpc_status: None,
                    share,
                    cluster: backend.cluster.clone(),
                    location: None,
                    message: match cluster {
                        Some(c) => format!("the connection is {how} to {}", c.name),
                        None => "the backendRef is invalid: the connection is closed".to_owned(),
                    },
                });
            }
        }
    }

    /// Fills in the listener; returns its IR.
    fn listener<'p>(
        &mut self,
        port_ir: &'p PortIr,
        table: &PortTable,
        listener: &ListenerTable,
    ) -> Option<&'p ListenerIr> {
        let index = table
            .listeners()
            .iter()
            .position(|l| std::ptr::eq(l, listener))?;
        let ir = port_ir.listeners.get(index)?;
        self.out.listener = Some(summary(port_ir, ir));
        Some(ir)
    }

    /// The connection gets no HTTP answer at all.
    fn no_http(&mut self, kind: &str, message: String) {
        self.out.outcomes.push(Outcome {
            by: Answerer::Proxy,
            kind: kind.to_owned(),
            status: None,
            grpc_status: None,
            share: 1.0,
            cluster: None,
            location: None,
            message,
        });
    }

    /// The proxy answers the request itself.
    fn proxy_answers(&mut self, error: &ProxyError, prepared: &Prepared, message: String) {
        let grpc = grpc_status::is_grpc_request(&prepared.parts.headers)
            && !matches!(error, ProxyError::Misdirected | ProxyError::Refused(_));
        self.out.outcomes.push(Outcome {
            by: Answerer::Proxy,
            kind: rule::kind_of(error).to_owned(),
            status: Some(error.status().as_u16()),
            grpc_status: grpc.then(|| error.grpc_code().value()),
            share: 1.0,
            cluster: None,
            location: None,
            message,
        });
    }

    fn note(&mut self, note: String) {
        self.out.notes.push(note);
    }
}

fn find<'t>(table: &'t PortTable, gateway: &str, name: &str) -> Option<&'t ListenerTable> {
    table
        .listeners()
        .iter()
        .find(|l| &*l.gateway == gateway && l.name == name)
}

fn gateways(port: &PortIr) -> String {
    let names: BTreeSet<String> = port
        .listeners
        .iter()
        .map(|l| l.gateway.to_string())
        .collect();
    names.into_iter().collect::<Vec<_>>().join(", ")
}

fn summary(port: &PortIr, listener: &ListenerIr) -> ListenerSummary {
    let protocol = match port.protocol {
        PortProtocol::Http => "HTTP",
        PortProtocol::Tls if listener.serves_tls_routes => "TLS",
        PortProtocol::Tls => "HTTPS",
        PortProtocol::Tcp => "TCP",
        PortProtocol::Udp => "UDP",
    };
    ListenerSummary {
        gateway: listener.gateway.to_string(),
        name: listener.name.clone(),
        port: port.port,
        protocol: protocol.to_owned(),
        hostname: listener.hostname.clone(),
    }
}

/// Every listener of the port, none of whose hostname matches `host`.
fn listeners_not_matching(port: &PortIr, host: &str) -> Vec<Candidate> {
    port.listeners
        .iter()
        .map(|l| Candidate {
            kind: "Listener".to_owned(),
            namespace: l.gateway.namespace.clone(),
            name: format!("{}/{}", l.gateway.name, l.name),
            rule: None,
            match_index: None,
            matched: None,
            hostname: l.hostname.clone(),
            reason: Why::Listener,
            message: format!(
                "its hostname {} does not match {}",
                l.hostname.as_deref().unwrap_or("*"),
                if host.is_empty() { "(no name)" } else { host }
            ),
        })
        .collect()
}
