//! JSON Web Keys (RFC 7517) and key sets, limited to what Backend Services
//! clients use: RSA keys and EC keys on P-384.
//!
//! Parsing is bounded (text size, key count, modulus size) because a JWKS
//! arrives from a client registration or a client-controlled URL. Members
//! this crate does not use (`x5c`, `x5t`, ...) are accepted and dropped.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::alg::{SigningAlg, truncate};
use crate::b64;
use crate::error::AuthError;
use crate::key_material;

/// Largest JWKS text accepted, in bytes.
pub const MAX_JWKS_BYTES: usize = 64 * 1024;
/// Most keys accepted in one set; a client rotating keys needs two or three.
pub const MAX_KEYS: usize = 20;
/// Smallest RSA modulus accepted, in bits (SMART and NIST minimum).
pub const MIN_RSA_BITS: usize = 2048;
/// Largest RSA modulus accepted, in bits; bigger keys only cost CPU.
pub const MAX_RSA_BITS: usize = 8192;
/// Longest `kid` accepted; it is echoed in logs and stored in databases.
pub const MAX_KID_LEN: usize = 256;

/// The kinds of key this crate can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyKind {
    /// `kty: "RSA"`.
    Rsa,
    /// `kty: "EC"`, `crv: "P-384"`.
    EcP384,
}

impl KeyKind {
    /// The only algorithm this crate uses with keys of this kind.
    pub fn alg(self) -> SigningAlg {
        match self {
            KeyKind::Rsa => SigningAlg::Rs384,
            KeyKind::EcP384 => SigningAlg::Es384,
        }
    }
}

/// One JSON Web Key. Members are kept as their base64url text so that a key
/// round-trips unchanged; [`JwkSet::parse`] checks they decode and fit.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    /// Key type: `"RSA"` or `"EC"`.
    pub kty: String,
    /// Key id, used by JWS headers to pick the key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// Intended algorithm, e.g. `"RS384"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    /// Public key use: `"sig"` or `"enc"`.
    #[serde(rename = "use", default, skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
    /// Permitted operations, e.g. `["verify"]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_ops: Option<Vec<String>>,
    /// EC curve name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crv: Option<String>,
    /// EC public x coordinate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x: Option<String>,
    /// EC public y coordinate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
    /// RSA modulus.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<String>,
    /// RSA public exponent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e: Option<String>,
    /// Private exponent (RSA) or private scalar (EC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub d: Option<String>,
    /// RSA first prime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p: Option<String>,
    /// RSA second prime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub q: Option<String>,
    /// RSA first CRT exponent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dp: Option<String>,
    /// RSA second CRT exponent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dq: Option<String>,
    /// RSA CRT coefficient.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qi: Option<String>,
}

// Keys end up in tracing output; never print private members.
impl fmt::Debug for Jwk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Jwk")
            .field("kty", &self.kty)
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("use", &self.use_)
            .field("key_ops", &self.key_ops)
            .field("crv", &self.crv)
            .field("private", &self.has_private_parts())
            .finish_non_exhaustive()
    }
}

impl Jwk {
    /// The key's kind, from `kty` (and `crv`); does not check the members.
    pub fn kind(&self) -> Result<KeyKind, AuthError> {
        match self.kty.as_str() {
            "RSA" => Ok(KeyKind::Rsa),
            "EC" => match self.crv.as_deref() {
                Some("P-384") => Ok(KeyKind::EcP384),
                Some(other) => Err(AuthError::InvalidJwk(format!(
                    "unsupported EC curve {:?}; only P-384 is accepted",
                    truncate(other)
                ))),
                None => Err(AuthError::InvalidJwk("EC key without crv".into())),
            },
            other => Err(AuthError::InvalidJwk(format!(
                "unsupported key type {:?}; only RSA and EC (P-384) are accepted",
                truncate(other)
            ))),
        }
    }

    /// Whether any private member is present.
    pub fn has_private_parts(&self) -> bool {
        [&self.d, &self.p, &self.q, &self.dp, &self.dq, &self.qi]
            .iter()
            .any(|m| m.is_some())
    }

    /// The public half: private members removed and, since a public key can
    /// only verify, `key_ops` (when present) set to `["verify"]`.
    pub fn public(&self) -> Jwk {
        Jwk {
            d: None,
            p: None,
            q: None,
            dp: None,
            dq: None,
            qi: None,
            key_ops: self.key_ops.as_ref().map(|_| vec!["verify".to_owned()]),
            ..self.clone()
        }
    }

    /// RFC 7638 SHA-256 thumbprint, base64url. Only the required public
    /// members take part, so the private and public halves agree.
    pub fn thumbprint(&self) -> Result<String, AuthError> {
        let canonical = match self.kind()? {
            KeyKind::Rsa => format!(
                r#"{{"e":{},"kty":"RSA","n":{}}}"#,
                json_str(required(&self.e, "e")?),
                json_str(required(&self.n, "n")?),
            ),
            KeyKind::EcP384 => format!(
                r#"{{"crv":"P-384","kty":"EC","x":{},"y":{}}}"#,
                json_str(required(&self.x, "x")?),
                json_str(required(&self.y, "y")?),
            ),
        };
        Ok(b64::encode(&Sha256::digest(canonical.as_bytes())))
    }

    /// Full check: kind supported, members decode, sizes fit, the point is on
    /// the curve, private members (if any) match the public ones.
    pub fn validate(&self) -> Result<KeyKind, AuthError> {
        let kind = self.kind()?;
        if let Some(kid) = &self.kid
            && (kid.is_empty() || kid.chars().count() > MAX_KID_LEN)
        {
            return Err(AuthError::InvalidJwk(format!(
                "kid must be 1..={MAX_KID_LEN} characters"
            )));
        }
        match kind {
            KeyKind::Rsa => {
                key_material::rsa_public(self)?;
                if self.has_private_parts() {
                    key_material::rsa_private(self)?;
                }
            }
            KeyKind::EcP384 => {
                key_material::ec_public(self)?;
                if self.has_private_parts() {
                    key_material::ec_private(self)?;
                }
            }
        }
        Ok(kind)
    }

    /// Whether the key may verify `alg` signatures: kind fits, and `alg`,
    /// `use` and `key_ops`, when present, allow it.
    pub fn fits_for_verify(&self, alg: SigningAlg) -> bool {
        self.fits(alg, "verify")
    }

    pub(crate) fn fits(&self, alg: SigningAlg, op: &str) -> bool {
        let kind_fits = self.kind().is_ok_and(|k| k.alg() == alg);
        let alg_fits = self.alg.as_deref().is_none_or(|a| a == alg.as_str());
        let use_fits = self.use_.as_deref().is_none_or(|u| u == "sig");
        let ops_fit = self
            .key_ops
            .as_ref()
            .is_none_or(|ops| ops.iter().any(|o| o == op));
        kind_fits && alg_fits && use_fits && ops_fit
    }
}

/// A JWK Set: `{"keys": [...]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct JwkSet {
    /// The keys, in document order.
    pub keys: Vec<Jwk>,
}

impl JwkSet {
    /// Parses and validates a JWK Set. Every key must be a supported kind
    /// with well-formed members; over [`MAX_JWKS_BYTES`] of text or
    /// [`MAX_KEYS`] keys is refused.
    pub fn parse(json: &str) -> Result<JwkSet, AuthError> {
        if json.len() > MAX_JWKS_BYTES {
            return Err(AuthError::InvalidJwk(format!(
                "JWK Set is larger than {MAX_JWKS_BYTES} bytes"
            )));
        }
        // serde's message can quote input, which may be private key
        // material: report the position only.
        let set: JwkSet = serde_json::from_str(json).map_err(|e| {
            AuthError::InvalidJwk(format!(
                "not a JWK Set (JSON error at line {} column {})",
                e.line(),
                e.column()
            ))
        })?;
        set.validate()?;
        Ok(set)
    }

    /// Checks bounds and every key (see [`Jwk::validate`]).
    pub fn validate(&self) -> Result<(), AuthError> {
        if self.keys.len() > MAX_KEYS {
            return Err(AuthError::InvalidJwk(format!(
                "JWK Set has {} keys; at most {MAX_KEYS} are accepted",
                self.keys.len()
            )));
        }
        for (i, key) in self.keys.iter().enumerate() {
            key.validate().map_err(|e| match e {
                AuthError::InvalidJwk(msg) => AuthError::InvalidJwk(format!("key {i}: {msg}")),
                other => other,
            })?;
        }
        Ok(())
    }

    /// Whether any key carries private members; a set registered as a
    /// client's public keys must not.
    pub fn has_private_parts(&self) -> bool {
        self.keys.iter().any(Jwk::has_private_parts)
    }

    /// The set with every key reduced to its public half.
    pub fn public(&self) -> JwkSet {
        JwkSet {
            keys: self.keys.iter().map(Jwk::public).collect(),
        }
    }

    /// Keys whose `kid` equals `kid`.
    pub fn find<'a>(&'a self, kid: &'a str) -> impl Iterator<Item = &'a Jwk> + 'a {
        self.keys
            .iter()
            .filter(move |k| k.kid.as_deref() == Some(kid))
    }

    /// Whether some key has this `kid`.
    pub fn contains_kid(&self, kid: &str) -> bool {
        self.find(kid).next().is_some()
    }

    /// Pretty JSON, as stored in files and registrations.
    pub fn to_json(&self) -> String {
        // Serializing plain strings cannot fail; fall back to an empty set
        // rather than panic if it somehow did.
        serde_json::to_string_pretty(self).unwrap_or_else(|_| r#"{"keys":[]}"#.to_owned())
    }
}

fn required<'a>(member: &'a Option<String>, name: &str) -> Result<&'a str, AuthError> {
    member
        .as_deref()
        .ok_or_else(|| AuthError::InvalidJwk(format!("missing member {name}")))
}

fn json_str(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}
