//! Listener TLS: the `tls` field of HTTPS and TLS listeners checked against the spec, its
//! `certificateRefs` resolved, and the Gateway's frontend client validation added.
//!
//! [`resolve`] is the one function every listener with TLS goes through, HTTPS or TLS
//! (`Terminate` with certificates, `Passthrough` without).

use std::collections::BTreeMap;
use std::sync::Arc;

use gantry_crds::gateway::gateways::{
    Gateway, GatewayListeners, GatewayListenersTlsCertificateRefs, GatewayListenersTlsMode,
};

use super::certificate::{self, Owner};
use super::conditions::{self as c, Problem};
use super::frontend_tls::{self, FrontendValidation};
use super::listener::ListenerState;
use crate::ir::{ListenerTlsIr, TlsModeIr};
use crate::store::{AcmeCertificate, ObjectKey, Store};

/// Protocols whose listeners carry TLS.
pub fn has_tls(protocol: &str) -> bool {
    matches!(protocol, "HTTPS" | "TLS")
}

/// Checks `tls` against the listener's protocol (Gateway `spec.listeners[].tls`: "This field
/// is required if the Protocol field is "HTTPS" or "TLS". It is invalid to set this field if
/// the Protocol field is "HTTP", "TCP", or "UDP"", and HTTPS allows only `Terminate`). The
/// problem makes the listener `Accepted=False` with `UnsupportedValue`.
pub fn check_tls_field(l: &GatewayListeners) -> Option<Problem> {
    let unsupported = |m: String| Some(Problem::new(c::REASON_UNSUPPORTED_VALUE, m));
    match (l.protocol.as_str(), &l.tls) {
        ("HTTP" | "TCP" | "UDP", Some(_)) => unsupported(format!(
            "tls must not be set for protocol {}; remove it, or use HTTPS or TLS",
            l.protocol
        )),
        ("HTTPS", Some(tls)) if tls.mode == Some(GatewayListenersTlsMode::Passthrough) => {
            unsupported(
                "tls.mode Passthrough is not allowed for protocol HTTPS; use Terminate, or a TLS listener with a TLSRoute"
                    .to_owned(),
            )
        }
        ("TLS", None) => unsupported(
            "tls is required for protocol TLS; set tls.mode (Terminate with certificateRefs, or Passthrough)"
                .to_owned(),
        ),
        _ => None,
    }
}

/// A listener's TLS after its references are resolved.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ResolvedTls {
    /// What the data plane serves; `None` when nothing can be served.
    pub ir: Option<ListenerTlsIr>,
    /// `ResolvedRefs=False` problems: invalid or not permitted `certificateRefs`.
    pub resolved_refs: Vec<Problem>,
    /// Why the listener cannot be programmed: `Terminate` without a single valid
    /// certificate.
    pub not_programmed: Option<Problem>,
    /// The listener waits only for certificates the proxy's ACME client is obtaining, and
    /// the CA validates on the listener's port (TLS-ALPN-01): the port must accept
    /// connections although no listener on it is served.
    pub acme_port: bool,
}

/// Resolves the TLS of a listener of the Gateway `gateway`. The mode defaults to `Terminate`
/// as the API server's defaulting does. In `Terminate` mode every `certificateRefs` entry is
/// resolved. `InvalidCertificateRef` applies when the listener "has a TLS configuration with
/// at least one TLS CertificateRef that is invalid or does not exist" (`RefNotPermitted`
/// instead for another namespace without a ReferenceGrant), so one bad entry sets
/// `ResolvedRefs=False`; the valid entries are still served (several certificates per
/// listener are implementation-specific, and serving the valid ones keeps one bad Secret in
/// a rotation from taking the listener down). With no valid certificate the listener is not
/// programmed, as a Gateway with an invalid TLS configuration "should fail to become ready"
/// (conformance `GatewayInvalidTLSConfiguration`). In `Passthrough` mode `certificateRefs`
/// "is ignored".
pub fn resolve(store: &Store, owner: Owner<'_>, l: &GatewayListeners) -> ResolvedTls {
    let mode = match l.tls.as_ref().and_then(|t| t.mode.as_ref()) {
        Some(GatewayListenersTlsMode::Passthrough) => TlsModeIr::Passthrough,
        _ => TlsModeIr::Terminate,
    };
    let mut out = ResolvedTls::default();
    if mode == TlsModeIr::Passthrough {
        out.ir = Some(ListenerTlsIr {
            mode,
            certificates: Vec::new(),
            client_validation: None,
        });
        return out;
    }
    let refs = l
        .tls
        .as_ref()
        .and_then(|t| t.certificate_refs.as_deref())
        .unwrap_or_default();
    let mut certificates = Vec::new();
    for (i, reference) in refs.iter().enumerate() {
        match certificate::resolve(store, owner, i, reference) {
            Ok(cert) => certificates.push(cert),
            Err(problem) => out.resolved_refs.push(problem),
        }
    }
    if refs.is_empty() {
        out.resolved_refs.push(Problem::new(
            c::REASON_INVALID_CERTIFICATE_REF,
            format!(
                "listener {} terminates TLS but has no tls.certificateRefs; name a kubernetes.io/tls Secret there",
                l.name
            ),
        ));
    }
    if certificates.is_empty() {
        let acme: Vec<_> = refs
            .iter()
            .filter_map(|r| acme_pending(store, owner, r))
            .collect();
        out.not_programmed = Some(if !refs.is_empty() && acme.len() == refs.len() {
            // Gateway API: Programmed=False with `Pending` "when the Listener is waiting for
            // some resources" — here, its certificate.
            out.acme_port = acme.iter().any(|a| a.needs_tls_port);
            Problem::new(
                c::REASON_PENDING,
                "waiting for the certificate from the ACME CA; see ResolvedRefs",
            )
        } else {
            Problem::new(
                c::REASON_INVALID,
                "no valid certificate to terminate TLS with; see ResolvedRefs",
            )
        });
        return out;
    }
    out.ir = Some(ListenerTlsIr {
        mode,
        certificates,
        client_validation: None,
    });
    out
}

/// The ACME certificate a `certificateRefs` entry waits for: a Secret in the owner's own
/// namespace that does not exist and that the proxy's ACME client is obtaining.
fn acme_pending<'s>(
    store: &'s Store,
    owner: Owner<'_>,
    reference: &GatewayListenersTlsCertificateRefs,
) -> Option<&'s AcmeCertificate> {
    let same_namespace = reference
        .namespace
        .as_deref()
        .is_none_or(|n| n.is_empty() || n == owner.namespace);
    let core_secret = reference.group.as_deref().unwrap_or("").is_empty()
        && reference.kind.as_deref().unwrap_or("Secret") == "Secret";
    if !same_namespace || !core_secret {
        return None;
    }
    let key = ObjectKey::new(owner.namespace, reference.name.clone());
    if store.secrets.contains_key(&key) {
        return None;
    }
    store.acme_certificates.get(&key)
}

/// Resolves the TLS of every HTTPS and TLS listener of one Gateway (its own, then those of
/// its ListenerSets: `specs` and `states` in the same order) into its state, with the
/// frontend validation of each HTTPS listener's port. Certificates resolve from the
/// listener's owner (see [`Owner`]); the Gateway's frontend validation applies to every HTTPS
/// listener on the port, a ListenerSet's too, since the merged listeners "MUST behave the same
/// as if the list were part of a single Gateway" (GEP-1713), and a ListenerSet must not open
/// a port's client-certificate check.
pub fn apply(
    store: &Store,
    key: &ObjectKey,
    gateway: &Gateway,
    specs: &[&GatewayListeners],
    states: &mut [ListenerState],
) {
    let mut frontend: BTreeMap<u16, FrontendValidation> = BTreeMap::new();
    for (spec, state) in specs.iter().zip(states.iter_mut()) {
        if !has_tls(&spec.protocol) || state.accepted.is_some() {
            continue;
        }
        let owner = match &state.origin {
            Some(set) => Owner {
                kind: "ListenerSet",
                namespace: &set.namespace,
            },
            None => Owner::gateway(key),
        };
        let resolved = resolve(store, owner, spec);
        for problem in resolved.resolved_refs {
            state.add_resolved_refs_problem(problem);
        }
        state.not_programmed = resolved.not_programmed;
        state.acme_port = resolved.acme_port;
        let mut client_validation = None;
        // GEP-91: frontend validation applies to "all Listeners handling HTTPS traffic" on the
        // port; TLS listeners are not HTTPS.
        if spec.protocol == "HTTPS" {
            let validation = frontend
                .entry(state.port)
                .or_insert_with(|| frontend_tls::for_port(store, key, gateway, state.port));
            for problem in &validation.resolved_refs {
                state.add_resolved_refs_problem(problem.clone());
            }
            if let Some(problem) = &validation.no_valid_ca {
                state.accepted = Some(problem.clone());
                continue;
            }
            client_validation = validation.ir.clone();
        }
        let Some(mut ir) = resolved.ir else {
            continue;
        };
        ir.client_validation = client_validation;
        state.tls = Some(Arc::new(ir));
    }
}
