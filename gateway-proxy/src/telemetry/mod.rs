//! Metrics and logs.

pub mod health;
pub mod histogram;
pub mod l4;
pub mod logging;
pub mod metrics;

pub use metrics::{Metrics, RetryReason, RouteMetrics, SkipReason};
