//! RateLimitPolicy (`gantry.dev/v1alpha1`): each policy validated once into a
//! [`RateLimitIr`], attached to route entries through `route_policy` (rule > route > listener
//! > Gateway; the winner applies whole) and its `ancestors[]` status.
//!
//! A policy whose values cannot be used (a bad CIDR or regular expression, a cost that is not
//! a number) is `Accepted=False`, reason `Invalid`, and still attaches: the entries it governs
//! carry `refuse`, so their requests are answered 500 until it is fixed rather than served
//! without the limit meant for them.

use std::sync::Arc;

use gantry_crds::RateLimitPolicy;
use gantry_crds::rate_limit::{
    HeaderMatch, LabelMatch, MatchType, RateLimitRule, RateLimitSelectCondition, SourceMatchType,
};

use super::conditions::{self as c, Problem};
use super::route_policy::{self, Resolved};
use super::security_policy::normalise_cidr;
use super::service_policy::ancestors::PolicyKind;
use crate::ir::{LimitValueIr, PortIr, RateLimitIr, RateLimitRuleIr, SelectorIr};
use crate::status::ObjectStatus;
use crate::store::{ObjectKey, Store};

const KIND: PolicyKind = PolicyKind {
    kind: gantry_crds::RATE_LIMIT_POLICY_KIND,
    api_version: "gantry.dev/v1alpha1",
};

type Validated = route_policy::Validated<RateLimitIr>;

/// Every RateLimitPolicy of one translation.
#[derive(Debug, Default)]
pub struct RateLimits {
    resolved: Resolved<Validated>,
}

impl RateLimits {
    /// Validates every policy of `store` and settles precedence per target.
    pub fn resolve(store: &Store) -> Self {
        let policies = store
            .rate_limit_policies
            .iter()
            .map(|(key, p)| (key.clone(), validate(store, key, p)))
            .collect();
        Self {
            resolved: Resolved::new(policies),
        }
    }

    /// Gives every HTTP route entry of `ports` the policy governing it.
    pub fn attach(&mut self, ports: &mut [PortIr]) {
        self.resolved.attach(ports, |entry, policy| {
            entry.rate_limit = Some(policy.ir.clone())
        });
    }

    /// Status of every policy in use at a served Gateway, or with a target that does not
    /// attach.
    pub fn policy_statuses(&self, controller_name: &Arc<str>) -> Vec<ObjectStatus> {
        route_policy::ancestors::policy_statuses(KIND, &self.resolved, controller_name)
    }
}

fn validate(store: &Store, key: &ObjectKey, policy: &RateLimitPolicy) -> Validated {
    let ns = key.namespace.as_str();
    let targets = route_policy::target::resolve_all(store, ns, &policy.spec.target_refs);
    let mut problems = Vec::new();
    let mut names = std::collections::BTreeSet::new();
    let local = policy.spec.local.iter().flat_map(|l| &l.rules);
    let global = policy.spec.global.iter().flat_map(|g| &g.rules);
    let mut rules = Vec::new();
    for (list, rules_in, is_global) in [
        ("local", local.collect::<Vec<_>>(), false),
        ("global", global.collect(), true),
    ] {
        for (i, rule) in rules_in.into_iter().enumerate() {
            let mut ir = rule_ir(ns, list, i, rule, &mut problems);
            ir.global = is_global;
            if !names.insert(ir.name.clone()) {
                problems.push(format!(
                    "{list}.rules[{i}]: the name {} is used twice; rule names must be unique",
                    ir.name
                ));
            }
            rules.push(ir);
        }
    }
    if rules.is_empty() {
        problems.push("the policy has no rules; give local.rules or global.rules".to_owned());
    }
    let invalid = (!problems.is_empty()).then(|| {
        Problem::new(
            c::REASON_INVALID,
            format!(
                "{}; requests it governs are refused with 500 until it is fixed",
                problems.join("; ")
            ),
        )
    });
    let ir = RateLimitIr {
        policy: key.clone(),
        refuse: invalid.as_ref().map(|_| {
            format!(
                "RateLimitPolicy {key} cannot be used: {}",
                problems.join("; ")
            )
        }),
        rules: if invalid.is_some() { Vec::new() } else { rules },
        fail_closed: policy
            .spec
            .global
            .as_ref()
            .and_then(|g| g.fail_closed)
            .unwrap_or(false),
    };
    Validated {
        key: key.clone(),
        created: policy.metadata.creation_timestamp.clone(),
        generation: super::generation_of(&policy.metadata),
        targets,
        invalid,
        ir: Arc::new(ir),
    }
}

fn rule_ir(
    namespace: &str,
    list: &str,
    index: usize,
    rule: &RateLimitRule,
    problems: &mut Vec<String>,
) -> RateLimitRuleIr {
    let at = format!("{list}.rules[{index}]");
    let cost = match rule.cost.as_ref().and_then(|c| c.request.as_ref()) {
        None => 1,
        Some(cost) if cost.from == "Number" => match cost.number {
            Some(n) if n >= 1 => n,
            _ => {
                problems.push(format!(
                    "{at}.cost.request: from Number needs a number of at least 1"
                ));
                1
            }
        },
        Some(cost) => {
            problems.push(format!(
                "{at}.cost.request.from {:?} is not supported; use Number",
                cost.from
            ));
            1
        }
    };
    if rule.limit.requests == 0 {
        problems.push(format!("{at}.limit.requests must be at least 1"));
    }
    if cost > rule.limit.requests {
        problems.push(format!(
            "{at}: a request costs {cost}, more than the limit of {} allows at once",
            rule.limit.requests
        ));
    }
    let selectors = rule
        .client_selectors
        .iter()
        .enumerate()
        .flat_map(|(s, condition)| {
            selectors(
                namespace,
                &format!("{at}.clientSelectors[{s}]"),
                condition,
                problems,
            )
        })
        .collect();
    RateLimitRuleIr {
        name: rule.name.clone().unwrap_or_else(|| match list {
            "global" => format!("global-rule-{index}"),
            _ => format!("rule-{index}"),
        }),
        selectors,
        requests: rule.limit.requests,
        unit_seconds: rule.limit.unit.seconds(),
        cost,
        shadow: rule.shadow_mode.unwrap_or(false),
        shared: rule.shared.unwrap_or(false),
        global: false,
    }
}

fn selectors(
    namespace: &str,
    at: &str,
    condition: &RateLimitSelectCondition,
    problems: &mut Vec<String>,
) -> Vec<SelectorIr> {
    let mut out = Vec::new();
    for (h, header) in condition.headers.iter().enumerate() {
        if let Some(selector) = header_selector(&format!("{at}.headers[{h}]"), header, problems) {
            out.push(selector);
        }
    }
    if let Some(source) = &condition.source_cidr {
        match normalise_cidr(&source.value) {
            Ok(cidr) => out.push(SelectorIr::SourceCidr {
                cidr,
                distinct: source.type_ == Some(SourceMatchType::Distinct),
            }),
            Err(m) => problems.push(format!("{at}.sourceCIDR: {m}")),
        }
    }
    if let Some(consumer) = &condition.consumer {
        let name = match (consumer.type_, &consumer.name) {
            (Some(SourceMatchType::Exact), Some(name)) => Some(if name.contains('/') {
                name.clone()
            } else {
                format!("{namespace}/{name}")
            }),
            (Some(SourceMatchType::Exact), None) => {
                problems.push(format!("{at}.consumer: type Exact needs a name"));
                None
            }
            _ => None,
        };
        out.push(SelectorIr::Consumer { name });
    }
    for (l, claim) in condition.claims.iter().enumerate() {
        if let Some(value) = label_value(&format!("{at}.claims[{l}]"), claim, problems) {
            out.push(SelectorIr::Claim {
                name: claim.name.clone(),
                value,
            });
        }
    }
    for (l, label) in condition.consumer_labels.iter().enumerate() {
        if let Some(value) = label_value(&format!("{at}.consumerLabels[{l}]"), label, problems) {
            out.push(SelectorIr::ConsumerLabel {
                name: label.name.clone(),
                value,
            });
        }
    }
    out
}

fn header_selector(
    at: &str,
    header: &HeaderMatch,
    problems: &mut Vec<String>,
) -> Option<SelectorIr> {
    let invert = header.invert.unwrap_or(false);
    let value = value_match(at, header.type_, header.value.as_deref(), problems)?;
    if invert && value == LimitValueIr::Distinct {
        problems.push(format!("{at}: invert cannot be used with Distinct"));
        return None;
    }
    if http::HeaderName::from_bytes(header.name.as_bytes()).is_err() {
        problems.push(format!("{at}: {:?} is not a header name", header.name));
        return None;
    }
    Some(SelectorIr::Header {
        name: header.name.to_ascii_lowercase(),
        value,
        invert,
    })
}

fn label_value(at: &str, label: &LabelMatch, problems: &mut Vec<String>) -> Option<LimitValueIr> {
    value_match(at, label.type_, label.value.as_deref(), problems)
}

fn value_match(
    at: &str,
    type_: Option<MatchType>,
    value: Option<&str>,
    problems: &mut Vec<String>,
) -> Option<LimitValueIr> {
    match (type_.unwrap_or(MatchType::Exact), value) {
        (MatchType::Distinct, None) => Some(LimitValueIr::Distinct),
        (MatchType::Distinct, Some(_)) => {
            problems.push(format!("{at}: Distinct takes no value"));
            None
        }
        (MatchType::Exact, Some(v)) => Some(LimitValueIr::Exact(v.to_owned())),
        (MatchType::RegularExpression, Some(v)) => match regex::Regex::new(&format!("^(?:{v})$")) {
            Ok(_) => Some(LimitValueIr::RegularExpression(v.to_owned())),
            Err(e) => {
                // The regex crate's message spans lines (pattern, caret, error): keep the
                // error.
                let e = e.to_string();
                let why = e
                    .lines()
                    .last()
                    .unwrap_or_default()
                    .trim_start_matches("error: ");
                problems.push(format!("{at}: invalid regular expression {v:?}: {why}"));
                None
            }
        },
        (_, None) => {
            problems.push(format!(
                "{at}: a value is required for Exact and RegularExpression"
            ));
            None
        }
    }
}
