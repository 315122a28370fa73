//! XBackendTrafficPolicy (`gateway.networking.x-k8s.io/v1alpha1`): what the translator reads
//! of it. `session` finds the policy that governs a Service and its `sessionPersistence`.
//! The policy's status (`ancestors[]`) is not written here.

pub(crate) mod session;
