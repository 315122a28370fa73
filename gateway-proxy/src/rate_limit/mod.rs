//! RateLimitPolicy on the request path ([docs/rate-limits.md]): a route entry's policy
//! compiled once per snapshot into a [`Limiter`], checked after the SecurityPolicy (so the
//! Consumer is known) and before anything calls upstream.
//!
//! Every rule whose selectors all match takes the request's cost from its bucket: one per
//! rule, route (unless `shared`) and distinct value ([`buckets`]). The request is refused with
//! 429 when an enforced rule's bucket is empty; a shadow rule only counts. The answer carries
//! `Retry-After` and the IETF `RateLimit-Policy` / `RateLimit` headers
//! (draft-ietf-httpapi-ratelimit-headers), and an allowed response carries the two latter for
//! the enforced rule closest to its limit.

pub mod buckets;
pub mod global;
mod redis_client;
mod redis_mux;
mod reserve;
mod resp;

use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::request::Parts;
use http::{HeaderMap, HeaderValue};

use self::buckets::{Buckets, Rate, Taken};
use self::global::GlobalBuckets;
use self::reserve::Plan;
use crate::security::Identity;
use crate::security::cidr::Cidr;
use gantry_translate::ir::{LimitValueIr, RateLimitIr, SelectorIr};

/// A compiled RateLimitPolicy.
#[derive(Debug)]
pub struct Limiter {
    policy: Arc<str>,
    /// The policy cannot be used: every request is refused (500) with this message.
    refuse: Option<String>,
    rules: Vec<Rule>,
    /// Refuse (503) when Redis cannot answer a global rule; otherwise let the request through.
    fail_closed: bool,
}

#[derive(Debug)]
struct Rule {
    name: Arc<str>,
    selectors: Vec<Selector>,
    rate: Rate,
    cost: u32,
    shadow: bool,
    shared: bool,
    /// Counted in Redis by the whole fleet.
    global: bool,
    /// What the rule's `RateLimit` headers are made of, borrowed by every response that
    /// carries them.
    headers: RuleHeaders,
    /// What every bucket key of the rule starts with, built once: the policy, the rule and
    /// its limit (a changed limit starts buckets of its own).
    key_prefix: String,
}

#[derive(Debug)]
enum Value {
    Exact(String),
    Regex(regex::Regex),
    Distinct,
}

impl Value {
    fn compile(ir: &LimitValueIr) -> Result<Self, String> {
        Ok(match ir {
            LimitValueIr::Exact(v) => Self::Exact(v.clone()),
            LimitValueIr::RegularExpression(v) => {
                Self::Regex(regex::Regex::new(&format!("^(?:{v})$")).map_err(|e| e.to_string())?)
            }
            LimitValueIr::Distinct => Self::Distinct,
        })
    }

    /// Whether `value` matches; `Distinct` matches any present value.
    fn matches(&self, value: &str) -> bool {
        match self {
            Self::Exact(v) => v == value,
            Self::Regex(r) => r.is_match(value),
            Self::Distinct => true,
        }
    }
}

#[derive(Debug)]
enum Selector {
    Header {
        name: http::HeaderName,
        value: Value,
        invert: bool,
    },
    Source {
        range: Cidr,
        distinct: bool,
    },
    Consumer {
        name: Option<String>,
    },
    ConsumerLabel {
        name: String,
        value: Value,
    },
    Claim {
        name: String,
        value: Value,
    },
}

/// What a request brings to the selectors.
pub struct Facts<'a> {
    pub parts: &'a Parts,
    /// When the request arrived: the time local buckets are taken and global reserves handed
    /// out at (the pipeline has read the clock already).
    pub now: Instant,
    pub client: IpAddr,
    /// `namespace/name` of the route.
    pub route: &'a str,
    /// Who the route's SecurityPolicy found the caller to be.
    pub identity: Option<&'a Identity>,
}

/// Why a request is refused.
#[derive(Debug)]
pub struct Limited {
    /// `namespace/name` of the policy.
    pub policy: Arc<str>,
    pub rule: Arc<str>,
    pub retry_after: Duration,
    /// `RateLimit-Policy` and `RateLimit` of the rule that refused.
    pub headers: [(http::HeaderName, HeaderValue); 3],
}

/// What a rule's `RateLimit` headers are made of.
#[derive(Debug)]
pub struct RuleHeaders {
    /// `RateLimit-Policy`: `"name";q=requests;w=seconds`.
    policy: HeaderValue,
    /// `"name";r=`, what every `RateLimit` value of the rule starts with.
    remaining_prefix: Box<str>,
}

/// The `RateLimit` and `RateLimit-Policy` headers of a response that passed, written only
/// when the response is: a few words borrowed from the snapshot and carried through the
/// request instead of two header values (the policy group of `e2e/bench/run.sh
/// --instructions-only` counts the moves).
#[derive(Debug)]
pub struct RateHeaders<'r> {
    rule: &'r RuleHeaders,
    remaining: u64,
    seconds: u64,
}

impl RateHeaders<'_> {
    /// Adds both headers to a response's, replacing any the backend sent.
    pub fn add_to(self, headers: &mut HeaderMap) {
        headers.insert(RATELIMIT_POLICY, self.rule.policy.clone());
        headers.insert(
            RATELIMIT,
            remaining_header(&self.rule.remaining_prefix, self.remaining, self.seconds),
        );
    }
}

/// What the check decided for a request that passes.
#[derive(Debug, Default)]
pub struct Passed<'r> {
    /// The headers to add to the response: the enforced rule with the fewest requests left.
    pub headers: Option<RateHeaders<'r>>,
    /// Shadow rules that would have refused the request.
    pub shadow_limited: Vec<Arc<str>>,
    /// Global rules Redis could not answer, let through (the policy fails open).
    pub unanswered: Vec<Arc<str>>,
}

/// The outcome of [`Limiter::check`].
pub enum Checked<'r> {
    Passed(Passed<'r>),
    Limited(Limited),
    /// The policy cannot be used (500).
    Refused(String),
    /// Redis could not answer a global rule of a policy that fails closed (503).
    Unavailable {
        rule: Arc<str>,
        message: String,
    },
}

pub const RATELIMIT_POLICY: http::HeaderName = http::HeaderName::from_static("ratelimit-policy");
pub const RATELIMIT: http::HeaderName = http::HeaderName::from_static("ratelimit");

impl Limiter {
    /// Compiles a policy. Never fails: what cannot be compiled refuses every request (500),
    /// so a route meant to be limited is never left unlimited.
    pub fn compile(ir: &RateLimitIr) -> Self {
        let mut refuse = ir.refuse.clone();
        let mut rules = Vec::with_capacity(ir.rules.len());
        for rule in &ir.rules {
            match compile_rule(&ir.policy.to_string(), rule) {
                Ok(rule) => rules.push(rule),
                Err(e) => {
                    refuse.get_or_insert_with(|| {
                        format!("RateLimitPolicy {} cannot be used: {e}", ir.policy)
                    });
                }
            }
        }
        Self {
            policy: Arc::from(ir.policy.to_string()),
            refuse,
            rules,
            fail_closed: ir.fail_closed,
        }
    }

    pub fn policy(&self) -> &Arc<str> {
        &self.policy
    }

    /// Takes from this replica's bucket of a local `rule` for the request; `None` when a
    /// selector does not match. The key is written into a buffer of this thread.
    fn take_local(&self, rule: &Rule, buckets: &Buckets, facts: &Facts<'_>) -> Option<Taken> {
        KEY.with_borrow_mut(|key| {
            key.clear();
            self.key(rule, facts, key)
                .map(|()| buckets.take(key, rule.rate, rule.cost, facts.now))
        })
    }

    fn no_redis(&self) -> Checked<'_> {
        Checked::Refused(format!(
            "RateLimitPolicy {} has global rules, and this proxy has no Redis to count them in: \
             start it with --rate-limit-redis",
            self.policy
        ))
    }

    /// Checks a request against every rule, taking from the buckets of those that match:
    /// this replica's `buckets`, or for global rules `global` (Redis).
    pub async fn check(
        &self,
        buckets: &Buckets,
        global: Option<&GlobalBuckets>,
        facts: &Facts<'_>,
    ) -> Checked<'_> {
        match self.check_now(buckets, global, facts) {
            Ok(checked) => checked,
            Err(pending) => self.resume(buckets, global, facts, pending).await,
        }
    }

    /// [`Limiter::check`] up to the first take that must go to Redis: the answer when none
    /// must (a policy of local rules only, or global takes all handed out from this
    /// replica's reserves), so that the common case builds no future (`gantry-bench
    /// --instructions-only`, the policy group). Otherwise where the check stopped, for
    /// [`Limiter::resume`].
    pub fn check_now(
        &self,
        buckets: &Buckets,
        global: Option<&GlobalBuckets>,
        facts: &Facts<'_>,
    ) -> Result<Checked<'_>, Box<Pending<'_>>> {
        if let Some(message) = &self.refuse {
            return Ok(Checked::Refused(message.clone()));
        }
        self.run(buckets, global, facts, 0, Tally::default())
    }

    /// Finishes a check that stopped at `pending`: its take counted in Redis, then the rules
    /// after it.
    pub async fn resume<'r>(
        &'r self,
        buckets: &Buckets,
        global: Option<&GlobalBuckets>,
        facts: &Facts<'_>,
        mut pending: Box<Pending<'r>>,
    ) -> Checked<'r> {
        let Some(global) = global else {
            return self.no_redis();
        };
        loop {
            let Pending {
                index,
                key,
                plan,
                mut tally,
            } = *pending;
            let rule = &self.rules[index];
            match global.take_with(&key, rule.rate, rule.cost, plan).await {
                Ok(taken) => {
                    if let Some(limited) = tally.add(&self.policy, rule, taken) {
                        return Checked::Limited(limited);
                    }
                }
                Err(error) if self.fail_closed => {
                    return Checked::Unavailable {
                        rule: rule.name.clone(),
                        message: format!(
                            "rate limit {} of RateLimitPolicy {} cannot be counted ({error}); \
                             the policy fails closed",
                            rule.name, self.policy
                        ),
                    };
                }
                Err(error) => {
                    tracing::debug!(policy = %self.policy, rule = %rule.name, %error, "global rate limit not counted; the policy fails open");
                    tally.passed.unanswered.push(rule.name.clone());
                }
            }
            match self.run(buckets, Some(global), facts, index + 1, tally) {
                Ok(checked) => return checked,
                Err(next) => pending = next,
            }
        }
    }

    /// Takes for the rules from `from` on, in order, until one must go to Redis.
    fn run<'r>(
        &'r self,
        buckets: &Buckets,
        global: Option<&GlobalBuckets>,
        facts: &Facts<'_>,
        from: usize,
        mut tally: Tally<'r>,
    ) -> Result<Checked<'r>, Box<Pending<'r>>> {
        for (index, rule) in self.rules.iter().enumerate().skip(from) {
            // A shadow rule counts like an enforced one; it only never refuses.
            let taken = if rule.global {
                // Most takes of a busy bucket are handed out from this replica's reserve: the
                // key is written into this thread's buffer, and copied only for Redis.
                let take = KEY.with_borrow_mut(|key| {
                    key.clear();
                    // A selector does not match: the rule does not apply.
                    self.key(rule, facts, key)?;
                    Some(match global {
                        None => GlobalTake::NoRedis,
                        Some(global) => {
                            match global.try_reserved(key, rule.rate, rule.cost, facts.now) {
                                Ok(taken) => GlobalTake::Reserved(taken),
                                Err(plan) => GlobalTake::Redis(key.clone(), plan),
                            }
                        }
                    })
                });
                match take {
                    None => continue,
                    Some(GlobalTake::NoRedis) => return Ok(self.no_redis()),
                    Some(GlobalTake::Reserved(taken)) => taken,
                    Some(GlobalTake::Redis(key, plan)) => {
                        return Err(Box::new(Pending {
                            index,
                            key,
                            plan,
                            tally,
                        }));
                    }
                }
            } else {
                let Some(taken) = self.take_local(rule, buckets, facts) else {
                    continue;
                };
                taken
            };
            if let Some(limited) = tally.add(&self.policy, rule, taken) {
                return Ok(Checked::Limited(limited));
            }
        }
        Ok(Checked::Passed(tally.finish()))
    }

    /// Writes the bucket key of `rule` for this request into `key` (empty); `None` when a
    /// selector does not match.
    fn key(&self, rule: &Rule, facts: &Facts<'_>, key: &mut String) -> Option<()> {
        let route = if rule.shared { "*" } else { facts.route };
        let identity = facts.identity;
        key.reserve(rule.key_prefix.len() + route.len() + 48);
        key.push_str(&rule.key_prefix);
        key.push_str(route);
        for selector in &rule.selectors {
            match selector {
                Selector::Header {
                    name,
                    value,
                    invert,
                } => {
                    let found = facts.parts.headers.get(name).and_then(|v| v.to_str().ok());
                    let matched = found.is_some_and(|v| value.matches(v));
                    if matched == *invert {
                        return None;
                    }
                    if matches!(value, Value::Distinct) {
                        key.push('\0');
                        key.push_str(found.unwrap_or_default());
                    }
                }
                Selector::Source { range, distinct } => {
                    if !range.contains(facts.client) {
                        return None;
                    }
                    if *distinct {
                        key.push('\0');
                        if rule.global {
                            push_address(key, facts.client);
                        } else {
                            push_address_local(key, facts.client);
                        }
                    }
                }
                Selector::Consumer { name } => {
                    let consumer = identity.and_then(|i| i.consumer.as_deref())?;
                    match name {
                        Some(want) if want != consumer => return None,
                        Some(_) => {}
                        None => {
                            key.push('\0');
                            key.push_str(consumer);
                        }
                    }
                }
                Selector::ConsumerLabel { name, value } => {
                    let identity = identity.filter(|i| i.consumer.is_some())?;
                    push_match(key, value, identity.label(name))?;
                }
                Selector::Claim { name, value } => {
                    push_match(key, value, identity?.claim(name))?;
                }
            }
        }
        Some(())
    }
}

thread_local! {
    /// The bucket key of a local rule, written afresh for each rule a request meets: one
    /// buffer per thread instead of an allocation per request and rule.
    static KEY: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// Where the take of a global rule whose selectors match comes from.
enum GlobalTake {
    /// This replica's reserve of the bucket.
    Reserved(Taken),
    /// Redis: the bucket key (copied out of the thread's buffer) and what the call gives back
    /// and reserves.
    Redis(String, Plan),
    /// None: this proxy has no Redis.
    NoRedis,
}

/// A check stopped at a global rule whose take must go to Redis ([`Limiter::check_now`]).
pub struct Pending<'r> {
    /// The rule's place among the policy's rules.
    index: usize,
    key: String,
    plan: Plan,
    /// What the rules before it decided.
    tally: Tally<'r>,
}

/// What the rules checked so far decided.
#[derive(Default)]
struct Tally<'r> {
    passed: Passed<'r>,
    /// The enforced rule with the fewest requests left.
    closest: Option<(u64, &'r Rule, Taken)>,
}

impl<'r> Tally<'r> {
    /// Counts one rule's take; the refusal when an enforced rule's bucket was empty.
    fn add(&mut self, policy: &Arc<str>, rule: &'r Rule, taken: Taken) -> Option<Limited> {
        // A shadow rule counts like an enforced one; it only never refuses.
        if rule.shadow {
            if !taken.allowed {
                self.passed.shadow_limited.push(rule.name.clone());
            }
            return None;
        }
        if !taken.allowed {
            let seconds = ceil_seconds(taken.wait);
            return Some(Limited {
                policy: policy.clone(),
                rule: rule.name.clone(),
                retry_after: taken.wait,
                headers: [
                    (http::header::RETRY_AFTER, HeaderValue::from(seconds)),
                    (RATELIMIT_POLICY, rule.headers.policy.clone()),
                    (
                        RATELIMIT,
                        remaining_header(&rule.headers.remaining_prefix, 0, seconds),
                    ),
                ],
            });
        }
        if self
            .closest
            .as_ref()
            .is_none_or(|(r, _, _)| taken.remaining < *r)
        {
            self.closest = Some((taken.remaining, rule, taken));
        }
        None
    }

    fn finish(mut self) -> Passed<'r> {
        self.passed.headers = self.closest.map(|(remaining, rule, taken)| RateHeaders {
            rule: &rule.headers,
            remaining,
            seconds: ceil_seconds(taken.wait),
        });
        self.passed
    }
}

/// Whether `found` is present and matches; a `Distinct` value joins the key.
fn push_match(key: &mut String, value: &Value, found: Option<&str>) -> Option<()> {
    let found = found?;
    if !value.matches(found) {
        return None;
    }
    if matches!(value, Value::Distinct) {
        key.push('\0');
        key.push_str(found);
    }
    Some(())
}

fn compile_rule(policy: &str, ir: &gantry_translate::ir::RateLimitRuleIr) -> Result<Rule, String> {
    let mut selectors = Vec::with_capacity(ir.selectors.len());
    for selector in &ir.selectors {
        selectors.push(match selector {
            SelectorIr::Header {
                name,
                value,
                invert,
            } => Selector::Header {
                name: http::HeaderName::from_bytes(name.as_bytes()).map_err(|e| e.to_string())?,
                value: Value::compile(value)?,
                invert: *invert,
            },
            SelectorIr::SourceCidr { cidr, distinct } => Selector::Source {
                range: Cidr::parse(cidr)?,
                distinct: *distinct,
            },
            SelectorIr::Consumer { name } => Selector::Consumer { name: name.clone() },
            SelectorIr::ConsumerLabel { name, value } => Selector::ConsumerLabel {
                name: name.clone(),
                value: Value::compile(value)?,
            },
            SelectorIr::Claim { name, value } => Selector::Claim {
                name: name.clone(),
                value: Value::compile(value)?,
            },
        });
    }
    let name: Arc<str> = Arc::from(ir.name.as_str());
    let policy_header = HeaderValue::from_str(&format!(
        "\"{}\";q={};w={}",
        ir.name, ir.requests, ir.unit_seconds
    ))
    .map_err(|e| e.to_string())?;
    Ok(Rule {
        name,
        selectors,
        rate: Rate {
            requests: ir.requests,
            unit: Duration::from_secs(ir.unit_seconds),
        },
        cost: ir.cost.max(1),
        shadow: ir.shadow,
        shared: ir.shared,
        global: ir.global,
        headers: RuleHeaders {
            policy: policy_header,
            remaining_prefix: format!("\"{}\";r=", ir.name).into(),
        },
        key_prefix: format!(
            "{policy}\0{}\0{}/{}\0",
            ir.name, ir.requests, ir.unit_seconds
        ),
    })
}

/// `"name";r=remaining;t=seconds`, from the rule's `"name";r=`. Written without `fmt`: it
/// goes on every response of a limited route (the policy group of `e2e/bench/run.sh
/// --instructions-only` counts it).
fn remaining_header(prefix: &str, remaining: u64, seconds: u64) -> HeaderValue {
    let (mut r, mut t) = (itoa::Buffer::new(), itoa::Buffer::new());
    let (r, t) = (r.format(remaining), t.format(seconds));
    // Exactly as long as the value: `Bytes` takes a full `Vec` over without another
    // allocation.
    let mut value = Vec::with_capacity(prefix.len() + r.len() + 3 + t.len());
    value.extend_from_slice(prefix.as_bytes());
    value.extend_from_slice(r.as_bytes());
    value.extend_from_slice(b";t=");
    value.extend_from_slice(t.as_bytes());
    HeaderValue::from_maybe_shared(bytes::Bytes::from(value))
        .unwrap_or_else(|_| HeaderValue::from_static("\"limit\";r=0;t=1"))
}

/// The client address in a bucket key: an IPv4 address written by hand (the common case, on
/// every request of a per-address limit), anything else through `fmt`.
fn push_address(key: &mut String, address: IpAddr) {
    match address {
        IpAddr::V4(v4) => {
            let mut digits = itoa::Buffer::new();
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    key.push('.');
                }
                key.push_str(digits.format(octet));
            }
        }
        IpAddr::V6(_) => {
            let _ = write!(key, "{address}");
        }
    }
}

/// The client address in a key that never leaves this process (a local bucket's): an IPv4
/// address as its four octets, one character each, instead of in decimal (the policy group of
/// `e2e/bench/run.sh --instructions-only` counts it). A global key stays readable in Redis
/// ([`push_address`]). The octets follow U+0001, which no IPv6 address's text has, so `::12`
/// and 58.58.49.50 (`::12` as four characters) get buckets of their own.
fn push_address_local(key: &mut String, address: IpAddr) {
    match address {
        IpAddr::V4(v4) => {
            key.push('\u{1}');
            key.extend(v4.octets().map(char::from));
        }
        IpAddr::V6(_) => push_address(key, address),
    }
}

/// Whole seconds, rounded up, at least 1 (`Retry-After: 0` would invite a retry at once).
fn ceil_seconds(d: Duration) -> u64 {
    let s = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    s.max(1)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use gantry_translate::ir::RateLimitRuleIr;
    use gantry_translate::store::ObjectKey;

    #[test]
    fn local_keys_tell_every_address_apart() {
        let mut seen = std::collections::HashSet::new();
        for address in [
            "10.0.0.1",
            "10.0.0.10",
            "100.0.0.1",
            "1.0.0.100",
            "255.255.255.255",
            "0.0.0.0",
            "127.0.0.1",
            "::1",
            "::12",
            "58.58.49.50",
            "fd00::7",
        ] {
            let mut key = String::new();
            push_address_local(&mut key, address.parse().unwrap());
            assert!(seen.insert(key), "{address} shares a key");
        }
        let mut key = String::new();
        push_address_local(&mut key, IpAddr::from([192, 0, 2, 200]));
        assert_eq!(key.chars().count(), 5);
    }

    #[test]
    fn keys_and_header_values_are_written_as_fmt_would() {
        for address in [
            "10.0.0.1",
            "255.255.255.255",
            "0.0.0.0",
            "192.168.1.100",
            "fd00::7",
        ] {
            let address: IpAddr = address.parse().unwrap();
            let mut key = String::new();
            push_address(&mut key, address);
            assert_eq!(key, address.to_string());
        }
        assert_eq!(
            remaining_header("\"per-client\";r=", 12, 3),
            "\"per-client\";r=12;t=3"
        );
        assert_eq!(
            remaining_header("\"x\";r=", u64::MAX, 1),
            format!("\"x\";r={};t=1", u64::MAX).as_str()
        );
    }

    fn limiter(selectors: Vec<SelectorIr>) -> Limiter {
        Limiter::compile(&RateLimitIr {
            policy: ObjectKey::new("default", "p"),
            refuse: None,
            rules: vec![RateLimitRuleIr {
                name: "r".into(),
                selectors,
                requests: 1,
                unit_seconds: 3600,
                cost: 1,
                shadow: false,
                shared: false,
                global: false,
            }],
            fail_closed: false,
        })
    }

    /// A request, and who its SecurityPolicy found the caller to be.
    type Request = (Parts, Option<Identity>);

    fn parts(headers: &[(&str, &str)], identity: Option<Identity>) -> Request {
        let mut request = http::Request::builder().uri("/");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let (parts, ()) = request.body(()).expect("request").into_parts();
        (parts, identity)
    }

    fn identity(
        consumer: Option<&str>,
        labels: &[(&str, &str)],
        claims: &[(&str, &str)],
    ) -> Identity {
        let map = |pairs: &[(&str, &str)]| -> Arc<BTreeMap<String, String>> {
            Arc::new(
                pairs
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            )
        };
        Identity {
            consumer: consumer.map(Arc::from),
            labels: map(labels),
            subject: None,
            claims: map(claims),
        }
    }

    /// What `request` brings to the selectors, arriving now from 192.0.2.1 on `default/r`.
    fn facts(request: &Request) -> Facts<'_> {
        Facts {
            parts: &request.0,
            now: Instant::now(),
            client: IpAddr::from([192, 0, 2, 1]),
            route: "default/r",
            identity: request.1.as_ref(),
        }
    }

    /// A global rule `name` of `requests` per `unit_seconds`.
    fn global_rule(
        name: &str,
        selectors: Vec<SelectorIr>,
        requests: u32,
        unit_seconds: u64,
    ) -> RateLimitRuleIr {
        RateLimitRuleIr {
            name: name.into(),
            selectors,
            requests,
            unit_seconds,
            cost: 1,
            shadow: false,
            shared: false,
            global: true,
        }
    }

    /// Buckets for [`Limiter::check`] and for [`Limiter::check_now`], which must decide
    /// alike.
    #[derive(Default)]
    struct Buckets(super::Buckets, super::Buckets);

    /// Whether a request passes; `None`: no rule applies (passes without headers).
    async fn passes(limiter: &Limiter, buckets: &Buckets, request: &Request) -> Option<bool> {
        let facts = facts(request);
        let outcome = |checked| match checked {
            Checked::Passed(p) => p.headers.is_some().then_some(true),
            Checked::Limited(_) => Some(false),
            Checked::Refused(m) | Checked::Unavailable { message: m, .. } => panic!("{m}"),
        };
        let checked = outcome(limiter.check(&buckets.0, None, &facts).await);
        let Ok(now) = limiter.check_now(&buckets.1, None, &facts) else {
            panic!("a local rule never waits for Redis");
        };
        let local = outcome(now);
        assert_eq!(checked, local, "both checks decide alike");
        checked
    }

    #[tokio::test]
    async fn distinct_claims_get_a_bucket_each_and_tokens_without_the_claim_are_not_counted() {
        let limiter = limiter(vec![SelectorIr::Claim {
            name: "org.id".into(),
            value: LimitValueIr::Distinct,
        }]);
        let buckets = Buckets::default();
        let org = |id| parts(&[], Some(identity(None, &[], &[("org.id", id)])));
        assert_eq!(passes(&limiter, &buckets, &org("a")).await, Some(true));
        assert_eq!(passes(&limiter, &buckets, &org("a")).await, Some(false));
        assert_eq!(passes(&limiter, &buckets, &org("b")).await, Some(true));
        assert_eq!(passes(&limiter, &buckets, &parts(&[], None)).await, None);
    }

    #[tokio::test]
    async fn inverted_headers_and_consumer_labels_select_as_documented() {
        let buckets = Buckets::default();
        let internal = limiter(vec![SelectorIr::Header {
            name: "x-internal".into(),
            value: LimitValueIr::Exact("yes".into()),
            invert: true,
        }]);
        let yes = parts(&[("x-internal", "yes")], None);
        assert_eq!(passes(&internal, &buckets, &yes).await, None, "exempt");
        assert_eq!(
            passes(&internal, &buckets, &parts(&[], None)).await,
            Some(true)
        );
        assert_eq!(
            passes(&internal, &buckets, &parts(&[], None)).await,
            Some(false)
        );

        let free = limiter(vec![SelectorIr::ConsumerLabel {
            name: "plan".into(),
            value: LimitValueIr::RegularExpression("free|trial".into()),
        }]);
        let buckets = Buckets::default();
        let on = |plan| {
            parts(
                &[],
                Some(identity(Some("default/c"), &[("plan", plan)], &[])),
            )
        };
        assert_eq!(passes(&free, &buckets, &on("gold")).await, None);
        assert_eq!(passes(&free, &buckets, &on("trial")).await, Some(true));
        assert_eq!(
            passes(&free, &buckets, &on("free")).await,
            Some(false),
            "one bucket"
        );
        // Labels without a Consumer never match.
        let anonymous = parts(&[], Some(identity(None, &[("plan", "free")], &[])));
        assert_eq!(passes(&free, &buckets, &anonymous).await, None);
    }

    /// Without Redis, a global rule refuses only the requests it applies to.
    #[tokio::test]
    async fn without_redis_a_global_rule_refuses_only_what_it_selects() {
        let ir = RateLimitIr {
            policy: ObjectKey::new("default", "p"),
            refuse: None,
            rules: vec![global_rule(
                "r",
                vec![SelectorIr::Header {
                    name: "x-plan".into(),
                    value: LimitValueIr::Exact("free".into()),
                    invert: false,
                }],
                1,
                3600,
            )],
            fail_closed: false,
        };
        let limiter = Limiter::compile(&ir);
        let buckets = super::Buckets::default();
        let check = |request: Request| {
            let limiter = &limiter;
            let buckets = &buckets;
            async move {
                let facts = facts(&request);
                matches!(
                    limiter.check(buckets, None, &facts).await,
                    Checked::Refused(_)
                )
            }
        };
        assert!(
            !check(parts(&[("x-plan", "gold")], None)).await,
            "not selected"
        );
        assert!(check(parts(&[("x-plan", "free")], None)).await, "no Redis");
    }

    /// Two global rules against a real Redis: the check stops at each take that goes to Redis
    /// and resumes with the next rule, what the rules before decided carried along.
    #[tokio::test]
    async fn a_check_resumes_after_each_take_counted_in_redis() {
        let redis = gantry_testkit::redis::Redis::start().await;
        let global = GlobalBuckets::new(&redis.url()).expect("URL");
        let limiter = Limiter::compile(&RateLimitIr {
            policy: ObjectKey::new("default", "p"),
            refuse: None,
            // The first is busy enough to reserve ahead; the second never reserves.
            rules: vec![
                global_rule("fast", Vec::new(), 100_000, 1),
                global_rule("hourly", Vec::new(), 3, 3600),
            ],
            fail_closed: true,
        });
        let buckets = super::Buckets::default();
        let request = parts(&[], None);
        let mut outcomes = Vec::new();
        for _ in 0..5 {
            let facts = facts(&request);
            outcomes.push(match limiter.check(&buckets, Some(&global), &facts).await {
                Checked::Passed(passed) => {
                    // The rule closest to its limit names the headers: the hourly one.
                    let mut headers = HeaderMap::new();
                    passed
                        .headers
                        .expect("RateLimit headers")
                        .add_to(&mut headers);
                    let value = headers.get(RATELIMIT).expect("RateLimit");
                    format!("passed {}", value.to_str().expect("text"))
                }
                Checked::Limited(limited) => format!("limited by {}", limited.rule),
                Checked::Refused(m) | Checked::Unavailable { message: m, .. } => panic!("{m}"),
            });
        }
        assert_eq!(
            outcomes,
            [
                "passed \"hourly\";r=2;t=1200",
                "passed \"hourly\";r=1;t=2400",
                "passed \"hourly\";r=0;t=3600",
                "limited by hourly",
                "limited by hourly",
            ]
        );
    }
}
