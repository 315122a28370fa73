//! Translated route rules kept from one translation to the next, so that a change of a few
//! routes re-translates only those routes.
//!
//! What a route's rules translate to ([`super::http_route::translate_route`] and the other
//! kinds, BackendTLSPolicy applied) depends on the route and on the objects its rules read:
//! Services, ReferenceGrants, BackendTLSPolicies with their ConfigMaps and Secrets, and our
//! Gateways and GatewayClasses (a Gateway's backend client certificate). EndpointSlices are not
//! among them: clusters are translated without endpoints, which are read once per translation
//! for the clusters in use ([`super::backend::refresh_endpoints`]); nor are
//! BackendConfigPolicies, whose settings are put on those clusters afterwards.
//!
//! So an entry is reused while its route is unchanged (the same object, or one differing only in
//! status and versions) and none of those kinds changed since the previous translation; any
//! change to them drops every entry. Routes change far more often than the objects they read,
//! and a translation from an empty cache is exactly the translation without one.
//!
//! With the rules, each entry keeps what attaching the route produced (listeners, placement,
//! status: [`Attached`]). That is replayed when, besides the above, the Namespaces (their labels
//! select routes) and the listeners excluded by cross serving (which depend on the other
//! routes) are unchanged too. The status is shared with the translation's statuses, whose
//! stamping sets its times in place ([`crate::status::stamp::stamp`]): the status in use and
//! the one replayed are one, not two of about 600 bytes per route.
//!
//! Routes that use the same cluster (the same Service port, translated the same way) share
//! one [`ClusterIr`]: each route translated is given the cluster an earlier one made, when it
//! is equal. The shared clusters are kept as long as the entries are, and dropped with them.
//! So are the parentRefs route statuses echo and the Gateway keys attachments hold
//! ([`Interned`]): thousands of routes name the same Gateway.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::sync::Arc;

use gantry_crds::gateway::experimental::tcproutes::TcpRoute;
use gantry_crds::gateway::experimental::udproutes::UdpRoute;
use gantry_crds::gateway::grpcroutes::GrpcRoute;
use gantry_crds::gateway::httproutes::HttpRoute;
use gantry_crds::gateway::tlsroutes::TlsRoute;

use super::cross_serving::Exclusions;
use super::http_route::TranslatedRoute;
use super::l4_routes::TranslatedL4Route;
use super::routes::{Attached, TranslatedKind};
use crate::ir::ClusterIr;
use crate::status::ParentReference;
use crate::store::{ObjectKey, Store, Translated};

/// The translated rules and attachments of every route of the previous translation.
#[derive(Debug, Default)]
pub struct RouteCache {
    /// The store the entries were translated from.
    inputs: Option<Arc<Store>>,
    pub(super) http: KindCache<HttpRoute, TranslatedRoute>,
    pub(super) grpc: KindCache<GrpcRoute, TranslatedRoute>,
    pub(super) tls: KindCache<TlsRoute, TranslatedL4Route>,
    pub(super) tcp: KindCache<TcpRoute, TranslatedL4Route>,
    pub(super) udp: KindCache<UdpRoute, TranslatedL4Route>,
    /// Routes translated and reused by the last translation.
    stats: CacheStats,
    /// Whether this translation's Namespaces and rule inputs are those of the previous one
    /// (what attachments read, besides their routes and the exclusions).
    namespaces_same: bool,
    /// Cross-serving exclusions of the previous translation.
    exclusions: Exclusions,
}

/// How much of the last translation came from the cache.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub translated: usize,
    pub reused: usize,
}

impl RouteCache {
    /// Prepares a translation of `store`: keeps the entries when the objects route rules read
    /// are the same as in the store they were made from, else drops them all.
    pub(super) fn begin(&mut self, store: &Arc<Store>) {
        let keep = self
            .inputs
            .as_ref()
            .is_some_and(|previous| previous.same_rule_inputs(store));
        self.namespaces_same = keep
            && self
                .inputs
                .as_ref()
                .is_some_and(|previous| previous.same_namespaces(store));
        if !keep {
            self.http.clear();
            self.grpc.clear();
            self.tls.clear();
            self.tcp.clear();
            self.udp.clear();
        }
        self.inputs = Some(store.clone());
        self.stats = CacheStats::default();
    }

    /// Ends a translation: entries of routes it did not see are dropped.
    pub(super) fn finish(&mut self) {
        let mut stats = CacheStats::default();
        for (translated, reused) in [
            self.http.finish(),
            self.grpc.finish(),
            self.tls.finish(),
            self.tcp.finish(),
            self.udp.finish(),
        ] {
            stats.translated += translated;
            stats.reused += reused;
        }
        self.stats = stats;
    }

    /// Whether remembered attachments may be replayed in this translation, whose cross-serving
    /// exclusions are `exclusions`.
    pub(super) fn replay_attachments(&mut self, exclusions: &Exclusions) -> bool {
        let same = self.namespaces_same && self.exclusions == *exclusions;
        if !same {
            self.exclusions.clone_from(exclusions);
        }
        same
    }

    /// What the last translation translated and reused.
    pub fn stats(&self) -> CacheStats {
        self.stats
    }
}

/// Gives each of `clusters` the equal one of `shared` when there is one, and adds the others
/// to `shared`. A cluster that differs from the shared one of its name (which the inputs do
/// not make, but nothing relies on that) keeps its own.
fn share_clusters(shared: &mut HashMap<String, Arc<ClusterIr>>, clusters: &mut [Arc<ClusterIr>]) {
    for cluster in clusters {
        match shared.get(cluster.name.as_str()) {
            Some(same) if **same == **cluster => *cluster = same.clone(),
            Some(_) => {}
            None => {
                shared.insert(cluster.name.clone(), cluster.clone());
            }
        }
    }
}

/// The entries of one route kind, sorted by route key.
///
/// Routes are translated in key order (the store's maps are sorted), so the previous entries
/// are walked alongside them: no hashing, and a reused entry's key is moved, not copied.
#[derive(Debug)]
pub(super) struct KindCache<R, T> {
    /// From the previous translation; those before `next` were passed.
    previous: Vec<Entry<R, T>>,
    next: usize,
    /// Of this translation so far.
    current: Vec<Entry<R, T>>,
    translated: usize,
    /// The clusters of the entries, by name: a route translated again is given these rather
    /// than keeping copies of its own (5,000 routes to one Service keep one cluster, not
    /// 5,000 of about 250 bytes each).
    clusters: HashMap<String, Arc<ClusterIr>>,
    /// Values the entries' attachments hold, shared likewise.
    pub(super) shared: Shared,
}

/// Values that the attachments of many routes hold equal copies of, one of each shared by
/// them all: thousands of routes name the same Gateway. Kept as long as an entry uses it.
#[derive(Debug, Default)]
pub(super) struct Shared {
    /// The parentRefs route statuses echo (each 128 bytes and its strings).
    pub parent_refs: Interned<ParentReference>,
    /// The keys of the Gateways routes attach to (each 48 bytes and its two strings).
    pub gateways: Interned<ObjectKey>,
}

impl Shared {
    fn retain_used(&mut self) {
        self.parent_refs.retain_used();
        self.gateways.retain_used();
    }

    fn clear(&mut self) {
        self.parent_refs.0.clear();
        self.gateways.0.clear();
    }
}

/// One `Arc` for every equal value.
#[derive(Debug)]
pub(super) struct Interned<T>(HashSet<Arc<T>>);

impl<T> Default for Interned<T> {
    fn default() -> Self {
        Self(HashSet::new())
    }
}

impl<T: Hash + Eq + Clone> Interned<T> {
    /// The shared value equal to `value`; a borrowed one is copied only when none is.
    pub fn share(&mut self, value: Cow<'_, T>) -> Arc<T> {
        if let Some(shared) = self.0.get(&*value) {
            return shared.clone();
        }
        let shared = Arc::new(value.into_owned());
        self.0.insert(shared.clone());
        shared
    }

    /// Forgets those no entry uses any more.
    fn retain_used(&mut self) {
        self.0.retain(|shared| Arc::strong_count(shared) > 1);
    }
}

#[derive(Debug)]
struct Entry<R, T> {
    key: ObjectKey,
    route: Arc<R>,
    translated: Arc<T>,
    attached: Option<Arc<Attached>>,
}

/// A route's translated rules, and its attachment when the rules were reused.
pub(super) struct Cached<T> {
    pub translated: Arc<T>,
    pub attached: Option<Arc<Attached>>,
}

impl<R, T> Default for KindCache<R, T> {
    fn default() -> Self {
        Self {
            previous: Vec::new(),
            next: 0,
            current: Vec::new(),
            translated: 0,
            clusters: HashMap::new(),
            shared: Shared::default(),
        }
    }
}

impl<R: Translated, T: TranslatedKind> KindCache<R, T> {
    /// The translation of `route`: the previous one (with its attachment) when the route is
    /// unchanged, else `translate()`. Routes must come in key order, and each must be followed
    /// by [`KindCache::remember_attached`].
    pub(super) fn get_or_translate(
        &mut self,
        key: &ObjectKey,
        route: &Arc<R>,
        translate: impl FnOnce() -> T,
    ) -> Cached<T> {
        debug_assert!(self.current.last().is_none_or(|last| last.key < *key));
        while self
            .previous
            .get(self.next)
            .is_some_and(|entry| entry.key < *key)
        {
            self.next += 1;
        }
        let reusable = self.previous.get_mut(self.next).filter(|entry| {
            entry.key == *key && (Arc::ptr_eq(&entry.route, route) || entry.route.same_input(route))
        });
        let entry = match reusable {
            Some(entry) => {
                self.next += 1;
                Entry {
                    key: std::mem::take(&mut entry.key),
                    route: route.clone(),
                    translated: entry.translated.clone(),
                    attached: entry.attached.take(),
                }
            }
            None => {
                self.translated += 1;
                let mut translated = translate();
                share_clusters(&mut self.clusters, translated.clusters_mut());
                Entry {
                    key: key.clone(),
                    route: route.clone(),
                    translated: Arc::new(translated),
                    attached: None,
                }
            }
        };
        let cached = Cached {
            translated: entry.translated.clone(),
            attached: entry.attached.clone(),
        };
        if self.current.capacity() == 0 {
            // The list is kept until the next translation: room for the routes of the last
            // one and a new one, rather than doubling into up to twice that.
            self.current.reserve_exact(self.previous.len() + 1);
        }
        self.current.push(entry);
        cached
    }

    /// Remembers the attachment of the route last returned by
    /// [`KindCache::get_or_translate`].
    pub(super) fn remember_attached(&mut self, attached: Arc<Attached>) {
        if let Some(entry) = self.current.last_mut() {
            entry.attached = Some(attached);
        }
    }

    fn clear(&mut self) {
        self.previous.clear();
        self.current.clear();
        self.clusters.clear();
        self.shared.clear();
        self.next = 0;
    }

    /// `(translated, reused)` by this translation; what it did not see is dropped.
    fn finish(&mut self) -> (usize, usize) {
        self.previous = std::mem::take(&mut self.current);
        // The first translation has no previous count to size the list by, and doubled it
        // into up to twice the routes (about 45 bytes a route kept at 5,000 routes); later
        // ones reserve the last count and one more.
        if self.previous.capacity() - self.previous.len() > self.previous.len() / 8 {
            self.previous.shrink_to_fit();
        }
        self.next = 0;
        // Those no entry uses any more.
        self.clusters
            .retain(|_, cluster| Arc::strong_count(cluster) > 1);
        self.shared.retain_used();
        let translated = std::mem::take(&mut self.translated);
        (translated, self.previous.len() - translated)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{TranslateOptions, Translator, translate};
    use super::*;
    use crate::status::{ObjectStatus, RouteStatus, StatusBody};
    use crate::store::load::load_store;

    const BASE: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: gantry}
spec: {controllerName: gantry.dev/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: default}
spec:
  gatewayClassName: gantry
  listeners:
  - {name: http, port: 80, protocol: HTTP, allowedRoutes: {namespaces: {from: All}}}
  - {name: tcp, port: 9000, protocol: TCP, allowedRoutes: {namespaces: {from: All}}}
  - name: team-a
    port: 81
    protocol: HTTP
    allowedRoutes: {namespaces: {from: Selector, selector: {matchLabels: {team: a}}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r4, namespace: other}
spec:
  parentRefs: [{name: gw, namespace: default, sectionName: team-a}]
  rules: [{backendRefs: [{name: a, namespace: default, port: 80}]}]
---
apiVersion: v1
kind: Service
metadata: {name: a, namespace: default}
spec: {ports: [{name: http, port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: b, namespace: backends}
spec: {ports: [{name: http, port: 80}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: a-1
  namespace: default
  labels: {kubernetes.io/service-name: a}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints: [{addresses: [10.0.0.1]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r2, namespace: default}
spec:
  parentRefs: [{name: gw, sectionName: http}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /b}}]
    backendRefs: [{name: b, namespace: backends, port: 80}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r3, namespace: default}
spec:
  parentRefs: [{name: gw, sectionName: http}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /c}}]
    backendRefs: [{name: c, port: 80}]
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata: {name: t, namespace: default}
spec:
  parentRefs: [{name: gw, sectionName: tcp}]
  rules: [{backendRefs: [{name: a, port: 80}]}]
"#;

    const R1: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r1, namespace: default}
spec:
  parentRefs: [{name: gw, sectionName: http}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /a}}]
    backendRefs: [{name: a, port: 80}]
"#;

    const GRANT: &str = r#"
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {name: allow, namespace: backends}
spec:
  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: default}]
  to: [{group: "", kind: Service}]
"#;

    const SERVICE_C: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: c, namespace: default}
spec: {ports: [{name: http, port: 80}]}
"#;

    const TEAM_A: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: other, labels: {team: a}}
"#;

    const GRPC: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: g, namespace: default}
spec:
  parentRefs: [{name: gw, sectionName: http}]
  rules: [{backendRefs: [{name: a, port: 80}]}]
"#;

    /// Translates `documents` with `translator` and from scratch, checks both agree, and
    /// returns what the translator translated and reused.
    fn step(translator: &mut Translator, documents: &[&str]) -> (usize, usize) {
        let (store, issues) = load_store(
            documents
                .iter()
                .enumerate()
                .map(|(i, d)| (format!("doc-{i}.yaml"), *d)),
        )
        .unwrap();
        assert!(issues.is_empty(), "{issues:?}");
        let store = Arc::new(store);
        let warm = translator.translate(&store);
        assert_eq!(warm, translate(&store, &TranslateOptions::default()));
        let stats = translator.stats();
        (stats.translated, stats.reused)
    }

    /// The cache is kept for every route between translations: what it holds is sized to
    /// fit, with no room left from growing lists (about a kilobyte per route otherwise).
    #[test]
    fn cached_routes_keep_no_spare_capacity() {
        let mut t = Translator::new(TranslateOptions::default());
        let two_matches = R1.replace(
            "matches: [{path: {type: PathPrefix, value: /a}}]",
            "matches: [{path: {type: PathPrefix, value: /a}}, {path: {type: Exact, value: /x}}]",
        );
        let base = BASE.replace("sectionName: http}]", "}]");
        step(&mut t, &[&base, &two_matches, GRANT, GRPC]);
        let cache = &t.cache;
        assert_eq!(cache.http.previous.len(), 4);
        assert_eq!(cache.grpc.previous.len(), 1);
        let spare = cache
            .http
            .previous
            .iter()
            .map(|e| (&e.key, &e.translated, &e.attached))
            .chain(
                cache
                    .grpc
                    .previous
                    .iter()
                    .map(|e| (&e.key, &e.translated, &e.attached)),
            );
        for (key, translated, attached) in spare {
            assert_eq!(translated.spare_capacity(), 0, "{key:?}");
            let attached = attached.as_ref().expect("attached");
            assert_eq!(attached.spare_capacity(), 0, "{key:?}");
        }
        // A route added after the first translation: the list of entries is sized for it.
        step(&mut t, &[&base, &two_matches, GRANT, GRPC, SERVICE_C]);
        let extra = R1.replace("name: r1,", "name: r5,");
        step(
            &mut t,
            &[&base, &two_matches, GRANT, GRPC, SERVICE_C, &extra],
        );
        let http = &t.cache.http.previous;
        assert_eq!((http.len(), http.capacity()), (5, 5));
        // The same routes in a first translation, which has no count to size the list by:
        // no room is left from doubling it (8 slots for 5).
        let mut first = Translator::new(TranslateOptions::default());
        step(
            &mut first,
            &[&base, &two_matches, GRANT, GRPC, SERVICE_C, &extra],
        );
        let http = &first.cache.http.previous;
        assert_eq!((http.len(), http.capacity()), (5, 5));
    }

    /// The route statuses of `statuses`, each with its route's name.
    fn route_statuses(statuses: &[ObjectStatus]) -> Vec<(&str, &Arc<RouteStatus>)> {
        statuses
            .iter()
            .filter_map(|o| match &o.status {
                StatusBody::Route(s) => Some((o.name.as_str(), s)),
                _ => None,
            })
            .collect()
    }

    /// The cache and the stamped statuses in use share each route's status (stamping sets
    /// the times in place); the next translation replays it, times included, and stamping it
    /// again copies nothing. A route whose status changes gets a new one, shared in turn.
    #[test]
    fn the_cache_keeps_the_stamped_status_not_a_second_copy() {
        use crate::status::stamp::stamp;
        let mut t = Translator::new(TranslateOptions::default());
        step(&mut t, &[BASE, R1, GRANT]);
        let store = |documents: &[&str]| {
            let docs = documents
                .iter()
                .enumerate()
                .map(|(i, d)| (format!("d{i}"), *d));
            Arc::new(load_store(docs).unwrap().0)
        };
        let mut in_use = t.translate(&store(&[BASE, R1, GRANT])).statuses;
        stamp(&[], &mut in_use, "T1");
        // How many route statuses of `statuses` the cache holds too (not a copy of).
        let shared = |t: &Translator, statuses: &[ObjectStatus]| {
            let cached: Vec<&Arc<RouteStatus>> = (t.cache.http.previous.iter())
                .filter_map(|e| e.attached.as_ref()?.route_status())
                .chain(
                    (t.cache.tcp.previous.iter())
                        .filter_map(|e| e.attached.as_ref()?.route_status()),
                )
                .collect();
            let routes = route_statuses(statuses);
            assert_eq!((routes.len(), cached.len()), (5, 5));
            routes
                .iter()
                .filter(|(_, s)| cached.iter().any(|c| Arc::ptr_eq(c, s)))
                .count()
        };
        assert_eq!(shared(&t, &in_use), 5);
        let replayed = t.translate(&store(&[BASE, R1, GRANT])).statuses;
        for (name, status) in route_statuses(&replayed) {
            let time = status.parents[0].conditions[0]
                .last_transition_time
                .as_deref();
            assert_eq!(time, Some("T1"), "{name}");
        }
        let mut next = replayed;
        stamp(&in_use, &mut next, "T2");
        for ((name, a), (_, b)) in route_statuses(&in_use)
            .into_iter()
            .zip(route_statuses(&next))
        {
            assert!(Arc::ptr_eq(a, b), "{name} was copied");
        }
        // r1's backend becomes a Service that does not exist: its ResolvedRefs flips, so its
        // status is new, and stamped in place.
        let edited = R1.replace("name: a, port: 80", "name: missing, port: 80");
        let mut changed = t.translate(&store(&[BASE, &edited, GRANT])).statuses;
        stamp(&next, &mut changed, "T3");
        assert_eq!(shared(&t, &changed), 5);
        let r1 = route_statuses(&changed)
            .into_iter()
            .find(|(n, _)| *n == "r1")
            .unwrap()
            .1;
        let resolved = &r1.parents[0].conditions[1];
        assert_eq!(
            (&*resolved.status, resolved.last_transition_time.as_deref()),
            ("False", Some("T3"))
        );
    }

    /// Every cached HTTPRoute's clusters are the shared ones, and every shared one is used.
    /// Returns the shared clusters' names.
    fn clusters_shared(t: &Translator) -> Vec<String> {
        let http = &t.cache.http;
        for entry in &http.previous {
            for cluster in &entry.translated.clusters {
                let shared = http.clusters.get(&cluster.name).expect("shared");
                assert!(
                    Arc::ptr_eq(cluster, shared),
                    "{:?}: {}",
                    entry.key,
                    cluster.name
                );
            }
        }
        let mut names: Vec<String> = http.clusters.keys().cloned().collect();
        for name in &names {
            let users = (http.previous.iter())
                .filter(|e| e.translated.clusters.iter().any(|c| c.name == *name))
                .count();
            assert!(users > 0, "{name} is kept but no route uses it");
        }
        names.sort();
        names
    }

    /// Routes to the same Service port share one cluster, whether they were translated in
    /// the same translation or a later one; a cluster no route uses is not kept.
    #[test]
    fn routes_to_one_service_share_its_cluster() {
        let mut t = Translator::new(TranslateOptions::default());
        step(&mut t, &[BASE, R1, GRANT]);
        let names = clusters_shared(&t);
        assert!(names.contains(&"default/a:80".to_owned()), "{names:?}");
        let users_of_a = |t: &Translator| {
            (t.cache.http.previous.iter())
                .filter(|e| {
                    e.translated
                        .clusters
                        .iter()
                        .any(|c| c.name == "default/a:80")
                })
                .count()
        };
        // r1 (r4, in another namespace, has no ReferenceGrant to it).
        assert_eq!(users_of_a(&t), 1);
        // A route added later is given the same cluster.
        let r5 = R1
            .replace("name: r1,", "name: r5,")
            .replace("value: /a", "value: /a5");
        assert_eq!(
            step(&mut t, &[BASE, R1, GRANT, &r5]).0,
            1,
            "r5 alone translated"
        );
        clusters_shared(&t);
        assert_eq!(users_of_a(&t), 2);
        let shared_a = |t: &Translator| {
            let users: Vec<&Arc<ClusterIr>> = (t.cache.http.previous.iter())
                .flat_map(|e| e.translated.clusters.iter())
                .filter(|c| c.name == "default/a:80")
                .collect();
            users.windows(2).all(|w| Arc::ptr_eq(w[0], w[1]))
        };
        assert!(shared_a(&t), "r1 and r5 hold copies");
        // r5 moves to Service c; then r1 does too, and no route uses default/a:80.
        let to_c = |r: &str| r.replace("name: a, port: 80", "name: c, port: 80");
        step(&mut t, &[BASE, R1, GRANT, &to_c(&r5), SERVICE_C]);
        assert_eq!(users_of_a(&t), 1);
        let names = clusters_shared(&t);
        assert!(names.contains(&"default/c:80".to_owned()), "{names:?}");
        step(&mut t, &[BASE, &to_c(R1), GRANT, &to_c(&r5), SERVICE_C]);
        assert_eq!(users_of_a(&t), 0);
        assert!(!clusters_shared(&t).contains(&"default/a:80".to_owned()));
    }

    /// Route statuses that echo equal parentRefs share one, whether the routes were attached
    /// in the same translation or a later one; one no status uses any more is not kept. The
    /// keys of the Gateways routes attach to are shared likewise.
    #[test]
    fn equal_parent_refs_and_gateway_keys_are_shared() {
        let echoes = |t: &Translator, section: &str| -> Vec<Arc<ParentReference>> {
            (t.cache.http.previous.iter())
                .filter_map(|e| e.attached.as_ref()?.route_status())
                .flat_map(|s| s.parents.iter().map(|p| p.parent_ref.clone()))
                .filter(|r| r.name == "gw" && r.namespace.is_none())
                .filter(|r| r.section_name.as_deref() == Some(section))
                .collect()
        };
        let kept = |t: &Translator, section: &str| {
            (t.cache.http.shared.parent_refs.0.iter())
                .filter(|r| r.namespace.is_none() && r.section_name.as_deref() == Some(section))
                .count()
        };
        let mut t = Translator::new(TranslateOptions::default());
        step(&mut t, &[BASE, R1, GRANT]);
        let r5 = R1
            .replace("name: r1,", "name: r5,")
            .replace("value: /a", "value: /a5");
        assert_eq!(step(&mut t, &[BASE, R1, GRANT, &r5]).0, 1, "r5 alone");
        // r1, r2, r3 and r5 name `gw`'s listener `http`.
        let http = echoes(&t, "http");
        assert_eq!(http.len(), 4, "{http:?}");
        assert!(
            http.windows(2).all(|w| Arc::ptr_eq(&w[0], &w[1])),
            "statuses hold copies"
        );
        assert_eq!(kept(&t, "http"), 1);
        drop(http);
        let gateway_keys: Vec<&Arc<ObjectKey>> = (t.cache.http.previous.iter())
            .filter_map(|e| e.attached.as_ref())
            .flat_map(|a| a.gateway_keys())
            .collect();
        assert!(gateway_keys.len() >= 4, "{gateway_keys:?}");
        assert!(
            gateway_keys.windows(2).all(|w| Arc::ptr_eq(w[0], w[1])),
            "attachments hold copies of the Gateway's key"
        );
        assert_eq!(t.cache.http.shared.gateways.0.len(), 1);
        // Every route moves to the listener `team-a`: the echo of `http` is not kept.
        let moved = |r: &str| r.replace("sectionName: http}", "sectionName: team-a}");
        step(&mut t, &[&moved(BASE), &moved(R1), GRANT, &moved(&r5)]);
        assert!(echoes(&t, "http").is_empty());
        assert_eq!(kept(&t, "http"), 0);
        let team_a = echoes(&t, "team-a");
        assert_eq!(team_a.len(), 4, "{team_a:?}");
        assert!(team_a.windows(2).all(|w| Arc::ptr_eq(&w[0], &w[1])));
    }

    #[test]
    fn only_changed_routes_are_translated_again_and_the_result_is_a_full_translation() {
        let mut t = Translator::new(TranslateOptions::default());
        assert_eq!(step(&mut t, &[BASE, R1, GRANT]), (5, 0));
        // An edited route.
        let r1_edited = R1.replace("value: /a", "value: /a2");
        assert_eq!(step(&mut t, &[BASE, &r1_edited, GRANT]), (1, 4));
        // A new endpoint: no route translated, the cluster's endpoints read again.
        let more = BASE.replace("[10.0.0.1]", "[10.0.0.1, 10.0.0.2]");
        assert_eq!(step(&mut t, &[&more, &r1_edited, GRANT]), (0, 5));
        // Namespace labels: r4 now attaches to the listener selecting team a (rules reused,
        // attachments not).
        assert_eq!(step(&mut t, &[&more, &r1_edited, GRANT, TEAM_A]), (0, 5));
        // A GRPCRoute overlapping the HTTPRoutes on one listener: cross serving excludes some.
        assert_eq!(
            step(&mut t, &[&more, &r1_edited, GRANT, TEAM_A, GRPC]),
            (1, 5)
        );
        assert_eq!(step(&mut t, &[&more, &r1_edited, GRANT, TEAM_A]), (0, 5));
        // A Service created: route rules read Services, so all are translated again (r3's
        // backend resolves now).
        let all = [&more, &r1_edited, GRANT, TEAM_A, SERVICE_C];
        assert_eq!(step(&mut t, &all), (5, 0));
        // The ReferenceGrant removed: r2's backend is no longer permitted.
        assert_eq!(
            step(&mut t, &[&more, &r1_edited, TEAM_A, SERVICE_C]),
            (5, 0)
        );
        // A route deleted, another added back.
        assert_eq!(step(&mut t, &[&more, TEAM_A, SERVICE_C]), (0, 4));
        assert_eq!(step(&mut t, &[&more, R1, TEAM_A, SERVICE_C]), (1, 4));
    }
}
