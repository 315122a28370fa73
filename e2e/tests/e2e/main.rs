//! Black-box tests: the real `gantry-proxy` binary, real sockets, echo backends.

mod backends;
mod filters;
mod grpc;
mod l4;
mod lifecycle;
mod quickstart;
mod routing;
