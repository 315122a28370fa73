//! Who is calling, and may they: the route's SecurityPolicy compiled once per snapshot
//! ([`Guard`]), checked after route selection (and after a CORS preflight is recognised,
//! which carries no credentials) and before any filter that answers or calls upstream.
//!
//! A request on a route without a policy pays one `Option` check. With one, in order:
//! a policy that cannot be used answers 500; `authorization` (client CIDRs) answers 403;
//! `oidc` answers its callback and logout paths, redirects a browser without a session to log
//! in and answers other clients 401; `apiKeyAuth`, `basicAuth` and `jwt` (each configured one
//! must pass) answer 401, and `jwt` answers 403 when a verified token lacks a required claim.
//! Then `extAuth` ([`Guard::ext_auth`], run by the pipeline, which holds the upstream clients
//! and the body): the service's denial is the answer; a service that cannot be reached, times
//! out or answers with an error refuses the request (403) unless `failOpen` lets it through. A
//! request that passes carries its [`Identity`] to later stages (the rate limit).

mod api_key;
mod basic_auth;
pub mod cidr;
mod identity;
pub mod jwt;
mod known_keys;
pub mod oidc;

pub use basic_auth::CACHE_LIMIT as BASIC_AUTH_CACHE_LIMIT;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use crate::filters::ext_auth::ExternalAuth;
use gantry_translate::ir::SecurityIr;
use http::header::HeaderValue;
use http::request::Parts;
use http::{HeaderName, StatusCode};

pub use identity::Identity;

/// A compiled SecurityPolicy.
#[derive(Debug)]
pub struct Guard {
    refuse: Option<String>,
    authorization: Option<cidr::Authorization>,
    api_keys: Option<api_key::ApiKeys>,
    basic: Option<basic_auth::BasicAuth>,
    jwt: Option<jwt::JwtAuth>,
    ext_auth: Option<ExtAuth>,
    oidc: Option<oidc::OidcAuth>,
    /// Where the Consumer's name goes upstream (a client's own value is always removed).
    consumer_header: Option<HeaderName>,
}

/// A policy's `extAuth`: the ExternalAuth filter's check, and what happens when it cannot be
/// made.
#[derive(Debug)]
pub struct ExtAuth {
    pub check: ExternalAuth,
    /// A check that cannot be made (not a denial) lets the request through.
    pub fail_open: bool,
    /// The policy's `namespace/name`, for logs.
    pub policy: String,
}

/// Why a request was refused.
#[derive(Debug)]
pub struct Denial {
    pub status: StatusCode,
    /// The metric's `reason` label: `invalid_policy`, `client_address`, `api_key`,
    /// `basic_auth`, `jwt` (no valid token), `jwt_claims` (a required claim missing), `oidc`
    /// (no login session, or a callback that fails), `oidc_provider` (the OpenID provider
    /// cannot be reached).
    pub reason: &'static str,
    pub message: String,
    /// `WWW-Authenticate` of a basic-auth or JWT refusal.
    pub challenge: Option<HeaderValue>,
}

impl Denial {
    fn new(status: StatusCode, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            reason,
            message: message.into(),
            challenge: None,
        }
    }
}

impl Guard {
    /// Compiles a policy. Never fails: what cannot be compiled refuses every request (500),
    /// so a route is never left open.
    pub fn compile(ir: &SecurityIr) -> Self {
        let mut refuse = ir.refuse.clone();
        let authorization =
            ir.authorization
                .as_ref()
                .and_then(|a| match cidr::Authorization::compile(a) {
                    Ok(a) => Some(a),
                    Err(e) => {
                        refuse.get_or_insert(format!("SecurityPolicy {}: {e}", ir.policy));
                        None
                    }
                });
        let ext_auth = ir
            .ext_auth
            .as_ref()
            .and_then(|a| match ExternalAuth::compile(&a.service) {
                Ok(check) => Some(ExtAuth {
                    check: check.with_server_errors_failing(),
                    fail_open: a.fail_open,
                    policy: ir.policy.to_string(),
                }),
                Err(e) => {
                    refuse.get_or_insert(format!("SecurityPolicy {} extAuth: {e}", ir.policy));
                    None
                }
            });
        let consumer_header = ir
            .consumer_header
            .as_deref()
            .and_then(|h| HeaderName::from_bytes(h.as_bytes()).ok());
        Self {
            refuse,
            authorization,
            api_keys: ir.api_key_auth.as_ref().map(api_key::ApiKeys::compile),
            basic: ir.basic_auth.as_ref().map(basic_auth::BasicAuth::compile),
            jwt: ir.jwt.as_ref().map(jwt::JwtAuth::compile),
            ext_auth,
            oidc: ir.oidc.as_ref().map(oidc::OidcAuth::compile),
            consumer_header,
        }
    }

    /// The external authorization service, asked after [`Guard::check`] passed.
    pub fn ext_auth(&self) -> Option<&ExtAuth> {
        self.ext_auth.as_ref()
    }

    /// Whether [`Guard::check_now`] can decide: nothing in the policy waits (no `oidc`,
    /// `basicAuth` or `jwt`), so the request needs no future for it.
    pub fn is_immediate(&self) -> bool {
        self.oidc.is_none() && self.basic.is_none() && self.jwt.is_none()
    }

    /// [`Guard::check`] for a policy that [`Guard::is_immediate`] (the policy group of
    /// `e2e/bench/run.sh --instructions-only` counts the future this saves).
    pub fn check_now(
        &self,
        parts: &mut Parts,
        client: impl FnOnce(&Parts) -> IpAddr,
    ) -> Result<Checked, Denial> {
        self.admit(parts, client)?;
        let identity = match &self.api_keys {
            Some(keys) => Some(keys.authenticate(parts)?),
            None => None,
        };
        Ok(Checked::Pass(self.name_consumer(parts, identity)))
    }

    /// Checks a request; `client` gives the client address (only called with
    /// `authorization`). On success the request's credentials are stripped, the configured
    /// identity headers set, and the identity returned; or the policy answers itself
    /// (`oidc`'s login redirect, callback and logout).
    pub async fn check(
        &self,
        parts: &mut Parts,
        client: impl FnOnce(&Parts) -> IpAddr,
    ) -> Result<Checked, Denial> {
        self.admit(parts, client)?;
        let mut identity = None;
        if let Some(oidc) = &self.oidc {
            match oidc.authenticate(parts).await? {
                oidc::Outcome::Answer(response) => return Ok(Checked::Answer(response)),
                oidc::Outcome::Pass(caller) => identity = Some(caller),
            }
        }
        if let Some(keys) = &self.api_keys {
            identity = Some(keys.authenticate(parts)?);
        }
        if let Some(basic) = &self.basic {
            let user = basic.authenticate(parts).await?;
            identity.get_or_insert(user);
        }
        if let Some(jwt) = &self.jwt
            && let Some(caller) = jwt.authenticate(parts).await?
        {
            identity.get_or_insert(caller);
        }
        Ok(Checked::Pass(self.name_consumer(parts, identity)))
    }

    /// What comes before any credential: a policy that cannot be used (500), the client
    /// address (403), and the client's own value of the consumer header removed.
    fn admit(
        &self,
        parts: &mut Parts,
        client: impl FnOnce(&Parts) -> IpAddr,
    ) -> Result<(), Denial> {
        if let Some(message) = &self.refuse {
            return Err(Denial::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "invalid_policy",
                format!("{message}; this route refuses every request until the policy is fixed"),
            ));
        }
        if let Some(authorization) = &self.authorization {
            let address = client(parts);
            if !authorization.allows(address) {
                return Err(Denial::new(
                    StatusCode::FORBIDDEN,
                    "client_address",
                    "the client address is not allowed on this route",
                ));
            }
        }
        if let Some(header) = &self.consumer_header {
            parts.headers.remove(header);
        }
        Ok(())
    }

    /// The Consumer's name in the consumer header, when the policy names one.
    fn name_consumer(&self, parts: &mut Parts, identity: Option<Identity>) -> Option<Identity> {
        if let (Some(header), Some(consumer)) = (
            &self.consumer_header,
            identity.as_ref().and_then(|i| i.consumer.as_ref()),
        ) && let Ok(value) = HeaderValue::from_str(consumer)
        {
            parts.headers.insert(header.clone(), value);
        }
        identity
    }
}

/// What a policy let through, or its own answer.
#[derive(Debug)]
pub enum Checked {
    /// The request goes on, with the caller's identity when the policy knows one.
    Pass(Option<Identity>),
    /// The policy answers the request itself (a redirect).
    Answer(http::Response<bytes::Bytes>),
}

/// The identity of a credential that belongs to a Consumer, or names only a subject.
fn identity_of(subject: &str, consumer: Option<&gantry_translate::ir::ConsumerIr>) -> Identity {
    Identity {
        consumer: consumer.map(|c| Arc::from(c.name.as_str())),
        labels: Arc::new(consumer.map(|c| c.labels.clone()).unwrap_or_default()),
        subject: Some(Arc::from(subject)),
        claims: Arc::new(BTreeMap::new()),
    }
}
