//! The one error type of the crate, and its mapping to OAuth error codes.

use thiserror::Error;

/// Why an authorization step failed.
///
/// Messages are safe to return to the client as `error_description`: they
/// never contain key material, and attacker-supplied strings are truncated.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AuthError {
    /// A JWK or JWK Set is unusable (unknown key type or curve, bad sizes,
    /// over the size bounds, inconsistent private parts).
    #[error("invalid JWK: {0}")]
    InvalidJwk(String),
    /// The JWT is not a well-formed compact JWS with JSON header and claims.
    #[error("malformed JWT: {0}")]
    Malformed(&'static str),
    /// The JWS `alg` is not one this server accepts (only RS384 and ES384).
    #[error("unsupported signature algorithm {0:?}; expected RS384 or ES384")]
    UnsupportedAlg(String),
    /// No key in the client's set has the header's `kid` (or, without a
    /// `kid`, no key fits the algorithm).
    #[error("no registered key matches the JWT header kid")]
    UnknownKid,
    /// The selected key cannot be used with this algorithm or for verifying.
    #[error("the key selected by kid does not fit the JWT algorithm or use")]
    KeyMismatch,
    /// The signature does not verify.
    #[error("JWT signature does not verify")]
    BadSignature,
    /// A client assertion's `iss` and `sub` must both be the client id.
    #[error("client assertion iss and sub differ")]
    IssNotSub,
    /// The assertion's `aud` is not this server's token endpoint.
    #[error("client assertion aud is not this token endpoint")]
    WrongAudience,
    /// The token has expired.
    #[error("token expired")]
    Expired,
    /// A client assertion's `exp` is more than five minutes ahead.
    #[error("client assertion exp is more than 5 minutes in the future")]
    ExpiresTooFarAhead,
    /// A client assertion's `nbf` or `iat` is later than now plus the leeway: it is not valid yet
    /// (or was made by a clock no one should trust).
    #[error("client assertion {0} is in the future")]
    NotYetValid(&'static str),
    /// The assertion has no `kid` but the client has several keys: SMART Backend Services
    /// requires `kid`, and trying every key would let one key's holder act as any other.
    #[error("client assertion header has no kid, and the client has several keys registered")]
    KidRequired,
    /// A required claim is absent.
    #[error("missing claim {0}")]
    MissingClaim(&'static str),
    /// A claim is present but has the wrong type or an unacceptable value.
    #[error("invalid claim {0}")]
    InvalidClaim(&'static str),
    /// The assertion's `jti` was used before (detected by the caller's store).
    #[error("client assertion jti was already used")]
    Replayed,
    /// The client is not registered (or is disabled).
    #[error("unknown client")]
    UnknownClient,
    /// Nothing requested could be granted, or the scope text is unusable.
    #[error("invalid scope: {0}")]
    InvalidScope(String),
    /// One of the server's own access tokens failed its integrity check.
    #[error("access token signature does not verify")]
    Tampered,
    /// Fetching a client's JWKS URL failed.
    #[error("fetching the client JWKS failed: {0}")]
    JwksFetch(String),
    /// A local failure (random source, key generation, signing), not the
    /// peer's fault.
    #[error("internal error: {0}")]
    Internal(String),
}

impl AuthError {
    /// The OAuth 2.0 `error` code (RFC 6749 §5.2, RFC 6750 §3.1) to send.
    ///
    /// Mapping choices:
    /// * `invalid_client` for anything that means "we could not authenticate
    ///   this client": malformed assertion, unsupported algorithm, no or
    ///   unfit key, bad signature, `iss != sub`, unknown client, JWKS fetch
    ///   failure, bad JWK. RFC 7523 §3.2 requires `invalid_client` for
    ///   failed client authentication.
    /// * `invalid_grant` for an assertion that authenticates but is not
    ///   acceptable now or here: expired, `exp` too far ahead, wrong `aud`,
    ///   missing/invalid claims, replayed `jti`. This is what the SMART
    ///   Backend Services spec's examples and common test suites (Inferno)
    ///   expect for these cases, even though RFC 7523 would also allow
    ///   `invalid_client`; both come with HTTP 400/401 so a client treats
    ///   them alike.
    /// * `invalid_scope` when nothing requested can be granted.
    /// * `invalid_token` for the server's own access tokens (tampered); an
    ///   expired access token is reported by the resource server as
    ///   `invalid_token` regardless of this mapping (RFC 6750 §3.1), since
    ///   [`AuthError::Expired`] is shared with assertions.
    /// * `server_error` for local failures.
    pub fn oauth_code(&self) -> &'static str {
        match self {
            AuthError::InvalidJwk(_)
            | AuthError::Malformed(_)
            | AuthError::UnsupportedAlg(_)
            | AuthError::UnknownKid
            | AuthError::KeyMismatch
            | AuthError::KidRequired
            | AuthError::BadSignature
            | AuthError::IssNotSub
            | AuthError::UnknownClient
            | AuthError::JwksFetch(_) => "invalid_client",
            AuthError::WrongAudience
            | AuthError::Expired
            | AuthError::ExpiresTooFarAhead
            | AuthError::NotYetValid(_)
            | AuthError::MissingClaim(_)
            | AuthError::InvalidClaim(_)
            | AuthError::Replayed => "invalid_grant",
            AuthError::InvalidScope(_) => "invalid_scope",
            AuthError::Tampered => "invalid_token",
            AuthError::Internal(_) => "server_error",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_problems_are_invalid_client_and_expiry_is_invalid_grant() {
        assert_eq!(AuthError::BadSignature.oauth_code(), "invalid_client");
        assert_eq!(AuthError::IssNotSub.oauth_code(), "invalid_client");
        assert_eq!(AuthError::UnknownClient.oauth_code(), "invalid_client");
        assert_eq!(AuthError::Expired.oauth_code(), "invalid_grant");
        assert_eq!(AuthError::WrongAudience.oauth_code(), "invalid_grant");
        assert_eq!(AuthError::Replayed.oauth_code(), "invalid_grant");
        assert_eq!(
            AuthError::InvalidScope("x".into()).oauth_code(),
            "invalid_scope"
        );
    }
}
