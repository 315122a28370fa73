//! SecurityPolicy of a route entry: authentication (API keys, basic auth) and authorization by
//! client address, compiled by the data plane once per snapshot.
//!
//! No credential is readable here: API keys are carried as their SHA-256 (hex), htpasswd hashes
//! serialise as `<redacted>`, so neither `GET /config`, goldens nor logs show one.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::REDACTED;
use crate::store::ObjectKey;

/// The SecurityPolicy governing a route entry (the most specific attachment).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecurityIr {
    /// The policy's `namespace/name`.
    pub policy: ObjectKey,
    /// The policy cannot be used (a missing Secret, a malformed htpasswd line): every request
    /// is refused with 500 and this message, so a route is never left unprotected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refuse: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_auth: Option<ApiKeyAuthIr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic_auth: Option<BasicAuthIr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<JwtIr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oidc: Option<OidcIr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization: Option<AuthorizationIr>,
    /// The external authorization service, asked after every other mechanism passed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ext_auth: Option<SecurityExtAuthIr>,
    /// Lower-case header carrying the Consumer's `namespace/name` upstream; a value the
    /// client sent in it is always removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer_header: Option<String>,
}

/// `extAuth`: the same check as the ExternalAuth filter's (GEP-1494), with what the policy
/// adds to it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecurityExtAuthIr {
    /// The service, the headers and body it is sent, the headers copied back, the timeout.
    /// `cluster` is always set: a policy whose backendRef does not resolve is refused whole.
    #[serde(flatten)]
    pub service: super::ExternalAuthIr,
    /// A service that cannot be reached, times out or answers with an error (an HTTP `5xx`, a
    /// gRPC error status) lets the request through; a denial is still a denial.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub fail_open: bool,
}

/// API keys: where to look for one, and the known ones.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyAuthIr {
    /// Tried in order; the first present wins.
    pub extract_from: Vec<KeySourceIr>,
    /// Sorted by client ID.
    pub clients: Vec<ApiClientIr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward_client_id_header: Option<String>,
}

/// Where an API key is carried. Header names are lower-case.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "name")]
pub enum KeySourceIr {
    Header(String),
    Param(String),
    Cookie(String),
}

/// One accepted API key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiClientIr {
    /// The client ID: the Secret data key (credentialRefs), or the Consumer's name.
    pub client_id: String,
    /// SHA-256 of the key, lower-case hex.
    pub key_sha256: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer: Option<ConsumerIr>,
}

/// The Consumer a credential belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerIr {
    /// `namespace/name`.
    pub name: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// Basic authentication: the users of an htpasswd file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BasicAuthIr {
    /// `WWW-Authenticate: Basic realm="..."`.
    pub realm: String,
    /// Sorted by name.
    pub users: Vec<HtpasswdUserIr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward_username_header: Option<String>,
}

/// One htpasswd user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HtpasswdUserIr {
    pub name: String,
    pub hash: PasswordHash,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer: Option<ConsumerIr>,
}

/// An htpasswd hash (`$2y$...` bcrypt or `{SHA}...`). Never shown: `Debug` and `Serialize`
/// print `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash(String);

impl PasswordHash {
    pub fn new(hash: impl Into<String>) -> Self {
        Self(hash.into())
    }

    /// The hash, for verification only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl Serialize for PasswordHash {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(REDACTED)
    }
}

impl<'de> Deserialize<'de> for PasswordHash {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Self)
    }
}

/// Authorization by client address: the first rule whose ranges hold the client decides.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizationIr {
    pub default_action: ActionIr,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<AuthorizationRuleIr>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ActionIr {
    Allow,
    Deny,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizationRuleIr {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub action: ActionIr,
    /// Normalised CIDRs (`10.0.0.0/8`, `2001:db8::/32`).
    pub client_cidrs: Vec<String>,
}

/// JWT authentication: the providers whose tokens are accepted. Keys are public; tokens are
/// never part of the IR.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JwtIr {
    /// A request without a token passes without an identity.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub optional: bool,
    /// `realm` of `WWW-Authenticate: Bearer`: the policy's `namespace/name`.
    pub realm: String,
    pub providers: Vec<JwtProviderIr>,
}

/// One issuer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JwtProviderIr {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audiences: Vec<String>,
    pub keys: JwksSourceIr,
    /// Tried in order; the first present wins.
    pub extract_from: Vec<TokenSourceIr>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub claim_to_headers: Vec<ClaimToHeaderIr>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub required_claims: Vec<RequiredClaimIr>,
    pub clock_skew_ms: u64,
}

/// Where a provider's keys come from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum JwksSourceIr {
    /// Fetched by the data plane, refreshed every `cache_duration_ms`; through the endpoints
    /// of `cluster` (a Service port, in the IR's clusters) when set, else from the URL's host.
    Remote {
        uri: String,
        cache_duration_ms: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cluster: Option<String>,
    },
    /// The JWKS document (JSON), checked by the translator.
    Local { jwks: String },
}

/// Where a token is carried. Header names are lower-case.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "type",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum TokenSourceIr {
    Header {
        name: String,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        value_prefix: String,
    },
    Cookie {
        name: String,
    },
    Param {
        name: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClaimToHeaderIr {
    /// Lower-case.
    pub header: String,
    /// Dotted path.
    pub claim: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequiredClaimIr {
    /// Dotted path.
    pub name: String,
    /// Empty: the claim must be present.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

/// OpenID Connect login (authorization code flow with PKCE). The client secret is never shown:
/// `Debug` and `Serialize` print `<redacted>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OidcIr {
    /// `iss` of the ID tokens; discovery at `<issuer>/.well-known/openid-configuration`.
    pub issuer: String,
    /// When unset, discovered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_endpoint: Option<String>,
    /// When unset, discovered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_endpoint: Option<String>,
    /// The cluster (a Service port of `provider.backendRefs`, in the IR's clusters) the
    /// discovery document, the token endpoint and the JWKS are reached through; else the
    /// URLs' hosts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    #[serde(rename = "clientID")]
    pub client_id: String,
    pub client_secret: SecretText,
    #[serde(rename = "redirectURL")]
    pub redirect_url: String,
    /// The path of `redirect_url`, answered by the proxy (the callback).
    pub callback_path: String,
    pub logout_path: String,
    /// `openid` first.
    pub scopes: Vec<String>,
    pub session_cookie: String,
    pub state_cookie: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie_domain: Option<String>,
    pub refresh_token: bool,
    pub forward_access_token: bool,
    pub default_token_ttl_ms: u64,
    pub default_refresh_token_ttl_ms: u64,
    /// `realm` of the 401's `WWW-Authenticate: Bearer`: the policy's `namespace/name`.
    pub realm: String,
}

/// A secret (an OAuth client secret). Never shown: `Debug` and `Serialize` print
/// `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretText(String);

impl SecretText {
    pub fn new(text: impl Into<String>) -> Self {
        Self(text.into())
    }

    /// The secret, for use only (never for a log or a message).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl Serialize for SecretText {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(REDACTED)
    }
}

impl<'de> Deserialize<'de> for SecretText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Self)
    }
}
