//! Which namespaces' Secrets and ConfigMaps the served objects reference, so only those are
//! watched.

use std::collections::BTreeSet;

use serde_json::Value;

use gantry_translate::store::Store;

/// Namespaces holding referenced Secrets and referenced ConfigMaps.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Referenced {
    pub secrets: BTreeSet<String>,
    pub config_maps: BTreeSet<String>,
}

/// Scans the Gateways (listener `certificateRefs`, which default to Secrets, and any Secret or
/// ConfigMap reference under `spec.tls`) and BackendTLSPolicies (`caCertificateRefs` and any
/// other Secret or ConfigMap reference).
pub fn referenced(store: &Store) -> Referenced {
    let mut out = Referenced::default();
    for (key, gateway) in &store.gateways {
        for listener in &gateway.spec.listeners {
            let refs = listener
                .tls
                .as_ref()
                .and_then(|t| t.certificate_refs.as_ref());
            for r in refs.into_iter().flatten() {
                let core = r.group.as_deref().unwrap_or("").is_empty();
                if core && r.kind.as_deref().unwrap_or("Secret") == "Secret" {
                    out.secrets
                        .insert(r.namespace.clone().unwrap_or_else(|| key.namespace.clone()));
                }
            }
        }
        // spec.tls.backend.clientCertificateRef: its kind defaults to Secret.
        if let Some(r) = gateway
            .spec
            .tls
            .as_ref()
            .and_then(|t| t.backend.as_ref())
            .and_then(|b| b.client_certificate_ref.as_ref())
            && r.group.as_deref().unwrap_or("").is_empty()
            && r.kind.as_deref().unwrap_or("Secret") == "Secret"
        {
            out.secrets
                .insert(r.namespace.clone().unwrap_or_else(|| key.namespace.clone()));
        }
        if let Some(tls) = gateway
            .spec
            .tls
            .as_ref()
            .and_then(|t| serde_json::to_value(t).ok())
        {
            scan(&tls, &key.namespace, &mut out);
        }
    }
    for (key, policy) in &store.backend_tls_policies {
        if let Ok(spec) = serde_json::to_value(&policy.spec) {
            scan(&spec, &key.namespace, &mut out);
        }
    }
    out
}

/// Every object with an explicit core `kind` of Secret or ConfigMap and a `name`.
fn scan(value: &Value, namespace: &str, out: &mut Referenced) {
    match value {
        Value::Object(map) => {
            let core = map
                .get("group")
                .and_then(Value::as_str)
                .unwrap_or("")
                .is_empty();
            let has_name = map.get("name").is_some_and(Value::is_string);
            let ns = map
                .get("namespace")
                .and_then(Value::as_str)
                .unwrap_or(namespace)
                .to_owned();
            match map.get("kind").and_then(Value::as_str) {
                Some("Secret") if core && has_name => {
                    out.secrets.insert(ns);
                }
                Some("ConfigMap") if core && has_name => {
                    out.config_maps.insert(ns);
                }
                _ => {}
            }
            map.values().for_each(|v| scan(v, namespace, out));
        }
        Value::Array(items) => items.iter().for_each(|v| scan(v, namespace, out)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_translate::store::load::load_store;

    #[test]
    fn listener_certificates_and_policy_ca_bundles_name_their_namespaces() {
        let yaml = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: infra}
spec:
  gatewayClassName: gantry
  listeners:
  - name: https
    protocol: HTTPS
    port: 443
    tls:
      certificateRefs:
      - name: local-cert
      - name: shared-cert
        namespace: certs
  tls:
    backend:
      clientCertificateRef: {name: client, namespace: client-certs}
---
apiVersion: gateway.networking.k8s.io/v1
kind: BackendTLSPolicy
metadata: {name: p, namespace: apps}
spec:
  targetRefs: [{group: "", kind: Service, name: svc}]
  validation:
    hostname: svc.apps
    caCertificateRefs: [{group: "", kind: ConfigMap, name: ca}]
"#;
        let (store, _) = load_store([("t.yaml", yaml)]).expect("loads");
        let refs = referenced(&store);
        assert_eq!(
            refs.secrets,
            BTreeSet::from([
                "certs".to_owned(),
                "client-certs".to_owned(),
                "infra".to_owned()
            ])
        );
        assert_eq!(refs.config_maps, BTreeSet::from(["apps".to_owned()]));
    }
}
