//! Endpoint health of a cluster with a BackendConfigPolicy `healthCheck`: active probes,
//! passive outlier detection and panic mode, per proxy replica.
//!
//! Each endpoint of such a cluster has an [`EndpointSlot`]: its state plus one task that
//! probes it (active checks) and returns it from ejection when its time is up (passive
//! checks). A new snapshot's cluster takes over the slots of the previous snapshot's while
//! the health settings and transport stay the same, keyed by endpoint address, so a reload
//! neither restarts probes nor forgets ejections; a slot's task stops, and its metric series
//! go, when the last snapshot listing the endpoint goes.

// Locks here: an endpoint's outlier counters (taken per request only for clusters with passive
// checks, never for others) and the ejection decision (taken only when a threshold is reached).
#![allow(clippy::disallowed_types)]

mod probe;
pub mod state;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use http::uri::Authority;
use serde::Serialize;
use tokio::sync::Notify;
use tokio::task::AbortHandle;

use self::probe::Transport;
pub use self::state::Outcome;
use self::state::{ActiveState, OutlierState, Selection};
use super::tls::TlsUpstream;
use crate::telemetry::health::{EndpointLabels, HealthMetrics};
use gantry_translate::ir::{ClusterIr, HealthCheckIr, UpstreamProtocol, UpstreamTlsIr};

/// Milliseconds on the process's monotonic clock: the time base of ejections and reviews.
fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = *START.get_or_init(Instant::now);
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// What a cluster's health state was built from: state is kept while these stay the same.
#[derive(Debug, PartialEq)]
struct Key {
    settings: HealthCheckIr,
    protocol: UpstreamProtocol,
    tls: Option<UpstreamTlsIr>,
}

/// The health state of one cluster in one snapshot.
#[derive(Debug)]
pub struct ClusterHealth {
    shared: Arc<Shared>,
    /// In the cluster's endpoint order.
    endpoints: Vec<Arc<EndpointSlot>>,
}

/// What the snapshots of one cluster share while its settings stay.
#[derive(Debug)]
struct Shared {
    key: Key,
    cluster: Arc<str>,
    metrics: HealthMetrics,
    /// Serializes ejection decisions (the maximum percentage counts the ejected).
    ejecting: Mutex<()>,
    panic: AtomicBool,
}

/// One endpoint: its state, and the task probing it and ending its ejections.
#[derive(Debug)]
struct EndpointSlot {
    state: Arc<EndpointState>,
    task: Option<AbortHandle>,
    labels: EndpointLabels,
    metrics: HealthMetrics,
}

impl Drop for EndpointSlot {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
        self.metrics.release(&self.labels);
    }
}

#[derive(Debug)]
struct EndpointState {
    address: Authority,
    /// Active checks say healthy (always true without active checks).
    active: AtomicBool,
    /// Ejected by outlier detection.
    ejected: AtomicBool,
    outlier: Mutex<OutlierState>,
    /// Wakes the task when the endpoint is ejected.
    ejection: Notify,
}

impl EndpointState {
    fn available(&self) -> bool {
        self.active.load(Ordering::Relaxed) && !self.ejected.load(Ordering::Relaxed)
    }
}

/// One endpoint's health, for `GET /config`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointHealthView {
    pub endpoint: String,
    /// May receive requests (active checks pass and not ejected).
    pub healthy: bool,
    /// Active checks' verdict (true without active checks).
    pub active_healthy: bool,
    pub ejected: bool,
    /// Times outlier detection ejected it.
    pub ejections: u32,
}

/// A cluster's health, for `GET /config`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterHealthView {
    pub panic: bool,
    pub endpoints: Vec<EndpointHealthView>,
}

impl ClusterHealth {
    /// The health state of `ir`'s endpoints (`endpoints`, parsed, in order), or `None` when
    /// it has no health checks. Takes over `previous`'s state while its settings and transport
    /// are the same; otherwise starts afresh (every endpoint healthy). Probe tasks are spawned
    /// on the current Tokio runtime, when there is one.
    pub fn compile(
        ir: &ClusterIr,
        endpoints: &[Authority],
        tls: Option<&Arc<TlsUpstream>>,
        previous: Option<&ClusterHealth>,
        metrics: &HealthMetrics,
    ) -> Option<Self> {
        let settings = ir.backend_config.as_ref()?.health_check.as_ref()?;
        let key = Key {
            settings: settings.clone(),
            protocol: ir.protocol,
            tls: ir.tls.as_deref().cloned(),
        };
        let previous = previous.filter(|p| p.shared.key == key);
        let shared = match previous {
            Some(previous) => previous.shared.clone(),
            None => Arc::new(Shared {
                key,
                cluster: Arc::from(ir.name.as_str()),
                metrics: metrics.clone(),
                ejecting: Mutex::new(()),
                panic: AtomicBool::new(false),
            }),
        };
        let transport = settings.active.as_ref().map(|active| {
            Transport::new(
                shared.cluster.clone(),
                ir.protocol,
                tls.map(AsRef::as_ref),
                &active.probe,
            )
        });
        let endpoints = endpoints
            .iter()
            .map(|address| {
                previous
                    .and_then(|p| p.endpoints.iter().find(|s| s.state.address == *address))
                    .cloned()
                    .unwrap_or_else(|| EndpointSlot::start(&shared, address, transport.as_ref()))
            })
            .collect();
        Some(Self { shared, endpoints })
    }

    /// Which endpoints requests may go to now; sets the panic gauge when it changes.
    pub fn selection(&self) -> Selection {
        let healthy = self
            .endpoints
            .iter()
            .filter(|s| s.state.available())
            .count();
        let selection = state::selection(
            healthy,
            self.endpoints.len(),
            self.shared.key.settings.panic_threshold_percent,
        );
        let panic = selection == Selection::Panic;
        if self.shared.panic.swap(panic, Ordering::Relaxed) != panic {
            self.shared.metrics.set_panic(&self.shared.cluster, panic);
        }
        selection
    }

    /// Whether endpoint `index` may be chosen under `selection`.
    pub fn allows(&self, selection: Selection, index: usize) -> bool {
        match selection {
            Selection::Panic => true,
            Selection::Nothing => false,
            Selection::Healthy => self
                .endpoints
                .get(index)
                .is_some_and(|s| s.state.available()),
        }
    }

    /// Records how a request to `endpoint` ended (outlier detection); may eject it.
    pub fn observe(&self, endpoint: &Authority, outcome: Outcome) {
        let Some(settings) = &self.shared.key.settings.passive else {
            return;
        };
        let Some(slot) = self.endpoints.iter().find(|s| s.state.address == *endpoint) else {
            return;
        };
        let reached = lock(&slot.state.outlier).record(outcome, settings);
        if !reached {
            return;
        }
        let _deciding = lock(&self.shared.ejecting);
        let ejected = self
            .endpoints
            .iter()
            .filter(|s| s.state.ejected.load(Ordering::Relaxed))
            .count();
        if !state::may_eject(ejected, self.endpoints.len(), settings.max_ejection_percent) {
            return;
        }
        let mut outlier = lock(&slot.state.outlier);
        if outlier.ejected_until.is_some() {
            return;
        }
        outlier.eject(now_ms(), settings);
        slot.state.ejected.store(true, Ordering::Relaxed);
        drop(outlier);
        self.shared.metrics.ejected(&self.shared.cluster);
        self.shared.metrics.set_healthy(&slot.labels, false);
        tracing::info!(cluster = %self.shared.cluster, endpoint = %endpoint, "outlier detection ejected an endpoint");
        slot.state.ejection.notify_one();
    }

    /// The health of every endpoint, for `GET /config`.
    pub fn view(&self) -> ClusterHealthView {
        ClusterHealthView {
            panic: self.selection() == Selection::Panic,
            endpoints: self
                .endpoints
                .iter()
                .map(|slot| {
                    let state = &slot.state;
                    EndpointHealthView {
                        endpoint: state.address.to_string(),
                        healthy: state.available(),
                        active_healthy: state.active.load(Ordering::Relaxed),
                        ejected: state.ejected.load(Ordering::Relaxed),
                        ejections: lock(&state.outlier).ejections,
                    }
                })
                .collect(),
        }
    }
}

impl EndpointSlot {
    fn start(
        shared: &Arc<Shared>,
        address: &Authority,
        transport: Option<&Transport>,
    ) -> Arc<Self> {
        let state = Arc::new(EndpointState {
            address: address.clone(),
            active: AtomicBool::new(true),
            ejected: AtomicBool::new(false),
            outlier: Mutex::new(OutlierState::default()),
            ejection: Notify::new(),
        });
        let labels = EndpointLabels {
            cluster: shared.cluster.to_string(),
            endpoint: address.to_string(),
        };
        shared.metrics.hold(&labels);
        shared.metrics.set_healthy(&labels, true);
        let task = tokio::runtime::Handle::try_current().ok().map(|runtime| {
            let watch = Watch {
                settings: shared.key.settings.clone(),
                transport: transport.cloned(),
                state: state.clone(),
                labels: labels.clone(),
                metrics: shared.metrics.clone(),
            };
            runtime.spawn(watch.run()).abort_handle()
        });
        Arc::new(Self {
            state,
            task,
            labels,
            metrics: shared.metrics.clone(),
        })
    }
}

/// The task of one endpoint.
struct Watch {
    settings: HealthCheckIr,
    transport: Option<Transport>,
    state: Arc<EndpointState>,
    labels: EndpointLabels,
    metrics: HealthMetrics,
}

impl Watch {
    async fn run(self) {
        tokio::join!(self.probe(), self.review());
    }

    /// Active checks: a probe every interval, after a random initial delay.
    async fn probe(&self) {
        let (Some(active), Some(transport)) = (&self.settings.active, &self.transport) else {
            return;
        };
        let jitter = fastrand::u64(0..=active.initial_jitter_ms);
        tokio::time::sleep(Duration::from_millis(jitter)).await;
        let interval = Duration::from_millis(active.interval_ms.max(1));
        let timeout = Duration::from_millis(active.timeout_ms.max(1));
        let mut verdict = ActiveState::default();
        loop {
            let started = tokio::time::Instant::now();
            let result =
                tokio::time::timeout(timeout, transport.probe(&self.state.address, &active.probe))
                    .await;
            let success = matches!(result, Ok(Ok(true)));
            if let Ok(Err(error)) = &result {
                tracing::debug!(cluster = %self.labels.cluster, endpoint = %self.labels.endpoint, %error, "health check probe failed");
            }
            self.metrics.probe(&self.labels.cluster, success);
            if verdict.record(success, active) {
                self.state.active.store(verdict.healthy, Ordering::Relaxed);
                self.metrics
                    .set_healthy(&self.labels, self.state.available());
                tracing::info!(cluster = %self.labels.cluster, endpoint = %self.labels.endpoint, healthy = verdict.healthy, "active health checks changed an endpoint's health");
            }
            tokio::time::sleep_until(started + interval).await;
        }
    }

    /// Passive checks: returns the endpoint at the review its ejection ends at.
    async fn review(&self) {
        if self.settings.passive.is_none() {
            return;
        }
        loop {
            let until = lock(&self.state.outlier).ejected_until;
            let Some(until) = until else {
                self.state.ejection.notified().await;
                continue;
            };
            let wait = until.saturating_sub(now_ms());
            tokio::time::sleep(Duration::from_millis(wait)).await;
            if lock(&self.state.outlier).review(now_ms()) {
                self.state.ejected.store(false, Ordering::Relaxed);
                self.metrics
                    .set_healthy(&self.labels, self.state.available());
                tracing::info!(cluster = %self.labels.cluster, endpoint = %self.labels.endpoint, "an ejected endpoint returned to service");
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
