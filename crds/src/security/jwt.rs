//! `jwt` of a SecurityPolicy: JSON Web Tokens verified against the keys of one or more
//! providers, after Envoy Gateway's `jwt.providers`, with Gantry's `requiredClaims` and
//! `clockSkew`.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use crate::backend_config::DURATION_PATTERN;

/// JWT authentication, after Envoy Gateway's `jwt`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Jwt {
    /// A request without a token passes (without an identity); a request with a token that
    /// fails verification is still refused. Default `false`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optional: Option<bool>,
    /// The issuers whose tokens are accepted. A token is verified by the first provider that
    /// finds it (in its `extractFrom` places) and whose `issuer` matches the token's `iss`.
    #[schemars(length(min = 1, max = 4))]
    pub providers: Vec<JwtProvider>,
}

/// One token issuer and its keys.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct JwtProvider {
    /// Unique within the policy.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// The `iss` a token must carry; when unset, any issuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// When set, the token's `aud` must hold one of these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub audiences: Vec<String>,
    /// Keys fetched from a JWKS URL. Exactly one of `remoteJWKS` and `localJWKS`.
    #[serde(
        default,
        rename = "remoteJWKS",
        skip_serializing_if = "Option::is_none"
    )]
    pub remote_jwks: Option<RemoteJwks>,
    /// Keys given in the policy or in a ConfigMap or Secret.
    #[serde(default, rename = "localJWKS", skip_serializing_if = "Option::is_none")]
    pub local_jwks: Option<LocalJwks>,
    /// Claims copied to request headers (a client's own value of such a header is removed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub claim_to_headers: Vec<ClaimToHeader>,
    /// Where the token is looked for; default `Authorization: Bearer <token>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extract_from: Option<JwtExtractor>,
    /// Gantry: claims a verified token must carry (authorization). A token that lacks one is
    /// answered 403.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub required_claims: Vec<RequiredClaim>,
    /// Gantry: tolerance for `exp` and `nbf`. Default `60s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub clock_skew: Option<String>,
}

/// A JWKS URL.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RemoteJwks {
    /// `http://` or `https://` URL of the JWKS document. Without `backendRefs` its host is
    /// resolved and connected to; with one, the URL gives the Host header, the path and the
    /// TLS server name.
    #[schemars(length(min = 1, max = 253))]
    pub uri: String,
    /// A Service port of the policy's namespace the JWKS is fetched through (at most one).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1))]
    pub backend_refs: Vec<JwksBackendRef>,
    /// How long fetched keys are used before they are fetched again. Default `5m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub cache_duration: Option<String>,
}

/// A Service port (Gateway API `BackendObjectReference`).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct JwksBackendRef {
    /// `""` (core).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// `Service`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Must be the policy's namespace when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<i32>,
}

/// `Inline` or `ValueRef`.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq,
)]
pub enum LocalJwksType {
    #[default]
    Inline,
    ValueRef,
}

/// Keys given locally, after Envoy Gateway's `localJWKS`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LocalJwks {
    /// `Inline` (the JWKS in `inline`) or `ValueRef` (in `valueRef`). Default `Inline`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<LocalJwksType>,
    /// The JWKS document (JSON).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inline: Option<String>,
    /// A ConfigMap (or Secret) of the policy's namespace whose `jwks` key holds the JWKS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_ref: Option<ValueRef>,
}

/// A ConfigMap or Secret of the policy's namespace (`LocalObjectReference`).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ValueRef {
    /// `""` (core).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// `ConfigMap` (default) or `Secret`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// One claim copied to a request header.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ClaimToHeader {
    /// The request header.
    pub header: String,
    /// The claim, nested claims by dotted path (`org.team`).
    pub claim: String,
}

/// Where a token is looked for, in order: headers, cookies, query parameters.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct JwtExtractor {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<JwtHeaderExtractor>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cookies: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub params: Vec<String>,
}

/// A header carrying the token, after an optional prefix (`Bearer `).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct JwtHeaderExtractor {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_prefix: Option<String>,
}

/// A claim a token must carry: with `values`, one of them (a list claim such as `groups`
/// must hold one of them).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RequiredClaim {
    /// The claim, nested claims by dotted path.
    pub name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub values: Vec<String>,
}
