//! `jwt`: each provider's key source (a JWKS URL, or a JWKS inline or in a ConfigMap or Secret
//! of the policy's namespace, checked here; a JWKS URL fetched through a Service port of the
//! policy's namespace resolves like any backendRef into a cluster), where its tokens are carried, which claims go
//! upstream and which are required.

use std::collections::BTreeMap;
use std::str::FromStr;

use gantry_crds::gateway::Duration;
use gantry_crds::security::{JwksBackendRef, Jwt, JwtProvider, LocalJwks, LocalJwksType};

use super::api_key::header;
use crate::ir::{
    ClaimToHeaderIr, ClusterIr, JwksSourceIr, JwtIr, JwtProviderIr, RequiredClaimIr, TokenSourceIr,
};
use crate::store::{ObjectKey, Store};
use crate::translate::backend::{self, BackendRef, Referrer};

/// The data key of a `localJWKS.valueRef` ConfigMap or Secret (Envoy Gateway's).
pub const JWKS_KEY: &str = "jwks";
/// `remoteJWKS.cacheDuration` when unset.
pub const DEFAULT_CACHE_DURATION_MS: u64 = 5 * 60 * 1000;
/// `clockSkew` when unset.
pub const DEFAULT_CLOCK_SKEW_MS: u64 = 60 * 1000;

/// Validates `jwt`; the clusters of `remoteJWKS.backendRefs` are added to `clusters`.
pub fn validate(
    store: &Store,
    key: &ObjectKey,
    jwt: &Jwt,
    clusters: &mut BTreeMap<String, ClusterIr>,
) -> Result<JwtIr, Vec<String>> {
    let mut problems = Vec::new();
    let mut providers = Vec::new();
    for (i, p) in jwt.providers.iter().enumerate() {
        let field = format!("jwt.providers[{i}] ({})", p.name);
        if jwt.providers[..i].iter().any(|o| o.name == p.name) {
            problems.push(format!("{field}: the name is used by an earlier provider"));
        }
        if let Some(ir) = provider(store, key, &field, p, clusters, &mut problems) {
            providers.push(ir);
        }
    }
    if jwt.providers.is_empty() {
        problems.push("jwt.providers is empty; name at least one issuer".to_owned());
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(JwtIr {
        optional: jwt.optional.unwrap_or(false),
        realm: key.to_string(),
        providers,
    })
}

fn provider(
    store: &Store,
    key: &ObjectKey,
    field: &str,
    p: &JwtProvider,
    clusters: &mut BTreeMap<String, ClusterIr>,
    problems: &mut Vec<String>,
) -> Option<JwtProviderIr> {
    let before = problems.len();
    let keys = match (&p.remote_jwks, &p.local_jwks) {
        (Some(_), Some(_)) => {
            problems.push(format!("{field}: set only one of remoteJWKS and localJWKS"));
            None
        }
        (None, None) => {
            problems.push(format!(
                "{field}: no key source; set remoteJWKS.uri or localJWKS"
            ));
            None
        }
        (Some(remote), None) => {
            let uri = remote.uri.trim();
            let parsed = http::Uri::from_str(uri).ok();
            let usable = parsed.as_ref().is_some_and(|u| {
                matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some()
            });
            if !usable {
                problems.push(format!(
                    "{field}: remoteJWKS.uri {uri:?} is not an http:// or https:// URL"
                ));
            }
            let cache_duration_ms = duration_ms(
                &format!("{field}: remoteJWKS.cacheDuration"),
                remote.cache_duration.as_deref(),
                DEFAULT_CACHE_DURATION_MS,
                problems,
            );
            let cluster = remote.backend_refs.first().and_then(|r| {
                own_namespace_backend(
                    store,
                    key,
                    &format!("{field}: remoteJWKS.backendRefs"),
                    r,
                    clusters,
                    problems,
                )
            });
            (usable && (remote.backend_refs.is_empty() || cluster.is_some())).then(|| {
                JwksSourceIr::Remote {
                    uri: uri.to_owned(),
                    cache_duration_ms,
                    cluster,
                }
            })
        }
        (None, Some(local)) => {
            local_jwks(store, key, field, local, problems).map(|jwks| JwksSourceIr::Local { jwks })
        }
    };
    let mut extract_from = Vec::new();
    if let Some(e) = &p.extract_from {
        for h in &e.headers {
            if let Some(name) = header(
                &format!("{field}: extractFrom.headers"),
                Some(&h.name),
                problems,
            ) {
                extract_from.push(TokenSourceIr::Header {
                    name,
                    value_prefix: h.value_prefix.clone().unwrap_or_default(),
                });
            }
        }
        extract_from.extend(
            e.cookies
                .iter()
                .map(|c| TokenSourceIr::Cookie { name: c.clone() }),
        );
        extract_from.extend(
            e.params
                .iter()
                .map(|c| TokenSourceIr::Param { name: c.clone() }),
        );
    }
    if extract_from.is_empty() {
        extract_from.push(TokenSourceIr::Header {
            name: "authorization".to_owned(),
            value_prefix: "Bearer ".to_owned(),
        });
    }
    let claim_to_headers = p
        .claim_to_headers
        .iter()
        .filter_map(|c| {
            let header = header(
                &format!("{field}: claimToHeaders.header"),
                Some(&c.header),
                problems,
            )?;
            if c.claim.is_empty() {
                problems.push(format!(
                    "{field}: claimToHeaders for {header} names no claim"
                ));
            }
            Some(ClaimToHeaderIr {
                header,
                claim: c.claim.clone(),
            })
        })
        .collect();
    let required_claims = p
        .required_claims
        .iter()
        .map(|c| {
            if c.name.is_empty() {
                problems.push(format!("{field}: a requiredClaims entry has no name"));
            }
            RequiredClaimIr {
                name: c.name.clone(),
                values: c.values.clone(),
            }
        })
        .collect();
    let clock_skew_ms = duration_ms(
        &format!("{field}: clockSkew"),
        p.clock_skew.as_deref(),
        DEFAULT_CLOCK_SKEW_MS,
        problems,
    );
    if problems.len() > before {
        return None;
    }
    Some(JwtProviderIr {
        name: p.name.clone(),
        issuer: p.issuer.clone(),
        audiences: p.audiences.clone(),
        keys: keys?,
        extract_from,
        claim_to_headers,
        required_claims,
        clock_skew_ms,
    })
}

/// The cluster of a backendRef a SecurityPolicy fetches through (`remoteJWKS.backendRefs`,
/// `oidc.provider.backendRefs`): a Service port of the policy's own namespace. A ref to
/// another namespace, or one that does not resolve, is a problem named after `field`.
pub(super) fn own_namespace_backend(
    store: &Store,
    key: &ObjectKey,
    field: &str,
    r: &JwksBackendRef,
    clusters: &mut BTreeMap<String, ClusterIr>,
    problems: &mut Vec<String>,
) -> Option<String> {
    let namespace = r.namespace.as_deref().unwrap_or(&key.namespace);
    if namespace != key.namespace {
        problems.push(format!(
            "{field} {} is in namespace {namespace}; only Services of the policy's namespace can be used",
            r.name
        ));
        return None;
    }
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
            namespace: None,
            port: r.port,
        },
        clusters,
    )
    .map_err(|p| problems.push(format!("{field}: {}", p.message)))
    .ok()
}

pub(super) fn duration_ms(
    field: &str,
    text: Option<&str>,
    default: u64,
    problems: &mut Vec<String>,
) -> u64 {
    let Some(text) = text else {
        return default;
    };
    match Duration::from_str(text) {
        Ok(d) => u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
        Err(e) => {
            problems.push(format!(
                "{field} {text:?} is not a Gateway API duration such as \"60s\": {e}"
            ));
            default
        }
    }
}

/// The JWKS text of a `localJWKS`, checked.
fn local_jwks(
    store: &Store,
    key: &ObjectKey,
    field: &str,
    local: &LocalJwks,
    problems: &mut Vec<String>,
) -> Option<String> {
    let (text, what) = match local.type_.unwrap_or_default() {
        LocalJwksType::Inline => match &local.inline {
            Some(t) => (t.clone(), "localJWKS.inline".to_owned()),
            None => {
                problems.push(format!(
                    "{field}: localJWKS type Inline needs localJWKS.inline"
                ));
                return None;
            }
        },
        LocalJwksType::ValueRef => {
            let Some(r) = &local.value_ref else {
                problems.push(format!(
                    "{field}: localJWKS type ValueRef needs localJWKS.valueRef"
                ));
                return None;
            };
            let kind = r.kind.as_deref().unwrap_or("ConfigMap");
            if !r.group.as_deref().unwrap_or("").is_empty()
                || !matches!(kind, "ConfigMap" | "Secret")
            {
                problems.push(format!(
                    "{field}: localJWKS.valueRef {} must be a core ConfigMap or Secret",
                    r.name
                ));
                return None;
            }
            let object = ObjectKey::new(key.namespace.as_str(), r.name.as_str());
            let text = if kind == "Secret" {
                store.secrets.get(&object).map(|s| {
                    s.data
                        .as_ref()
                        .and_then(|d| d.get(JWKS_KEY))
                        .map(|b| String::from_utf8_lossy(&b.0).into_owned())
                })
            } else {
                store
                    .config_maps
                    .get(&object)
                    .map(|c| c.data.as_ref().and_then(|d| d.get(JWKS_KEY)).cloned())
            };
            match text {
                None => {
                    problems.push(format!("{field}: {kind} {object} does not exist"));
                    return None;
                }
                Some(None) => {
                    problems.push(format!(
                        "{field}: {kind} {object} has no {JWKS_KEY:?} key; put the JWKS document there"
                    ));
                    return None;
                }
                Some(Some(t)) => (t, format!("{kind} {object} key {JWKS_KEY}")),
            }
        }
    };
    match check_jwks(&text) {
        Ok(normalised) => Some(normalised),
        Err(e) => {
            problems.push(format!("{field}: {what} is not a usable JWKS: {e}"));
            None
        }
    }
}

/// Checks a JWKS document: `{"keys": [...]}` with at least one RSA, EC (P-256, P-384) or OKP
/// (Ed25519) public key with its parameters in base64url. Returns it as compact JSON.
pub fn check_jwks(text: &str) -> Result<String, String> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("not JSON ({e})"))?;
    let keys = value
        .get("keys")
        .and_then(|k| k.as_array())
        .ok_or("there is no \"keys\" array")?;
    if keys.is_empty() {
        return Err("\"keys\" is empty".to_owned());
    }
    for (i, k) in keys.iter().enumerate() {
        let field = |name: &str| -> Result<(), String> {
            let v = k
                .get(name)
                .and_then(|v| v.as_str())
                .ok_or_else(|| format!("key {i} has no {name:?}"))?;
            let base64url = !v.is_empty()
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if base64url {
                Ok(())
            } else {
                Err(format!("key {i} {name:?} is not base64url"))
            }
        };
        let kty = k.get("kty").and_then(|v| v.as_str()).unwrap_or("");
        let crv = k.get("crv").and_then(|v| v.as_str()).unwrap_or("");
        match (kty, crv) {
            ("RSA", _) => {
                field("n")?;
                field("e")?;
            }
            ("EC", "P-256" | "P-384") => {
                field("x")?;
                field("y")?;
            }
            ("OKP", "Ed25519") => field("x")?,
            _ => {
                return Err(format!(
                    "key {i} has kty {kty:?} crv {crv:?}; supported are RSA, EC P-256/P-384 and OKP Ed25519"
                ));
            }
        }
    }
    Ok(value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwks_checks_name_the_key_and_field() {
        assert!(check_jwks(r#"{"keys":[{"kty":"OKP","crv":"Ed25519","x":"abc_-"}]}"#).is_ok());
        assert!(check_jwks("nope").unwrap_err().contains("not JSON"));
        assert!(check_jwks(r#"{"keys":[]}"#).unwrap_err().contains("empty"));
        let e = check_jwks(r#"{"keys":[{"kty":"RSA","n":"a+b","e":"AQAB"}]}"#).unwrap_err();
        assert!(e.contains("key 0") && e.contains("\"n\""), "{e}");
        let e = check_jwks(r#"{"keys":[{"kty":"EC","crv":"P-521","x":"a","y":"b"}]}"#).unwrap_err();
        assert!(e.contains("P-521"), "{e}");
    }
}
