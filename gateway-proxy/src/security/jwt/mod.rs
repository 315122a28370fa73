//! `jwt`: a bearer token found where a provider looks for it, verified against the provider's
//! keys (local, or a remote JWKS kept by [`fetcher`]), its `iss`, `aud`, `exp` and `nbf`
//! checked (with the provider's clock skew), then its required claims (403 when one is
//! missing); claims copied to request headers and the token removed before the request goes
//! upstream. The token never reaches a log or a message.

mod fetcher;
mod keys;
mod verified;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use gantry_translate::ir::{JwksSourceIr, JwtIr, JwtProviderIr, TokenSourceIr};
use http::header::HeaderValue;
use http::request::Parts;
use http::{HeaderName, StatusCode};
use serde_json::Value;

pub use self::fetcher::{FETCH_TIMEOUT, FORCED_REFETCH_INTERVAL, RemoteJwks, update_endpoints};
pub(crate) use self::fetcher::{call, cluster_endpoints, want_cluster};
pub use self::keys::{KeySet, Verified};
use super::api_key::{Source, extract, strip};
use super::{Denial, Identity};

/// A token longer than this is refused without being decoded.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

#[derive(Debug)]
pub struct JwtAuth {
    optional: bool,
    providers: Vec<Provider>,
    /// `Bearer realm="..."`, and with `error="invalid_token"` / `"insufficient_scope"`.
    missing: HeaderValue,
    invalid: HeaderValue,
    insufficient: HeaderValue,
    /// Every claimToHeaders header of every provider: a client's own values are removed.
    claim_headers: Vec<HeaderName>,
}

#[derive(Debug)]
struct Provider {
    issuer: Option<String>,
    audiences: Vec<String>,
    keys: Keys,
    sources: Vec<(Source, String)>,
    claim_to_headers: Vec<(HeaderName, String)>,
    required_claims: Vec<(String, Vec<String>)>,
    clock_skew: u64,
    /// Tokens whose signature verified.
    verified: verified::VerifiedTokens,
}

#[derive(Debug)]
enum Keys {
    Local(Result<KeySet, String>),
    Remote(Arc<RemoteJwks>),
}

/// Why a token was refused (for the message; never the token).
type Failure = &'static str;

impl JwtAuth {
    pub fn compile(ir: &JwtIr) -> Self {
        let realm = ir.realm.replace(['"', '\\'], "");
        let challenge = |suffix: &str| {
            HeaderValue::from_str(&format!("Bearer realm=\"{realm}\"{suffix}"))
                .unwrap_or(HeaderValue::from_static("Bearer"))
        };
        let providers: Vec<Provider> = ir.providers.iter().map(Provider::compile).collect();
        let claim_headers = providers
            .iter()
            .flat_map(|p| p.claim_to_headers.iter().map(|(h, _)| h.clone()))
            .collect();
        Self {
            optional: ir.optional,
            providers,
            missing: challenge(""),
            invalid: challenge(", error=\"invalid_token\""),
            insufficient: challenge(", error=\"insufficient_scope\""),
            claim_headers,
        }
    }

    fn deny(&self, status: StatusCode, message: &str) -> Denial {
        let (reason, challenge) = match status {
            StatusCode::FORBIDDEN => ("jwt_claims", &self.insufficient),
            _ => ("jwt", &self.invalid),
        };
        let mut d = Denial::new(status, reason, message);
        d.challenge = Some(challenge.clone());
        d
    }

    /// Verifies the request's token. `Ok(None)`: no token and the policy is `optional`.
    pub async fn authenticate(&self, parts: &mut Parts) -> Result<Option<Identity>, Denial> {
        for h in &self.claim_headers {
            parts.headers.remove(h);
        }
        let mut found_any = false;
        let mut chosen = None;
        'providers: for provider in &self.providers {
            for (source, prefix) in &provider.sources {
                let Some(value) = extract(source, parts) else {
                    continue;
                };
                let Some(token) = token_in(&value, prefix) else {
                    continue;
                };
                found_any = true;
                // A token this provider verified before has the issuer it accepts.
                let known = provider.known(&value[token.clone()]);
                if known.is_some() || provider.accepts_issuer_of(&value[token.clone()]) {
                    chosen = Some((provider, source, value, token, known));
                    break 'providers;
                }
            }
        }
        let Some((provider, source, value, token, known)) = chosen else {
            if !found_any {
                if self.optional {
                    return Ok(None);
                }
                let mut d = Denial::new(
                    StatusCode::UNAUTHORIZED,
                    "jwt",
                    "a bearer token is required",
                );
                d.challenge = Some(self.missing.clone());
                return Err(d);
            }
            return Err(self.deny(
                StatusCode::UNAUTHORIZED,
                "the token is invalid: its issuer is not accepted here",
            ));
        };
        let invalid = |why: Failure| {
            self.deny(
                StatusCode::UNAUTHORIZED,
                &format!("the token is invalid: {why}"),
            )
        };
        let claims = match known {
            Some(claims) => claims,
            None => provider.verify(&value[token]).await.map_err(invalid)?,
        };
        // The token is read from the request as it came; only now is it removed.
        drop(value);
        strip(source, parts);
        provider
            .check_time(&claims.map, now_seconds())
            .map_err(invalid)?;
        if let Err(name) = provider.check_required(&claims.map) {
            return Err(self.deny(
                StatusCode::FORBIDDEN,
                &format!("the token lacks a required claim: {name}"),
            ));
        }
        for (header, claim) in &provider.claim_to_headers {
            if let Some(v) =
                lookup(&claims.map, claim).and_then(|v| HeaderValue::from_str(&as_text(v)).ok())
            {
                parts.headers.insert(header.clone(), v);
            }
        }
        Ok(Some(Identity {
            consumer: None,
            labels: Arc::default(),
            subject: claims.subject.clone(),
            claims: claims.flat.clone(),
        }))
    }
}

/// A verified token's claims, decoded once and kept with the token ([`verified`]).
#[derive(Debug)]
pub struct Claims {
    pub map: serde_json::Map<String, Value>,
    /// Every claim as text by dotted path (what rate limits select on).
    flat: Arc<BTreeMap<String, String>>,
    /// `sub`.
    subject: Option<Arc<str>>,
}

impl Claims {
    fn new(map: serde_json::Map<String, Value>) -> Self {
        let mut flat = BTreeMap::new();
        flatten("", &map, &mut flat);
        Self {
            subject: map.get("sub").and_then(Value::as_str).map(Arc::from),
            flat: Arc::new(flat),
            map,
        }
    }
}

/// Verifies OpenID Connect ID tokens of one issuer and client: the signature against the
/// issuer's JWKS (fetched and cached as a `remoteJWKS` is), `iss`, `aud` (the client ID) and
/// `exp`, with a clock skew of 60 s.
#[derive(Debug)]
pub struct IdTokenVerifier(Provider);

impl IdTokenVerifier {
    /// With `cluster`, the JWKS is fetched through its endpoints.
    pub fn new(issuer: &str, client_id: &str, jwks_uri: &str, cluster: Option<&str>) -> Self {
        Self(Provider::compile(&JwtProviderIr {
            name: "oidc".to_owned(),
            issuer: Some(issuer.to_owned()),
            audiences: vec![client_id.to_owned()],
            keys: JwksSourceIr::Remote {
                uri: jwks_uri.to_owned(),
                cache_duration_ms: 5 * 60 * 1000,
                cluster: cluster.map(str::to_owned),
            },
            extract_from: Vec::new(),
            claim_to_headers: Vec::new(),
            required_claims: Vec::new(),
            clock_skew_ms: 60 * 1000,
        }))
    }

    /// The token's claims, or why it is not valid (never the token).
    pub async fn verify(&self, token: &str) -> Result<Arc<Claims>, &'static str> {
        // A verifier is made when the provider is discovered, often by the request that
        // brings the first ID token: its JWKS has not been fetched yet.
        if let Keys::Remote(remote) = &self.0.keys {
            remote.first_fetch(FETCH_TIMEOUT).await;
        }
        let claims = match self.0.known(token) {
            Some(claims) => claims,
            None => self.0.verify(token).await?,
        };
        self.0.check_time(&claims.map, now_seconds())?;
        if !claims.map.contains_key("exp") {
            return Err("it has no exp");
        }
        Ok(claims)
    }
}

impl Provider {
    fn compile(ir: &JwtProviderIr) -> Self {
        let keys = match &ir.keys {
            JwksSourceIr::Local { jwks } => Keys::Local(KeySet::parse(jwks.as_bytes())),
            JwksSourceIr::Remote {
                uri,
                cache_duration_ms,
                cluster,
            } => Keys::Remote(RemoteJwks::get(
                uri,
                Duration::from_millis(*cache_duration_ms),
                cluster.as_deref(),
            )),
        };
        let sources = ir
            .extract_from
            .iter()
            .filter_map(|s| match s {
                TokenSourceIr::Header { name, value_prefix } => {
                    HeaderName::from_bytes(name.as_bytes())
                        .ok()
                        .map(|h| (Source::Header(h), value_prefix.clone()))
                }
                TokenSourceIr::Cookie { name } => {
                    Some((Source::Cookie(name.clone()), String::new()))
                }
                TokenSourceIr::Param { name } => Some((Source::Param(name.clone()), String::new())),
            })
            .collect();
        Self {
            issuer: ir.issuer.clone(),
            audiences: ir.audiences.clone(),
            keys,
            sources,
            claim_to_headers: ir
                .claim_to_headers
                .iter()
                .filter_map(|c| {
                    Some((
                        HeaderName::from_bytes(c.header.as_bytes()).ok()?,
                        c.claim.clone(),
                    ))
                })
                .collect(),
            required_claims: ir
                .required_claims
                .iter()
                .map(|c| (c.name.clone(), c.values.clone()))
                .collect(),
            clock_skew: ir.clock_skew_ms / 1000,
            verified: verified::VerifiedTokens::default(),
        }
    }

    /// Whether this provider takes the token: its `iss` (read before verification, only to
    /// pick the provider) matches, or the provider accepts any issuer.
    fn accepts_issuer_of(&self, token: &str) -> bool {
        let Some(issuer) = &self.issuer else {
            return true;
        };
        decode_part(token.split('.').nth(1).unwrap_or(""))
            .and_then(|v| v.get("iss").and_then(Value::as_str).map(|i| i == issuer))
            .unwrap_or(false)
    }

    /// The claims of a token this provider verified before against its current keys.
    fn known(&self, token: &str) -> Option<Arc<Claims>> {
        let keys = match &self.keys {
            Keys::Local(Ok(set)) => set.id(),
            Keys::Local(Err(_)) => return None,
            Keys::Remote(remote) => remote.keys()?.id(),
        };
        self.verified.get(token, keys)
    }

    /// The claims of a token whose signature, `iss` and `aud` verify (remembered with the
    /// token, see [`verified`]), or why it is not valid. Its `exp` and `nbf` are
    /// [`Provider::check_time`]'s.
    async fn verify(&self, token: &str) -> Result<Arc<Claims>, Failure> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err("it is too long");
        }
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err("it is not a compact JWS (header.payload.signature)");
        };
        let header = decode_part(h).ok_or("its header is not base64url JSON")?;
        let claims = decode_part(p).ok_or("its payload is not base64url JSON")?;
        let signature = URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| "its signature is not base64url")?;
        let alg = header.get("alg").and_then(Value::as_str).unwrap_or("");
        let kid = header.get("kid").and_then(Value::as_str);
        let message = &token.as_bytes()[..h.len() + 1 + p.len()];
        let check_with = |set: &KeySet| (set.verify(alg, kid, message, &signature), set.id());
        let (verified, keys) = match &self.keys {
            Keys::Local(Ok(set)) => check_with(set),
            Keys::Local(Err(_)) => (Verified::UnknownKey, 0),
            Keys::Remote(remote) => {
                let check = || {
                    remote
                        .keys()
                        .map_or((Verified::UnknownKey, 0), |set| check_with(&set))
                };
                let mut verified = check();
                // Twice: the fetch waited for may have started before the rotation.
                for _ in 0..2 {
                    if verified.0 != Verified::UnknownKey || !remote.refetch_for_unknown_key().await
                    {
                        break;
                    }
                    verified = check();
                }
                verified
            }
        };
        match verified {
            Verified::Valid => {}
            Verified::BadSignature => return Err("its signature does not verify"),
            Verified::UnknownKey => return Err("no key of its issuer matches its kid"),
            Verified::UnsupportedAlgorithm => {
                return Err("its alg is not RS*, PS*, ES256, ES384 or EdDSA");
            }
        }
        if let Some(issuer) = &self.issuer
            && claims.get("iss").and_then(Value::as_str) != Some(issuer)
        {
            return Err("its issuer is not accepted here");
        }
        if !self.audiences.is_empty() {
            let held = |a: &str| self.audiences.iter().any(|x| x == a);
            let ok = match claims.get("aud") {
                Some(Value::String(a)) => held(a),
                Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).any(held),
                _ => false,
            };
            if !ok {
                return Err("its audience is not accepted here");
            }
        }
        let claims = Arc::new(Claims::new(claims));
        self.verified.remember(token, keys, claims.clone());
        Ok(claims)
    }

    /// `exp` and `nbf` against `now`, with the provider's clock skew.
    fn check_time(&self, claims: &serde_json::Map<String, Value>, now: u64) -> Result<(), Failure> {
        match claims.get("exp") {
            None => {}
            Some(exp) => match exp.as_f64() {
                Some(exp) if (now as f64) < exp + self.clock_skew as f64 => {}
                Some(_) => return Err("it has expired"),
                None => return Err("its exp is not a number"),
            },
        }
        match claims.get("nbf") {
            None => {}
            Some(nbf) => match nbf.as_f64() {
                Some(nbf) if (now + self.clock_skew) as f64 >= nbf => {}
                Some(_) => return Err("it is not valid yet (nbf)"),
                None => return Err("its nbf is not a number"),
            },
        }
        Ok(())
    }

    /// Every required claim is present (with one of its values, when values are listed), or
    /// the first one that is not.
    fn check_required<'a>(
        &'a self,
        claims: &serde_json::Map<String, Value>,
    ) -> Result<(), &'a str> {
        for (name, values) in &self.required_claims {
            let ok = match lookup(claims, name) {
                None | Some(Value::Null) => false,
                Some(_) if values.is_empty() => true,
                Some(Value::Array(list)) => list.iter().any(|v| values.contains(&as_text(v))),
                Some(Value::String(s)) => {
                    values.contains(s) || s.split(' ').any(|w| values.iter().any(|v| v == w))
                }
                Some(v) => values.contains(&as_text(v)),
            };
            if !ok {
                return Err(name);
            }
        }
        Ok(())
    }
}

/// Where the token is in `value`: after `prefix` (compared without regard to case, as
/// `Bearer` is), trimmed.
fn token_in(value: &str, prefix: &str) -> Option<std::ops::Range<usize>> {
    let head = value.get(..prefix.len())?;
    if !head.eq_ignore_ascii_case(prefix) {
        return None;
    }
    let rest = &value[prefix.len()..];
    let token = rest.trim_start();
    let start = prefix.len() + rest.len() - token.len();
    let token = token.trim_end();
    (!token.is_empty()).then_some(start..start + token.len())
}

fn decode_part(part: &str) -> Option<serde_json::Map<String, Value>> {
    let bytes = URL_SAFE_NO_PAD.decode(part).ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

/// A claim by dotted path (`org.team`); a top-level name containing dots is found as is.
fn lookup<'c>(claims: &'c serde_json::Map<String, Value>, path: &str) -> Option<&'c Value> {
    if let Some(v) = claims.get(path) {
        return Some(v);
    }
    let mut parts = path.split('.');
    let mut value = claims.get(parts.next()?)?;
    for part in parts {
        value = value.as_object()?.get(part)?;
    }
    Some(value)
}

/// A claim as header text: strings as they are, lists of strings comma-separated, anything
/// else as JSON.
fn as_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Array(list) if list.iter().all(Value::is_string) => list
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(","),
        other => other.to_string(),
    }
}

fn flatten(
    prefix: &str,
    claims: &serde_json::Map<String, Value>,
    out: &mut BTreeMap<String, String>,
) {
    for (k, v) in claims {
        let path = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            Value::Object(inner) => flatten(&path, inner, out),
            other => {
                out.insert(path, as_text(other));
            }
        }
    }
}

fn now_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests;
