//! Compiled L4 routes: per port and listener, the route for an SNI (TLS) or the listener's one
//! route (TCP, UDP), and a weighted backend choice.

use std::collections::HashMap;
use std::sync::Arc;

use super::host::HostIndex;
use gantry_translate::ir::{Ir, L4BackendIr, L4RouteIr, PortProtocol};

/// The L4 routes of every TCP, UDP and TLS port. A UDP port and a TCP-based port may have
/// the same number (different sockets), so they are kept apart.
#[derive(Debug, Default)]
pub struct L4Tables {
    pub(super) ports: HashMap<u16, L4PortTable>,
    pub(super) udp_ports: HashMap<u16, L4PortTable>,
}

/// One port's listeners, in IR order (most specific hostname first).
#[derive(Debug)]
pub struct L4PortTable {
    pub protocol: PortProtocol,
    pub listeners: Vec<L4ListenerTable>,
}

/// One listener's routes, indexed by SNI hostname.
#[derive(Debug)]
pub struct L4ListenerTable {
    /// `namespace/name` of the Gateway.
    pub gateway: Arc<str>,
    pub name: String,
    /// A `TLS` listener: connections go to its TLSRoutes, never to HTTP.
    pub serves_tls_routes: bool,
    pub(super) routes: Vec<Arc<L4Route>>,
    /// Hostname index (TLS listeners); TCP and UDP listeners use their first route.
    pub(super) index: HostIndex,
    /// The route of each indexed hostname.
    pub(super) owners: Vec<usize>,
}

/// One route, ready to forward.
#[derive(Debug)]
pub struct L4Route {
    /// `namespace/name` of the route.
    pub name: Arc<str>,
    pub kind: String,
    backends: Vec<L4Backend>,
    total_weight: u64,
}

/// One weighted backendRef.
#[derive(Debug)]
pub struct L4Backend {
    pub weight: u32,
    /// `None` for an invalid reference: a connection given to it is rejected.
    pub cluster: Option<Arc<str>>,
}

impl L4Tables {
    pub fn compile(ir: &Ir) -> Self {
        let mut tables = Self::default();
        for p in ir.ports.iter().filter(|p| p.protocol != PortProtocol::Http) {
            let table = {
                let listeners = p
                    .listeners
                    .iter()
                    .map(|l| {
                        let mut table =
                            L4ListenerTable::compile(&l.gateway.to_string(), &l.name, &l.l4_routes);
                        table.serves_tls_routes = l.serves_tls_routes;
                        table
                    })
                    .collect();
                L4PortTable {
                    protocol: p.protocol,
                    listeners,
                }
            };
            let map = if p.protocol == PortProtocol::Udp {
                &mut tables.udp_ports
            } else {
                &mut tables.ports
            };
            map.insert(p.port, table);
        }
        tables
    }

    /// The table of a TCP-based port (TLS or TCP).
    pub fn port(&self, port: u16) -> Option<&L4PortTable> {
        self.ports.get(&port)
    }

    /// The table of a UDP port.
    pub fn udp_port(&self, port: u16) -> Option<&L4PortTable> {
        self.udp_ports.get(&port)
    }
}

impl L4PortTable {
    /// The route of a TCP or UDP port: its one listener's route.
    pub fn only_route(&self) -> Option<&Arc<L4Route>> {
        self.listeners.first().and_then(|l| l.routes.first())
    }

    /// The listener of this port named `name` in Gateway `gateway` (`namespace/name`).
    pub fn listener(&self, gateway: &str, name: &str) -> Option<&L4ListenerTable> {
        self.listeners
            .iter()
            .find(|l| &*l.gateway == gateway && l.name == name)
    }
}

impl L4ListenerTable {
    fn compile(gateway: &str, name: &str, routes: &[L4RouteIr]) -> Self {
        let mut hostnames = Vec::new();
        let mut compiled = Vec::with_capacity(routes.len());
        for (i, route) in routes.iter().enumerate() {
            hostnames.extend(route.hostnames.iter().map(|h| (h.as_str(), i)));
            compiled.push(Arc::new(L4Route::compile(route)));
        }
        Self {
            gateway: Arc::from(gateway),
            name: name.to_owned(),
            serves_tls_routes: false,
            routes: compiled,
            index: HostIndex::build(hostnames.iter().map(|(h, _)| Some(*h))),
            owners: hostnames.iter().map(|(_, i)| *i).collect(),
        }
    }

    /// The route serving `sni` (lower-case, no trailing dot): the most specific hostname that
    /// matches, `*` last. A connection without SNI matches only `*`.
    pub fn route_for_sni(&self, sni: Option<&str>) -> Option<&Arc<L4Route>> {
        // An empty host matches no exact or wildcard name, only `*`.
        let hostname = self.index.lookup(sni.unwrap_or(""))?;
        self.routes.get(*self.owners.get(hostname)?)
    }
}

impl L4Route {
    fn compile(ir: &L4RouteIr) -> Self {
        let backends: Vec<L4Backend> = ir.backends.iter().map(L4Backend::compile).collect();
        Self {
            name: Arc::from(format!("{}/{}", ir.route.namespace, ir.route.name)),
            kind: ir.route.kind.to_string(),
            total_weight: backends.iter().map(|b| u64::from(b.weight)).sum(),
            backends,
        }
    }

    /// A backend chosen in proportion to the weights, invalid ones included; a weight of 0 is
    /// never chosen. `None` when no backend has weight (every connection is rejected).
    pub fn choose_backend(&self) -> Option<&L4Backend> {
        if self.total_weight == 0 {
            return None;
        }
        let mut ticket = fastrand::u64(0..self.total_weight);
        self.backends.iter().find(|b| {
            let weight = u64::from(b.weight);
            if ticket < weight {
                true
            } else {
                ticket -= weight;
                false
            }
        })
    }
}

impl L4Backend {
    fn compile(ir: &L4BackendIr) -> Self {
        Self {
            weight: ir.weight,
            cluster: ir.cluster.as_deref().map(Arc::from),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_translate::ir::RouteRef;

    fn route(name: &str, hostnames: &[&str], backends: &[(u32, Option<&str>)]) -> L4RouteIr {
        L4RouteIr {
            route: RouteRef {
                kind: "TLSRoute".into(),
                namespace: "ns".into(),
                name: name.into(),
            },
            hostnames: hostnames.iter().map(|h| (*h).to_owned()).collect(),
            backends: backends
                .iter()
                .map(|(weight, cluster)| L4BackendIr {
                    weight: *weight,
                    cluster: cluster.map(Into::into),
                })
                .collect(),
        }
    }

    #[test]
    fn sni_picks_the_most_specific_hostname_and_no_sni_only_the_catch_all() {
        let listener = L4ListenerTable::compile(
            "ns/gw",
            "tls",
            &[
                route("wild", &["*.example.com"], &[(1, Some("a"))]),
                route(
                    "exact",
                    &["foo.example.com", "bar.example.com"],
                    &[(1, Some("b"))],
                ),
            ],
        );
        let name = |sni| listener.route_for_sni(sni).map(|r| r.name.to_string());
        assert_eq!(name(Some("foo.example.com")).as_deref(), Some("ns/exact"));
        assert_eq!(name(Some("bar.example.com")).as_deref(), Some("ns/exact"));
        assert_eq!(name(Some("baz.example.com")).as_deref(), Some("ns/wild"));
        assert_eq!(name(Some("example.com")), None);
        assert_eq!(name(None), None);

        let any = L4ListenerTable::compile("ns/gw", "tls", &[route("any", &["*"], &[])]);
        assert_eq!(
            any.route_for_sni(None)
                .map(|r| r.name.to_string())
                .as_deref(),
            Some("ns/any")
        );
    }

    #[test]
    fn weighted_choice_counts_invalid_backends_and_never_picks_weight_zero() {
        let r = L4Route::compile(&route(
            "r",
            &[],
            &[(3, Some("a")), (0, Some("zero")), (1, None)],
        ));
        let (mut valid, mut invalid) = (0, 0);
        for _ in 0..4_000 {
            match r.choose_backend().map(|b| b.cluster.as_deref()) {
                Some(Some("a")) => valid += 1,
                Some(None) => invalid += 1,
                other => panic!("unexpected choice {other:?}"),
            }
        }
        // 3:1 within a wide tolerance.
        assert!((2_700..=3_300).contains(&valid), "valid {valid}");
        assert!((700..=1_300).contains(&invalid), "invalid {invalid}");

        let none = L4Route::compile(&route("r", &[], &[(0, Some("a"))]));
        assert!(none.choose_backend().is_none());
    }
}
