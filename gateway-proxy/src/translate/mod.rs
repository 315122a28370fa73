//! The translator: object store in, routing IR and statuses out.
//!
//! Invariant: it never fails and never does IO. Bad input becomes a status condition with the
//! spec's reason, and the bad part is dropped; everything else is still translated.

mod allowed_routes;
mod assemble;
mod backend;
mod backend_tls;
mod certificate;
mod conditions;
mod cross_serving;
mod filters;
mod frontend_tls;
mod gateway;
mod gateway_class;
mod grpc_matches;
mod grpc_precedence;
mod grpc_route;
mod hostname;
mod http_route;
mod listener;
mod listener_tls;
mod matches;
mod parent_ref;
mod precedence;
mod reference_grant;
mod routes;
mod timeouts;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use self::routes::Attacher;
use crate::ir::Ir;
use crate::status::ObjectStatus;
use crate::store::{ObjectKey, Store};

/// The `apiVersion` of every status we write.
const API_VERSION: &str = "gateway.networking.k8s.io/v1";

/// What to translate.
#[derive(Clone, Debug)]
pub struct TranslateOptions {
    /// GatewayClasses whose `spec.controllerName` equals this are ours.
    pub controller_name: String,
    /// When set, only these Gateways are served (`--gateway NS/NAME`); otherwise every Gateway
    /// of our classes.
    pub gateways: Option<Vec<ObjectKey>>,
}

impl Default for TranslateOptions {
    fn default() -> Self {
        Self {
            controller_name: gantry_crds::CONTROLLER_NAME.to_owned(),
            gateways: None,
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
/// ([`Store::differs_only_in_endpoint_slices`]): the same IR with every cluster's endpoints read
/// again. Costs one pass over the clusters instead of a translation of every route.
pub fn refresh_endpoints(store: &Store, ir: &Ir) -> Ir {
    Ir {
        ports: ir.ports.clone(),
        clusters: backend::refresh_endpoints(store, &ir.clusters),
    }
}

/// Translates the store. Pure and deterministic.
pub fn translate(store: &Store, options: &TranslateOptions) -> Translation {
    let (classes, mut statuses) = gateway_class::our_classes(store, options);
    let mut gateways = gateway::our_gateways(store, &classes, options);
    let mut backend_tls = backend_tls::BackendTls::resolve(store, &gateways);
    let mut attacher = Attacher::new(store, &options.controller_name, &gateways);
    attacher.exclude(cross_serving::exclusions(store, &gateways));

    attacher.attach_all(&store.http_routes, |store, namespace, route| {
        backend_tls.secure(store, http_route::translate_route(store, namespace, route))
    });
    attacher.attach_all(&store.grpc_routes, |store, namespace, route| {
        backend_tls.secure(store, grpc_route::translate_route(store, namespace, route))
    });

    let counts = attacher.attached_counts();
    let Attacher {
        collected,
        clusters,
        statuses: route_statuses,
        services,
        ..
    } = attacher;
    backend_tls.record_use(&services);
    for ((gateway, index), count) in counts {
        if let Some(l) = gateways
            .get_mut(&gateway)
            .and_then(|g| g.listeners.get_mut(index))
        {
            l.attached_routes = count;
        }
    }
    statuses.extend(gateways.values().map(|g| backend_tls.gateway_status(g)));
    statuses.extend(route_statuses);
    statuses.extend(backend_tls.policy_statuses(&options.controller_name));
    let ir = Ir {
        ports: collected.into_ports(&gateways),
        clusters,
    };
    Translation { ir, statuses }
}

/// `metadata.generation`, 0 when absent.
fn generation_of(meta: &ObjectMeta) -> i64 {
    meta.generation.unwrap_or(0)
}
