//! Benchmark building blocks: config generators for Gantry, nginx and haproxy, the processes
//! under measurement, the load generator driver, the scenarios (including Gantry's route
//! propagation from files and from Kubernetes watch events), and the report.

pub mod backend;
pub mod churn;
pub mod client;
pub mod config;
pub mod h2load;
pub mod haproxy;
pub mod idle_connections;
pub mod instructions;
pub mod interleave;
pub mod kube_propagation;
pub mod lb_cost;
pub mod matrix;
pub mod nginx;
pub mod policy_cost;
pub mod probe;
pub mod process;
pub mod propagation;
pub mod protocols;
pub mod proxy;
pub mod report;
pub mod results;
pub mod retry_cost;
pub mod svg;
pub mod transform_cost;
pub mod wrk;
