//! Client assertions: signing, peeking and verifying with real RS384 and
//! ES384 keys, and every rejection the server relies on.

mod common;

use atr_auth::{
    AuthError, GeneratedKeys, JwkSet, SigningAlg, peek, sign_client_assertion, sign_jwt, verify,
};
use common::*;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};

fn assertion(keys: &GeneratedKeys) -> String {
    sign_client_assertion(private(keys), CLIENT, TOKEN_URL, NOW, 300, "jti-1").unwrap()
}

fn verify_rsa(token: &str) -> Result<atr_auth::VerifiedAssertion, AuthError> {
    verify(token, public(rsa_keys()), TOKEN_URL, NOW)
}

fn with_claims(keys: &GeneratedKeys, edit: impl FnOnce(&mut Value)) -> String {
    let mut c = claims();
    edit(&mut c);
    sign_jwt(private(keys), &c).unwrap()
}

/// A token with a hand-written header and an HMAC "signature".
fn hmac_token(alg: &str, kid: &str, secret: &[u8]) -> String {
    let input = signing_input(&json!({"alg": alg, "typ": "JWT", "kid": kid}), &claims());
    let mut mac = Hmac::<sha2::Sha384>::new_from_slice(secret).unwrap();
    mac.update(input.as_bytes());
    format!("{input}.{}", b64(&mac.finalize().into_bytes()))
}

fn kid(keys: &GeneratedKeys) -> String {
    private(keys).kid.clone().unwrap()
}

#[test]
fn rs384_round_trip_keygen_sign_peek_verify() {
    let token = assertion(rsa_keys());
    let peeked = peek(&token).unwrap();
    assert_eq!(peeked.alg, SigningAlg::Rs384);
    assert_eq!(peeked.kid, Some(kid(rsa_keys())));
    assert_eq!(peeked.iss.as_deref(), Some(CLIENT));
    assert_eq!(peeked.sub.as_deref(), Some(CLIENT));
    assert_eq!(peeked.jku, None);
    let verified = verify_rsa(&token).unwrap();
    assert_eq!(verified.client_id, CLIENT);
    assert_eq!(verified.jti, "jti-1");
    assert_eq!(verified.exp, NOW + 300);
}

#[test]
fn es384_round_trip_keygen_sign_peek_verify() {
    let token = assertion(ec_keys());
    assert_eq!(peek(&token).unwrap().alg, SigningAlg::Es384);
    let verified = verify(&token, public(ec_keys()), TOKEN_URL, NOW).unwrap();
    assert_eq!(verified.client_id, CLIENT);
}

#[test]
fn header_has_alg_typ_and_kid_and_claims_follow_smart() {
    let token = assertion(ec_keys());
    let parts: Vec<&str> = token.split('.').collect();
    let header: Value = serde_json::from_slice(&unb64(parts[0])).unwrap();
    assert_eq!(
        header,
        json!({"alg": "ES384", "typ": "JWT", "kid": kid(ec_keys())})
    );
    let claims: Value = serde_json::from_slice(&unb64(parts[1])).unwrap();
    assert_eq!(
        claims,
        json!({"iss": CLIENT, "sub": CLIENT, "aud": TOKEN_URL, "exp": NOW + 300, "iat": NOW, "jti": "jti-1"})
    );
}

#[test]
fn verify_finds_the_key_among_several_by_kid() {
    let mut keys = public(rsa_keys_2()).clone();
    keys.keys.extend(public(ec_keys()).keys.clone());
    keys.keys.extend(public(rsa_keys()).keys.clone());
    verify(&assertion(rsa_keys()), &keys, TOKEN_URL, NOW).unwrap();
    verify(&assertion(ec_keys()), &keys, TOKEN_URL, NOW).unwrap();
}

#[test]
fn without_kid_only_a_client_with_one_key_is_tried() {
    let mut jwk = private(ec_keys()).clone();
    jwk.kid = None;
    let token = sign_client_assertion(&jwk, CLIENT, TOKEN_URL, NOW, 300, "j").unwrap();
    // The signer falls back to the thumbprint; strip kid from the header to
    // exercise the kid-less path.
    let parts: Vec<&str> = token.split('.').collect();
    let header = b64(json!({"alg": "ES384", "typ": "JWT"}).to_string().as_bytes());
    let input = format!("{header}.{}", parts[1]);
    let sig = {
        use p384::ecdsa::signature::Signer;
        let d = unb64(private(ec_keys()).d.as_deref().unwrap());
        let key = p384::ecdsa::SigningKey::from_slice(&d).unwrap();
        let sig: p384::ecdsa::Signature = key.sign(input.as_bytes());
        b64(&sig.to_bytes())
    };
    let kidless = format!("{input}.{sig}");
    verify(&kidless, public(ec_keys()), TOKEN_URL, NOW).unwrap();
    // Several keys: SMART requires kid, even when one of them would verify.
    let mut keys = public(rsa_keys()).clone();
    keys.keys.push(public(ec_keys_other()).keys[0].clone());
    keys.keys.push(public(ec_keys()).keys[0].clone());
    assert_eq!(
        verify(&kidless, &keys, TOKEN_URL, NOW),
        Err(AuthError::KidRequired)
    );
    // No key of the right type at all.
    assert_eq!(
        verify(&kidless, public(rsa_keys()), TOKEN_URL, NOW),
        Err(AuthError::UnknownKid)
    );
    // Right type, wrong key.
    assert_eq!(
        verify(&kidless, public(ec_keys_other()), TOKEN_URL, NOW),
        Err(AuthError::BadSignature)
    );
}

fn ec_keys_other() -> &'static GeneratedKeys {
    static KEYS: std::sync::OnceLock<GeneratedKeys> = std::sync::OnceLock::new();
    KEYS.get_or_init(|| atr_auth::generate(SigningAlg::Es384).unwrap())
}

#[test]
fn wrong_audience_is_rejected() {
    let token = assertion(rsa_keys());
    assert_eq!(
        verify(
            &token,
            public(rsa_keys()),
            "https://other.example.org/token",
            NOW
        ),
        Err(AuthError::WrongAudience)
    );
}

#[test]
fn audience_array_containing_the_token_url_is_accepted() {
    let token = with_claims(rsa_keys(), |c| c["aud"] = json!(["https://x", TOKEN_URL]));
    verify_rsa(&token).unwrap();
    let token = with_claims(rsa_keys(), |c| c["aud"] = json!(["https://x"]));
    assert_eq!(verify_rsa(&token), Err(AuthError::WrongAudience));
}

#[test]
fn expired_assertion_is_rejected_after_60_seconds_leeway() {
    let token = assertion(ec_keys());
    let keys = public(ec_keys());
    // exp = NOW + 300: still fine 59 s after exp, expired at 60 s.
    verify(&token, keys, TOKEN_URL, NOW + 300 + 59).unwrap();
    assert_eq!(
        verify(&token, keys, TOKEN_URL, NOW + 300 + 60),
        Err(AuthError::Expired)
    );
    assert_eq!(
        verify(&token, keys, TOKEN_URL, NOW + 3600),
        Err(AuthError::Expired)
    );
}

#[test]
fn exp_more_than_five_minutes_ahead_is_rejected_but_301_seconds_is_accepted() {
    let sign = |lifetime| {
        sign_client_assertion(private(ec_keys()), CLIENT, TOKEN_URL, NOW, lifetime, "j").unwrap()
    };
    let keys = public(ec_keys());
    verify(&sign(301), keys, TOKEN_URL, NOW).unwrap();
    verify(&sign(360), keys, TOKEN_URL, NOW).unwrap();
    assert_eq!(
        verify(&sign(361), keys, TOKEN_URL, NOW),
        Err(AuthError::ExpiresTooFarAhead)
    );
    assert_eq!(
        verify(&sign(86400), keys, TOKEN_URL, NOW),
        Err(AuthError::ExpiresTooFarAhead)
    );
}

#[test]
fn nbf_or_iat_in_the_future_beyond_the_leeway_is_rejected() {
    for name in ["nbf", "iat"] {
        let at = |t: i64| with_claims(rsa_keys(), |c| c[name] = json!(t));
        verify_rsa(&at(NOW + 60)).unwrap();
        verify_rsa(&at(NOW - 3600)).unwrap();
        assert_eq!(
            verify_rsa(&at(NOW + 61)),
            Err(AuthError::NotYetValid(name)),
            "{name}"
        );
        let text = with_claims(rsa_keys(), |c| c[name] = json!("soon"));
        assert_eq!(verify_rsa(&text), Err(AuthError::InvalidClaim(name)));
    }
}

#[test]
fn missing_exp_is_a_missing_claim() {
    let token = with_claims(rsa_keys(), |c| {
        c.as_object_mut().unwrap().remove("exp");
    });
    assert_eq!(verify_rsa(&token), Err(AuthError::MissingClaim("exp")));
}

#[test]
fn unknown_kid_is_rejected() {
    assert_eq!(
        verify(&assertion(rsa_keys()), public(rsa_keys_2()), TOKEN_URL, NOW),
        Err(AuthError::UnknownKid)
    );
}

#[test]
fn right_kid_on_the_wrong_key_fails_the_signature() {
    // The registered set claims kid K but holds another RSA key.
    let mut impostor = public(rsa_keys_2()).clone();
    impostor.keys[0].kid = Some(kid(rsa_keys()));
    assert_eq!(
        verify(&assertion(rsa_keys()), &impostor, TOKEN_URL, NOW),
        Err(AuthError::BadSignature)
    );
}

#[test]
fn kid_naming_a_key_of_the_other_type_is_a_key_mismatch() {
    // An ES384 assertion whose kid names an RSA key.
    let mut keys = public(rsa_keys()).clone();
    keys.keys[0].kid = Some(kid(ec_keys()));
    assert_eq!(
        verify(&assertion(ec_keys()), &keys, TOKEN_URL, NOW),
        Err(AuthError::KeyMismatch)
    );
}

#[test]
fn key_alg_member_must_equal_the_header_alg() {
    let mut keys = public(rsa_keys()).clone();
    keys.keys[0].alg = Some("RS256".into());
    assert_eq!(
        verify(&assertion(rsa_keys()), &keys, TOKEN_URL, NOW),
        Err(AuthError::KeyMismatch)
    );
    // An encryption key cannot verify either.
    let mut keys = public(rsa_keys()).clone();
    keys.keys[0].use_ = Some("enc".into());
    assert_eq!(
        verify(&assertion(rsa_keys()), &keys, TOKEN_URL, NOW),
        Err(AuthError::KeyMismatch)
    );
}

#[test]
fn alg_none_is_rejected_as_unsupported() {
    let input = signing_input(&json!({"alg": "none", "typ": "JWT"}), &claims());
    let token = format!("{input}.");
    assert_eq!(peek(&token), Err(AuthError::UnsupportedAlg("none".into())));
    assert_eq!(
        verify_rsa(&token),
        Err(AuthError::UnsupportedAlg("none".into()))
    );
}

#[test]
fn hs384_signed_with_the_rsa_public_key_bytes_is_rejected() {
    // The classic confusion attack: use the server-known public key as an
    // HMAC secret. Try both the JWK text and the raw modulus as secret.
    let jwk = &public(rsa_keys()).keys[0];
    for secret in [
        serde_json::to_vec(jwk).unwrap(),
        unb64(jwk.n.as_deref().unwrap()),
    ] {
        let token = hmac_token("HS384", &kid(rsa_keys()), &secret);
        assert_eq!(
            verify_rsa(&token),
            Err(AuthError::UnsupportedAlg("HS384".into()))
        );
        assert_eq!(peek(&token), Err(AuthError::UnsupportedAlg("HS384".into())));
    }
    for alg in ["HS256", "HS512"] {
        let token = hmac_token(alg, &kid(rsa_keys()), b"secret");
        assert_eq!(
            verify_rsa(&token),
            Err(AuthError::UnsupportedAlg(alg.into()))
        );
    }
}

#[test]
fn rs256_signed_by_the_registered_key_is_rejected() {
    use rsa::signature::{SignatureEncoding, Signer};
    let input = signing_input(
        &json!({"alg": "RS256", "typ": "JWT", "kid": kid(rsa_keys())}),
        &claims(),
    );
    let key = rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(rsa_private_key(private(rsa_keys())));
    let token = format!("{input}.{}", b64(&key.sign(input.as_bytes()).to_vec()));
    assert_eq!(
        verify_rsa(&token),
        Err(AuthError::UnsupportedAlg("RS256".into()))
    );
}

#[test]
fn other_algorithms_are_rejected_before_any_key_work() {
    for alg in ["ES256", "PS384", "PS256", "RS512", "EdDSA", "rs384", ""] {
        let input = signing_input(&json!({"alg": alg, "kid": kid(rsa_keys())}), &claims());
        let token = format!("{input}.AAAA");
        assert_eq!(
            verify_rsa(&token),
            Err(AuthError::UnsupportedAlg(alg.into()))
        );
    }
}

#[test]
fn rs384_header_with_an_ecdsa_signature_fails() {
    // Header claims RS384 with an EC key's kid: the key does not fit.
    let token = assertion(ec_keys());
    let parts: Vec<&str> = token.split('.').collect();
    let header = b64(json!({"alg": "RS384", "typ": "JWT", "kid": kid(ec_keys())})
        .to_string()
        .as_bytes());
    let forged = format!("{header}.{}.{}", parts[1], parts[2]);
    assert_eq!(
        verify(&forged, public(ec_keys()), TOKEN_URL, NOW),
        Err(AuthError::KeyMismatch)
    );
}

#[test]
fn iss_different_from_sub_is_rejected() {
    let token = with_claims(ec_keys(), |c| c["sub"] = json!("someone-else"));
    assert_eq!(
        verify(&token, public(ec_keys()), TOKEN_URL, NOW),
        Err(AuthError::IssNotSub)
    );
}

#[test]
fn missing_jti_is_rejected() {
    let token = with_claims(ec_keys(), |c| {
        c.as_object_mut().unwrap().remove("jti");
    });
    assert_eq!(
        verify(&token, public(ec_keys()), TOKEN_URL, NOW),
        Err(AuthError::MissingClaim("jti"))
    );
    let token = with_claims(ec_keys(), |c| c["jti"] = json!(""));
    assert_eq!(
        verify(&token, public(ec_keys()), TOKEN_URL, NOW),
        Err(AuthError::MissingClaim("jti"))
    );
}

#[test]
fn jti_longer_than_256_characters_is_rejected() {
    let token = with_claims(ec_keys(), |c| c["jti"] = json!("j".repeat(257)));
    assert_eq!(
        verify(&token, public(ec_keys()), TOKEN_URL, NOW),
        Err(AuthError::InvalidClaim("jti"))
    );
    let token = with_claims(ec_keys(), |c| c["jti"] = json!("j".repeat(256)));
    verify(&token, public(ec_keys()), TOKEN_URL, NOW).unwrap();
}

#[test]
fn claims_of_the_wrong_type_are_invalid_claims() {
    let token = with_claims(ec_keys(), |c| c["exp"] = json!("soon"));
    assert_eq!(
        verify(&token, public(ec_keys()), TOKEN_URL, NOW),
        Err(AuthError::InvalidClaim("exp"))
    );
    let token = with_claims(ec_keys(), |c| c["aud"] = json!(42));
    assert_eq!(
        verify(&token, public(ec_keys()), TOKEN_URL, NOW),
        Err(AuthError::InvalidClaim("aud"))
    );
}

#[test]
fn tampered_payload_fails_the_signature() {
    for keys in [rsa_keys(), ec_keys()] {
        let token = assertion(keys);
        let parts: Vec<&str> = token.split('.').collect();
        let mut c = claims();
        c["iss"] = json!("admin-client");
        c["sub"] = json!("admin-client");
        let payload = b64(c.to_string().as_bytes());
        let tampered = format!("{}.{payload}.{}", parts[0], parts[2]);
        assert_eq!(
            verify(&tampered, public(keys), TOKEN_URL, NOW),
            Err(AuthError::BadSignature)
        );
    }
}

#[test]
fn truncated_or_garbled_signature_fails() {
    let token = assertion(ec_keys());
    let cut = &token[..token.len() - 4];
    assert_eq!(
        verify(cut, public(ec_keys()), TOKEN_URL, NOW),
        Err(AuthError::BadSignature)
    );
}

#[test]
fn malformed_tokens_are_rejected_as_malformed() {
    let good = assertion(ec_keys());
    let parts: Vec<&str> = good.split('.').collect();
    let cases = [
        String::new(),
        "abc".to_owned(),
        "a.b".to_owned(),
        format!("{good}.extra"),
        format!("!!!.{}.{}", parts[1], parts[2]),
        format!("{}.{}.%%%", parts[0], parts[1]),
        format!("{}.{}.{}", b64(b"not json"), parts[1], parts[2]),
        format!("{}.{}.{}", parts[0], b64(b"[1,2]"), parts[2]),
        format!("{}.{}.{}", b64(br#"{"typ":"JWT"}"#), parts[1], parts[2]),
        format!(
            "{}.{}.{}",
            b64(br#"{"alg":"ES384","alg":"none"}"#),
            parts[1],
            parts[2]
        ),
        format!(
            "{}.{}.{}",
            b64(br#"{"alg":"ES384","crit":["exp"]}"#),
            parts[1],
            parts[2]
        ),
        // Padded base64 is not base64url as JOSE uses it.
        format!("{}=.{}.{}", parts[0], parts[1], parts[2]),
        "x".repeat(20_000),
    ];
    for case in cases {
        assert!(
            matches!(peek(&case), Err(AuthError::Malformed(_))),
            "peek accepted {case:.60}: {:?}",
            peek(&case)
        );
        assert!(
            matches!(
                verify(&case, public(ec_keys()), TOKEN_URL, NOW),
                Err(AuthError::Malformed(_))
            ),
            "verify accepted {case:.60}"
        );
    }
}

#[test]
fn peek_reports_jku_and_unverified_identity() {
    let input = signing_input(
        &json!({"alg": "RS384", "kid": "k1", "jku": "https://client.example/jwks.json"}),
        &json!({"iss": "a", "sub": "b"}),
    );
    let token = format!("{input}.AAAA");
    let peeked = peek(&token).unwrap();
    assert_eq!(
        peeked.jku.as_deref(),
        Some("https://client.example/jwks.json")
    );
    assert_eq!(peeked.iss.as_deref(), Some("a"));
    assert_eq!(peeked.sub.as_deref(), Some("b"));
    // Unverified: verifying it fails.
    assert!(verify_rsa(&token).is_err());
}

#[test]
fn signing_needs_a_private_key() {
    let public_only = &public(rsa_keys()).keys[0];
    assert!(sign_client_assertion(public_only, CLIENT, TOKEN_URL, NOW, 300, "j").is_err());
}

#[test]
fn private_set_with_sign_only_key_ops_cannot_verify_but_its_public_members_can() {
    verify(&assertion(rsa_keys()), &rsa_keys().private, TOKEN_URL, NOW).unwrap_err();
    // key_ops ["sign"] on the private set forbids verifying with it.
    let mut set: JwkSet = rsa_keys().private.clone();
    set.keys[0].key_ops = None;
    verify(&assertion(rsa_keys()), &set, TOKEN_URL, NOW).unwrap();
}

#[test]
fn oauth_codes_follow_the_documented_mapping() {
    assert_eq!(
        AuthError::UnsupportedAlg("none".into()).oauth_code(),
        "invalid_client"
    );
    assert_eq!(AuthError::UnknownKid.oauth_code(), "invalid_client");
    assert_eq!(AuthError::KeyMismatch.oauth_code(), "invalid_client");
    assert_eq!(AuthError::Malformed("x").oauth_code(), "invalid_client");
    assert_eq!(AuthError::ExpiresTooFarAhead.oauth_code(), "invalid_grant");
    assert_eq!(AuthError::MissingClaim("jti").oauth_code(), "invalid_grant");
}
