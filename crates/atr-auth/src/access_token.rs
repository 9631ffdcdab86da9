//! The server's own bearer access tokens: HS256 JWTs signed with a server
//! secret.
//!
//! Secrets live in the server's database so that several instances and
//! restarts share them; rotation keeps the previous secrets for verifying
//! tokens issued before the switch. Verification runs on every request, so
//! it rejects cheaply (length, alg, kid) before any MAC or JSON work, and
//! compares the tag in constant time.

use std::fmt;

use hmac::{Hmac, Mac};
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::b64;
use crate::error::AuthError;
use crate::jws;
use crate::scope::GrantedScopes;

type HmacSha256 = Hmac<Sha256>;

/// Longest access token accepted; ours are a few hundred bytes plus the
/// scope string.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;
/// Secret size generated, and the minimum accepted (RFC 7518 §3.2: at least
/// the hash size).
pub const SECRET_LEN: usize = 32;

/// One signing secret with its key id.
#[derive(Clone)]
pub struct HmacKey {
    kid: String,
    /// Keyed once here; cloning a keyed MAC is cheaper than re-keying.
    mac: HmacSha256,
}

impl HmacKey {
    /// Keys a secret; refuses secrets shorter than [`SECRET_LEN`] bytes or an
    /// empty kid.
    pub fn new(kid: impl Into<String>, secret: &[u8]) -> Result<HmacKey, AuthError> {
        let kid = kid.into();
        if kid.is_empty() || secret.len() < SECRET_LEN {
            return Err(AuthError::Internal(format!(
                "access token key needs a kid and at least {SECRET_LEN} secret bytes"
            )));
        }
        let mac = HmacSha256::new_from_slice(secret)
            .map_err(|e| AuthError::Internal(format!("HMAC key: {e}")))?;
        Ok(HmacKey { kid, mac })
    }

    /// The key id put in token headers.
    pub fn kid(&self) -> &str {
        &self.kid
    }
}

// Never print secrets.
impl fmt::Debug for HmacKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HmacKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// The current signing key and the previous ones still accepted.
#[derive(Debug, Clone)]
pub struct AccessTokenKeys {
    current: HmacKey,
    previous: Vec<HmacKey>,
    issuer: Option<String>,
}

/// Claims of a verified access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// The issuing server, when configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// The client id.
    pub sub: String,
    /// Granted scopes, space-separated.
    pub scope: String,
    /// Issued at, Unix seconds.
    pub iat: i64,
    /// Expiry, Unix seconds.
    pub exp: i64,
    /// Token id.
    pub jti: String,
}

impl AccessClaims {
    /// The granted scopes, parsed.
    pub fn granted(&self) -> GrantedScopes {
        GrantedScopes::parse(&self.scope)
    }
}

#[derive(Serialize)]
struct Header<'a> {
    alg: &'static str,
    typ: &'static str,
    kid: &'a str,
}

/// Header as read on the hot path: borrowed, so no allocation.
#[derive(Deserialize)]
struct PeekHeader<'a> {
    #[serde(borrow)]
    alg: &'a str,
    #[serde(borrow, default)]
    kid: Option<&'a str>,
}

impl AccessTokenKeys {
    /// Keys from `(kid, secret)` pairs: the current one signs, all verify.
    pub fn new(
        current: (&str, &[u8]),
        previous: &[(&str, &[u8])],
    ) -> Result<AccessTokenKeys, AuthError> {
        Ok(AccessTokenKeys {
            current: HmacKey::new(current.0, current.1)?,
            previous: previous
                .iter()
                .map(|(kid, secret)| HmacKey::new(*kid, secret))
                .collect::<Result<_, _>>()?,
            issuer: None,
        })
    }

    /// Puts `iss` in issued tokens (informational; not checked on verify,
    /// since only this server holds the secret).
    pub fn with_issuer(mut self, issuer: impl Into<String>) -> AccessTokenKeys {
        self.issuer = Some(issuer.into());
        self
    }

    /// 32 random bytes from the OS, for a new secret.
    pub fn generate_secret() -> Vec<u8> {
        let mut secret = vec![0u8; SECRET_LEN];
        OsRng.fill_bytes(&mut secret);
        secret
    }

    /// The kid tokens are signed with now.
    pub fn current_kid(&self) -> &str {
        &self.current.kid
    }

    /// Issues a token for `client_id` with the granted `scope`.
    pub fn issue(
        &self,
        client_id: &str,
        scope: &str,
        now_unix: i64,
        ttl_secs: i64,
        jti: &str,
    ) -> String {
        let header = Header {
            alg: "HS256",
            typ: "JWT",
            kid: &self.current.kid,
        };
        let claims = AccessClaims {
            iss: self.issuer.clone(),
            sub: client_id.to_owned(),
            scope: scope.to_owned(),
            iat: now_unix,
            exp: now_unix.saturating_add(ttl_secs),
            jti: jti.to_owned(),
        };
        // Encoding these plain structs cannot fail; an empty input would only
        // produce a token that never verifies.
        let input = jws::signing_input(&header, &claims).unwrap_or_default();
        let mut mac = self.current.mac.clone();
        mac.update(input.as_bytes());
        let tag = mac.finalize().into_bytes();
        format!("{input}.{}", b64::encode(&tag))
    }

    /// Verifies a token: HS256 only, a known kid, a matching tag, and
    /// `exp > now` with no leeway (the server's own clock issued it).
    pub fn verify(&self, token: &str, now_unix: i64) -> Result<AccessClaims, AuthError> {
        let parts = jws::split(token, MAX_TOKEN_LEN)?;

        let header_json =
            b64::decode(parts.header).ok_or(AuthError::Malformed("header is not base64url"))?;
        let header: PeekHeader<'_> = serde_json::from_slice(&header_json)
            .map_err(|_| AuthError::Malformed("header is not a JSON object with a string alg"))?;
        if header.alg != "HS256" {
            return Err(AuthError::UnsupportedAlg(
                header.alg.chars().take(32).collect(),
            ));
        }
        let kid = header.kid.ok_or(AuthError::UnknownKid)?;
        let key = self.key(kid).ok_or(AuthError::UnknownKid)?;

        // A 32-byte tag is 43 base64url characters; the buffer is larger so
        // a longer tag decodes and is then rejected by length.
        let mut tag = [0u8; 64];
        let len = b64::decode_into(parts.signature, &mut tag).ok_or(AuthError::Tampered)?;
        let mut mac = key.mac.clone();
        mac.update(parts.signing_input.as_bytes());
        mac.verify_slice(tag.get(..len).ok_or(AuthError::Tampered)?)
            .map_err(|_| AuthError::Tampered)?;

        let claims: AccessClaims = jws::payload(parts.payload)?;
        if claims.exp <= now_unix {
            return Err(AuthError::Expired);
        }
        Ok(claims)
    }

    fn key(&self, kid: &str) -> Option<&HmacKey> {
        std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|k| k.kid == kid)
    }
}
