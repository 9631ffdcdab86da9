//! Key generation: shapes of the generated JWK Sets.

mod common;

use atr_auth::SigningAlg;
use common::*;

#[test]
fn rs384_generates_a_2048_bit_rsa_signing_pair() {
    let keys = rsa_keys();
    let private = private(keys);
    assert_eq!(private.kty, "RSA");
    assert_eq!(unb64(private.n.as_deref().unwrap()).len() * 8, 2048);
    assert_eq!(private.alg.as_deref(), Some("RS384"));
    assert_eq!(private.use_.as_deref(), Some("sig"));
    assert_eq!(private.key_ops, Some(vec!["sign".to_owned()]));
    for member in [
        &private.d,
        &private.p,
        &private.q,
        &private.dp,
        &private.dq,
        &private.qi,
    ] {
        assert!(member.is_some());
    }
    let public = &keys.public.keys[0];
    assert_eq!(public.key_ops, Some(vec!["verify".to_owned()]));
    assert_eq!(public.kid, private.kid);
    assert!(!keys.public.has_private_parts());
}

#[test]
fn es384_generates_a_p384_signing_pair() {
    let keys = ec_keys();
    let private = private(keys);
    assert_eq!(private.kty, "EC");
    assert_eq!(private.crv.as_deref(), Some("P-384"));
    assert_eq!(private.alg.as_deref(), Some("ES384"));
    assert_eq!(unb64(private.x.as_deref().unwrap()).len(), 48);
    assert_eq!(unb64(private.d.as_deref().unwrap()).len(), 48);
    assert_eq!(keys.public.keys[0].d, None);
    assert_eq!(private.kid.clone().unwrap(), private.thumbprint().unwrap());
}

#[test]
fn generated_keys_differ_each_time() {
    let a = atr_auth::generate(SigningAlg::Es384).unwrap();
    let b = atr_auth::generate(SigningAlg::Es384).unwrap();
    assert_ne!(a.public.keys[0].kid, b.public.keys[0].kid);
}

#[test]
fn signing_alg_displays_and_parses_jose_names() {
    assert_eq!(SigningAlg::Rs384.to_string(), "RS384");
    assert_eq!(SigningAlg::Es384.to_string(), "ES384");
    assert_eq!("ES384".parse::<SigningAlg>().unwrap(), SigningAlg::Es384);
    assert!("PS384".parse::<SigningAlg>().is_err());
}

#[test]
fn generated_rsa_crt_members_are_consistent() {
    use rsa::BigUint;
    let jwk = private(rsa_keys());
    let int = |m: &Option<String>| BigUint::from_bytes_be(&unb64(m.as_deref().unwrap()));
    let (n, d, p, q) = (int(&jwk.n), int(&jwk.d), int(&jwk.p), int(&jwk.q));
    let one = BigUint::from(1u32);
    assert_eq!(&p * &q, n);
    assert_eq!(int(&jwk.dp), &d % (&p - &one));
    assert_eq!(int(&jwk.dq), &d % (&q - &one));
    assert_eq!((int(&jwk.qi) * &q) % &p, one);
}
