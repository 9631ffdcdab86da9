//! base64url without padding, the only encoding JOSE uses.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

pub(crate) fn encode(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// `None` on anything that is not canonical unpadded base64url, so that two
/// spellings of the same bytes cannot both verify.
pub(crate) fn decode(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text).ok()
}

/// Decodes into a caller buffer, for the hot path where a fixed-size value
/// (an HMAC tag) is expected. Returns the number of bytes written.
pub(crate) fn decode_into(text: &str, out: &mut [u8]) -> Option<usize> {
    URL_SAFE_NO_PAD.decode_slice(text, out).ok()
}
