//! `HTTPTransform` (gantry.dev/v1alpha1): request and response transformation, applied where an
//! HTTPRoute rule (or one of its backendRefs) lists it as an `ExtensionRef` filter.
//!
//! Field names follow kgateway's TrafficPolicy `transformation` (`request`/`response` with
//! `set`, `add`, `remove`) and Envoy Gateway's HTTPRouteFilter
//! `urlRewrite.path.replaceRegexMatch` (`pattern`, `substitution`) where the two agree. See
//! `docs/transformation.md`.

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// Kind name of `HTTPTransform`, as used in an `extensionRef`.
pub const HTTP_TRANSFORM_KIND: &str = "HTTPTransform";

/// Largest `maxBytes` a JSON body transformation may buffer (1 MiB).
pub const MAX_BODY_BYTES: i64 = 1024 * 1024;

/// Default `maxBytes` of a JSON body transformation (64 KiB).
pub const DEFAULT_BODY_BYTES: i64 = 64 * 1024;

/// How to change requests and responses of the rules that reference it.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "gantry.dev",
    version = "v1alpha1",
    kind = "HTTPTransform",
    root = "HttpTransform",
    plural = "httptransforms",
    singular = "httptransform",
    shortname = "htransform",
    category = "gateway-api",
    doc = "HTTPTransform changes the requests and responses of the HTTPRoute rules that reference it as an ExtensionRef filter.",
    namespaced,
    derive = "Default",
    derive = "PartialEq"
)]
#[serde(rename_all = "camelCase")]
pub struct HttpTransformSpec {
    /// Changes to the request, before it goes upstream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<RequestTransform>,
    /// Changes to the response, before it goes to the client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<ResponseTransform>,
}

/// Changes to the request.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RequestTransform {
    /// Header edits with templates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<HeaderTransform>,
    /// A regular-expression rewrite of the path (the query is kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_regex: Option<PathRegex>,
    /// Edits of a JSON request body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<JsonBodyTransform>,
}

/// Changes to the response.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ResponseTransform {
    /// Header edits with templates (variables describe the request).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<HeaderTransform>,
    /// Edits of a JSON response body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<JsonBodyTransform>,
}

/// Header edits, applied as set, then add, then remove (as RequestHeaderModifier). Values are
/// templates: `${client_ip}`, `${request_id}`, `${route}`, `${host}`, `${path}`, `${method}`,
/// `${query.NAME}`, `${header.NAME}`; `$$` is a literal `$`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HeaderTransform {
    /// Headers replaced (or added when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    pub set: Option<Vec<HeaderTemplate>>,
    /// Header values appended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    pub add: Option<Vec<HeaderTemplate>>,
    /// Header names removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    pub remove: Option<Vec<String>>,
}

/// A header and the template of its value.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HeaderTemplate {
    /// Header name (case-insensitive).
    #[schemars(length(min = 1, max = 256))]
    pub name: String,
    /// Value template.
    #[schemars(length(max = 4096))]
    pub value: String,
}

/// A regular-expression path rewrite, as Envoy Gateway's `ReplaceRegexMatch` and GEP-4360:
/// every match of `pattern` in the path is replaced by `substitution`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PathRegex {
    /// A regular expression (RE2 syntax, as the `regex` crate reads it), matched against the
    /// path without the query.
    #[schemars(length(min = 1, max = 1024))]
    pub pattern: String,
    /// What each match becomes; `\1` to `\9` are the pattern's capture groups.
    #[schemars(length(max = 1024))]
    pub substitution: String,
}

/// Edits of a JSON body (`Content-Type: application/json` or `application/*+json`; other
/// bodies pass unchanged), applied as rename, then remove, then set.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct JsonBodyTransform {
    /// Values written at JSON pointers (RFC 6901); missing parent objects are created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub set: Option<Vec<JsonSet>>,
    /// JSON pointers removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub remove: Option<Vec<String>>,
    /// Values moved from one pointer to another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub rename: Option<Vec<JsonRename>>,
    /// The largest body transformed, in bytes (default 64 KiB, at most 1 MiB). A larger
    /// request body is refused with 413; a larger response body passes unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1048576))]
    pub max_bytes: Option<i64>,
}

/// A value written at a JSON pointer: `value` (any JSON) or `template` (a string template).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.value) != has(self.template)").message("set exactly one of value and template"))]
pub struct JsonSet {
    /// Where to write (RFC 6901), such as `/user/id`.
    #[schemars(length(min = 2, max = 1024))]
    pub pointer: String,
    /// A JSON value written as it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "any_json")]
    pub value: Option<serde_json::Value>,
    /// A template, written as a JSON string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub template: Option<String>,
}

/// A value moved from `from` to `to` (both JSON pointers).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct JsonRename {
    #[schemars(length(min = 2, max = 1024))]
    pub from: String,
    #[schemars(length(min = 2, max = 1024))]
    pub to: String,
}

/// Any JSON value: a structural schema that keeps whatever is written.
fn any_json(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "x-kubernetes-preserve-unknown-fields": true
    })
}
