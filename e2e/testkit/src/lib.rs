//! What Gantry's tests run against: an in-process Kubernetes API server, echo backends, certificates, a TLS client, a gRPC backend, a JWKS server with signing keys, a TCP load balancer that follows readiness, and a harness that starts the real `gantry-proxy` binary.

pub mod apiserver;
pub mod balancer;
pub mod blackhole;
pub mod browser;
pub mod certs;
pub mod echo;
pub mod ext_authz;
pub mod grpc;
pub mod harness;
pub mod jwks;
pub mod oidc;
pub mod otlp;
pub mod pebble;
pub mod ports;
pub mod redis;
pub mod stream_echo;
pub mod tls_client;
