//! A policy's `targetRefs` resolved against the store: a Service of the policy's namespace,
//! optionally one of its ports by name, or why the reference does not attach.

use k8s_openapi::api::core::v1::ServicePort;

use crate::store::{ObjectKey, Store};
use crate::translate::conditions::Problem;

/// PolicyConditionReason for a target that does not exist or is not a Service.
pub const REASON_TARGET_NOT_FOUND: &str = "TargetNotFound";

/// What a target reference points at.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Target {
    pub service: ObjectKey,
    /// `sectionName`: one port of the Service, by name; `None` is every port.
    pub port_name: Option<String>,
}

impl Target {
    /// `Service ns/name` or `Service ns/name port http`, for messages.
    pub fn describe(&self) -> String {
        match &self.port_name {
            Some(port) => format!("Service {} port {port}", self.service),
            None => format!("Service {}", self.service),
        }
    }
}

/// A target reference that does not attach.
#[derive(Clone, Debug)]
pub struct TargetProblem {
    /// The Service it names, when it names one (possibly one that does not exist): the problem
    /// is shown on the Gateways whose routes use that Service.
    pub service: Option<ObjectKey>,
    pub problem: Problem,
}

/// One `targetRefs` entry, whatever the policy type spells it as.
#[derive(Clone, Copy, Debug)]
pub struct TargetRef<'a> {
    pub group: &'a str,
    pub kind: &'a str,
    pub name: &'a str,
    pub section_name: Option<&'a str>,
}

/// What a reference to a Service that does not exist is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MissingService {
    /// A target that waits for the Service, silently: nothing can use a missing Service
    /// (BackendTLSPolicy).
    Waits,
    /// `TargetNotFound`, shown on the Gateways whose routes reference the missing Service.
    NotFound,
}

/// Resolves one reference of a policy in `namespace` (targetRefs carry no namespace: a policy
/// applies to Services of its own namespace). Only core Services can be targeted; a
/// `sectionName` names one of the Service's ports: LocalPolicyTargetReferenceWithSectionName,
/// "If a SectionName is specified, but does not exist on the targeted object, the Policy must
/// fail to attach".
pub fn resolve(
    store: &Store,
    namespace: &str,
    t: TargetRef<'_>,
    missing: MissingService,
) -> Result<Target, TargetProblem> {
    if !t.group.is_empty() || t.kind != "Service" {
        return Err(TargetProblem {
            service: None,
            problem: Problem::new(
                REASON_TARGET_NOT_FOUND,
                format!(
                    "targetRef {} has group {:?} and kind {}; only core Services can be targeted",
                    t.name, t.group, t.kind
                ),
            ),
        });
    }
    let service = ObjectKey::new(namespace, t.name);
    let port_name = t.section_name.filter(|s| !s.is_empty()).map(str::to_owned);
    let Some(svc) = store.services.get(&service) else {
        return match missing {
            MissingService::Waits => Ok(Target { service, port_name }),
            MissingService::NotFound => Err(TargetProblem {
                service: Some(service.clone()),
                problem: Problem::new(
                    REASON_TARGET_NOT_FOUND,
                    format!("targetRef Service {service} does not exist"),
                ),
            }),
        };
    };
    if let Some(section) = &port_name {
        let ports = svc
            .spec
            .as_ref()
            .and_then(|s| s.ports.as_deref())
            .unwrap_or_default();
        if !ports.iter().any(|p| p.name.as_deref() == Some(section)) {
            let names: Vec<&str> = ports.iter().filter_map(|p| p.name.as_deref()).collect();
            return Err(TargetProblem {
                service: Some(service.clone()),
                problem: Problem::new(
                    REASON_TARGET_NOT_FOUND,
                    format!(
                        "Service {service} has no port named {section:?} (its named ports: {}); sectionName names a Service port",
                        if names.is_empty() {
                            "none".to_owned()
                        } else {
                            names.join(", ")
                        }
                    ),
                ),
            });
        }
    }
    Ok(Target { service, port_name })
}

/// The ports of the Service a target covers (none when the Service does not exist).
pub fn targeted_ports<'s>(store: &'s Store, target: &Target) -> Vec<&'s ServicePort> {
    let ports = store
        .services
        .get(&target.service)
        .and_then(|s| s.spec.as_ref())
        .and_then(|s| s.ports.as_deref())
        .unwrap_or_default();
    ports
        .iter()
        .filter(|p| {
            target
                .port_name
                .as_ref()
                .is_none_or(|name| p.name.as_ref() == Some(name))
        })
        .collect()
}

/// The name of the Service port numbered `port`, if it has one.
pub fn port_name(store: &Store, service: &ObjectKey, port: u16) -> Option<String> {
    store
        .services
        .get(service)
        .and_then(|s| s.spec.as_ref())
        .and_then(|s| s.ports.as_ref())
        .and_then(|ports| ports.iter().find(|p| p.port == i32::from(port)))
        .and_then(|p| p.name.clone())
}
