//! Runs one proxy process from a [`Source`]: the same wiring in standalone and Kubernetes mode.
//!
//! Order of start: metrics (with the source's families) → data plane → control loop → admin
//! server → source. Order of stop, on SIGTERM or SIGINT: `/readyz` turns unready, the source
//! releases what it holds (Kubernetes mode: the Lease), then the data plane stops accepting and
//! lets in-flight requests finish within the drain timeout.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::watch;

use crate::admin;
use crate::control::{ControlLoop, Published};
use crate::server::{DataPlane, DataPlaneOptions};
use crate::source::{Source, SourceError, SourceLink};
use crate::telemetry::Metrics;

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
}

/// Settings of `serve` that do not depend on the mode.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// `/healthz`, `/readyz`, `/metrics` (and `/status`, `/config` per [`admin::Placement`]).
    pub admin_addr: SocketAddr,
    /// Where `/status` and `/config` are served (`--admin-debug-addr`); see [`admin::Placement`].
    pub admin_debug_addr: Option<SocketAddr>,
    pub dataplane: DataPlaneOptions,
}

/// A proxy started by [`start`]: what it publishes, and a handle to stop it.
#[derive(Debug)]
pub struct Running {
    pub published: Arc<Published>,
    /// Where the admin server listens (the port is chosen when 0 was asked for).
    pub admin_addr: SocketAddr,
    /// Where `/status` and `/config` are served, when not on `admin_addr` and not nowhere.
    pub admin_debug_addr: Option<SocketAddr>,
    dataplane: Arc<DataPlane>,
    shutdown: watch::Sender<bool>,
    source: tokio::task::JoinHandle<Result<(), SourceError>>,
    control: tokio::task::JoinHandle<()>,
    _admin: tokio::task::JoinHandle<()>,
    _admin_debug: Option<tokio::task::JoinHandle<()>>,
}

/// Starts serving `source`; returns once the admin server is bound.
pub async fn start(source: impl Source, options: ServeOptions) -> Result<Running, ServeError> {
    let metrics = Arc::new(Metrics::with(|registry| source.register_metrics(registry)));
    let dataplane = Arc::new(DataPlane::new(options.dataplane, metrics.clone()));
    let control = ControlLoop::new(
        source.translate_options(),
        dataplane.clone(),
        metrics.clone(),
    )
    .with_gateway_addresses(source.gateway_addresses());
    let published = control.published().clone();
    let placement = admin::Placement::new(options.admin_addr, options.admin_debug_addr);
    let endpoints = match placement {
        admin::Placement::OnAdmin => admin::Endpoints::WithDebug,
        admin::Placement::Separate(_) | admin::Placement::Nowhere => admin::Endpoints::Public,
    };
    let (admin_addr, admin) = admin::serve(options.admin_addr, published.clone(), endpoints)
        .await
        .map_err(|source| ServeError::Admin {
            addr: options.admin_addr,
            source,
        })?;
    let (admin_debug_addr, admin_debug) = match placement {
        admin::Placement::Separate(addr) => {
            let (bound, task) = admin::serve(addr, published.clone(), admin::Endpoints::WithDebug)
                .await
                .map_err(|source| ServeError::AdminDebug { addr, source })?;
            (Some(bound), Some(task))
        }
        admin::Placement::OnAdmin | admin::Placement::Nowhere => (None, None),
    };
    let (updates, updates_rx) = watch::channel(None);
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
        shutdown,
        source,
        control,
        _admin: admin,
        _admin_debug: admin_debug,
    })
}

impl Running {
    /// Serves until `stop` resolves (then drains) or the source or control loop fails.
    pub async fn until(mut self, stop: impl Future<Output = ()>) -> Result<(), ServeError> {
        let failed = tokio::select! {
            result = &mut self.source => Some(match result {
                Ok(Ok(())) => ServeError::Source("the source stopped".into()),
                Ok(Err(error)) => ServeError::Source(error),
                Err(error) => ServeError::SourceTask(error),
            }),
            _ = &mut self.control => Some(ServeError::ControlLoop),
            () = stop => None,
        };
        self.published.start_draining();
        if failed.is_none() {
            self.shutdown.send_replace(true);
            match (&mut self.source).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => tracing::warn!(%error, "the source did not stop cleanly"),
                Err(error) => tracing::warn!(%error, "the source task failed while stopping"),
            }
        }
        self.dataplane.shutdown().await;
        self.control.abort();
        match failed {
            Some(error) => Err(error),
            None => {
                tracing::info!("stopped");
                Ok(())
            }
        }
    }
}

/// Serves `source` until SIGTERM or SIGINT, then drains.
pub async fn serve(source: impl Source, options: ServeOptions) -> Result<(), ServeError> {
    let running = start(source, options).await?;
    match running.admin_debug_addr {
        Some(debug_addr) => {
            tracing::info!(admin_addr = %running.admin_addr, admin_debug_addr = %debug_addr, "gantry-proxy serving")
        }
        None => tracing::info!(admin_addr = %running.admin_addr, "gantry-proxy serving"),
    }
    running
        .until(async {
            let signal = shutdown_signal().await;
            tracing::info!(signal, "draining in-flight requests");
        })
        .await
}

/// Resolves on SIGTERM or SIGINT, with the signal's name.
async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers the process can only be killed; wait forever.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}
