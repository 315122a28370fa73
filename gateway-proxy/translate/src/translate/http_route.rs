//! HTTPRoute rules: matches, filters, backends and timeouts into IR rules, with what went wrong.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use gantry_crds::gateway::httproutes::{HttpRoute, HttpRouteRules, HttpRouteRulesFiltersType};

use super::assemble::Collected;
use super::backend::{self, BackendRef, Referrer};
use super::backend_traffic::session::policy_session;
use super::conditions::{self as c, Problem};
use super::filters::{FilterContext, composition_count, from_backend_filter, translate_filters};
use super::grpc_matches::GrpcMatchRank;
use super::hostname;
use super::matches::translate_matches;
use super::parent_ref::RouteResource;
use super::precedence::Ranked;
use super::retry::translate_retry;
use super::routes::{Placement, RuleProblems, TranslatedKind};
use super::session_persistence;
use super::timeouts::translate_timeouts;
use crate::ir::{
    BackendIr, ClusterIr, HttpMatchIr, HttpRuleIr, PathMatchIr, RouteEntryIr, SessionPersistenceIr,
};
use crate::store::{ObjectKey, Store};

/// One rule that can be served.
#[derive(Clone, Debug)]
pub struct TranslatedRule {
    pub index: usize,
    pub matches: Vec<Arc<HttpMatchIr>>,
    /// GRPCRoute only: what precedence needs of each match (same order as `matches`).
    pub grpc_ranks: Vec<GrpcMatchRank>,
    pub rule: Arc<HttpRuleIr>,
}

/// A route's rules, translated once and shared by every parent it attaches to.
#[derive(Clone, Debug, Default)]
pub struct TranslatedRoute {
    pub rules: Vec<TranslatedRule>,
    pub problems: RuleProblems,
    /// Clusters the served rules use, sorted by name. A list rather than a map: it is kept for every
    /// route between translations, and a map's node costs far more than its one or two entries.
    /// Shared with every other route of the kind that uses the same cluster (`route_cache`).
    pub clusters: Vec<Arc<ClusterIr>>,
    pub hostnames: Vec<String>,
    /// Services of backends made invalid because their BackendTLSPolicy cannot be used (their
    /// clusters are gone from `clusters`).
    pub unusable_tls_services: BTreeSet<ObjectKey>,
    /// Services the served rules' backendRefs name that do not exist (an XBackendTrafficPolicy
    /// targeting one shows `TargetNotFound` on the Gateways serving the route).
    pub missing_services: BTreeSet<ObjectKey>,
}

impl TranslatedRoute {
    /// Gives back the room lists grew into: a translated route is kept between translations
    /// (`route_cache`), so at 10,000 routes every spare slot counts.
    pub fn shrink_to_fit(&mut self) {
        self.rules.shrink_to_fit();
        for rule in &mut self.rules {
            rule.matches.shrink_to_fit();
            rule.grpc_ranks.shrink_to_fit();
        }
        self.problems.shrink_to_fit();
        self.hostnames.shrink_to_fit();
    }
}

#[cfg(test)]
impl TranslatedRoute {
    /// Slots allocated and not used in its lists (a cached route should have none).
    pub(super) fn spare_capacity(&self) -> usize {
        self.rules.capacity() - self.rules.len()
            + self
                .rules
                .iter()
                .map(|r| {
                    r.matches.capacity() - r.matches.len() + r.grpc_ranks.capacity()
                        - r.grpc_ranks.len()
                })
                .sum::<usize>()
            + self.hostnames.capacity()
            - self.hostnames.len()
    }
}

impl TranslatedKind for TranslatedRoute {
    fn hostnames(&self) -> &[String] {
        &self.hostnames
    }

    fn problems(&self) -> &RuleProblems {
        &self.problems
    }

    fn clusters(&self) -> &[Arc<ClusterIr>] {
        &self.clusters
    }

    fn clusters_mut(&mut self) -> &mut [Arc<ClusterIr>] {
        &mut self.clusters
    }

    fn services(&self) -> BTreeSet<ObjectKey> {
        let mut services: BTreeSet<ObjectKey> =
            self.clusters.iter().map(|c| c.service.clone()).collect();
        services.extend(self.unusable_tls_services.iter().cloned());
        services
    }

    fn missing_services(&self) -> BTreeSet<ObjectKey> {
        self.missing_services.clone()
    }

    /// Every match of every served rule, once per effective hostname (listener and route
    /// hostnames intersected).
    fn place(&self, collected: &mut Collected, at: &Placement<'_>) {
        for host in hostname::intersections(at.listener.hostname.as_deref(), &self.hostnames) {
            for rule in &self.rules {
                for (match_index, m) in rule.matches.iter().enumerate() {
                    collected.add(
                        at.gateway,
                        at.index,
                        host,
                        Ranked {
                            entry: RouteEntryIr {
                                route: at.route.clone(),
                                rule_index: rule.index,
                                match_index,
                                matches: m.clone(),
                                rule: rule.rule.clone(),
                                security: None,
                                rate_limit: None,
                            },
                            created: at.created.cloned(),
                            match_index,
                            grpc: rule.grpc_ranks.get(match_index).copied(),
                        },
                    );
                }
            }
        }
    }
}

/// Translates every rule of a route. Never fails: invalid rules are dropped and recorded.
pub fn translate_route(store: &Store, namespace: &str, route: &HttpRoute) -> TranslatedRoute {
    let mut out = TranslatedRoute {
        hostnames: route.spec.hostnames.clone().unwrap_or_default(),
        ..TranslatedRoute::default()
    };
    if let Some(problem) = invalid_hostnames(&out.hostnames) {
        out.problems.invalid = Some(problem);
        return out;
    }
    let referrer = Referrer {
        group: gantry_crds::GATEWAY_GROUP,
        kind: HttpRoute::KIND,
        namespace,
    };
    let default_rules = [HttpRouteRules::default()];
    // The API defaults `rules` to one rule matching PathPrefix "/" with no backends.
    let rules = match route.spec.rules.as_deref() {
        None | Some([]) => &default_rules[..],
        Some(rules) => rules,
    };
    let mut all_clusters = BTreeMap::new();
    for (index, rule) in rules.iter().enumerate() {
        let mut clusters = BTreeMap::new();
        match translate_rule(store, referrer, rule, &mut clusters) {
            Ok((mut ir, matches, unresolved)) => {
                let name = route.metadata.name.as_deref().unwrap_or_default();
                session_persistence::bind(&mut ir, HttpRoute::KIND, namespace, name, index);
                out.missing_services.extend(missing_services(
                    store,
                    namespace,
                    rule.backend_refs.iter().flatten().map(|b| BackendRef {
                        group: b.group.as_deref(),
                        kind: b.kind.as_deref(),
                        name: &b.name,
                        namespace: b.namespace.as_deref(),
                        port: b.port,
                    }),
                ));
                out.problems.served += 1;
                out.problems.unresolved.extend(unresolved);
                all_clusters.extend(clusters);
                out.rules.push(TranslatedRule {
                    index,
                    matches: matches.into_iter().map(Arc::new).collect(),
                    grpc_ranks: Vec::new(),
                    rule: Arc::new(ir),
                });
            }
            Err(problem) => out.problems.dropped.push((index, problem)),
        }
    }
    out.clusters = all_clusters.into_values().map(Arc::new).collect();
    out.shrink_to_fit();
    out
}

/// The Services among `refs` (core Service references, namespace defaulting to the route's)
/// that the store does not have.
pub fn missing_services<'a>(
    store: &Store,
    namespace: &str,
    refs: impl Iterator<Item = BackendRef<'a>>,
) -> impl Iterator<Item = ObjectKey> {
    refs.filter(|r| r.group.unwrap_or("").is_empty() && r.kind.unwrap_or("Service") == "Service")
        .map(|r| ObjectKey::new(r.namespace.unwrap_or(namespace), r.name))
        .filter(|key| !store.services.contains_key(key))
        .collect::<Vec<_>>()
        .into_iter()
}

/// Why a route's `spec.hostnames` are invalid, if they are.
pub fn invalid_hostnames(hostnames: &[String]) -> Option<Problem> {
    let bad: Vec<&String> = hostnames
        .iter()
        .filter(|h| !hostname::is_valid(h))
        .collect();
    (!bad.is_empty()).then(|| {
        Problem::new(
            c::REASON_UNSUPPORTED_VALUE,
            format!(
                "spec.hostnames {bad:?} are not valid DNS names (IP addresses are not allowed)"
            ),
        )
    })
}

type RuleResult = Result<(HttpRuleIr, Vec<HttpMatchIr>, Vec<Problem>), Problem>;

/// Translates one rule. Also used for GRPCRoute rules, whose filters and backendRefs have
/// the same shape as HTTPRoute's.
pub fn translate_rule(
    store: &Store,
    referrer: Referrer<'_>,
    rule: &HttpRouteRules,
    clusters: &mut BTreeMap<String, ClusterIr>,
) -> RuleResult {
    let matches = translate_matches(rule.matches.as_deref())?;
    let timeouts = translate_timeouts(rule.timeouts.as_ref())?;
    let retry = translate_retry(rule.retry.as_ref())?;
    let ctx = FilterContext {
        store,
        referrer,
        single_prefix_match: matches.len() == 1
            && matches!(matches[0].path, PathMatchIr::Prefix(_)),
    };
    let filters = rule.filters.as_deref().unwrap_or_default();
    let backend_refs = rule.backend_refs.as_deref().unwrap_or_default();
    // The API's CEL rule: "RequestRedirect filter must not be used together with
    // backendRefs".
    if !backend_refs.is_empty()
        && filters
            .iter()
            .any(|f| f.r#type == HttpRouteRulesFiltersType::RequestRedirect)
    {
        return Err(Problem::new(
            c::REASON_INCOMPATIBLE_FILTERS,
            "a RequestRedirect filter may not be used together with backendRefs",
        ));
    }
    // A composition answers like a redirect: it needs, and takes, no backendRefs.
    if !backend_refs.is_empty() && composition_count(filters) > 0 {
        return Err(Problem::new(
            c::REASON_INCOMPATIBLE_FILTERS,
            "an HTTPComposition filter answers the request itself and may not be used together with backendRefs",
        ));
    }
    let translated = translate_filters(filters, &ctx, clusters)?;
    // GEP-1619: "Session persistence configuration specified in a route rule SHALL override
    // equivalent configuration in BackendLBPolicy" (now XBackendTrafficPolicy); "The
    // sessionPersistence configuration inline to RouteX route rule MUST take precedence".
    let rule_session = rule
        .session_persistence
        .as_ref()
        .map(|sp| session_persistence::translate(sp, SessionPersistenceIr::RULE).map(Box::new))
        .transpose()?;
    let mut unresolved = translated.unresolved;
    let mut backends = Vec::with_capacity(backend_refs.len());
    for b in backend_refs {
        // BackendRef weight: "If unspecified, weight defaults to 1."
        let weight = b.weight.unwrap_or(1).max(0).unsigned_abs();
        let rule_filters = b
            .filters
            .iter()
            .flatten()
            .map(from_backend_filter)
            .collect::<Result<Vec<_>, _>>()?;
        if composition_count(&rule_filters) > 0 {
            return Err(Problem::new(
                c::REASON_INCOMPATIBLE_FILTERS,
                "an HTTPComposition answers the request itself; reference it from the rule's filters, not a backendRef's",
            ));
        }
        let backend_filters = translate_filters(&rule_filters, &ctx, clusters)?;
        unresolved.extend(backend_filters.unresolved);
        let resolved = backend::resolve(
            store,
            referrer,
            BackendRef {
                group: b.group.as_deref(),
                kind: b.kind.as_deref(),
                name: &b.name,
                namespace: b.namespace.as_deref(),
                port: b.port,
            },
            clusters,
        );
        // HTTPRouteRule backendRefs: "the proportion of requests that would otherwise have
        // been routed to an invalid backend MUST receive a 500 status code": an invalid
        // backend keeps its weight with no cluster.
        let cluster = match (resolved, backend_filters.unsupported) {
            (Ok(name), None) => Some(name),
            (Ok(_), Some(p)) | (Err(p), _) => {
                unresolved.push(p);
                None
            }
        };
        // A policy's session persistence, for a rule that sets none. GEP-1619 leaves a split
        // between backends with and without it to the implementation; here it applies to the
        // backends whose Service has it (the GEP's third choice). A policy whose value is
        // invalid is not applied.
        let session_persistence = match (&rule_session, &cluster) {
            (None, Some(name)) => clusters
                .get(name)
                .and_then(|c| policy_session(store, &c.service))
                .and_then(|(policy, sp)| {
                    session_persistence::translate(&sp, &policy.to_string())
                        .ok()
                        .map(Box::new)
                }),
            _ => None,
        };
        backends.push(BackendIr {
            weight,
            cluster,
            filters: backend_filters.filters,
            session_persistence,
        });
    }
    let mut ir = HttpRuleIr {
        name: rule.name.clone(),
        filters: translated.filters,
        backends,
        timeouts,
        retry,
        grpc: false,
        session_persistence: rule_session,
    };
    if let Some(p) = translated.unsupported {
        // A filter the proxy cannot apply "MUST NOT be skipped. Instead, requests that
        // would have been processed by that filter MUST receive a HTTP error response": the
        // rule keeps its matches and answers 500 (no backends, no filters).
        unresolved.push(p);
        ir.filters.clear();
        ir.backends.clear();
        clusters.clear();
    }
    Ok((ir, matches, unresolved))
}
