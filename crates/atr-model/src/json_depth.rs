//! How deeply JSON text nests, found by one pass over its bytes without parsing it.
//!
//! FHIR resources nest a dozen levels at most (a Group member's extension's reference's
//! identifier's period is seven). Deeper input is hostile or broken; refusing it before parsing
//! keeps every recursive walk over a parsed value (validation, indexing, rendering, dropping)
//! far from the stack's end, and gives the client a clearer answer than serde_json's own
//! recursion limit (128) would.

/// The deepest nesting of arrays and objects the server accepts in a JSON body.
pub const MAX_JSON_DEPTH: usize = 64;

/// True when `text` opens more than `max` arrays or objects inside one another.
///
/// Brackets inside strings (with their escapes) do not count. The text need not be valid JSON:
/// what is not is left for the parser to refuse, this only bounds the nesting it will meet.
pub fn nesting_exceeds(text: &[u8], max: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in text {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(n: usize) -> String {
        "[".repeat(n) + &"]".repeat(n)
    }

    #[test]
    fn depth_at_the_limit_passes_and_one_more_does_not() {
        assert!(!nesting_exceeds(nested(64).as_bytes(), 64));
        assert!(nesting_exceeds(nested(65).as_bytes(), 64));
        assert!(nesting_exceeds(b"{\"a\":{\"b\":[{}]}}", 3));
        assert!(!nesting_exceeds(b"{\"a\":{\"b\":[{}]}}", 4));
    }

    #[test]
    fn brackets_in_strings_do_not_count() {
        let text = format!(
            r#"{{"a": "{}\"{}", "b": []}}"#,
            "[".repeat(100),
            "{".repeat(100)
        );
        assert!(!nesting_exceeds(text.as_bytes(), 2));
        assert!(!nesting_exceeds(br#"["\\", ["x"]]"#, 2));
    }

    #[test]
    fn siblings_do_not_add_up() {
        let text = format!("[{}]", vec!["[[]]"; 1000].join(","));
        assert!(!nesting_exceeds(text.as_bytes(), 3));
    }
}
