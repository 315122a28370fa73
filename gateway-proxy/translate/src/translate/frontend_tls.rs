//! Client-certificate validation of HTTPS listeners: the Gateway's `spec.tls.frontend`
//! (GEP-91), `default` and its `perPort` overrides, resolved to CA bundles from ConfigMaps.

use gantry_crds::gateway::gateways::{
    Gateway, GatewayTlsFrontendDefaultValidationMode, GatewayTlsFrontendPerPortTlsValidationMode,
};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use super::conditions::{self as c, Problem};
use super::reference_grant;
use crate::ir::{ClientValidationIr, ClientValidationMode, PemCertificates};
use crate::store::{ObjectKey, Store};

/// The ConfigMap key holding a CA bundle.
pub const CA_BUNDLE_KEY: &str = "ca.crt";

/// Frontend validation for the HTTPS listeners of one port.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FrontendValidation {
    /// `None`: no validation configured for the port (or none of it could be used).
    pub ir: Option<ClientValidationIr>,
    /// `ResolvedRefs=False` on every HTTPS listener of the port: one or more CA references
    /// are invalid.
    pub resolved_refs: Vec<Problem>,
    /// `Accepted=False` (`NoValidCACertificate`): validation is configured but no CA
    /// reference is valid, so the listeners must not serve at all (serving them without
    /// validation would let every client in).
    pub no_valid_ca: Option<Problem>,
}

/// One `caCertificateRefs` entry, whichever of the generated types it came from.
struct CaRef<'a> {
    group: &'a str,
    kind: &'a str,
    name: &'a str,
    namespace: Option<&'a str>,
}

/// The CA references and mode of a `default` or `perPort` validation: the generated types
/// differ in name only.
macro_rules! refs_and_mode {
    ($validation:expr, $insecure:path) => {{
        let v = $validation;
        let refs: Vec<CaRef<'_>> = v
            .ca_certificate_refs
            .iter()
            .map(|r| CaRef {
                group: &r.group,
                kind: &r.kind,
                name: &r.name,
                namespace: r.namespace.as_deref(),
            })
            .collect();
        let mode = if matches!(v.mode, Some($insecure)) {
            ClientValidationMode::AllowInsecureFallback
        } else {
            ClientValidationMode::AllowValidOnly
        };
        (refs, mode)
    }};
}

/// Whether `spec.tls.frontend` sets `AllowInsecureFallback`, by default or for some port.
pub fn allows_insecure_fallback(gateway: &Gateway) -> bool {
    let Some(frontend) = gateway.spec.tls.as_ref().and_then(|t| t.frontend.as_ref()) else {
        return false;
    };
    let default = frontend.default.validation.as_ref().is_some_and(|v| {
        matches!(
            v.mode,
            Some(GatewayTlsFrontendDefaultValidationMode::AllowInsecureFallback)
        )
    });
    default
        || frontend.per_port.iter().flatten().any(|p| {
            p.tls.validation.as_ref().is_some_and(|v| {
                matches!(
                    v.mode,
                    Some(GatewayTlsFrontendPerPortTlsValidationMode::AllowInsecureFallback)
                )
            })
        })
}

/// The validation that applies to HTTPS listeners on `port`: the `perPort` entry for the port
/// when there is one ("Once set this configuration overrides the default configuration for
/// all Listeners handling HTTPS traffic that match this port"), else `default`.
pub fn for_port(
    store: &Store,
    key: &ObjectKey,
    gateway: &Gateway,
    port: u16,
) -> FrontendValidation {
    let Some(frontend) = gateway.spec.tls.as_ref().and_then(|t| t.frontend.as_ref()) else {
        return FrontendValidation::default();
    };
    let per_port = frontend
        .per_port
        .iter()
        .flatten()
        .find(|p| i64::from(p.port) == i64::from(port));
    let ((refs, mode), at) = match per_port {
        Some(p) => {
            let Some(v) = &p.tls.validation else {
                return FrontendValidation::default();
            };
            (
                refs_and_mode!(
                    v,
                    GatewayTlsFrontendPerPortTlsValidationMode::AllowInsecureFallback
                ),
                format!("spec.tls.frontend.perPort[port={port}]"),
            )
        }
        None => {
            let Some(v) = &frontend.default.validation else {
                return FrontendValidation::default();
            };
            (
                refs_and_mode!(
                    v,
                    GatewayTlsFrontendDefaultValidationMode::AllowInsecureFallback
                ),
                "spec.tls.frontend.default".to_owned(),
            )
        }
    };
    resolve(store, key, &refs, mode, &at)
}

fn resolve(
    store: &Store,
    gateway: &ObjectKey,
    refs: &[CaRef<'_>],
    mode: ClientValidationMode,
    at: &str,
) -> FrontendValidation {
    let mut out = FrontendValidation::default();
    let mut sources = Vec::new();
    let mut pem = String::new();
    for (i, r) in refs.iter().enumerate() {
        match resolve_one(
            store,
            gateway,
            r,
            &format!("{at}.validation.caCertificateRefs[{i}]"),
        ) {
            Ok((key, bundle)) => {
                sources.push(key);
                pem.push_str(&bundle);
                if !bundle.ends_with('\n') {
                    pem.push('\n');
                }
            }
            Err(problem) => out.resolved_refs.push(problem),
        }
    }
    if sources.is_empty() {
        // FrontendTLSValidation.caCertificateRefs: "If ALL CACertificateRefs are invalid, the
        // implementation MUST also ensure the `Accepted` condition on the listener is set to
        // `status: False`, with the Reason `NoValidCACertificate`."
        out.no_valid_ca = Some(Problem::new(
            c::REASON_NO_VALID_CA_CERTIFICATE,
            format!(
                "{at}: no CA certificate reference is valid, so client certificates cannot be validated; see ResolvedRefs for each reference"
            ),
        ));
        return out;
    }
    out.ir = Some(ClientValidationIr {
        mode,
        sources,
        ca_certificates: PemCertificates(pem),
    });
    out
}

/// One CA reference: the ConfigMap's key and its PEM bundle, or the problem.
fn resolve_one(
    store: &Store,
    gateway: &ObjectKey,
    r: &CaRef<'_>,
    at: &str,
) -> Result<(ObjectKey, String), Problem> {
    let namespace = r
        .namespace
        .filter(|n| !n.is_empty())
        .unwrap_or(&gateway.namespace);
    let key = ObjectKey::new(namespace, r.name);
    if !r.group.is_empty() || r.kind != "ConfigMap" {
        let group = if r.group.is_empty() { "core" } else { r.group };
        return Err(Problem::new(
            c::REASON_INVALID_CA_CERTIFICATE_KIND,
            format!(
                "{at} ({key}): kind {} of group {group} is not supported; reference a core ConfigMap (group \"\", kind ConfigMap) with the bundle under {CA_BUNDLE_KEY}",
                r.kind
            ),
        ));
    }
    if !reference_grant::gateway_permits(store, &gateway.namespace, "ConfigMap", &key) {
        return Err(Problem::new(
            c::REASON_REF_NOT_PERMITTED,
            format!(
                "{at} ({key}): ConfigMap in namespace {namespace} is not allowed; add a ReferenceGrant there from Gateways in {} to ConfigMaps",
                gateway.namespace
            ),
        ));
    }
    let invalid = |why: &str| {
        Problem::new(
            c::REASON_INVALID_CA_CERTIFICATE_REF,
            format!("{at} ({key}): {why}"),
        )
    };
    let map = store
        .config_maps
        .get(&key)
        .ok_or_else(|| invalid("ConfigMap does not exist"))?;
    let bundle = map
        .data
        .as_ref()
        .and_then(|d| d.get(CA_BUNDLE_KEY))
        .ok_or_else(|| invalid("ConfigMap has no ca.crt key"))?;
    let certificates: Vec<CertificateDer<'_>> = CertificateDer::pem_slice_iter(bundle.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|_| invalid("ca.crt is not valid PEM"))?;
    if certificates.is_empty() {
        return Err(invalid("ca.crt holds no PEM CERTIFICATE block"));
    }
    for (i, der) in certificates.iter().enumerate() {
        if webpki::anchor_from_trusted_cert(der).is_err() {
            return Err(invalid(&format!(
                "certificate {} of ca.crt does not parse as X.509",
                i + 1
            )));
        }
    }
    Ok((key, bundle.clone()))
}
