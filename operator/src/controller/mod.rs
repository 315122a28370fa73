//! The GatewayClass and Gateway reconcilers and what they share: context, errors, conditions.

pub mod conditions;
pub mod gateway;
pub mod gatewayclass;
pub mod listener_sets;
pub mod objects;
mod overlays;
pub mod parameters;
pub mod run;
pub mod workload;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;

use gantry_crds::gateway::gatewayclasses::{
    GatewayClass, GatewayClassParametersRef, GatewayClassSpec,
};
use kube::{Api, ResourceExt};

use crate::infra::apply::{Applier, ApplyError, is_not_found};
use crate::metrics::Metrics;
use crate::params::OperatorDefaults;

/// What the operator reconciles.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Scope {
    /// Every namespace: GatewayClasses are read (and their status written) from the cluster,
    /// fleets are bound to the proxies' ClusterRoles.
    #[default]
    Cluster,
    /// One namespace, with Roles only (`--namespace` and `--gateway-class`): only namespaced
    /// objects of `namespace` are read or written. GatewayClasses are cluster-scoped, which no
    /// Role can grant, so the classes served come from the command line and no GatewayClass is
    /// read, nor its status written; fleets are bound to the proxies' Roles there.
    Namespace {
        /// The one namespace.
        namespace: String,
        /// The classes whose Gateways in `namespace` are served.
        classes: Vec<ServedClass>,
    },
}

impl Scope {
    /// The one namespace of a namespace-scoped install.
    pub fn namespace(&self) -> Option<&str> {
        match self {
            Scope::Cluster => None,
            Scope::Namespace { namespace, .. } => Some(namespace),
        }
    }
}

/// A GatewayClass served in a namespace-scoped install (`--gateway-class NAME[=PARAMETERS]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServedClass {
    /// The class name Gateways give as `gatewayClassName`.
    pub name: String,
    /// The GatewayParameters (in the install's namespace) that parameterise the class, as a
    /// GatewayClass's `parametersRef` would.
    pub parameters: Option<String>,
}

impl ServedClass {
    /// Parses `NAME` or `NAME=PARAMETERS`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (name, parameters) = match s.split_once('=') {
            Some((name, parameters)) => (name, Some(parameters)),
            None => (s, None),
        };
        if name.is_empty() || parameters.is_some_and(str::is_empty) {
            return Err(format!(
                "`{s}` is not NAME or NAME=PARAMETERS (a GatewayClass name, and optionally the \
                 GatewayParameters in --namespace that parameterise it)"
            ));
        }
        Ok(Self {
            name: name.to_string(),
            parameters: parameters.map(str::to_string),
        })
    }

    /// The GatewayClass this stands for, as the operator would read it: our controller, and a
    /// `parametersRef` to the GatewayParameters in `namespace`. It has no uid, so nothing may
    /// be owned by it.
    pub fn class(&self, namespace: &str) -> GatewayClass {
        GatewayClass::new(
            &self.name,
            GatewayClassSpec {
                controller_name: gantry_crds::CONTROLLER_NAME.to_string(),
                description: None,
                parameters_ref: self
                    .parameters
                    .as_ref()
                    .map(|name| GatewayClassParametersRef {
                        group: gantry_crds::GROUP.to_string(),
                        kind: gantry_crds::GATEWAY_PARAMETERS_KIND.to_string(),
                        name: name.clone(),
                        namespace: Some(namespace.to_string()),
                    }),
            },
        )
    }
}

/// Shared by every reconcile.
pub struct Context {
    /// API client.
    pub client: Client,
    /// Applies and prunes generated objects.
    pub applier: Applier,
    /// Command-line defaults.
    pub defaults: OperatorDefaults,
    /// Operator metrics.
    pub metrics: Arc<Metrics>,
    /// Publishes Events on the objects being reconciled.
    pub recorder: Recorder,
    /// What is reconciled.
    pub scope: Scope,
    /// Optional kinds found not served, each said once in the log.
    not_served: Mutex<BTreeSet<&'static str>>,
}

impl Context {
    /// A context for `client`. In a namespace-scoped `scope` fleets are bound to the proxies'
    /// Roles of that namespace (`defaults.proxy_roles.namespace` follows the scope).
    pub fn new(
        client: Client,
        mut defaults: OperatorDefaults,
        metrics: Arc<Metrics>,
        scope: Scope,
    ) -> Self {
        defaults.proxy_roles.namespace = scope.namespace().map(str::to_string);
        let reporter = Reporter {
            controller: "gantry-operator".to_string(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Self {
            applier: Applier::new(client.clone()),
            recorder: Recorder::new(client.clone(), reporter),
            client,
            defaults,
            metrics,
            scope,
            not_served: Mutex::new(BTreeSet::new()),
        }
    }

    /// Notes that the API server does not serve `kind` (its CRD is not installed): a warning
    /// the first time, so a cluster without an optional CRD is told once, not at every
    /// reconcile or watch retry.
    pub fn not_served(&self, kind: &'static str) {
        let first = self
            .not_served
            .lock()
            .map(|mut kinds| kinds.insert(kind))
            .unwrap_or(false);
        if first {
            tracing::warn!(
                kind,
                "not served by the API server (CRD not installed?); treated as empty until it is"
            );
        } else {
            tracing::debug!(kind, "still not served");
        }
    }

    /// Only objects in this namespace, in a namespace-scoped install.
    pub fn namespace(&self) -> Option<&str> {
        self.scope.namespace()
    }

    /// The GatewayClass `name` when it is ours: read from the cluster, or in a namespace-scoped
    /// install one of the classes given on the command line (never read).
    pub async fn class(&self, name: &str) -> Result<Option<GatewayClass>, Error> {
        match &self.scope {
            Scope::Namespace { namespace, classes } => Ok(classes
                .iter()
                .find(|c| c.name == name)
                .map(|c| c.class(namespace))),
            Scope::Cluster => {
                let classes: Api<GatewayClass> = Api::all(self.client.clone());
                match classes.get(name).await {
                    Ok(class) if class.spec.controller_name == gantry_crds::CONTROLLER_NAME => {
                        Ok(Some(class))
                    }
                    Ok(_) => Ok(None),
                    Err(e) if is_not_found(&e) => Ok(None),
                    Err(e) => Err(Error::kube(format!("reading GatewayClass {name}"), e)),
                }
            }
        }
    }

    /// Publishes a Warning Event on a GatewayClass; in a namespace-scoped install, which may
    /// write Events only in its namespace (a cluster-scoped object's go to `default`), a log
    /// line instead.
    pub async fn warn_class(&self, class: &GatewayClass, reason: &str, note: String) {
        if self.namespace().is_some() {
            tracing::warn!(gatewayclass = %class.name_any(), reason, "{note}");
        } else {
            self.warn(&event_reference(class), reason, note).await;
        }
    }

    /// Publishes a Warning Event on `object`; a failure to publish is only logged.
    pub async fn warn(&self, object: &ObjectReference, reason: &str, note: String) {
        let event = Event {
            type_: EventType::Warning,
            reason: reason.to_string(),
            note: Some(note.chars().take(1000).collect()),
            action: "Reconcile".to_string(),
            secondary: None,
        };
        if let Err(error) = self.recorder.publish(&event, object).await {
            tracing::warn!(%error, "could not publish event");
        }
    }
}

/// Why a reconcile failed. Invalid user input is not an error: it becomes a status condition.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Applying or deleting a generated object failed.
    #[error(transparent)]
    Apply(#[from] ApplyError),
    /// Another API call failed.
    #[error("{action}: {source}")]
    Kube {
        /// What was being done.
        action: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
}

impl Error {
    /// Wraps an API error with what was being done.
    pub fn kube(action: impl Into<String>, source: kube::Error) -> Self {
        Self::Kube {
            action: action.into(),
            source,
        }
    }

    /// A short label for the errors metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Apply(e) => e.verb,
            Error::Kube { .. } => "api",
        }
    }
}

/// A reference for Events, from the object's reflector reference.
pub fn event_reference<K: kube::Resource<DynamicType = ()>>(object: &K) -> ObjectReference {
    ObjectRef::from_obj(object).into()
}
