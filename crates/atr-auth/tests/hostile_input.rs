//! Property tests: client assertions, access tokens and JWK Sets as an attacker would send them
//! (arbitrary text, and real tokens and key sets with parts changed) are refused without a panic,
//! and a changed token never verifies.

use std::sync::OnceLock;

use atr_auth::{AccessTokenKeys, JwkSet, SigningAlg, assertion};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use proptest::prelude::*;
use proptest::sample::{Index, select};

const AUD: &str = "http://127.0.0.1:8080/auth/token";
const NOW: i64 = 1_800_000_000;

struct Fixture {
    public: JwkSet,
    public_json: String,
    assertion: String,
    tokens: AccessTokenKeys,
    access_token: String,
}

/// One ES384 key pair (RSA generation is too slow to repeat) with a valid assertion and a valid
/// access token made with it.
fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let keys = atr_auth::generate(SigningAlg::Es384).expect("keygen");
        let assertion = atr_auth::sign_client_assertion(
            &keys.private.keys[0],
            "client-1",
            AUD,
            NOW,
            300,
            "jti-1",
        )
        .expect("sign");
        let tokens = AccessTokenKeys::new(("k1", &[7u8; 32]), &[]).expect("keys");
        let access_token = tokens.issue("client-1", "system/*.read", NOW, 300, "jti-2");
        Fixture {
            public_json: keys.public.to_json(),
            public: keys.public,
            assertion,
            tokens,
            access_token,
        }
    })
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

const HEADER_ALGS: &[&str] = &[
    "RS384", "ES384", "none", "None", "HS256", "HS384", "RS256", "ES256", "PS384", "", "es384",
];

/// A JOSE header: an algorithm, maybe a kid and a jku, maybe junk.
fn header_json() -> impl Strategy<Value = String> {
    (
        select(HEADER_ALGS),
        prop::option::of(prop_oneof!["[a-zA-Z0-9_-]{0,50}", any::<String>()]),
        prop::option::of("(https?://[a-z.]{1,20}/jwks.json|file:///etc/passwd)"),
        any::<bool>(),
    )
        .prop_map(|(alg, kid, jku, crit)| {
            let mut h = serde_json::json!({"alg": alg, "typ": "JWT"});
            if let Some(k) = kid {
                h["kid"] = k.into();
            }
            if let Some(j) = jku {
                h["jku"] = j.into();
            }
            if crit {
                h["crit"] = serde_json::json!(["exp"]);
            }
            h.to_string()
        })
}

/// Claims an assertion might carry, including absurd times and wrong types.
fn claims_json() -> impl Strategy<Value = String> {
    (
        prop_oneof![Just("client-1".to_string()), any::<String>()],
        prop_oneof![
            Just(serde_json::json!(AUD)),
            Just(serde_json::json!([AUD, "x"])),
            Just(serde_json::json!(1))
        ],
        prop_oneof![
            any::<i64>().prop_map(serde_json::Value::from),
            Just(serde_json::json!("soon")),
            Just(serde_json::json!(1e300))
        ],
        prop::option::of("[a-z0-9-]{0,40}"),
    )
        .prop_map(|(iss, aud, exp, jti)| {
            let mut c = serde_json::json!({"iss": iss, "sub": iss, "aud": aud, "exp": exp});
            if let Some(j) = jti {
                c["jti"] = j.into();
            }
            c.to_string()
        })
}

/// Changes one character of `token` at `at` to `to`.
fn change_char(token: &str, at: Index, to: char) -> String {
    let mut chars: Vec<char> = token.chars().collect();
    let i = at.index(chars.len());
    chars[i] = to;
    chars.into_iter().collect()
}

proptest! {
    #[test]
    fn arbitrary_text_is_refused_as_an_assertion_and_as_an_access_token(text in any::<String>()) {
        let f = fixture();
        let _ = assertion::peek(&text);
        prop_assert!(assertion::verify(&text, &f.public, AUD, NOW).is_err());
        prop_assert!(f.tokens.verify(&text, NOW).is_err());
    }

    #[test]
    fn three_dotted_parts_of_anything_never_verify(
        header in header_json(),
        claims in claims_json(),
        signature in prop::collection::vec(any::<u8>(), 0..120),
        raw_header in any::<bool>(),
    ) {
        let f = fixture();
        let h = if raw_header { header.clone() } else { b64(header.as_bytes()) };
        let token = format!("{h}.{}.{}", b64(claims.as_bytes()), b64(&signature));
        let _ = assertion::peek(&token);
        prop_assert!(assertion::verify(&token, &f.public, AUD, NOW).is_err());
        prop_assert!(f.tokens.verify(&token, NOW).is_err());
    }

    #[test]
    fn a_changed_assertion_never_verifies(at in any::<Index>(), to in "[A-Za-z0-9_.=+/-]") {
        let f = fixture();
        prop_assert!(assertion::verify(&f.assertion, &f.public, AUD, NOW).is_ok());
        let to = to.chars().next().unwrap_or('A');
        let changed = change_char(&f.assertion, at, to);
        let result = assertion::verify(&changed, &f.public, AUD, NOW);
        // Base64url's last character can carry unused bits: the same bytes are the same token.
        let same_bytes = changed.split('.').map(|p| URL_SAFE_NO_PAD.decode(p).ok()).collect::<Vec<_>>()
            == f.assertion.split('.').map(|p| URL_SAFE_NO_PAD.decode(p).ok()).collect::<Vec<_>>();
        prop_assert!(changed == f.assertion || same_bytes || result.is_err());
    }

    #[test]
    fn an_access_token_with_other_claims_never_verifies(claims in claims_json()) {
        let f = fixture();
        let parts: Vec<&str> = f.access_token.split('.').collect();
        let forged = format!("{}.{}.{}", parts[0], b64(claims.as_bytes()), parts[2]);
        prop_assert!(f.tokens.verify(&forged, NOW).is_err());
        let unsigned = format!("{}.{}.", b64(br#"{"alg":"none","kid":"k1"}"#), b64(claims.as_bytes()));
        prop_assert!(f.tokens.verify(&unsigned, NOW).is_err());
    }

    #[test]
    fn arbitrary_text_is_refused_as_a_jwk_set(text in any::<String>()) {
        prop_assert!(JwkSet::parse(&text).is_err());
    }

    #[test]
    fn jwk_sets_of_odd_keys_parse_or_are_refused_without_panic(
        keys in prop::collection::vec(
            (
                select(&["EC", "RSA", "oct", "OKP", ""][..]),
                select(&["P-384", "P-256", "P-521", "Ed25519", ""][..]),
                prop::collection::vec(any::<u8>(), 0..80),
                prop::collection::vec(any::<u8>(), 0..80),
                prop::option::of(select(&["RS384", "ES384", "none", "HS256"][..])),
                prop::option::of(select(&["sig", "enc", ""][..])),
                any::<bool>(),
            ),
            0..4,
        ),
    ) {
        let keys: Vec<serde_json::Value> = keys
            .into_iter()
            .map(|(kty, crv, a, b, alg, use_, private)| {
                let mut k = serde_json::json!({
                    "kty": kty, "crv": crv, "x": b64(&a), "y": b64(&b), "n": b64(&a), "e": b64(&b),
                    "kid": "k",
                });
                if let Some(alg) = alg { k["alg"] = alg.into(); }
                if let Some(u) = use_ { k["use"] = u.into(); }
                if private { k["d"] = b64(&a).into(); }
                k
            })
            .collect();
        let text = serde_json::json!({"keys": keys}).to_string();
        if let Ok(set) = JwkSet::parse(&text) {
            // Whatever was accepted can verify nothing it did not sign.
            prop_assert!(assertion::verify(&fixture().assertion, &set, AUD, NOW).is_err());
        }
    }

    #[test]
    fn a_changed_jwk_set_parses_or_is_refused_without_panic(
        at in any::<Index>(),
        to in any::<char>(),
    ) {
        let f = fixture();
        let changed = change_char(&f.public_json, at, to);
        if let Ok(set) = JwkSet::parse(&changed) {
            let _ = assertion::verify(&f.assertion, &set, AUD, NOW);
        }
    }
}
