//! `oidc` of a SecurityPolicy: browsers log in at an OpenID provider (authorization code flow
//! with PKCE) and carry an encrypted session cookie, after Envoy Gateway's `oidc`.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use super::{JwksBackendRef, SecretObjectReference};
use crate::backend_config::DURATION_PATTERN;

/// OpenID Connect login, after Envoy Gateway's `oidc`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Oidc {
    /// The OpenID provider.
    pub provider: OidcProvider,
    /// The client ID registered at the provider.
    #[serde(rename = "clientID")]
    #[schemars(length(min = 1, max = 253))]
    pub client_id: String,
    /// A Secret whose `client-secret` key holds the client secret. The session cookie's
    /// encryption key is derived from it (and the policy's name), so every replica shares it.
    pub client_secret: SecretObjectReference,
    /// The callback URL registered at the provider (`https://app.example.com/oauth2/callback`);
    /// its path is answered by the proxy on every route the policy governs.
    #[serde(rename = "redirectURL")]
    #[schemars(length(min = 1, max = 2048))]
    pub redirect_url: String,
    /// A path that ends the session: its cookies are cleared and the browser is sent to the
    /// provider's `end_session_endpoint` (when it has one), else to `/`. Default `/logout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logout_path: Option<String>,
    /// Scopes asked for; `openid` is always added.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub scopes: Vec<String>,
    /// The cookies' names; by default derived from the policy's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie_names: Option<OidcCookieNames>,
    /// The `Domain` of the cookies; default none (the request's host only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie_domain: Option<String>,
    /// Refresh the access token with the refresh token shortly before it expires, keeping the
    /// session. Default `true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<bool>,
    /// Send the access token upstream as `Authorization: Bearer <token>`. Default `false`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward_access_token: Option<bool>,
    /// How long a session lasts when the token response carries no `expires_in`. Default
    /// `1h`.
    #[serde(
        default,
        rename = "defaultTokenTTL",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub default_token_ttl: Option<String>,
    /// How long a refresh token is used. Default `168h` (7 days).
    #[serde(
        default,
        rename = "defaultRefreshTokenTTL",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub default_refresh_token_ttl: Option<String>,
}

/// The OpenID provider's endpoints.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct OidcProvider {
    /// The issuer (`iss` of its ID tokens); its discovery document
    /// `<issuer>/.well-known/openid-configuration` gives every endpoint not set here and the
    /// JWKS the ID token is verified with.
    #[schemars(length(min = 1, max = 2048))]
    pub issuer: String,
    /// The authorization endpoint browsers are redirected to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_endpoint: Option<String>,
    /// The token endpoint codes are exchanged at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_endpoint: Option<String>,
    /// A Service port of the policy's namespace the discovery document, the token endpoint
    /// and the JWKS are fetched through (at most one); the URLs give the Host header, the path
    /// and the TLS server name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1))]
    pub backend_refs: Vec<JwksBackendRef>,
}

/// Cookie names.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct OidcCookieNames {
    /// The session cookie (the encrypted tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// The short-lived cookie of a login in progress (state, nonce, PKCE verifier, the
    /// original URL; encrypted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
}
