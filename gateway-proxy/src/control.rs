//! The control loop: source updates in, a translated configuration applied to the data plane
//! and published (view for the admin endpoints, statuses for a status writer) out.
//!
//! One task owns the [`ControlLoop`] and with it everything a change needs: the incremental
//! [`Translator`], the store the configuration in use was built from, and the translated
//! statuses before unbound listeners were marked on them. What others read is in
//! [`Published`]: the [`View`] (one atomic pointer), the status channel and the draining flag.
//!
//! What an update costs depends on what changed ([`Difference`]): nothing the translator
//! reads (our own status writes coming back through the watch) costs a comparison;
//! EndpointSlices alone refresh the clusters' endpoints; anything else is translated. Listener
//! ports that cannot be bound are reported on their listeners' status, and bound again every
//! [`REBIND_EVERY`] until they are. While the global rate limit store (Redis) cannot be
//! reached, the policies with global rules say so in their status
//! ([`gantry_translate::status::rate_limit_store`]), from the data plane's report.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use serde::Serialize;
use tokio::sync::watch;

use crate::server::DataPlane;
use crate::source::SourceUpdate;
use crate::telemetry::{DrainPhase, Metrics};
use crate::upstream::health::ClusterHealthView;
use gantry_translate::ir::Ir;
use gantry_translate::status::rate_limit_store::{StoreUnavailable, mark_store_unavailable};
use gantry_translate::status::stamp;
use gantry_translate::status::unbound::{UnboundPort, mark_unbound};
use gantry_translate::status::{GatewayStatusAddress, ObjectStatus, StatusBody};
use gantry_translate::store::{Difference, Store};
use gantry_translate::translate::{TranslateOptions, Translator, refresh_endpoints};

/// What the source said about the last change it saw.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceReport {
    /// Why the last change was rejected; empty when the configuration in use is the latest.
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
}

/// The configuration in use and what is known about it, as the admin endpoints show it.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct View {
    /// Increases by one each time a new IR is applied; 0 before the first. The same number
    /// as `gantry_config_version` and the data plane's snapshot.
    pub version: u64,
    pub ir: Arc<Ir>,
    #[serde(skip)]
    pub statuses: Arc<Vec<ObjectStatus>>,
    pub source: SourceReport,
    /// Listener ports of `ir` that could not be bound (their listeners are not served).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unbound_ports: Vec<UnboundPort>,
    /// The objects `ir` was translated from (for `explain` on the live configuration).
    #[serde(skip)]
    pub store: Option<Arc<Store>>,
}

/// How many configuration changes [`Published::reloads`] remembers.
pub const RELOADS_KEPT: usize = 20;

/// One configuration change the control loop handled, newest last in [`Published::reloads`].
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Reload {
    /// When it was handled (RFC 3339, UTC).
    pub at: String,
    /// `applied` (a new configuration serves), `unchanged` (nothing the routing reads
    /// changed), `rejected` (the source or the data plane refused it; the last good
    /// configuration keeps serving).
    pub result: &'static str,
    /// The configuration version serving afterwards.
    pub version: u64,
    /// Why it was rejected.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Time from the update's arrival to the configuration in use, in milliseconds.
    pub took_ms: f64,
}

/// How often ports that could not be bound are tried again.
pub const REBIND_EVERY: Duration = Duration::from_secs(5);

/// What the control loop publishes; shared with the admin server and the status writer.
#[derive(Debug)]
pub struct Published {
    view: ArcSwap<View>,
    /// The latest statuses, for a status writer ([`Published::statuses`]).
    statuses: watch::Sender<Arc<Vec<ObjectStatus>>>,
    draining: AtomicBool,
    dataplane: Arc<DataPlane>,
    metrics: Arc<Metrics>,
    /// The last [`RELOADS_KEPT`] changes, oldest first; replaced whole by the control loop
    /// (its only writer), read by the admin server.
    reloads: ArcSwap<Vec<Reload>>,
}

impl Published {
    /// The last configuration changes, oldest first.
    pub fn reloads(&self) -> Arc<Vec<Reload>> {
        self.reloads.load_full()
    }

    /// The routing snapshot serving now (its version may be one ahead of [`Published::view`]
    /// for the instant between the data plane's swap and the view's).
    pub fn snapshot(&self) -> Arc<crate::routing::Snapshot> {
        self.dataplane.snapshot()
    }

    fn record(&self, reload: Reload) {
        let before = self.reloads.load();
        let skip = (before.len() + 1).saturating_sub(RELOADS_KEPT);
        let mut reloads: Vec<Reload> = before.iter().skip(skip).cloned().collect();
        reloads.push(reload);
        self.reloads.store(Arc::new(reloads));
    }

    /// The configuration in use.
    pub fn view(&self) -> Arc<View> {
        self.view.load_full()
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The endpoint health of every cluster with health checks in the configuration serving
    /// now, as this replica sees it (each replica probes and ejects on its own), by cluster.
    pub fn endpoint_health(&self) -> BTreeMap<String, ClusterHealthView> {
        self.dataplane
            .snapshot()
            .clusters
            .iter()
            .filter_map(|(name, cluster)| Some((name.clone(), cluster.health_view()?)))
            .collect()
    }

    /// Ready to take traffic: a first configuration was translated and applied (its ports
    /// bound, except those already in use, which are reported on their listeners' status and
    /// do not hold back readiness), and the process is not draining.
    pub fn ready(&self) -> Result<(), &'static str> {
        if self.draining.load(Ordering::Acquire) {
            Err("draining")
        } else if self.view.load().version == 0 || !self.dataplane.ready() {
            Err("no configuration loaded yet")
        } else {
            Ok(())
        }
    }

    /// Follows the statuses of every applied configuration (lastTransitionTime stamped).
    pub fn statuses(&self) -> watch::Receiver<Arc<Vec<ObjectStatus>>> {
        self.statuses.subscribe()
    }

    /// Marks the process as draining: `/readyz` fails from now on.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
        self.metrics.set_drain_phase(DrainPhase::Delay);
    }

    fn update_view(&self, edit: impl FnOnce(&mut View)) {
        let mut view = View::clone(&self.view.load());
        edit(&mut view);
        self.view.store(Arc::new(view));
    }
}

/// The control loop of one proxy process, owned by the task that runs it.
#[derive(Debug)]
pub struct ControlLoop {
    /// Kept between updates: it re-translates only the routes that changed.
    translator: Translator,
    /// The store the configuration in use was built from.
    last_store: Option<Arc<Store>>,
    /// While a listener port is unbound or Redis unreachable: the translated statuses in use,
    /// before the unbound listeners and the rate limit policies were marked on them. Empty
    /// otherwise.
    unmarked_statuses: Arc<Vec<ObjectStatus>>,
    /// The global rate limit store's address and its health (`Some(why)` while unreachable),
    /// as the data plane reports it.
    rate_limit_store: Option<(String, watch::Receiver<Option<String>>)>,
    /// Why the global rate limit store cannot be reached, while it cannot.
    rate_limit_store_down: Option<String>,
    /// Written into every Gateway's `status.addresses` (standalone mode, where no operator
    /// owns that field).
    gateway_addresses: Vec<GatewayStatusAddress>,
    dataplane: Arc<DataPlane>,
    metrics: Arc<Metrics>,
    published: Arc<Published>,
}

impl ControlLoop {
    pub fn new(
        options: TranslateOptions,
        dataplane: Arc<DataPlane>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let published = Arc::new(Published {
            view: ArcSwap::from_pointee(View::default()),
            statuses: watch::Sender::new(Arc::default()),
            draining: AtomicBool::new(false),
            dataplane: dataplane.clone(),
            metrics: metrics.clone(),
            reloads: ArcSwap::from_pointee(Vec::new()),
        });
        Self {
            translator: Translator::new(options),
            last_store: None,
            unmarked_statuses: Arc::default(),
            rate_limit_store: None,
            rate_limit_store_down: None,
            gateway_addresses: Vec::new(),
            dataplane,
            metrics,
            published,
        }
    }

    /// Reports these addresses in every Gateway's status.
    pub fn with_gateway_addresses(mut self, addresses: Vec<GatewayStatusAddress>) -> Self {
        self.gateway_addresses = addresses;
        self
    }

    /// Reports the global rate limit store at `address` (`host:port`) on the policies with
    /// global rules while `health` says it cannot be reached.
    pub fn with_rate_limit_store(
        mut self,
        address: String,
        health: watch::Receiver<Option<String>>,
    ) -> Self {
        self.rate_limit_store = Some((address, health));
        self
    }

    /// What this loop publishes, for the admin server and a status writer.
    pub fn published(&self) -> &Arc<Published> {
        &self.published
    }

    /// Applies source updates until the sender is dropped; meanwhile tries to bind the ports
    /// that could not be bound every [`REBIND_EVERY`].
    pub async fn run(mut self, mut updates: watch::Receiver<Option<SourceUpdate>>) {
        let mut changed = true;
        // Updates that apply nothing (statuses read back) must not postpone the retry.
        let mut rebind_at = tokio::time::Instant::now() + REBIND_EVERY;
        let mut store_health = self.rate_limit_store.as_ref().map(|(_, h)| h.clone());
        loop {
            if changed {
                let update = updates.borrow_and_update().clone();
                if let Some(update) = update {
                    self.apply(update).await;
                }
            }
            let unbound = !self.published.view.load().unbound_ports.is_empty();
            if !unbound {
                rebind_at = tokio::time::Instant::now() + REBIND_EVERY;
            }
            tokio::select! {
                result = updates.changed() => {
                    if result.is_err() {
                        return;
                    }
                    changed = true;
                }
                () = tokio::time::sleep_until(rebind_at), if unbound => {
                    self.rebind().await;
                    changed = false;
                    rebind_at = tokio::time::Instant::now() + REBIND_EVERY;
                }
                result = async {
                    match &mut store_health {
                        Some(health) => health.changed().await,
                        None => std::future::pending().await,
                    }
                } => {
                    changed = false;
                    match (result, &mut store_health) {
                        (Ok(()), Some(health)) => {
                            let down = health.borrow_and_update().clone();
                            self.rate_limit_store_changed(down);
                        }
                        _ => store_health = None,
                    }
                }
            }
        }
    }

    /// Applies the configuration in use again, which binds the ports that are still unbound,
    /// and updates the listeners' status when that changed anything. The configuration is the
    /// same, so its version is too.
    pub async fn rebind(&mut self) {
        let current = self.published.view();
        let unbound = match self
            .dataplane
            .apply(current.ir.clone(), current.version)
            .await
        {
            Ok(applied) => applied.unbound,
            Err(error) => {
                tracing::error!(%error, "configuration in use not applied again");
                return;
            }
        };
        if unbound == current.unbound_ports {
            return;
        }
        tracing::info!(still_unbound = unbound.len(), "listener ports bound again");
        let unmarked = self.unmarked_statuses(&current);
        let statuses = self.mark_and_stamp(unmarked, &current.ir, &unbound, &current);
        self.published.update_view(|view| {
            view.statuses = statuses;
            view.unbound_ports = unbound;
        });
    }

    /// Marks or clears the global rate limit store's condition on the statuses in use.
    pub fn rate_limit_store_changed(&mut self, down: Option<String>) {
        if down == self.rate_limit_store_down {
            return;
        }
        self.rate_limit_store_down = down;
        let current = self.published.view();
        let unmarked = self.unmarked_statuses(&current);
        let statuses = self.mark_and_stamp(unmarked, &current.ir, &current.unbound_ports, &current);
        self.published.update_view(|view| view.statuses = statuses);
    }

    /// Applies one update.
    pub async fn apply(&mut self, update: SourceUpdate) {
        match update {
            SourceUpdate::Objects { store, warnings } => self.apply_store(store, warnings).await,
            SourceUpdate::Rejected { errors, warnings } => {
                for error in &errors {
                    tracing::error!(%error, "configuration rejected; the last good configuration keeps serving");
                }
                self.metrics.config_reloads_rejected.inc();
                self.published.record(Reload {
                    at: crate::clock::now(),
                    result: "rejected",
                    version: self.published.view.load().version,
                    errors: errors.clone(),
                    warnings: warnings.clone(),
                    took_ms: 0.0,
                });
                self.published
                    .update_view(|view| view.source = SourceReport { errors, warnings });
            }
        }
    }

    async fn apply_store(&mut self, store: Arc<Store>, warnings: Vec<String>) {
        let started = Instant::now();
        let current = self.published.view();
        let translated_before = current.version > 0;
        let difference = match &self.last_store {
            Some(last) if translated_before => last.difference(&store),
            _ => Difference::Objects,
        };
        if difference == Difference::Nothing {
            // Statuses (our own writes, read back) or versions only: keep everything.
            self.last_store = Some(store);
            if !current.source.errors.is_empty() || current.source.warnings != warnings {
                self.published.update_view(|view| {
                    view.source = SourceReport {
                        errors: Vec::new(),
                        warnings,
                    }
                });
            }
            return;
        }
        // A change of EndpointSlices alone cannot change routes or statuses: refresh the
        // clusters' endpoints and keep everything else.
        let endpoints_only = difference == Difference::EndpointSlices;
        let in_use = current.ir.clone();
        let applied_store = store.clone();
        // Moved into the blocking task and back; should translation panic, the next update
        // starts from an empty cache.
        let fresh = self.translator.fresh();
        let mut translator = std::mem::replace(&mut self.translator, fresh);
        // Translation is CPU-bound; keep it off the threads that serve requests.
        let translation = match tokio::task::spawn_blocking(move || {
            let translated = if endpoints_only {
                (refresh_endpoints(&store, &in_use), None)
            } else {
                let t = translator.translate(&store);
                (t.ir, Some(t.statuses))
            };
            (translated, translator)
        })
        .await
        {
            Ok((t, translator)) => {
                self.translator = translator;
                t
            }
            Err(error) => {
                tracing::error!(%error, "translation panicked; keeping the last good configuration");
                self.metrics.config_reloads_rejected.inc();
                return;
            }
        };
        let cache = self.translator.stats();
        let (translated_ir, translated_statuses) = translation;
        let translated_in = started.elapsed();
        self.metrics.observe_stage("translate", translated_in);
        let compile_started = Instant::now();
        let mut version = current.version;
        let mut ir = current.ir.clone();
        let mut unbound = current.unbound_ports.clone();
        if *current.ir != translated_ir || !translated_before {
            let next = Arc::new(translated_ir);
            match self.dataplane.apply(next.clone(), version + 1).await {
                Ok(applied) => {
                    unbound = applied.unbound;
                    self.metrics.certificates.observe(&next);
                }
                Err(error) => {
                    tracing::error!(%error, "configuration not applied; the last good configuration keeps serving");
                    self.metrics.config_reloads_rejected.inc();
                    self.published.record(Reload {
                        at: crate::clock::now(),
                        result: "rejected",
                        version,
                        errors: vec![error.to_string()],
                        warnings: warnings.clone(),
                        took_ms: started.elapsed().as_secs_f64() * 1e3,
                    });
                    self.published.update_view(|view| {
                        view.source = SourceReport {
                            errors: vec![error.to_string()],
                            warnings,
                        }
                    });
                    return;
                }
            }
            version += 1;
            ir = next;
            self.metrics.config_reloads.inc();
            self.metrics
                .observe_stage("compile", compile_started.elapsed());
        }
        let status_started = Instant::now();
        let unbound_changed = unbound != current.unbound_ports;
        let unmarked = match translated_statuses {
            Some(mut statuses) => {
                if !self.gateway_addresses.is_empty() {
                    for object in &mut statuses {
                        if let StatusBody::Gateway(gateway) = &mut object.status {
                            gateway.addresses.clone_from(&self.gateway_addresses);
                        }
                    }
                }
                Some(Arc::new(statuses))
            }
            // Endpoints only: the same statuses, marked again if the bind results changed.
            None if unbound_changed => Some(self.unmarked_statuses(&current)),
            None => None,
        };
        let statuses = match unmarked {
            Some(unmarked) => {
                let statuses = self.mark_and_stamp(unmarked, &ir, &unbound, &current);
                self.metrics
                    .observe_stage("status", status_started.elapsed());
                statuses
            }
            None => current.statuses.clone(),
        };
        for warning in &warnings {
            tracing::warn!(%warning, "configuration warning");
        }
        self.last_store = Some(applied_store.clone());
        self.published.record(Reload {
            at: crate::clock::now(),
            result: if version == current.version {
                "unchanged"
            } else {
                "applied"
            },
            version,
            errors: Vec::new(),
            warnings: warnings.clone(),
            took_ms: started.elapsed().as_secs_f64() * 1e3,
        });
        self.published.view.store(Arc::new(View {
            version,
            ir,
            statuses,
            source: SourceReport {
                errors: Vec::new(),
                warnings,
            },
            unbound_ports: unbound,
            store: Some(applied_store),
        }));
        if !translated_before && version != current.version {
            // The first configuration: reading and translating every object freed far more
            // than it kept. Given back now rather than after mimalloc's purge delay, which a
            // quiet proxy may never reach. Not after later changes: their pages are reused by
            // the next one, and faulting them in again slowed a new route at 5,000 routes by
            // about 1.4 ms (docs/benchmarks.md, "Memory per route: what is left").
            gantry_allocator::release_free_memory();
        }
        // Set after the view, so that the gauge never names a version `/config` does not show.
        self.metrics
            .config_version
            .set(i64::try_from(version).unwrap_or(i64::MAX));
        tracing::info!(
            version,
            endpoints_only,
            routes_translated = cache.translated,
            routes_reused = cache.reused,
            translate_ms = translated_in.as_secs_f64() * 1e3,
            total_ms = started.elapsed().as_secs_f64() * 1e3,
            "configuration applied"
        );
    }

    /// The translated statuses in use before the unbound ports were marked on them.
    fn unmarked_statuses(&self, current: &View) -> Arc<Vec<ObjectStatus>> {
        if self.unmarked_statuses.is_empty() {
            // Nothing was marked: the statuses in use are unmarked.
            current.statuses.clone()
        } else {
            self.unmarked_statuses.clone()
        }
    }

    /// Marks the unbound ports' listeners, stamps the times and publishes the statuses to the
    /// status writer. The unmarked statuses are kept (shared, not copied) only while a port is
    /// unbound, for when it gets bound.
    fn mark_and_stamp(
        &mut self,
        unmarked: Arc<Vec<ObjectStatus>>,
        ir: &Ir,
        unbound: &[UnboundPort],
        current: &View,
    ) -> Arc<Vec<ObjectStatus>> {
        let store = match (&self.rate_limit_store, &self.rate_limit_store_down) {
            (Some((address, _)), Some(error)) => Some(StoreUnavailable { address, error }),
            _ => None,
        };
        self.unmarked_statuses = if unbound.is_empty() && store.is_none() {
            Arc::default()
        } else {
            unmarked.clone()
        };
        let mut statuses = Arc::unwrap_or_clone(unmarked);
        mark_unbound(&mut statuses, ir, unbound);
        mark_store_unavailable(&mut statuses, ir, store.as_ref());
        stamp::stamp(&current.statuses, &mut statuses, &crate::clock::now());
        let statuses = Arc::new(statuses);
        self.published.statuses.send_replace(statuses.clone());
        statuses
    }
}
