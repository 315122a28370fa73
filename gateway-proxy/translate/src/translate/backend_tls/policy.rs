//! One BackendTLSPolicy on its own: its targets (resolved as every Service policy's are, in
//! `service_policy`, plus the UDP rule), and whether its validation settings and CA
//! certificate references make a usable TLS configuration.

use std::sync::Arc;

use gantry_crds::gateway::backendtlspolicies::{
    BackendTlsPolicy, BackendTlsPolicyValidationSubjectAltNamesType as SanType,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::pem;
use crate::ir::{PemCertificates, SubjectAltNameIr, TrustIr, UpstreamTlsIr};
use crate::store::{ObjectKey, Store};
use crate::translate::conditions::{self as c, Problem};
use crate::translate::service_policy::target::{self, MissingService, TargetRef};
use crate::translate::service_policy::{ServicePolicy, Target, TargetProblem};
use crate::translate::{generation_of, hostname};

/// The one `wellKnownCACertificates` value defined by the API.
const SYSTEM: &str = "System";
/// The ConfigMap key a CA bundle is read from.
const CA_KEY: &str = "ca.crt";

/// A policy after validation.
#[derive(Clone, Debug)]
pub struct PolicyState {
    pub key: ObjectKey,
    pub generation: i64,
    pub created: Option<Time>,
    /// Targets by `targetRefs` index: a Service and optionally one of its ports by name, or
    /// why the target cannot be attached to (`TargetNotFound`, or `Invalid` for a UDP port).
    pub targets: Vec<Result<Target, TargetProblem>>,
    /// The TLS settings, or why the policy cannot be used (`Accepted=False`).
    pub config: Result<Arc<UpstreamTlsIr>, Problem>,
    /// Why `ResolvedRefs` is `False`, if it is.
    pub unresolved: Option<Problem>,
}

impl ServicePolicy for PolicyState {
    fn key(&self) -> &ObjectKey {
        &self.key
    }
    fn created(&self) -> Option<&Time> {
        self.created.as_ref()
    }
    fn targets(&self) -> &[Result<Target, TargetProblem>] {
        &self.targets
    }
}

/// Validates one policy against the store.
pub fn resolve(store: &Store, key: &ObjectKey, policy: &BackendTlsPolicy) -> PolicyState {
    let (config, unresolved) = match validation(store, key, policy) {
        Ok((config, unresolved)) => (Ok(Arc::new(config)), unresolved),
        Err((problem, unresolved)) => (Err(problem), unresolved),
    };
    PolicyState {
        key: key.clone(),
        generation: generation_of(&policy.metadata),
        created: policy.metadata.creation_timestamp.clone(),
        targets: policy
            .spec
            .target_refs
            .iter()
            .map(|t| target(store, &key.namespace, t))
            .collect(),
        config,
        unresolved,
    }
}

fn target(
    store: &Store,
    namespace: &str,
    t: &gantry_crds::gateway::backendtlspolicies::BackendTlsPolicyTargetRefs,
) -> Result<Target, TargetProblem> {
    // A target naming a missing Service simply waits: nothing can use a missing Service, so
    // nothing would show the problem.
    let target = target::resolve(
        store,
        namespace,
        TargetRef {
            group: &t.group,
            kind: &t.kind,
            name: &t.name,
            section_name: t.section_name.as_deref(),
        },
        MissingService::Waits,
    )?;
    // GEP-1897: "BackendTLSPolicy applies only to TCP traffic. If a policy explicitly attaches
    // to a UDP port of a Service (that is, the targetRef has a sectionName specifying a single
    // port or the service has only 1 port), the `Accepted: False` Condition with `Reason:
    // Invalid` MUST be set." With TCP ports too, it applies to those.
    let targeted = target::targeted_ports(store, &target);
    let udp = |p: &&k8s_openapi::api::core::v1::ServicePort| p.protocol.as_deref() == Some("UDP");
    if !targeted.is_empty() && targeted.iter().all(udp) {
        let service = &target.service;
        return Err(TargetProblem {
            service: Some(service.clone()),
            problem: Problem::new(
                c::REASON_INVALID,
                format!(
                    "Service {service} {} UDP only; BackendTLSPolicy applies to TCP ports",
                    match &target.port_name {
                        Some(section) => format!("port {section} is"),
                        None => "has".to_owned(),
                    }
                ),
            ),
        });
    }
    Ok(target)
}

type Validated = Result<(UpstreamTlsIr, Option<Problem>), (Problem, Option<Problem>)>;

/// The TLS settings, with the `ResolvedRefs` problem alongside either outcome.
fn validation(store: &Store, key: &ObjectKey, policy: &BackendTlsPolicy) -> Validated {
    let v = &policy.spec.validation;
    let invalid = |message: String| Err((Problem::new(c::REASON_INVALID, message), None));
    // PreciseHostname: a DNS name, no wildcard, no IP address.
    if !hostname::is_valid(&v.hostname) || v.hostname.starts_with('*') {
        return invalid(format!(
            "validation.hostname {:?} is not a DNS name; it must be the precise name sent as SNI",
            v.hostname
        ));
    }
    let mut subject_alt_names = Vec::new();
    for san in v.subject_alt_names.iter().flatten() {
        let name = match san.r#type {
            SanType::Hostname => san
                .hostname
                .as_deref()
                .filter(|h| hostname::is_valid(h))
                .map(|h| SubjectAltNameIr::Hostname(h.to_owned())),
            SanType::Uri => san
                .uri
                .as_deref()
                .filter(|u| is_absolute_uri(u))
                .map(|u| SubjectAltNameIr::Uri(u.to_owned())),
        };
        match name {
            Some(name) => subject_alt_names.push(name),
            None => {
                return invalid(format!(
                    "validation.subjectAltNames entry {san:?} is not valid: a Hostname entry needs a DNS name in hostname, a URI entry an absolute URI (scheme:rest) in uri"
                ));
            }
        }
    }
    let refs = v.ca_certificate_refs.as_deref().unwrap_or_default();
    let well_known = v.well_known_ca_certificates.as_deref().unwrap_or("");
    let (trust, unresolved) = match (refs.is_empty(), well_known) {
        (false, "") => match ca_certificates(store, key, refs) {
            (Some(trust), unresolved) => (trust, unresolved),
            (None, unresolved) => {
                // "If ALL CACertificateRefs are invalid, the implementation MUST also ensure
                // the `Accepted` Condition ... is set to `status: False`, with a Reason
                // `NoValidCACertificate`."
                let message = format!(
                    "no caCertificateRef is usable, so no backend certificate can be trusted: {}",
                    unresolved.as_ref().map_or("", |p| &*p.message)
                );
                return Err((
                    Problem::new(c::REASON_NO_VALID_CA_CERTIFICATE, message),
                    unresolved,
                ));
            }
        },
        (true, SYSTEM) => (TrustIr::System, None),
        (true, "") => {
            return invalid(
                "validation needs caCertificateRefs or wellKnownCACertificates: System".to_owned(),
            );
        }
        (false, _) => {
            return invalid(
                "validation sets both caCertificateRefs and wellKnownCACertificates; set only one"
                    .to_owned(),
            );
        }
        // "If an implementation does not support the WellKnownCACertificates field, or the
        // supplied value is not recognized, ... Reason `Invalid`."
        (true, other) => {
            return invalid(format!(
                "wellKnownCACertificates {other:?} is not supported; the only value is System"
            ));
        }
    };
    Ok((
        UpstreamTlsIr {
            policy: key.clone(),
            sni: v.hostname.clone(),
            subject_alt_names,
            trust,
            client_certificates: Default::default(),
        },
        unresolved,
    ))
}

/// The usable CA bundles among `refs`, and the `ResolvedRefs` problem naming every ref that
/// is not usable. Only core ConfigMaps (key `ca.crt`) are supported: the API's Core support;
/// other kinds are implementation-specific and get `InvalidKind`.
fn ca_certificates(
    store: &Store,
    key: &ObjectKey,
    refs: &[gantry_crds::gateway::backendtlspolicies::BackendTlsPolicyValidationCaCertificateRefs],
) -> (Option<TrustIr>, Option<Problem>) {
    let mut sources = Vec::new();
    let mut pem = String::new();
    let mut problems: Vec<Problem> = Vec::new();
    for r in refs {
        if !r.group.is_empty() || r.kind != "ConfigMap" {
            let shown = if r.group.is_empty() {
                r.kind.clone()
            } else {
                format!("{}/{}", r.group, r.kind)
            };
            problems.push(Problem::new(
                c::REASON_INVALID_KIND,
                format!(
                    "caCertificateRef {} has kind {shown}; only core ConfigMaps (group \"\", kind ConfigMap) with the bundle under {CA_KEY} are supported",
                    r.name
                ),
            ));
            continue;
        }
        // LocalObjectReference: the ConfigMap is in the policy's namespace.
        let map_key = ObjectKey::new(key.namespace.as_str(), r.name.as_str());
        let bundle = store.config_maps.get(&map_key).map(|m| {
            m.data
                .as_ref()
                .and_then(|d| d.get(CA_KEY))
                .map(String::as_str)
        });
        let checked = match bundle {
            None => Err(format!("ConfigMap {map_key} does not exist")),
            Some(None) => Err(format!("ConfigMap {map_key} has no key {CA_KEY}")),
            Some(Some(text)) => pem::check_ca_bundle(text)
                .map(|_| text)
                .map_err(|e| format!("ConfigMap {map_key} key {CA_KEY}: {e}")),
        };
        match checked {
            Ok(text) => {
                sources.push(map_key);
                pem.push_str(text);
                if !text.ends_with('\n') {
                    pem.push('\n');
                }
            }
            Err(message) => problems.push(Problem::new(
                c::REASON_INVALID_CA_CERTIFICATE_REF,
                format!("caCertificateRef {}: {message}", r.name),
            )),
        }
    }
    let unresolved = problems.first().map(|first| {
        Problem::new(
            first.reason,
            problems
                .iter()
                .map(|p| &*p.message)
                .collect::<Vec<_>>()
                .join("; "),
        )
    });
    let trust = (!sources.is_empty()).then_some(TrustIr::CaCertificates {
        sources,
        certificates: PemCertificates(pem),
    });
    (trust, unresolved)
}

/// AbsoluteURI: a scheme (`[A-Za-z][A-Za-z0-9+.-]*`), a colon, and something after it.
fn is_absolute_uri(uri: &str) -> bool {
    let Some((scheme, rest)) = uri.split_once(':') else {
        return false;
    };
    let mut chars = scheme.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '.' | '-'))
        && !rest.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_uris() {
        assert!(is_absolute_uri("spiffe://cluster.local/ns/a/sa/b"));
        assert!(is_absolute_uri("urn:example"));
        assert!(!is_absolute_uri("/relative/path"));
        assert!(!is_absolute_uri("spiffe:"));
        assert!(!is_absolute_uri("1http://x"));
    }
}
