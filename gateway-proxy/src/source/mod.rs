//! Where objects come from: the [`Source`] contract, and YAML files (standalone mode).
//!
//! A source publishes [`SourceUpdate`]s on a watch channel, so a burst of changes coalesces
//! into the latest one; the control loop translates whatever is newest. Kubernetes mode's
//! source lives in `kubernetes` with the rest of what talks to the API server.

pub mod files;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use prometheus_client::registry::Registry;
use tokio::sync::watch;

use crate::telemetry::Metrics;
use gantry_translate::status::{GatewayStatusAddress, ObjectStatus};
use gantry_translate::store::Store;
use gantry_translate::translate::TranslateOptions;

/// What a source hands the control loop.
#[derive(Clone, Debug)]
pub enum SourceUpdate {
    /// A complete, valid set of objects.
    Objects {
        store: Arc<Store>,
        warnings: Vec<String>,
    },
    /// The source's input is invalid; the last good configuration keeps serving.
    Rejected {
        errors: Vec<String>,
        warnings: Vec<String>,
    },
}

/// What a running source is connected to.
#[derive(Debug)]
pub struct SourceLink {
    /// Where the source publishes; the control loop follows it.
    pub updates: watch::Sender<Option<SourceUpdate>>,
    /// The statuses of every applied configuration, `lastTransitionTime` stamped, for a
    /// source that writes them back (Kubernetes mode).
    pub statuses: watch::Receiver<Arc<Vec<ObjectStatus>>>,
    pub metrics: Arc<Metrics>,
    /// Becomes `true` when the process starts draining: the source releases what it holds
    /// and returns.
    pub shutdown: watch::Receiver<bool>,
}

/// Why a source stopped.
pub type SourceError = Box<dyn std::error::Error + Send + Sync>;

/// A source of configuration: what `serve` needs to know of a mode.
pub trait Source: Send + 'static {
    /// Which Gateways the translator serves, and as which controller.
    fn translate_options(&self) -> TranslateOptions;

    /// Written into every Gateway's `status.addresses`; empty leaves them to others (the
    /// operator owns them in Kubernetes mode).
    fn gateway_addresses(&self) -> Vec<GatewayStatusAddress> {
        Vec::new()
    }

    /// Registers the source's own metric families, before the registry is shared.
    fn register_metrics(&self, _registry: &mut Registry) {}

    /// Publishes updates until `link.shutdown` says to stop, then releases what it holds.
    /// Returns an error when it cannot go on (the process then stops).
    fn run(self, link: SourceLink) -> impl Future<Output = Result<(), SourceError>> + Send;
}

/// Standalone mode: a directory of YAML files, watched.
#[derive(Debug)]
pub struct FileSource {
    pub dir: PathBuf,
    pub options: TranslateOptions,
    /// Where the Gateways are reachable: nobody else reports it in standalone mode.
    pub addresses: Vec<GatewayStatusAddress>,
}

impl Source for FileSource {
    fn translate_options(&self) -> TranslateOptions {
        self.options.clone()
    }

    fn gateway_addresses(&self) -> Vec<GatewayStatusAddress> {
        self.addresses.clone()
    }

    async fn run(self, mut link: SourceLink) -> Result<(), SourceError> {
        tokio::select! {
            result = files::run(self.dir, link.updates) => match result {
                Ok(()) => Err("the file source stopped".into()),
                Err(error) => Err(error.into()),
            },
            _ = link.shutdown.wait_for(|draining| *draining) => Ok(()),
        }
    }
}
