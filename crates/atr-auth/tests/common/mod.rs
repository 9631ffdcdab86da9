//! Shared fixtures: one RSA and one EC key pair per test binary (RSA key
//! generation is the slow part), and raw JWS builders for hostile tokens.
#![allow(dead_code)]

use std::sync::OnceLock;

use atr_auth::{GeneratedKeys, Jwk, JwkSet, SigningAlg, generate};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

pub const TOKEN_URL: &str = "https://atr.example.org/auth/token";
pub const CLIENT: &str = "client-1";
pub const NOW: i64 = 1_750_000_000;

pub fn rsa_keys() -> &'static GeneratedKeys {
    static KEYS: OnceLock<GeneratedKeys> = OnceLock::new();
    KEYS.get_or_init(|| generate(SigningAlg::Rs384).unwrap())
}

pub fn rsa_keys_2() -> &'static GeneratedKeys {
    static KEYS: OnceLock<GeneratedKeys> = OnceLock::new();
    KEYS.get_or_init(|| generate(SigningAlg::Rs384).unwrap())
}

pub fn ec_keys() -> &'static GeneratedKeys {
    static KEYS: OnceLock<GeneratedKeys> = OnceLock::new();
    KEYS.get_or_init(|| generate(SigningAlg::Es384).unwrap())
}

pub fn private(keys: &GeneratedKeys) -> &Jwk {
    &keys.private.keys[0]
}

pub fn public(keys: &GeneratedKeys) -> &JwkSet {
    &keys.public
}

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn unb64(text: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(text).unwrap()
}

/// `base64url(header).base64url(claims)`.
pub fn signing_input(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    )
}

/// Standard valid claims for `CLIENT` at `NOW`.
pub fn claims() -> Value {
    serde_json::json!({
        "iss": CLIENT,
        "sub": CLIENT,
        "aud": TOKEN_URL,
        "exp": NOW + 300,
        "iat": NOW,
        "jti": "jti-1",
    })
}

/// An RSA private key built from a private JWK with the rsa crate directly,
/// for signing with algorithms the crate refuses to produce.
pub fn rsa_private_key(jwk: &Jwk) -> rsa::RsaPrivateKey {
    let int = |m: &Option<String>| rsa::BigUint::from_bytes_be(&unb64(m.as_deref().unwrap()));
    rsa::RsaPrivateKey::from_components(
        int(&jwk.n),
        int(&jwk.e),
        int(&jwk.d),
        vec![int(&jwk.p), int(&jwk.q)],
    )
    .unwrap()
}
