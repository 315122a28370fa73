//! Wires the reconcilers to watches and runs them until shutdown.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use gantry_crds::GatewayParameters;
use gantry_crds::gateway::backendtlspolicies::BackendTlsPolicy;
use gantry_crds::gateway::gatewayclasses::GatewayClass;
use gantry_crds::gateway::gateways::Gateway;
use gantry_crds::gateway::referencegrants::ReferenceGrant;
use gantry_translate::listener_sets::selects_namespaces_by_label;
use gantry_translate::store::ObjectKey;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{Namespace, Service};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::watcher;
use kube::{Api, ResourceExt};

use super::{Context, Error, Scope, gateway, gatewayclass, listener_sets, workload};
use crate::infra::names::{
    GATEWAY_CLASS_NAME_LABEL, GATEWAY_NAME_LABEL, MANAGED_BY, MANAGED_BY_LABEL, label_value,
};

fn error_policy<K>(controller: &'static str) -> impl Fn(Arc<K>, &Error, Arc<Context>) -> Action {
    move |_, error, ctx| {
        tracing::warn!(controller, %error, "reconcile failed");
        ctx.metrics.failure(controller, error.metric_label());
        Action::requeue(Duration::from_secs(15))
    }
}

fn api<K>(ctx: &Context) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match ctx.namespace() {
        Some(ns) => Api::namespaced(ctx.client.clone(), ns),
        None => Api::all(ctx.client.clone()),
    }
}

/// Every watch the controllers start, namespaced in a namespace-scoped install: there, nothing
/// cluster-scoped is listed or watched (no GatewayClass), and every GatewayParameters change
/// looks at every served class again (there are few).
fn classes_controller(ctx: &Arc<Context>) -> Controller<GatewayClass> {
    match &ctx.scope {
        Scope::Cluster => Controller::new(
            Api::<GatewayClass>::all(ctx.client.clone()),
            watcher::Config::default(),
        ),
        Scope::Namespace { namespace, classes } => {
            // The classes come from the command line: a store holding them, and one trigger
            // each at start; the watches below trigger them again.
            let (reader, mut writer) = reflector::store();
            let served: Vec<GatewayClass> = classes.iter().map(|c| c.class(namespace)).collect();
            writer.apply_watcher_event(&watcher::Event::Init);
            for class in &served {
                writer.apply_watcher_event(&watcher::Event::InitApply(class.clone()));
            }
            writer.apply_watcher_event(&watcher::Event::InitDone);
            let trigger =
                futures::stream::iter(served.into_iter().map(Ok)).chain(futures::stream::pending());
            Controller::for_stream(trigger, reader)
        }
    }
}

/// The reference of the Gateway at `key`.
fn gateway_ref(key: ObjectKey) -> ObjectRef<Gateway> {
    ObjectRef::new(&key.name).within(&key.namespace)
}

/// The Gateways whose `allowedListeners` select ListenerSet namespaces by label: a Namespace
/// change may change what they admit.
fn selecting(gateways: &reflector::Store<Gateway>) -> Vec<Arc<Gateway>> {
    gateways
        .state()
        .into_iter()
        .filter(|g| selects_namespaces_by_label(g))
        .collect()
}

/// The Gateways a fleet's Deployment or DaemonSet matters to: its owner, for a dedicated
/// fleet; for a shared fleet (labelled with its class and no Gateway) once it is available,
/// every Gateway of the class, since those moving to it remove their dedicated fleet then.
fn fleet_gateways(
    workload: &impl ResourceExt,
    available: bool,
    gateways: &reflector::Store<Gateway>,
) -> Vec<ObjectRef<Gateway>> {
    let namespace = workload.namespace().unwrap_or_default();
    let owners: Vec<ObjectRef<Gateway>> = workload
        .owner_references()
        .iter()
        .filter(|o| o.kind == "Gateway" && o.api_version.starts_with(gantry_crds::GATEWAY_GROUP))
        .map(|o| ObjectRef::new(&o.name).within(&namespace))
        .collect();
    if !owners.is_empty() {
        return owners;
    }
    let labels = workload.labels();
    if labels.contains_key(GATEWAY_NAME_LABEL) || !available {
        return Vec::new();
    }
    let Some(class) = labels.get(GATEWAY_CLASS_NAME_LABEL) else {
        return Vec::new();
    };
    gateways
        .state()
        .into_iter()
        .filter(|g| &label_value(&g.spec.gateway_class_name) == class)
        .map(|g| ObjectRef::from_obj(g.as_ref()))
        .collect()
}

/// Runs both controllers until either stream ends (on shutdown signal).
pub async fn run(ctx: Arc<Context>) {
    let managed = watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY}"));
    let client = ctx.client.clone();

    // Gateways: their own changes, their fleet's Deployment and Service (addresses), the
    // class's shared Deployment (a Gateway moving to it removes its dedicated fleet once it is
    // available), and the class and parameters they depend on.
    let gateways = Controller::new(api::<Gateway>(&ctx), watcher::Config::default());
    let gateway_store = gateways.store();
    let by_class = gateway_store.clone();
    let by_params = gateway_store.clone();
    let by_namespace = gateway_store.clone();
    let by_set = gateway_store.clone();
    let by_set_namespace = gateway_store.clone();
    let by_deployment_class = gateway_store.clone();
    let by_daemon_set_class = gateway_store.clone();
    let by_gateway_params = gateway_store.clone();
    let mut gateway_controller = gateways
        .watches(
            api::<Deployment>(&ctx),
            managed.clone(),
            move |deployment: Deployment| {
                let available = workload::deployment_available(&deployment);
                fleet_gateways(&deployment, available, &by_deployment_class)
            },
        )
        .watches(
            api::<DaemonSet>(&ctx),
            managed.clone(),
            move |daemon_set: DaemonSet| {
                let available = workload::daemon_set_available(&daemon_set);
                fleet_gateways(&daemon_set, available, &by_daemon_set_class)
            },
        )
        .owns(api::<Service>(&ctx), managed.clone())
        // A ListenerSet adds listeners to the Gateway it names: its dedicated fleet's ports.
        .reconcile_on(listener_sets::parent_changes(ctx.clone()).map(gateway_ref));
    if ctx.namespace().is_none() {
        // Namespace labels decide which ListenerSets a Gateway's `allowedListeners` selector
        // admits (a namespace-scoped install reads no Namespace: there a selector admits none).
        gateway_controller = gateway_controller.watches(
            Api::<Namespace>::all(client.clone()),
            watcher::Config::default(),
            move |_: Namespace| {
                selecting(&by_namespace)
                    .iter()
                    .map(|g| ObjectRef::from_obj(g.as_ref()))
                    .collect::<Vec<_>>()
            },
        );
        gateway_controller = gateway_controller.watches(
            Api::<GatewayClass>::all(client.clone()),
            watcher::Config::default(),
            move |class: GatewayClass| {
                let name = class.name_any();
                by_class
                    .state()
                    .into_iter()
                    .filter(move |g| g.spec.gateway_class_name == name)
                    .map(|g| ObjectRef::from_obj(g.as_ref()))
                    .collect::<Vec<_>>()
            },
        );
    }
    let gateway_controller = gateway_controller
        .watches(
            api::<GatewayParameters>(&ctx),
            watcher::Config::default(),
            move |params: GatewayParameters| {
                // Any Gateway in the same namespace may name it, and any class may: re-check
                // those Gateways (cheap: status writes are skipped when nothing changed).
                let ns = params.namespace();
                by_params
                    .state()
                    .into_iter()
                    .filter(move |g| {
                        g.spec
                            .infrastructure
                            .as_ref()
                            .and_then(|i| i.parameters_ref.as_ref())
                            .is_none()
                            || g.namespace() == ns
                    })
                    .map(|g| ObjectRef::from_obj(g.as_ref()))
                    .collect::<Vec<_>>()
            },
        )
        .shutdown_on_signal()
        .run(
            gateway::reconcile,
            error_policy(gateway::CONTROLLER),
            ctx.clone(),
        )
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "gateway controller event");
            }
        });

    // GatewayClasses: their own changes, their Gateways (RBAC subjects and references, shared
    // fleet ports), their parameters, the shared fleet's Deployment, the ReferenceGrants and
    // BackendTLSPolicies that decide which namespaces' Secrets and ConfigMaps fleets may read
    // (any of them may matter to any class: every class of ours is looked at again), and the
    // ListenerSets, whose listeners add shared fleet ports and certificates to read (the class
    // of the Gateway each names).
    let classes = classes_controller(&ctx);
    let class_store = classes.store();
    let by_grant = class_store.clone();
    let by_policy = class_store.clone();
    let by_deployment = class_store.clone();
    let ours = |store: &reflector::Store<GatewayClass>| {
        store
            .state()
            .into_iter()
            .filter(|c| c.spec.controller_name == gantry_crds::CONTROLLER_NAME)
            .map(|c| ObjectRef::from_obj(c.as_ref()))
            .collect::<Vec<_>>()
    };
    let namespaced = ctx.namespace().is_some();
    let by_daemon_set = class_store.clone();
    let classes = if namespaced {
        // The shared fleet is owned by the class's GatewayParameters there, not by the class.
        classes
            .watches(
                api::<Deployment>(&ctx),
                managed.clone(),
                move |_: Deployment| ours(&by_deployment),
            )
            .watches(api::<DaemonSet>(&ctx), managed, move |_: DaemonSet| {
                ours(&by_daemon_set)
            })
    } else {
        classes
            .owns(Api::<Deployment>::all(client.clone()), managed.clone())
            .owns(Api::<DaemonSet>::all(client.clone()), managed)
    };
    let classes = classes.reconcile_on(listener_sets::parent_changes(ctx.clone()).filter_map(
        move |gateway| {
            let class = by_set
                .get(&gateway_ref(gateway))
                .map(|g| ObjectRef::<GatewayClass>::new(&g.spec.gateway_class_name));
            futures::future::ready(class)
        },
    ));
    let classes = if namespaced {
        classes
    } else {
        classes.watches(
            Api::<Namespace>::all(client.clone()),
            watcher::Config::default(),
            move |_: Namespace| {
                selecting(&by_set_namespace)
                    .iter()
                    .map(|g| ObjectRef::<GatewayClass>::new(&g.spec.gateway_class_name))
                    .collect::<Vec<_>>()
            },
        )
    };
    let class_controller = classes
        .watches(
            api::<Gateway>(&ctx),
            watcher::Config::default(),
            |gateway: Gateway| {
                Some(ObjectRef::<GatewayClass>::new(
                    &gateway.spec.gateway_class_name,
                ))
            },
        )
        .watches(
            api::<ReferenceGrant>(&ctx),
            watcher::Config::default(),
            move |_: ReferenceGrant| ours(&by_grant),
        )
        .watches(
            api::<BackendTlsPolicy>(&ctx),
            watcher::Config::default(),
            move |_: BackendTlsPolicy| ours(&by_policy),
        )
        .watches(
            api::<GatewayParameters>(&ctx),
            watcher::Config::default(),
            move |params: GatewayParameters| {
                let (name, ns) = (params.name_any(), params.namespace());
                let mut classes: Vec<ObjectRef<GatewayClass>> = class_store
                    .state()
                    .into_iter()
                    .filter(|c| {
                        c.spec
                            .parameters_ref
                            .as_ref()
                            .is_some_and(|r| r.name == name && r.namespace == ns)
                    })
                    .map(|c| ObjectRef::from_obj(c.as_ref()))
                    .collect();
                // A Gateway's own parameters decide whether its fleet is bound the ACME role
                // (`certificates.acme`), which the class's bindings hold.
                classes.extend(
                    by_gateway_params
                        .state()
                        .into_iter()
                        .filter(|g| {
                            g.namespace() == ns
                                && g.spec
                                    .infrastructure
                                    .as_ref()
                                    .and_then(|i| i.parameters_ref.as_ref())
                                    .is_some_and(|r| r.name == name)
                        })
                        .map(|g| ObjectRef::<GatewayClass>::new(&g.spec.gateway_class_name)),
                );
                classes
            },
        )
        .shutdown_on_signal()
        .run(
            gatewayclass::reconcile,
            error_policy(gatewayclass::CONTROLLER),
            ctx,
        )
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "gatewayclass controller event");
            }
        });

    futures::join!(gateway_controller, class_controller);
}
