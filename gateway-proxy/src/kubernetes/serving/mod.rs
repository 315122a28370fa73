//! "Programmed means serving": every replica reports on its own Pod what it serves
//! ([`publish`], the [`report`] format), and the status-writing leader watches its fleet's
//! Pods and Deployment ([`fleet`]) and decides each Gateway's `Programmed` and
//! `gantry.dev/ProxyVersions` conditions from them ([`verdict`]). Only with `--fleet`.

pub mod fleet;
pub mod publish;
pub mod report;
pub mod verdict;

use gantry_translate::store::ObjectKey;

pub use self::verdict::Policy;

/// The fleet this replica belongs to (`--fleet`, `--programmed-min-replicas`,
/// `--programmed-timeout`).
#[derive(Clone, Debug)]
pub struct FleetConfig {
    /// The fleet's Deployment, and the value of its Pods' `gantry.dev/fleet` label.
    pub name: String,
    /// The fleet's namespace (`POD_NAMESPACE`).
    pub namespace: String,
    /// This replica's Pod (`POD_NAME`), where it reports what it serves; `None` reports
    /// nothing.
    pub pod: Option<ObjectKey>,
    pub policy: Policy,
}
