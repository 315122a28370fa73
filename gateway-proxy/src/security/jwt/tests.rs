use ring::rand::SystemRandom;
use ring::signature::{
    self, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RsaKeyPair, RsaPublicKeyComponents,
};
use serde_json::json;

use super::*;
use gantry_translate::ir::{ClaimToHeaderIr, RequiredClaimIr};

/// A 2048-bit RSA key made for these tests only (`openssl genpkey`, PKCS#1 DER).
const RSA_DER: &[u8] = include_bytes!("../../../testdata/jwt-test-rsa-2048.der");

const ISSUER: &str = "https://idp.test";

type Sign = Box<dyn Fn(&[u8]) -> Vec<u8>>;

/// A signing key of one algorithm, and its public JWK.
struct Signer {
    alg: &'static str,
    kid: String,
    sign: Sign,
    jwk: Value,
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn signer(alg: &'static str) -> Signer {
    let rng = SystemRandom::new();
    let kid = format!("{alg}-key");
    match alg {
        "RS256" | "RS384" | "RS512" | "PS256" | "PS384" | "PS512" => {
            let pair = RsaKeyPair::from_der(RSA_DER).unwrap();
            let public = RsaPublicKeyComponents::<Vec<u8>>::from(pair.public());
            let jwk = json!({"kty": "RSA", "kid": kid, "n": b64(&public.n), "e": b64(&public.e)});
            let padding: &'static dyn signature::RsaEncoding = match alg {
                "RS256" => &signature::RSA_PKCS1_SHA256,
                "RS384" => &signature::RSA_PKCS1_SHA384,
                "RS512" => &signature::RSA_PKCS1_SHA512,
                "PS256" => &signature::RSA_PSS_SHA256,
                "PS384" => &signature::RSA_PSS_SHA384,
                _ => &signature::RSA_PSS_SHA512,
            };
            Signer {
                alg,
                kid,
                jwk,
                sign: Box::new(move |m| {
                    let mut out = vec![0; pair.public().modulus_len()];
                    pair.sign(padding, &SystemRandom::new(), m, &mut out)
                        .unwrap();
                    out
                }),
            }
        }
        "ES256" | "ES384" => {
            let (algorithm, crv, size) = if alg == "ES256" {
                (&signature::ECDSA_P256_SHA256_FIXED_SIGNING, "P-256", 32)
            } else {
                (&signature::ECDSA_P384_SHA384_FIXED_SIGNING, "P-384", 48)
            };
            let der = EcdsaKeyPair::generate_pkcs8(algorithm, &rng).unwrap();
            let pair = EcdsaKeyPair::from_pkcs8(algorithm, der.as_ref(), &rng).unwrap();
            let point = pair.public_key().as_ref().to_vec();
            let jwk = json!({"kty": "EC", "crv": crv, "kid": kid,
                "x": b64(&point[1..=size]), "y": b64(&point[1 + size..])});
            Signer {
                alg,
                kid,
                jwk,
                sign: Box::new(move |m| {
                    pair.sign(&SystemRandom::new(), m)
                        .unwrap()
                        .as_ref()
                        .to_vec()
                }),
            }
        }
        _ => {
            let der = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
            let pair = Ed25519KeyPair::from_pkcs8(der.as_ref()).unwrap();
            let jwk = json!({"kty": "OKP", "crv": "Ed25519", "kid": kid,
                "x": b64(pair.public_key().as_ref())});
            Signer {
                alg: "EdDSA",
                kid,
                jwk,
                sign: Box::new(move |m| pair.sign(m).as_ref().to_vec()),
            }
        }
    }
}

impl Signer {
    fn token(&self, claims: &Value) -> String {
        let header = json!({"alg": self.alg, "kid": self.kid, "typ": "JWT"});
        let message = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let sig = (self.sign)(message.as_bytes());
        format!("{message}.{}", b64(&sig))
    }
}

fn now() -> i64 {
    now_seconds() as i64
}

fn good_claims() -> Value {
    json!({"iss": ISSUER, "aud": ["api", "other"], "sub": "alice", "exp": now() + 600,
        "nbf": now() - 10, "scope": "read write", "org": {"team": "blue"}})
}

fn provider(jwks: Value) -> JwtProviderIr {
    JwtProviderIr {
        name: "idp".into(),
        issuer: Some(ISSUER.into()),
        audiences: vec!["api".into()],
        keys: JwksSourceIr::Local {
            jwks: jwks.to_string(),
        },
        extract_from: vec![
            TokenSourceIr::Header {
                name: "authorization".into(),
                value_prefix: "Bearer ".into(),
            },
            TokenSourceIr::Cookie {
                name: "session".into(),
            },
        ],
        claim_to_headers: vec![
            ClaimToHeaderIr {
                header: "x-sub".into(),
                claim: "sub".into(),
            },
            ClaimToHeaderIr {
                header: "x-team".into(),
                claim: "org.team".into(),
            },
        ],
        required_claims: vec![RequiredClaimIr {
            name: "scope".into(),
            values: vec!["write".into()],
        }],
        clock_skew_ms: 60_000,
    }
}

fn auth_for(signers: &[&Signer], optional: bool) -> JwtAuth {
    let keys: Vec<Value> = signers.iter().map(|s| s.jwk.clone()).collect();
    JwtAuth::compile(&JwtIr {
        optional,
        realm: "shop/api".into(),
        providers: vec![provider(json!({ "keys": keys }))],
    })
}

fn request(headers: &[(&str, &str)]) -> Parts {
    let mut b = http::Request::builder().uri("/x?y=1");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(()).unwrap().into_parts().0
}

fn bearer(token: &str) -> Parts {
    request(&[
        ("authorization", &format!("Bearer {token}")),
        ("x-sub", "spoofed"),
    ])
}

const ALGORITHMS: [&str; 9] = [
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];

#[tokio::test]
async fn every_algorithm_verifies_and_a_tampered_token_does_not() {
    let signers: Vec<Signer> = ALGORITHMS.iter().map(|a| signer(a)).collect();
    let auth = auth_for(&signers.iter().collect::<Vec<_>>(), false);
    for s in &signers {
        let token = s.token(&good_claims());
        let mut parts = bearer(&token);
        let identity = auth
            .authenticate(&mut parts)
            .await
            .unwrap_or_else(|d| panic!("{}: {}", s.alg, d.message))
            .expect("identity");
        assert_eq!(identity.subject.as_deref(), Some("alice"), "{}", s.alg);
        assert_eq!(identity.claim("org.team"), Some("blue"));
        assert_eq!(parts.headers["x-sub"], "alice");
        assert_eq!(parts.headers["x-team"], "blue");
        assert!(
            parts.headers.get("authorization").is_none(),
            "token removed"
        );

        // Another payload under the same signature.
        let (head, rest) = token.split_once('.').unwrap();
        let sig = rest.split_once('.').unwrap().1;
        let mut other = good_claims();
        other["sub"] = json!("mallory");
        let forged = format!("{head}.{}.{sig}", b64(other.to_string().as_bytes()));
        let denial = auth.authenticate(&mut bearer(&forged)).await.unwrap_err();
        assert_eq!(denial.status, StatusCode::UNAUTHORIZED, "{}", s.alg);
        assert!(denial.message.contains("signature"), "{}", denial.message);
        assert!(!denial.message.contains(sig), "the token is never shown");
    }
}

#[tokio::test]
async fn issuer_audience_exp_and_nbf_are_checked_with_clock_skew() {
    let s = signer("ES256");
    let auth = auth_for(&[&s], false);
    let check = |change: fn(&mut Value)| {
        let mut claims = good_claims();
        change(&mut claims);
        s.token(&claims)
    };
    let refused = [
        (check(|c| c["iss"] = json!("https://evil.test")), "issuer"),
        (check(|c| c["aud"] = json!("web")), "audience"),
        (check(|c| c["exp"] = json!(now() - 120)), "expired"),
        (check(|c| c["nbf"] = json!(now() + 120)), "nbf"),
    ];
    for (token, why) in refused {
        let d = auth.authenticate(&mut bearer(&token)).await.unwrap_err();
        assert_eq!(d.status, StatusCode::UNAUTHORIZED);
        assert_eq!(d.reason, "jwt");
        assert!(d.message.contains(why), "{why}: {}", d.message);
        assert_eq!(
            d.challenge.unwrap(),
            "Bearer realm=\"shop/api\", error=\"invalid_token\""
        );
    }
    // Within the 60 s skew.
    for token in [
        check(|c| c["exp"] = json!(now() - 30)),
        check(|c| c["nbf"] = json!(now() + 30)),
    ] {
        assert!(auth.authenticate(&mut bearer(&token)).await.is_ok());
    }
}

#[tokio::test]
async fn a_missing_required_claim_is_forbidden() {
    let s = signer("EdDSA");
    let auth = auth_for(&[&s], false);
    let mut claims = good_claims();
    claims["scope"] = json!("read");
    let d = auth
        .authenticate(&mut bearer(&s.token(&claims)))
        .await
        .unwrap_err();
    assert_eq!(d.status, StatusCode::FORBIDDEN);
    assert_eq!(d.reason, "jwt_claims");
    assert!(d.message.contains("scope"), "{}", d.message);
    assert!(
        d.challenge
            .unwrap()
            .to_str()
            .unwrap()
            .contains("insufficient_scope")
    );
    claims.as_object_mut().unwrap().remove("scope");
    let d = auth
        .authenticate(&mut bearer(&s.token(&claims)))
        .await
        .unwrap_err();
    assert_eq!(d.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn missing_none_and_unknown_key_tokens_are_refused() {
    let s = signer("ES384");
    let auth = auth_for(&[&s], false);
    let d = auth
        .authenticate(&mut request(&[("x-sub", "spoofed")]))
        .await
        .unwrap_err();
    assert_eq!(d.status, StatusCode::UNAUTHORIZED);
    assert_eq!(d.challenge.unwrap(), "Bearer realm=\"shop/api\"");

    let unsigned = format!(
        "{}.{}.",
        b64(br#"{"alg":"none"}"#),
        b64(good_claims().to_string().as_bytes())
    );
    let d = auth.authenticate(&mut bearer(&unsigned)).await.unwrap_err();
    assert!(d.message.contains("alg"), "{}", d.message);

    let other = signer("ES384");
    let mut with_other_kid = signer("ES384");
    with_other_kid.kid = "rotated".into();
    with_other_kid.sign = other.sign;
    let d = auth
        .authenticate(&mut bearer(&with_other_kid.token(&good_claims())))
        .await
        .unwrap_err();
    assert!(d.message.contains("kid"), "{}", d.message);

    // A token in the cookie works too, and leaves the other cookies.
    let token = s.token(&good_claims());
    let mut parts = request(&[("cookie", &format!("a=1; session={token}; b=2"))]);
    assert!(auth.authenticate(&mut parts).await.is_ok());
    assert_eq!(parts.headers["cookie"], "a=1; b=2");
}

#[tokio::test]
async fn optional_lets_a_request_without_token_through_but_not_a_bad_token() {
    let s = signer("RS256");
    let auth = auth_for(&[&s], true);
    let mut parts = request(&[("x-sub", "spoofed")]);
    assert_eq!(auth.authenticate(&mut parts).await.unwrap(), None);
    assert!(
        parts.headers.get("x-sub").is_none(),
        "spoofed claim header removed"
    );
    let mut claims = good_claims();
    claims["exp"] = json!(now() - 3600);
    assert!(
        auth.authenticate(&mut bearer(&s.token(&claims)))
            .await
            .is_err()
    );
}

#[test]
fn jwks_parsing_skips_unusable_keys_and_refuses_an_empty_set() {
    let ed = signer("EdDSA");
    let set = KeySet::parse(
        json!({"keys": [{"kty": "oct", "k": "c2VjcmV0"}, ed.jwk,
            {"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}]})
        .to_string()
        .as_bytes(),
    )
    .unwrap();
    assert_eq!(set.len(), 1);
    assert!(KeySet::parse(br#"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#).is_err());
    assert!(KeySet::parse(b"<html>").is_err());
}

#[tokio::test]
async fn a_remembered_token_is_decoded_once_and_still_checked_for_time_and_stripped() {
    let s = signer("ES256");
    let auth = auth_for(&[&s], false);
    let token = s.token(&good_claims());
    let mut first = bearer(&token);
    let a = auth.authenticate(&mut first).await.unwrap().unwrap();
    let mut second = bearer(&token);
    let b = auth.authenticate(&mut second).await.unwrap().unwrap();
    assert!(
        Arc::ptr_eq(&a.claims, &b.claims),
        "the second request reuses the claims decoded for the first"
    );
    assert_eq!(b.subject.as_deref(), Some("alice"));
    for parts in [&first, &second] {
        assert!(
            parts.headers.get("authorization").is_none(),
            "token removed"
        );
        assert_eq!(
            parts.headers["x-sub"], "alice",
            "claims copied, spoofed value replaced"
        );
    }
    // Time is not remembered: the same claims, read later, have expired.
    let provider = &auth.providers[0];
    let claims = provider.known(&token).expect("remembered");
    assert!(provider.check_time(&claims.map, now() as u64).is_ok());
    assert_eq!(
        provider.check_time(&claims.map, now() as u64 + 3 * 3600),
        Err("it has expired")
    );
    // A token refused for its issuer is not remembered: refused again, for the same reason.
    let mut claims = good_claims();
    claims["aud"] = json!("web");
    let foreign = s.token(&claims);
    for _ in 0..2 {
        let d = auth.authenticate(&mut bearer(&foreign)).await.unwrap_err();
        assert!(d.message.contains("audience"), "{}", d.message);
    }
    assert!(provider.known(&foreign).is_none());
}

#[test]
fn the_token_is_found_after_its_prefix_whatever_the_case_and_spaces() {
    let find = |value: &str, prefix: &str| token_in(value, prefix).map(|r| value[r].to_owned());
    assert_eq!(
        find("Bearer abc.def.ghi", "Bearer ").as_deref(),
        Some("abc.def.ghi")
    );
    assert_eq!(find("bearer   abc  ", "Bearer ").as_deref(), Some("abc"));
    assert_eq!(find("Bearer   ", "Bearer "), None);
    assert_eq!(find("Basic abc", "Bearer "), None);
    assert_eq!(find("tok", "").as_deref(), Some("tok"));
}
