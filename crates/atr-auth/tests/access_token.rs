//! The server's HS256 access tokens: issue, verify, expiry, tampering and
//! key rotation.

use atr_auth::{AccessTokenKeys, AuthError, Interaction};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

const NOW: i64 = 1_750_000_000;

fn keys(kid: &str, secret: &[u8]) -> AccessTokenKeys {
    AccessTokenKeys::new((kid, secret), &[]).unwrap()
}

#[test]
fn issued_token_verifies_and_carries_its_claims() {
    let secret = AccessTokenKeys::generate_secret();
    let k = keys("k1", &secret).with_issuer("https://atr.example.org");
    let token = k.issue("client-1", "system/Group.read", NOW, 300, "tok-1");
    let claims = k.verify(&token, NOW + 10).unwrap();
    assert_eq!(claims.sub, "client-1");
    assert_eq!(claims.scope, "system/Group.read");
    assert_eq!(claims.iat, NOW);
    assert_eq!(claims.exp, NOW + 300);
    assert_eq!(claims.jti, "tok-1");
    assert_eq!(claims.iss.as_deref(), Some("https://atr.example.org"));
    assert!(claims.granted().permits("Group", Interaction::Read));
    assert!(!claims.granted().permits("Group", Interaction::Create));

    let header: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(token.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header, json!({"alg": "HS256", "typ": "JWT", "kid": "k1"}));
}

#[test]
fn token_expires_at_exp_with_no_leeway() {
    let k = keys("k1", &AccessTokenKeys::generate_secret());
    let token = k.issue("c", "system/*.read", NOW, 300, "t");
    k.verify(&token, NOW + 299).unwrap();
    assert_eq!(k.verify(&token, NOW + 300), Err(AuthError::Expired));
    assert_eq!(k.verify(&token, NOW + 10_000), Err(AuthError::Expired));
}

#[test]
fn tampered_payload_is_detected() {
    let k = keys("k1", &AccessTokenKeys::generate_secret());
    let token = k.issue("c", "system/Group.read", NOW, 300, "t");
    let parts: Vec<&str> = token.split('.').collect();
    let forged =
        json!({"sub": "c", "scope": "system/*.*", "iat": NOW, "exp": NOW + 300, "jti": "t"});
    let payload = URL_SAFE_NO_PAD.encode(forged.to_string());
    let tampered = format!("{}.{payload}.{}", parts[0], parts[2]);
    assert_eq!(k.verify(&tampered, NOW), Err(AuthError::Tampered));
    // Flipping one signature character also fails.
    let mut sig: Vec<char> = parts[2].chars().collect();
    sig[0] = if sig[0] == 'A' { 'B' } else { 'A' };
    let flipped = format!(
        "{}.{}.{}",
        parts[0],
        parts[1],
        sig.iter().collect::<String>()
    );
    assert_eq!(k.verify(&flipped, NOW), Err(AuthError::Tampered));
    // A truncated or empty signature fails too.
    let short = format!("{}.{}.{}", parts[0], parts[1], &parts[2][..20]);
    assert_eq!(k.verify(&short, NOW), Err(AuthError::Tampered));
    let empty = format!("{}.{}.", parts[0], parts[1]);
    assert_eq!(k.verify(&empty, NOW), Err(AuthError::Tampered));
}

#[test]
fn token_signed_with_another_secret_under_the_same_kid_is_tampered() {
    let a = keys("k1", &AccessTokenKeys::generate_secret());
    let b = keys("k1", &AccessTokenKeys::generate_secret());
    let token = b.issue("c", "system/*.read", NOW, 300, "t");
    assert_eq!(a.verify(&token, NOW), Err(AuthError::Tampered));
}

#[test]
fn token_signed_with_the_previous_key_still_verifies_after_rotation() {
    let old = AccessTokenKeys::generate_secret();
    let new = AccessTokenKeys::generate_secret();
    let before = keys("k1", &old);
    let token = before.issue("c", "system/*.read", NOW, 300, "t");
    let after = AccessTokenKeys::new(("k2", &new), &[("k1", &old)]).unwrap();
    assert_eq!(after.current_kid(), "k2");
    assert_eq!(after.verify(&token, NOW).unwrap().sub, "c");
    // New tokens use the new key, which the old key set does not know.
    let fresh = after.issue("c", "system/*.read", NOW, 300, "t2");
    after.verify(&fresh, NOW).unwrap();
    assert_eq!(before.verify(&fresh, NOW), Err(AuthError::UnknownKid));
}

#[test]
fn unknown_or_missing_kid_fails() {
    let k = keys("k1", &AccessTokenKeys::generate_secret());
    let other = keys("k9", &AccessTokenKeys::generate_secret());
    let token = other.issue("c", "system/*.read", NOW, 300, "t");
    assert_eq!(k.verify(&token, NOW), Err(AuthError::UnknownKid));

    let token = k.issue("c", "system/*.read", NOW, 300, "t");
    let parts: Vec<&str> = token.split('.').collect();
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","typ":"JWT"}"#);
    let no_kid = format!("{header}.{}.{}", parts[1], parts[2]);
    assert_eq!(k.verify(&no_kid, NOW), Err(AuthError::UnknownKid));
}

#[test]
fn only_hs256_is_accepted() {
    let k = keys("k1", &AccessTokenKeys::generate_secret());
    let token = k.issue("c", "system/*.read", NOW, 300, "t");
    let parts: Vec<&str> = token.split('.').collect();
    for alg in ["none", "HS384", "RS384"] {
        let header = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"{alg}","kid":"k1"}}"#));
        let forged = format!("{header}.{}.{}", parts[1], parts[2]);
        assert_eq!(
            k.verify(&forged, NOW),
            Err(AuthError::UnsupportedAlg(alg.into()))
        );
    }
}

#[test]
fn malformed_tokens_are_malformed() {
    let k = keys("k1", &AccessTokenKeys::generate_secret());
    for bad in ["", "abc", "a.b", "a.b.c.d", "!!.b.c", &"x".repeat(9000)] {
        assert!(
            matches!(k.verify(bad, NOW), Err(AuthError::Malformed(_))),
            "{bad:.20}: {:?}",
            k.verify(bad, NOW)
        );
    }
}

#[test]
fn short_secrets_and_empty_kids_are_refused() {
    assert!(AccessTokenKeys::new(("k1", &[0u8; 16]), &[]).is_err());
    assert!(AccessTokenKeys::new(("", &[0u8; 32]), &[]).is_err());
    assert!(AccessTokenKeys::new(("k1", &[0u8; 32]), &[("k0", &[0u8; 8])]).is_err());
}

#[test]
fn generated_secrets_are_32_random_bytes() {
    let a = AccessTokenKeys::generate_secret();
    let b = AccessTokenKeys::generate_secret();
    assert_eq!(a.len(), 32);
    assert_ne!(a, b);
}

#[test]
fn debug_output_hides_secrets() {
    let secret = [7u8; 32];
    let k = keys("k1", &secret);
    let debug = format!("{k:?}");
    assert!(debug.contains("k1"));
    assert!(!debug.contains("7, 7"), "{debug}");
}

#[test]
fn verification_is_fast_enough_for_every_request() {
    let k = keys("k1", &AccessTokenKeys::generate_secret());
    let token = k.issue(
        "client-1",
        "system/Group.read system/Patient.read",
        NOW,
        300,
        "t",
    );
    let start = std::time::Instant::now();
    for _ in 0..10_000 {
        k.verify(&token, NOW).unwrap();
    }
    // Generous bound for an unoptimized test build on a busy 2-core box;
    // optimized builds do this in a few milliseconds.
    assert!(start.elapsed().as_secs() < 5, "{:?}", start.elapsed());
}
