//! Gantry's own custom resources and the one place the Gateway API types are imported from.
//!
//! Every other crate in the workspace names Gateway API types through `gantry_crds::gateway`,
//! so a bump of the `gateway-api` crate touches one line.

/// The controllerName Gantry claims in `GatewayClass.spec.controllerName`.
pub const CONTROLLER_NAME: &str = "gantry.dev/gateway-controller";

/// Gantry's own API group.
pub const GROUP: &str = "gantry.dev";

/// The Gateway API group.
pub const GATEWAY_GROUP: &str = "gateway.networking.k8s.io";

/// Gateway API types (standard channel at the root, experimental under `experimental`).
///
/// HTTPRoute and GRPCRoute are the experimental channel's types: they are a superset of the
/// standard ones and carry the rule fields Gantry implements beyond the standard channel of
/// the `gateway-api` crate's release (`retry`, `sessionPersistence`). An object written against
/// the standard CRDs reads the same.
pub mod gateway {
    pub use gateway_api::experimental::{grpcroutes, httproutes};
    pub use gateway_api::*;
}

pub use k8s_openapi;

pub mod backend_config;
pub mod composition;
pub mod crdgen;
pub mod params;
pub mod rate_limit;
pub mod security;
pub mod transform;

pub use backend_config::{
    BACKEND_CONFIG_POLICY_KIND, BackendConfigPolicy, BackendConfigPolicySpec,
};
pub use composition::{HTTP_COMPOSITION_KIND, HttpComposition, HttpCompositionSpec};
pub use params::{GATEWAY_PARAMETERS_KIND, GatewayParameters, GatewayParametersSpec};
pub use rate_limit::{RATE_LIMIT_POLICY_KIND, RateLimitPolicy, RateLimitPolicySpec};
pub use security::{
    CONSUMER_KIND, Consumer, ConsumerSpec, SECURITY_POLICY_KIND, SecurityPolicy, SecurityPolicySpec,
};
pub use transform::{HTTP_TRANSFORM_KIND, HttpTransform, HttpTransformSpec};

/// Gantry's own API version.
pub const VERSION: &str = "v1alpha1";
