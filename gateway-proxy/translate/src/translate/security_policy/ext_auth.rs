//! `extAuth`: validated into the same [`ExternalAuthIr`] the ExternalAuth filter (GEP-1494)
//! compiles to, with `failOpen`. Its backendRef resolves like any other (a ReferenceGrant
//! allowing `gantry.dev/SecurityPolicy` for another namespace's Service); one that does not
//! resolve makes the policy unusable (`Accepted=False`, `Invalid`), so its routes refuse every
//! request (500) rather than run unchecked.

use std::collections::BTreeMap;
use std::str::FromStr as _;

use gantry_crds::gateway::Duration;
use gantry_crds::security::{ExtAuth, ExtAuthBackendRef};

use crate::ir::{ClusterIr, ExternalAuthIr, ExternalAuthProtocol, SecurityExtAuthIr};
use crate::store::{ObjectKey, Store};
use crate::translate::backend::{self, BackendRef, Referrer};
use crate::translate::external_auth::{self, MAX_FORWARD_BODY, TIMEOUT_MS};

/// Validates `extAuth`; the service's cluster is added to `clusters`.
pub fn validate(
    store: &Store,
    key: &ObjectKey,
    auth: &ExtAuth,
    clusters: &mut BTreeMap<String, ClusterIr>,
) -> Result<SecurityExtAuthIr, Vec<String>> {
    let mut problems = Vec::new();
    let (protocol, refs) = match (&auth.grpc, &auth.http) {
        (Some(grpc), None) => (ExternalAuthProtocol::Grpc, grpc.backend_refs.as_slice()),
        (None, Some(http)) => (ExternalAuthProtocol::Http, http.backend_refs.as_slice()),
        _ => {
            return Err(vec![
                "extAuth must set exactly one of grpc and http".to_owned(),
            ]);
        }
    };
    let field = match protocol {
        ExternalAuthProtocol::Grpc => "extAuth.grpc",
        ExternalAuthProtocol::Http => "extAuth.http",
    };
    let http = auth.http.as_ref();
    let path_prefix =
        external_auth::path_prefix("extAuth.http.path", http.and_then(|h| h.path.as_deref()))
            .unwrap_or_else(|p| {
                problems.push(p);
                String::new()
            });
    let mut names = |field: &str, list: &[String]| {
        external_auth::header_names(field, list).unwrap_or_else(|p| {
            problems.push(p);
            Vec::new()
        })
    };
    let allowed_request_headers = names("extAuth.headersToExtAuth", &auth.headers_to_ext_auth);
    let allowed_response_headers = names(
        "extAuth.http.headersToBackend",
        http.map_or(&[][..], |h| h.headers_to_backend.as_slice()),
    );
    let forward_body_max_bytes = match &auth.body_to_ext_auth {
        None => 0,
        Some(b) if (1..=MAX_FORWARD_BODY).contains(&i64::from(b.max_request_bytes)) => {
            usize::try_from(b.max_request_bytes).unwrap_or(0)
        }
        Some(b) => {
            problems.push(format!(
                "extAuth.bodyToExtAuth.maxRequestBytes {} is outside 1..={MAX_FORWARD_BODY} bytes",
                b.max_request_bytes
            ));
            0
        }
    };
    let timeout_ms = match auth.timeout.as_deref() {
        None => TIMEOUT_MS,
        Some(text) => match Duration::from_str(text) {
            Ok(d) if !d.is_zero() => u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
            Ok(_) => {
                problems.push("extAuth.timeout must be longer than 0s".to_owned());
                TIMEOUT_MS
            }
            Err(e) => {
                problems.push(format!(
                    "extAuth.timeout {text:?} is not a Gateway API duration such as \"10s\": {e}"
                ));
                TIMEOUT_MS
            }
        },
    };
    let cluster = match refs {
        [r] => resolve(store, key, r, clusters)
            .map_err(|p| problems.push(format!("{field}.backendRefs: {p}")))
            .ok(),
        _ => {
            problems.push(format!("{field}.backendRefs must name exactly one Service"));
            None
        }
    };
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(SecurityExtAuthIr {
        service: ExternalAuthIr {
            protocol,
            cluster,
            path_prefix,
            allowed_request_headers,
            allowed_response_headers,
            forward_body_max_bytes,
            timeout_ms,
        },
        fail_open: auth.fail_open.unwrap_or(false),
    })
}

fn resolve(
    store: &Store,
    key: &ObjectKey,
    r: &ExtAuthBackendRef,
    clusters: &mut BTreeMap<String, ClusterIr>,
) -> Result<String, String> {
    backend::resolve(
        store,
        Referrer {
            group: gantry_crds::GROUP,
            kind: gantry_crds::SECURITY_POLICY_KIND,
            namespace: &key.namespace,
        },
        BackendRef {
            group: r.group.as_deref(),
            kind: r.kind.as_deref(),
            name: &r.name,
            namespace: r.namespace.as_deref(),
            port: r.port,
        },
        clusters,
    )
    .map_err(|p| p.message.into_owned())
}
