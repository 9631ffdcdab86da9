//! Client assertions (RFC 7523 `private_key_jwt`) as SMART Backend Services
//! uses them: signing on the client, checking on the server.
//!
//! The server checks in two steps because it must find the client (and its
//! keys) before it can verify: [`peek`] reads the unverified header and
//! `iss`/`sub`, then [`verify`] checks signature and claims against the
//! client's keys. Replay detection (a `jti` seen before) needs storage and is
//! left to the caller.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::alg::SigningAlg;
use crate::b64;
use crate::error::AuthError;
use crate::jwk::{Jwk, JwkSet};
use crate::jws;
use crate::key_material;

/// Longest assertion accepted; an RS384 assertion with an 8192-bit key is
/// under 2 KiB.
pub const MAX_ASSERTION_LEN: usize = 16 * 1024;
/// SMART: `exp` no more than five minutes in the future.
pub const MAX_LIFETIME_SECS: i64 = 300;
/// Clock skew tolerated on both sides of `exp`.
pub const LEEWAY_SECS: i64 = 60;
/// Longest `jti` accepted; it is stored for replay detection.
pub const MAX_JTI_LEN: usize = 256;

/// What can be read from an assertion before its signature is checked.
/// Nothing here is trustworthy; it only says which client's keys to load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnverifiedAssertion {
    /// Header `alg`, already known to be acceptable.
    pub alg: SigningAlg,
    /// Header `kid`.
    pub kid: Option<String>,
    /// Header `jku` (SMART: the client's JWKS URL, to be matched against the
    /// registration, never fetched blindly).
    pub jku: Option<String>,
    /// Claim `iss`.
    pub iss: Option<String>,
    /// Claim `sub`.
    pub sub: Option<String>,
}

/// A checked assertion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedAssertion {
    /// `iss` (= `sub`): the authenticated client id.
    pub client_id: String,
    /// `jti`, for the caller's replay check.
    pub jti: String,
    /// `exp`, how long the caller must remember `jti`.
    pub exp: i64,
}

#[derive(Serialize)]
struct SignHeader<'a> {
    alg: &'a str,
    typ: &'a str,
    kid: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    jku: Option<&'a str>,
}

#[derive(Serialize)]
struct SignClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    exp: i64,
    iat: i64,
    jti: &'a str,
}

/// Claims as received. Every member is a loose `Value` so that a wrong type
/// is reported as that claim being invalid, not as a malformed token; the
/// derive still rejects duplicate members.
#[derive(Deserialize)]
struct RawClaims {
    #[serde(default)]
    iss: Option<Value>,
    #[serde(default)]
    sub: Option<Value>,
    #[serde(default)]
    aud: Option<Value>,
    #[serde(default)]
    exp: Option<Value>,
    #[serde(default)]
    jti: Option<Value>,
    #[serde(default)]
    nbf: Option<Value>,
    #[serde(default)]
    iat: Option<Value>,
}

/// Signs a client assertion with a private key (client side).
///
/// The algorithm follows from the key (RSA → RS384, EC P-384 → ES384); the
/// header `kid` is the key's `kid`, or its thumbprint when it has none.
pub fn sign_client_assertion(
    key: &Jwk,
    client_id: &str,
    token_url: &str,
    now_unix: i64,
    lifetime_secs: i64,
    jti: &str,
) -> Result<String, AuthError> {
    if lifetime_secs <= 0 {
        return Err(AuthError::InvalidClaim("exp"));
    }
    if jti.is_empty() || jti.chars().count() > MAX_JTI_LEN {
        return Err(AuthError::InvalidClaim("jti"));
    }
    let claims = SignClaims {
        iss: client_id,
        sub: client_id,
        aud: token_url,
        exp: now_unix.saturating_add(lifetime_secs),
        iat: now_unix,
        jti,
    };
    sign_compact(key, &claims, None)
}

/// Signs arbitrary `claims` with a private key, with the same header as
/// [`sign_client_assertion`]. For clients with unusual needs and for tests
/// that must produce assertions [`sign_client_assertion`] refuses to.
pub fn sign_jwt(key: &Jwk, claims: &Value) -> Result<String, AuthError> {
    sign_compact(key, claims, None)
}

/// As [`sign_jwt`], with a `jku` header: SMART clients registered by JWKS URL may name it, and
/// the server then accepts it only when it is the registered URL.
pub fn sign_jwt_with_jku(key: &Jwk, claims: &Value, jku: &str) -> Result<String, AuthError> {
    sign_compact(key, claims, Some(jku))
}

fn sign_compact(
    key: &Jwk,
    claims: &impl Serialize,
    jku: Option<&str>,
) -> Result<String, AuthError> {
    let alg = key.kind()?.alg();
    if !key.fits(alg, "sign") {
        return Err(AuthError::KeyMismatch);
    }
    if !key.has_private_parts() {
        return Err(AuthError::InvalidJwk("signing needs a private key".into()));
    }
    let kid = match &key.kid {
        Some(kid) => kid.clone(),
        None => key.thumbprint()?,
    };
    let header = SignHeader {
        alg: alg.as_str(),
        typ: "JWT",
        kid: &kid,
        jku,
    };
    let input = jws::signing_input(&header, claims)?;
    let signature = key_material::sign(key, alg, input.as_bytes())?;
    Ok(format!("{input}.{}", b64::encode(&signature)))
}

/// Reads an assertion without verifying it (server side, step 1): rejects
/// malformed tokens and any algorithm but RS384/ES384.
pub fn peek(assertion: &str) -> Result<UnverifiedAssertion, AuthError> {
    let parts = jws::split(assertion, MAX_ASSERTION_LEN)?;
    let header = jws::header(parts.header)?;
    // The algorithm is checked before anything else is believed, so `none`,
    // HMAC-with-public-key and downgrades stop here.
    let alg: SigningAlg = header.alg.parse()?;
    let claims: RawClaims = jws::payload(parts.payload)?;
    jws::signature(parts.signature)?;
    Ok(UnverifiedAssertion {
        alg,
        kid: header.kid,
        jku: header.jku,
        iss: claims.iss.and_then(into_string),
        sub: claims.sub.and_then(into_string),
    })
}

/// Verifies an assertion against the client's registered keys (server side,
/// step 2) and checks its claims at time `now_unix`.
pub fn verify(
    assertion: &str,
    keys: &JwkSet,
    expected_aud: &str,
    now_unix: i64,
) -> Result<VerifiedAssertion, AuthError> {
    let parts = jws::split(assertion, MAX_ASSERTION_LEN)?;
    let header = jws::header(parts.header)?;
    let alg: SigningAlg = header.alg.parse()?;
    let claims: RawClaims = jws::payload(parts.payload)?;
    let signature = jws::signature(parts.signature)?;

    check_signature(
        keys,
        header.kid.as_deref(),
        alg,
        parts.signing_input.as_bytes(),
        &signature,
    )?;
    check_claims(claims, expected_aud, now_unix)
}

/// With a `kid`, only keys carrying it are candidates and one that does not
/// fit the algorithm is an error. Without one, a client with a single key has
/// it tried; a client with several is refused (SMART requires `kid`).
fn check_signature(
    keys: &JwkSet,
    kid: Option<&str>,
    alg: SigningAlg,
    input: &[u8],
    signature: &[u8],
) -> Result<(), AuthError> {
    let candidates: Vec<&Jwk> = match kid {
        Some(kid) => {
            let named: Vec<&Jwk> = keys.find(kid).collect();
            if named.is_empty() {
                return Err(AuthError::UnknownKid);
            }
            let fitting: Vec<&Jwk> = named
                .into_iter()
                .filter(|k| k.fits_for_verify(alg))
                .collect();
            if fitting.is_empty() {
                return Err(AuthError::KeyMismatch);
            }
            fitting
        }
        None if keys.keys.len() > 1 => return Err(AuthError::KidRequired),
        None => keys
            .keys
            .iter()
            .filter(|k| k.fits_for_verify(alg))
            .collect(),
    };
    if candidates.is_empty() {
        return Err(AuthError::UnknownKid);
    }
    for key in candidates {
        let kind = key.kind()?;
        // A registered key that no longer parses is the client's problem,
        // but must not hide a later key that works.
        if key_material::verify(key, kind, input, signature).is_ok() {
            return Ok(());
        }
    }
    Err(AuthError::BadSignature)
}

fn check_claims(
    claims: RawClaims,
    expected_aud: &str,
    now: i64,
) -> Result<VerifiedAssertion, AuthError> {
    let iss = required_string(claims.iss, "iss")?;
    let sub = required_string(claims.sub, "sub")?;
    if iss != sub {
        return Err(AuthError::IssNotSub);
    }
    if iss.is_empty() {
        return Err(AuthError::InvalidClaim("iss"));
    }

    let aud_ok = match claims.aud {
        None => return Err(AuthError::MissingClaim("aud")),
        Some(Value::String(aud)) => aud == expected_aud,
        Some(Value::Array(auds)) => auds.iter().any(|a| a.as_str() == Some(expected_aud)),
        Some(_) => return Err(AuthError::InvalidClaim("aud")),
    };
    if !aud_ok {
        return Err(AuthError::WrongAudience);
    }

    let exp = numeric_date(claims.exp.ok_or(AuthError::MissingClaim("exp"))?)
        .ok_or(AuthError::InvalidClaim("exp"))?;
    if exp <= now.saturating_sub(LEEWAY_SECS) {
        return Err(AuthError::Expired);
    }
    if exp > now.saturating_add(MAX_LIFETIME_SECS + LEEWAY_SECS) {
        return Err(AuthError::ExpiresTooFarAhead);
    }
    // Optional in SMART, but when present they must hold: an assertion not valid until later is
    // not valid now.
    for (name, claim) in [("nbf", claims.nbf), ("iat", claims.iat)] {
        if let Some(v) = claim {
            let at = numeric_date(v).ok_or(AuthError::InvalidClaim(name))?;
            if at > now.saturating_add(LEEWAY_SECS) {
                return Err(AuthError::NotYetValid(name));
            }
        }
    }

    let jti = required_string(claims.jti, "jti")?;
    if jti.is_empty() {
        return Err(AuthError::MissingClaim("jti"));
    }
    if jti.chars().count() > MAX_JTI_LEN {
        return Err(AuthError::InvalidClaim("jti"));
    }

    Ok(VerifiedAssertion {
        client_id: iss,
        jti,
        exp,
    })
}

fn into_string(v: Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s),
        _ => None,
    }
}

fn required_string(v: Option<Value>, name: &'static str) -> Result<String, AuthError> {
    match v {
        None | Some(Value::Null) => Err(AuthError::MissingClaim(name)),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(AuthError::InvalidClaim(name)),
    }
}

/// RFC 7519 NumericDate: seconds, possibly fractional; fractions are cut.
fn numeric_date(v: Value) -> Option<i64> {
    let n = v.as_number()?;
    if let Some(i) = n.as_i64() {
        return Some(i);
    }
    let f = n.as_f64()?;
    // Out-of-range floats would saturate silently; refuse them instead.
    (f.is_finite() && f.abs() < 1e15).then_some(f.floor() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alg::truncate;

    #[test]
    fn numeric_date_accepts_integers_and_fractions_only() {
        assert_eq!(numeric_date(serde_json::json!(10)), Some(10));
        assert_eq!(numeric_date(serde_json::json!(10.9)), Some(10));
        assert_eq!(numeric_date(serde_json::json!("10")), None);
        assert_eq!(numeric_date(serde_json::json!(1e300)), None);
    }

    #[test]
    fn error_messages_do_not_echo_long_attacker_strings() {
        let long = "A".repeat(1000);
        let err = long.parse::<SigningAlg>().unwrap_err();
        assert!(err.to_string().len() < 120, "{err}");
        assert_eq!(truncate(&long).len(), 32);
    }
}
