//! Fails when the committed CRD YAML differs from what the Rust types generate.

#![allow(clippy::unwrap_used)]

use std::path::Path;

use gantry_crds::crdgen::{GeneratedFile, gantry_crds, gateway_api_crds};

fn assert_current(dir: &str, files: &[GeneratedFile]) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for file in files {
        let path = root.join(dir).join(&file.name);
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == file.yaml,
            "{} is stale; run `cargo run -p gantry-crds --bin crdgen` and commit the result",
            path.display()
        );
    }
}

#[test]
fn gantry_crd_yaml_is_current() {
    let own = gantry_crds().unwrap();
    assert_current("crds/yaml", &own);
    assert_current("charts/gantry/crds", &own);
}

#[test]
fn gateway_api_crd_yaml_in_chart_is_current() {
    assert_current(
        "charts/gantry/gateway-api-crds",
        &gateway_api_crds().unwrap(),
    );
}

#[test]
fn gateway_status_conditions_are_map_lists() {
    let gateway = gateway_api_crds()
        .unwrap()
        .into_iter()
        .find(|f| f.name == "gateway.networking.k8s.io_gateways.yaml")
        .unwrap();
    assert!(gateway.yaml.contains("x-kubernetes-list-map-keys"));
    assert!(gateway.yaml.contains("api-approved.kubernetes.io"));
}

#[test]
fn generated_schemas_have_no_null_nodes() {
    for file in gantry_crds()
        .unwrap()
        .into_iter()
        .chain(gateway_api_crds().unwrap())
    {
        assert!(
            !file.yaml.contains(": null"),
            "{} has a null schema node",
            file.name
        );
    }
}

/// The generated Gateway API CRDs are not upstream's bundle and must not say they are: tools and
/// other implementations read `gateway.networking.k8s.io/bundle-version` and `channel` as "the
/// upstream bundle of that version is installed".
#[test]
fn generated_gateway_api_crds_do_not_claim_to_be_the_upstream_bundle() {
    for file in gateway_api_crds().unwrap() {
        assert!(
            !file
                .yaml
                .contains("gateway.networking.k8s.io/bundle-version")
                && !file.yaml.contains("gateway.networking.k8s.io/channel"),
            "{} carries an upstream bundle annotation",
            file.name
        );
        assert!(
            file.yaml
                .contains(gantry_crds::crdgen::GENERATED_FROM_ANNOTATION),
            "{} does not say what it was generated from",
            file.name
        );
    }
}
