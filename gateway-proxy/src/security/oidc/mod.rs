//! `oidc`: OpenID Connect login (authorization code flow with PKCE, RFC 7636 `S256`).
//!
//! A request with a valid session cookie passes (the cookie removed, the access token sent
//! upstream as a bearer token when `forwardAccessToken`). Without one, a browser (`Accept`
//! holding `text/html`) is redirected to the provider's authorization endpoint with `state`,
//! `nonce` and a PKCE challenge, which a short-lived sealed state cookie remembers with the
//! verifier and the original URL; any other client is answered 401. The callback (the path of
//! `redirectURL`) checks the state, exchanges the code (with the verifier and the client
//! secret) at the token endpoint, verifies the ID token (signature against the provider's
//! JWKS, `iss`, `aud`, `exp`, `nonce`) and sets the sealed session cookie. An access token
//! within [`REFRESH_BEFORE`] of its expiry is refreshed with the refresh token and the cookie
//! set again on the response. `logoutPath` clears the cookies and redirects to the provider's
//! `end_session_endpoint`, else `/`.
//!
//! Endpoints the policy does not give are discovered from
//! `<issuer>/.well-known/openid-configuration` on first need, once per compiled policy (a
//! failed discovery is tried again by the next request that needs it). Tokens, codes, the
//! client secret and cookie values never reach a log, a message or a metric.

mod cookie;

pub use cookie::{Sealer, pkce_challenge, random_token};

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwapOption;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use gantry_translate::ir::OidcIr;
use http::header::{ACCEPT, AUTHORIZATION, CACHE_CONTROL, HeaderValue, LOCATION, SET_COOKIE};
use http::request::Parts;
use http::{Response, StatusCode};
use serde::{Deserialize, Serialize};

use super::api_key::{Source, extract, strip};
use super::jwt::{FETCH_TIMEOUT, IdTokenVerifier, call, cluster_endpoints, want_cluster};
use super::{Denial, Identity};

/// An access token this close to its expiry is refreshed (when a refresh token is kept).
pub const REFRESH_BEFORE: Duration = Duration::from_secs(60);
/// How long a login may take from the redirect to the callback (the state cookie's life).
pub const LOGIN_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// The compiled `oidc` of a policy.
pub struct OidcAuth {
    ir: OidcIr,
    sealer: Sealer,
    session: Source,
    state: Source,
    /// `Bearer realm="<policy>"`.
    challenge: HeaderValue,
    discovered: ArcSwapOption<Endpoints>,
    discovering: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for OidcAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcAuth")
            .field("issuer", &self.ir.issuer)
            .field("client_id", &self.ir.client_id)
            .finish_non_exhaustive()
    }
}

/// The provider's endpoints, given or discovered.
struct Endpoints {
    authorization: String,
    token: http::Uri,
    end_session: Option<String>,
    id_tokens: IdTokenVerifier,
}

/// What the policy does with a request.
pub enum Outcome {
    /// A valid session: the request goes on, as this caller.
    Pass(Identity),
    /// The proxy answers (a redirect to log in, the callback's redirect, the logout's).
    Answer(Response<Bytes>),
}

/// A session cookie set again (after a refresh), for the response to the request. The
/// pipeline takes it out of the request's extensions.
#[derive(Clone, Debug)]
pub struct SetCookie(pub HeaderValue);

/// The session cookie's content.
#[derive(Serialize, Deserialize)]
struct Session {
    /// `sub` of the ID token.
    #[serde(rename = "s")]
    subject: String,
    #[serde(rename = "a")]
    access_token: String,
    #[serde(rename = "r", default, skip_serializing_if = "Option::is_none")]
    refresh_token: Option<String>,
    /// When the access token expires (Unix seconds).
    #[serde(rename = "e")]
    expires: u64,
    /// When the session ends (Unix seconds): the refresh token's end, or `expires`.
    #[serde(rename = "x")]
    ends: u64,
}

/// The state cookie's content: a login in progress.
#[derive(Serialize, Deserialize)]
struct Login {
    #[serde(rename = "s")]
    state: String,
    #[serde(rename = "n")]
    nonce: String,
    #[serde(rename = "v")]
    verifier: String,
    /// The original path and query.
    #[serde(rename = "u")]
    url: String,
    #[serde(rename = "x")]
    expires: u64,
}

/// A token endpoint's answer (RFC 6749 §5.1). No `Debug`: it holds tokens.
#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    id_token: Option<String>,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// The fields of a discovery document that are used.
#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
    #[serde(default)]
    end_session_endpoint: Option<String>,
}

impl OidcAuth {
    pub fn compile(ir: &OidcIr) -> Self {
        if let Some(cluster) = &ir.cluster {
            want_cluster(cluster);
        }
        let realm = ir.realm.replace(['"', '\\'], "");
        Self {
            sealer: Sealer::derive(ir.client_secret.expose().as_bytes(), &ir.realm),
            session: Source::Cookie(ir.session_cookie.clone()),
            state: Source::Cookie(ir.state_cookie.clone()),
            challenge: HeaderValue::from_str(&format!("Bearer realm=\"{realm}\""))
                .unwrap_or(HeaderValue::from_static("Bearer")),
            discovered: ArcSwapOption::empty(),
            discovering: tokio::sync::Mutex::new(()),
            ir: ir.clone(),
        }
    }

    /// Checks the request's session, or answers the callback, the logout, or a browser
    /// without a session.
    pub async fn authenticate(&self, parts: &mut Parts) -> Result<Outcome, Denial> {
        let path = parts.uri.path();
        if path == self.ir.callback_path {
            return self.callback(parts).await.map(Outcome::Answer);
        }
        if path == self.ir.logout_path {
            return Ok(Outcome::Answer(self.logout(parts).await));
        }
        let now = now_seconds();
        let secure = self.secure(parts);
        let session = extract(&self.session, parts)
            .and_then(|v| self.sealer.open(&self.ir.session_cookie, &v))
            .and_then(|plain| serde_json::from_slice::<Session>(&plain).ok())
            .filter(|s| s.ends > now);
        strip(&self.session, parts);
        strip(&self.state, parts);
        let session = match session {
            Some(s) if s.expires > now + REFRESH_BEFORE.as_secs() => Some(s),
            Some(s) if self.ir.refresh_token && s.refresh_token.is_some() => {
                match self.refresh(&s, now).await {
                    Ok(fresh) => {
                        let cookie = self.session_cookie(&fresh, now, secure);
                        parts.extensions.insert(SetCookie(cookie));
                        Some(fresh)
                    }
                    Err(why) => {
                        tracing::debug!(policy = %self.ir.realm, %why, "OIDC refresh failed");
                        (s.expires > now).then_some(s)
                    }
                }
            }
            Some(s) => (s.expires > now).then_some(s),
            None => None,
        };
        let Some(session) = session else {
            if !wants_html(parts) {
                return Err(self.deny("a login session is required; log in with a browser"));
            }
            return self.login(parts, now, secure).await.map(Outcome::Answer);
        };
        if self.ir.forward_access_token
            && let Ok(v) = HeaderValue::from_str(&format!("Bearer {}", session.access_token))
        {
            parts.headers.insert(AUTHORIZATION, v);
        }
        Ok(Outcome::Pass(Identity {
            consumer: None,
            labels: Arc::default(),
            subject: Some(Arc::from(session.subject.as_str())),
            claims: Arc::default(),
        }))
    }

    fn deny(&self, message: impl Into<String>) -> Denial {
        let mut d = Denial::new(StatusCode::UNAUTHORIZED, "oidc", message);
        d.challenge = Some(self.challenge.clone());
        d
    }

    /// Cookies get `Secure` when the request came over HTTPS (as `X-Forwarded-Proto` says,
    /// which the proxy sets) or the redirect URL is HTTPS.
    fn secure(&self, parts: &Parts) -> bool {
        parts
            .headers
            .get("x-forwarded-proto")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"))
            || self.ir.redirect_url.starts_with("https://")
    }

    fn cookie(&self, name: &str, value: &str, max_age: u64, secure: bool) -> HeaderValue {
        let mut text = format!("{name}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax");
        if let Some(domain) = &self.ir.cookie_domain {
            text.push_str("; Domain=");
            text.push_str(domain);
        }
        if secure {
            text.push_str("; Secure");
        }
        HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static(""))
    }

    fn session_cookie(&self, session: &Session, now: u64, secure: bool) -> HeaderValue {
        let plain = serde_json::to_vec(session).unwrap_or_default();
        let sealed = self.sealer.seal(&self.ir.session_cookie, &plain);
        self.cookie(
            &self.ir.session_cookie,
            &sealed,
            session.ends.saturating_sub(now),
            secure,
        )
    }

    /// The provider's endpoints, discovered on first need.
    async fn endpoints(&self) -> Result<Arc<Endpoints>, String> {
        if let Some(e) = self.discovered.load_full() {
            return Ok(e);
        }
        let _one_at_a_time = self.discovering.lock().await;
        if let Some(e) = self.discovered.load_full() {
            return Ok(e);
        }
        let url = format!("{}/.well-known/openid-configuration", self.ir.issuer);
        let uri: http::Uri = url.parse().map_err(|_| format!("{url} is not a URL"))?;
        let endpoints = self.ir.cluster.as_deref().map(cluster_endpoints);
        let (status, body) =
            tokio::time::timeout(FETCH_TIMEOUT, call(&uri, endpoints.as_deref(), None, &[]))
                .await
                .map_err(|_| format!("{url} gave no answer within {FETCH_TIMEOUT:?}"))??;
        if status != StatusCode::OK {
            return Err(format!("{url} answered {status}"));
        }
        let doc: Discovery = serde_json::from_slice(&body)
            .map_err(|e| format!("{url} is not an OpenID discovery document: {e}"))?;
        if doc.issuer.trim_end_matches('/') != self.ir.issuer {
            return Err(format!(
                "{url} names issuer {:?}, not the policy's {:?}",
                doc.issuer, self.ir.issuer
            ));
        }
        let token = self.ir.token_endpoint.clone().unwrap_or(doc.token_endpoint);
        let endpoints = Arc::new(Endpoints {
            authorization: self
                .ir
                .authorization_endpoint
                .clone()
                .unwrap_or(doc.authorization_endpoint),
            token: token
                .parse()
                .map_err(|_| format!("the token endpoint {token:?} is not a URL"))?,
            end_session: doc.end_session_endpoint,
            id_tokens: IdTokenVerifier::new(
                &doc.issuer,
                &self.ir.client_id,
                &doc.jwks_uri,
                self.ir.cluster.as_deref(),
            ),
        });
        self.discovered.store(Some(endpoints.clone()));
        Ok(endpoints)
    }

    fn unavailable(&self, why: &str) -> Denial {
        tracing::warn!(policy = %self.ir.realm, error = %why, "OpenID provider unavailable");
        Denial::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "oidc_provider",
            format!("the OpenID provider cannot be used: {why}"),
        )
    }

    /// A redirect to the authorization endpoint, with the state cookie.
    async fn login(
        &self,
        parts: &Parts,
        now: u64,
        secure: bool,
    ) -> Result<Response<Bytes>, Denial> {
        let endpoints = self.endpoints().await.map_err(|e| self.unavailable(&e))?;
        let login = Login {
            state: random_token(24),
            nonce: random_token(24),
            verifier: random_token(32),
            url: parts
                .uri
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_owned(),
            expires: now + LOGIN_TIMEOUT.as_secs(),
        };
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.ir.client_id)
            .append_pair("redirect_uri", &self.ir.redirect_url)
            .append_pair("scope", &self.ir.scopes.join(" "))
            .append_pair("state", &login.state)
            .append_pair("nonce", &login.nonce)
            .append_pair("code_challenge", &pkce_challenge(&login.verifier))
            .append_pair("code_challenge_method", "S256")
            .finish();
        let separator = if endpoints.authorization.contains('?') {
            '&'
        } else {
            '?'
        };
        let location = format!("{}{separator}{query}", endpoints.authorization);
        let sealed = self.sealer.seal(
            &self.ir.state_cookie,
            &serde_json::to_vec(&login).unwrap_or_default(),
        );
        let cookie = self.cookie(
            &self.ir.state_cookie,
            &sealed,
            LOGIN_TIMEOUT.as_secs(),
            secure,
        );
        Ok(redirect(&location, [cookie]))
    }

    /// The callback: the code exchanged, the ID token verified, the session cookie set.
    async fn callback(&self, parts: &Parts) -> Result<Response<Bytes>, Denial> {
        let now = now_seconds();
        let secure = self.secure(parts);
        let login = extract(&self.state, parts)
            .and_then(|v| self.sealer.open(&self.ir.state_cookie, &v))
            .and_then(|plain| serde_json::from_slice::<Login>(&plain).ok())
            .filter(|l| l.expires > now)
            .ok_or_else(|| {
                self.deny("no login is in progress in this browser (its state cookie is missing, expired or altered)")
            })?;
        let mut code = None;
        let mut state = None;
        let mut error = None;
        for (k, v) in form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes()) {
            match &*k {
                "code" => code = Some(v.into_owned()),
                "state" => state = Some(v.into_owned()),
                "error" => error = Some(v.into_owned()),
                _ => {}
            }
        }
        if let Some(error) = error {
            let error: String = error
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                .take(64)
                .collect();
            return Err(self.deny(format!(
                "the OpenID provider did not log the user in: {error}"
            )));
        }
        if state.as_deref() != Some(login.state.as_str()) {
            return Err(self.deny("the callback's state is not the login's in progress"));
        }
        let code = code.ok_or_else(|| self.deny("the callback carries no code"))?;
        let endpoints = self.endpoints().await.map_err(|e| self.unavailable(&e))?;
        let form = form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "authorization_code")
            .append_pair("code", &code)
            .append_pair("redirect_uri", &self.ir.redirect_url)
            .append_pair("code_verifier", &login.verifier)
            .append_pair("client_id", &self.ir.client_id)
            .finish();
        let tokens = self
            .token_call(&endpoints, form)
            .await
            .map_err(|why| self.deny(format!("the code could not be exchanged: {why}")))?;
        let id_token = tokens
            .id_token
            .as_deref()
            .ok_or_else(|| self.deny("the token endpoint returned no ID token"))?;
        let claims = endpoints
            .id_tokens
            .verify(id_token)
            .await
            .map_err(|why| self.deny(format!("the ID token is invalid: {why}")))?;
        if claims.map.get("nonce").and_then(|n| n.as_str()) != Some(login.nonce.as_str()) {
            return Err(self.deny("the ID token is invalid: its nonce is not the login's"));
        }
        let subject = claims
            .map
            .get("sub")
            .and_then(|s| s.as_str())
            .unwrap_or_default()
            .to_owned();
        let session = self.session_of(subject, tokens, None, now);
        let cookies = [
            self.session_cookie(&session, now, secure),
            self.cookie(&self.ir.state_cookie, "", 0, secure),
        ];
        let target = if login.url.starts_with('/') && !login.url.starts_with("//") {
            login.url.as_str()
        } else {
            "/"
        };
        Ok(redirect(target, cookies))
    }

    fn session_of(
        &self,
        subject: String,
        tokens: TokenResponse,
        previous_refresh: Option<(String, u64)>,
        now: u64,
    ) -> Session {
        let expires = now
            + tokens
                .expires_in
                .unwrap_or(self.ir.default_token_ttl_ms / 1000);
        let (refresh_token, ends) = match (tokens.refresh_token, previous_refresh) {
            _ if !self.ir.refresh_token => (None, expires),
            (Some(fresh), _) => (
                Some(fresh),
                now + self.ir.default_refresh_token_ttl_ms / 1000,
            ),
            (None, Some((kept, ends))) => (Some(kept), ends),
            (None, None) => (None, expires),
        };
        Session {
            subject,
            access_token: tokens.access_token,
            refresh_token,
            expires,
            ends: ends.max(expires),
        }
    }

    /// A new access token for `session`.
    async fn refresh(&self, session: &Session, now: u64) -> Result<Session, String> {
        let refresh_token = session.refresh_token.as_deref().unwrap_or_default();
        let endpoints = self.endpoints().await?;
        let form = form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "refresh_token")
            .append_pair("refresh_token", refresh_token)
            .append_pair("client_id", &self.ir.client_id)
            .finish();
        let tokens = self.token_call(&endpoints, form).await?;
        Ok(self.session_of(
            session.subject.clone(),
            tokens,
            Some((refresh_token.to_owned(), session.ends)),
            now,
        ))
    }

    /// POSTs `form` to the token endpoint with the client's credentials
    /// (`client_secret_basic`). The error names the status and the OAuth `error` only.
    async fn token_call(
        &self,
        endpoints: &Endpoints,
        form: String,
    ) -> Result<TokenResponse, String> {
        let encode = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let credentials = STANDARD.encode(format!(
            "{}:{}",
            encode(&self.ir.client_id),
            encode(self.ir.client_secret.expose())
        ));
        let mut authorization = HeaderValue::from_str(&format!("Basic {credentials}"))
            .map_err(|_| "the client credentials are not a header value".to_owned())?;
        authorization.set_sensitive(true);
        let through = self.ir.cluster.as_deref().map(cluster_endpoints);
        let (status, body) = tokio::time::timeout(
            FETCH_TIMEOUT,
            call(
                &endpoints.token,
                through.as_deref(),
                Some(form),
                &[(AUTHORIZATION, authorization)],
            ),
        )
        .await
        .map_err(|_| format!("the token endpoint gave no answer within {FETCH_TIMEOUT:?}"))??;
        if status != StatusCode::OK {
            let error = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
                .unwrap_or_default();
            let error: String = error
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                .take(64)
                .collect();
            return Err(format!("the token endpoint answered {status} {error}"));
        }
        serde_json::from_slice(&body)
            .map_err(|_| "the token endpoint's answer is not a token response".to_owned())
    }

    /// Clears the cookies and sends the browser to the provider's end-session endpoint.
    async fn logout(&self, parts: &Parts) -> Response<Bytes> {
        let secure = self.secure(parts);
        let location = match self.endpoints().await {
            Ok(e) => e.end_session.as_ref().map(|end| {
                let query = form_urlencoded::Serializer::new(String::new())
                    .append_pair("client_id", &self.ir.client_id)
                    .finish();
                let separator = if end.contains('?') { '&' } else { '?' };
                format!("{end}{separator}{query}")
            }),
            Err(_) => None,
        };
        redirect(
            location.as_deref().unwrap_or("/"),
            [
                self.cookie(&self.ir.session_cookie, "", 0, secure),
                self.cookie(&self.ir.state_cookie, "", 0, secure),
            ],
        )
    }
}

/// `302 Found` to `location`, setting `cookies`, never cached.
fn redirect<const N: usize>(location: &str, cookies: [HeaderValue; N]) -> Response<Bytes> {
    let mut response = Response::new(Bytes::new());
    *response.status_mut() = StatusCode::FOUND;
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(location) {
        headers.insert(LOCATION, v);
    }
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    for c in cookies {
        headers.append(SET_COOKIE, c);
    }
    response
}

/// Whether the client is a browser that can follow a redirect to a login page.
fn wants_html(parts: &Parts) -> bool {
    parts
        .headers
        .get_all(ACCEPT)
        .iter()
        .any(|v| v.to_str().is_ok_and(|v| v.contains("text/html")))
}

fn now_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests;
