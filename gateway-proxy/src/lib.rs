//! Gantry's gateway proxy: Gateway API objects in, routed traffic and status out.
//!
//! Data flows one way: a [`source::Source`] (YAML files, or `kubernetes`) fills an object
//! store; the control loop (`control`) has the pure translator (the `gantry-translate` crate)
//! turn it into routing IR plus statuses; the data plane (`server`) compiles the IR
//! (`routing`, over `filters` and `upstream`) and publishes it with one atomic swap; the admin
//! server (`admin`) exposes health, metrics, status and the config in use. `serve` wires one
//! process together the same way for every source; `cli` parses the command line.

pub mod acme;
pub mod acme_manager;
pub mod admin;
pub mod cli;
pub mod clock;
pub mod control;
pub mod explain;
pub mod filters;
pub mod kubernetes;
pub mod rate_limit;
pub mod routing;
pub mod security;
pub mod serve;
pub mod server;
pub mod source;
pub mod telemetry;
pub mod upstream;
pub mod validate;
pub mod workers;
