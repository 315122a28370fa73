//! The GatewayClass and Gateway reconcilers and what they share: context, errors, conditions.

pub mod conditions;
pub mod gateway;
pub mod gatewayclass;
pub mod parameters;
pub mod run;

use std::sync::Arc;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;

use crate::infra::apply::{Applier, ApplyError};
use crate::metrics::Metrics;
use crate::params::OperatorDefaults;

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
    /// Only Gateways in this namespace, when set.
    pub namespace: Option<String>,
}

impl Context {
    /// A context for `client`.
    pub fn new(
        client: Client,
        defaults: OperatorDefaults,
        metrics: Arc<Metrics>,
        namespace: Option<String>,
    ) -> Self {
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
            namespace,
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
