//! Compiles the routing IR into an immutable [`Snapshot`] and finds each request's entry.
//!
//! Lookup never scans every route.
//!
//! Lookup per request: port table → listener by hostname ([`host::HostIndex`]) → virtual host
//! by hostname (same index) → candidate entries by path ([`path::PathIndex`], for a virtual host
//! of five entries or more; a smaller one's entries are all candidates) → the first candidate in
//! IR order whose whole match holds.

mod candidates;
mod describe;
pub mod host;
pub mod l4;
mod matcher;
pub mod normalize;
pub mod path;
mod rule;
mod snapshot;
mod table;
#[cfg(test)]
mod tests;
pub mod tls;

pub use candidates::{Trial, winner};
pub use host::normalize_host;
pub use matcher::{Mismatch, RequestMatcher, RequestView, percent_decode};
pub use rule::{Backend, Resumed, Rule, RuleSession};
pub use snapshot::{PortTables, Snapshot};
pub use table::{ListenerTable, Lookup, PortTable, RouteEntry};

use crate::filters::FilterError;

/// The hash map of the per-request lookups (hostname, path, port, cluster): foldhash, randomly
/// seeded, instead of SipHash, which cost some 800 instructions per request across these
/// lookups (`e2e/bench/run.sh --instructions-only`). Their keys come from the configuration;
/// a request only looks them up, so it cannot fill a map with colliding keys.
pub(crate) type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
use crate::upstream::ClusterError;

/// Why an IR cannot be compiled. The previous snapshot keeps serving.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    #[error("invalid regular expression {pattern:?}: {source}")]
    Regex {
        pattern: String,
        source: Box<regex::Error>,
    },
    #[error("invalid header name {0:?} in a match")]
    HeaderName(String),
    #[error("invalid method {0:?} in a match")]
    Method(String),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error("invalid filter: {0}")]
    Filter(#[from] FilterError),
    #[error("port {0} appears twice")]
    DuplicatePort(u16),
    #[error("TLS: {0}")]
    Tls(String),
    #[error(transparent)]
    Session(#[from] crate::upstream::session::SessionNameError),
}
