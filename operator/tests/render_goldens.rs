//! Render goldens: `testdata/render/<case>.in.yaml` (a GatewayClass, GatewayParameters, Gateways,
//! existing Secrets) → `<case>.out.yaml` (every object the operator would apply, in order).
//! `GANTRY_UPDATE_GOLDENS=1 cargo test -p gantry-operator --test render_goldens` rewrites them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use gantry_crds::GatewayParameters;
use gantry_crds::gateway::gatewayclasses::GatewayClass;
use gantry_crds::gateway::gateways::Gateway;
use gantry_operator::infra::plan;
use gantry_operator::infra::render::{SecretState, https_secrets};
use gantry_operator::params::OperatorDefaults;
use k8s_openapi::api::core::v1::Secret;
use serde_json::{Value, json};

struct Input {
    class: GatewayClass,
    parameters: Vec<GatewayParameters>,
    gateways: Vec<Gateway>,
    secrets: Vec<Secret>,
}

fn parse(path: &Path) -> Input {
    let text = std::fs::read_to_string(path).unwrap();
    let docs: Vec<Value> = serde_saphyr::from_str_multiple(&text).unwrap();
    let mut class = None;
    let mut input = Input {
        class: GatewayClass::default(),
        parameters: Vec::new(),
        gateways: Vec::new(),
        secrets: Vec::new(),
    };
    for doc in docs.into_iter().filter(|d| !d.is_null()) {
        let kind = doc["kind"].as_str().unwrap_or_default().to_string();
        match kind.as_str() {
            "GatewayClass" => class = Some(serde_json::from_value(doc).unwrap()),
            "GatewayParameters" => input.parameters.push(serde_json::from_value(doc).unwrap()),
            "Gateway" => input.gateways.push(serde_json::from_value(doc).unwrap()),
            "Secret" => input.secrets.push(serde_json::from_value(doc).unwrap()),
            other => panic!("{}: unexpected kind {other:?}", path.display()),
        }
    }
    input.class = class.expect("every case has one GatewayClass");
    input
}

fn find_params<'a>(
    all: &'a [GatewayParameters],
    ns: &str,
    name: &str,
) -> Option<&'a GatewayParameters> {
    all.iter().find(|p| {
        p.metadata.namespace.as_deref() == Some(ns) && p.metadata.name.as_deref() == Some(name)
    })
}

/// Renders what both controllers would apply for the case.
fn render(input: &Input) -> Vec<Value> {
    let defaults = OperatorDefaults {
        proxy_image: "ghcr.io/gantry-dev/gantry-proxy:test".to_string(),
    };
    let class_ref = input.class.spec.parameters_ref.as_ref();
    let class_params = class_ref.and_then(|r| {
        find_params(
            &input.parameters,
            r.namespace.as_deref().unwrap_or_default(),
            &r.name,
        )
    });
    let class_spec = class_params.map(|p| &p.spec);
    let mut out = Vec::new();
    for gateway in &input.gateways {
        let ns = gateway.metadata.namespace.clone().unwrap_or_default();
        let gateway_params = gateway
            .spec
            .infrastructure
            .as_ref()
            .and_then(|i| i.parameters_ref.as_ref())
            .and_then(|r| find_params(&input.parameters, &ns, &r.name));
        match plan::gateway_parameters(class_spec, gateway_params.map(|p| &p.spec), &defaults) {
            Ok(params) => {
                let secrets: BTreeMap<String, SecretState> = https_secrets(gateway)
                    .into_keys()
                    .map(|name| {
                        let existing = input.secrets.iter().find(|s| {
                            s.metadata.name.as_deref() == Some(&name)
                                && s.metadata.namespace.as_deref() == Some(&ns)
                        });
                        let state = match existing {
                            None => SecretState::Missing,
                            Some(s) => SecretState::Present {
                                issued_by: s.metadata.annotations.as_ref().and_then(|a| {
                                    a.get("cert-manager.io/certificate-name").cloned()
                                }),
                            },
                        };
                        (name, state)
                    })
                    .collect();
                out.extend(
                    plan::gateway_objects(gateway, &params, &secrets)
                        .into_iter()
                        .map(|o| o.body),
                );
            }
            Err(message) => out.push(json!({
                "kind": "InvalidParameters",
                "gateway": format!("{ns}/{}", gateway.metadata.name.clone().unwrap_or_default()),
                "message": message,
            })),
        }
    }
    match plan::gateway_parameters(class_spec, None, &defaults) {
        Ok(params) => {
            let shared_ns = class_params.and_then(|p| p.metadata.namespace.as_deref());
            out.extend(
                plan::class_objects(&input.class, &params, shared_ns, &input.gateways, false)
                    .into_iter()
                    .map(|o| o.body),
            );
        }
        Err(message) => out.push(json!({ "kind": "InvalidParameters", "class": message })),
    }
    out
}

fn to_yaml(objects: &[Value]) -> String {
    let mut text = String::new();
    for object in objects {
        text.push_str("---\n");
        text.push_str(&serde_saphyr::to_string(object).unwrap());
    }
    text
}

fn cases() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/render");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".in.yaml"))
        .collect();
    cases.sort();
    cases
}

#[test]
fn render_goldens() {
    let update = std::env::var("GANTRY_UPDATE_GOLDENS").is_ok_and(|v| v == "1");
    let cases = cases();
    assert!(!cases.is_empty(), "no render cases found");
    let mut stale = Vec::new();
    for case in cases {
        let out_path = PathBuf::from(case.to_string_lossy().replace(".in.yaml", ".out.yaml"));
        let rendered = to_yaml(&render(&parse(&case)));
        if update {
            std::fs::write(&out_path, &rendered).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&out_path).unwrap_or_default();
        if expected != rendered {
            pretty_assertions::assert_eq!(expected, rendered, "{}", out_path.display());
            stale.push(out_path);
        }
    }
    assert!(stale.is_empty(), "stale goldens: {stale:?}");
}

/// Labels must be valid: values ≤ 63 characters, and names of Services ≤ 63.
#[test]
fn rendered_names_and_label_values_fit_kubernetes_limits() {
    for case in cases() {
        for object in render(&parse(&case)) {
            let name = object["metadata"]["name"].as_str().unwrap_or_default();
            assert!(name.len() <= 63, "{}: name {name} too long", case.display());
            if let Some(labels) = object["metadata"]["labels"].as_object() {
                for (key, value) in labels {
                    let value = value.as_str().unwrap_or_default();
                    assert!(value.len() <= 63, "{}: label {key}={value}", case.display());
                }
            }
        }
    }
}
