//! Which listener certificates an ACME client should obtain: pure, from the store, so the
//! manager that orders them (in the proxy) and its tests agree with the translator on which
//! Gateways and listeners are served.
//!
//! A certificate is wanted for a `certificateRefs` entry of an HTTPS listener (or a TLS
//! listener in `Terminate` mode) of a Gateway we serve, or of a ListenerSet attached to one
//! and admitted by its `allowedListeners` (the same [`listener_set::for_gateway`] the
//! translator merges listeners with), when the entry names a core Secret in the namespace of
//! the listener's owner (the Gateway, or the ListenerSet) that does not exist, that a listener
//! opts in for with the TLS option `gantry.dev/acme: "true"` ([`OPT_IN_OPTION`]), or that an ACME
//! client wrote (it carries [`ISSUER_ANNOTATION`]; in Kubernetes mode the issued certificate is
//! that Secret, renewed in place). Cross-namespace references are never ordered for: a
//! ReferenceGrant permits reading a Secret, not creating it.

use std::collections::BTreeMap;

use gantry_crds::gateway::gateways::{GatewayListeners, GatewayListenersTlsMode};

use super::TranslateOptions;
use super::gateway_class::our_classes;
use super::listener_set;
use crate::store::{ObjectKey, Store};

/// The annotation on a certificate Secret an ACME client wrote, naming the ACME directory
/// it came from. A Secret without it is the user's and never replaced.
pub const ISSUER_ANNOTATION: &str = "gantry.dev/acme-directory";

/// The listener TLS option (`tls.options`) that asks for an ACME certificate even though the
/// Secret exists: the Secret (a placeholder, say) is served until the first certificate is
/// issued, then replaced by it.
pub const OPT_IN_OPTION: &str = "gantry.dev/acme";

/// A certificate Secret to obtain, and the hostname it is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WantedCertificate {
    /// The hostname of the first listener (by Gateway, its own listeners then its
    /// ListenerSets' in precedence order) naming the Secret; ACME orders one name per
    /// certificate.
    pub hostname: Option<String>,
    /// Why no certificate can be ordered, when one cannot: the listener has no hostname, a
    /// wildcard one, or listeners of other hostnames name the same Secret.
    pub problem: Option<String>,
    /// Every listener naming the Secret: `namespace/gateway/listener` for a Gateway's own,
    /// `ListenerSet namespace/name/listener` for a ListenerSet's.
    pub listeners: Vec<String>,
    /// The Gateways whose listeners (or whose ListenerSets' listeners) name the Secret
    /// (Events about the certificate go there).
    pub gateways: Vec<ObjectKey>,
    /// The Secret exists, written by an ACME client ([`ISSUER_ANNOTATION`]): it is renewed,
    /// not ordered.
    pub issued: bool,
    /// The Secret exists, not written by ACME, and a listener naming it opts in
    /// ([`OPT_IN_OPTION`]): it serves until the first certificate replaces it.
    pub placeholder: bool,
}

/// The missing certificate Secrets of the Gateways `options` serves and of their
/// ListenerSets, by Secret.
pub fn wanted_certificates(
    store: &Store,
    options: &TranslateOptions,
) -> BTreeMap<ObjectKey, WantedCertificate> {
    let (classes, _) = our_classes(store, options);
    let mut wanted: BTreeMap<ObjectKey, WantedCertificate> = BTreeMap::new();
    for (key, gateway) in &store.gateways {
        let served = classes.contains(&gateway.spec.gateway_class_name)
            && options
                .gateways
                .as_ref()
                .is_none_or(|only| only.contains(key));
        if !served {
            continue;
        }
        for listener in &gateway.spec.listeners {
            want(
                &mut wanted,
                store,
                key,
                &key.namespace,
                format!("{key}/{}", listener.name),
                listener,
            );
        }
        let (candidates, _) =
            listener_set::for_gateway(store, key, gateway, options.namespace_labels);
        for candidate in &candidates {
            for listener in &candidate.listeners {
                want(
                    &mut wanted,
                    store,
                    key,
                    &candidate.key.namespace,
                    format!("{} {}/{}", listener_set::KIND, candidate.key, listener.name),
                    listener,
                );
            }
        }
    }
    wanted
}

/// `secret` was written by an ACME client.
pub fn acme_issued(secret: &k8s_openapi::api::core::v1::Secret) -> bool {
    secret
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(ISSUER_ANNOTATION))
}

/// Adds the missing (or ACME-issued, or opted-in) Secrets `listener` names in `namespace` (its owner's)
/// to `wanted`; `label` names the listener in messages, `gateway` is the Gateway it belongs to.
fn want(
    wanted: &mut BTreeMap<ObjectKey, WantedCertificate>,
    store: &Store,
    gateway: &ObjectKey,
    namespace: &str,
    label: String,
    listener: &GatewayListeners,
) {
    let Some(tls) = &listener.tls else { return };
    let terminates = matches!(listener.protocol.as_str(), "HTTPS" | "TLS")
        && tls.mode != Some(GatewayListenersTlsMode::Passthrough);
    if !terminates {
        return;
    }
    for reference in tls.certificate_refs.iter().flatten() {
        let core_secret = reference.group.as_deref().unwrap_or("").is_empty()
            && reference.kind.as_deref().unwrap_or("Secret") == "Secret";
        let same_namespace = reference
            .namespace
            .as_deref()
            .is_none_or(|n| n.is_empty() || n == namespace);
        let secret = ObjectKey::new(namespace, reference.name.clone());
        if !core_secret || !same_namespace {
            continue;
        }
        let opted_in = tls
            .options
            .as_ref()
            .and_then(|o| o.get(OPT_IN_OPTION))
            .is_some_and(|v| v == "true");
        let (issued, placeholder) = match store.secrets.get(&secret) {
            None => (false, false),
            Some(existing) if acme_issued(existing) => (true, false),
            Some(_) if opted_in => (false, true),
            Some(_) => continue,
        };
        let entry = wanted.entry(secret).or_insert_with(|| WantedCertificate {
            hostname: None,
            problem: None,
            listeners: Vec::new(),
            gateways: Vec::new(),
            issued,
            placeholder,
        });
        if !entry.gateways.contains(gateway) {
            entry.gateways.push(gateway.clone());
        }
        let first = entry.listeners.is_empty();
        entry.listeners.push(label.clone());
        let hostname = listener.hostname.as_deref();
        if first {
            match hostname {
                None => {
                    entry.problem = Some(format!(
                        "the Secret does not exist and listener {label} has no hostname to \
                         order a certificate for; set its hostname, or create the Secret"
                    ))
                }
                Some(h) if h.starts_with("*.") => {
                    entry.problem = Some(format!(
                        "the Secret does not exist and {h} is a wildcard: ACME validates \
                         wildcards only by DNS-01, which Gantry does not answer; use \
                         cert-manager, or a hostname without a wildcard"
                    ))
                }
                Some(h) => entry.hostname = Some(h.to_owned()),
            }
        } else if entry.problem.is_none() && hostname != entry.hostname.as_deref() {
            entry.problem = Some(format!(
                "the Secret does not exist and listeners of different hostnames name it \
                 ({}); an ACME certificate is for one hostname: give each listener its \
                 own certificateRefs name",
                entry.listeners.join(", ")
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::load::load_store;

    const CLASS: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: gantry}
spec: {controllerName: gantry.dev/gateway-controller}
"#;

    fn store(gateways: &str) -> Store {
        load_store([("t.yaml", format!("{CLASS}\n---\n{gateways}"))])
            .expect("store")
            .0
    }

    #[test]
    fn missing_same_namespace_secrets_of_terminating_listeners_are_wanted() {
        let store = store(
            r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: web, namespace: apps}
spec:
  gatewayClassName: gantry
  listeners:
  - {name: http, protocol: HTTP, port: 80}
  - name: https
    protocol: HTTPS
    port: 443
    hostname: app.example.com
    tls: {certificateRefs: [{name: app-cert}]}
  - name: other-namespace
    protocol: HTTPS
    port: 443
    hostname: other.example.com
    tls: {certificateRefs: [{name: shared, namespace: certs}]}
  - name: passthrough
    protocol: TLS
    port: 8443
    hostname: tls.example.com
    tls: {mode: Passthrough}
  - name: wildcard
    protocol: HTTPS
    port: 443
    hostname: "*.example.com"
    tls: {certificateRefs: [{name: wild}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: foreign, namespace: apps}
spec:
  gatewayClassName: someone-else
  listeners:
  - name: https
    protocol: HTTPS
    port: 443
    hostname: foreign.example.com
    tls: {certificateRefs: [{name: foreign-cert}]}
"#,
        );
        let wanted = wanted_certificates(&store, &TranslateOptions::default());
        let keys: Vec<String> = wanted.keys().map(ToString::to_string).collect();
        assert_eq!(keys, ["apps/app-cert", "apps/wild"]);
        let app = &wanted[&ObjectKey::new("apps", "app-cert")];
        assert_eq!(app.hostname.as_deref(), Some("app.example.com"));
        assert_eq!(app.problem, None);
        let wild = &wanted[&ObjectKey::new("apps", "wild")];
        assert_eq!(wild.hostname, None);
        assert!(wild.problem.as_deref().unwrap().contains("DNS-01"));
    }

    #[test]
    fn one_secret_for_two_hostnames_is_refused() {
        let store = store(
            r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: web, namespace: default}
spec:
  gatewayClassName: gantry
  listeners:
  - name: a
    protocol: HTTPS
    port: 443
    hostname: a.example.com
    tls: {certificateRefs: [{name: cert}]}
  - name: b
    protocol: HTTPS
    port: 443
    hostname: b.example.com
    tls: {certificateRefs: [{name: cert}]}
"#,
        );
        let wanted = wanted_certificates(&store, &TranslateOptions::default());
        let cert = &wanted[&ObjectKey::new("default", "cert")];
        assert!(
            cert.problem
                .as_deref()
                .unwrap()
                .contains("default/web/a, default/web/b")
        );
    }

    const LISTENER_SETS: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: web, namespace: default}
spec:
  gatewayClassName: gantry
  allowedListeners: {namespaces: {from: Same}}
  listeners:
  - {name: http, protocol: HTTP, port: 80}
---
apiVersion: gateway.networking.k8s.io/v1
kind: ListenerSet
metadata: {name: apps, namespace: default}
spec:
  parentRef: {name: web}
  listeners:
  - name: https
    protocol: HTTPS
    port: 443
    hostname: ls.example.com
    tls: {certificateRefs: [{name: ls-cert}]}
  - name: other-namespace
    protocol: HTTPS
    port: 443
    hostname: other.example.com
    tls: {certificateRefs: [{name: shared, namespace: certs}]}
  - name: no-hostname
    protocol: HTTPS
    port: 8443
    tls: {certificateRefs: [{name: bare}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: ListenerSet
metadata: {name: elsewhere, namespace: team}
spec:
  parentRef: {name: web, namespace: default}
  listeners:
  - name: https
    protocol: HTTPS
    port: 443
    hostname: team.example.com
    tls: {certificateRefs: [{name: team-cert}]}
"#;

    #[test]
    fn listener_set_listeners_want_secrets_in_their_own_namespace() {
        let store = store(LISTENER_SETS);
        let wanted = wanted_certificates(&store, &TranslateOptions::default());
        // `team/elsewhere` is not admitted (allowedListeners `Same`): nothing is ordered for
        // listeners the Gateway does not take.
        let keys: Vec<String> = wanted.keys().map(ToString::to_string).collect();
        assert_eq!(keys, ["default/bare", "default/ls-cert"]);
        let cert = &wanted[&ObjectKey::new("default", "ls-cert")];
        assert_eq!(cert.hostname.as_deref(), Some("ls.example.com"));
        assert_eq!(cert.problem, None);
        assert_eq!(cert.listeners, ["ListenerSet default/apps/https"]);
        let bare = &wanted[&ObjectKey::new("default", "bare")];
        assert!(
            bare.problem
                .as_deref()
                .unwrap()
                .contains("listener ListenerSet default/apps/no-hostname has no hostname"),
            "{bare:?}"
        );
    }

    #[test]
    fn a_listener_set_in_another_admitted_namespace_wants_its_own_namespace_secret() {
        let store = store(&LISTENER_SETS.replace("from: Same", "from: All"));
        let wanted = wanted_certificates(&store, &TranslateOptions::default());
        let team = &wanted[&ObjectKey::new("team", "team-cert")];
        assert_eq!(team.hostname.as_deref(), Some("team.example.com"));
        assert_eq!(team.listeners, ["ListenerSet team/elsewhere/https"]);
        assert!(!wanted.contains_key(&ObjectKey::new("default", "team-cert")));
    }

    #[test]
    fn a_gateway_and_a_listener_set_naming_one_secret_for_two_hostnames_is_refused() {
        let gateway_listener = "  - {name: http, protocol: HTTP, port: 80}
  - name: own
    protocol: HTTPS
    port: 443
    hostname: gw.example.com
    tls: {certificateRefs: [{name: ls-cert}]}";
        let store = store(&LISTENER_SETS.replace(
            "  - {name: http, protocol: HTTP, port: 80}",
            gateway_listener,
        ));
        let wanted = wanted_certificates(&store, &TranslateOptions::default());
        let cert = &wanted[&ObjectKey::new("default", "ls-cert")];
        assert_eq!(
            cert.listeners,
            ["default/web/own", "ListenerSet default/apps/https"]
        );
        assert!(
            cert.problem
                .as_deref()
                .unwrap()
                .contains("different hostnames")
        );
    }

    #[test]
    fn a_listener_set_listener_reports_the_acme_order_and_binds_its_port_for_tls_alpn_01() {
        use crate::store::AcmeCertificate;
        use crate::translate::translate;
        let mut store = store(LISTENER_SETS);
        store.acme_certificates.insert(
            ObjectKey::new("default", "ls-cert"),
            AcmeCertificate {
                hostname: "ls.example.com".into(),
                failed: false,
                message: "the certificate for ls.example.com is being ordered".into(),
                needs_tls_port: true,
            },
        );
        let out = translate(&store, &TranslateOptions::default());
        let status = serde_json::to_value(&out.statuses).expect("status JSON");
        let set = status
            .as_array()
            .and_then(|a| {
                a.iter()
                    .find(|o| o["kind"] == "ListenerSet" && o["name"] == "apps")
            })
            .unwrap_or_else(|| panic!("no ListenerSet status: {status:#}"));
        let listener = set["status"]["listeners"]
            .as_array()
            .and_then(|l| l.iter().find(|l| l["name"] == "https"))
            .unwrap_or_else(|| panic!("no https listener: {set:#}"));
        let condition = |t: &str| {
            listener["conditions"]
                .as_array()
                .and_then(|c| c.iter().find(|c| c["type"] == t))
                .cloned()
                .unwrap_or_else(|| panic!("no {t}: {listener:#}"))
        };
        assert_eq!(condition("ResolvedRefs")["reason"], "InvalidCertificateRef");
        assert!(
            condition("ResolvedRefs")["message"]
                .as_str()
                .unwrap()
                .contains("being ordered")
        );
        assert_eq!(condition("Programmed")["status"], "False");
        assert_eq!(condition("Programmed")["reason"], "Pending");
        // Port 443 is bound for the CA's TLS-ALPN-01 handshake, with no listener served.
        let port = out
            .ir
            .ports
            .iter()
            .find(|p| p.port == 443)
            .unwrap_or_else(|| panic!("port 443 is not bound: {:?}", out.ir.ports));
        assert!(port.listeners.is_empty());
    }

    #[test]
    fn an_acme_issued_secret_is_wanted_for_renewal_and_a_users_secret_is_not() {
        let store = store(
            r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: web, namespace: default}
spec:
  gatewayClassName: gantry
  listeners:
  - name: issued
    protocol: HTTPS
    port: 443
    hostname: a.example.com
    tls: {certificateRefs: [{name: issued}]}
  - name: users
    protocol: HTTPS
    port: 443
    hostname: b.example.com
    tls: {certificateRefs: [{name: users}]}
---
apiVersion: v1
kind: Secret
metadata:
  name: issued
  namespace: default
  annotations: {gantry.dev/acme-directory: "https://ca.example/dir"}
type: kubernetes.io/tls
data: {tls.crt: "", tls.key: ""}
---
apiVersion: v1
kind: Secret
metadata: {name: users, namespace: default}
type: kubernetes.io/tls
data: {tls.crt: "", tls.key: ""}
"#,
        );
        let wanted = wanted_certificates(&store, &TranslateOptions::default());
        let keys: Vec<String> = wanted.keys().map(ToString::to_string).collect();
        assert_eq!(keys, ["default/issued"]);
        let issued = &wanted[&ObjectKey::new("default", "issued")];
        assert!(issued.issued);
        assert_eq!(issued.gateways, [ObjectKey::new("default", "web")]);
    }

    #[test]
    fn a_listener_opting_in_wants_a_certificate_for_its_existing_secret() {
        let store = store(
            r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: web, namespace: default}
spec:
  gatewayClassName: gantry
  listeners:
  - name: https
    protocol: HTTPS
    port: 443
    hostname: a.example.com
    tls:
      certificateRefs: [{name: placeholder}]
      options: {gantry.dev/acme: "true"}
---
apiVersion: v1
kind: Secret
metadata: {name: placeholder, namespace: default}
type: kubernetes.io/tls
data: {tls.crt: "", tls.key: ""}
"#,
        );
        let wanted = wanted_certificates(&store, &TranslateOptions::default());
        let placeholder = &wanted[&ObjectKey::new("default", "placeholder")];
        assert!(placeholder.placeholder);
        assert!(!placeholder.issued);
        assert_eq!(placeholder.hostname.as_deref(), Some("a.example.com"));
    }
}
