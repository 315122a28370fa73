//! Render goldens: `testdata/render/<case>.in.yaml` (a GatewayClass, GatewayParameters, Gateways,
//! existing Secrets, ReferenceGrants, BackendTLSPolicies, ListenerSets, Namespaces) →
//! `<case>.out.yaml` (every object the operator would apply, in order).
//! `GANTRY_UPDATE_GOLDENS=1 cargo test -p gantry-operator --test render_goldens` rewrites them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::PathBuf;

use gantry_operator::infra::{overlay, plan};
use serde_json::{Value, json};
use support::render_cases::{Input, cases, golden_path, parse};

/// Renders what both controllers would apply for the case.
fn render(input: &Input) -> Vec<Value> {
    let mut out = Vec::new();
    for gateway in &input.gateways {
        let ns = gateway.metadata.namespace.clone().unwrap_or_default();
        let rendered = input.gateway_parameters(gateway).and_then(|params| {
            let objects = plan::gateway_objects(
                gateway,
                &params,
                &input.secrets_of(gateway),
                &input.references,
            );
            overlay::apply(objects, &params.overlays)
        });
        match rendered {
            Ok(objects) => out.extend(objects.into_iter().map(|o| o.body)),
            Err(message) => out.push(json!({
                "kind": "InvalidParameters",
                "gateway": format!("{ns}/{}", gateway.metadata.name.clone().unwrap_or_default()),
                "message": message,
            })),
        }
    }
    match input.class_fleet_parameters() {
        Ok(params) => {
            let objects = plan::class_objects(
                &input.class,
                &params,
                input.shared_namespace(),
                &input.gateways,
                false,
                Some(&plan::class_owner(&input.class)),
                &input.references,
            );
            match overlay::apply(objects, &params.overlays) {
                Ok(objects) => out.extend(objects.into_iter().map(|o| o.body)),
                Err(message) => {
                    out.push(json!({ "kind": "InvalidParameters", "class": message }));
                    return out;
                }
            }
            out.extend(
                plan::reference_bindings(
                    &input.class,
                    &params,
                    input.shared_namespace(),
                    &input.gateways,
                    false,
                    &input.references,
                    Some(&plan::class_owner(&input.class)),
                    &|g| input.gateway_acme(g),
                )
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

#[test]
fn render_goldens() {
    let update = std::env::var("GANTRY_UPDATE_GOLDENS").is_ok_and(|v| v == "1");
    let cases = cases();
    assert!(!cases.is_empty(), "no render cases found");
    let mut stale: Vec<PathBuf> = Vec::new();
    for case in cases {
        let out_path = golden_path(&case);
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

/// An upgrade of the operator restarts no proxy by itself: rendered as two operator versions
/// would render it (their default proxy images differ), every case gives the same objects but
/// for the image of the fleets that use the default. Nothing else in a pod template (no
/// version label or annotation, no timestamp) may depend on the operator.
#[test]
fn an_operator_upgrade_changes_nothing_but_the_default_image() {
    let image = |version: &str| format!("ghcr.io/gantry-dev/gantry-proxy:{version}");
    let (old, new) = (image("0.1.0"), image("0.1.1"));
    let mut defaulted = 0;
    for case in cases() {
        let mut before = parse(&case);
        before.defaults.proxy_image = old.clone();
        let mut after = parse(&case);
        after.defaults.proxy_image = new.clone();
        let (before, after) = (render(&before), render(&after));
        assert_eq!(before.len(), after.len(), "{}", case.display());
        for (b, a) in before.iter().zip(&after) {
            let b = to_yaml(std::slice::from_ref(b));
            if b.contains(&old) {
                defaulted += 1;
            }
            assert_eq!(
                b.replace(&old, &new),
                to_yaml(std::slice::from_ref(a)),
                "{}: an object differs beyond the default image",
                case.display()
            );
        }
    }
    assert!(defaulted > 0, "no case uses the default image");
}

/// Labels must be valid: values ≤ 63 characters, and names of Services ≤ 63. A fleet's Lease
/// is named as its proxies name it (a DNS subdomain, ≤ 253).
#[test]
fn rendered_names_and_label_values_fit_kubernetes_limits() {
    for case in cases() {
        for object in render(&parse(&case)) {
            let name = object["metadata"]["name"].as_str().unwrap_or_default();
            let max = if object["kind"] == "Lease" { 253 } else { 63 };
            assert!(
                name.len() <= max,
                "{}: name {name} too long",
                case.display()
            );
            if let Some(labels) = object["metadata"]["labels"].as_object() {
                for (key, value) in labels {
                    let value = value.as_str().unwrap_or_default();
                    assert!(value.len() <= 63, "{}: label {key}={value}", case.display());
                }
            }
        }
    }
}
