//! `SecurityPolicy` and `Consumer` (gantry.dev/v1alpha1): who may call the routes of a
//! Gateway, and who they are.
//!
//! SecurityPolicy is a Direct policy (GEP-713) attached to a Gateway, one of its listeners, an
//! HTTPRoute or GRPCRoute, or one rule of a route; its field names follow Envoy Gateway's
//! `SecurityPolicy` (`apiKeyAuth`, `basicAuth`, `authorization`). The most specific policy
//! applies whole to a request (rule, then route, then listener, then Gateway); fields never
//! merge. `jwt` verifies bearer tokens (after Envoy Gateway's `jwt.providers`); `oidc` logs
//! browsers in at an OpenID provider (authorization code flow with PKCE, an encrypted session
//! cookie); `extAuth` asks an external authorization service (HTTP or Envoy's `ext_authz` gRPC)
//! after the other mechanisms, failing closed unless `failOpen` says otherwise.
//!
//! A Consumer is an API client: its API keys and basic-auth user, and labels (`plan: gold`)
//! that later stages (rate limits) key on.

mod consumer;
mod ext_auth;
mod jwt;
mod oidc;

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

pub use self::consumer::{
    CONSUMER_KIND, Consumer, ConsumerCredentials, ConsumerSelector, ConsumerSpec,
};
pub use self::ext_auth::{
    BodyToExtAuth, ExtAuth, ExtAuthBackendRef, GrpcExtAuthService, HttpExtAuthService,
};
pub use self::jwt::{
    ClaimToHeader, JwksBackendRef, Jwt, JwtExtractor, JwtHeaderExtractor, JwtProvider, LocalJwks,
    LocalJwksType, RemoteJwks, RequiredClaim, ValueRef,
};
pub use self::oidc::{Oidc, OidcCookieNames, OidcProvider};
use crate::backend_config::PolicyAncestorStatus;

/// Kind name of `SecurityPolicy`.
pub const SECURITY_POLICY_KIND: &str = "SecurityPolicy";

/// Authentication (API keys, basic auth, JWT, OpenID Connect login) and authorization by client
/// address for the requests of a Gateway, listener, route or route rule.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "gantry.dev",
    version = "v1alpha1",
    kind = "SecurityPolicy",
    plural = "securitypolicies",
    singular = "securitypolicy",
    shortname = "sp",
    category = "gateway-api",
    doc = "SecurityPolicy authenticates (API keys, basic auth, JWT, OpenID Connect login) and authorizes (client address) the requests of a Gateway, listener, route or route rule.",
    namespaced,
    status = "SecurityPolicyStatus",
    derive = "Default",
    derive = "PartialEq",
    printcolumn = r#"{"name":"Accepted","type":"string","jsonPath":".status.ancestors[*].conditions[?(@.type=='Accepted')].status","description":"Whether the policy is accepted, per Gateway"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct SecurityPolicySpec {
    /// What the policy applies to, in the policy's namespace: a `Gateway` (with `sectionName`,
    /// one listener), an `HTTPRoute` or a `GRPCRoute` (with `sectionName`, the rule of that
    /// `name`).
    #[schemars(length(min = 1, max = 16))]
    #[x_kube(
        validation = Rule::new("self.all(r, r.group == 'gateway.networking.k8s.io' && (r.kind == 'Gateway' || r.kind == 'HTTPRoute' || r.kind == 'GRPCRoute'))").message("targetRefs: only Gateways, HTTPRoutes and GRPCRoutes (group gateway.networking.k8s.io) can be targeted")
    )]
    pub target_refs: Vec<PolicyTargetReference>,
    /// Requests must carry a known API key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_auth: Option<ApiKeyAuth>,
    /// Requests must carry `Authorization: Basic` credentials of a user in an htpasswd file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic_auth: Option<BasicAuth>,
    /// Requests must carry a JSON Web Token signed by a key of one of the providers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<Jwt>,
    /// Browsers without a session are sent to log in at an OpenID provider; other clients
    /// are answered 401.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oidc: Option<Oidc>,
    /// Which client addresses are allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization: Option<Authorization>,
    /// An external authorization service decides, after the other mechanisms passed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ext_auth: Option<ExtAuth>,
    /// Consumers of the policy's namespace whose credentials the policy accepts: their API
    /// keys (with `apiKeyAuth`) and their basic-auth user names (with `basicAuth`). A request
    /// authenticated with one carries the Consumer's identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer_selector: Option<ConsumerSelector>,
    /// A request header that carries the Consumer's `namespace/name` upstream (any value the
    /// client sent in it is removed first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer_header: Option<String>,
}

/// GEP-713 `LocalPolicyTargetReferenceWithSectionName`.
pub type PolicyTargetReference = crate::backend_config::LocalPolicyTargetReferenceWithSectionName;

/// A reference to a Secret (Gateway API `SecretObjectReference`): across namespaces only where
/// a ReferenceGrant permits.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SecretObjectReference {
    /// `""` (core).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// `Secret`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Defaults to the referencing object's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// API key authentication, after Envoy Gateway's `apiKeyAuth`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyAuth {
    /// Secrets whose data keys are client IDs and whose values are API keys.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub credential_refs: Vec<SecretObjectReference>,
    /// Where the key is looked for, in order; the first present wins. At least one entry.
    #[schemars(length(min = 1, max = 16))]
    pub extract_from: Vec<ExtractFrom>,
    /// A request header that carries the client ID upstream.
    #[serde(
        default,
        rename = "forwardClientIDHeader",
        skip_serializing_if = "Option::is_none"
    )]
    pub forward_client_id_header: Option<String>,
}

/// Where to find an API key. Each list is tried in order.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ExtractFrom {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub params: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cookies: Vec<String>,
}

/// Basic authentication, after Envoy Gateway's `basicAuth`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BasicAuth {
    /// A Secret holding an htpasswd file in its `.htpasswd` key (bcrypt `$2y$`/`$2a$`/`$2b$`
    /// or `{SHA}` hashes).
    pub users: SecretObjectReference,
    /// A request header that carries the authenticated user name upstream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward_username_header: Option<String>,
    /// The realm of `WWW-Authenticate`; default the policy's `namespace/name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub realm: Option<String>,
}

/// Authorization by client address, after Envoy Gateway's `authorization`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Authorization {
    /// What happens to a request no rule matches. Default `Deny`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_action: Option<AuthorizationAction>,
    /// The first rule whose principal matches decides.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub rules: Vec<AuthorizationRule>,
}

/// `Allow` or `Deny`.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq,
)]
pub enum AuthorizationAction {
    Allow,
    #[default]
    Deny,
}

/// One authorization rule.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizationRule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub action: AuthorizationAction,
    pub principal: Principal,
}

/// Who a rule is about.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Principal {
    /// Client address ranges (`10.0.0.0/8`, `2001:db8::/32`); the client address is the
    /// connection's peer, or the one `numTrustedHops` picks from `X-Forwarded-For`.
    #[schemars(length(min = 1, max = 64))]
    #[serde(rename = "clientCIDRs")]
    pub client_cidrs: Vec<String>,
}

/// GEP-713 `PolicyStatus`: one entry per Gateway the policy is relevant to.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SecurityPolicyStatus {
    #[serde(default)]
    #[schemars(length(max = 16))]
    pub ancestors: Vec<PolicyAncestorStatus>,
}

/// Labels, for Consumers.
pub type Labels = std::collections::BTreeMap<String, String>;
