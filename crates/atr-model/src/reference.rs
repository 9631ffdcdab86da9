//! References between resources: `Type/id`, `Type/id/_history/n` and absolute URLs, reduced to the
//! `Type/id` form the indexes keep.

/// The type and id a reference string points to, if it is a literal reference of the
/// `[base/]Type/id[/_history/n]` form. Contained (`#x`) and `urn:` references have none.
pub fn parse_reference(reference: &str) -> Option<(&str, &str)> {
    if reference.starts_with('#') || reference.starts_with("urn:") {
        return None;
    }
    let path = reference.split(['?', '#']).next().unwrap_or(reference);
    let mut parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    if parts.len() >= 4 && parts[parts.len() - 2] == "_history" {
        parts.truncate(parts.len() - 2);
    }
    if parts.len() < 2 {
        return None;
    }
    let (rtype, id) = (parts[parts.len() - 2], parts[parts.len() - 1]);
    let type_ok = rtype.chars().next().is_some_and(|c| c.is_ascii_uppercase())
        && rtype.chars().all(|c| c.is_ascii_alphanumeric());
    (type_ok && crate::ident::is_valid_id(id)).then_some((rtype, id))
}

/// `Type/id` for a literal reference, `None` otherwise.
pub fn normalize_reference(reference: &str) -> Option<String> {
    parse_reference(reference).map(|(t, id)| format!("{t}/{id}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_reduce_to_type_and_id() {
        assert_eq!(parse_reference("Patient/1"), Some(("Patient", "1")));
        assert_eq!(
            parse_reference("http://x.org/fhir/Patient/a-1"),
            Some(("Patient", "a-1"))
        );
        assert_eq!(
            parse_reference("Patient/1/_history/3"),
            Some(("Patient", "1"))
        );
        assert_eq!(parse_reference("#contained"), None);
        assert_eq!(parse_reference("Patient"), None);
        assert_eq!(parse_reference("patient/1"), None);
        assert_eq!(parse_reference("Patient/a b"), None);
    }
}
