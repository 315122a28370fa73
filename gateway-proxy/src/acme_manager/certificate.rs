//! A managed certificate as a `kubernetes.io/tls` Secret, and when to renew it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::ObjectMeta;

use super::ISSUER_ANNOTATION;
use crate::acme::schedule;
use crate::acme::{AcmeOptions, StoredCertificate};
use gantry_translate::store::ObjectKey;

/// The certificate a Secret is served from.
pub(super) struct Current {
    pub secret: Arc<Secret>,
    pub not_after: SystemTime,
    pub renew_at: SystemTime,
}

/// The Secret for a certificate, and when to renew it.
pub(super) fn current(
    secret: &ObjectKey,
    certificate: &StoredCertificate,
    options: &AcmeOptions,
) -> Result<Current, String> {
    let (not_before, not_after) = validity(&certificate.chain_pem)?;
    let data = BTreeMap::from([
        (
            "tls.crt".to_owned(),
            ByteString(certificate.chain_pem.clone().into_bytes()),
        ),
        (
            "tls.key".to_owned(),
            ByteString(certificate.key_pem.clone().into_bytes()),
        ),
    ]);
    let object = Secret {
        metadata: ObjectMeta {
            name: Some(secret.name.clone()),
            namespace: Some(secret.namespace.clone()),
            annotations: Some(BTreeMap::from([(
                ISSUER_ANNOTATION.to_owned(),
                options.config.directory.clone(),
            )])),
            labels: Some(BTreeMap::from([(
                "app.kubernetes.io/managed-by".to_owned(),
                "gantry".to_owned(),
            )])),
            ..ObjectMeta::default()
        },
        type_: Some("kubernetes.io/tls".to_owned()),
        data: Some(data),
        ..Secret::default()
    };
    Ok(Current {
        secret: Arc::new(object),
        not_after,
        renew_at: schedule::renew_at(not_before, not_after, options.renew_before),
    })
}

/// The certificate of a Secret an ACME client wrote (Kubernetes mode), renewed now when it
/// came from another directory than ours.
pub(super) fn current_in_secret(
    secret: &Arc<Secret>,
    options: &AcmeOptions,
) -> Result<Current, String> {
    let chain = secret
        .data
        .as_ref()
        .and_then(|d| d.get("tls.crt"))
        .ok_or("the Secret has no tls.crt")?;
    let chain = std::str::from_utf8(&chain.0).map_err(|_| "tls.crt is not PEM")?;
    let (not_before, not_after) = validity(chain)?;
    let ours = secret
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ISSUER_ANNOTATION))
        .is_some_and(|d| *d == options.config.directory);
    Ok(Current {
        secret: secret.clone(),
        not_after,
        renew_at: if ours {
            schedule::renew_at(not_before, not_after, options.renew_before)
        } else {
            SystemTime::UNIX_EPOCH
        },
    })
}

/// The validity period of the first certificate of a PEM chain.
pub(super) fn validity(chain_pem: &str) -> Result<(SystemTime, SystemTime), String> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let leaf = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .next()
        .ok_or("the chain holds no certificate")?
        .map_err(|e| format!("the chain is not PEM: {e}"))?;
    let (_, parsed) = x509_parser::parse_x509_certificate(&leaf)
        .map_err(|e| format!("the certificate does not parse: {e}"))?;
    let at = |t: i64| SystemTime::UNIX_EPOCH + Duration::from_secs(t.max(0).unsigned_abs());
    let validity = parsed.validity();
    Ok((
        at(validity.not_before.timestamp()),
        at(validity.not_after.timestamp()),
    ))
}

pub(super) fn unix(time: SystemTime) -> i64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
