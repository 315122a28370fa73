//! Gantry's ExtensionRef filters, validated: HTTPTransform and HTTPComposition.

use serde::{Deserialize, Serialize};

/// A value template parsed into literal and variable segments.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TemplateIr(pub Vec<SegmentIr>);

/// One segment of a template.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SegmentIr {
    Literal(String),
    /// `${client_ip}`: the IP address of the connection's peer.
    ClientIp,
    /// `${request_id}`: the request's `x-request-id`.
    RequestId,
    /// `${route}`: the route's `namespace/name`.
    Route,
    /// `${host}`: the Host the request matched (no port, lower case).
    Host,
    /// `${path}`: the path as it is when the filter runs.
    Path,
    /// `${method}`.
    Method,
    /// `${query.NAME}`: the first value of a query parameter, as sent (still percent-encoded).
    Query(String),
    /// `${header.NAME}`: the first value of a request header (lower-case name).
    Header(String),
}

/// An HTTPTransform (`namespace/name` in `source`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TransformIr {
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_headers: Option<TemplateHeadersIr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_regex: Option<PathRegexIr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_body: Option<JsonBodyIr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_headers: Option<TemplateHeadersIr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_body: Option<JsonBodyIr>,
}

/// Header edits with templates: set, then add, then remove. Names are lower-case.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TemplateHeadersIr {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub set: Vec<TemplateHeaderIr>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub add: Vec<TemplateHeaderIr>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateHeaderIr {
    pub name: String,
    pub value: TemplateIr,
}

/// A regular-expression path rewrite: every match of `pattern` is replaced by `substitution`
/// (in the `regex` crate's syntax: `${1}` for a group, `$$` for `$`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PathRegexIr {
    pub pattern: String,
    pub substitution: String,
}

/// Edits of a JSON body: rename, then remove, then set. Pointers are RFC 6901.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JsonBodyIr {
    pub max_bytes: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rename: Vec<JsonRenameIr>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub set: Vec<JsonSetIr>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JsonRenameIr {
    pub from: String,
    pub to: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JsonSetIr {
    pub pointer: String,
    pub value: JsonValueIr,
}

/// A value to write: JSON as written, or a template rendered to a JSON string.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum JsonValueIr {
    Json(serde_json::Value),
    Template(TemplateIr),
}

/// An HTTPComposition: the rule answers with the parts' JSON answers joined in one object.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CompositionIr {
    /// `namespace/name` of the HTTPComposition.
    pub source: String,
    /// `Omit`: a failed part's key is left out; otherwise (`FailWhole`) the answer is 502.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub omit_failed: bool,
    pub parts: Vec<PartIr>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PartIr {
    pub name: String,
    /// `None` when the backendRef is invalid: the part always fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    pub method: String,
    pub path: TemplateIr,
    pub timeout_ms: u64,
    pub max_response_bytes: u64,
}

/// The largest compiled program of a `pathRegex` pattern (the `regex` crate's `size_limit`):
/// the translator refuses a larger one and the data plane compiles with the same limit.
pub const PATH_REGEX_SIZE_LIMIT: usize = 256 * 1024;
