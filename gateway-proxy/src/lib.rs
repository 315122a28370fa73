//! Gantry's gateway proxy: Gateway API objects in, routed traffic and status out.
//!
//! Data flows one way: a source (`source`) fills an object [`store::Store`]; the pure
//! translator (`translate`) turns it into routing [`ir::Ir`] plus statuses; the data plane
//! (`server`) compiles the IR (`routing`) and publishes it with one atomic swap; the admin
//! server (`admin`) exposes health, metrics, status and the config in use.

pub mod admin;
pub mod cli;
pub mod clock;
pub mod filters;
pub mod kubernetes;
pub mod leader;
pub mod routing;
pub mod runtime;
pub mod server;
pub mod source;
pub mod status;
pub mod telemetry;
pub mod upstream;
