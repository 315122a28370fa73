//! The Gateway's `spec.tls.backend.clientCertificateRef`: the certificate the Gateway presents
//! to backends that ask for one, and the Gateway's `ResolvedRefs` condition about it.

use std::sync::Arc;

use gantry_crds::gateway::gateways::Gateway;

use crate::ir::CertificateIr;
use crate::status::Condition;
use crate::store::{ObjectKey, Store};
use crate::translate::certificate::{check_pair, secret_field};
use crate::translate::conditions::{self as c, Problem};
use crate::translate::reference_grant;

/// GatewayConditionReason for an unusable client certificate reference.
pub const REASON_INVALID_CLIENT_CERTIFICATE_REF: &str = "InvalidClientCertificateRef";

/// The certificate, or why the reference cannot be used. `None` when the Gateway sets no
/// `clientCertificateRef`.
pub fn resolve(
    store: &Store,
    key: &ObjectKey,
    gateway: &Gateway,
) -> Option<Result<Arc<CertificateIr>, Problem>> {
    let r = gateway
        .spec
        .tls
        .as_ref()?
        .backend
        .as_ref()?
        .client_certificate_ref
        .as_ref()?;
    let group = r.group.as_deref().unwrap_or("");
    let kind = r.kind.as_deref().unwrap_or("Secret");
    let namespace = r.namespace.as_deref().unwrap_or(&key.namespace);
    let secret_key = ObjectKey::new(namespace, r.name.as_str());
    // Core support is a `kubernetes.io/tls` Secret; an unsupported group or kind is an
    // invalid reference (the conformance suite expects InvalidClientCertificateRef for it).
    if !group.is_empty() || kind != "Secret" {
        let shown = if group.is_empty() {
            kind.to_owned()
        } else {
            format!("{group}/{kind}")
        };
        return Some(Err(Problem::new(
            REASON_INVALID_CLIENT_CERTIFICATE_REF,
            format!(
                "spec.tls.backend.clientCertificateRef {} has kind {shown}; only core Secrets (group \"\", kind Secret) are supported",
                r.name
            ),
        )));
    }
    if !reference_grant::gateway_permits(store, &key.namespace, "Secret", &secret_key) {
        return Some(Err(Problem::new(
            c::REASON_REF_NOT_PERMITTED,
            format!(
                "spec.tls.backend.clientCertificateRef to Secret {secret_key} crosses namespaces and no ReferenceGrant in {namespace} allows Gateways from {}; add one",
                key.namespace
            ),
        )));
    }
    Some(
        key_pair(store, &secret_key)
            .map(Arc::new)
            .map_err(|message| {
                Problem::new(
                    REASON_INVALID_CLIENT_CERTIFICATE_REF,
                    format!("spec.tls.backend.clientCertificateRef: {message}"),
                )
            }),
    )
}

/// The Gateway's `ResolvedRefs` condition for its client certificate.
pub fn condition(resolved: &Result<Arc<CertificateIr>, Problem>, generation: i64) -> Condition {
    match resolved {
        Ok(cert) => c::ok(
            c::RESOLVED_REFS,
            c::REASON_RESOLVED_REFS,
            format!(
                "the backend client certificate from Secret {} is presented to backends that ask for one",
                cert.secret
            ),
            generation,
        ),
        Err(problem) => c::not_ok(c::RESOLVED_REFS, problem, generation),
    }
}

/// `tls.crt` and `tls.key` of a Secret, checked to be a matching pair (as a listener's
/// certificate is). Core support is a `kubernetes.io/tls` Secret; any Secret holding both keys
/// is accepted.
fn key_pair(store: &Store, secret_key: &ObjectKey) -> Result<CertificateIr, String> {
    let secret = store
        .secrets
        .get(secret_key)
        .ok_or_else(|| format!("Secret {secret_key} does not exist"))?;
    let field = |name: &str| {
        secret_field(secret, name).ok_or_else(|| format!("Secret {secret_key} has no {name}"))
    };
    let pair = check_pair(field("tls.crt")?, field("tls.key")?)
        .map_err(|e| format!("Secret {secret_key}: {e}"))?;
    Ok(pair.into_ir(secret_key.clone()))
}
