//! `spec.loadBalancer`: Envoy Gateway's `LoadBalancer` shape.
//!
//! Fields the API requires are `Option`s marked `required` in the schema: the API server
//! refuses an object without them, and the translator reports one read from a file without
//! them as `Invalid` rather than refusing the whole file.

use std::collections::BTreeMap;

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::DURATION_PATTERN;

/// How a request (or, for TCP routes, a connection) picks an endpoint.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.type == 'ConsistentHash' ? has(self.consistentHash) : !has(self.consistentHash)").message("loadBalancer.consistentHash must be set when type is ConsistentHash, and only then"),
    validation = Rule::new("self.type in ['Random', 'ConsistentHash'] ? !has(self.slowStart) : true").message("loadBalancer.slowStart is only supported with RoundRobin and LeastRequest")
)]
pub struct LoadBalancer {
    /// The algorithm. Default: `RoundRobin`.
    #[serde(default, rename = "type")]
    pub type_: LoadBalancerType,
    /// The hash input, with `type: ConsistentHash` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consistent_hash: Option<ConsistentHash>,
    /// New endpoints receive traffic gradually over this window (`RoundRobin` and
    /// `LeastRequest` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slow_start: Option<SlowStart>,
}

/// Load balancing algorithms.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum LoadBalancerType {
    /// Each endpoint in turn (endpoints of a Service weigh the same).
    #[default]
    RoundRobin,
    /// A random endpoint.
    Random,
    /// The endpoint with fewer requests in flight of two chosen at random.
    LeastRequest,
    /// An endpoint chosen by a hash of the request (Maglev), so the same input keeps reaching
    /// the same endpoint while the endpoints stay the same.
    ConsistentHash,
}

/// What `ConsistentHash` hashes.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.type == 'Header' ? has(self.header) : !has(self.header)").message("consistentHash.header must be set when type is Header, and only then"),
    validation = Rule::new("self.type == 'Cookie' ? has(self.cookie) : !has(self.cookie)").message("consistentHash.cookie must be set when type is Cookie, and only then"),
    validation = Rule::new("self.type == 'QueryParams' ? has(self.queryParams) : !has(self.queryParams)").message("consistentHash.queryParams must be set when type is QueryParams, and only then")
)]
pub struct ConsistentHash {
    /// The hash input.
    #[serde(rename = "type")]
    pub type_: ConsistentHashType,
    /// The request header hashed, with `type: Header`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<Header>,
    /// The cookie hashed, with `type: Cookie`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie: Option<Cookie>,
    /// The query parameters hashed, in order, with `type: QueryParams`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 16))]
    pub query_params: Option<Vec<QueryParam>>,
    /// Size of the Maglev lookup table: a prime number, at most 5000011. Default: 65537.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 2, max = 5_000_011))]
    pub table_size: Option<i64>,
}

/// Inputs `ConsistentHash` can hash.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ConsistentHashType {
    /// The client's address.
    #[default]
    #[serde(rename = "SourceIP")]
    SourceIp,
    /// A request header (`header`).
    Header,
    /// A cookie (`cookie`), set on the response when the request has none.
    Cookie,
    /// Query parameters (`queryParams`).
    QueryParams,
}

/// A request header to hash.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Header {
    /// The header name (case-insensitive).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(required, length(min = 1, max = 256))]
    pub name: Option<String>,
}

/// A query parameter to hash.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct QueryParam {
    /// The parameter name (case-sensitive).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(required, length(min = 1, max = 256))]
    pub name: Option<String>,
}

/// A cookie to hash. A request without it is answered with a `Set-Cookie` naming the endpoint
/// chosen for it when `ttl` is set, so the client's next requests reach the same endpoint.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Cookie {
    /// The cookie name.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(required, length(min = 1, max = 256))]
    pub name: Option<String>,
    /// `Max-Age` of the cookie set when the request has none; `0s` sets a session cookie.
    /// Without it no cookie is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub ttl: Option<String>,
    /// Further attributes of the cookie set (`Path`, `SameSite`, `Secure`...), name to value;
    /// an empty value sets the attribute alone (`Secure`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attributes: Option<BTreeMap<String, String>>,
}

/// Slow start: a new endpoint's share of traffic grows linearly over `window`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SlowStart {
    /// How long a new endpoint takes to reach its full share.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(required, regex(pattern = DURATION_PATTERN))]
    pub window: Option<String>,
}
