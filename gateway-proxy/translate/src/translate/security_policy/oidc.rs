//! `oidc`: the provider's URLs checked (a `backendRefs` Service port of the policy's namespace
//! resolved into a cluster, as a JWKS backendRef is), the client secret read from its Secret (`client-secret`
//! key, through a ReferenceGrant across namespaces), the callback and logout paths, scopes
//! (`openid` first), cookie names (by default derived from the policy's name) and TTLs.

use std::collections::BTreeMap;
use std::str::FromStr;

use super::api_key::sha256_hex;
use super::jwt::{duration_ms, own_namespace_backend};
use super::secrets;
use crate::ir::{ClusterIr, OidcIr, SecretText};
use crate::store::{ObjectKey, Store};
use gantry_crds::security::Oidc;

/// The Secret key holding the client secret (Envoy Gateway's).
pub const CLIENT_SECRET_KEY: &str = "client-secret";
/// `defaultTokenTTL` when unset.
pub const DEFAULT_TOKEN_TTL_MS: u64 = 60 * 60 * 1000;
/// `defaultRefreshTokenTTL` when unset.
pub const DEFAULT_REFRESH_TOKEN_TTL_MS: u64 = 7 * 24 * 60 * 60 * 1000;

/// Validates `oidc`; the cluster of `provider.backendRefs` is added to `clusters`.
pub fn validate(
    store: &Store,
    key: &ObjectKey,
    oidc: &Oidc,
    clusters: &mut BTreeMap<String, ClusterIr>,
) -> Result<OidcIr, Vec<String>> {
    let mut problems = Vec::new();
    let url = |field: &str, text: &str, problems: &mut Vec<String>| -> Option<http::Uri> {
        let parsed = http::Uri::from_str(text.trim())
            .ok()
            .filter(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some());
        if parsed.is_none() {
            problems.push(format!(
                "oidc.{field} {text:?} is not an http:// or https:// URL"
            ));
        }
        parsed
    };
    let issuer = oidc.provider.issuer.trim().trim_end_matches('/').to_owned();
    url("provider.issuer", &issuer, &mut problems);
    for (field, value) in [
        (
            "provider.authorizationEndpoint",
            &oidc.provider.authorization_endpoint,
        ),
        ("provider.tokenEndpoint", &oidc.provider.token_endpoint),
    ] {
        if let Some(v) = value {
            url(field, v, &mut problems);
        }
    }
    let cluster = oidc.provider.backend_refs.first().and_then(|r| {
        own_namespace_backend(
            store,
            key,
            "oidc.provider.backendRefs",
            r,
            clusters,
            &mut problems,
        )
    });
    let callback_path = url("redirectURL", &oidc.redirect_url, &mut problems)
        .map(|u| u.path().to_owned())
        .unwrap_or_default();
    let logout_path = oidc
        .logout_path
        .clone()
        .unwrap_or_else(|| "/logout".to_owned());
    if !logout_path.starts_with('/') {
        problems.push(format!(
            "oidc.logoutPath {logout_path:?} does not start with /"
        ));
    }
    if logout_path == callback_path {
        problems.push("oidc.logoutPath is the redirectURL's path".to_owned());
    }
    if oidc.client_id.trim().is_empty() {
        problems.push("oidc.clientID is empty".to_owned());
    }
    let secret = ObjectKey::new(
        oidc.client_secret
            .namespace
            .as_deref()
            .unwrap_or(&key.namespace),
        oidc.client_secret.name.as_str(),
    );
    let client_secret =
        match secrets::data(store, "SecurityPolicy", &key.namespace, &oidc.client_secret) {
            Ok(data) => match data
                .get(CLIENT_SECRET_KEY)
                .map(|b| std::str::from_utf8(&b.0))
            {
                None => {
                    problems.push(format!("Secret {secret} has no {CLIENT_SECRET_KEY:?} key"));
                    None
                }
                Some(Err(_)) => {
                    problems.push(format!("Secret {secret} {CLIENT_SECRET_KEY} is not UTF-8"));
                    None
                }
                Some(Ok(text)) if text.trim().is_empty() => {
                    problems.push(format!("Secret {secret} {CLIENT_SECRET_KEY} is empty"));
                    None
                }
                Some(Ok(text)) => Some(SecretText::new(text.trim())),
            },
            Err(message) => {
                problems.push(message);
                None
            }
        };
    let mut scopes = vec!["openid".to_owned()];
    for s in &oidc.scopes {
        if s.is_empty() || s.contains([' ', '"', '\\']) {
            problems.push(format!("oidc.scopes: {s:?} is not a scope token"));
        } else if !scopes.contains(s) {
            scopes.push(s.clone());
        }
    }
    let suffix = &sha256_hex(key.to_string().as_bytes())[..8];
    let names = oidc.cookie_names.clone().unwrap_or_default();
    let session_cookie = names
        .session
        .unwrap_or_else(|| format!("gantry-session-{suffix}"));
    let state_cookie = names
        .state
        .unwrap_or_else(|| format!("gantry-oidc-state-{suffix}"));
    for (field, name) in [
        ("cookieNames.session", &session_cookie),
        ("cookieNames.state", &state_cookie),
    ] {
        let token = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !token {
            problems.push(format!("oidc.{field} {name:?} is not a cookie name"));
        }
    }
    if session_cookie == state_cookie {
        problems.push("oidc.cookieNames: session and state are the same name".to_owned());
    }
    if let Some(d) = &oidc.cookie_domain
        && (d.is_empty()
            || !d
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.".contains(&b)))
    {
        problems.push(format!("oidc.cookieDomain {d:?} is not a domain name"));
    }
    let default_token_ttl_ms = duration_ms(
        "oidc.defaultTokenTTL",
        oidc.default_token_ttl.as_deref(),
        DEFAULT_TOKEN_TTL_MS,
        &mut problems,
    );
    let default_refresh_token_ttl_ms = duration_ms(
        "oidc.defaultRefreshTokenTTL",
        oidc.default_refresh_token_ttl.as_deref(),
        DEFAULT_REFRESH_TOKEN_TTL_MS,
        &mut problems,
    );
    match client_secret {
        Some(client_secret) if problems.is_empty() => Ok(OidcIr {
            issuer,
            authorization_endpoint: oidc.provider.authorization_endpoint.clone(),
            token_endpoint: oidc.provider.token_endpoint.clone(),
            cluster,
            client_id: oidc.client_id.trim().to_owned(),
            client_secret,
            redirect_url: oidc.redirect_url.trim().to_owned(),
            callback_path,
            logout_path,
            scopes,
            session_cookie,
            state_cookie,
            cookie_domain: oidc.cookie_domain.clone(),
            refresh_token: oidc.refresh_token.unwrap_or(true),
            forward_access_token: oidc.forward_access_token.unwrap_or(false),
            default_token_ttl_ms,
            default_refresh_token_ttl_ms,
            realm: key.to_string(),
        }),
        _ => Err(problems),
    }
}
