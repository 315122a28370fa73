//! Decides which fleet serves a Gateway and composes the render functions for each controller.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use gantry_crds::GatewayParameters;
use gantry_crds::gateway::gatewayclasses::GatewayClass;
use gantry_crds::gateway::gateways::Gateway;
use gantry_crds::params::{GatewayParametersSpec, Topology};
use gantry_translate::references;
use gantry_translate::store::{ObjectKey, Store};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Resource;

use super::names;
use super::render::{self, DesiredObject, Fleet, FleetReferences, SecretState, Target};
use crate::params::{self, FleetParameters, OperatorDefaults, ProxyRoles};

/// Where a fleet runs and what it is called.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct FleetRef {
    /// Namespace.
    pub namespace: String,
    /// Name of the Deployment, Service, ServiceAccount and friends.
    pub name: String,
}

/// The fleet that serves `gateway` under `topology`. `shared_namespace` is the namespace of the
/// class's GatewayParameters, where a shared fleet runs.
pub fn fleet_for(
    gateway: &Gateway,
    topology: Topology,
    shared_namespace: Option<&str>,
) -> FleetRef {
    let class = &gateway.spec.gateway_class_name;
    match (topology, shared_namespace) {
        (Topology::Shared, Some(ns)) => FleetRef {
            namespace: ns.to_string(),
            name: names::shared_fleet(class),
        },
        _ => dedicated_fleet(gateway),
    }
}

/// The dedicated fleet of `gateway`, whether or not it is the one in use.
pub fn dedicated_fleet(gateway: &Gateway) -> FleetRef {
    FleetRef {
        namespace: gateway.metadata.namespace.clone().unwrap_or_default(),
        name: names::dedicated_fleet(
            &gateway.metadata.name.clone().unwrap_or_default(),
            &gateway.spec.gateway_class_name,
        ),
    }
}

/// Resolves the parameters of a Gateway: defaults < class < Gateway. Errors are messages for
/// an `InvalidParameters` condition.
pub fn gateway_parameters(
    class: Option<&GatewayParametersSpec>,
    gateway: Option<&GatewayParametersSpec>,
    defaults: &OperatorDefaults,
) -> Result<FleetParameters, String> {
    let empty = GatewayParametersSpec::default();
    let class = class.unwrap_or(&empty);
    if let Some(gateway) = gateway {
        if gateway.topology.is_some() {
            return Err("topology can only be set in the GatewayClass's parameters".to_string());
        }
        if class.topology == Some(Topology::Shared) {
            return Err(
                "the GatewayClass runs one shared fleet (topology Shared), so per-Gateway \
                 parameters cannot apply; remove spec.infrastructure.parametersRef"
                    .to_string(),
            );
        }
    }
    let merged = match gateway {
        Some(gateway) => params::merge(class, gateway),
        None => class.clone(),
    };
    params::resolve(&merged, defaults).map_err(|problems| problems.join("; "))
}

/// Whether a Gateway's dedicated fleet obtains certificates itself: the class's
/// `certificates.acme`, unless the Gateway's own parameters replace it (`issuerRef` or another
/// `acme`). Read from the merged specs, not the resolved parameters, so that a mistake
/// elsewhere in a Gateway's parameters (refused: the fleet keeps its last good objects) does
/// not withdraw the role its running proxies use; like the class's ClusterRoleBinding, which
/// names every Gateway's fleet, it may so bind a fleet that is not running.
pub fn sets_acme(
    class: Option<&GatewayParametersSpec>,
    gateway: Option<&GatewayParametersSpec>,
) -> bool {
    let merged = match (class, gateway) {
        (Some(class), Some(gateway)) => params::merge(class, gateway),
        (Some(one), None) | (None, Some(one)) => one.clone(),
        (None, None) => return false,
    };
    // Both at one level (which the CRD refuses) is no choice of ACME.
    merged
        .certificates
        .is_some_and(|c| c.acme.is_some() && c.issuer_ref.is_none())
}

/// Owner reference making `gateway` the controller of an object.
pub fn gateway_owner(gateway: &Gateway) -> OwnerReference {
    owner(gateway)
}

/// Owner reference making `class` the controller of an object.
pub fn class_owner(class: &GatewayClass) -> OwnerReference {
    owner(class)
}

fn owner<K: Resource<DynamicType = ()>>(object: &K) -> OwnerReference {
    OwnerReference {
        api_version: K::api_version(&()).to_string(),
        kind: K::kind(&()).to_string(),
        name: object.meta().name.clone().unwrap_or_default(),
        uid: object.meta().uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// What the Gateway controller applies for one Gateway: its dedicated fleet (unless the class
/// is shared) and its Certificates. `listener_sets` holds the ListenerSets (and Namespaces)
/// that may add listeners to the Gateway ([`Fleet::listener_sets`]).
pub fn gateway_objects(
    gateway: &Gateway,
    params: &FleetParameters,
    secrets: &BTreeMap<String, SecretState>,
    listener_sets: &Store,
) -> Vec<DesiredObject> {
    let owner = gateway_owner(gateway);
    let mut objects = Vec::new();
    if params.topology == Topology::Dedicated {
        let fleet = dedicated_fleet(gateway);
        objects.extend(render::render_fleet(&Fleet {
            name: fleet.name,
            namespace: fleet.namespace,
            class: &gateway.spec.gateway_class_name,
            target: Target::Dedicated(gateway),
            params,
            owner: owner.clone(),
            listener_sets,
        }));
    }
    objects.extend(render::render_certificates(
        gateway, params, secrets, &owner,
    ));
    objects
}

/// What owns the objects the GatewayClass controller applies: the GatewayClass; in a
/// namespace-scoped install, which never reads the class (so knows no uid to own by), the
/// class's GatewayParameters, which live in the shared fleet's namespace. `None` there when the
/// class has no parameters, and so no shared fleet either.
pub fn class_controlled_owner(
    class: &GatewayClass,
    parameters: Option<&GatewayParameters>,
    roles: &ProxyRoles,
) -> Option<OwnerReference> {
    match roles.namespace {
        None => Some(class_owner(class)),
        Some(_) => parameters.map(owner),
    }
}

/// What the GatewayClass controller applies: the ClusterRoleBinding of the proxies' ClusterRole
/// (cluster-wide installs only; a namespace-scoped install binds each fleet on its own), and
/// the shared fleet when the class is shared and has Gateways. `shared_namespace` is the
/// namespace of the class's parameters; `keep_shared_subject` keeps the shared fleet's
/// ServiceAccount bound while a shared fleet still runs (during a switch to dedicated);
/// `owner` is [`class_controlled_owner`]; `listener_sets` holds the ListenerSets (and
/// Namespaces) that may add listeners to the Gateways ([`Fleet::listener_sets`]).
pub fn class_objects(
    class: &GatewayClass,
    params: &FleetParameters,
    shared_namespace: Option<&str>,
    gateways: &[Gateway],
    keep_shared_subject: bool,
    owner: Option<&OwnerReference>,
    listener_sets: &Store,
) -> Vec<DesiredObject> {
    let class_name = class.metadata.name.clone().unwrap_or_default();
    let Some(owner) = owner.cloned() else {
        return Vec::new();
    };
    let shared = shared_namespace
        .filter(|_| params.topology == Topology::Shared && !gateways.is_empty())
        .map(|ns| FleetRef {
            namespace: ns.to_string(),
            name: names::shared_fleet(&class_name),
        });
    // Dedicated fleets stay bound during a switch to shared until the Gateway controller has
    // removed them, so every Gateway's dedicated ServiceAccount is always a subject.
    let mut subjects: BTreeSet<(String, String)> = gateways
        .iter()
        .map(|g| {
            let f = dedicated_fleet(g);
            (f.namespace, f.name)
        })
        .collect();
    if let Some(ns) = shared_namespace
        && (shared.is_some() || keep_shared_subject)
    {
        subjects.insert((ns.to_string(), names::shared_fleet(&class_name)));
    }
    let mut objects = if params.roles.namespace.is_none() {
        render::render_class_rbac(&class_name, &owner, &params.roles, &subjects)
    } else {
        Vec::new()
    };
    if let Some(fleet) = shared {
        objects.extend(render::render_fleet(&Fleet {
            name: fleet.name,
            namespace: fleet.namespace,
            class: &class_name,
            target: Target::Shared(gateways),
            params,
            owner,
            listener_sets,
        }));
    }
    objects
}

/// The RoleBindings granting each fleet of the class reads of Secrets and ConfigMaps in the
/// namespaces its Gateways reference, as [`gantry_translate::references`] decides (the rule the
/// proxy watches by). `objects` holds the cluster's ReferenceGrants, BackendTLSPolicies and
/// ListenerSets (in the operator's scope); its Gateways are ignored. The fleets are those `class_objects` binds:
/// every Gateway's dedicated fleet, and the shared fleet when it runs or is wanted.
///
/// A fleet that obtains certificates itself (`certificates.acme`: the class's `params` for the
/// shared fleet, `dedicated_acme` of its Gateway for a dedicated one, whose own parameters may
/// set or replace it) is also bound the `<prefix>-acme` role in its namespace and in each
/// namespace of its Gateways and of the ListenerSets they admit ([`acme_namespaces`]).
#[allow(clippy::too_many_arguments)]
pub fn reference_bindings(
    class: &GatewayClass,
    params: &FleetParameters,
    shared_namespace: Option<&str>,
    gateways: &[Gateway],
    keep_shared_subject: bool,
    objects: &Store,
    owner: Option<&OwnerReference>,
    dedicated_acme: &dyn Fn(&Gateway) -> bool,
) -> Vec<DesiredObject> {
    let class_name = class.metadata.name.clone().unwrap_or_default();
    let namespaced = params.roles.namespace.is_some();
    let referenced = |served: &[&Gateway]| {
        let mut store = objects.clone();
        store.gateways = served
            .iter()
            .map(|g| {
                (
                    ObjectKey::new(
                        g.metadata.namespace.as_deref().unwrap_or_default(),
                        g.metadata.name.as_deref().unwrap_or_default(),
                    ),
                    Arc::new((*g).clone()),
                )
            })
            .collect();
        references::referenced(&store)
    };
    let mut fleets: Vec<FleetReferences> = gateways
        .iter()
        .filter_map(|g| {
            let fleet = dedicated_fleet(g);
            let owner = if namespaced {
                gateway_owner(g)
            } else {
                owner?.clone()
            };
            let acme = if dedicated_acme(g) {
                acme_namespaces(&fleet.namespace, &[g], objects, !namespaced)
            } else {
                BTreeSet::new()
            };
            Some(FleetReferences {
                namespace: fleet.namespace,
                name: fleet.name,
                referenced: referenced(&[g]),
                acme,
                owner,
            })
        })
        .collect();
    let shared_wanted = params.topology == Topology::Shared && !gateways.is_empty();
    if let Some(ns) = shared_namespace
        && let Some(owner) = owner
        && (shared_wanted || keep_shared_subject)
    {
        let all: Vec<&Gateway> = gateways.iter().collect();
        let acme = if params.acme.is_some() {
            acme_namespaces(ns, &all, objects, !namespaced)
        } else {
            BTreeSet::new()
        };
        fleets.push(FleetReferences {
            namespace: ns.to_string(),
            name: names::shared_fleet(&class_name),
            referenced: referenced(&all),
            acme,
            owner: owner.clone(),
        });
    }
    render::render_reference_bindings(&class_name, &params.roles, &fleets)
}

/// Where a fleet that obtains certificates itself writes: its own namespace (`fleet_namespace`,
/// where its ACME state Secret lives), the namespaces of its Gateways (their listeners'
/// certificate Secrets, and Events on the Gateways) and of the ListenerSets in `objects` they
/// admit ([`gantry_translate::listener_sets::admitted_namespaces`], the rule the proxy takes
/// their listeners by; Namespace labels read when `namespace_labels`). A ListenerSet naming a
/// Gateway that does not admit it grants nothing.
pub fn acme_namespaces(
    fleet_namespace: &str,
    gateways: &[&Gateway],
    objects: &Store,
    namespace_labels: bool,
) -> BTreeSet<String> {
    let mut namespaces = BTreeSet::from([fleet_namespace.to_string()]);
    for g in gateways {
        let key = ObjectKey::new(
            g.metadata.namespace.as_deref().unwrap_or_default(),
            g.metadata.name.as_deref().unwrap_or_default(),
        );
        namespaces.extend(gantry_translate::listener_sets::admitted_namespaces(
            objects,
            &key,
            g,
            namespace_labels,
        ));
        namespaces.insert(key.namespace);
    }
    namespaces
}
