//! Splitting and decoding a compact JWS (RFC 7515 §7.1), shared by client
//! assertions and access tokens. Signature checking is the caller's job.

use serde::Deserialize;
use serde::de::{DeserializeOwned, IgnoredAny};

use crate::b64;
use crate::error::AuthError;

/// The three base64url parts of a compact JWS, still encoded.
pub(crate) struct Parts<'a> {
    pub header: &'a str,
    pub payload: &'a str,
    pub signature: &'a str,
    /// `header.payload`, the bytes the signature covers.
    pub signing_input: &'a str,
}

/// The header members this crate reads. Unknown members are ignored, as
/// RFC 7515 requires, except `crit`, which demands understanding.
#[derive(Deserialize)]
pub(crate) struct Header {
    pub alg: String,
    #[serde(default)]
    pub kid: Option<String>,
    #[serde(default)]
    pub jku: Option<String>,
    #[serde(default)]
    crit: Option<IgnoredAny>,
}

/// Splits `token` into exactly three parts; refuses anything over `max_len`
/// before doing any work on it.
pub(crate) fn split(token: &str, max_len: usize) -> Result<Parts<'_>, AuthError> {
    if token.len() > max_len {
        return Err(AuthError::Malformed("token too long"));
    }
    let mut it = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (it.next(), it.next(), it.next(), it.next())
    else {
        return Err(AuthError::Malformed("not three dot-separated parts"));
    };
    let signing_input = &token[..header.len() + 1 + payload.len()];
    Ok(Parts {
        header,
        payload,
        signature,
        signing_input,
    })
}

/// Decodes the header. Duplicate members are rejected (by serde's derive),
/// so two readers cannot disagree about `alg` or `kid`.
pub(crate) fn header(encoded: &str) -> Result<Header, AuthError> {
    let header: Header = decode_json(
        encoded,
        "header is not base64url",
        "header is not a JSON object with a string alg",
    )?;
    if header.crit.is_some() {
        return Err(AuthError::Malformed(
            "crit header parameters are not supported",
        ));
    }
    Ok(header)
}

/// Decodes the payload into the caller's claims type.
pub(crate) fn payload<T: DeserializeOwned>(encoded: &str) -> Result<T, AuthError> {
    decode_json(
        encoded,
        "payload is not base64url",
        "payload is not a JSON object of the expected claims",
    )
}

fn decode_json<T: DeserializeOwned>(
    encoded: &str,
    not_base64: &'static str,
    not_json: &'static str,
) -> Result<T, AuthError> {
    let bytes = b64::decode(encoded).ok_or(AuthError::Malformed(not_base64))?;
    // serde's derived structs also accept JSON arrays (fields by position);
    // JOSE requires objects.
    if bytes.trim_ascii_start().first() != Some(&b'{') {
        return Err(AuthError::Malformed(not_json));
    }
    serde_json::from_slice(&bytes).map_err(|_| AuthError::Malformed(not_json))
}

/// Decodes the signature part.
pub(crate) fn signature(encoded: &str) -> Result<Vec<u8>, AuthError> {
    b64::decode(encoded).ok_or(AuthError::Malformed("signature is not base64url"))
}

/// Encodes a header and claims and returns `header.payload`, ready to sign.
pub(crate) fn signing_input(
    header: &impl serde::Serialize,
    claims: &impl serde::Serialize,
) -> Result<String, AuthError> {
    let h = serde_json::to_vec(header)
        .map_err(|e| AuthError::Internal(format!("encoding JWT header: {e}")))?;
    let c = serde_json::to_vec(claims)
        .map_err(|e| AuthError::Internal(format!("encoding JWT claims: {e}")))?;
    Ok(format!("{}.{}", b64::encode(&h), b64::encode(&c)))
}
