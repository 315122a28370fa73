//! GatewayClasses: which are ours (controllerName), and their `Accepted` status.

use std::collections::BTreeSet;

use super::conditions as c;
use super::{API_VERSION, TranslateOptions, generation_of};
use crate::status::{GatewayClassStatus, ObjectStatus, StatusBody};
use crate::store::Store;

/// Names of our GatewayClasses, and their statuses. Classes of other controllers get no
/// status from us.
pub fn our_classes(
    store: &Store,
    options: &TranslateOptions,
) -> (BTreeSet<String>, Vec<ObjectStatus>) {
    let mut names = BTreeSet::new();
    let mut statuses = Vec::new();
    for (name, class) in &store.gateway_classes {
        if class.spec.controller_name != options.controller_name {
            continue;
        }
        names.insert(name.clone());
        let generation = generation_of(&class.metadata);
        statuses.push(ObjectStatus {
            api_version: API_VERSION.into(),
            kind: "GatewayClass".into(),
            namespace: String::new(),
            name: name.clone(),
            status: StatusBody::GatewayClass(GatewayClassStatus {
                conditions: vec![c::ok(
                    c::ACCEPTED,
                    c::REASON_ACCEPTED,
                    format!("GatewayClass is accepted by {}", options.controller_name),
                    generation,
                )],
            }),
        });
    }
    (names, statuses)
}
