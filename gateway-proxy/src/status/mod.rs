//! Status of the objects the proxy owns, in the exact shape Kubernetes stores it.
//!
//! The translator fills these (without timestamps, to stay pure); the status writer adds
//! `lastTransitionTime` and publishes them (`GET /status` in standalone mode, the API server in
//! Kubernetes mode).

pub mod stamp;
pub mod types;
pub mod unbound;
pub mod writer;

pub use types::*;
