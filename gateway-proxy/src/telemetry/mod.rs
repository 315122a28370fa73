//! Metrics and logs.

pub mod access_log;
pub mod acme;
pub mod certificates;
pub mod circuit_breaker;
pub mod health;
pub mod histogram;
pub mod l4;
pub mod logging;
pub mod metrics;
pub mod rate_limit;
pub mod trace;
pub mod upstream_connections;

pub use metrics::{DrainPhase, Metrics, RetryReason, RouteMetrics, SkipReason};
