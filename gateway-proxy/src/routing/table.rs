//! Per-port lookup tables: listener by hostname, virtual host by hostname, route entry by path.

use super::FastMap;
use std::sync::Arc;

use super::CompileError;
use super::host::HostIndex;
use super::matcher::{RequestMatcher, RequestView};
use super::path::PathIndex;
use super::rule::Rule;
use crate::telemetry::{Metrics, RouteMetrics};
use gantry_translate::ir::{HttpRuleIr, Ir, ListenerIr, PortIr, VirtualHostIr};

/// Everything served on one port.
#[derive(Debug)]
pub struct PortTable {
    pub port: u16,
    pub(super) listeners: Vec<ListenerTable>,
    pub(super) index: HostIndex,
}

/// One Gateway listener on the port.
#[derive(Debug)]
pub struct ListenerTable {
    /// `namespace/name` of the Gateway.
    pub gateway: Arc<str>,
    pub name: String,
    /// In the IR's order; shared with the previous snapshot when unchanged.
    pub(super) virtual_hosts: Vec<Arc<VirtualHostTable>>,
    pub(super) index: HostIndex,
    /// Series for requests this listener took but no route matched.
    pub unmatched: RouteMetrics,
}

/// Route entries for one hostname, in IR precedence order, indexed by path.
#[derive(Debug)]
pub(super) struct VirtualHostTable {
    pub(super) entries: Vec<RouteEntry>,
    /// `None` for fewer than [`INDEX_FROM`] entries, which a lookup tries in turn: with one
    /// virtual host per route, the index's maps would cost more than the entries.
    pub(super) paths: Option<Box<PathIndex>>,
}

/// A virtual host with at least this many entries gets a [`PathIndex`].
pub(super) const INDEX_FROM: usize = 5;

/// One match of one rule.
#[derive(Debug)]
pub struct RouteEntry {
    /// `namespace/name` of the route.
    pub route: Arc<str>,
    /// `HTTPRoute` or `GRPCRoute`.
    pub route_kind: Arc<str>,
    pub rule_index: usize,
    /// Index of the match in the rule's `matches`.
    pub match_index: usize,
    pub rule: Arc<Rule>,
    pub matcher: RequestMatcher,
    pub metrics: RouteMetrics,
    /// The SecurityPolicy governing the entry, compiled once per policy and snapshot.
    pub security: Option<Arc<crate::security::Guard>>,
    /// The RateLimitPolicy governing the entry, compiled once per policy and snapshot.
    pub rate_limit: Option<Arc<crate::rate_limit::Limiter>>,
}

/// The result of looking a request up.
#[derive(Debug)]
pub enum Lookup<'a> {
    /// No listener on the port accepts the host.
    NoListener,
    /// A listener took the host but none of its routes matched.
    NoRoute(&'a ListenerTable),
    Route(&'a ListenerTable, &'a RouteEntry),
    /// On a TLS connection: the host belongs to another listener of the port than the one
    /// the SNI selected.
    Misdirected,
}

/// Metric handles by `(gateway, route kind, route)`.
pub(super) type SeriesMap = FastMap<(Arc<str>, Arc<str>, Arc<str>), RouteMetrics>;

/// Shares compiled pieces between the entries of one compilation, and with the previous one.
#[derive(Default)]
pub(super) struct CompileCache<'p> {
    /// Rules by the address of their IR `Arc`: the entries of one rule share it. Looked up
    /// for every entry of every compile, so foldhash rather than SipHash.
    rules: FastMap<usize, Arc<Rule>>,
    /// SecurityPolicies by the address of their IR `Arc`: the entries they govern share it.
    guards: FastMap<usize, Arc<crate::security::Guard>>,
    /// RateLimitPolicies likewise.
    limiters: FastMap<usize, Arc<crate::rate_limit::Limiter>>,
    /// Handles of the previous snapshot: registering a series is the costly part of a
    /// compile, so routes that stay keep theirs.
    previous: Option<&'p SeriesMap>,
    /// The previous snapshot's IR and port tables: a virtual host whose IR did not change
    /// keeps its compiled table, so a change to one route recompiles one virtual host.
    previous_tables: Option<(&'p Ir, &'p FastMap<u16, PortTable>)>,
    pub(super) route_metrics: SeriesMap,
    /// Route kinds, one `Arc` each for every entry (and metric label) of the compilation.
    kinds: Vec<Arc<str>>,
    /// Virtual hosts reused from the previous snapshot (for tests and logs).
    pub(super) reused_virtual_hosts: usize,
}

impl<'p> CompileCache<'p> {
    pub(super) fn new(
        previous: Option<&'p SeriesMap>,
        previous_tables: Option<(&'p Ir, &'p FastMap<u16, PortTable>)>,
    ) -> Self {
        Self {
            previous,
            previous_tables,
            // About as many series as last time: no rehashing as they are added again.
            route_metrics: SeriesMap::with_capacity_and_hasher(
                previous.map_or(0, |p| p.len() + 1),
                Default::default(),
            ),
            ..Self::default()
        }
    }

    /// The previous IR and compiled table of the listener `(gateway, name)` on `port`.
    fn previous_listener(
        &self,
        port: u16,
        listener: &ListenerIr,
    ) -> Option<(&'p ListenerIr, &'p ListenerTable)> {
        let (ir, tables) = self.previous_tables?;
        let port_ir = ir.ports.iter().find(|p| p.port == port)?;
        let table = tables.get(&port)?;
        let i = port_ir
            .listeners
            .iter()
            .position(|l| l.gateway == listener.gateway && l.name == listener.name)?;
        Some((port_ir.listeners.get(i)?, table.listeners.get(i)?))
    }

    /// Takes over a virtual host compiled by the previous snapshot, with its metric handles.
    fn reuse(
        &mut self,
        gateway: &Arc<str>,
        table: &Arc<VirtualHostTable>,
    ) -> Arc<VirtualHostTable> {
        for entry in &table.entries {
            self.route_metrics
                .entry((
                    gateway.clone(),
                    entry.route_kind.clone(),
                    entry.route.clone(),
                ))
                .or_insert_with(|| entry.metrics.clone());
        }
        self.reused_virtual_hosts += 1;
        table.clone()
    }

    fn guard(&mut self, ir: &Arc<gantry_translate::ir::SecurityIr>) -> Arc<crate::security::Guard> {
        self.guards
            .entry(Arc::as_ptr(ir) as usize)
            .or_insert_with(|| Arc::new(crate::security::Guard::compile(ir)))
            .clone()
    }

    fn limiter(
        &mut self,
        ir: &Arc<gantry_translate::ir::RateLimitIr>,
    ) -> Arc<crate::rate_limit::Limiter> {
        self.limiters
            .entry(Arc::as_ptr(ir) as usize)
            .or_insert_with(|| Arc::new(crate::rate_limit::Limiter::compile(ir)))
            .clone()
    }

    /// `kind` as an `Arc` every entry of that kind shares.
    fn kind(&mut self, kind: &str) -> Arc<str> {
        if let Some(known) = self.kinds.iter().find(|k| ***k == *kind) {
            return known.clone();
        }
        let new: Arc<str> = Arc::from(kind);
        self.kinds.push(new.clone());
        new
    }

    fn rule(&mut self, ir: &Arc<HttpRuleIr>) -> Result<Arc<Rule>, CompileError> {
        let key = Arc::as_ptr(ir) as usize;
        if let Some(rule) = self.rules.get(&key) {
            return Ok(rule.clone());
        }
        let rule = Arc::new(Rule::compile(ir)?);
        self.rules.insert(key, rule.clone());
        Ok(rule)
    }

    fn metrics(
        &mut self,
        metrics: &Metrics,
        gateway: &Arc<str>,
        route_kind: &Arc<str>,
        route: &Arc<str>,
    ) -> RouteMetrics {
        let key = (gateway.clone(), route_kind.clone(), route.clone());
        let previous = self.previous;
        self.route_metrics
            .entry(key)
            .or_insert_with_key(|key| match previous.and_then(|p| p.get(key)) {
                Some(handles) => handles.clone(),
                None => metrics.route_metrics(gateway.clone(), route_kind.clone(), route.clone()),
            })
            .clone()
    }
}

impl PortTable {
    pub(super) fn compile(
        ir: &PortIr,
        metrics: &Metrics,
        cache: &mut CompileCache<'_>,
    ) -> Result<Self, CompileError> {
        let mut listeners = Vec::with_capacity(ir.listeners.len());
        let empty: Arc<str> = Arc::from("");
        for listener in &ir.listeners {
            let gateway: Arc<str> = Arc::from(listener.gateway.to_string());
            let previous = cache
                .previous_listener(ir.port, listener)
                .map(|(l, table)| {
                    let by_host: FastMap<&str, (&VirtualHostIr, &Arc<VirtualHostTable>)> = l
                        .virtual_hosts
                        .iter()
                        .zip(&table.virtual_hosts)
                        .map(|(v, t)| (v.hostname.as_str(), (v, t)))
                        .collect();
                    by_host
                });
            let mut virtual_hosts = Vec::with_capacity(listener.virtual_hosts.len());
            for vhost in &listener.virtual_hosts {
                let unchanged = previous
                    .as_ref()
                    .and_then(|p| p.get(vhost.hostname.as_str()))
                    .filter(|(old, _)| *old == vhost);
                let table = match unchanged {
                    Some((_, table)) => cache.reuse(&gateway, table),
                    None => Arc::new(VirtualHostTable::compile(vhost, &gateway, metrics, cache)?),
                };
                virtual_hosts.push(table);
            }
            listeners.push(ListenerTable {
                index: HostIndex::build(
                    listener
                        .virtual_hosts
                        .iter()
                        .map(|v| Some(v.hostname.as_str())),
                ),
                unmatched: cache.metrics(metrics, &gateway, &empty, &empty),
                gateway,
                name: listener.name.clone(),
                virtual_hosts,
            });
        }
        Ok(Self {
            port: ir.port,
            index: HostIndex::build(ir.listeners.iter().map(|l| l.hostname.as_deref())),
            listeners,
        })
    }

    /// The port's listeners, in the IR's order.
    pub fn listeners(&self) -> &[ListenerTable] {
        &self.listeners
    }

    /// Finds the entry for a request. `host` must be normalised.
    pub fn lookup(&self, host: &str, request: &RequestView<'_>) -> Lookup<'_> {
        match self.index.lookup(host).and_then(|i| self.listeners.get(i)) {
            Some(listener) => Self::lookup_in(listener, host, request),
            None => Lookup::NoListener,
        }
    }

    /// Finds the entry for a request on a TLS connection whose SNI selected the listener
    /// `name` of `gateway`. Gateway `listeners[].hostname` (HTTPS): when another listener
    /// has an exact or more specific match for the Host, or the selected listener does not
    /// match it but another does, the answer is 421; when no listener matches, 404.
    pub fn lookup_on_listener(
        &self,
        gateway: &str,
        name: &str,
        host: &str,
        request: &RequestView<'_>,
    ) -> Lookup<'_> {
        match self.index.lookup(host).and_then(|i| self.listeners.get(i)) {
            Some(listener) if &*listener.gateway == gateway && listener.name == name => {
                Self::lookup_in(listener, host, request)
            }
            Some(_) => Lookup::Misdirected,
            None => Lookup::NoListener,
        }
    }

    fn lookup_in<'t>(
        listener: &'t ListenerTable,
        host: &str,
        request: &RequestView<'_>,
    ) -> Lookup<'t> {
        // HTTPRoute hostname precedence orders candidates, it does not exclude them: the
        // entries of the most specific virtual host are tried first, then those of each less
        // specific hostname that also matches (wildcards by decreasing length, then `*`).
        let entry = listener
            .index
            .lookup_all(host)
            .filter_map(|i| listener.virtual_hosts.get(i))
            .find_map(|vhost| vhost.find(request));
        match entry {
            Some(entry) => Lookup::Route(listener, entry),
            None => Lookup::NoRoute(listener),
        }
    }
}

impl VirtualHostTable {
    fn compile(
        vhost: &VirtualHostIr,
        gateway: &Arc<str>,
        metrics: &Metrics,
        cache: &mut CompileCache<'_>,
    ) -> Result<Self, CompileError> {
        let mut entries = Vec::with_capacity(vhost.routes.len());
        let mut paths = (vhost.routes.len() >= INDEX_FROM).then(Box::<PathIndex>::default);
        for (i, entry) in vhost.routes.iter().enumerate() {
            let route: Arc<str> =
                Arc::from(format!("{}/{}", entry.route.namespace, entry.route.name));
            let route_kind = cache.kind(&entry.route.kind);
            if let Some(paths) = &mut paths {
                paths.insert(i, &entry.matches.path);
            }
            entries.push(RouteEntry {
                metrics: cache.metrics(metrics, gateway, &route_kind, &route),
                route,
                route_kind,
                rule_index: entry.rule_index,
                match_index: entry.match_index,
                rule: cache.rule(&entry.rule)?,
                matcher: RequestMatcher::compile(&entry.matches)?,
                security: entry.security.as_ref().map(|ir| cache.guard(ir)),
                rate_limit: entry.rate_limit.as_ref().map(|ir| cache.limiter(ir)),
            });
        }
        Ok(Self { entries, paths })
    }

    /// The first entry in IR order that matches: the lowest candidate index that holds (every
    /// entry is a candidate without an index; an entry's matcher checks its path too).
    fn find(&self, request: &RequestView<'_>) -> Option<&RouteEntry> {
        let Some(paths) = &self.paths else {
            return self
                .entries
                .iter()
                .find(|entry| entry.matcher.matches(request));
        };
        let mut candidates = Vec::new();
        paths.candidates(request.path, &mut candidates);
        candidates
            .into_iter()
            .filter_map(|i| self.entries.get(i))
            .find(|entry| entry.matcher.matches(request))
    }
}
