//! JSON Web Keys and JWS signature verification with ring: RS256/384/512, PS256/384/512,
//! ES256, ES384 and EdDSA (Ed25519). `none` and the HMAC algorithms are never accepted.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey, VerificationAlgorithm};
use serde::Deserialize;

/// The public keys of one JWKS document.
#[derive(Debug, Default)]
pub struct KeySet {
    keys: Vec<Key>,
    /// Unique to this parse of a document (a fetch of the same document gets another): what
    /// a signature verified against it is remembered under ([`super::verified`]).
    id: u64,
}

static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

#[derive(Debug)]
struct Key {
    kid: Option<String>,
    /// The key's own `alg`, when it names one: a token must use exactly that.
    alg: Option<String>,
    material: Material,
}

#[derive(Debug)]
enum Material {
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    /// Uncompressed point (`04 || x || y`).
    P256(Vec<u8>),
    P384(Vec<u8>),
    Ed25519(Vec<u8>),
}

/// A JWK as found in a JWKS (only the members used here).
#[derive(Deserialize)]
struct Jwk {
    kty: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    alg: Option<String>,
    #[serde(default, rename = "use")]
    use_: Option<String>,
    #[serde(default)]
    crv: Option<String>,
    #[serde(default)]
    n: Option<String>,
    #[serde(default)]
    e: Option<String>,
    #[serde(default)]
    x: Option<String>,
    #[serde(default)]
    y: Option<String>,
}

#[derive(Deserialize)]
struct Jwks {
    keys: Vec<serde_json::Value>,
}

/// What a key lookup found.
#[derive(Debug, PartialEq, Eq)]
pub enum Verified {
    Valid,
    /// A key of this `kid` (or any key, without one) verified nothing: a bad signature.
    BadSignature,
    /// No key has the token's `kid` (a rotation the cached set does not know yet).
    UnknownKey,
    /// The algorithm is not one Gantry accepts.
    UnsupportedAlgorithm,
}

impl KeySet {
    /// Parses a JWKS document. Keys of an unsupported type, or for encryption (`use: enc`),
    /// are skipped; a document with no usable key is an error.
    pub fn parse(text: &[u8]) -> Result<Self, String> {
        let jwks: Jwks =
            serde_json::from_slice(text).map_err(|e| format!("not a JWKS document: {e}"))?;
        let keys: Vec<Key> = jwks
            .keys
            .into_iter()
            .filter_map(|v| serde_json::from_value::<Jwk>(v).ok())
            .filter(|k| k.use_.as_deref() != Some("enc"))
            .filter_map(|k| {
                let material = material(&k)?;
                Some(Key {
                    kid: k.kid,
                    alg: k.alg,
                    material,
                })
            })
            .collect();
        if keys.is_empty() {
            return Err("the JWKS has no usable key (RSA, EC P-256/P-384, Ed25519)".to_owned());
        }
        Ok(Self {
            keys,
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        })
    }

    /// This set's identity, never reused by another set.
    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Whether a key has this `kid`.
    pub fn contains_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }

    /// Verifies `signature` over `message` (`header.payload`) with the key of `kid` (every
    /// key that fits `alg`, without a `kid`).
    pub fn verify(&self, alg: &str, kid: Option<&str>, message: &[u8], sig: &[u8]) -> Verified {
        if algorithm(alg).is_none() {
            return Verified::UnsupportedAlgorithm;
        }
        let mut candidates = self
            .keys
            .iter()
            .filter(|k| kid.is_none() || k.kid.as_deref() == kid)
            .filter(|k| k.alg.as_deref().is_none_or(|a| a == alg))
            .peekable();
        if candidates.peek().is_none() {
            return Verified::UnknownKey;
        }
        if candidates.any(|k| k.verify(alg, message, sig)) {
            Verified::Valid
        } else {
            Verified::BadSignature
        }
    }
}

/// The ring algorithm of a JWS `alg`.
fn algorithm(alg: &str) -> Option<&'static dyn VerificationAlgorithm> {
    Some(match alg {
        "RS256" => &signature::RSA_PKCS1_2048_8192_SHA256,
        "RS384" => &signature::RSA_PKCS1_2048_8192_SHA384,
        "RS512" => &signature::RSA_PKCS1_2048_8192_SHA512,
        "PS256" => &signature::RSA_PSS_2048_8192_SHA256,
        "PS384" => &signature::RSA_PSS_2048_8192_SHA384,
        "PS512" => &signature::RSA_PSS_2048_8192_SHA512,
        "ES256" => &signature::ECDSA_P256_SHA256_FIXED,
        "ES384" => &signature::ECDSA_P384_SHA384_FIXED,
        "EdDSA" => &signature::ED25519,
        _ => return None,
    })
}

impl Key {
    fn verify(&self, alg: &str, message: &[u8], sig: &[u8]) -> bool {
        match (&self.material, alg) {
            (Material::Rsa { n, e }, "RS256" | "RS384" | "RS512" | "PS256" | "PS384" | "PS512") => {
                let params = match alg {
                    "RS256" => &signature::RSA_PKCS1_2048_8192_SHA256,
                    "RS384" => &signature::RSA_PKCS1_2048_8192_SHA384,
                    "RS512" => &signature::RSA_PKCS1_2048_8192_SHA512,
                    "PS256" => &signature::RSA_PSS_2048_8192_SHA256,
                    "PS384" => &signature::RSA_PSS_2048_8192_SHA384,
                    _ => &signature::RSA_PSS_2048_8192_SHA512,
                };
                RsaPublicKeyComponents { n, e }
                    .verify(params, message, sig)
                    .is_ok()
            }
            (Material::P256(point), "ES256") => {
                UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                    .verify(message, sig)
                    .is_ok()
            }
            (Material::P384(point), "ES384") => {
                UnparsedPublicKey::new(&signature::ECDSA_P384_SHA384_FIXED, point)
                    .verify(message, sig)
                    .is_ok()
            }
            (Material::Ed25519(x), "EdDSA") => UnparsedPublicKey::new(&signature::ED25519, x)
                .verify(message, sig)
                .is_ok(),
            _ => false,
        }
    }
}

fn b64(v: Option<&String>) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(v?.trim_end_matches('=')).ok()
}

fn material(k: &Jwk) -> Option<Material> {
    match (k.kty.as_str(), k.crv.as_deref()) {
        ("RSA", _) => Some(Material::Rsa {
            n: b64(k.n.as_ref())?,
            e: b64(k.e.as_ref())?,
        }),
        ("EC", Some(crv @ ("P-256" | "P-384"))) => {
            let (x, y) = (b64(k.x.as_ref())?, b64(k.y.as_ref())?);
            let size = if crv == "P-256" { 32 } else { 48 };
            if x.len() != size || y.len() != size {
                return None;
            }
            let mut point = Vec::with_capacity(1 + 2 * size);
            point.push(4);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            Some(if crv == "P-256" {
                Material::P256(point)
            } else {
                Material::P384(point)
            })
        }
        ("OKP", Some("Ed25519")) => {
            let x = b64(k.x.as_ref())?;
            (x.len() == 32).then_some(Material::Ed25519(x))
        }
        _ => None,
    }
}
