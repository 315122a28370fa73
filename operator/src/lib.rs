//! The Gantry operator: turns GatewayClass parameters and Gateways into running proxy fleets.
//!
//! `params` merges GatewayParameters, `infra` renders (pure) and applies the fleet objects,
//! `controller` holds the GatewayClass and Gateway reconcilers, `leader` runs them only on the
//! replica holding the Lease, `admin` serves metrics and probes.

pub mod admin;
pub mod controller;
pub mod infra;
pub mod leader;
pub mod metrics;
pub mod params;
pub mod skew;
