//! Reconciles a Gateway: applies its fleet and Certificates, prunes what is no longer wanted,
//! moves it between dedicated and shared fleets without a gap, and writes its addresses. It
//! writes `Accepted` only to refuse the Gateway (`InvalidParameters`); otherwise `Accepted`,
//! `Programmed` and the listeners belong to the proxy fleet, which translates the Gateway
//! (`ListenersNotValid` and the rest) and leaves `Accepted` alone while the refusal stands.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use gantry_crds::gateway::gatewayclasses::GatewayClass;
use gantry_crds::gateway::gateways::{Gateway, GatewayStatusAddresses};
use gantry_crds::params::Topology;
use gantry_translate::store::Store;
use k8s_openapi::api::core::v1::{Secret, Service};
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};
use serde_json::json;
use tracing::instrument;

use super::conditions::{self, Wanted};
use super::overlays;
use super::parameters::{self, Invalid};
use super::workload;
use super::{Context, Error, event_reference, objects};
use crate::infra::apply::Teardown;
use crate::infra::names::{self, FIELD_MANAGER, FLEET_FINALIZER};
use crate::infra::plan::{self, FleetRef};
use crate::infra::render::{SecretState, https_secrets};
use crate::params::FleetParameters;

/// Name used in metrics and logs.
pub const CONTROLLER: &str = "gateway";
const RESYNC: Duration = Duration::from_secs(300);
/// Poll while waiting for an address or for the new fleet of a topology switch.
const POLL: Duration = Duration::from_secs(5);

/// Reconciles one Gateway.
#[instrument(skip_all, fields(gateway = %format!("{}/{}", gateway.namespace().unwrap_or_default(), gateway.name_any())))]
pub async fn reconcile(gateway: Arc<Gateway>, ctx: Arc<Context>) -> Result<Action, Error> {
    if gateway.metadata.deletion_timestamp.is_some() {
        return teardown(&ctx, &gateway).await;
    }
    let Some(class) = ctx.class(&gateway.spec.gateway_class_name).await? else {
        return Ok(Action::await_change());
    };
    let _timer = ctx.metrics.reconcile(CONTROLLER);

    let (params, shared_namespace) = match resolve(&ctx, &class, &gateway).await? {
        Ok(found) => found,
        Err(invalid) => return refuse(&ctx, &gateway, invalid).await,
    };

    if params.topology == Topology::Dedicated {
        add_finalizer(&ctx, &gateway).await?;
    }
    match sync_fleet(&ctx, &gateway, &params, shared_namespace.as_deref()).await {
        Ok(Err(invalid)) => refuse(&ctx, &gateway, invalid).await,
        Ok(Ok(Serving { fleet, moving })) => {
            let addresses = addresses(&ctx, &fleet).await?;
            tracing::debug!(fleet = %format!("{}/{}", fleet.namespace, fleet.name), "served");
            let waiting = addresses.is_empty() || moving;
            write_status(&ctx, &gateway, None, addresses).await?;
            Ok(Action::requeue(if waiting { POLL } else { RESYNC }))
        }
        Err(error) => {
            ctx.warn(
                &event_reference(gateway.as_ref()),
                "ReconcileFailed",
                error.to_string(),
            )
            .await;
            Err(error)
        }
    }
}

/// `Accepted=False InvalidParameters` with an Event; nothing is applied, so the fleet keeps
/// its last good objects.
async fn refuse(
    ctx: &Context,
    gateway: &Gateway,
    Invalid(message): Invalid,
) -> Result<Action, Error> {
    let accepted = accepted(gateway, false, "InvalidParameters", message.clone());
    write_status(ctx, gateway, Some(&accepted), Vec::new()).await?;
    ctx.warn(&event_reference(gateway), "InvalidParameters", message)
        .await;
    Ok(Action::await_change())
}

type Resolved = Result<(FleetParameters, Option<String>), Invalid>;

/// Merged parameters for the Gateway and the namespace a shared fleet would run in.
async fn resolve(
    ctx: &Context,
    class: &GatewayClass,
    gateway: &Gateway,
) -> Result<Resolved, Error> {
    let class_params = match parameters::for_class(&ctx.client, class).await? {
        Ok(p) => p,
        Err(Invalid(message)) => {
            return Ok(Err(Invalid(format!(
                "GatewayClass {} has invalid parameters: {message}",
                class.name_any()
            ))));
        }
    };
    let gateway_params = match parameters::for_gateway(&ctx.client, gateway).await? {
        Ok(p) => p,
        Err(invalid) => return Ok(Err(invalid)),
    };
    let shared_namespace = class_params
        .as_ref()
        .and_then(|p| p.metadata.namespace.clone());
    Ok(plan::gateway_parameters(
        class_params.as_ref().map(|p| &p.spec),
        gateway_params.as_ref().map(|p| &p.spec),
        &ctx.defaults,
    )
    .map(|params| (params, shared_namespace))
    .map_err(Invalid))
}

/// The fleet serving a Gateway right now.
struct Serving {
    fleet: FleetRef,
    /// Moving to the shared fleet, which is not available yet: the dedicated fleet still
    /// serves, and the Gateway is looked at again soon (besides the shared Deployment's events)
    /// rather than at the next resync.
    moving: bool,
}

impl Serving {
    fn settled(fleet: FleetRef) -> Self {
        Self {
            fleet,
            moving: false,
        }
    }
}

/// Applies what the Gateway needs and returns the fleet that serves it right now, or, when
/// overlays cannot be applied to the rendered objects, why (and applies nothing).
async fn sync_fleet(
    ctx: &Context,
    gateway: &Gateway,
    params: &FleetParameters,
    shared_namespace: Option<&str>,
) -> Result<Result<Serving, Invalid>, Error> {
    let secrets = secret_states(ctx, gateway, params).await?;
    // A dedicated fleet opens the ports of the listeners its ListenerSets add; a shared one is
    // rendered by the class controller.
    let listener_sets = match params.topology {
        Topology::Dedicated => {
            objects::listener_set_objects(ctx, std::slice::from_ref(gateway)).await?
        }
        Topology::Shared => Store::default(),
    };
    let objects = plan::gateway_objects(gateway, params, &secrets, &listener_sets);
    let objects = match overlays::overlaid(ctx, objects, &params.overlays).await? {
        Ok(objects) => objects,
        Err(invalid) => return Ok(Err(invalid)),
    };
    ctx.applier.apply_all(&objects).await?;
    let namespace = gateway.namespace().unwrap_or_default();
    if params.issuer_ref.is_some() {
        ctx.applier
            .prune_certificates(&namespace, &gateway.name_any(), &objects)
            .await?;
    }
    let dedicated = plan::dedicated_fleet(gateway);
    let target = plan::fleet_for(gateway, params.topology, shared_namespace);
    if target == dedicated {
        ctx.applier.prune_fleet(&dedicated, &objects).await?;
        // A switch of workload kind is a move within the fleet: polled until the old one goes.
        let moving = workload::retire_other(ctx, &dedicated, params.workload).await?;
        return Ok(Ok(Serving {
            fleet: dedicated,
            moving,
        }));
    }
    // Moving to the shared fleet (applied by the GatewayClass controller): keep the dedicated
    // fleet serving until the shared one is available, then remove it.
    if !ctx.applier.fleet_remains(&dedicated).await? {
        return Ok(Ok(Serving::settled(target)));
    }
    let serving = workload::workloads(ctx, &target).await?.available();
    if serving {
        tracing::info!(from = %dedicated.name, to = %target.name, "moving Gateway to the shared fleet");
        let lease = dedicated_lease(gateway);
        let teardown = ctx
            .applier
            .teardown_fleet(&dedicated, &params.roles, &lease)
            .await?;
        if teardown == Teardown::Done {
            return Ok(Ok(Serving::settled(target)));
        }
        // The dedicated pods drain (its Service and address stay until they are gone).
    }
    Ok(Ok(Serving {
        fleet: dedicated,
        moving: true,
    }))
}

/// The Lease of the Gateway's dedicated fleet.
fn dedicated_lease(gateway: &Gateway) -> String {
    names::dedicated_lease(
        gateway.metadata.namespace.as_deref().unwrap_or_default(),
        gateway.metadata.name.as_deref().unwrap_or_default(),
    )
}

fn has_finalizer(gateway: &Gateway) -> bool {
    gateway
        .metadata
        .finalizers
        .iter()
        .flatten()
        .any(|f| f == FLEET_FINALIZER)
}

/// Adds the fleet finalizer, so that a deleted Gateway stays until its dedicated fleet's pods
/// are gone and the RBAC, Lease and Service they use are removed after them ([`teardown`]).
async fn add_finalizer(ctx: &Context, gateway: &Gateway) -> Result<(), Error> {
    if has_finalizer(gateway) {
        return Ok(());
    }
    set_finalizers(ctx, gateway, |finalizers| {
        if !finalizers.iter().any(|f| f == FLEET_FINALIZER) {
            finalizers.push(FLEET_FINALIZER.to_string());
        }
    })
    .await
}

/// Conflicts a finalizer write re-reads the Gateway for before it fails the reconcile.
const FINALIZER_CONFLICT_RETRIES: usize = 3;

/// Edits `metadata.finalizers` with `edit` and writes them by a merge patch guarded by the
/// resourceVersion read, so that another controller's finalizer added meanwhile is never lost.
/// The Gateway is read from the API server first, not taken from the cache (which may not
/// have seen this controller's own status write yet, and would only earn a `409`); on a `409`
/// all the same (another writer in between) it is read again and the edit made on the fresh
/// list. Finalizers change twice in a Gateway's life, so the reads cost nothing that matters.
async fn set_finalizers(
    ctx: &Context,
    gateway: &Gateway,
    edit: impl Fn(&mut Vec<String>),
) -> Result<(), Error> {
    let namespace = gateway.namespace().unwrap_or_default();
    let name = gateway.name_any();
    let api: Api<Gateway> = Api::namespaced(ctx.client.clone(), &namespace);
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..PatchParams::default()
    };
    let context = || format!("writing the finalizers of Gateway {namespace}/{name}");
    let read = || async {
        match api.get_opt(&name).await {
            Ok(fresh) => Ok(fresh.map(|g| g.metadata)),
            Err(e) => Err(Error::kube(context(), e)),
        }
    };
    // Gone meanwhile: nothing holds it any more.
    let Some(mut current) = read().await? else {
        return Ok(());
    };
    let mut conflicts = 0;
    loop {
        let mut finalizers = current.finalizers.clone().unwrap_or_default();
        edit(&mut finalizers);
        if current
            .finalizers
            .as_ref()
            .map_or(finalizers.is_empty(), |f| *f == finalizers)
        {
            return Ok(());
        }
        let patch = json!({
            "metadata": {
                "finalizers": finalizers,
                "resourceVersion": current.resource_version,
            }
        });
        match api.patch(&name, &params, &Patch::Merge(&patch)).await {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(e)) if e.code == 409 && conflicts < FINALIZER_CONFLICT_RETRIES => {
                conflicts += 1;
                let Some(fresh) = read().await? else {
                    return Ok(());
                };
                current = fresh;
            }
            Err(e) => return Err(Error::kube(context(), e)),
        }
    }
}

/// A deleted Gateway: its dedicated fleet goes in order. The Deployment first, in the
/// foreground, so that its pods drain with every permission they hold (their watches and their
/// Lease keep working); once it is gone, the RBAC, Lease and Service; then the finalizer, and
/// the garbage collector removes what else the Gateway owns (Certificates).
async fn teardown(ctx: &Context, gateway: &Gateway) -> Result<Action, Error> {
    if !has_finalizer(gateway) {
        // Owner references let the garbage collector remove what is left.
        return Ok(Action::await_change());
    }
    let fleet = plan::dedicated_fleet(gateway);
    let lease = dedicated_lease(gateway);
    let teardown = ctx
        .applier
        .teardown_fleet(&fleet, &ctx.defaults.proxy_roles, &lease)
        .await?;
    if teardown == Teardown::Draining {
        tracing::info!(fleet = %format!("{}/{}", fleet.namespace, fleet.name), "Gateway deleted: waiting for its fleet's pods to drain");
        // The Deployment's deletion brings this Gateway back; the poll is a safety net.
        return Ok(Action::requeue(POLL));
    }
    set_finalizers(ctx, gateway, |finalizers| {
        finalizers.retain(|f| f != FLEET_FINALIZER);
    })
    .await?;
    tracing::info!(fleet = %format!("{}/{}", fleet.namespace, fleet.name), "Gateway deleted: fleet removed");
    Ok(Action::await_change())
}

/// The state of each Secret an HTTPS listener names, when issuance is configured.
async fn secret_states(
    ctx: &Context,
    gateway: &Gateway,
    params: &FleetParameters,
) -> Result<BTreeMap<String, SecretState>, Error> {
    let mut states = BTreeMap::new();
    if params.issuer_ref.is_none() {
        return Ok(states);
    }
    let namespace = gateway.namespace().unwrap_or_default();
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
    for name in https_secrets(gateway).into_keys() {
        let state = match api.get_metadata_opt(&name).await {
            Ok(Some(secret)) => SecretState::Present {
                issued_by: secret
                    .metadata
                    .annotations
                    .and_then(|a| a.get("cert-manager.io/certificate-name").cloned()),
            },
            Ok(None) => SecretState::Missing,
            Err(e) => return Err(Error::kube(format!("reading Secret {namespace}/{name}"), e)),
        };
        states.insert(name, state);
    }
    Ok(states)
}

/// Addresses of the fleet's Service: its load balancer ingress and external IPs (where a
/// Gateway's `spec.addresses` go) when it has any, else the ClusterIP (GEP-1762 leaves the
/// choice to the implementation).
async fn addresses(ctx: &Context, fleet: &FleetRef) -> Result<Vec<GatewayStatusAddresses>, Error> {
    let api: Api<Service> = Api::namespaced(ctx.client.clone(), &fleet.namespace);
    let service = match api.get_opt(&fleet.name).await {
        Ok(Some(s)) => s,
        Ok(None) => return Ok(Vec::new()),
        Err(e) => {
            return Err(Error::kube(
                format!("reading Service {}/{}", fleet.namespace, fleet.name),
                e,
            ));
        }
    };
    let address = |type_: &str, value: String| GatewayStatusAddresses {
        r#type: Some(type_.to_string()),
        value,
    };
    let external: Vec<String> = service
        .spec
        .as_ref()
        .and_then(|s| s.external_ips.clone())
        .unwrap_or_default();
    let mut ingress: Vec<GatewayStatusAddresses> = service
        .status
        .and_then(|s| s.load_balancer)
        .and_then(|lb| lb.ingress)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|i| match (i.ip, i.hostname) {
            (Some(ip), _) => Some(address("IPAddress", ip)),
            (None, Some(host)) => Some(address("Hostname", host)),
            (None, None) => None,
        })
        .collect();
    for ip in external {
        if !ingress.iter().any(|a| a.value == ip) {
            ingress.push(address("IPAddress", ip));
        }
    }
    if !ingress.is_empty() {
        return Ok(ingress);
    }
    Ok(service
        .spec
        .and_then(|s| s.cluster_ip)
        .filter(|ip| !ip.is_empty() && ip != "None")
        .map(|ip| vec![address("IPAddress", ip)])
        .unwrap_or_default())
}

fn accepted(gateway: &Gateway, status: bool, reason: &'static str, message: String) -> Wanted {
    Wanted {
        type_: "Accepted",
        status,
        reason,
        message,
        observed_generation: gateway.metadata.generation,
    }
}

/// Server-side applies the operator's part of the Gateway status (Accepted and addresses) under
/// its own field manager, so the proxy's Programmed condition and listeners are left alone.
/// Skipped when nothing changed.
async fn write_status(
    ctx: &Context,
    gateway: &Gateway,
    refusal: Option<&Wanted>,
    addresses: Vec<GatewayStatusAddresses>,
) -> Result<(), Error> {
    let status = gateway.status.as_ref();
    let existing = conditions::find(status.and_then(|s| s.conditions.as_ref()), "Accepted");
    let existing_addresses = status.and_then(|s| s.addresses.clone()).unwrap_or_default();
    let unchanged = match refusal {
        Some(wanted) => existing.is_some_and(|c| wanted.matches(c)),
        // Nothing to refuse: a refusal of ours still there must go (applying without the
        // condition gives it up; the proxy then writes `Accepted`).
        None => existing.is_none_or(|c| c.reason != "InvalidParameters"),
    };
    if unchanged && existing_addresses == addresses {
        return Ok(());
    }
    let mut status_body = match refusal {
        Some(wanted) => json!({ "conditions": [wanted.to_condition(existing)] }),
        None => json!({}),
    };
    if !addresses.is_empty() {
        status_body["addresses"] = json!(addresses);
    }
    let body = json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": { "name": gateway.name_any(), "namespace": gateway.namespace() },
        "status": status_body,
    });
    let namespace = gateway.namespace().unwrap_or_default();
    let api: Api<Gateway> = Api::namespaced(ctx.client.clone(), &namespace);
    api.patch_status(
        &gateway.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await
    .map_err(|e| {
        Error::kube(
            format!(
                "writing status of Gateway {namespace}/{}",
                gateway.name_any()
            ),
            e,
        )
    })?;
    Ok(())
}
