//! Identifier values: NPIs with their Luhn check digit, TINs, NAIC codes, member and subscriber
//! ids, Medicare Beneficiary Identifiers.
//!
//! Values that must be unique (NPIs, TINs, member ids) come from an affine bijection
//! `x -> (a * x + b) mod m` of the entity's index, with `a` coprime to `m`: they look random and
//! never collide, without a set of the values already used.

use crate::rng::Rng;

/// `(a * x + b) mod m`; a bijection of `0..m` when `gcd(a, m) == 1`.
fn affine(x: u64, a: u64, b: u64, m: u64) -> u64 {
    ((u128::from(x % m) * u128::from(a) + u128::from(b % m)) % u128::from(m)) as u64
}

/// Offset derived from the seed, so that another seed gives other values.
fn salt(seed: u64, tag: u64) -> u64 {
    Rng::stream(seed, 0xD1D5, tag).next_u64()
}

/// The NPI whose first digit is `lead` (1 or 2) and whose next eight digits are `body`.
fn npi_from(lead: u8, body: u64) -> String {
    let mut prefix = [0u8; 9];
    prefix[0] = lead;
    let mut v = body;
    for slot in prefix[1..].iter_mut().rev() {
        *slot = (v % 10) as u8;
        v /= 10;
    }
    let check = atr_model::ident::npi_check_digit(&prefix);
    let mut s = String::with_capacity(10);
    for d in prefix.iter().chain(std::iter::once(&check)) {
        s.push(char::from(b'0' + d));
    }
    s
}

/// The NPI of practitioner `index` (0-based): individuals' NPIs start with 1.
// 43_046_721 = 3^16 and 40_353_607 = 7^9 are coprime with 10^8.
pub fn practitioner_npi(seed: u64, index: u64) -> String {
    npi_from(1, affine(index, 43_046_721, salt(seed, 1), 100_000_000))
}

/// The NPI of provider organisation `index` (0-based): these start with 2, so they never collide
/// with a practitioner's.
pub fn organization_npi(seed: u64, index: u64) -> String {
    npi_from(2, affine(index, 40_353_607, salt(seed, 2), 100_000_000))
}

/// A 9-digit TIN (EIN), not starting with 0; `index` numbers payers first, then provider
/// organisations, so all are distinct.
pub fn tin(seed: u64, index: u64) -> String {
    // 282_475_249 = 7^10 is coprime with 900_000_000 = 2^8 * 3^2 * 5^8.
    format!(
        "{}",
        100_000_000 + affine(index, 282_475_249, salt(seed, 3), 900_000_000)
    )
}

/// A 5-digit NAIC company code.
pub fn naic(seed: u64, index: u64) -> String {
    // 16_807 = 7^5 is coprime with 90_000.
    format!("{}", 10_000 + affine(index, 16_807, salt(seed, 4), 90_000))
}

/// The member id of member `index`: `M` and nine digits, unique per member.
pub fn member_id(seed: u64, index: u64) -> String {
    // 387_420_489 = 3^18 is coprime with 10^9.
    format!(
        "M{:09}",
        affine(index, 387_420_489, salt(seed, 5), 1_000_000_000)
    )
}

/// The subscriber id for the family of member `index` when the subscriber is someone else.
pub fn subscriber_id(seed: u64, index: u64) -> String {
    format!(
        "S{:09}",
        affine(index, 1_977_326_743, salt(seed, 6), 1_000_000_000)
    )
}

/// A Medicare Beneficiary Identifier: 11 characters, `C A AN N A AN N A A N N`, where letters
/// exclude S, L, O, I, B and Z.
pub fn mbi(rng: &mut Rng) -> String {
    const ALPHA: &[u8] = b"ACDEFGHJKMNPQRTUVWXY";
    const ALNUM: &[u8] = b"0123456789ACDEFGHJKMNPQRTUVWXY";
    const DIGIT: &[u8] = b"0123456789";
    const NONZERO: &[u8] = b"123456789";
    let pattern: [&[u8]; 11] = [
        NONZERO, ALPHA, ALNUM, DIGIT, ALPHA, ALNUM, DIGIT, ALPHA, ALPHA, DIGIT, DIGIT,
    ];
    pattern
        .iter()
        .map(|set| char::from(*rng.pick(set)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use atr_model::ident::{is_valid_npi, is_valid_tin};
    use std::collections::HashSet;

    #[test]
    fn npis_are_valid_and_distinct() {
        let mut seen = HashSet::new();
        for i in 0..2000 {
            let p = practitioner_npi(7, i);
            let o = organization_npi(7, i);
            assert!(is_valid_npi(&p), "{p}");
            assert!(is_valid_npi(&o), "{o}");
            assert!(seen.insert(p));
            assert!(seen.insert(o));
        }
    }

    #[test]
    fn tins_and_member_ids_are_distinct() {
        let mut tins = HashSet::new();
        let mut members = HashSet::new();
        for i in 0..5000 {
            let t = tin(3, i);
            assert!(is_valid_tin(&t) && t.len() == 9, "{t}");
            assert!(tins.insert(t));
            let m = member_id(3, i);
            assert_eq!(m.len(), 10);
            assert!(members.insert(m));
        }
    }

    #[test]
    fn mbis_have_the_cms_shape() {
        let mut rng = Rng::new(5);
        for _ in 0..100 {
            let m = mbi(&mut rng);
            assert_eq!(m.len(), 11);
            let b = m.as_bytes();
            assert!(b[0].is_ascii_digit() && b[0] != b'0');
            assert!(b[1].is_ascii_uppercase() && b[3].is_ascii_digit() && b[10].is_ascii_digit());
        }
    }
}
