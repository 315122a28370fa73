//! The attachment loop every route kind shares: a route's parentRefs resolved to our
//! listeners, `attachedRoutes` counted, the route placed on the listeners that serve it, and its
//! `status.parents[]` written.
//!
//! A route kind plugs in with [`RouteResource`] (kind, metadata, parentRefs) and by translating
//! its rules into a value that implements [`TranslatedKind`]; attachment, acceptance and status are the same for every kind (Gateway
//! API "Route status" and "ParentReference"), only placement differs.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

use super::assemble::Collected;
use super::conditions::{self as c, Problem};
use super::cross_serving::Exclusions;
use super::gateway::GatewayState;
use super::listener::ListenerState;
use super::parent_ref::{self, Attachment, ParentRef, RouteInfo, RouteResource};
use super::route_cache::{Interned, KindCache, Shared};
use super::{API_VERSION, generation_of};
use crate::ir::{ClusterIr, RouteRef};
use crate::status::{Condition, ObjectStatus, RouteParentStatus, RouteStatus, StatusBody};
use crate::store::{ObjectKey, Store, Translated};

/// What went wrong with a route's rules. Every kind reports the same way: dropped rules make
/// the route `PartiallyInvalid` (or not `Accepted` when none is left), unresolved references
/// make `ResolvedRefs` false.
#[derive(Clone, Debug, Default)]
pub struct RuleProblems {
    /// Rules that can be served.
    pub served: usize,
    /// Invalid rules, dropped, by index.
    pub dropped: Vec<(usize, Problem)>,
    /// References that did not resolve (`ResolvedRefs=False`).
    pub unresolved: Vec<Problem>,
    /// Backends of an L4 route whose BackendTLSPolicy cannot be used. They are unresolved only
    /// where the proxy would originate TLS to them: on every listener but a TLS `Passthrough`
    /// one, which forwards the client's own TLS and never originates any (GEP-1897, "How a
    /// client behaves": TLSRoute on a Passthrough listener, "Connect to backend with TLS? No").
    /// HTTPRoute and GRPCRoute always originate, so theirs go in `unresolved`.
    pub unresolved_when_originating: Vec<Problem>,
    /// A problem with the whole route (e.g. invalid hostnames).
    pub invalid: Option<Problem>,
}

impl RuleProblems {
    /// Why no parent can accept the route, if none can: the route itself is invalid or every
    /// rule was dropped ("A Route MUST be considered "Accepted" if at least one of the
    /// Route's rules is implemented by the Gateway").
    pub fn rejection(&self) -> Option<Problem> {
        if let Some(p) = &self.invalid {
            return Some(p.clone());
        }
        if self.served == 0 {
            let (_, first) = self.dropped.first()?;
            return Some(Problem::new(
                first.reason,
                format!("all rules are invalid: {}", self.describe_dropped()),
            ));
        }
        None
    }

    /// Gives back the room the lists grew into (kept between translations with the route).
    pub fn shrink_to_fit(&mut self) {
        self.dropped.shrink_to_fit();
        self.unresolved.shrink_to_fit();
        self.unresolved_when_originating.shrink_to_fit();
    }

    /// `PartiallyInvalid`: some rules served, some dropped. The message starts with
    /// "Dropped Rule" as RouteConditionPartiallyInvalid requires.
    pub fn partially_invalid(&self) -> Option<Problem> {
        (self.served > 0 && !self.dropped.is_empty()).then(|| {
            Problem::new(
                c::REASON_UNSUPPORTED_VALUE,
                format!("Dropped Rule(s): {}", self.describe_dropped()),
            )
        })
    }

    fn describe_dropped(&self) -> String {
        self.dropped
            .iter()
            .map(|(i, p)| format!("rule {i}: {}", p.message))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// `Accepted`, `ResolvedRefs` and, when rules were dropped, `PartiallyInvalid`, for a parent
    /// whose listeners `originate` TLS to backends that a BackendTLSPolicy covers (false only
    /// for a parent served on TLS `Passthrough` listeners alone).
    fn conditions(
        &self,
        accepted: Result<(), Problem>,
        generation: i64,
        originate: bool,
    ) -> Vec<Condition> {
        // Kept with the route between translations: sized exactly (a `vec!` of one would grow to
        // room for four on the first push).
        let partially_invalid = self.partially_invalid();
        let mut out = Vec::with_capacity(2 + usize::from(partially_invalid.is_some()));
        out.push(match accepted {
            Ok(()) => c::ok(
                c::ACCEPTED,
                c::REASON_ACCEPTED,
                "Route is accepted",
                generation,
            ),
            Err(p) => c::not_ok(c::ACCEPTED, &p, generation),
        });
        let mut unresolved: Vec<&Problem> = self.unresolved.iter().collect();
        if originate {
            unresolved.extend(&self.unresolved_when_originating);
        }
        out.push(match unresolved.first() {
            None => c::ok(
                c::RESOLVED_REFS,
                c::REASON_RESOLVED_REFS,
                "All references are resolved",
                generation,
            ),
            Some(first) => {
                let message = unresolved
                    .iter()
                    .map(|p| &*p.message)
                    .collect::<Vec<_>>()
                    .join("; ");
                c::not_ok(
                    c::RESOLVED_REFS,
                    &Problem::new(first.reason, message),
                    generation,
                )
            }
        });
        if let Some(p) = partially_invalid {
            out.push(Condition::new(
                c::PARTIALLY_INVALID,
                true,
                p.reason,
                p.message,
                generation,
            ));
        }
        out
    }
}

/// Where a route is placed: one programmed listener that serves it.
pub struct Placement<'a> {
    pub gateway: &'a ObjectKey,
    /// Index of the listener in the Gateway's `spec.listeners`.
    pub index: usize,
    pub listener: &'a ListenerState,
    pub route: &'a Arc<RouteRef>,
    /// The route's `metadata.creationTimestamp` (precedence ties go to the oldest route).
    pub created: Option<&'a Time>,
}

/// A route of some kind, with its rules translated once for every parent it attaches to.
pub trait TranslatedKind {
    /// `spec.hostnames`; empty matches every hostname (and kinds without hostnames, such as
    /// TCPRoute, return nothing).
    fn hostnames(&self) -> &[String];
    fn problems(&self) -> &RuleProblems;
    /// Clusters the served rules use.
    fn clusters(&self) -> &[Arc<ClusterIr>];
    /// The same, for the route cache to share them between routes.
    fn clusters_mut(&mut self) -> &mut [Arc<ClusterIr>];
    /// Clusters a TLS `Passthrough` listener uses besides those of [`Self::clusters`] that
    /// originate no TLS, when they differ: `None` when a passthrough listener uses
    /// [`Self::clusters`] as they are (see `l4_routes::Passthrough`).
    fn passthrough_clusters(&self) -> Option<&[Arc<ClusterIr>]> {
        None
    }
    /// Services the route's backends reference, usable or not (policies that target Services,
    /// such as BackendTLSPolicy, are relevant to the Gateways serving the route).
    fn services(&self) -> BTreeSet<ObjectKey> {
        self.clusters().iter().map(|c| c.service.clone()).collect()
    }
    /// Services the route's backends reference that do not exist (only XBackendTrafficPolicy
    /// and BackendConfigPolicy statuses read them: their `TargetNotFound`).
    fn missing_services(&self) -> BTreeSet<ObjectKey> {
        BTreeSet::new()
    }
    /// Adds the route to one listener that serves it.
    fn place(&self, collected: &mut Collected, at: &Placement<'_>);
}

/// One route of any kind, ready to attach.
struct RouteObject<'a> {
    kind: &'static str,
    key: &'a ObjectKey,
    meta: &'a ObjectMeta,
    parent_refs: Vec<ParentRef>,
}

/// What attaching one route produced. Remembered with the route's translated rules and
/// replayed as is while nothing it read besides the route changed (see `route_cache`).
#[derive(Debug)]
pub struct Attached {
    route: Arc<RouteRef>,
    /// `metadata.creationTimestamp` (precedence ties go to the oldest route).
    created: Option<Time>,
    /// Listeners the route attaches to (`attachedRoutes`), once each.
    attached: Vec<(Arc<ObjectKey>, usize)>,
    /// Listeners that serve the route, once each, in parentRef order.
    placed: Vec<(Arc<ObjectKey>, usize)>,
    /// The status of the parents that are ours, if any. Only the body is kept: the
    /// [`ObjectStatus`] around it is built from `route` when it is applied (the whole
    /// struct, sized for a Gateway's status, was two thirds of what an `Attached` held).
    status: Option<Arc<RouteStatus>>,
}

impl Attached {
    /// The route's status, when it has one.
    #[cfg(test)]
    pub(super) fn route_status(&self) -> Option<&Arc<RouteStatus>> {
        self.status.as_ref()
    }

    /// The Gateway keys of its listeners, attached and placed.
    #[cfg(test)]
    pub(super) fn gateway_keys(&self) -> impl Iterator<Item = &Arc<ObjectKey>> {
        (self.attached.iter().chain(&self.placed)).map(|(gateway, _)| gateway)
    }

    /// Slots allocated and not used in its lists (what `route_cache` keeps should have none).
    #[cfg(test)]
    pub(super) fn spare_capacity(&self) -> usize {
        let status = self.status.as_ref().map_or(0, |route| {
            route.parents.capacity() - route.parents.len()
                + route
                    .parents
                    .iter()
                    .map(|p| p.conditions.capacity() - p.conditions.len())
                    .sum::<usize>()
        });
        self.attached.capacity() - self.attached.len() + self.placed.capacity() - self.placed.len()
            + status
    }
}

/// Adds `(gateway, index)` to `list` unless it is there (a route reaching one listener through
/// two parentRefs is counted and served once).
fn push_once(
    list: &mut Vec<(Arc<ObjectKey>, usize)>,
    gateway: &ObjectKey,
    index: usize,
    gateways: &mut Interned<ObjectKey>,
) {
    if !list.iter().any(|(g, i)| *i == index && **g == *gateway) {
        list.push((gateways.share(Cow::Borrowed(gateway)), index));
    }
}

/// Attaches routes of every kind to the Gateways we serve and collects what they produce.
pub struct Attacher<'a> {
    store: &'a Store,
    controller_name: &'a Arc<str>,
    gateways: &'a BTreeMap<ObjectKey, GatewayState>,
    pub collected: Collected,
    /// Clusters of every route placed somewhere.
    pub clusters: BTreeMap<String, ClusterIr>,
    /// Route statuses, in the order routes were attached.
    pub statuses: Vec<ObjectStatus>,
    /// For each Service a placed route references, the Gateways it is placed on (through a
    /// listener other than a TLS `Passthrough` one).
    pub services: BTreeMap<ObjectKey, BTreeSet<ObjectKey>>,
    /// The same through TLS `Passthrough` listeners, where the client's own TLS reaches the
    /// backend and no BackendTLSPolicy applies.
    pub passthrough_services: BTreeMap<ObjectKey, BTreeSet<ObjectKey>>,
    /// The same for Services a placed route references that do not exist.
    pub missing_services: BTreeMap<ObjectKey, BTreeSet<ObjectKey>>,
    /// Routes attached to each listener of each Gateway, by listener index: a route counts
    /// once per listener.
    attached: BTreeMap<ObjectKey, BTreeMap<usize, i32>>,
    /// Listeners a route attaches to but is not served on, and why (cross serving).
    exclusions: Exclusions,
    /// See [`Attacher::replay_attachments`].
    replay: bool,
}

impl<'a> Attacher<'a> {
    pub fn new(
        store: &'a Store,
        controller_name: &'a Arc<str>,
        gateways: &'a BTreeMap<ObjectKey, GatewayState>,
    ) -> Self {
        Self {
            store,
            controller_name,
            gateways,
            collected: Collected::default(),
            clusters: BTreeMap::new(),
            statuses: Vec::new(),
            services: BTreeMap::new(),
            passthrough_services: BTreeMap::new(),
            missing_services: BTreeMap::new(),
            attached: BTreeMap::new(),
            exclusions: Exclusions::new(),
            replay: false,
        }
    }

    /// Routes that must not be served on some listeners although they attach there (an
    /// HTTPRoute and a GRPCRoute sharing a hostname). A parentRef none of whose listeners
    /// serves the route is not `Accepted`, with the exclusion's reason.
    pub fn exclude(&mut self, exclusions: Exclusions) {
        self.exclusions = exclusions;
    }

    /// Whether attachments remembered from the previous translation may be replayed: nothing
    /// an attachment reads besides its route changed (see `route_cache`).
    pub fn replay_attachments(&mut self, replay: bool) {
        self.replay = replay;
    }

    /// Translates every route of one kind with `translate` (store, route key, route), or
    /// takes its rules from `cache`, and attaches it.
    pub fn attach_all<R: RouteResource + Translated, T: TranslatedKind>(
        &mut self,
        routes: &BTreeMap<ObjectKey, Arc<R>>,
        cache: &mut KindCache<R, T>,
        translate: impl Fn(&Store, &ObjectKey, &R) -> T,
    ) {
        // At most one status per route.
        self.statuses.reserve(routes.len());
        for (key, route) in routes {
            let store = self.store;
            let cached = cache.get_or_translate(key, route, || translate(store, key, route));
            let attached = match cached.attached {
                Some(attached) if self.replay => attached,
                _ => {
                    let object = RouteObject {
                        kind: R::KIND,
                        key,
                        meta: route.meta(),
                        parent_refs: route.parent_refs(),
                    };
                    Arc::new(self.attach(&object, &*cached.translated, &mut cache.shared))
                }
            };
            self.apply(&attached, &*cached.translated);
            cache.remember_attached(attached);
        }
    }

    /// Resolves every parentRef of `route`: the listeners it attaches to, those that serve it,
    /// and its status (only for parents that are ours: "Implementations of this API can only
    /// populate Route status for the Gateways/parent resources they are responsible for").
    fn attach(
        &self,
        route: &RouteObject<'_>,
        translated: &impl TranslatedKind,
        shared: &mut Shared,
    ) -> Attached {
        let problems = translated.problems();
        let info = RouteInfo {
            kind: route.kind,
            namespace: &route.key.namespace,
            hostnames: translated.hostnames(),
        };
        let generation = generation_of(route.meta);
        let rejection = problems.rejection();
        // Kept between translations (`route_cache`): sized for the route, not by doubling.
        let mut parents = Vec::with_capacity(route.parent_refs.len());
        let mut placed = Vec::with_capacity(route.parent_refs.len());
        let mut attached_to = Vec::with_capacity(route.parent_refs.len());
        for parent in &route.parent_refs {
            // Whether this parent's listeners would originate TLS to a covered backend: all
            // but a parent served on TLS Passthrough listeners only.
            let mut originate = true;
            let accepted = match parent_ref::attach(self.store, self.gateways, &info, parent) {
                Attachment::NotOurs => continue,
                Attachment::Rejected(problem) => Err(problem),
                Attachment::Attached {
                    gateway,
                    attached,
                    served,
                    problem,
                } => {
                    for index in attached {
                        push_once(&mut attached_to, &gateway, index, &mut shared.gateways);
                    }
                    let (served, excluded) = self.without_exclusions(&gateway, served, route);
                    originate = served.is_empty()
                        || !served
                            .iter()
                            .all(|&index| self.is_tls_passthrough(&gateway, index));
                    let problem = problem
                        .or_else(|| rejection.clone())
                        .or_else(|| served.is_empty().then_some(excluded).flatten());
                    match problem {
                        Some(p) => Err(p),
                        None => {
                            for index in served {
                                push_once(&mut placed, &gateway, index, &mut shared.gateways);
                            }
                            Ok(())
                        }
                    }
                }
            };
            parents.push(RouteParentStatus {
                parent_ref: shared.parent_refs.share(Cow::Owned(parent.echo())),
                controller_name: self.controller_name.clone(),
                conditions: problems.conditions(accepted, generation, originate),
            });
        }
        parents.shrink_to_fit();
        placed.shrink_to_fit();
        attached_to.shrink_to_fit();
        Attached {
            route: Arc::new(RouteRef {
                kind: Cow::Borrowed(route.kind),
                namespace: route.key.namespace.clone(),
                name: route.key.name.clone(),
            }),
            created: route.meta.creation_timestamp.clone(),
            attached: attached_to,
            placed,
            status: (!parents.is_empty()).then(|| Arc::new(RouteStatus { parents })),
        }
    }

    /// Adds what attaching a route produced: counts, placements, clusters and status.
    fn apply(&mut self, attached: &Attached, translated: &impl TranslatedKind) {
        for (gateway, index) in &attached.attached {
            self.count_attached(gateway, *index);
        }
        for (gateway, index) in &attached.placed {
            self.place(gateway, *index, attached, translated);
        }
        let placed = !attached.placed.is_empty();
        let (mut on_passthrough, mut elsewhere) = (false, false);
        for (gateway, index) in &attached.placed {
            if self.is_tls_passthrough(gateway, *index) {
                on_passthrough = true;
            } else {
                elsewhere = true;
            }
        }
        // Only policy statuses (BackendTLSPolicy, XBackendTrafficPolicy, BackendConfigPolicy)
        // read which Gateways use a Service; the last two also show a target that names a
        // missing Service.
        let traffic_policies = !self.store.backend_traffic_policies.is_empty()
            || !self.store.backend_config_policies.is_empty();
        if placed && (!self.store.backend_tls_policies.is_empty() || traffic_policies) {
            let services = translated.services();
            for (gateway, index) in &attached.placed {
                let uses = if self.is_tls_passthrough(gateway, *index) {
                    &mut self.passthrough_services
                } else {
                    &mut self.services
                };
                for service in &services {
                    match uses.get_mut(service) {
                        Some(gateways) => {
                            if !gateways.contains(gateway) {
                                gateways.insert((**gateway).clone());
                            }
                        }
                        None => {
                            uses.insert(service.clone(), BTreeSet::from([(**gateway).clone()]));
                        }
                    }
                }
            }
            if traffic_policies {
                let gateways = || {
                    attached
                        .placed
                        .iter()
                        .map(|(gateway, _)| (**gateway).clone())
                };
                for service in translated.missing_services() {
                    self.missing_services
                        .entry(service)
                        .or_default()
                        .extend(gateways());
                }
            }
        }
        if placed {
            // Many routes share a cluster: copy it only when it is new or differs (the last
            // route's wins).
            // Only the clusters the listeners it is placed on use.
            let (clusters, passthrough) = match translated.passthrough_clusters() {
                None => (translated.clusters(), &[][..]),
                Some(passthrough) => (
                    if elsewhere {
                        translated.clusters()
                    } else {
                        &[]
                    },
                    if on_passthrough { passthrough } else { &[] },
                ),
            };
            for cluster in clusters.iter().chain(passthrough) {
                match self.clusters.get_mut(&cluster.name) {
                    Some(existing) if existing == &**cluster => {}
                    Some(existing) => existing.clone_from(cluster),
                    None => {
                        self.clusters
                            .insert(cluster.name.clone(), ClusterIr::clone(cluster));
                    }
                }
            }
        }
        if let Some(status) = &attached.status {
            self.statuses.push(ObjectStatus {
                api_version: API_VERSION.into(),
                kind: attached.route.kind.clone(),
                namespace: attached.route.namespace.clone(),
                name: attached.route.name.clone(),
                status: StatusBody::Route(status.clone()),
            });
        }
    }

    /// The listeners of `served` the route may be served on, and the first exclusion's
    /// problem, if any listener was excluded.
    fn without_exclusions(
        &self,
        gateway: &ObjectKey,
        served: Vec<usize>,
        route: &RouteObject<'_>,
    ) -> (Vec<usize>, Option<Problem>) {
        if self.exclusions.is_empty() {
            return (served, None);
        }
        let mut excluded = None;
        let kept = served
            .into_iter()
            .filter(|&index| {
                let key = (gateway.clone(), index, route.kind, route.key.clone());
                match self.exclusions.get(&key) {
                    Some(p) => {
                        excluded.get_or_insert_with(|| p.clone());
                        false
                    }
                    None => true,
                }
            })
            .collect();
        (kept, excluded)
    }

    fn place(
        &mut self,
        gateway: &ObjectKey,
        index: usize,
        attached: &Attached,
        translated: &impl TranslatedKind,
    ) {
        let Some(listener) = self
            .gateways
            .get(gateway)
            .and_then(|g| g.listeners.get(index))
        else {
            return;
        };
        let at = Placement {
            gateway,
            index,
            listener,
            route: &attached.route,
            created: attached.created.as_ref(),
        };
        translated.place(&mut self.collected, &at);
    }

    /// Whether listener `index` of `gateway` is a TLS `Passthrough` listener.
    fn is_tls_passthrough(&self, gateway: &ObjectKey, index: usize) -> bool {
        self.gateways
            .get(gateway)
            .and_then(|g| g.listeners.get(index))
            .is_some_and(ListenerState::is_tls_passthrough)
    }

    fn count_attached(&mut self, gateway: &ObjectKey, index: usize) {
        let listeners = match self.attached.get_mut(gateway) {
            Some(listeners) => listeners,
            None => self.attached.entry(gateway.clone()).or_default(),
        };
        *listeners.entry(index).or_insert(0) += 1;
    }

    /// Routes attached to each listener, for `status.listeners[].attachedRoutes`.
    pub fn attached_counts(&self) -> BTreeMap<(ObjectKey, usize), i32> {
        self.attached
            .iter()
            .flat_map(|(gateway, listeners)| {
                listeners
                    .iter()
                    .map(move |(index, count)| ((gateway.clone(), *index), *count))
            })
            .collect()
    }
}
