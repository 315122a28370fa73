//! Gantry's translator: Gateway API objects in, routing IR and Kubernetes status out.
//!
//! Data flows one way through this crate: manifests or watched objects fill a
//! [`store::Store`]; [`translate::translate`] (or the incremental [`translate::Translator`])
//! turns it into the routing [`ir::Ir`] plus the [`status`] of every object the proxy owns.
//! Nothing here does IO, spawns a task, reads a clock or talks to Kubernetes: the crate has no
//! such dependency, so the compiler keeps the translator pure. Bad input never fails a
//! translation; it becomes a status condition with the Gateway API's reason.
//!
//! [`ports`] holds the one rule both the proxy and the operator use for which port a listener is
//! bound at inside the pod (`--port-offset`); [`references`] the one rule for which namespaces'
//! Secrets and ConfigMaps a set of Gateways may read: the proxy watches those namespaces and the
//! operator grants the fleet read access in exactly those; [`listener_sets`] which listeners a
//! Gateway takes from ListenerSets, so the operator opens their ports; [`route_scope`] which routes
//! a proxy serving some Gateways needs to translate at all. [`features`] is the one list of
//! Gateway API features Gantry reports as supported, with the tests that prove each.

pub mod features;
pub mod goldens;
pub mod ir;
pub mod listener_sets;
pub mod ports;
pub mod references;
pub mod route_scope;
pub mod status;
pub mod store;
pub mod translate;
