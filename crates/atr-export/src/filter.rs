//! `_typeFilter` and `_elements`, applied line by line to the types they name (the only place an
//! export parses resources; every other line is copied as stored).

use atr_model::ResourceType;
use atr_model::index::{IndexEntries, extract, normalize_string};
use atr_model::instant::parse_fhir_range;
use atr_store::{Clause, StringMode, TokenMatch};
use serde_json::{Map, Value};

/// One parsed `_typeFilter` query: a resource of its type passes when it matches every clause.
#[derive(Debug, Clone)]
pub struct TypeFilter {
    pub rtype: ResourceType,
    pub clauses: Vec<Clause>,
}

/// Whether `resource` passes any of `filters` (the queries on one type are OR-ed, as in Bulk
/// Data).
pub fn passes(filters: &[&TypeFilter], rtype: ResourceType, resource: &Value) -> bool {
    if filters.is_empty() {
        return true;
    }
    let entries = extract(rtype, resource);
    let id = resource.get("id").and_then(Value::as_str).unwrap_or("");
    let last_updated = resource
        .pointer("/meta/lastUpdated")
        .and_then(Value::as_str)
        .and_then(|s| parse_fhir_range(s).ok())
        .map(|r| r.start);
    filters.iter().any(|f| {
        f.clauses
            .iter()
            .all(|c| clause_matches(c, &entries, id, last_updated))
    })
}

fn token_matches(m: &TokenMatch, system: &str, code: &str) -> bool {
    let system_ok = match &m.system {
        None => true,
        Some(s) => s == system,
    };
    let code_ok = match &m.code {
        None => true,
        Some(c) => c == code,
    };
    system_ok && code_ok
}

fn clause_matches(
    clause: &Clause,
    entries: &IndexEntries,
    id: &str,
    last_updated: Option<i64>,
) -> bool {
    match clause {
        Clause::Token { param, any_of } => entries.tokens.iter().any(|t| {
            t.param == *param && any_of.iter().any(|m| token_matches(m, &t.system, &t.code))
        }),
        Clause::OfType { param, any_of } => entries.tokens.iter().any(|t| {
            t.param == *param
                && any_of
                    .iter()
                    .any(|(ts, tc, v)| *ts == t.type_system && *tc == t.type_code && *v == t.code)
        }),
        Clause::String {
            param,
            mode,
            any_of,
        } => entries.strings.iter().any(|s| {
            s.param == *param
                && any_of.iter().any(|v| match mode {
                    StringMode::Prefix => s.norm.starts_with(&normalize_string(v)),
                    StringMode::Contains => s.norm.contains(&normalize_string(v)),
                    StringMode::Exact => s.raw == *v,
                })
        }),
        Clause::Reference { param, any_of } => entries
            .refs
            .iter()
            .any(|r| r.param == *param && any_of.contains(&r.target)),
        Clause::Id(ids) => ids.iter().any(|i| i == id),
        Clause::LastUpdated {
            compare,
            start,
            end,
        } => last_updated.is_some_and(|lu| compare.holds(&lu, start, end)),
        Clause::Date {
            param,
            compare,
            start,
            end,
        } => entries
            .tokens
            .iter()
            .any(|t| t.param == *param && compare.holds(&t.code, start, end)),
        // Group membership is not a filter on exported lines (the kick-off refuses it).
        Clause::Member(_) => false,
    }
}

/// Top-level elements R4 requires (min 1) of each type, kept whatever `_elements` lists.
fn mandatory(rtype: ResourceType) -> &'static [&'static str] {
    match rtype {
        ResourceType::Group => &["type", "actual"],
        ResourceType::Coverage => &["status", "beneficiary", "payor"],
        ResourceType::RelatedPerson => &["patient"],
        _ => &[],
    }
}

/// Reduces `resource` to `keep` (plus `resourceType`, `id`, `meta` and the mandatory elements)
/// and tags it `SUBSETTED`.
pub fn subset(rtype: ResourceType, resource: Value, keep: &[&str]) -> Value {
    let Value::Object(map) = resource else {
        return resource;
    };
    let mut out = Map::new();
    for (k, v) in map {
        if matches!(k.as_str(), "resourceType" | "id" | "meta")
            || mandatory(rtype).contains(&k.as_str())
            || keep.contains(&k.as_str())
        {
            out.insert(k, v);
        }
    }
    let mut out = Value::Object(out);
    atr_model::meta::mark_subsetted(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn token_filter_matches_identifier_system_and_value() {
        let p = json!({"resourceType": "Patient", "id": "p1",
            "identifier": [{"system": "urn:x", "value": "42"}]});
        let f = TypeFilter {
            rtype: ResourceType::Patient,
            clauses: vec![Clause::Token {
                param: "identifier",
                any_of: vec![TokenMatch {
                    system: Some("urn:x".into()),
                    code: Some("42".into()),
                }],
            }],
        };
        assert!(passes(&[&f], ResourceType::Patient, &p));
        let g = TypeFilter {
            rtype: ResourceType::Patient,
            clauses: vec![Clause::Id(vec!["other".into()])],
        };
        assert!(!passes(&[&g], ResourceType::Patient, &p));
        assert!(passes(&[&f, &g], ResourceType::Patient, &p));
    }

    #[test]
    fn subset_keeps_id_meta_mandatory_and_listed_and_tags() {
        let c = json!({"resourceType": "Coverage", "id": "c", "status": "active",
            "beneficiary": {"reference": "Patient/p"}, "payor": [], "class": [], "period": {}});
        let out = subset(ResourceType::Coverage, c, &["period"]);
        let keys: Vec<&String> = out
            .as_object()
            .map(|m| m.keys().collect())
            .unwrap_or_default();
        assert!(!keys.iter().any(|k| *k == "class"));
        assert!(keys.iter().any(|k| *k == "period"));
        assert_eq!(
            out["meta"]["tag"],
            json!([{"system": atr_model::meta::SUBSETTED_SYSTEM, "code": "SUBSETTED"}]),
            "exactly system and code, no display"
        );
    }
}
