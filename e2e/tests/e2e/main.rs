//! Black-box tests: the real `gantry-proxy` binary, real sockets, echo backends.

mod backend_config;
mod backend_connections;
mod backend_tls;
mod backends;
mod config_files;
mod connections;
mod cors;
mod drain;
mod filters;
mod grpc;
mod hostile;
mod l4;
mod l4_backend_tls;
mod lifecycle;
mod listener_ports;
mod listener_sets;
mod load_balancing;
mod mtls;
mod quickstart;
mod retries;
mod routing;
mod sessions;
mod tls;
mod tls_rotation;
mod tls_routes;
mod transform;
