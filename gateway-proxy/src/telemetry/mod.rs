//! Metrics and logs.

pub mod histogram;
pub mod kube;
pub mod logging;
pub mod metrics;

pub use metrics::{Metrics, RouteMetrics};
