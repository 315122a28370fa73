//! Runs one proxy process from a [`Source`]: the same wiring in standalone and Kubernetes mode.
//!
//! Order of start: metrics (with the source's families) → data plane → control loop → admin
//! server → source.
//!
//! Order of stop, on SIGTERM or SIGINT ([`Running::until`]):
//! 1. `/readyz` fails and `gantry_drain_phase` is 1; for the drain delay (`--drain-delay`) every
//!    listener keeps accepting and serving as before, and the source keeps following the
//!    configuration, so that kube-proxy and load balancers, told by the readiness (or by the
//!    pod's deletion), stop sending new connections while none is refused. HTTP/1.1 responses
//!    carry `Connection: close`, moving keep-alive clients to new connections elsewhere.
//! 2. When the delay ends (at once on a second signal): `gantry_drain_phase` is 2, the source
//!    stops and releases what it holds (Kubernetes mode: the Lease), every port stops
//!    accepting, UDP sessions end, HTTP/2 connections get GOAWAY, HTTP/1.1 connections close
//!    after the response in flight, and upgraded (WebSocket), TCP and TLS route connections
//!    are closed.
//! 3. The process exits once every connection has closed, or when the drain timeout
//!    (`--drain-timeout`) has passed since step 2 (at once on a third signal), dropping what is
//!    still open. So the whole stop takes at most the delay plus the timeout.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::acme_manager::Manager;
use crate::admin;
use crate::control::{ControlLoop, Published};
use crate::rate_limit::global::GlobalBuckets;
use crate::server::{DataPlane, DataPlaneOptions, Extras};
use crate::source::{Source, SourceError, SourceLink};
use crate::telemetry::{DrainPhase, Metrics};

/// Why a proxy stopped other than by a signal.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("binding the admin address {addr}: {source}")]
    Admin {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("binding the admin debug address {addr}: {source}")]
    AdminDebug {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Source(SourceError),
    #[error("the source task failed: {0}")]
    SourceTask(tokio::task::JoinError),
    #[error("the control loop stopped")]
    ControlLoop,
    #[error("opening the ACME storage directory (--acme-dir): {0}")]
    Acme(std::io::Error),
    #[error("--rate-limit-redis: {0}")]
    Redis(String),
}

/// Settings of `serve` that do not depend on the mode.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// `/healthz`, `/readyz`, `/metrics` (and `/status`, `/config` per [`admin::Placement`]).
    pub admin_addr: SocketAddr,
    /// Where `/status` and `/config` are served (`--admin-debug-addr`); see [`admin::Placement`].
    pub admin_debug_addr: Option<SocketAddr>,
    pub dataplane: DataPlaneOptions,
    /// How long the process keeps serving, unready, after SIGTERM (`--drain-delay`).
    pub drain_delay: Duration,
    /// How the dashboard runs `explain` (`/ui/api/explain`); none: the search box says so.
    pub explainer: Option<admin::ui::Explainer>,
    /// OpenTelemetry tracing (`--tracing-endpoint`); none: no request is traced.
    pub tracing: Option<crate::telemetry::trace::TracingOptions>,
    /// Automatic certificates from an ACME CA (`--acme-directory`); none: a listener whose
    /// certificate Secret does not exist is not served.
    pub acme: Option<crate::acme::AcmeOptions>,
    /// Kubernetes mode's side of ACME (the fleet's state, leadership, Secret writes);
    /// none: standalone, the storage directory of `acme`.
    pub acme_cluster: Option<Arc<dyn crate::acme_manager::Cluster>>,
    /// Redis for global RateLimitPolicy rules (`--rate-limit-redis`, `redis://host:port`).
    pub rate_limit_redis: Option<String>,
}

/// Default of `--drain-delay`. Removing a terminating pod from a Service's endpoints reaches
/// every node's kube-proxy, and load balancers that target pods, within a few seconds; until
/// then new connections still arrive and must be served. Five seconds covers a healthy cluster
/// (it is the sleep a `preStop` hook commonly waits for) and, with the default drain timeout,
/// stays within Kubernetes' default termination grace period of 30 seconds.
pub const DEFAULT_DRAIN_DELAY: Duration = Duration::from_secs(5);

/// A proxy started by [`start`]: what it publishes, and a handle to stop it.
#[derive(Debug)]
pub struct Running {
    pub published: Arc<Published>,
    /// Where the admin server listens (the port is chosen when 0 was asked for).
    pub admin_addr: SocketAddr,
    /// Where `/status` and `/config` are served, when not on `admin_addr` and not nowhere.
    pub admin_debug_addr: Option<SocketAddr>,
    dataplane: Arc<DataPlane>,
    drain_delay: Duration,
    shutdown: watch::Sender<bool>,
    source: tokio::task::JoinHandle<Result<(), SourceError>>,
    control: tokio::task::JoinHandle<()>,
    _admin: tokio::task::JoinHandle<()>,
    _admin_debug: Option<tokio::task::JoinHandle<()>>,
}

/// Starts serving `source`; returns once the admin server is bound.
pub async fn start(source: impl Source, options: ServeOptions) -> Result<Running, ServeError> {
    let metrics = Arc::new(Metrics::with(|registry| source.register_metrics(registry)));
    let drain_delay = options.drain_delay;
    let challenges = match &options.acme {
        Some(acme) => Some(
            Manager::challenges(acme, options.acme_cluster.as_ref()).map_err(ServeError::Acme)?,
        ),
        None => None,
    };
    let global_rate_limits = match &options.rate_limit_redis {
        Some(url) => Some(Arc::new(
            GlobalBuckets::new(url).map_err(ServeError::Redis)?,
        )),
        None => None,
    };
    let rate_limit_store = global_rate_limits
        .as_ref()
        .map(|g| (g.address(), g.health()));
    let dataplane = Arc::new(DataPlane::with_extras(
        options.dataplane,
        metrics.clone(),
        Extras {
            tracing: options.tracing,
            acme: challenges.clone(),
            global_rate_limits,
        },
    ));
    tokio::spawn(crate::server::trim::run(metrics.active_connections.clone()));
    let mut control = ControlLoop::new(
        source.translate_options(),
        dataplane.clone(),
        metrics.clone(),
    )
    .with_gateway_addresses(source.gateway_addresses());
    if let Some((address, health)) = rate_limit_store {
        control = control.with_rate_limit_store(address, health);
    }
    let published = control.published().clone();
    let placement = admin::Placement::new(options.admin_addr, options.admin_debug_addr);
    let endpoints = match placement {
        admin::Placement::OnAdmin => admin::Endpoints::WithDebug,
        admin::Placement::Separate(_) | admin::Placement::Nowhere => admin::Endpoints::Public,
    };
    let (admin_addr, admin) = admin::serve(
        options.admin_addr,
        published.clone(),
        endpoints,
        options.explainer.clone(),
    )
    .await
    .map_err(|source| ServeError::Admin {
        addr: options.admin_addr,
        source,
    })?;
    let (admin_debug_addr, admin_debug) = match placement {
        admin::Placement::Separate(addr) => {
            let (bound, task) = admin::serve(
                addr,
                published.clone(),
                admin::Endpoints::WithDebug,
                options.explainer.clone(),
            )
            .await
            .map_err(|source| ServeError::AdminDebug { addr, source })?;
            (Some(bound), Some(task))
        }
        admin::Placement::OnAdmin | admin::Placement::Nowhere => (None, None),
    };
    let (updates, updates_rx) = watch::channel(None);
    // With ACME, the manager stands between the source and the control loop and adds the
    // certificates it obtains; it stops when the source does.
    let updates = match (options.acme, challenges) {
        (Some(acme), Some(challenges)) => {
            let manager = Manager::new(
                acme,
                source.translate_options(),
                challenges,
                metrics.acme.clone(),
                options.acme_cluster,
            )
            .map_err(ServeError::Acme)?;
            let (from_source, to_manager) = watch::channel(None);
            tokio::spawn(manager.run(to_manager, updates));
            from_source
        }
        _ => updates,
    };
    let (shutdown, shutdown_rx) = watch::channel(false);
    let link = SourceLink {
        updates,
        statuses: published.statuses(),
        metrics,
        shutdown: shutdown_rx,
    };
    let source = tokio::spawn(source.run(link));
    let control = tokio::spawn(control.run(updates_rx));
    Ok(Running {
        published,
        admin_addr,
        admin_debug_addr,
        dataplane,
        drain_delay,
        shutdown,
        source,
        control,
        _admin: admin,
        _admin_debug: admin_debug,
    })
}

impl Running {
    /// Serves until the first stop request arrives on `stops` (a signal's name), then stops
    /// gracefully in the order of the module documentation: a second request skips what is
    /// left of the drain delay, a third stops waiting for connections. When the source or the
    /// control loop fails, the proxy stops the same way without a delay and returns the error.
    pub async fn until(
        self,
        mut stops: mpsc::UnboundedReceiver<&'static str>,
    ) -> Result<(), ServeError> {
        let Self {
            published,
            dataplane,
            drain_delay,
            shutdown,
            mut source,
            mut control,
            ..
        } = self;
        let failed = tokio::select! {
            result = &mut source => Some(match result {
                Ok(Ok(())) => ServeError::Source("the source stopped".into()),
                Ok(Err(error)) => ServeError::Source(error),
                Err(error) => ServeError::SourceTask(error),
            }),
            _ = &mut control => Some(ServeError::ControlLoop),
            signal = next_stop(&mut stops) => {
                tracing::info!(signal, "stop requested");
                None
            }
        };
        published.start_draining();
        dataplane.announce_shutdown();
        if failed.is_none() && !drain_delay.is_zero() {
            tracing::info!(
                ?drain_delay,
                "draining (1/2): /readyz fails; every listener keeps serving for the drain \
                 delay, so load balancers stop sending new connections; HTTP/1.1 responses \
                 carry Connection: close"
            );
            tokio::select! {
                () = tokio::time::sleep(drain_delay) => tracing::info!("drain delay over"),
                signal = next_stop(&mut stops) => {
                    tracing::info!(signal, "second stop request: the rest of the drain delay skipped");
                }
            }
        }
        published.metrics().set_drain_phase(DrainPhase::Closing);
        let timeout = dataplane.drain_timeout();
        let deadline = tokio::time::Instant::now() + timeout;
        if failed.is_none() {
            shutdown.send_replace(true);
        }
        let open = dataplane.close().await;
        tracing::info!(
            open,
            ?timeout,
            "draining (2/2): no longer accepting; HTTP/2 connections told GOAWAY, HTTP/1.1 \
             connections close after their response in flight, upgraded, TCP and TLS route \
             connections closed, UDP sessions ended"
        );
        let source_stopped = async {
            if failed.is_some() {
                return;
            }
            match tokio::time::timeout_at(deadline, &mut source).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(error))) => tracing::warn!(%error, "the source did not stop cleanly"),
                Ok(Err(error)) => tracing::warn!(%error, "the source task failed while stopping"),
                Err(_) => tracing::warn!("the source did not stop within the drain timeout"),
            }
        };
        let connections_closed = async {
            tokio::select! {
                closed = tokio::time::timeout_at(deadline, dataplane.closed()) => match closed {
                    Ok(()) => tracing::info!("every connection closed"),
                    Err(_) => tracing::warn!(
                        open = dataplane.open_connections(),
                        ?timeout,
                        "drain timeout elapsed with connections still open; they are dropped"
                    ),
                },
                signal = next_stop(&mut stops) => tracing::warn!(
                    signal,
                    open = dataplane.open_connections(),
                    "another stop request: connections still open are dropped"
                ),
            }
        };
        tokio::join!(source_stopped, connections_closed);
        // The spans of the last requests, within what is left of the drain timeout (at least
        // a second, so that a drain that used it all still sends them).
        dataplane
            .flush_traces(deadline.max(tokio::time::Instant::now() + Duration::from_secs(1)))
            .await;
        control.abort();
        source.abort();
        match failed {
            Some(error) => Err(error),
            None => {
                tracing::info!("stopped");
                Ok(())
            }
        }
    }
}

/// The next stop request; never, once nothing can send one.
async fn next_stop(stops: &mut mpsc::UnboundedReceiver<&'static str>) -> &'static str {
    match stops.recv().await {
        Some(signal) => signal,
        None => std::future::pending().await,
    }
}

/// Serves `source` until SIGTERM or SIGINT, then stops gracefully ([`Running::until`]).
pub async fn serve(source: impl Source, options: ServeOptions) -> Result<(), ServeError> {
    let running = start(source, options).await?;
    match running.admin_debug_addr {
        Some(debug_addr) => {
            tracing::info!(admin_addr = %running.admin_addr, admin_debug_addr = %debug_addr, "gantry-proxy serving")
        }
        None => tracing::info!(admin_addr = %running.admin_addr, "gantry-proxy serving"),
    }
    let (stops, stop_requests) = mpsc::unbounded_channel();
    tokio::spawn(forward_signals(stops));
    running.until(stop_requests).await
}

/// Sends the name of every SIGTERM and SIGINT to `stops`.
async fn forward_signals(stops: mpsc::UnboundedSender<&'static str>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers the process can only be killed.
        tracing::warn!("cannot handle SIGTERM and SIGINT; the proxy stops only when killed");
        return std::future::pending().await;
    };
    loop {
        let signal = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        if stops.send(signal).is_err() {
            return;
        }
    }
}
