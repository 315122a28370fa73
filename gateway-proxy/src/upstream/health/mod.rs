//! Endpoint health of a cluster with a BackendConfigPolicy `healthCheck`: active probes,
//! passive outlier detection and panic mode, per proxy replica.
//!
//! Each endpoint of such a cluster has an [`EndpointSlot`]: its state plus one task that
//! probes it (active checks) and returns it from ejection when its time is up (passive
//! checks). A new snapshot's cluster takes over the slots of the previous snapshot's while
//! the health settings and transport stay the same, keyed by endpoint address, so a reload
//! neither restarts probes nor forgets ejections; a slot's task stops, and its metric series
//! go, when the last snapshot listing the endpoint goes.
//!
//! The load balancer reads health through [`ClusterHealth::choosable`], one candidate filter
//! for every algorithm, session persistence and a retry's other endpoint. Requests take no
//! lock: health flags and outlier counters are atomics, and which endpoints may be chosen
//! (healthy ones, all in panic mode, none) is recomputed only after a health change.

// The one lock here serializes ejection decisions (the maximum percentage counts the ejected):
// taken only when an endpoint's failures reach a threshold, never per request.
#![allow(clippy::disallowed_types)]

mod probe;
pub mod state;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use http::uri::Authority;
use serde::Serialize;
use tokio::sync::Notify;
use tokio::task::AbortHandle;

use self::probe::Transport;
pub use self::state::Outcome;
use self::state::{ActiveState, OutlierState, Selection};
use super::balancer::{Availability, Choosable};
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

/// `ClusterHealth::cached` before the first computation.
const UNCACHED: u64 = u64::MAX;

/// The health state of one cluster in one snapshot.
#[derive(Debug)]
pub struct ClusterHealth {
    shared: Arc<Shared>,
    /// In the cluster's endpoint order.
    endpoints: Vec<Arc<EndpointSlot>>,
    /// The last [`Selection`] computed, with the [`Shared::epoch`] it was computed at
    /// (`epoch << 2 | selection`): requests recount healthy endpoints only after a change.
    cached: AtomicU64,
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
    /// Bumped after every change of an endpoint's availability.
    epoch: AtomicU64,
}

impl Shared {
    /// An endpoint's availability changed: selections are computed again.
    fn changed(&self) {
        self.epoch.fetch_add(1, Ordering::Release);
    }
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
    /// Passive checks: consecutive failures and ejection.
    outlier: OutlierState,
    /// Wakes the task when the endpoint is ejected.
    ejection: Notify,
}

impl EndpointState {
    fn available(&self) -> bool {
        self.active.load(Ordering::Relaxed) && self.outlier.ejected_until().is_none()
    }
}

/// A cluster's endpoint health as this replica sees it, for `GET /config`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterHealthView {
    /// Panic mode: too few endpoints are healthy, so requests go to all of them.
    pub panic: bool,
    pub endpoints: Vec<EndpointHealthView>,
}

/// One endpoint's health, for `GET /config`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointHealthView {
    pub endpoint: String,
    /// `healthy` (may receive requests), `unhealthy` (its active checks fail) or `ejected`
    /// (by outlier detection; an ejected endpoint whose checks fail too is `unhealthy`).
    pub state: &'static str,
    /// The active checks' verdict; absent without active checks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active_healthy: Option<bool>,
    /// While ejected: when it returns (RFC 3339, UTC, rounded to the second).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ejected_until: Option<String>,
    /// Times outlier detection ejected it.
    pub ejections: u32,
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
            None => {
                let cluster: Arc<str> = Arc::from(ir.name.as_str());
                // The cluster's series go with its last endpoint: none without endpoints.
                if !endpoints.is_empty() {
                    metrics.set_panic(&cluster, false);
                }
                Arc::new(Shared {
                    key,
                    cluster,
                    metrics: metrics.clone(),
                    ejecting: Mutex::new(()),
                    panic: AtomicBool::new(false),
                    epoch: AtomicU64::new(0),
                })
            }
        };
        let transport = settings.active.as_ref().map(|active| {
            Transport::new(
                shared.cluster.clone(),
                ir.protocol,
                tls.map(AsRef::as_ref),
                &active.probe,
            )
        });
        let kept: HashMap<&Authority, &Arc<EndpointSlot>> = previous
            .map(|p| p.endpoints.iter().map(|s| (&s.state.address, s)).collect())
            .unwrap_or_default();
        let endpoints = endpoints
            .iter()
            .map(|address| match kept.get(address) {
                Some(slot) => Arc::clone(slot),
                None => EndpointSlot::start(&shared, address, transport.as_ref()),
            })
            .collect();
        // Endpoints came or went: panic mode is decided again.
        shared.changed();
        Some(Self {
            shared,
            endpoints,
            cached: AtomicU64::new(UNCACHED),
        })
    }

    /// Which endpoints requests may go to now: the healthy ones; all of them in panic mode;
    /// none when none is healthy and the panic threshold is 0.
    pub fn choosable(&self) -> Choosable<'_> {
        match self.selection() {
            Selection::Healthy => Choosable::available(self.endpoints.len(), self),
            Selection::Panic => Choosable::all(self.endpoints.len()),
            Selection::Nothing => Choosable::none(),
        }
    }

    /// The current [`Selection`]: recomputed after a health change, else the cached one.
    /// Sets the panic gauge when panic mode starts or ends.
    fn selection(&self) -> Selection {
        let epoch = self.shared.epoch.load(Ordering::Acquire);
        let cached = self.cached.load(Ordering::Relaxed);
        if cached != UNCACHED && cached >> 2 == epoch {
            return decode(cached & 3);
        }
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
        self.cached
            .store(epoch << 2 | encode(selection), Ordering::Relaxed);
        let panic = selection == Selection::Panic;
        if self.shared.panic.swap(panic, Ordering::Relaxed) != panic {
            self.shared.metrics.set_panic(&self.shared.cluster, panic);
            if panic {
                tracing::warn!(cluster = %self.shared.cluster, healthy, endpoints = self.endpoints.len(), "panic mode: too few healthy endpoints, requests go to all of them");
            } else {
                tracing::info!(cluster = %self.shared.cluster, healthy, "panic mode ended");
            }
        }
        selection
    }

    /// Records how a request to endpoint `index` ended (outlier detection); may eject it.
    /// Lock-free unless a threshold is reached.
    pub fn observe(&self, index: usize, outcome: Outcome) {
        let Some(settings) = &self.shared.key.settings.passive else {
            return;
        };
        let Some(slot) = self.endpoints.get(index) else {
            return;
        };
        let outlier = &slot.state.outlier;
        if !outlier.record(outcome, settings) {
            return;
        }
        let _deciding = self
            .shared
            .ejecting
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if outlier.ejected_until().is_some() {
            return;
        }
        let ejected = self
            .endpoints
            .iter()
            .filter(|s| s.state.outlier.ejected_until().is_some())
            .count();
        if !state::may_eject(ejected, self.endpoints.len(), settings.max_ejection_percent) {
            // As Envoy: the run of failures is counted afresh.
            outlier.reset();
            tracing::debug!(cluster = %self.shared.cluster, endpoint = %slot.state.address, "outlier detection did not eject an endpoint: maxEjectionPercent reached");
            return;
        }
        outlier.eject(now_ms(), settings);
        self.shared.changed();
        self.shared.metrics.ejected(&self.shared.cluster);
        self.shared
            .metrics
            .set_healthy(&slot.labels, slot.state.available());
        tracing::info!(cluster = %self.shared.cluster, endpoint = %slot.state.address, ejections = outlier.ejections(), "outlier detection ejected an endpoint");
        slot.state.ejection.notify_one();
    }

    /// The health of every endpoint, for `GET /config`.
    pub fn view(&self) -> ClusterHealthView {
        let now = now_ms();
        let wall = SystemTime::now();
        let has_active = self.shared.key.settings.active.is_some();
        ClusterHealthView {
            panic: self.selection() == Selection::Panic,
            endpoints: self
                .endpoints
                .iter()
                .map(|slot| {
                    let state = &slot.state;
                    let active = state.active.load(Ordering::Relaxed);
                    let until = state.outlier.ejected_until();
                    EndpointHealthView {
                        endpoint: state.address.to_string(),
                        state: match (active, until) {
                            (false, _) => "unhealthy",
                            (true, Some(_)) => "ejected",
                            (true, None) => "healthy",
                        },
                        active_healthy: has_active.then_some(active),
                        ejected_until: until.map(|until| {
                            let left = Duration::from_millis(until.saturating_sub(now));
                            humantime::format_rfc3339_seconds(wall + left).to_string()
                        }),
                        ejections: state.outlier.ejections(),
                    }
                })
                .collect(),
        }
    }
}

impl Availability for ClusterHealth {
    fn available(&self, index: usize) -> bool {
        self.endpoints
            .get(index)
            .is_some_and(|s| s.state.available())
    }
}

fn encode(selection: Selection) -> u64 {
    match selection {
        Selection::Healthy => 0,
        Selection::Panic => 1,
        Selection::Nothing => 2,
    }
}

fn decode(code: u64) -> Selection {
    match code {
        0 => Selection::Healthy,
        1 => Selection::Panic,
        _ => Selection::Nothing,
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
            outlier: OutlierState::default(),
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
                shared: shared.clone(),
                transport: transport.cloned(),
                state: state.clone(),
                labels: labels.clone(),
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

/// The task of one endpoint: owned by its [`EndpointSlot`], aborted when the slot goes.
struct Watch {
    shared: Arc<Shared>,
    transport: Option<Transport>,
    state: Arc<EndpointState>,
    labels: EndpointLabels,
}

impl Watch {
    async fn run(self) {
        tokio::join!(self.probe(), self.review());
    }

    fn settings(&self) -> &HealthCheckIr {
        &self.shared.key.settings
    }

    /// Active checks: a probe every interval, after a random initial delay.
    async fn probe(&self) {
        let (Some(active), Some(transport)) = (&self.settings().active, &self.transport) else {
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
            self.shared.metrics.probe(&self.labels.cluster, success);
            if verdict.record(success, active) {
                self.state.active.store(verdict.healthy, Ordering::Relaxed);
                self.shared.changed();
                self.shared
                    .metrics
                    .set_healthy(&self.labels, self.state.available());
                tracing::info!(cluster = %self.labels.cluster, endpoint = %self.labels.endpoint, healthy = verdict.healthy, "active health checks changed an endpoint's health");
            }
            tokio::time::sleep_until(started + interval).await;
        }
    }

    /// Passive checks: returns the endpoint at the review its ejection ends at.
    async fn review(&self) {
        if self.settings().passive.is_none() {
            return;
        }
        loop {
            let Some(until) = self.state.outlier.ejected_until() else {
                // `notify_one` keeps a permit when nobody waits: an ejection between the check
                // and this wait is not missed.
                self.state.ejection.notified().await;
                continue;
            };
            let wait = until.saturating_sub(now_ms());
            tokio::time::sleep(Duration::from_millis(wait)).await;
            if self.state.outlier.review(now_ms()) {
                self.shared.changed();
                self.shared
                    .metrics
                    .set_healthy(&self.labels, self.state.available());
                tracing::info!(cluster = %self.labels.cluster, endpoint = %self.labels.endpoint, "an ejected endpoint returned to service");
            }
        }
    }
}
