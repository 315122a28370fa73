//! The render goldens' inputs (`testdata/render/<case>.in.yaml`: a GatewayClass,
//! GatewayParameters, Gateways, existing Secrets, and the ReferenceGrants, BackendTLSPolicies,
//! ListenerSets and Namespaces the controllers read) and the parameters they resolve to, as the
//! controllers resolve them.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use gantry_crds::GatewayParameters;
use gantry_crds::gateway::backendtlspolicies::BackendTlsPolicy;
use gantry_crds::gateway::gatewayclasses::GatewayClass;
use gantry_crds::gateway::gateways::Gateway;
use gantry_crds::gateway::listenersets::ListenerSet;
use gantry_crds::gateway::referencegrants::ReferenceGrant;
use gantry_operator::infra::plan;
use gantry_operator::infra::render::{SecretState, https_secrets};
use gantry_operator::params::{FleetParameters, OperatorDefaults};
use gantry_translate::store::{ObjectKey, Store};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::Value;

/// One case's objects.
pub struct Input {
    pub class: GatewayClass,
    pub parameters: Vec<GatewayParameters>,
    pub gateways: Vec<Gateway>,
    pub secrets: Vec<Secret>,
    /// ReferenceGrants, BackendTLSPolicies, ListenerSets and Namespaces: what decides which
    /// namespaces fleets read and which ports ListenerSets add.
    pub references: Store,
    /// The operator's command-line defaults the case is rendered with.
    pub defaults: OperatorDefaults,
}

/// Every `<case>.in.yaml`, sorted.
pub fn cases() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/render");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".in.yaml"))
        .collect();
    cases.sort();
    cases
}

/// The golden a case is compared with.
pub fn golden_path(case: &Path) -> PathBuf {
    PathBuf::from(case.to_string_lossy().replace(".in.yaml", ".out.yaml"))
}

/// The operator's command-line defaults in every case.
pub fn defaults() -> OperatorDefaults {
    OperatorDefaults {
        proxy_image: "ghcr.io/gantry-dev/gantry-proxy:test".to_string(),
        proxy_roles: gantry_operator::params::ProxyRoles::default(),
    }
}

/// Reads a case.
pub fn parse(path: &Path) -> Input {
    let text = std::fs::read_to_string(path).unwrap();
    let docs: Vec<Value> = serde_saphyr::from_str_multiple(&text).unwrap();
    let mut class = None;
    let mut input = Input {
        class: GatewayClass::default(),
        parameters: Vec::new(),
        gateways: Vec::new(),
        secrets: Vec::new(),
        references: Store::default(),
        defaults: defaults(),
    };
    for doc in docs.into_iter().filter(|d| !d.is_null()) {
        let kind = doc["kind"].as_str().unwrap_or_default().to_string();
        match kind.as_str() {
            "GatewayClass" => class = Some(serde_json::from_value(doc).unwrap()),
            "GatewayParameters" => input.parameters.push(serde_json::from_value(doc).unwrap()),
            "Gateway" => input.gateways.push(serde_json::from_value(doc).unwrap()),
            "Secret" => input.secrets.push(serde_json::from_value(doc).unwrap()),
            "ReferenceGrant" => {
                let grant: ReferenceGrant = serde_json::from_value(doc).unwrap();
                input
                    .references
                    .reference_grants
                    .insert(key(&grant.metadata), Arc::new(grant));
            }
            "BackendTLSPolicy" => {
                let policy: BackendTlsPolicy = serde_json::from_value(doc).unwrap();
                input
                    .references
                    .backend_tls_policies
                    .insert(key(&policy.metadata), Arc::new(policy));
            }
            "Namespace" => {
                let namespace: Namespace = serde_json::from_value(doc).unwrap();
                let name = namespace.metadata.name.clone().unwrap_or_default();
                input
                    .references
                    .namespaces
                    .insert(name, Arc::new(namespace));
            }
            "ListenerSet" => {
                let set: ListenerSet = serde_json::from_value(doc).unwrap();
                input
                    .references
                    .listener_sets
                    .insert(key(&set.metadata), Arc::new(set));
            }
            other => panic!("{}: unexpected kind {other:?}", path.display()),
        }
    }
    input.class = class.expect("every case has one GatewayClass");
    input
}

fn key(meta: &ObjectMeta) -> ObjectKey {
    ObjectKey::new(
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default(),
    )
}

impl Input {
    fn find_params(&self, ns: &str, name: &str) -> Option<&GatewayParameters> {
        self.parameters.iter().find(|p| {
            p.metadata.namespace.as_deref() == Some(ns) && p.metadata.name.as_deref() == Some(name)
        })
    }

    /// The GatewayParameters the class's parametersRef names, if present.
    pub fn class_parameters(&self) -> Option<&GatewayParameters> {
        let r = self.class.spec.parameters_ref.as_ref()?;
        self.find_params(r.namespace.as_deref().unwrap_or_default(), &r.name)
    }

    /// Where the class's shared fleet runs: the namespace of its parameters.
    pub fn shared_namespace(&self) -> Option<&str> {
        self.class_parameters()
            .and_then(|p| p.metadata.namespace.as_deref())
    }

    /// A Gateway's parameters (defaults < class < Gateway), or the InvalidParameters message.
    pub fn gateway_parameters(&self, gateway: &Gateway) -> Result<FleetParameters, String> {
        let ns = gateway.metadata.namespace.clone().unwrap_or_default();
        let own = gateway
            .spec
            .infrastructure
            .as_ref()
            .and_then(|i| i.parameters_ref.as_ref())
            .and_then(|r| self.find_params(&ns, &r.name));
        plan::gateway_parameters(
            self.class_parameters().map(|p| &p.spec),
            own.map(|p| &p.spec),
            &self.defaults,
        )
    }

    /// Whether the Gateway's dedicated fleet obtains certificates itself, as the class
    /// controller decides it ([`plan::sets_acme`]).
    pub fn gateway_acme(&self, gateway: &Gateway) -> bool {
        let ns = gateway.metadata.namespace.clone().unwrap_or_default();
        let own = gateway
            .spec
            .infrastructure
            .as_ref()
            .and_then(|i| i.parameters_ref.as_ref())
            .and_then(|r| self.find_params(&ns, &r.name));
        plan::sets_acme(
            self.class_parameters().map(|p| &p.spec),
            own.map(|p| &p.spec),
        )
    }

    /// The class's parameters alone (what a shared fleet runs with).
    pub fn class_fleet_parameters(&self) -> Result<FleetParameters, String> {
        plan::gateway_parameters(
            self.class_parameters().map(|p| &p.spec),
            None,
            &self.defaults,
        )
    }

    /// What the operator knows about the Secrets a Gateway's HTTPS listeners name.
    pub fn secrets_of(&self, gateway: &Gateway) -> BTreeMap<String, SecretState> {
        let ns = gateway.metadata.namespace.clone().unwrap_or_default();
        https_secrets(gateway)
            .into_keys()
            .map(|name| {
                let existing = self.secrets.iter().find(|s| {
                    s.metadata.name.as_deref() == Some(&name)
                        && s.metadata.namespace.as_deref() == Some(&ns)
                });
                let state = match existing {
                    None => SecretState::Missing,
                    Some(s) => SecretState::Present {
                        issued_by: s
                            .metadata
                            .annotations
                            .as_ref()
                            .and_then(|a| a.get("cert-manager.io/certificate-name").cloned()),
                    },
                };
                (name, state)
            })
            .collect()
    }
}
