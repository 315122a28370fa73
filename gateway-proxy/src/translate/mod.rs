//! The translator: object store in, routing IR and statuses out.
//!
//! Invariant: it never fails and never does IO. Bad input becomes a status condition with the
//! spec's reason, and the bad part is dropped; everything else is still translated.

use crate::ir::Ir;
use crate::status::ObjectStatus;
use crate::store::{ObjectKey, Store};

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

/// Translates the store. Pure and deterministic.
pub fn translate(_store: &Store, _options: &TranslateOptions) -> Translation {
    Translation::default()
}
