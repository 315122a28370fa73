//! Which namespaces' Secrets and ConfigMaps a set of Gateways may read: the proxy watches
//! exactly those, and the operator grants each fleet read access in exactly those.
//!
//! A reference counts only when the translator could use it: a same-namespace reference, or a
//! cross-namespace one that a ReferenceGrant in the target namespace permits (the same rule as
//! [`crate::translate`] applies). So a Gateway that names a Secret in a namespace that did not
//! grant it never makes its fleet able to read that namespace.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::store::{ObjectKey, Store};
use crate::translate::{listener_set, reference_grant};

/// Namespaces holding referenced Secrets and referenced ConfigMaps.
///
/// A ListenerSet's listener `certificateRefs` count too, when its parent Gateway is in the
/// store and allows it; cross-namespace ones only where a ReferenceGrant from ListenerSets
/// permits them (GEP-1713: a grant to the Gateway is not inherited).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Referenced {
    /// Namespaces whose Secrets are referenced (listener `certificateRefs`,
    /// `spec.tls.backend.clientCertificateRef`).
    pub secrets: BTreeSet<String>,
    /// Namespaces whose ConfigMaps are referenced (`spec.tls.frontend` CA bundles, BackendTLSPolicy
    /// `caCertificateRefs`).
    pub config_maps: BTreeSet<String>,
}

/// Scans the store's Gateways (listener `certificateRefs`, which default to Secrets,
/// `spec.tls.backend.clientCertificateRef`, which defaults to a Secret, and any Secret or
/// ConfigMap reference under `spec.tls`) and every BackendTLSPolicy (`caCertificateRefs`, local
/// to the policy). Cross-namespace references from Gateways count only when a ReferenceGrant in
/// the store permits them.
pub fn referenced(store: &Store) -> Referenced {
    let mut out = Referenced::default();
    for (key, gateway) in &store.gateways {
        let mut found = Found::default();
        for listener in &gateway.spec.listeners {
            let refs = listener
                .tls
                .as_ref()
                .and_then(|t| t.certificate_refs.as_ref());
            for r in refs.into_iter().flatten() {
                let core = r.group.as_deref().unwrap_or("").is_empty();
                if core && r.kind.as_deref().unwrap_or("Secret") == "Secret" {
                    found.add("Secret", r.namespace.as_deref(), &r.name, &key.namespace);
                }
            }
        }
        if let Some(r) = gateway
            .spec
            .tls
            .as_ref()
            .and_then(|t| t.backend.as_ref())
            .and_then(|b| b.client_certificate_ref.as_ref())
            && r.group.as_deref().unwrap_or("").is_empty()
            && r.kind.as_deref().unwrap_or("Secret") == "Secret"
        {
            found.add("Secret", r.namespace.as_deref(), &r.name, &key.namespace);
        }
        if let Some(tls) = gateway
            .spec
            .tls
            .as_ref()
            .and_then(|t| serde_json::to_value(t).ok())
        {
            scan(&tls, &key.namespace, &mut found);
        }
        for (kind, target) in found.0 {
            if !reference_grant::gateway_permits(store, &key.namespace, kind, &target) {
                continue;
            }
            match kind {
                "Secret" => out.secrets.insert(target.namespace),
                _ => out.config_maps.insert(target.namespace),
            };
        }
    }
    for (key, set) in &store.listener_sets {
        if !listener_set::admitted_by_parent(store, key, set) {
            continue;
        }
        let mut found = Found::default();
        for listener in &set.spec.listeners {
            let refs = listener
                .tls
                .as_ref()
                .and_then(|t| t.certificate_refs.as_ref());
            for r in refs.into_iter().flatten() {
                let core = r.group.as_deref().unwrap_or("").is_empty();
                if core && r.kind.as_deref().unwrap_or("Secret") == "Secret" {
                    found.add("Secret", r.namespace.as_deref(), &r.name, &key.namespace);
                }
            }
        }
        for (kind, target) in found.0 {
            if reference_grant::listener_owner_permits(
                store,
                listener_set::KIND,
                &key.namespace,
                kind,
                &target,
            ) {
                out.secrets.insert(target.namespace);
            }
        }
    }
    for (key, policy) in &store.backend_tls_policies {
        // LocalObjectReferences: always the policy's own namespace, whatever else they say.
        let named_config_map = policy
            .spec
            .validation
            .ca_certificate_refs
            .iter()
            .flatten()
            .any(|r| r.group.is_empty() && r.kind == "ConfigMap");
        if named_config_map {
            out.config_maps.insert(key.namespace.clone());
        }
    }
    security_secrets(store, &mut out);
    out
}

/// Secrets of SecurityPolicies (`apiKeyAuth.credentialRefs`, `basicAuth.users`,
/// `oidc.clientSecret`, the ConfigMap or Secret of `jwt` `localJWKS.valueRef`) and Consumers
/// (`credentials.apiKeys`), across namespaces only where a ReferenceGrant permits the kind.
fn security_secrets(store: &Store, out: &mut Referenced) {
    use gantry_crds::security::SecretObjectReference;
    let mut add = |kind: &str, namespace: &str, r: &SecretObjectReference| {
        let secret = r.group.as_deref().unwrap_or("").is_empty()
            && r.kind.as_deref().unwrap_or("Secret") == "Secret";
        let target = r.namespace.as_deref().unwrap_or(namespace);
        let permitted = reference_grant::permits(
            store,
            &reference_grant::From {
                group: gantry_crds::GROUP,
                kind,
                namespace,
            },
            &reference_grant::To {
                group: "",
                kind: "Secret",
                namespace: target,
                name: &r.name,
            },
        );
        if secret && permitted {
            out.secrets.insert(target.to_owned());
        }
    };
    let mut local = Vec::new();
    for (key, policy) in &store.security_policies {
        let spec = &policy.spec;
        for r in spec.api_key_auth.iter().flat_map(|a| &a.credential_refs) {
            add(gantry_crds::SECURITY_POLICY_KIND, &key.namespace, r);
        }
        if let Some(b) = &spec.basic_auth {
            add(gantry_crds::SECURITY_POLICY_KIND, &key.namespace, &b.users);
        }
        if let Some(o) = &spec.oidc {
            add(
                gantry_crds::SECURITY_POLICY_KIND,
                &key.namespace,
                &o.client_secret,
            );
        }
        // `jwt` `localJWKS.valueRef`: a LocalObjectReference, the policy's own namespace.
        let value_refs = spec
            .jwt
            .iter()
            .flat_map(|j| &j.providers)
            .filter_map(|p| p.local_jwks.as_ref()?.value_ref.as_ref());
        for r in value_refs {
            if r.group.as_deref().unwrap_or("").is_empty() {
                local.push((r.kind.as_deref() == Some("Secret"), key.namespace.clone()));
            }
        }
    }
    for (key, consumer) in &store.consumers {
        for r in &consumer.spec.credentials.api_keys {
            add(gantry_crds::CONSUMER_KIND, &key.namespace, r);
        }
    }
    for (secret, namespace) in local {
        match secret {
            true => out.secrets.insert(namespace),
            false => out.config_maps.insert(namespace),
        };
    }
}

/// References found on one Gateway: kind and target.
#[derive(Default)]
struct Found(BTreeSet<(&'static str, ObjectKey)>);

impl Found {
    fn add(&mut self, kind: &'static str, namespace: Option<&str>, name: &str, default: &str) {
        self.0
            .insert((kind, ObjectKey::new(namespace.unwrap_or(default), name)));
    }
}

/// Every object with an explicit core `kind` of Secret or ConfigMap and a `name`.
fn scan(value: &Value, namespace: &str, out: &mut Found) {
    match value {
        Value::Object(map) => {
            let core = map
                .get("group")
                .and_then(Value::as_str)
                .unwrap_or("")
                .is_empty();
            let name = map.get("name").and_then(Value::as_str);
            let ns = map.get("namespace").and_then(Value::as_str);
            match (map.get("kind").and_then(Value::as_str), name) {
                (Some("Secret"), Some(name)) if core => out.add("Secret", ns, name, namespace),
                (Some("ConfigMap"), Some(name)) if core => {
                    out.add("ConfigMap", ns, name, namespace);
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
    use crate::store::load::load_store;

    const GATEWAY: &str = r#"
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
    frontend:
      default:
        validation:
          caCertificateRefs: [{group: "", kind: ConfigMap, name: ca, namespace: cas}]
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

    fn grant(namespace: &str, kind: &str) -> String {
        format!(
            r#"
---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {{name: gateways, namespace: {namespace}}}
spec:
  from: [{{group: gateway.networking.k8s.io, kind: Gateway, namespace: infra}}]
  to: [{{group: "", kind: {kind}}}]
"#
        )
    }

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn cross_namespace_references_count_only_where_a_reference_grant_permits_them() {
        let (store, _) = load_store([("t.yaml", GATEWAY)]).expect("loads");
        let refs = referenced(&store);
        assert_eq!(refs.secrets, set(&["infra"]));
        assert_eq!(refs.config_maps, set(&["apps"]));
    }

    #[test]
    fn listener_certificates_client_certificates_and_ca_bundles_name_their_namespaces() {
        let yaml = format!(
            "{GATEWAY}{}{}{}",
            grant("certs", "Secret"),
            grant("client-certs", "Secret"),
            grant("cas", "ConfigMap")
        );
        let (store, _) = load_store([("t.yaml", yaml.as_str())]).expect("loads");
        let refs = referenced(&store);
        assert_eq!(refs.secrets, set(&["certs", "client-certs", "infra"]));
        assert_eq!(refs.config_maps, set(&["apps", "cas"]));
    }

    #[test]
    fn a_grant_for_another_kind_does_not_count() {
        let yaml = format!("{GATEWAY}{}", grant("certs", "ConfigMap"));
        let (store, _) = load_store([("t.yaml", yaml.as_str())]).expect("loads");
        assert_eq!(referenced(&store).secrets, set(&["infra"]));
    }

    const LISTENER_SETS: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: infra}
spec:
  gatewayClassName: gantry
  allowedListeners: {namespaces: {from: All}}
  listeners: [{name: http, protocol: HTTP, port: 80}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: closed, namespace: infra}
spec:
  gatewayClassName: gantry
  listeners: [{name: http, protocol: HTTP, port: 81}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: ListenerSet
metadata: {name: ls, namespace: apps}
spec:
  parentRef: {name: gw, namespace: infra}
  listeners:
  - name: https
    protocol: HTTPS
    port: 443
    tls:
      certificateRefs:
      - name: local-cert
      - {name: granted, namespace: certs}
      - {name: gateway-grant-only, namespace: gateway-certs}
---
apiVersion: gateway.networking.k8s.io/v1
kind: ListenerSet
metadata: {name: not-allowed, namespace: other}
spec:
  parentRef: {name: closed, namespace: infra}
  listeners:
  - name: https
    protocol: HTTPS
    port: 443
    tls: {certificateRefs: [{name: cert}]}
---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {name: listener-sets, namespace: certs}
spec:
  from: [{group: gateway.networking.k8s.io, kind: ListenerSet, namespace: apps}]
  to: [{group: "", kind: Secret}]
---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {name: gateways, namespace: gateway-certs}
spec:
  from: [{group: gateway.networking.k8s.io, kind: Gateway, namespace: apps}]
  to: [{group: "", kind: Secret}]
"#;

    #[test]
    fn listener_set_certificates_count_when_their_gateway_allows_them_and_a_grant_from_listener_sets_permits()
     {
        let (store, _) = load_store([("t.yaml", LISTENER_SETS)]).expect("loads");
        // apps: the ListenerSet's own namespace; certs: granted to ListenerSets; not
        // gateway-certs (granted to Gateways only) nor other (its Gateway does not allow it).
        assert_eq!(referenced(&store).secrets, set(&["apps", "certs"]));
    }

    #[test]
    fn an_oidc_client_secret_names_its_namespace_where_permitted() {
        let yaml = r#"
apiVersion: gantry.dev/v1alpha1
kind: SecurityPolicy
metadata: {name: login, namespace: shop}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: HTTPRoute, name: app}]
  oidc:
    provider: {issuer: "https://idp.example.com"}
    clientID: app
    clientSecret: {name: oidc}
    redirectURL: https://app.example.com/oauth2/callback
---
apiVersion: gantry.dev/v1alpha1
kind: SecurityPolicy
metadata: {name: elsewhere, namespace: shop}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: HTTPRoute, name: other}]
  oidc:
    provider: {issuer: "https://idp.example.com"}
    clientID: app
    clientSecret: {name: oidc, namespace: vault}
    redirectURL: https://app.example.com/oauth2/callback
"#;
        let (store, _) = load_store([("t.yaml", yaml)]).expect("loads");
        // vault has no ReferenceGrant for SecurityPolicies of shop.
        assert_eq!(referenced(&store).secrets, set(&["shop"]));
    }
}
