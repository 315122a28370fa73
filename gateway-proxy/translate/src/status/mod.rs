//! Status of the objects the proxy owns, in the exact shape Kubernetes stores it.
//!
//! The translator fills these without timestamps; [`stamp`] adds `lastTransitionTime` from a
//! time its caller gives, and [`unbound`] marks the listeners whose port the data plane could
//! not bind. Publishing them (`GET /status`, the API server) is the proxy's job.

pub mod rate_limit_store;
pub mod stamp;
pub mod types;
pub mod unbound;

pub use types::*;
