//! Turning JWK members into keys, and the raw sign/verify operations for
//! RS384 and ES384 (signing with RustCrypto, verifying with AWS-LC).

use p384::ecdsa::signature::{RandomizedSigner, Signer};
use rand_core::OsRng;
use rsa::traits::PublicKeyParts;
use rsa::{BigUint, RsaPrivateKey, RsaPublicKey};
use sha2::Sha384;

use crate::alg::SigningAlg;
use crate::b64;
use crate::error::AuthError;
use crate::jwk::{Jwk, KeyKind, MAX_RSA_BITS, MIN_RSA_BITS};

/// P-384 field and scalar size in bytes.
const P384_BYTES: usize = 48;

fn member(value: &Option<String>, name: &str) -> Result<Vec<u8>, AuthError> {
    let text = value
        .as_deref()
        .ok_or_else(|| AuthError::InvalidJwk(format!("missing member {name}")))?;
    b64::decode(text)
        .ok_or_else(|| AuthError::InvalidJwk(format!("member {name} is not base64url")))
}

fn uint(value: &Option<String>, name: &str) -> Result<BigUint, AuthError> {
    Ok(BigUint::from_bytes_be(&member(value, name)?))
}

pub(crate) fn rsa_public(jwk: &Jwk) -> Result<RsaPublicKey, AuthError> {
    let n = uint(&jwk.n, "n")?;
    let bits = n.bits();
    if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
        return Err(AuthError::InvalidJwk(format!(
            "RSA modulus is {bits} bits; {MIN_RSA_BITS}..={MAX_RSA_BITS} are accepted"
        )));
    }
    // Bound e before building a BigUint from an arbitrarily long member.
    let e = member(&jwk.e, "e")?;
    if e.len() > 8 {
        return Err(AuthError::InvalidJwk("RSA exponent too large".into()));
    }
    RsaPublicKey::new_with_max_size(n, BigUint::from_bytes_be(&e), MAX_RSA_BITS)
        .map_err(|e| AuthError::InvalidJwk(format!("bad RSA public key: {e}")))
}

pub(crate) fn rsa_private(jwk: &Jwk) -> Result<RsaPrivateKey, AuthError> {
    let public = rsa_public(jwk)?;
    let d = uint(&jwk.d, "d")?;
    let primes = match (&jwk.p, &jwk.q) {
        (Some(_), Some(_)) => vec![uint(&jwk.p, "p")?, uint(&jwk.q, "q")?],
        (None, None) => Vec::new(),
        _ => return Err(AuthError::InvalidJwk("RSA key has only one of p, q".into())),
    };
    // from_components checks p*q == n and d*e == 1 mod (p-1), (q-1), and
    // recomputes the CRT values instead of trusting dp, dq, qi.
    RsaPrivateKey::from_components(public.n().clone(), public.e().clone(), d, primes)
        .map_err(|e| AuthError::InvalidJwk(format!("bad RSA private key: {e}")))
}

/// The uncompressed SEC1 encoding of a P-384 public key (not yet checked to
/// be on the curve).
fn ec_sec1(jwk: &Jwk) -> Result<Vec<u8>, AuthError> {
    let x = member(&jwk.x, "x")?;
    let y = member(&jwk.y, "y")?;
    if x.len() != P384_BYTES || y.len() != P384_BYTES {
        return Err(AuthError::InvalidJwk(
            "P-384 coordinates must be 48 bytes".into(),
        ));
    }
    let mut sec1 = Vec::with_capacity(1 + 2 * P384_BYTES);
    sec1.push(0x04);
    sec1.extend_from_slice(&x);
    sec1.extend_from_slice(&y);
    Ok(sec1)
}

pub(crate) fn ec_public(jwk: &Jwk) -> Result<p384::ecdsa::VerifyingKey, AuthError> {
    // from_sec1_bytes rejects points not on the curve (invalid-curve attacks).
    p384::ecdsa::VerifyingKey::from_sec1_bytes(&ec_sec1(jwk)?)
        .map_err(|_| AuthError::InvalidJwk("P-384 point is not on the curve".into()))
}

pub(crate) fn ec_private(jwk: &Jwk) -> Result<p384::ecdsa::SigningKey, AuthError> {
    let public = ec_public(jwk)?;
    let d = member(&jwk.d, "d")?;
    if d.len() != P384_BYTES {
        return Err(AuthError::InvalidJwk("P-384 d must be 48 bytes".into()));
    }
    let signing = p384::ecdsa::SigningKey::from_slice(&d)
        .map_err(|_| AuthError::InvalidJwk("P-384 d is not a valid scalar".into()))?;
    if *signing.verifying_key() != public {
        return Err(AuthError::InvalidJwk("P-384 d does not match x, y".into()));
    }
    Ok(signing)
}

/// Signs `input` with the private key, as JWS `alg` (already checked to fit).
pub(crate) fn sign(jwk: &Jwk, alg: SigningAlg, input: &[u8]) -> Result<Vec<u8>, AuthError> {
    match alg {
        SigningAlg::Rs384 => {
            let key = rsa::pkcs1v15::SigningKey::<Sha384>::new(rsa_private(jwk)?);
            // The randomized signer blinds the private operation.
            let sig = key
                .try_sign_with_rng(&mut OsRng, input)
                .map_err(|e| AuthError::Internal(format!("RSA signing failed: {e}")))?;
            Ok(rsa::signature::SignatureEncoding::to_vec(&sig))
        }
        SigningAlg::Es384 => {
            let key = ec_private(jwk)?;
            let sig: p384::ecdsa::Signature = key
                .try_sign(input)
                .map_err(|e| AuthError::Internal(format!("ECDSA signing failed: {e}")))?;
            Ok(sig.to_bytes().to_vec())
        }
    }
}

/// Verifies a JWS signature. Any failure, including a signature of the
/// wrong length, is [`AuthError::BadSignature`].
///
/// The key is held to the bounds it was registered under (RSA size and
/// exponent, P-384 coordinate lengths); the signature is checked by AWS-LC,
/// which rustls already links and which rejects a point off the curve. Its
/// P-384 verification is several times faster than the portable one, and the
/// token endpoint verifies a signature per request.
pub(crate) fn verify(
    jwk: &Jwk,
    kind: KeyKind,
    input: &[u8],
    signature: &[u8],
) -> Result<(), AuthError> {
    use aws_lc_rs::signature::{
        ECDSA_P384_SHA384_FIXED, RSA_PKCS1_2048_8192_SHA384, RsaPublicKeyComponents,
        UnparsedPublicKey,
    };
    match kind {
        KeyKind::Rsa => {
            let key = rsa_public(jwk)?;
            let (n, e) = (key.n().to_bytes_be(), key.e().to_bytes_be());
            RsaPublicKeyComponents { n: &n, e: &e }
                .verify(&RSA_PKCS1_2048_8192_SHA384, input, signature)
                .map_err(|_| AuthError::BadSignature)
        }
        KeyKind::EcP384 => UnparsedPublicKey::new(&ECDSA_P384_SHA384_FIXED, ec_sec1(jwk)?)
            .verify(input, signature)
            .map_err(|_| AuthError::BadSignature),
    }
}
