//! Black-box tests: the real `gantry-proxy` binary, real sockets, echo backends.

mod backends;
mod filters;
mod grpc;
mod lifecycle;
mod listener_ports;
mod quickstart;
mod routing;
