//! Parsing a FHIR search query string into a [`SearchQuery`]: which parameters exist for which type
//! comes from `atr_model::index`, and anything else is refused (or, under
//! `Prefer: handling=lenient`, ignored and reported).

use atr_model::index::{ParamKind, search_param};
use atr_model::instant::parse_fhir_range;
use atr_model::reference::parse_reference;
use atr_model::{Issue, ResourceType};
use atr_store::{Clause, Compare, SearchQuery, StringMode, TokenMatch};

use crate::error::ApiError;

/// Page size of a search or `_history` without `_count`.
pub const DEFAULT_COUNT: u32 = 50;
/// Largest page: a larger `_count` is served as this many (FHIR allows fewer than asked), and the
/// page's `self` and `next` links say so.
pub const MAX_COUNT: u32 = 1000;

/// `_summary` as this server supports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Summary {
    /// The whole resource (a Group with its members).
    Full,
    /// No narrative and no Group members; marked SUBSETTED.
    True,
    /// No narrative.
    Data,
    /// Search: the total only.
    Count,
}

pub fn parse_summary(value: &str) -> Result<Summary, ApiError> {
    match value {
        "true" => Ok(Summary::True),
        "false" => Ok(Summary::Full),
        "data" => Ok(Summary::Data),
        "count" => Ok(Summary::Count),
        other => Err(ApiError::bad_param(
            "_summary",
            format!("_summary={other} is not supported (use true, false, data or count)"),
        )),
    }
}

/// A parsed search request.
#[derive(Debug)]
pub struct ParsedSearch {
    pub query: SearchQuery,
    pub summary: Summary,
    /// Parameters ignored under lenient handling, reported in the Bundle.
    pub warnings: Vec<Issue>,
    /// The parameters that define the result set, to build paging links.
    pub link_params: Vec<(String, String)>,
}

/// Splits on commas that are not escaped with a backslash (FHIR search escaping), unescaping
/// `\,`, `\|` and `\\`.
fn split_values(v: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(next) = chars.next() {
                    if !matches!(next, ',' | '|' | '$' | '\\') {
                        current.push('\\');
                    }
                    current.push(next);
                }
            }
            ',' => out.push(std::mem::take(&mut current)),
            c => current.push(c),
        }
    }
    out.push(current);
    out
}

/// Splits at unescaped `|`.
fn split_pipes(v: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut escaped = false;
    for c in v.chars() {
        match (escaped, c) {
            (false, '\\') => escaped = true,
            (false, '|') => out.push(String::new()),
            (_, c) => {
                escaped = false;
                if let Some(s) = out.last_mut() {
                    s.push(c)
                }
            }
        }
    }
    out
}

fn nonempty(name: &str, values: Vec<String>) -> Result<Vec<String>, ApiError> {
    if values.iter().any(String::is_empty) {
        return Err(ApiError::bad_param(
            name,
            format!("parameter {name} has an empty value"),
        ));
    }
    Ok(values)
}

/// A token parameter `param`, as the request named it (`name`, with any modifier).
fn parse_token(param: &'static str, name: &str, raw: &str) -> Result<Clause, ApiError> {
    let mut any_of = Vec::new();
    let mut of_type = Vec::new();
    for v in nonempty(name, split_values(raw))? {
        let parts = split_pipes(&v);
        match parts.as_slice() {
            [code] => any_of.push(TokenMatch {
                system: None,
                code: Some(code.clone()),
            }),
            [system, code] if code.is_empty() && system.is_empty() => {
                return Err(ApiError::bad_param(
                    name,
                    format!("{name}=| names neither a system nor a code"),
                ));
            }
            [system, code] => any_of.push(TokenMatch {
                system: Some(system.clone()),
                code: (!code.is_empty()).then(|| code.clone()),
            }),
            // `identifier:of-type=typeSystem|typeCode|value`; the normative page also shows the
            // three-part form without the modifier, which can only mean the same.
            [ts, tc, value] if param == "identifier" && !tc.is_empty() && !value.is_empty() => {
                of_type.push((ts.clone(), tc.clone(), value.clone()))
            }
            _ => {
                return Err(ApiError::bad_param(
                    name,
                    format!(
                        "{name}={v} is not a token (use code, system|code, |code or system|; identifier:of-type takes typeSystem|typeCode|value)"
                    ),
                ));
            }
        }
    }
    match (any_of.is_empty(), of_type.is_empty()) {
        (false, true) => Ok(Clause::Token { param, any_of }),
        (true, false) => Ok(Clause::OfType {
            param,
            any_of: of_type,
        }),
        _ => Err(ApiError::bad_param(
            name,
            format!("{name} mixes of-type and plain token values in one parameter"),
        )),
    }
}

/// `characteristic-value=[system|]code$[system|]value`, comma-separated alternatives.
fn parse_characteristic_value(param: &'static str, raw: &str) -> Result<Clause, ApiError> {
    let mut any_of = Vec::new();
    for v in nonempty(param, split_values(raw))? {
        let bad = || {
            ApiError::bad_param(
                param,
                format!("{param}={v} is not [system|]code$[system|]value"),
            )
        };
        let (left, value) = v.split_once('$').ok_or_else(bad)?;
        let value = value.strip_prefix('|').unwrap_or(value);
        let (system, code) = match split_pipes(left).as_slice() {
            [code] => (None, code.clone()),
            [system, code] => ((!system.is_empty()).then(|| system.clone()), code.clone()),
            _ => return Err(bad()),
        };
        if code.is_empty() || value.is_empty() || value.ends_with('|') {
            return Err(bad());
        }
        any_of.push(TokenMatch {
            system,
            code: Some(atr_model::index::composite_code(&code, value)),
        });
    }
    Ok(Clause::Token { param, any_of })
}

fn parse_reference_values(
    name: &str,
    raw: &str,
    default_type: Option<&str>,
) -> Result<Vec<String>, ApiError> {
    nonempty(name, split_values(raw))?
        .into_iter()
        .map(|v| match (parse_reference(&v), default_type) {
            (Some((t, id)), _) => Ok(format!("{t}/{id}")),
            (None, Some(t)) if atr_model::ident::is_valid_id(&v) => Ok(format!("{t}/{v}")),
            _ => Err(ApiError::bad_param(
                name,
                format!("{name}={v} is not a reference (use Type/id)"),
            )),
        })
        .collect()
}

/// A date search value's comparison prefix and the date after it.
fn date_prefix(raw: &str) -> (Compare, &str) {
    match raw.get(..2) {
        Some("eq") => (Compare::Eq, &raw[2..]),
        Some("ne") => (Compare::Ne, &raw[2..]),
        Some("gt") => (Compare::Gt, &raw[2..]),
        Some("ge") => (Compare::Ge, &raw[2..]),
        Some("lt") => (Compare::Lt, &raw[2..]),
        Some("le") => (Compare::Le, &raw[2..]),
        _ => (Compare::Eq, raw),
    }
}

/// A `date` parameter (`birthdate=ge1970`): one date, to the day, with an optional prefix.
fn parse_date(param: &'static str, raw: &str) -> Result<Clause, ApiError> {
    let (compare, date) = date_prefix(raw);
    let (start, end) = atr_model::instant::date_days(date).map_err(|_| {
        ApiError::bad_param(
            param,
            format!(
                "{param}={raw} is not a date search (eq, ne, gt, ge, lt or le, then YYYY, YYYY-MM or YYYY-MM-DD; repeat the parameter for a range)"
            ),
        )
    })?;
    Ok(Clause::Date {
        param,
        compare,
        start,
        end,
    })
}

fn parse_last_updated(raw: &str) -> Result<Clause, ApiError> {
    let (compare, date) = date_prefix(raw);
    let range =
        parse_fhir_range(date).map_err(|e| ApiError::bad_param("_lastUpdated", e.to_string()))?;
    Ok(Clause::LastUpdated {
        compare,
        start: range.start,
        end: range.end,
    })
}

/// Target type assumed for a bare id in a reference parameter.
fn reference_default_type(rtype: ResourceType, param: &str) -> Option<&'static str> {
    match (rtype, param) {
        (ResourceType::Coverage, "beneficiary") | (ResourceType::RelatedPerson, "patient") => {
            Some("Patient")
        }
        (ResourceType::Group, "managing-entity")
        | (ResourceType::PractitionerRole, "organization") => Some("Organization"),
        (ResourceType::Coverage, "payor") => Some("Organization"),
        (ResourceType::PractitionerRole, "practitioner") => Some("Practitioner"),
        (ResourceType::PractitionerRole, "location") => Some("Location"),
        _ => None,
    }
}

/// Parses the search parameters of a request on `rtype`.
pub fn parse(
    rtype: ResourceType,
    pairs: &[(String, String)],
    lenient: bool,
) -> Result<ParsedSearch, ApiError> {
    let mut clauses = Vec::new();
    let mut warnings = Vec::new();
    let mut link_params = Vec::new();
    let mut count = DEFAULT_COUNT;
    let mut after_id = None;
    let mut summary = Summary::Full;
    let mut with_total = true;
    for (key, value) in pairs {
        let (name, modifier) = match key.split_once(':') {
            Some((n, m)) => (n, Some(m)),
            None => (key.as_str(), None),
        };
        let mut keep = true;
        match (name, modifier) {
            ("_format", _) | ("_pretty", _) => keep = false,
            ("_count", None) => {
                count = value
                    .parse::<u32>()
                    .map_err(|_| {
                        ApiError::bad_param(
                            "_count",
                            format!("_count={value} is not a non-negative integer"),
                        )
                    })?
                    // FHIR lets a server return fewer than asked: the links carry what was used.
                    .min(MAX_COUNT);
                link_params.push(("_count".into(), count.to_string()));
                keep = false;
            }
            ("_cursor", None) => {
                keep = false;
                if !atr_model::ident::is_valid_id(value) {
                    return Err(ApiError::bad_param(
                        "_cursor",
                        "_cursor is not a page cursor this server issued",
                    ));
                }
                after_id = Some(value.clone());
            }
            ("_summary", None) => summary = parse_summary(value)?,
            ("_total", None) => match value.as_str() {
                "none" => with_total = false,
                "estimate" | "accurate" => with_total = true,
                other => {
                    return Err(ApiError::bad_param(
                        "_total",
                        format!("_total={other} is not none, estimate or accurate"),
                    ));
                }
            },
            ("_sort", None) if value == "_id" => {}
            ("_id", None) => {
                let ids = nonempty("_id", split_values(value))?;
                if let Some(bad) = ids.iter().find(|id| !atr_model::ident::is_valid_id(id)) {
                    return Err(ApiError::bad_param(
                        "_id",
                        format!("_id={bad} is not a valid FHIR id"),
                    ));
                }
                clauses.push(Clause::Id(ids));
            }
            ("_lastUpdated", None) => clauses.push(parse_last_updated(value)?),
            ("member", None) if rtype == ResourceType::Group => {
                clauses.push(Clause::Member(parse_reference_values(
                    "member",
                    value,
                    Some("Patient"),
                )?));
            }
            _ => match (search_param(rtype, name), modifier) {
                (Some(sp), None) if sp.kind == ParamKind::Token => {
                    clauses.push(parse_token(sp.name, name, value)?)
                }
                (Some(sp), Some("of-type")) if sp.name == "identifier" => {
                    match parse_token(sp.name, key, value)? {
                        clause @ Clause::OfType { .. } => clauses.push(clause),
                        _ => {
                            return Err(ApiError::bad_param(
                                key,
                                "identifier:of-type takes typeSystem|typeCode|value",
                            ));
                        }
                    }
                }
                (Some(sp), None | Some("exact") | Some("contains"))
                    if sp.kind == ParamKind::String =>
                {
                    let mode = match modifier {
                        Some("exact") => StringMode::Exact,
                        Some("contains") => StringMode::Contains,
                        _ => StringMode::Prefix,
                    };
                    clauses.push(Clause::String {
                        param: sp.name,
                        mode,
                        any_of: nonempty(name, split_values(value))?,
                    });
                }
                (Some(sp), None) if sp.kind == ParamKind::Date => {
                    clauses.push(parse_date(sp.name, value)?)
                }
                (Some(sp), None) if sp.kind == ParamKind::Composite => {
                    clauses.push(parse_characteristic_value(sp.name, value)?)
                }
                (Some(sp), None) if sp.kind == ParamKind::Reference => {
                    let any_of = parse_reference_values(
                        name,
                        value,
                        reference_default_type(rtype, sp.name),
                    )?;
                    clauses.push(Clause::Reference {
                        param: sp.name,
                        any_of,
                    });
                }
                _ => {
                    let msg = match search_param(rtype, name) {
                        Some(_) => format!(
                            "the modifier :{} is not supported on {name}",
                            modifier.unwrap_or("")
                        ),
                        None => format!("unknown search parameter {key} for {rtype}"),
                    };
                    if !lenient {
                        return Err(ApiError::bad_param(
                            key,
                            format!("{msg} (send Prefer: handling=lenient to ignore it)"),
                        ));
                    }
                    warnings.push(
                        Issue::warning("not-supported", format!("{msg}; ignored")).at(key.clone()),
                    );
                    keep = false;
                }
            },
        }
        if keep {
            link_params.push((key.clone(), value.clone()));
        }
    }
    if summary == Summary::Count {
        count = 0;
    }
    Ok(ParsedSearch {
        query: SearchQuery {
            rtype,
            clauses,
            count,
            after_id,
            with_total,
            access: atr_store::Access::All,
        },
        summary,
        warnings,
        link_params,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(q: &str) -> Vec<(String, String)> {
        form_urlencoded::parse(q.as_bytes()).into_owned().collect()
    }

    #[test]
    fn token_forms_parse() {
        let p = parse(
            ResourceType::Group,
            &pairs("identifier=s|c,|d,e,s2|"),
            false,
        )
        .unwrap();
        let Clause::Token { any_of, .. } = &p.query.clauses[0] else {
            panic!()
        };
        assert_eq!(
            any_of[0],
            TokenMatch {
                system: Some("s".into()),
                code: Some("c".into())
            }
        );
        assert_eq!(
            any_of[1],
            TokenMatch {
                system: Some("".into()),
                code: Some("d".into())
            }
        );
        assert_eq!(
            any_of[2],
            TokenMatch {
                system: None,
                code: Some("e".into())
            }
        );
        assert_eq!(
            any_of[3],
            TokenMatch {
                system: Some("s2".into()),
                code: None
            }
        );
    }

    #[test]
    fn of_type_forms_parse() {
        let t = "http://terminology.hl7.org/CodeSystem/v2-0203";
        for q in [
            format!("identifier:of-type={t}|NPI|123"),
            format!("identifier={t}|NPI|123"),
        ] {
            let p = parse(ResourceType::Group, &pairs(&q), false).unwrap();
            assert!(
                matches!(&p.query.clauses[0], Clause::OfType { any_of, .. } if any_of[0].2 == "123")
            );
        }
    }

    #[test]
    fn unknown_parameters_are_refused_unless_lenient() {
        assert!(parse(ResourceType::Group, &pairs("colour=red"), false).is_err());
        let p = parse(ResourceType::Group, &pairs("colour=red"), true).unwrap();
        assert_eq!(p.warnings.len(), 1);
        assert!(parse(ResourceType::Patient, &pairs("name=x"), false).is_err());
        assert!(parse(ResourceType::Group, &pairs("name:below=x"), false).is_err());
    }

    #[test]
    fn bad_values_are_refused() {
        for q in [
            "_count=-1",
            "_count=x",
            "_lastUpdated=gt2026-13",
            "member=",
            "identifier=",
            "_summary=maybe",
            "_id=a/b",
        ] {
            assert!(parse(ResourceType::Group, &pairs(q), false).is_err(), "{q}");
        }
    }

    #[test]
    fn escaped_commas_stay_in_values() {
        assert_eq!(
            split_values(r"a\,b,c"),
            vec!["a,b".to_string(), "c".to_string()]
        );
    }

    #[test]
    fn count_is_capped_and_summary_count_asks_total_only() {
        let p = parse(ResourceType::Group, &pairs("_count=100000"), false).unwrap();
        assert_eq!(p.query.count, MAX_COUNT);
        assert_eq!(
            p.link_params,
            vec![("_count".into(), MAX_COUNT.to_string())]
        );
        let p = parse(ResourceType::Group, &pairs("_summary=count"), false).unwrap();
        assert_eq!(p.query.count, 0);
    }

    mod properties {
        use proptest::prelude::*;
        use proptest::sample::select;

        use super::*;

        const NAMES: &[&str] = &[
            "_id",
            "_count",
            "_cursor",
            "_summary",
            "_total",
            "_sort",
            "_lastUpdated",
            "_format",
            "identifier",
            "identifier:of-type",
            "identifier:missing",
            "name",
            "name:exact",
            "name:contains",
            "name:below",
            "member",
            "characteristic",
            "characteristic-value",
            "managing-entity",
            "beneficiary",
            "payor",
            "patient",
            "practitioner",
            ":",
            "",
            "colour",
        ];
        const VALUES: &[&str] = &[
            "",
            "|",
            "||",
            "a|b|c|d",
            "\\",
            "\\,",
            ",,",
            "Patient/p1",
            "Patient/",
            "p1",
            "gt2026-01-01",
            "le2026-13-99",
            "eq",
            "ge",
            "2026-01-01T00:00:00Z",
            "-1",
            "4294967296",
            "1000",
            "1001",
            "0",
            "true",
            "count",
            "none",
            "estimate",
            "http://hl7.org/fhir/sid/us-npi|1234567893",
            "é",
            "\u{0}",
        ];

        fn value() -> impl Strategy<Value = String> {
            prop_oneof![
                3 => select(VALUES).prop_map(str::to_string),
                1 => any::<String>(),
                1 => prop::collection::vec(select(VALUES), 0..4).prop_map(|v| v.join(",")),
            ]
        }

        proptest! {
            #[test]
            fn any_query_string_parses_or_is_refused_and_pages_stay_bounded(
                query in any::<String>(),
                rtype in select(ResourceType::ALL.to_vec()),
                lenient in any::<bool>(),
            ) {
                let pairs: Vec<(String, String)> =
                    form_urlencoded::parse(query.as_bytes()).into_owned().collect();
                if let Ok(p) = parse(rtype, &pairs, lenient) {
                    prop_assert!(p.query.count <= MAX_COUNT);
                }
            }

            #[test]
            fn near_valid_parameters_parse_or_are_a_400(
                pairs in prop::collection::vec((select(NAMES).prop_map(str::to_string), value()), 0..8),
                rtype in select(ResourceType::ALL.to_vec()),
                lenient in any::<bool>(),
            ) {
                match parse(rtype, &pairs, lenient) {
                    Ok(p) => {
                        prop_assert!(p.query.count <= MAX_COUNT);
                        prop_assert!(p.link_params.len() <= pairs.len());
                        prop_assert!(p.query.clauses.len() <= pairs.len());
                    }
                    Err(e) => {
                        prop_assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST);
                        prop_assert!(!e.issues.is_empty());
                    }
                }
            }
        }
    }
}
