use gantry_translate::ir::{OidcIr, SecretText};
use gantry_translate::store::ObjectKey;

use super::*;

fn ir() -> OidcIr {
    OidcIr {
        issuer: "http://127.0.0.1:9".to_owned(),
        authorization_endpoint: None,
        token_endpoint: None,
        cluster: None,
        client_id: "app".to_owned(),
        client_secret: SecretText::new("s3cret"),
        redirect_url: "http://app.example.com/oauth2/callback".to_owned(),
        callback_path: "/oauth2/callback".to_owned(),
        logout_path: "/logout".to_owned(),
        scopes: vec!["openid".to_owned()],
        session_cookie: "sess".to_owned(),
        state_cookie: "st".to_owned(),
        cookie_domain: None,
        refresh_token: true,
        forward_access_token: true,
        default_token_ttl_ms: 3_600_000,
        default_refresh_token_ttl_ms: 86_400_000,
        realm: ObjectKey::new("default", "app").to_string(),
    }
}

fn request(accept: &str, cookie: Option<&str>) -> Parts {
    let mut builder = http::Request::get("http://app.example.com/page?x=1").header(ACCEPT, accept);
    if let Some(c) = cookie {
        builder = builder.header(http::header::COOKIE, c);
    }
    builder.body(()).unwrap().into_parts().0
}

fn sealed(auth: &OidcAuth, session: &Session) -> String {
    auth.sealer
        .seal("sess", &serde_json::to_vec(session).unwrap())
}

fn session(expires_in: i64) -> Session {
    let now = now_seconds() as i64;
    Session {
        subject: "alice".to_owned(),
        access_token: "at-1".to_owned(),
        refresh_token: None,
        expires: (now + expires_in) as u64,
        ends: (now + expires_in.max(0) + 10) as u64,
    }
}

#[tokio::test]
async fn an_api_client_without_a_session_is_401_with_a_challenge() {
    let auth = OidcAuth::compile(&ir());
    let mut parts = request("application/json", None);
    let Err(denial) = auth.authenticate(&mut parts).await else {
        panic!("passed without a session");
    };
    assert_eq!(denial.status, StatusCode::UNAUTHORIZED);
    assert_eq!(denial.reason, "oidc");
    assert_eq!(denial.challenge.unwrap(), "Bearer realm=\"default/app\"");
}

#[tokio::test]
async fn a_valid_session_passes_without_its_cookie_and_with_the_access_token() {
    let auth = OidcAuth::compile(&ir());
    let cookie = format!("other=1; sess={}; st=x", sealed(&auth, &session(3600)));
    let mut parts = request("application/json", Some(&cookie));
    let Ok(Outcome::Pass(identity)) = auth.authenticate(&mut parts).await else {
        panic!("a valid session is refused");
    };
    assert_eq!(identity.subject.as_deref(), Some("alice"));
    assert_eq!(parts.headers[http::header::COOKIE], "other=1");
    assert_eq!(parts.headers[AUTHORIZATION], "Bearer at-1");
    assert!(parts.extensions.get::<SetCookie>().is_none(), "no refresh");
}

#[tokio::test]
async fn a_tampered_foreign_or_expired_session_is_no_session() {
    let auth = OidcAuth::compile(&ir());
    let good = sealed(&auth, &session(3600));
    let mut tampered = good.clone().into_bytes();
    tampered[20] = if tampered[20] == b'A' { b'B' } else { b'A' };
    let other_policy = OidcAuth::compile(&OidcIr {
        realm: "default/other".to_owned(),
        ..ir()
    });
    let cookies = [
        format!("sess={}", String::from_utf8(tampered).unwrap()),
        format!("sess={}", sealed(&other_policy, &session(3600))),
        // Expired, and no refresh token to renew it with.
        format!("sess={}", sealed(&auth, &session(-5))),
        format!("st={good}"),
    ];
    for cookie in cookies {
        let mut parts = request("application/json", Some(&cookie));
        let outcome = auth.authenticate(&mut parts).await;
        assert!(
            matches!(outcome, Err(ref d) if d.status == StatusCode::UNAUTHORIZED),
            "{cookie}"
        );
    }
}

#[tokio::test]
async fn a_callback_without_a_login_in_progress_is_refused() {
    let auth = OidcAuth::compile(&ir());
    let mut parts = http::Request::get("http://app.example.com/oauth2/callback?code=c&state=s")
        .header(ACCEPT, "text/html")
        .body(())
        .unwrap()
        .into_parts()
        .0;
    let Err(denial) = auth.authenticate(&mut parts).await else {
        panic!("a callback without a state cookie was accepted");
    };
    assert_eq!(denial.status, StatusCode::UNAUTHORIZED);
    assert!(
        denial.message.contains("no login is in progress"),
        "{}",
        denial.message
    );
    assert!(!denial.message.contains("code=c"));
}

#[test]
fn debug_output_shows_no_secret() {
    let auth = OidcAuth::compile(&ir());
    let text = format!("{auth:?} {:?}", ir());
    assert!(!text.contains("s3cret"), "{text}");
}
