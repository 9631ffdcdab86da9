//! Identifier rules: FHIR logical ids, NPIs (with their Luhn check digit) and TINs.

/// A FHIR logical id: `[A-Za-z0-9\-\.]{1,64}`.
pub fn is_valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// The Luhn check digit of an NPI whose first nine digits are `prefix`, computed (as CMS specifies)
/// over the card-issuer prefix `80840` followed by those nine digits.
pub fn npi_check_digit(prefix: &[u8; 9]) -> u8 {
    // Digits of "80840" + prefix, doubled from the rightmost one (the check digit is appended after).
    let digits = [8u8, 0, 8, 4, 0].into_iter().chain(prefix.iter().copied());
    let all: Vec<u8> = digits.collect();
    let mut sum = 0u32;
    for (i, d) in all.iter().rev().enumerate() {
        let mut v = u32::from(*d);
        if i % 2 == 0 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    ((10 - (sum % 10)) % 10) as u8
}

/// True for a 10-digit NPI whose last digit is the right check digit.
pub fn is_valid_npi(npi: &str) -> bool {
    let b = npi.as_bytes();
    if b.len() != 10 || !b.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let mut prefix = [0u8; 9];
    for (p, c) in prefix.iter_mut().zip(b) {
        *p = c - b'0';
    }
    npi_check_digit(&prefix) == b[9] - b'0'
}

/// True for a 9-digit TIN, with or without the `NN-NNNNNNN` dash.
pub fn is_valid_tin(tin: &str) -> bool {
    let digits: Vec<u8> = tin.bytes().filter(|b| *b != b'-').collect();
    digits.len() == 9 && digits.iter().all(u8::is_ascii_digit) && tin.len() <= 10
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_npis_check_out() {
        // CMS's published example NPI.
        assert!(is_valid_npi("1234567893"));
        assert!(!is_valid_npi("1234567890"));
        assert!(!is_valid_npi("123456789"));
        assert!(!is_valid_npi("12345678a3"));
    }

    #[test]
    fn check_digit_completes_prefix() {
        assert_eq!(npi_check_digit(&[1, 2, 3, 4, 5, 6, 7, 8, 9]), 3);
    }

    #[test]
    fn ids_follow_fhir_rules() {
        assert!(is_valid_id("pat-1.2"));
        assert!(!is_valid_id(""));
        assert!(!is_valid_id("a/b"));
        assert!(!is_valid_id(&"x".repeat(65)));
    }

    #[test]
    fn tins_have_nine_digits() {
        assert!(is_valid_tin("789456231"));
        assert!(is_valid_tin("78-9456231"));
        assert!(!is_valid_tin("78945623"));
    }
}
