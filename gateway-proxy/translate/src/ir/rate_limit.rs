//! RateLimitPolicy of a route entry: its rules, compiled by the data plane once per snapshot.

use serde::{Deserialize, Serialize};

use crate::store::ObjectKey;

/// The RateLimitPolicy governing a route entry (the most specific attachment).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RateLimitIr {
    /// The policy's `namespace/name`.
    pub policy: ObjectKey,
    /// The policy cannot be used: every request is refused with 500 and this message, so a
    /// route meant to be limited is never left unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refuse: Option<String>,
    pub rules: Vec<RateLimitRuleIr>,
    /// Refuse (503) rather than let through when the global store (Redis) cannot answer.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub fail_closed: bool,
}

/// One limit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RateLimitRuleIr {
    /// The rule's name, or `rule-<index>`.
    pub name: String,
    /// All must match for the rule to count a request.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub selectors: Vec<SelectorIr>,
    pub requests: u32,
    /// The period, in seconds.
    pub unit_seconds: u64,
    /// What one request takes from the bucket.
    pub cost: u32,
    /// Count what would be refused; refuse nothing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub shadow: bool,
    /// One bucket across every route the policy governs, rather than one per route.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub shared: bool,
    /// Counted by every replica together, in Redis; otherwise by each replica.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub global: bool,
}

/// How a selector compares a value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "value")]
pub enum LimitValueIr {
    Exact(String),
    /// RE2 syntax, anchored at both ends.
    RegularExpression(String),
    /// Any value; one bucket per value.
    Distinct,
}

/// One condition of a rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum SelectorIr {
    /// A request header (name lower-case); `invert` matches when it does not.
    Header {
        name: String,
        value: LimitValueIr,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        invert: bool,
    },
    /// The client address within a range (normalised CIDR); `distinct`: a bucket per address.
    SourceCidr { cidr: String, distinct: bool },
    /// The authenticated Consumer (`namespace/name`), one (`Some`) or any, a bucket each.
    Consumer { name: Option<String> },
    /// A label of the authenticated Consumer.
    ConsumerLabel { name: String, value: LimitValueIr },
    /// A claim of the verified JWT, by dotted path.
    Claim { name: String, value: LimitValueIr },
}
