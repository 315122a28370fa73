//! `extAuth` of a SecurityPolicy: an external authorization service decides, over HTTP or
//! over gRPC (Envoy's `ext_authz` v3 `Check`), after Envoy Gateway's `extAuth`, with
//! `failOpen` and `timeout`.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use crate::backend_config::DURATION_PATTERN;

/// External authorization, after Envoy Gateway's `extAuth`. Exactly one of `grpc` and `http`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ExtAuth {
    /// The service speaks Envoy's `envoy.service.auth.v3.Authorization/Check` (HTTP/2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc: Option<GrpcExtAuthService>,
    /// The service is asked over HTTP: a `200` allows, any other answer is the client's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpExtAuthService>,
    /// Request headers sent to the service. gRPC: when empty, every header. HTTP: besides
    /// Host, Method, Path, Content-Length and Authorization, which are always sent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub headers_to_ext_auth: Vec<String>,
    /// Send the request body to the service, buffered up to `maxRequestBytes` (a larger one
    /// is refused with 413).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_to_ext_auth: Option<BodyToExtAuth>,
    /// When the service cannot be reached, does not answer within `timeout` or answers with
    /// an error (an HTTP `5xx`, a gRPC error status), let the request through (counted in
    /// `gantry_security_fail_open_total`). A denial is always a denial. Default `false`: such
    /// a request is refused with 403.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_open: Option<bool>,
    /// Gantry: how long the service may take to answer. Default `10s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub timeout: Option<String>,
}

/// A gRPC authorization service.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GrpcExtAuthService {
    /// The Service port of the authorization service (exactly one).
    #[schemars(length(min = 1, max = 1))]
    pub backend_refs: Vec<ExtAuthBackendRef>,
}

/// An HTTP authorization service.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HttpExtAuthService {
    /// The Service port of the authorization service (exactly one).
    #[schemars(length(min = 1, max = 1))]
    pub backend_refs: Vec<ExtAuthBackendRef>,
    /// A path prefix put before the request's path in the authorization request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub path: Option<String>,
    /// Headers of the service's `200` copied onto the request to the backend. When empty,
    /// every header but Host (and the framing ones).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub headers_to_backend: Vec<String>,
}

/// How much of the request body the service is sent.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BodyToExtAuth {
    /// Bytes buffered for the service, at most 1 MiB.
    #[schemars(range(min = 1, max = 1048576))]
    pub max_request_bytes: u32,
}

/// A Service port (Gateway API `BackendObjectReference`); in another namespace only where a
/// ReferenceGrant there allows `SecurityPolicy` (group `gantry.dev`) from the policy's.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ExtAuthBackendRef {
    /// `""` (core).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// `Service`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Defaults to the policy's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<i32>,
}
