//! Reconciles a GatewayClass: its Accepted condition and supportedFeatures, the proxies'
//! RBAC (the class's ClusterRoleBinding, and per fleet a RoleBinding in each namespace whose
//! Secrets or ConfigMaps its Gateways reference, and for a fleet with `certificates.acme` one
//! of the ACME role in each namespace it writes certificates in), and the shared fleet when
//! the class's topology is Shared.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use gantry_crds::gateway::gatewayclasses::{GatewayClass, GatewayClassStatusSupportedFeatures};
use gantry_crds::gateway::gateways::Gateway;
use gantry_crds::params::Topology;
use gantry_crds::{CONTROLLER_NAME, GatewayParameters};
use gantry_translate::features;
use kube::api::{ApiResource, DynamicObject, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};
use serde_json::json;
use tracing::instrument;

use super::conditions::{self, Wanted};
use super::overlays;
use super::parameters::{self, Invalid};
use super::workload;
use super::{Context, Error, objects};
use crate::infra::apply::{Teardown, is_not_found};
use crate::infra::names::{self, FIELD_MANAGER, FLEET_FINALIZER};
use crate::infra::plan::{self, FleetRef};
use crate::params::FleetParameters;

/// Requeue interval once everything is in shape (a safety net; watches drive the rest).
const RESYNC: Duration = Duration::from_secs(300);
/// Requeue interval while a topology switch waits for the new fleet.
const SWITCH_POLL: Duration = Duration::from_secs(5);

/// Name used in metrics and logs.
pub const CONTROLLER: &str = "gatewayclass";

/// Reconciles one GatewayClass.
#[instrument(skip_all, fields(gatewayclass = %class.name_any()))]
pub async fn reconcile(class: Arc<GatewayClass>, ctx: Arc<Context>) -> Result<Action, Error> {
    if class.spec.controller_name != CONTROLLER_NAME {
        return Ok(Action::await_change());
    }
    let _timer = ctx.metrics.reconcile(CONTROLLER);
    let resolved = match parameters::for_class(&ctx.client, &class).await? {
        Ok(found) => {
            let spec = found.as_ref().map(|p| &p.spec);
            plan::gateway_parameters(spec, None, &ctx.defaults)
                .map(|params| (params, found))
                .map_err(Invalid)
        }
        Err(invalid) => Err(invalid),
    };
    let accepted = match &resolved {
        Ok(_) => Wanted {
            type_: "Accepted",
            status: true,
            reason: "Accepted",
            message: format!("Handled by {CONTROLLER_NAME}"),
            observed_generation: class.metadata.generation,
        },
        Err(Invalid(message)) => Wanted {
            type_: "Accepted",
            status: false,
            reason: "InvalidParameters",
            message: message.clone(),
            observed_generation: class.metadata.generation,
        },
    };
    let (params, parameters) = match resolved {
        Ok(found) => found,
        Err(Invalid(message)) => {
            write_status(&ctx, &class, &accepted).await?;
            ctx.warn_class(&class, "InvalidParameters", message).await;
            return Ok(Action::await_change());
        }
    };

    // The parameters resolved; `Accepted` is written once the objects they render are known
    // to be valid (overlays), before an error of the API server is returned.
    match sync(&ctx, &class, &params, parameters.as_ref()).await {
        Ok(Ok(action)) => {
            write_status(&ctx, &class, &accepted).await?;
            Ok(action)
        }
        Ok(Err(Invalid(message))) => {
            let refused = Wanted {
                status: false,
                reason: "InvalidParameters",
                message: message.clone(),
                ..accepted
            };
            write_status(&ctx, &class, &refused).await?;
            ctx.warn_class(&class, "InvalidParameters", message).await;
            Ok(Action::await_change())
        }
        Err(error) => {
            write_status(&ctx, &class, &accepted).await?;
            ctx.warn_class(&class, "ReconcileFailed", error.to_string())
                .await;
            Err(error)
        }
    }
}

/// Applies the class's RBAC and shared fleet, and retires a shared fleet no longer wanted.
/// `parameters` are the class's GatewayParameters: a shared fleet runs in their namespace.
/// Overlays that cannot be applied to the rendered objects leave everything as it is.
async fn sync(
    ctx: &Context,
    class: &GatewayClass,
    params: &FleetParameters,
    parameters: Option<&GatewayParameters>,
) -> Result<Result<Action, Invalid>, Error> {
    let shared_namespace = parameters.and_then(|p| p.metadata.namespace.as_deref());
    let owner = plan::class_controlled_owner(class, parameters, &params.roles);
    let class_name = class.name_any();
    let gateways = gateways_of(ctx, &class_name).await?;
    let shared = shared_namespace.map(|ns| FleetRef {
        namespace: ns.to_string(),
        name: names::shared_fleet(&class_name),
    });
    let shared_running = match &shared {
        Some(fleet) => workload::workloads(ctx, fleet).await?.exists(),
        None => false,
    };
    // ListenerSets decide both the shared fleet's ports and which namespaces fleets read.
    let references = objects::reference_objects(ctx, &gateways).await?;
    let objects = plan::class_objects(
        class,
        params,
        shared_namespace,
        &gateways,
        shared_running,
        owner.as_ref(),
        &references,
    );
    let objects = match overlays::overlaid(ctx, objects, &params.overlays).await? {
        Ok(objects) => objects,
        Err(invalid) => return Ok(Err(invalid)),
    };
    ctx.applier.apply_all(&objects).await?;
    let acme = acme_gateways(ctx, parameters, &gateways).await?;
    let grants = plan::reference_bindings(
        class,
        params,
        shared_namespace,
        &gateways,
        shared_running,
        &references,
        owner.as_ref(),
        &|g: &Gateway| acme.contains(&(g.namespace().unwrap_or_default(), g.name_any())),
    );
    ctx.applier.apply_all(&grants).await?;
    for (namespace, name) in ctx
        .applier
        .prune_reference_bindings(&class_name, ctx.namespace(), &grants)
        .await?
    {
        tracing::info!(%namespace, %name, "no longer referenced; read access withdrawn");
    }

    let Some(shared) = shared else {
        return Ok(Ok(Action::requeue(RESYNC)));
    };
    let wanted = params.topology == Topology::Shared && !gateways.is_empty();
    if wanted {
        if shared_running {
            ctx.applier.prune_fleet(&shared, &objects).await?;
        }
        if workload::retire_other(ctx, &shared, params.workload).await? {
            return Ok(Ok(Action::requeue(SWITCH_POLL)));
        }
        return Ok(Ok(Action::requeue(RESYNC)));
    }
    // A teardown whose pods are gone still removes the rest (the Service goes last).
    if !shared_running && !ctx.applier.fleet_remains(&shared).await? {
        return Ok(Ok(Action::requeue(RESYNC)));
    }
    // Switching to dedicated (or no Gateway left): the shared fleet goes only once every
    // Gateway's dedicated fleet is available, so no Gateway is ever without a proxy.
    for gateway in &gateways {
        let dedicated = plan::dedicated_fleet(gateway);
        if !workload::workloads(ctx, &dedicated).await?.available() {
            tracing::info!(fleet = %dedicated.name, "waiting for dedicated fleet before removing the shared one");
            return Ok(Ok(Action::requeue(SWITCH_POLL)));
        }
    }
    let lease = names::shared_lease(&class_name);
    match ctx
        .applier
        .teardown_fleet(&shared, &params.roles, &lease)
        .await?
    {
        // Its pods drain; the rest goes once they are gone.
        Teardown::Draining => Ok(Ok(Action::requeue(SWITCH_POLL))),
        Teardown::Done => Ok(Ok(Action::requeue(RESYNC))),
    }
}

/// The Gateways (namespace, name) whose dedicated fleet obtains certificates itself
/// ([`plan::sets_acme`]); a Gateway parametersRef that cannot be followed counts as the class's
/// parameters alone.
async fn acme_gateways(
    ctx: &Context,
    class: Option<&GatewayParameters>,
    gateways: &[Gateway],
) -> Result<BTreeSet<(String, String)>, Error> {
    let class = class.map(|p| &p.spec);
    let mut acme = BTreeSet::new();
    for gateway in gateways {
        let own = parameters::for_gateway(&ctx.client, gateway)
            .await?
            .ok()
            .flatten();
        if plan::sets_acme(class, own.as_ref().map(|p| &p.spec)) {
            acme.insert((gateway.namespace().unwrap_or_default(), gateway.name_any()));
        }
    }
    Ok(acme)
}

/// Gateways of the class (in the operator's namespace scope).
pub async fn gateways_of(ctx: &Context, class: &str) -> Result<Vec<Gateway>, Error> {
    let api: Api<Gateway> = match ctx.namespace() {
        Some(ns) => Api::namespaced(ctx.client.clone(), ns),
        None => Api::all(ctx.client.clone()),
    };
    let list = api
        .list(&ListParams::default())
        .await
        .map_err(|e| Error::kube("listing Gateways", e))?;
    let mut gateways: Vec<Gateway> = list
        .items
        .into_iter()
        // A deleted Gateway whose dedicated fleet is still draining keeps its fleet's RBAC
        // and read grants until the teardown removes the finalizer.
        .filter(|g| {
            g.spec.gateway_class_name == class
                && (g.metadata.deletion_timestamp.is_none()
                    || g.metadata
                        .finalizers
                        .iter()
                        .flatten()
                        .any(|f| f == FLEET_FINALIZER))
        })
        .collect();
    gateways.sort_by_key(|g| (g.namespace(), g.name_any()));
    Ok(gateways)
}

/// The optional kinds ([`features::OPTIONAL_KINDS`]) the API server serves at a version the
/// proxy reads: a list of one object at each version, newest first, until one answers. Only a
/// `404` (the CRD is not installed, or not served at that version) counts as missing; any
/// other answer counts as served, so a passing error never withdraws a feature.
async fn served_kinds(ctx: &Context) -> BTreeSet<&'static str> {
    let mut served = BTreeSet::new();
    for kind in features::OPTIONAL_KINDS {
        for version in kind.versions {
            let resource = ApiResource {
                group: kind.group.to_owned(),
                version: (*version).to_owned(),
                api_version: format!("{}/{version}", kind.group),
                kind: kind.kind.to_owned(),
                plural: kind.plural.to_owned(),
            };
            let api: Api<DynamicObject> = match ctx.namespace() {
                Some(ns) => Api::namespaced_with(ctx.client.clone(), ns, &resource),
                None => Api::all_with(ctx.client.clone(), &resource),
            };
            match api.list(&ListParams::default().limit(1)).await {
                Err(e) if is_not_found(&e) => continue,
                _ => {
                    served.insert(kind.kind);
                    break;
                }
            }
        }
    }
    served
}

/// Server-side applies `Accepted` and `supportedFeatures`, when they changed. A
/// namespace-scoped install writes no GatewayClass status: the class is cluster-scoped, which
/// no Role can grant, and it is never read there.
async fn write_status(ctx: &Context, class: &GatewayClass, accepted: &Wanted) -> Result<(), Error> {
    if ctx.namespace().is_some() {
        return Ok(());
    }
    let status = class.status.as_ref();
    let existing = conditions::find(status.and_then(|s| s.conditions.as_ref()), "Accepted");
    let served = served_kinds(ctx).await;
    let features: Vec<GatewayClassStatusSupportedFeatures> =
        features::supported(|kind| served.contains(kind))
            .into_iter()
            .map(|name| GatewayClassStatusSupportedFeatures {
                name: name.to_owned(),
            })
            .collect();
    let same_features = status.and_then(|s| s.supported_features.as_ref()) == Some(&features);
    if existing.is_some_and(|c| accepted.matches(c)) && same_features {
        return Ok(());
    }
    let body = json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "GatewayClass",
        "metadata": { "name": class.name_any() },
        "status": {
            "conditions": [accepted.to_condition(existing)],
            "supportedFeatures": features,
        },
    });
    let api: Api<GatewayClass> = Api::all(ctx.client.clone());
    api.patch_status(
        &class.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await
    .map_err(|e| {
        Error::kube(
            format!("writing status of GatewayClass {}", class.name_any()),
            e,
        )
    })?;
    Ok(())
}
