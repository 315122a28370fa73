//! The data plane: binds listener ports, serves HTTP/1.1 and HTTP/2, routes each request through
//! the current compiled snapshot.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::ir::Ir;
use crate::telemetry::Metrics;

/// Settings fixed for the life of the process.
#[derive(Clone, Debug)]
pub struct DataPlaneOptions {
    /// Address every listener binds (`--bind-address`).
    pub bind_address: IpAddr,
    /// Added to every listener port below 1024 (`--port-offset`).
    pub port_offset: u16,
    /// How long SIGTERM waits for in-flight requests.
    pub drain_timeout: Duration,
    /// Emit one access-log line per request.
    pub access_log: bool,
}

/// Why a configuration was not applied. The previous one keeps serving.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("cannot bind {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("invalid configuration: {0}")]
    Compile(String),
}

/// The running data plane.
#[derive(Debug)]
pub struct DataPlane {
    _options: DataPlaneOptions,
    _metrics: Arc<Metrics>,
}

impl DataPlane {
    pub fn new(options: DataPlaneOptions, metrics: Arc<Metrics>) -> Self {
        Self {
            _options: options,
            _metrics: metrics,
        }
    }

    /// Compiles `ir`, binds the ports it adds, publishes it with one atomic swap and closes the
    /// ports it no longer has. On error nothing changes.
    pub async fn apply(&self, _ir: Arc<Ir>, _version: u64) -> Result<(), ApplyError> {
        Ok(())
    }

    /// True once every port of the configuration in use is bound.
    pub fn ready(&self) -> bool {
        false
    }

    /// Stops accepting, lets in-flight requests finish within the drain timeout.
    pub async fn shutdown(&self) {}
}
