//! Session persistence tokens (GEP-1619): what a cookie or header carries to keep a client on
//! one endpoint.
//!
//! A token names the backend (a hash of its cluster name, `namespace/service:port`) and the
//! endpoint (a hash of its address, `ip:port`), so it means the same thing after any
//! re-translation or recompilation and stops meaning anything once that endpoint is gone. It
//! carries when the session began (for `absoluteTimeout`) and when it was last used (for
//! `idleTimeout`, refreshed as it is used), and an HMAC-SHA256 over all of that and the rule the
//! session belongs to. A client can read the hashes but cannot choose an endpoint, move a
//! session to another rule, or extend a session: any change breaks the MAC, and a token that
//! does not verify counts as no token (a new session is started and written back).
//!
//! The MAC key is the process's ([`SessionKey`]): from `--session-key-file`, which every
//! replica of a fleet must share for a session to survive landing on another replica, or else
//! random per process.
//!
//! Layout, then URL-safe base64 without padding: version (1 byte), issued and last seen (Unix
//! seconds, 8 bytes each), cluster id and endpoint id (8 bytes each), MAC (32 bytes).

use std::fmt;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use ring::hmac;

use gantry_translate::ir::{SessionKind, SessionPersistenceIr};

const VERSION: u8 = 1;
const BODY_LEN: usize = 1 + 8 * 4;
const TOKEN_LEN: usize = BODY_LEN + 32;
/// The shortest key accepted from a file: 256 bits.
pub const MIN_KEY_LEN: usize = 32;

/// The key tokens are signed with. Its `Debug` never shows it.
#[derive(Clone)]
pub struct SessionKey {
    key: hmac::Key,
    /// Where it came from, for logs.
    origin: KeyOrigin,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyOrigin {
    File,
    Random,
}

impl fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionKey")
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

/// Why a key file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read the session key file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "the session key file {path} holds {len} bytes; at least {MIN_KEY_LEN} random bytes are needed"
    )]
    TooShort { path: String, len: usize },
}

impl SessionKey {
    /// A key of 32 random bytes, for this process only.
    pub fn random() -> Self {
        let mut bytes = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
            .unwrap_or_else(|_| {
                // The system's random source never fails on the platforms we run on; should it,
                // a key from the clock and process would still be unguessable enough to notice.
                let seed = format!("{:?}{}", std::time::SystemTime::now(), std::process::id());
                let digest = ring::digest::digest(&ring::digest::SHA256, seed.as_bytes());
                bytes.copy_from_slice(digest.as_ref());
            });
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, &bytes),
            origin: KeyOrigin::Random,
        }
    }

    /// A key from `bytes` (at least [`MIN_KEY_LEN`] of them).
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        (bytes.len() >= MIN_KEY_LEN).then(|| Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, bytes),
            origin: KeyOrigin::File,
        })
    }

    /// Reads a key file (a mounted Secret): its bytes, without trailing whitespace (a newline
    /// an editor or `kubectl create secret --from-file` left).
    pub fn from_file(path: &Path) -> Result<Self, KeyError> {
        let shown = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|source| KeyError::Read {
            path: shown.clone(),
            source,
        })?;
        let end = bytes
            .iter()
            .rposition(|b| !b.is_ascii_whitespace())
            .map_or(0, |i| i + 1);
        Self::from_bytes(&bytes[..end]).ok_or(KeyError::TooShort {
            path: shown,
            len: end,
        })
    }

    pub fn origin(&self) -> KeyOrigin {
        self.origin
    }

    /// The token for `session`, as the cookie or header value.
    pub fn seal(&self, session: &SessionConfig, token: &Token) -> String {
        let mut bytes = Vec::with_capacity(TOKEN_LEN);
        bytes.push(VERSION);
        bytes.extend_from_slice(&token.issued.to_be_bytes());
        bytes.extend_from_slice(&token.last_seen.to_be_bytes());
        bytes.extend_from_slice(&token.cluster.to_be_bytes());
        bytes.extend_from_slice(&token.endpoint.to_be_bytes());
        let tag = hmac::sign(&self.key, &signed(session, &bytes));
        bytes.extend_from_slice(tag.as_ref());
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// The token in `text` when it was sealed by this key for `session`; `None` for anything
    /// else (malformed, another version, forged, another rule's).
    pub fn open(&self, session: &SessionConfig, text: &str) -> Option<Token> {
        if text.len() > TOKEN_LEN * 2 {
            return None;
        }
        let bytes = URL_SAFE_NO_PAD.decode(text).ok()?;
        if bytes.len() != TOKEN_LEN || bytes[0] != VERSION {
            return None;
        }
        let (body, tag) = bytes.split_at(BODY_LEN);
        hmac::verify(&self.key, &signed(session, body), tag).ok()?;
        let word = |i: usize| {
            let start = 1 + 8 * i;
            let mut b = [0u8; 8];
            b.copy_from_slice(&body[start..start + 8]);
            u64::from_be_bytes(b)
        };
        Some(Token {
            issued: word(0),
            last_seen: word(1),
            cluster: word(2),
            endpoint: word(3),
        })
    }
}

/// What the MAC covers: the session's scope and name (so a token is valid for one rule and
/// one cookie or header only) and the token's body.
fn signed(session: &SessionConfig, body: &[u8]) -> Vec<u8> {
    let mut data = Vec::with_capacity(session.scope.len() + session.name.len() + body.len() + 2);
    data.extend_from_slice(session.scope.as_bytes());
    data.push(0);
    data.extend_from_slice(session.name.as_bytes());
    data.push(0);
    data.extend_from_slice(body);
    data
}

/// A session as a token states it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Token {
    /// When the session began (Unix seconds).
    pub issued: u64,
    /// When it was last used (Unix seconds).
    pub last_seen: u64,
    /// [`id`] of the cluster name.
    pub cluster: u64,
    /// [`id`] of the endpoint address.
    pub endpoint: u64,
}

/// A stable 64-bit id of a cluster name or endpoint address (SHA-256, first 8 bytes).
pub fn id(text: &str) -> u64 {
    let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&digest.as_ref()[..8]);
    u64::from_be_bytes(b)
}

/// A session configuration, compiled.
#[derive(Debug, PartialEq, Eq)]
pub struct SessionConfig {
    pub name: String,
    pub kind: SessionKind,
    /// A cookie with `Max-Age` (the time left of the absolute timeout).
    pub permanent: bool,
    pub absolute_timeout: Option<u64>,
    pub idle_timeout: Option<u64>,
    pub scope: String,
    /// A rule's own configuration: its cookie's `Path` is the matched path.
    pub from_rule: bool,
    /// The header of a `Header` session.
    header: Option<HeaderName>,
}

/// Why a session configuration of the IR cannot be compiled.
#[derive(Debug, thiserror::Error)]
#[error("invalid session name {0:?}")]
pub struct SessionNameError(String);

impl SessionConfig {
    pub fn compile(ir: &SessionPersistenceIr) -> Result<Self, SessionNameError> {
        let header = match ir.kind {
            SessionKind::Header => Some(
                HeaderName::from_bytes(ir.name.as_bytes())
                    .map_err(|_| SessionNameError(ir.name.clone()))?,
            ),
            SessionKind::Cookie => None,
        };
        Ok(Self {
            name: ir.name.clone(),
            kind: ir.kind,
            permanent: ir.permanent,
            absolute_timeout: ir.absolute_timeout_secs,
            idle_timeout: ir.idle_timeout_secs,
            scope: ir.scope.clone(),
            from_rule: ir.from_rule(),
            header,
        })
    }

    /// Whether `token` is still in force at `now`.
    pub fn fresh(&self, token: &Token, now: u64) -> bool {
        let within = |since: u64, limit: Option<u64>| {
            limit.is_none_or(|limit| now.saturating_sub(since) < limit)
        };
        // A token from the future (clocks of replicas apart) is taken as issued now.
        within(token.issued.min(now), self.absolute_timeout)
            && within(token.last_seen.min(now), self.idle_timeout)
    }

    /// Whether a token last used at `last_seen` should be written again at `now`: only to
    /// keep an idle timeout from expiring, at most once a second.
    pub fn needs_refresh(&self, token: &Token, now: u64) -> bool {
        self.idle_timeout.is_some() && now > token.last_seen
    }

    /// The values the request carries for this session, in order (a client may send the
    /// same cookie name twice, for paths that both match).
    pub fn values<'h>(&'h self, headers: &'h HeaderMap) -> impl Iterator<Item = &'h str> + 'h {
        let header_values = self
            .header
            .as_ref()
            .into_iter()
            .flat_map(move |name| headers.get_all(name).iter())
            .filter_map(|v| v.to_str().ok());
        let cookie_values = (self.header.is_none())
            .then(|| headers.get_all(header::COOKIE).iter())
            .into_iter()
            .flatten()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|line| line.split(';'))
            .filter_map(move |pair| {
                let (name, value) = pair.trim().split_once('=')?;
                (name.trim() == self.name).then(|| value.trim().trim_matches('"'))
            });
        header_values.chain(cookie_values)
    }

    /// The response header that hands `sealed` to the client. A cookie gets `Path` (a rule's,
    /// the matched path; none for a policy's), `HttpOnly`, `SameSite=Lax`, `Secure` on HTTPS,
    /// and on a permanent cookie `Max-Age`, the time left before the absolute timeout.
    pub fn write(
        &self,
        sealed: &str,
        token: &Token,
        now: u64,
        path: Option<&str>,
        secure: bool,
    ) -> Option<(HeaderName, HeaderValue)> {
        if let Some(name) = &self.header {
            return Some((name.clone(), HeaderValue::from_str(sealed).ok()?));
        }
        let mut cookie = format!("{}={sealed}", self.name);
        if let Some(path) = path.filter(|_| self.from_rule) {
            cookie.push_str("; Path=");
            cookie.push_str(path);
        }
        if self.permanent
            && let Some(limit) = self.absolute_timeout
        {
            let left = (token.issued + limit).saturating_sub(now).max(1);
            cookie.push_str(&format!("; Max-Age={left}"));
        }
        cookie.push_str("; HttpOnly; SameSite=Lax");
        if secure {
            cookie.push_str("; Secure");
        }
        Some((header::SET_COOKIE, HeaderValue::from_str(&cookie).ok()?))
    }
}

/// The current time in Unix seconds.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(f: impl FnOnce(&mut SessionPersistenceIr)) -> SessionConfig {
        let mut ir = SessionPersistenceIr {
            name: "sid".into(),
            kind: SessionKind::Cookie,
            permanent: false,
            absolute_timeout_secs: None,
            idle_timeout_secs: None,
            scope: "HTTPRoute/ns/r/0".into(),
            source: SessionPersistenceIr::RULE.into(),
        };
        f(&mut ir);
        SessionConfig::compile(&ir).expect("compiles")
    }

    fn token(issued: u64, last_seen: u64) -> Token {
        Token {
            issued,
            last_seen,
            cluster: id("ns/svc:80"),
            endpoint: id("10.0.0.1:8080"),
        }
    }

    #[test]
    fn a_sealed_token_opens_with_the_same_key_and_session_only() {
        let key = SessionKey::random();
        let session = config(|_| {});
        let t = token(100, 150);
        let sealed = key.seal(&session, &t);
        assert_eq!(key.open(&session, &sealed), Some(t));
        // Another process's key, another rule, another name: nothing.
        assert_eq!(SessionKey::random().open(&session, &sealed), None);
        let other_rule = config(|ir| ir.scope = "HTTPRoute/ns/r/1".into());
        assert_eq!(key.open(&other_rule, &sealed), None);
        let other_name = config(|ir| ir.name = "other".into());
        assert_eq!(key.open(&other_name, &sealed), None);
        // The same key bytes on another replica open it.
        let bytes = [7u8; 32];
        let a = SessionKey::from_bytes(&bytes).unwrap();
        let b = SessionKey::from_bytes(&bytes).unwrap();
        assert_eq!(b.open(&session, &a.seal(&session, &t)), Some(t));
        assert!(SessionKey::from_bytes(&[1u8; 31]).is_none());
    }

    #[test]
    fn any_altered_byte_is_refused() {
        let key = SessionKey::random();
        let session = config(|_| {});
        let sealed = key.seal(&session, &token(100, 150));
        let bytes = URL_SAFE_NO_PAD.decode(&sealed).unwrap();
        for i in 0..bytes.len() {
            let mut forged = bytes.clone();
            forged[i] ^= 0x01;
            assert_eq!(
                key.open(&session, &URL_SAFE_NO_PAD.encode(&forged)),
                None,
                "byte {i}"
            );
        }
        // Pointing the token at another endpoint without the key cannot work either.
        let mut other = bytes.clone();
        other[25..33].copy_from_slice(&id("10.0.0.2:8080").to_be_bytes());
        assert_eq!(key.open(&session, &URL_SAFE_NO_PAD.encode(&other)), None);
        for junk in [
            "",
            "x",
            "!!!!",
            &"A".repeat(500),
            &sealed[..sealed.len() - 1],
        ] {
            assert_eq!(key.open(&session, junk), None, "{junk}");
        }
    }

    #[test]
    fn timeouts_from_the_token_with_an_injected_clock() {
        let absolute = config(|ir| ir.absolute_timeout_secs = Some(60));
        let t = token(1000, 1000);
        assert!(absolute.fresh(&t, 1000));
        assert!(absolute.fresh(&t, 1059));
        assert!(!absolute.fresh(&t, 1060));
        // Use does not extend an absolute timeout.
        assert!(!absolute.fresh(&token(1000, 1059), 1060));
        assert!(!absolute.needs_refresh(&t, 1030));

        let idle = config(|ir| ir.idle_timeout_secs = Some(10));
        assert!(idle.fresh(&token(1000, 1000), 1009));
        assert!(!idle.fresh(&token(1000, 1000), 1010));
        // A refreshed last-seen keeps it alive well past the first ten seconds.
        assert!(idle.fresh(&token(1000, 1095), 1100));
        assert!(idle.needs_refresh(&token(1000, 1095), 1100));
        assert!(!idle.needs_refresh(&token(1000, 1100), 1100));

        let both = config(|ir| {
            ir.absolute_timeout_secs = Some(100);
            ir.idle_timeout_secs = Some(10);
        });
        assert!(both.fresh(&token(1000, 1095), 1099));
        assert!(!both.fresh(&token(1000, 1099), 1100), "absolute ends it");
        assert!(!both.fresh(&token(1000, 1050), 1060), "idle ends it");

        // A token from a clock ahead counts as issued now.
        let future = token(5000, 5000);
        assert!(absolute.fresh(&future, 1000));
        assert!(config(|_| {}).fresh(&token(0, 0), u64::MAX));
    }

    #[test]
    fn cookies_and_headers_are_read_and_written() {
        let cookie = config(|ir| {
            ir.permanent = true;
            ir.absolute_timeout_secs = Some(3600);
        });
        let mut headers = HeaderMap::new();
        headers.append(header::COOKIE, HeaderValue::from_static("a=1; sid=first"));
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("sid=\"second\"; sidx=no"),
        );
        assert_eq!(
            cookie.values(&headers).collect::<Vec<_>>(),
            ["first", "second"]
        );
        let (name, value) = cookie
            .write("TOKEN", &token(1000, 1000), 1600, Some("/cart"), true)
            .unwrap();
        assert_eq!(name, header::SET_COOKIE);
        assert_eq!(
            value,
            "sid=TOKEN; Path=/cart; Max-Age=3000; HttpOnly; SameSite=Lax; Secure"
        );
        // A policy's cookie has no Path; a session cookie no Max-Age.
        let policy = config(|ir| ir.source = "ns/policy".into());
        let (_, value) = policy
            .write("T", &token(0, 0), 0, Some("/a"), false)
            .unwrap();
        assert_eq!(value, "sid=T; HttpOnly; SameSite=Lax");

        let header = config(|ir| {
            ir.kind = SessionKind::Header;
            ir.name = "x-session".into();
        });
        let mut headers = HeaderMap::new();
        headers.insert("x-session", HeaderValue::from_static("abc"));
        headers.insert(header::COOKIE, HeaderValue::from_static("x-session=nope"));
        assert_eq!(header.values(&headers).collect::<Vec<_>>(), ["abc"]);
        let (name, value) = header.write("T", &token(0, 0), 0, Some("/"), true).unwrap();
        assert_eq!((name.as_str(), value.to_str().unwrap()), ("x-session", "T"));
    }

    #[test]
    fn the_key_never_prints() {
        let text = format!(
            "{:?}",
            SessionKey::from_bytes(b"0123456789abcdef0123456789abcdef").unwrap()
        );
        assert!(!text.contains("0123"), "{text}");
    }
}
