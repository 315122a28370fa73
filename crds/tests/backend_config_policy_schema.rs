//! The BackendConfigPolicy schema keeps what the API requires: fields that are `Option`s in Rust
//! (so that a file without them is reported `Invalid` rather than refused) are still required
//! by the API server, and Envoy Gateway's CEL rules are there.

#![allow(clippy::unwrap_used)]

use gantry_crds::BackendConfigPolicy;
use kube::CustomResourceExt;
use serde_json::Value;

fn spec_schema() -> Value {
    let crd = serde_json::to_value(BackendConfigPolicy::crd()).unwrap();
    crd.pointer("/spec/versions/0/schema/openAPIV3Schema/properties/spec")
        .unwrap()
        .clone()
}

fn at<'a>(schema: &'a Value, path: &str) -> &'a Value {
    schema
        .pointer(path)
        .unwrap_or_else(|| panic!("no {path} in the schema"))
}

#[test]
fn fields_the_api_requires_are_required_in_the_schema() {
    let spec = spec_schema();
    let hash = "/properties/loadBalancer/properties/consistentHash/properties";
    for (path, field) in [
        ("", "targetRefs"),
        (&format!("{hash}/cookie") as &str, "name"),
        (&format!("{hash}/header"), "name"),
        (&format!("{hash}/queryParams/items"), "name"),
        ("/properties/loadBalancer/properties/slowStart", "window"),
        (
            "/properties/healthCheck/properties/active/properties/http",
            "path",
        ),
        ("/properties/healthCheck/properties/active", "type"),
        ("/properties/targetRefs/items", "group"),
    ] {
        let required = at(&spec, &format!("{path}/required"));
        assert!(
            required.as_array().unwrap().contains(&Value::from(field)),
            "{path}: {field} is not required ({required})"
        );
    }
    assert_eq!(
        at(&spec, "/properties/loadBalancer/properties/type/default"),
        "RoundRobin"
    );
}

#[test]
fn envoy_gateways_rules_are_cel_validations() {
    let spec = spec_schema().to_string();
    for rule in [
        "self.type == 'ConsistentHash' ? has(self.consistentHash) : !has(self.consistentHash)",
        "self.type in ['Random', 'ConsistentHash'] ? !has(self.slowStart) : true",
        "self.type == 'Cookie' ? has(self.cookie) : !has(self.cookie)",
        "self.type == 'HTTP' ? has(self.http) : !has(self.http)",
        "self.all(r, r.group == '' && r.kind == 'Service')",
    ] {
        assert!(spec.contains(rule), "missing CEL rule {rule}");
    }
}
