//! The JWS signature algorithms this server accepts for client assertions.
//!
//! SMART Backend Services requires servers to support RS384 and ES384 and
//! nothing else is needed; refusing everything else closes the classic JWT
//! holes (`none`, HMAC with a public key as secret, algorithm downgrade).

use std::fmt;
use std::str::FromStr;

use crate::error::AuthError;

/// A client-assertion signature algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SigningAlg {
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    Rs384,
    /// ECDSA on P-384 with SHA-384.
    Es384,
}

impl SigningAlg {
    /// The JOSE name, as it appears in a JWS header or a JWK `alg`.
    pub fn as_str(self) -> &'static str {
        match self {
            SigningAlg::Rs384 => "RS384",
            SigningAlg::Es384 => "ES384",
        }
    }
}

impl fmt::Display for SigningAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SigningAlg {
    type Err = AuthError;

    /// Case-sensitive, as JOSE algorithm names are.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "RS384" => Ok(SigningAlg::Rs384),
            "ES384" => Ok(SigningAlg::Es384),
            other => Err(AuthError::UnsupportedAlg(truncate(other))),
        }
    }
}

/// Attacker-supplied names end up in error messages and logs; keep them short.
pub(crate) fn truncate(s: &str) -> String {
    s.chars().take(32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_others_are_unsupported() {
        for alg in [SigningAlg::Rs384, SigningAlg::Es384] {
            assert_eq!(alg.to_string().parse::<SigningAlg>().unwrap(), alg);
        }
        for bad in ["rs384", "RS256", "none", "HS384", ""] {
            assert!(matches!(
                bad.parse::<SigningAlg>(),
                Err(AuthError::UnsupportedAlg(_))
            ));
        }
    }
}
