//! The compiled configuration: one immutable value, published with one atomic swap.

use std::collections::HashMap;

use super::FastMap;
use std::sync::Arc;

use super::CompileError;
use super::l4::L4Tables;
use super::table::{CompileCache, PortTable, SeriesMap};
use super::tls::TlsPorts;
use crate::telemetry::{Metrics, RouteMetrics};
use crate::upstream::Cluster;
use crate::upstream::retry::RetryBudget;
use gantry_translate::ir::Ir;
use gantry_translate::store::ObjectKey;

/// Everything a request needs, compiled from one [`Ir`]. Never mutated after it is built;
/// a request holds one `Arc<Snapshot>` from start to end.
#[derive(Debug)]
pub struct Snapshot {
    pub version: u64,
    pub ir: Arc<Ir>,
    /// Shared with the previous snapshot when only clusters changed.
    pub ports: Arc<PortTables>,
    /// TLS listeners by port, with their precompiled handshake configurations; shared with
    /// the previous snapshot when the ports did not change.
    pub tls: Arc<TlsPorts>,
    pub clusters: FastMap<String, Arc<Cluster>>,
    /// RateLimitPolicy buckets: passed from each snapshot to the next, so a reload keeps
    /// every count.
    pub rate_limit_buckets: Arc<crate::rate_limit::buckets::Buckets>,
}

/// The tables of every port, and the metric series they record into.
#[derive(Debug)]
pub struct PortTables {
    pub(super) tables: FastMap<u16, PortTable>,
    /// Series for requests no listener took.
    pub unmatched: RouteMetrics,
    /// TCPRoute, UDPRoute and TLSRoute forwarding of the TCP, UDP and TLS ports.
    pub l4: L4Tables,
    /// Metric handles by `(gateway, route kind, route)`: reused by the next compile, and the pairs a new
    /// config no longer has are dropped from the registry.
    pub(super) series: SeriesMap,
}

impl Snapshot {
    /// The configuration before any was applied: no ports, no clusters.
    pub fn empty(metrics: &Metrics) -> Self {
        Self {
            version: 0,
            ir: Arc::new(Ir::default()),
            ports: Arc::new(PortTables {
                tables: FastMap::default(),
                unmatched: metrics.route_metrics("", "", ""),
                l4: L4Tables::default(),
                series: SeriesMap::default(),
            }),
            tls: Arc::new(TlsPorts::default()),
            clusters: FastMap::default(),
            rate_limit_buckets: Arc::default(),
        }
    }

    /// Compiles `ir`. When `previous` has the same ports (an endpoint-only change), its port
    /// tables are reused and only clusters are compiled; otherwise every virtual host whose IR
    /// did not change keeps its compiled table.
    pub fn compile(
        ir: Arc<Ir>,
        version: u64,
        metrics: &Metrics,
        previous: Option<&Snapshot>,
    ) -> Result<Self, CompileError> {
        let (ports, tls) = match previous {
            Some(previous) if previous.ir.ports == ir.ports => {
                (previous.ports.clone(), previous.tls.clone())
            }
            _ => (
                Arc::new(compile_ports(&ir, metrics, previous)?),
                Arc::new(
                    TlsPorts::compile(&ir, previous.map(|p| p.tls.as_ref()))
                        .map_err(CompileError::Tls)?,
                ),
            ),
        };
        // One budget per Service, shared by its clusters; kept (with its counts) from the
        // previous snapshot while its settings are the same.
        let mut budgets: HashMap<&ObjectKey, Arc<RetryBudget>> = HashMap::new();
        let clusters = ir
            .clusters
            .iter()
            .map(|(name, cluster)| {
                let old = previous.and_then(|p| p.cluster(name)).map(AsRef::as_ref);
                let budget = cluster.retry_budget.as_ref().map(|settings| {
                    budgets
                        .entry(&cluster.service)
                        .or_insert_with(|| {
                            previous
                                .and_then(|p| p.budget_of(&cluster.service))
                                .filter(|b| b.is_built_from(settings))
                                .unwrap_or_else(|| Arc::new(RetryBudget::new(settings)))
                        })
                        .clone()
                });
                Ok((
                    name.clone(),
                    Arc::new(Cluster::compile_in(cluster, old, budget, metrics)?),
                ))
            })
            .collect::<Result<_, CompileError>>()?;
        // JWKS fetched through a backendRef follow its endpoints.
        crate::security::jwt::update_endpoints(&ir.clusters);
        Ok(Self {
            rate_limit_buckets: previous
                .map(|p| p.rate_limit_buckets.clone())
                .unwrap_or_default(),
            version,
            ir,
            ports,
            tls,
            clusters,
        })
    }

    pub fn port(&self, port: u16) -> Option<&PortTable> {
        self.ports.tables.get(&port)
    }

    /// The ports this configuration serves.
    pub fn port_numbers(&self) -> impl Iterator<Item = u16> + '_ {
        self.ir.ports.iter().map(|p| p.port)
    }

    pub fn cluster(&self, name: &str) -> Option<&Arc<Cluster>> {
        self.clusters.get(name)
    }

    /// The retry budget the clusters of `service` share, if they have one.
    fn budget_of(&self, service: &ObjectKey) -> Option<Arc<RetryBudget>> {
        self.ir
            .clusters
            .values()
            .filter(|c| &c.service == service)
            .find_map(|c| self.cluster(&c.name)?.budget().cloned())
    }

    /// Drops metric series of routes `self` had and `next` no longer has.
    pub fn forget_removed_routes(&self, next: &Snapshot, metrics: &Metrics) {
        if Arc::ptr_eq(&self.ports, &next.ports) {
            return;
        }
        for key in self.ports.series.keys() {
            if !next.ports.series.contains_key(key) {
                let (gateway, route_kind, route) = key;
                metrics.forget_route(gateway, route_kind, route);
            }
        }
    }
}

fn compile_ports(
    ir: &Ir,
    metrics: &Metrics,
    previous: Option<&Snapshot>,
) -> Result<PortTables, CompileError> {
    let mut cache = CompileCache::new(
        previous.map(|p| &p.ports.series),
        previous.map(|p| (&*p.ir, &p.ports.tables)),
    );
    let mut tables = FastMap::with_capacity_and_hasher(ir.ports.len(), Default::default());
    for port in &ir.ports {
        let table = PortTable::compile(port, metrics, &mut cache)?;
        if tables.insert(port.port, table).is_some() {
            return Err(CompileError::DuplicatePort(port.port));
        }
    }
    tracing::debug!(
        reused_virtual_hosts = cache.reused_virtual_hosts,
        "routing tables compiled"
    );
    Ok(PortTables {
        tables,
        unmatched: metrics.route_metrics("", "", ""),
        l4: L4Tables::compile(ir),
        series: cache.route_metrics,
    })
}
