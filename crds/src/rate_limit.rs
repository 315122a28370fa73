//! `RateLimitPolicy` (gantry.dev/v1alpha1): how many requests the clients of a Gateway,
//! listener, route or route rule may send.
//!
//! A Direct policy (GEP-713) attached like SecurityPolicy: the most specific policy governs a
//! request (rule, then route, then listener, then Gateway) and applies whole. Its `local`
//! rules have the shape of Envoy Gateway's `BackendTrafficPolicy.spec.rateLimit.local.rules`
//! (`clientSelectors`, `limit`, `cost`, `shadowMode`), so a policy translates field by field;
//! Gantry adds selectors on the authenticated Consumer and its labels (a plan), which
//! SecurityPolicy establishes, and `shared`. `local` limits are counted by each replica,
//! `global` ones by the whole fleet in Redis.
//!
//! Following GEP-5160's goals: a rule without selectors is one static bucket; `Distinct`
//! selectors give a bucket per distinct value (client address, header, consumer, label); a
//! request may cost more than one; shadow mode counts what would be refused and refuses
//! nothing.

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use crate::backend_config::{LocalPolicyTargetReferenceWithSectionName, PolicyAncestorStatus};

/// Kind name of `RateLimitPolicy`.
pub const RATE_LIMIT_POLICY_KIND: &str = "RateLimitPolicy";

/// Request rate limits for the requests of a Gateway, listener, route or route rule.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "gantry.dev",
    version = "v1alpha1",
    kind = "RateLimitPolicy",
    plural = "ratelimitpolicies",
    singular = "ratelimitpolicy",
    shortname = "rlp",
    category = "gateway-api",
    doc = "RateLimitPolicy limits the request rate of the clients of a Gateway, listener, route or route rule.",
    namespaced,
    status = "RateLimitPolicyStatus",
    derive = "Default",
    derive = "PartialEq",
    printcolumn = r#"{"name":"Accepted","type":"string","jsonPath":".status.ancestors[*].conditions[?(@.type=='Accepted')].status","description":"Whether the policy is accepted, per Gateway"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("has(self.local) || has(self.global)").message("set local, global or both")
)]
pub struct RateLimitPolicySpec {
    /// What the policy applies to, in the policy's namespace: a `Gateway` (with `sectionName`,
    /// one listener), an `HTTPRoute` or a `GRPCRoute` (with `sectionName`, the rule of that
    /// `name`).
    #[schemars(length(min = 1, max = 16))]
    #[x_kube(
        validation = Rule::new("self.all(r, r.group == 'gateway.networking.k8s.io' && (r.kind == 'Gateway' || r.kind == 'HTTPRoute' || r.kind == 'GRPCRoute'))").message("targetRefs: only Gateways, HTTPRoutes and GRPCRoutes (group gateway.networking.k8s.io) can be targeted")
    )]
    pub target_refs: Vec<LocalPolicyTargetReferenceWithSectionName>,
    /// Limits each replica counts on its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<LocalRateLimit>,
    /// Limits every replica of the fleet counts together, in Redis (`--rate-limit-redis`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub global: Option<GlobalRateLimit>,
}

/// Limits counted together by every replica, in Redis: a client gets the limit through the
/// whole fleet, and counts survive a restart (per-consumer quotas by the day, for example).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GlobalRateLimit {
    /// As `local.rules`.
    #[schemars(length(min = 1, max = 16))]
    pub rules: Vec<RateLimitRule>,
    /// When Redis cannot be reached (or answers late): `false` (the default) lets requests
    /// through uncounted, `true` refuses them with 503.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_closed: Option<bool>,
}

/// Limits counted by each replica.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LocalRateLimit {
    /// Every rule whose selectors all match a request counts it; the request is refused
    /// (429) when any of them is exhausted.
    #[schemars(length(min = 1, max = 16))]
    pub rules: Vec<RateLimitRule>,
}

/// One limit and the requests it counts.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RateLimitRule {
    /// Names the rule in the `RateLimit-Policy` header and in metrics; default `rule-<index>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub name: Option<String>,
    /// Conditions that must all hold for the rule to count a request. None: every request.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub client_selectors: Vec<RateLimitSelectCondition>,
    /// How many requests per unit of time.
    pub limit: RateLimitValue,
    /// What one request costs. Default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<RateLimitCost>,
    /// Count and report what would be refused, refuse nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow_mode: Option<bool>,
    /// One bucket for every route the policy governs. By default each route has its own
    /// bucket, as in Envoy Gateway ("even if a policy targets a gateway, each route still has
    /// a separate rate limit bucket").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared: Option<bool>,
}

/// Which requests a rule counts, and how it tells clients apart. Every field that is set
/// must match.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RateLimitSelectCondition {
    /// Request headers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub headers: Vec<HeaderMatch>,
    /// The client address: the connection's peer, or the one `--trusted-proxy-hops` picks
    /// from `X-Forwarded-For`.
    #[serde(
        default,
        rename = "sourceCIDR",
        skip_serializing_if = "Option::is_none"
    )]
    pub source_cidr: Option<SourceMatch>,
    /// The Consumer a SecurityPolicy authenticated (`namespace/name`). A request without one
    /// does not match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer: Option<ConsumerMatch>,
    /// Labels of the authenticated Consumer, such as its plan. A request without a Consumer
    /// does not match.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub consumer_labels: Vec<LabelMatch>,
    /// Claims of the JWT a SecurityPolicy verified (`name` is the claim, nested claims by
    /// dotted path such as `org.id`). A request without a verified token does not match.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub claims: Vec<LabelMatch>,
}

/// `Exact`: the value must equal `value`; `RegularExpression`: match it (RE2 syntax, whole
/// value); `Distinct`: any value, one bucket per value.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatchType {
    Exact,
    RegularExpression,
    Distinct,
}

/// A request header.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.type == 'Distinct' ? !has(self.value) : has(self.value)").message("headers[]: value is required for Exact and RegularExpression and not allowed for Distinct")
)]
pub struct HeaderMatch {
    #[schemars(length(min = 1, max = 256))]
    pub name: String,
    /// Default `Exact`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<MatchType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub value: Option<String>,
    /// Match requests whose header does *not* match (or is absent). Not with `Distinct`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invert: Option<bool>,
}

/// `Exact`: the client is in the range; `Distinct`: each address in the range has its own
/// bucket.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceMatchType {
    Exact,
    Distinct,
}

/// A client address range.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SourceMatch {
    /// Default `Exact`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<SourceMatchType>,
    /// `10.0.0.0/8`, `2001:db8::/32`, `0.0.0.0/0`.
    #[schemars(length(min = 1, max = 64))]
    pub value: String,
}

/// The authenticated Consumer.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerMatch {
    /// `Exact` (with `name`) or `Distinct` (one bucket per Consumer). Default `Distinct`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<SourceMatchType>,
    /// `namespace/name`, or a name in the policy's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// A label of the authenticated Consumer.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LabelMatch {
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    /// Default `Exact`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<MatchType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// `requests` per `unit`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RateLimitValue {
    #[schemars(range(min = 1))]
    pub requests: u32,
    pub unit: RateLimitUnit,
}

/// The period of a limit.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq,
)]
pub enum RateLimitUnit {
    #[default]
    Second,
    Minute,
    Hour,
    Day,
}

impl RateLimitUnit {
    pub fn seconds(self) -> u64 {
        match self {
            Self::Second => 1,
            Self::Minute => 60,
            Self::Hour => 3_600,
            Self::Day => 86_400,
        }
    }
}

/// What a request costs, after Envoy Gateway's `cost`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RateLimitCost {
    /// Taken from the bucket when the request arrives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<RateLimitCostSpecifier>,
}

/// A cost. Only `from: Number` is supported.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RateLimitCostSpecifier {
    /// `Number`.
    pub from: String,
    /// The cost when `from` is `Number`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<u32>,
}

/// GEP-713 `PolicyStatus`: one entry per Gateway the policy is relevant to.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RateLimitPolicyStatus {
    #[serde(default)]
    #[schemars(length(max = 16))]
    pub ancestors: Vec<PolicyAncestorStatus>,
}
