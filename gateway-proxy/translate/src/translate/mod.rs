//! The translator: object store in, routing IR and statuses out.
//!
//! Invariant: it never fails and never does IO. Bad input becomes a status condition with the
//! spec's reason, and the bad part is dropped; everything else is still translated.

pub mod acme;
mod addresses;
mod allowed_routes;
mod assemble;
mod backend;
mod backend_config;
mod backend_tls;
pub mod backend_traffic;
mod certificate;
mod composition;
mod conditions;
mod cross_serving;
mod extension_ref;
mod external_auth;
mod filters;
mod frontend_tls;
mod gateway;
mod gateway_class;
mod grpc_matches;
mod grpc_precedence;
mod grpc_route;
mod hostname;
mod http_route;
mod l4_routes;
mod listener;
pub(crate) mod listener_set;
mod listener_tls;
mod matches;
pub(crate) mod parent_ref;
mod precedence;
mod rate_limit_policy;
pub(crate) mod reference_grant;
mod retry;
mod route_cache;
mod route_policy;
mod routes;
mod security_policy;
mod service_policy;
mod session_persistence;
mod shared_ports;
mod template;
mod timeouts;
mod transform;

use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

pub use self::addresses::AddressAssignment;
pub use self::route_cache::CacheStats;

/// The translator's own rules for whether a listener takes a route, for `gantry-proxy
/// explain` to say why a route accepted elsewhere is not on a given listener.
pub mod attachment {
    pub use super::allowed_routes::AllowedNamespaces;
    pub use super::hostname::intersect as intersect_hostnames;
}
use self::route_cache::RouteCache;
use self::routes::Attacher;
use crate::ir::Ir;
use crate::status::ObjectStatus;
use crate::store::{ObjectKey, Store};

/// The `apiVersion` of every status we write.
const API_VERSION: &str = "gateway.networking.k8s.io/v1";

/// What to translate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TranslateOptions {
    /// GatewayClasses whose `spec.controllerName` equals this are ours.
    pub controller_name: String,
    /// When set, only these Gateways are served (`--gateway NS/NAME`); otherwise every Gateway
    /// of our classes.
    pub gateways: Option<Vec<ObjectKey>>,
    /// Whether Namespace labels are known (the store holds the Namespaces). Not in a proxy
    /// watching one namespace with Roles only (`--watch-namespace`), which cannot read
    /// Namespaces: there a listener's `allowedRoutes.namespaces.from: Selector` admits no route,
    /// rather than judge namespaces by labels it cannot see.
    pub namespace_labels: bool,
    /// Whether a Gateway's `spec.infrastructure.parametersRef` is resolved here against the
    /// store's GatewayParameters (standalone mode). In Kubernetes mode the operator resolves
    /// it and owns the `InvalidParameters` condition, so the proxy does not.
    pub parameters_refs: bool,
    /// Which `spec.addresses` the serving process can assign (`addresses`).
    pub addresses: AddressAssignment,
}

impl Default for TranslateOptions {
    fn default() -> Self {
        Self {
            controller_name: gantry_crds::CONTROLLER_NAME.to_owned(),
            gateways: None,
            namespace_labels: true,
            parameters_refs: true,
            addresses: AddressAssignment::Any,
        }
    }
}

/// The translator's output.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Translation {
    pub ir: Ir,
    /// Status of every object the proxy owns, sorted by kind, namespace and name.
    pub statuses: Vec<ObjectStatus>,
}

/// For a store that differs from the one `ir` was translated from only in EndpointSlices
/// ([`Store::difference`] is `EndpointSlices`): the same IR with every cluster's endpoints read
/// again. Costs one pass over the clusters instead of a translation of every route.
pub fn refresh_endpoints(store: &Store, ir: &Ir) -> Ir {
    Ir {
        ports: ir.ports.clone(),
        clusters: backend::refresh_endpoints(store, &ir.clusters),
    }
}

/// Translates one store after another, reusing what the previous translation made of the
/// routes that did not change (see `route_cache`). The result is always the one
/// [`translate`] gives for the same store.
#[derive(Debug)]
pub struct Translator {
    options: TranslateOptions,
    cache: RouteCache,
}

impl Translator {
    pub fn new(options: TranslateOptions) -> Self {
        Self {
            options,
            cache: RouteCache::default(),
        }
    }

    /// Translates `store`. Pure and deterministic, like [`translate`], but for the
    /// `lastTransitionTime` of routes whose status was replayed: the route cache shares each
    /// route's status with the statuses the translation returned, and stamping those sets the
    /// times in place (stamping the next translation's statuses sets them again).
    pub fn translate(&mut self, store: &Arc<Store>) -> Translation {
        self.cache.begin(store);
        let translation = translate_with(store, &self.options, &mut self.cache);
        self.cache.finish();
        translation
    }

    /// A translator with the same options and nothing cached.
    pub fn fresh(&self) -> Self {
        Self::new(self.options.clone())
    }

    /// How many routes the last translation translated, and how many it reused.
    pub fn stats(&self) -> CacheStats {
        self.cache.stats()
    }
}

/// Translates the store from scratch. Pure and deterministic.
pub fn translate(store: &Store, options: &TranslateOptions) -> Translation {
    Translator::new(options.clone()).translate(&Arc::new(store.clone()))
}

fn translate_with(
    store: &Store,
    options: &TranslateOptions,
    cache: &mut RouteCache,
) -> Translation {
    let (classes, mut statuses) = gateway_class::our_classes(store, options);
    let mut gateways = gateway::our_gateways(store, &classes, options);
    shared_ports::mark_conflicts(store, &mut gateways);
    let mut backend_tls = backend_tls::BackendTls::resolve(store, &gateways);
    let mut backend_traffic = backend_traffic::BackendTraffic::resolve(store);
    let mut backend_config = backend_config::BackendConfig::resolve(store);
    let mut security = security_policy::Security::resolve(store);
    let mut rate_limits = rate_limit_policy::RateLimits::resolve(store);
    // Shared by every route's and policy's status rather than copied into each.
    let controller_name: Arc<str> = Arc::from(options.controller_name.as_str());
    let mut attacher = Attacher::new(store, &controller_name, &gateways);
    let exclusions = cross_serving::exclusions(store, &gateways);
    attacher.replay_attachments(cache.replay_attachments(&exclusions));
    attacher.exclude(exclusions);

    attacher.attach_all(&store.http_routes, &mut cache.http, |store, key, route| {
        backend_tls.secure(
            store,
            http_route::translate_route(store, &key.namespace, route),
        )
    });
    attacher.attach_all(&store.grpc_routes, &mut cache.grpc, |store, key, route| {
        backend_tls.secure(
            store,
            grpc_route::translate_route(store, &key.namespace, route),
        )
    });
    attacher.attach_all(&store.tcp_routes, &mut cache.tcp, |store, key, route| {
        l4_routes::translate_tcp_route(store, &key.namespace, route)
            .with_backend_tls(|cluster| backend_tls.for_cluster(store, cluster))
    });
    attacher.attach_all(&store.tls_routes, &mut cache.tls, |store, key, route| {
        l4_routes::translate_tls_route(store, &key.namespace, route)
            .with_backend_tls(|cluster| backend_tls.for_cluster(store, cluster))
    });
    attacher.attach_all(&store.udp_routes, &mut cache.udp, |store, key, route| {
        l4_routes::translate_udp_route(store, &key.namespace, route)
    });

    let counts = attacher.attached_counts();
    let Attacher {
        collected,
        clusters,
        statuses: route_statuses,
        services,
        passthrough_services,
        missing_services,
        ..
    } = attacher;
    backend_tls.record_use(&services, &passthrough_services);
    let uses = [&services, &passthrough_services, &missing_services];
    backend_traffic.record_use(&uses);
    backend_config.record_use(&uses);
    for ((gateway, index), count) in counts {
        if let Some(l) = gateways
            .get_mut(&gateway)
            .and_then(|g| g.listeners.get_mut(index))
        {
            l.attached_routes = count;
        }
    }
    statuses.extend(gateways.values().map(|g| backend_tls.gateway_status(g)));
    let mut listener_sets: Vec<ObjectStatus> = gateways
        .values()
        .flat_map(|g| g.listener_set_statuses())
        .collect();
    listener_sets.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    // Thousands of route statuses: room for them at once, not by doubling (each doubling
    // copies every status so far).
    statuses.reserve(listener_sets.len() + route_statuses.len() + 1);
    statuses.extend(listener_sets);
    statuses.extend(route_statuses);
    statuses.extend(backend_tls.policy_statuses(&controller_name));
    statuses.extend(backend_traffic.policy_statuses(&controller_name));
    statuses.extend(backend_config.policy_statuses(&controller_name));
    let (mut ports, superseded) = collected.into_ports(&gateways);
    // Route policies attach to the assembled entries: each entry gets the most specific one.
    security.attach(&mut ports);
    statuses.extend(security.policy_statuses(&controller_name));
    rate_limits.attach(&mut ports);
    statuses.extend(rate_limits.policy_statuses(&controller_name));
    // Precedence between L4 routes is decided per listener, once every route is placed: the
    // routes that lose some traffic say so in their (already collected) statuses.
    l4_routes::note_superseded(&mut statuses, &superseded);
    // Route rules are translated (and cached) without endpoints: they are read here, once for
    // every cluster in use, and so are each Service's retry budget and each Service port's
    // BackendConfigPolicy settings.
    let mut clusters = clusters;
    security.add_clusters(&mut clusters);
    let mut clusters = backend::refresh_endpoints(store, &clusters);
    backend_traffic.apply(&mut clusters);
    backend_config.apply(store, &mut clusters);
    let ir = Ir { ports, clusters };
    Translation { ir, statuses }
}

/// `metadata.generation`, 0 when absent.
fn generation_of(meta: &ObjectMeta) -> i64 {
    meta.generation.unwrap_or(0)
}
