//! Leader election over a Lease: only the holder writes status, every replica serves traffic.
//!
//! The elector is `gantry_lease`, shared with the operator; the proxy names its Lease after the
//! Gateways or the class it serves ([`lease_name`]).

pub use gantry_lease::{Elector, LeaseConfig, LeaseError, lease_name, run};
