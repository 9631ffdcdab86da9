//! Generating a client signing key pair as JWK Sets: the private set stays
//! with the client, the public set is registered with the server.

use p384::elliptic_curve::sec1::ToEncodedPoint;
use rand_core::OsRng;
use rsa::traits::{PrivateKeyParts, PublicKeyParts};
use rsa::{BigUint, RsaPrivateKey};

pub use crate::alg::SigningAlg;
use crate::b64;
use crate::error::AuthError;
use crate::jwk::{Jwk, JwkSet};

/// RSA modulus size for generated RS384 keys. 2048 is the SMART floor and
/// keeps key generation and signing quick; servers accept up to 8192.
pub const RSA_BITS: usize = 2048;

/// A freshly generated key pair, each half as a one-key set.
#[derive(Debug, Clone)]
pub struct GeneratedKeys {
    /// The key with private members; `key_ops: ["sign"]`.
    pub private: JwkSet,
    /// The same key without private members; `key_ops: ["verify"]`.
    pub public: JwkSet,
}

/// Generates a key for `alg`: RSA-2048 for RS384, P-384 for ES384. The `kid`
/// is the RFC 7638 thumbprint, so it is stable and collision-free.
pub fn generate(alg: SigningAlg) -> Result<GeneratedKeys, AuthError> {
    let mut private = match alg {
        SigningAlg::Rs384 => rsa_jwk()?,
        SigningAlg::Es384 => ec_jwk(),
    };
    private.kid = Some(private.thumbprint()?);
    private.alg = Some(alg.as_str().to_owned());
    private.use_ = Some("sig".to_owned());
    private.key_ops = Some(vec!["sign".to_owned()]);
    let public = private.public();
    Ok(GeneratedKeys {
        private: JwkSet {
            keys: vec![private],
        },
        public: JwkSet { keys: vec![public] },
    })
}

fn bare(kty: &str) -> Jwk {
    Jwk {
        kty: kty.to_owned(),
        kid: None,
        alg: None,
        use_: None,
        key_ops: None,
        crv: None,
        x: None,
        y: None,
        n: None,
        e: None,
        d: None,
        p: None,
        q: None,
        dp: None,
        dq: None,
        qi: None,
    }
}

fn rsa_jwk() -> Result<Jwk, AuthError> {
    let key = RsaPrivateKey::new(&mut OsRng, RSA_BITS)
        .map_err(|e| AuthError::Internal(format!("RSA key generation failed: {e}")))?;
    let [p, q] = key.primes() else {
        return Err(AuthError::Internal("RSA key is not two-prime".into()));
    };
    // Computed here rather than read from the key's precomputed values so
    // they do not depend on the crate's internal representation.
    let one = BigUint::from(1u32);
    let dp = key.d() % (p - &one);
    let dq = key.d() % (q - &one);
    // qi = q^-1 mod p, by Fermat since p is prime.
    let qi = q.modpow(&(p - BigUint::from(2u32)), p);
    let enc = |v: &BigUint| Some(b64::encode(&v.to_bytes_be()));
    Ok(Jwk {
        n: enc(key.n()),
        e: enc(key.e()),
        d: enc(key.d()),
        p: enc(p),
        q: enc(q),
        dp: enc(&dp),
        dq: enc(&dq),
        qi: enc(&qi),
        ..bare("RSA")
    })
}

fn ec_jwk() -> Jwk {
    let secret = p384::SecretKey::random(&mut OsRng);
    let point = secret.public_key().to_encoded_point(false);
    Jwk {
        crv: Some("P-384".to_owned()),
        x: point.x().map(|x| b64::encode(x)),
        y: point.y().map(|y| b64::encode(y)),
        d: Some(b64::encode(&secret.to_bytes())),
        ..bare("EC")
    }
}
