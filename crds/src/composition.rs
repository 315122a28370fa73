//! `HTTPComposition` (gantry.dev/v1alpha1): one request answered by calling several backends
//! in parallel and joining their JSON answers, applied where an HTTPRoute rule lists it as an
//! `ExtensionRef` filter. See `docs/transformation.md`.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Kind name of `HTTPComposition`, as used in an `extensionRef`.
pub const HTTP_COMPOSITION_KIND: &str = "HTTPComposition";

/// Largest `maxResponseBytes` of a part (1 MiB).
pub const MAX_PART_BYTES: i64 = 1024 * 1024;

/// Default `maxResponseBytes` of a part (256 KiB).
pub const DEFAULT_PART_BYTES: i64 = 256 * 1024;

/// Default `timeout` of a part.
pub const DEFAULT_PART_TIMEOUT: &str = "10s";

/// The parts a composed answer is made of.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "gantry.dev",
    version = "v1alpha1",
    kind = "HTTPComposition",
    root = "HttpComposition",
    plural = "httpcompositions",
    singular = "httpcomposition",
    shortname = "hcomposition",
    category = "gateway-api",
    doc = "HTTPComposition answers the HTTPRoute rules that reference it as an ExtensionRef filter with one JSON object joining the answers of several backends, called in parallel.",
    namespaced,
    derive = "Default",
    derive = "PartialEq"
)]
#[serde(rename_all = "camelCase")]
pub struct HttpCompositionSpec {
    /// The backends called, each answer under its `name`. Names are unique.
    #[schemars(length(min = 1, max = 16))]
    #[x_kube(validation = Rule::new("self.all(p, self.exists_one(q, q.name == p.name))").message("part names must be unique"))]
    pub parts: Vec<CompositionPart>,
    /// What a failed part does: `FailWhole` (default) answers 502 naming it; `Omit` leaves
    /// its key out and names it in `X-Gantry-Composition-Omitted`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_part_failure: Option<OnPartFailure>,
}

/// One backend call.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CompositionPart {
    /// The key of this part's answer in the composed object.
    #[schemars(length(min = 1, max = 63), regex(pattern = r"^[A-Za-z0-9_-]+$"))]
    pub name: String,
    /// The Service called, resolved as an HTTPRoute backendRef of the route (another
    /// namespace needs a ReferenceGrant).
    pub backend_ref: PartBackendRef,
    /// The path and query sent, a template (`${query.id}`, `${header.x-user}`, ...).
    #[schemars(length(min = 1, max = 1024))]
    pub path: String,
    /// The method sent (default GET).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<PartMethod>,
    /// How long the part may take, headers and body (a Gateway API duration; default 10s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]{1,5}(h|m|s|ms)){1,4}$"))]
    pub timeout: Option<String>,
    /// The largest answer taken, in bytes (default 256 KiB, at most 1 MiB); a larger one
    /// fails the part.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1048576))]
    pub max_response_bytes: Option<i64>,
}

/// A Service port.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PartBackendRef {
    /// Service name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Service namespace (default: the composition's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub namespace: Option<String>,
    /// Service port.
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
}

/// Methods a part may use (no body is sent).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "UPPERCASE")]
pub enum PartMethod {
    #[default]
    Get,
    Head,
    Options,
    Post,
    Put,
    Delete,
    Patch,
}

/// What a failed part does to the whole answer.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
pub enum OnPartFailure {
    /// The whole request fails: 502 with a JSON error naming the part.
    #[default]
    FailWhole,
    /// The part's key is left out and named in `X-Gantry-Composition-Omitted`.
    Omit,
}
