//! JWK / JWK Set parsing, validation bounds, public halves and thumbprints.

mod common;

use atr_auth::jwk::{MAX_JWKS_BYTES, MAX_KEYS};
use atr_auth::{AuthError, Jwk, JwkSet, KeyKind};
use common::*;
use serde_json::json;

/// RFC 7638 §3.1 example key.
const RFC7638_N: &str = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";

fn invalid_jwk_message(json: &str) -> String {
    match JwkSet::parse(json) {
        Err(AuthError::InvalidJwk(msg)) => msg,
        other => panic!("expected InvalidJwk, got {other:?}"),
    }
}

#[test]
fn thumbprint_matches_rfc7638_example() {
    let set = JwkSet::parse(
        &json!({"keys": [{"kty": "RSA", "n": RFC7638_N, "e": "AQAB", "alg": "RS256", "kid": "2011-04-29"}]})
            .to_string(),
    )
    .unwrap();
    assert_eq!(
        set.keys[0].thumbprint().unwrap(),
        "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
    );
}

#[test]
fn generated_sets_parse_and_round_trip_through_json() {
    for keys in [rsa_keys(), ec_keys()] {
        let private = JwkSet::parse(&keys.private.to_json()).unwrap();
        assert_eq!(&private, &keys.private);
        assert!(private.has_private_parts());
        let public = JwkSet::parse(&keys.public.to_json()).unwrap();
        assert_eq!(&public, &keys.public);
        assert!(!public.has_private_parts());
    }
}

#[test]
fn public_strips_private_members_and_keeps_metadata() {
    let jwk = private(rsa_keys());
    let public = jwk.public();
    assert!(jwk.has_private_parts());
    assert!(!public.has_private_parts());
    assert_eq!(public.kid, jwk.kid);
    assert_eq!(public.alg.as_deref(), Some("RS384"));
    assert_eq!(public.use_.as_deref(), Some("sig"));
    assert_eq!(public.key_ops, Some(vec!["verify".to_owned()]));
    let text = serde_json::to_string(&public).unwrap();
    for member in ["\"d\"", "\"p\"", "\"q\"", "\"dp\"", "\"dq\"", "\"qi\""] {
        assert!(!text.contains(member), "{member} leaked: {text}");
    }
}

#[test]
fn thumbprint_is_the_same_for_private_and_public_halves() {
    for keys in [rsa_keys(), ec_keys()] {
        let private = private(keys);
        assert_eq!(
            private.thumbprint().unwrap(),
            private.public().thumbprint().unwrap()
        );
        assert_eq!(private.kid.clone().unwrap(), private.thumbprint().unwrap());
    }
}

#[test]
fn debug_output_never_shows_private_members() {
    let jwk = private(ec_keys());
    let debug = format!("{jwk:?}");
    assert!(!debug.contains(jwk.d.as_deref().unwrap()), "{debug}");
    assert!(debug.contains("private: true"));
}

#[test]
fn unknown_key_type_is_rejected_with_a_clear_error() {
    let msg = invalid_jwk_message(r#"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#);
    assert!(
        msg.contains("unsupported key type") && msg.contains("oct"),
        "{msg}"
    );
}

#[test]
fn unsupported_curve_is_rejected_with_a_clear_error() {
    let msg = invalid_jwk_message(r#"{"keys":[{"kty":"EC","crv":"P-256","x":"AAAA","y":"AAAA"}]}"#);
    assert!(msg.contains("P-256") && msg.contains("P-384"), "{msg}");
}

#[test]
fn ec_point_off_the_curve_is_rejected() {
    let mut jwk: Jwk = ec_keys().public.keys[0].clone();
    let mut y = unb64(jwk.y.as_deref().unwrap());
    y[47] ^= 1;
    jwk.y = Some(b64(&y));
    let set = JwkSet { keys: vec![jwk] };
    let msg = invalid_jwk_message(&set.to_json());
    assert!(msg.contains("not on the curve"), "{msg}");
}

#[test]
fn ec_private_scalar_must_match_public_point() {
    let mut jwk = private(ec_keys()).clone();
    jwk.d = private(&atr_auth::generate(atr_auth::SigningAlg::Es384).unwrap())
        .d
        .clone();
    let msg = invalid_jwk_message(&JwkSet { keys: vec![jwk] }.to_json());
    assert!(msg.contains("does not match"), "{msg}");
}

#[test]
fn rsa_private_primes_must_multiply_to_the_modulus() {
    let mut jwk = private(rsa_keys()).clone();
    jwk.p = private(rsa_keys_2()).p.clone();
    let msg = invalid_jwk_message(&JwkSet { keys: vec![jwk] }.to_json());
    assert!(msg.contains("bad RSA private key"), "{msg}");
}

#[test]
fn rsa_modulus_below_2048_bits_is_rejected() {
    // RFC 7638's modulus is 2048 bits; drop its first byte for 2040 bits.
    let short = b64(&unb64(RFC7638_N)[1..]);
    let msg =
        invalid_jwk_message(&json!({"keys":[{"kty":"RSA","n":short,"e":"AQAB"}]}).to_string());
    assert!(msg.contains("2048..=8192"), "{msg}");
}

#[test]
fn rsa_modulus_above_8192_bits_is_rejected() {
    let mut n = vec![0xffu8; 1025];
    n[1024] = 0xfd; // odd
    let msg =
        invalid_jwk_message(&json!({"keys":[{"kty":"RSA","n":b64(&n),"e":"AQAB"}]}).to_string());
    assert!(msg.contains("8200 bits"), "{msg}");
}

#[test]
fn member_that_is_not_base64url_is_rejected() {
    let msg = invalid_jwk_message(
        &json!({"keys":[{"kty":"RSA","n":"not base64!","e":"AQAB"}]}).to_string(),
    );
    assert!(msg.contains("member n"), "{msg}");
}

#[test]
fn jwks_text_over_64_kib_is_refused() {
    let mut text = rsa_keys().public.to_json();
    text.push_str(&" ".repeat(MAX_JWKS_BYTES));
    let msg = invalid_jwk_message(&text);
    assert!(msg.contains("larger than"), "{msg}");
}

#[test]
fn more_than_20_keys_are_refused() {
    let key = ec_keys().public.keys[0].clone();
    let set = JwkSet {
        keys: vec![key; MAX_KEYS + 1],
    };
    let msg = invalid_jwk_message(&set.to_json());
    assert!(msg.contains("at most 20"), "{msg}");
    let ok = JwkSet {
        keys: vec![ec_keys().public.keys[0].clone(); MAX_KEYS],
    };
    JwkSet::parse(&ok.to_json()).unwrap();
}

#[test]
fn json_errors_do_not_quote_the_input() {
    let msg = invalid_jwk_message(r#"{"keys":[{"kty":"RSA","d":12345678}]}"#);
    assert!(!msg.contains("12345678"), "{msg}");
}

#[test]
fn unknown_members_are_ignored_and_kinds_reported() {
    let mut value: serde_json::Value = serde_json::from_str(&ec_keys().public.to_json()).unwrap();
    value["keys"][0]["x5t"] = json!("whatever");
    value["extra"] = json!(true);
    let set = JwkSet::parse(&value.to_string()).unwrap();
    assert_eq!(set.keys[0].kind().unwrap(), KeyKind::EcP384);
    assert_eq!(rsa_keys().public.keys[0].kind().unwrap(), KeyKind::Rsa);
}

#[test]
fn empty_or_overlong_kid_is_rejected() {
    let mut jwk = ec_keys().public.keys[0].clone();
    jwk.kid = Some(String::new());
    invalid_jwk_message(
        &JwkSet {
            keys: vec![jwk.clone()],
        }
        .to_json(),
    );
    jwk.kid = Some("k".repeat(257));
    invalid_jwk_message(&JwkSet { keys: vec![jwk] }.to_json());
}
