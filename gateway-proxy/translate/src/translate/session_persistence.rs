//! `sessionPersistence` (GEP-1619) of a route rule or an XBackendTrafficPolicy, validated into
//! the IR.
//!
//! What the API says and this follows:
//! - `type` defaults to `Cookie`; `cookieConfig.lifetimeType` defaults to `Session`.
//! - "AbsoluteTimeout must be specified when cookie lifetimeType is Permanent" (the API's CEL
//!   rule): a `Permanent` cookie's `Max-Age` is the absolute timeout.
//! - `sessionName` is at most 128 characters; without one, "a unique cookie name should be
//!   generated": `gantry-session-` and a hash of the rule the session belongs to.
//! - Durations are GEP-2257 strings. The API sets no lower bound; a session of zero length is
//!   refused here (a token would be expired when issued), and sub-second timeouts are
//!   rounded up to whole seconds, the resolution of the token's clock.
//! - `idleTimeout` and `absoluteTimeout` may both be set: a session ends at whichever comes
//!   first.
//! - `cookieConfig` on a `Header` session configures nothing (it is "specific to cookie-based
//!   session persistence") and is ignored, except for the CEL rule above, which the API
//!   applies to every type.
//!
//! Anything the proxy cannot use is `UnsupportedValue`; on a route rule the rule is dropped
//! (like any invalid rule value), on a policy the policy's session persistence is not applied.

use std::str::FromStr;

use gantry_crds::gateway::Duration;
use gantry_crds::gateway::httproutes::{
    HttpRouteRulesSessionPersistence, HttpRouteRulesSessionPersistenceCookieConfigLifetimeType,
    HttpRouteRulesSessionPersistenceType,
};

use super::conditions::{self as c, Problem};
use crate::ir::{HttpRuleIr, SessionKind, SessionPersistenceIr};

/// `sessionName`'s `MaxLength`.
const MAX_NAME: usize = 128;

/// Header names a session may not take: the request would no longer be routed, framed or
/// identified as the client sent it.
const RESERVED_HEADERS: [&str; 15] = [
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "cookie",
    "set-cookie",
    "authorization",
    "x-request-id",
    "forwarded",
];

/// Validates one `sessionPersistence`. `source` is [`SessionPersistenceIr::RULE`] or the
/// policy's `namespace/name`. The scope (and a generated name) are set by [`bind`].
pub fn translate(
    sp: &HttpRouteRulesSessionPersistence,
    source: &str,
) -> Result<SessionPersistenceIr, Problem> {
    let bad = |msg: String| Problem::new(c::REASON_UNSUPPORTED_VALUE, msg);
    let kind = match sp.r#type {
        None | Some(HttpRouteRulesSessionPersistenceType::Cookie) => SessionKind::Cookie,
        Some(HttpRouteRulesSessionPersistenceType::Header) => SessionKind::Header,
    };
    let permanent = matches!(
        sp.cookie_config
            .as_ref()
            .and_then(|c| c.lifetime_type.as_ref()),
        Some(HttpRouteRulesSessionPersistenceCookieConfigLifetimeType::Permanent)
    );
    if permanent && sp.absolute_timeout.is_none() {
        return Err(bad(
            "sessionPersistence: AbsoluteTimeout must be specified when cookie lifetimeType is Permanent"
                .to_owned(),
        ));
    }
    let absolute_timeout_secs = duration_secs("absoluteTimeout", sp.absolute_timeout.as_deref())?;
    let idle_timeout_secs = duration_secs("idleTimeout", sp.idle_timeout.as_deref())?;
    let name = match sp.session_name.as_deref().filter(|n| !n.is_empty()) {
        None => String::new(),
        Some(name) if name.chars().count() > MAX_NAME => {
            return Err(bad(format!(
                "sessionPersistence.sessionName is {} characters long; at most {MAX_NAME} are allowed",
                name.chars().count()
            )));
        }
        Some(name) => match kind {
            SessionKind::Cookie if is_token(name) => name.to_owned(),
            SessionKind::Cookie => {
                return Err(bad(format!(
                    "sessionPersistence.sessionName {name:?} cannot be a cookie name (RFC 6265: letters, digits and !#$%&'*+-.^_`|~ only)"
                )));
            }
            SessionKind::Header => {
                let lower = name.to_ascii_lowercase();
                if !is_token(name) || http::HeaderName::from_bytes(lower.as_bytes()).is_err() {
                    return Err(bad(format!(
                        "sessionPersistence.sessionName {name:?} is not a valid HTTP header name"
                    )));
                }
                if RESERVED_HEADERS.contains(&lower.as_str()) {
                    return Err(bad(format!(
                        "sessionPersistence.sessionName {name:?} names a header the proxy needs for itself; choose another"
                    )));
                }
                lower
            }
        },
    };
    Ok(SessionPersistenceIr {
        name,
        kind,
        permanent: permanent && kind == SessionKind::Cookie,
        absolute_timeout_secs,
        idle_timeout_secs,
        scope: String::new(),
        source: source.to_owned(),
    })
}

/// Binds every session configuration of a translated rule to the rule: `scope` is
/// `Kind/namespace/route/rule`, with the rule's name when it has one, else its index. A
/// configuration without `sessionName` gets a name made from the scope (and the policy, so
/// two policies of one rule do not share a cookie).
pub fn bind(rule: &mut HttpRuleIr, kind: &str, namespace: &str, route: &str, index: usize) {
    let scope = match &rule.name {
        Some(name) => format!("{kind}/{namespace}/{route}/{name}"),
        None => format!("{kind}/{namespace}/{route}/{index}"),
    };
    let bind_one = |sp: &mut SessionPersistenceIr| {
        sp.scope.clone_from(&scope);
        if sp.name.is_empty() {
            sp.name = generated_name(&scope, &sp.source);
        }
    };
    if let Some(sp) = rule.session_persistence.as_mut() {
        bind_one(sp);
    }
    for backend in &mut rule.backends {
        if let Some(sp) = backend.session_persistence.as_mut() {
            bind_one(sp);
        }
    }
}

/// `gantry-session-` and 12 hex digits of SHA-256 of the scope and source: stable across
/// translations and proxies, different per rule.
fn generated_name(scope: &str, source: &str) -> String {
    let digest = ring::digest::digest(
        &ring::digest::SHA256,
        format!("{scope}\0{source}").as_bytes(),
    );
    let hex: String = digest
        .as_ref()
        .iter()
        .take(6)
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("gantry-session-{hex}")
}

/// An RFC 7230 token (RFC 6265's cookie-name is the same set).
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A GEP-2257 duration in whole seconds, rounded up; zero is refused.
fn duration_secs(field: &str, value: Option<&str>) -> Result<Option<u64>, Problem> {
    let Some(value) = value else { return Ok(None) };
    let d = Duration::from_str(value).map_err(|e| {
        Problem::new(
            c::REASON_UNSUPPORTED_VALUE,
            format!("sessionPersistence.{field} {value:?} is not a Gateway API duration such as \"30m\", \"1h\" or \"90s\": {e}"),
        )
    })?;
    if d.is_zero() {
        return Err(Problem::new(
            c::REASON_UNSUPPORTED_VALUE,
            format!(
                "sessionPersistence.{field} {value:?} would end every session as it begins; it must be longer than 0s"
            ),
        ));
    }
    Ok(Some(
        u64::try_from(d.as_millis().div_ceil(1000)).unwrap_or(u64::MAX),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_crds::gateway::httproutes::HttpRouteRulesSessionPersistenceCookieConfig;

    fn sp(
        f: impl FnOnce(&mut HttpRouteRulesSessionPersistence),
    ) -> HttpRouteRulesSessionPersistence {
        let mut s = HttpRouteRulesSessionPersistence::default();
        f(&mut s);
        s
    }

    #[test]
    fn defaults_are_a_session_cookie_with_a_generated_name() {
        let mut rule = HttpRuleIr {
            session_persistence: Some(Box::new(
                translate(&sp(|_| {}), SessionPersistenceIr::RULE).unwrap(),
            )),
            ..Default::default()
        };
        bind(&mut rule, "HTTPRoute", "ns", "r", 2);
        let ir = rule.session_persistence.unwrap();
        assert_eq!(ir.kind, SessionKind::Cookie);
        assert!(!ir.permanent);
        assert_eq!(ir.scope, "HTTPRoute/ns/r/2");
        assert!(
            ir.name.starts_with("gantry-session-") && ir.name.len() == 27,
            "{}",
            ir.name
        );
        // Another rule gets another name.
        let mut other = HttpRuleIr {
            session_persistence: Some(Box::new(
                translate(&sp(|_| {}), SessionPersistenceIr::RULE).unwrap(),
            )),
            ..Default::default()
        };
        bind(&mut other, "HTTPRoute", "ns", "r", 3);
        assert_ne!(other.session_persistence.unwrap().name, ir.name);
    }

    #[test]
    fn permanent_needs_an_absolute_timeout() {
        let permanent = |s: &mut HttpRouteRulesSessionPersistence| {
            s.cookie_config = Some(HttpRouteRulesSessionPersistenceCookieConfig {
                lifetime_type: Some(
                    HttpRouteRulesSessionPersistenceCookieConfigLifetimeType::Permanent,
                ),
            });
        };
        let err = translate(&sp(permanent), "rule").unwrap_err();
        assert_eq!(err.reason, c::REASON_UNSUPPORTED_VALUE);
        let ok = translate(
            &sp(|s| {
                permanent(s);
                s.absolute_timeout = Some("1h".into());
                s.idle_timeout = Some("1500ms".into());
            }),
            "rule",
        )
        .unwrap();
        assert!(ok.permanent);
        assert_eq!(ok.absolute_timeout_secs, Some(3600));
        assert_eq!(ok.idle_timeout_secs, Some(2));
    }

    #[test]
    fn unusable_values_are_unsupported() {
        for bad in [
            sp(|s| s.idle_timeout = Some("0s".into())),
            sp(|s| s.absolute_timeout = Some("ten minutes".into())),
            sp(|s| s.session_name = Some("a b".into())),
            sp(|s| s.session_name = Some("x".repeat(129))),
            sp(|s| {
                s.r#type = Some(HttpRouteRulesSessionPersistenceType::Header);
                s.session_name = Some("Host".into());
            }),
        ] {
            let err = translate(&bad, "rule").unwrap_err();
            assert_eq!(err.reason, c::REASON_UNSUPPORTED_VALUE, "{bad:?}");
        }
        let header = translate(
            &sp(|s| {
                s.r#type = Some(HttpRouteRulesSessionPersistenceType::Header);
                s.session_name = Some("X-Session".into());
            }),
            "rule",
        )
        .unwrap();
        assert_eq!(header.name, "x-session");
    }
}
