//! The GatewayParameters schema of `certificates`: cert-manager's `issuerRef` or the fleet's
//! own `acme`, never both (a CEL rule the API server enforces), and the ACME fields as users
//! write them.

#![allow(clippy::unwrap_used)]

use gantry_crds::GatewayParameters;
use gantry_crds::params::{AcmeChallenge, AcmeKeyType, GatewayParametersSpec};
use kube::CustomResourceExt;
use serde_json::{Value, json};

fn certificates_schema() -> Value {
    let crd = serde_json::to_value(GatewayParameters::crd()).unwrap();
    crd.pointer("/spec/versions/0/schema/openAPIV3Schema/properties/spec/properties/certificates")
        .unwrap()
        .clone()
}

fn at<'a>(schema: &'a Value, path: &str) -> &'a Value {
    schema
        .pointer(path)
        .unwrap_or_else(|| panic!("no {path} in the schema"))
}

#[test]
fn issuer_ref_and_acme_exclude_each_other_by_a_cel_rule() {
    let schema = certificates_schema();
    let rules = at(&schema, "/x-kubernetes-validations");
    assert!(
        rules.as_array().unwrap().iter().any(|r| {
            r["rule"] == "!(has(self.issuerRef) && has(self.acme))"
                && r["message"] == "certificates: set issuerRef or acme, not both"
        }),
        "{rules}"
    );
}

#[test]
fn acme_fields_are_typed_for_users() {
    let schema = certificates_schema();
    let acme = at(&schema, "/properties/acme");
    assert_eq!(at(acme, "/required"), &json!(["directory"]));
    assert_eq!(
        at(acme, "/properties/directory/pattern"),
        r"^https://[^\s/?#]+(/[^\s]*)?$"
    );
    // A Gateway API duration, as every other duration of GatewayParameters.
    assert_eq!(
        at(acme, "/properties/renewBefore/pattern"),
        r"^([0-9]{1,5}(h|m|s|ms)){1,4}$"
    );
    let enum_of = |field: &str| {
        let values = at(acme, &format!("/properties/{field}/enum")).clone();
        serde_json::from_value::<Vec<String>>(values).unwrap()
    };
    assert_eq!(enum_of("challenge"), ["HTTP01", "TLSALPN01"]);
    assert_eq!(enum_of("keyType"), ["ECDSAP256", "RSA2048"]);
    assert_eq!(
        at(acme, "/properties/caCertificateRef/required"),
        &json!(["name"])
    );
    let eab = at(acme, "/properties/externalAccountBinding");
    assert_eq!(at(eab, "/required"), &json!(["hmacKeyRef", "keyID"]));
    assert_eq!(
        at(eab, "/properties/hmacKeyRef/required"),
        &json!(["key", "name"])
    );
}

#[test]
fn acme_parameters_read_as_documented() {
    let spec: GatewayParametersSpec = serde_json::from_value(json!({
        "certificates": {"acme": {
            "directory": "https://acme-v02.api.letsencrypt.org/directory",
            "email": "ops@example.com",
            "caCertificateRef": {"name": "acme-ca"},
            "externalAccountBinding": {
                "keyID": "kid-1",
                "hmacKeyRef": {"name": "acme-eab", "key": "hmac"},
            },
            "challenge": "TLSALPN01",
            "keyType": "RSA2048",
            "renewBefore": "720h",
        }},
    }))
    .unwrap();
    let acme = spec.certificates.unwrap().acme.unwrap();
    assert_eq!(acme.challenge, Some(AcmeChallenge::TlsAlpn01));
    assert_eq!(acme.key_type, Some(AcmeKeyType::Rsa2048));
    assert_eq!(acme.external_account_binding.unwrap().key_id, "kid-1");
    assert_eq!(acme.ca_certificate_ref.unwrap().key, None);
}
