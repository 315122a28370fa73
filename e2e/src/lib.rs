//! Black-box test support for Gantry: the echo backend, an in-process Kubernetes API server,
//! and helpers that drive the real `gantry-proxy` binary.

pub mod apiserver;
pub mod bench;
pub mod certs;
pub mod echo;
pub mod grpc;
pub mod harness;
pub mod stream_echo;
pub mod tls_client;
