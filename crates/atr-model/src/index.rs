//! Search parameters this server supports and the index entries a resource contributes to them.
//!
//! One table says which parameter of which type is indexed how; `extract` walks a resource once and
//! returns its entries. The stores keep the entries beside the resource bytes, so a search never
//! parses a resource.

use serde_json::Value;
use unicode_normalization::UnicodeNormalization;

use crate::ResourceType;
use crate::reference::normalize_reference;

/// How a search parameter matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamKind {
    /// `system|code` tokens (identifiers, codings).
    Token,
    /// Case- and accent-insensitive strings.
    String,
    /// References, kept as `Type/id`.
    Reference,
    /// Dates, kept as tokens whose code is the first day the date covers (`YYYY-MM-DD`), so
    /// comparisons are string comparisons of days.
    Date,
    /// `code$value` pairs of two tokens (Group `characteristic-value`), kept as tokens whose code
    /// is [`composite_code`].
    Composite,
}

/// A search parameter served for a resource type (beyond `_id` and `_lastUpdated`, which every
/// type has, and Group's `member`, which the member rows answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SearchParam {
    pub name: &'static str,
    pub kind: ParamKind,
    /// FHIRPath of the indexed element, for the CapabilityStatement.
    pub expression: &'static str,
}

const fn p(name: &'static str, kind: ParamKind, expression: &'static str) -> SearchParam {
    SearchParam {
        name,
        kind,
        expression,
    }
}

use ParamKind::{Reference as R, String as S, Token as T};

const GROUP: &[SearchParam] = &[
    p("identifier", T, "Group.identifier"),
    p("name", S, "Group.name"),
    p("characteristic", T, "Group.characteristic.code"),
    p(
        "characteristic-value",
        ParamKind::Composite,
        "Group.characteristic",
    ),
    p("managing-entity", R, "Group.managingEntity"),
    p(
        "intended-recipient",
        T,
        "Group.extension('http://hl7.org/fhir/us/davinci-atr/StructureDefinition/atr-intended-recipient-identifier-extension').value",
    ),
];
const PATIENT: &[SearchParam] = &[
    p("identifier", T, "Patient.identifier"),
    p("gender", T, "Patient.gender"),
    p("birthdate", ParamKind::Date, "Patient.birthDate"),
];
const COVERAGE: &[SearchParam] = &[
    p("identifier", T, "Coverage.identifier"),
    p("status", T, "Coverage.status"),
    p("beneficiary", R, "Coverage.beneficiary"),
    p("subscriber", R, "Coverage.subscriber"),
    p("policy-holder", R, "Coverage.policyHolder"),
    p("payor", R, "Coverage.payor"),
];
const PRACTITIONER: &[SearchParam] = &[p("identifier", T, "Practitioner.identifier")];
const PRACTITIONER_ROLE: &[SearchParam] = &[
    p("identifier", T, "PractitionerRole.identifier"),
    p("practitioner", R, "PractitionerRole.practitioner"),
    p("organization", R, "PractitionerRole.organization"),
    p("location", R, "PractitionerRole.location"),
];
const ORGANIZATION: &[SearchParam] = &[
    p("identifier", T, "Organization.identifier"),
    p("name", S, "Organization.name"),
];
const LOCATION: &[SearchParam] = &[p("identifier", T, "Location.identifier")];
const RELATED_PERSON: &[SearchParam] = &[
    p("identifier", T, "RelatedPerson.identifier"),
    p("patient", R, "RelatedPerson.patient"),
];

/// The stored code of a `characteristic-value` entry: the characteristic's code, `$`, and the
/// value token as a search writes it (`system|code`, or `code` alone). Each value is indexed both
/// with and without its system, so `code$value` and `code$system|value` both find it.
pub fn composite_code(code: &str, value: &str) -> String {
    format!("{code}${value}")
}

/// `characteristic-value` entries of one `Group.characteristic`: every coding of its code paired
/// with every token of its value (`valueCodeableConcept` codings, or `valueBoolean`).
fn characteristic_values(param: &'static str, ch: &Value, out: &mut Vec<TokenEntry>) {
    let mut values: Vec<String> = Vec::new();
    if let Some(b) = ch.get("valueBoolean").and_then(Value::as_bool) {
        values.push(b.to_string());
    }
    if let Some(cc) = ch.get("valueCodeableConcept") {
        for coding in as_array(cc.get("coding")) {
            let code = str_at(coding, "code");
            if code.is_empty() {
                continue;
            }
            values.push(code.to_string());
            let system = str_at(coding, "system");
            if !system.is_empty() {
                values.push(format!("{system}|{code}"));
            }
        }
    }
    for coding in ch
        .get("code")
        .map(|c| as_array(c.get("coding")))
        .unwrap_or(&[])
    {
        let code = str_at(coding, "code");
        if code.is_empty() {
            continue;
        }
        for value in &values {
            out.push(TokenEntry {
                param,
                system: str_at(coding, "system").to_string(),
                code: composite_code(code, value),
                type_system: String::new(),
                type_code: String::new(),
            });
        }
    }
}

/// The indexed search parameters of a type.
pub fn search_params(rtype: ResourceType) -> &'static [SearchParam] {
    match rtype {
        ResourceType::Group => GROUP,
        ResourceType::Patient => PATIENT,
        ResourceType::Coverage => COVERAGE,
        ResourceType::Practitioner => PRACTITIONER,
        ResourceType::PractitionerRole => PRACTITIONER_ROLE,
        ResourceType::Organization => ORGANIZATION,
        ResourceType::Location => LOCATION,
        ResourceType::RelatedPerson => RELATED_PERSON,
    }
}

pub fn search_param(rtype: ResourceType, name: &str) -> Option<SearchParam> {
    search_params(rtype)
        .iter()
        .copied()
        .find(|sp| sp.name == name)
}

/// A token index entry. `type_system`/`type_code` carry `Identifier.type` for `:of-type`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenEntry {
    pub param: &'static str,
    pub system: String,
    pub code: String,
    pub type_system: String,
    pub type_code: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StringEntry {
    pub param: &'static str,
    /// `normalize_string` of the value: what `name=` matches against.
    pub norm: String,
    /// The value as written: what `name:exact=` matches against.
    pub raw: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefEntry {
    pub param: &'static str,
    /// `Type/id`.
    pub target: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexEntries {
    pub tokens: Vec<TokenEntry>,
    pub strings: Vec<StringEntry>,
    pub refs: Vec<RefEntry>,
}

/// FHIR string matching is case- and accent-insensitive: lower-case, decompose, drop combining marks.
pub fn normalize_string(s: &str) -> String {
    s.nfd()
        .filter(|c| !unicode_normalization::char::is_combining_mark(*c))
        .flat_map(char::to_lowercase)
        .collect()
}

fn str_at<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

fn as_array(v: Option<&Value>) -> &[Value] {
    v.and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// The index entries of a resource (for a Group: of its header; members are rows of their own).
pub fn extract(rtype: ResourceType, resource: &Value) -> IndexEntries {
    let mut out = IndexEntries::default();
    for sp in search_params(rtype) {
        let field = sp.expression.split_once('.').map_or("", |(_, f)| f);
        match (sp.kind, sp.name) {
            (ParamKind::Token, "identifier") => {
                for ident in as_array(resource.get("identifier")) {
                    identifier_tokens(sp.name, ident, &mut out.tokens);
                }
            }
            (ParamKind::Token, "characteristic") => {
                for ch in as_array(resource.get("characteristic")) {
                    for coding in ch
                        .get("code")
                        .map(|c| as_array(c.get("coding")))
                        .unwrap_or(&[])
                    {
                        out.tokens.push(TokenEntry {
                            param: sp.name,
                            system: str_at(coding, "system").to_string(),
                            code: str_at(coding, "code").to_string(),
                            type_system: String::new(),
                            type_code: String::new(),
                        });
                    }
                }
            }
            (ParamKind::Composite, "characteristic-value") => {
                for ch in as_array(resource.get("characteristic")) {
                    characteristic_values(sp.name, ch, &mut out.tokens);
                }
            }
            (ParamKind::Composite, _) => {}
            (ParamKind::Token, "intended-recipient") => {
                for ext in as_array(resource.get("extension")) {
                    if str_at(ext, "url") == crate::EXT_INTENDED_RECIPIENT
                        && let Some(ident) = ext.get("valueIdentifier")
                    {
                        identifier_tokens(sp.name, ident, &mut out.tokens);
                    }
                }
            }
            (ParamKind::Token, _) => {
                // A `code` element: its value is the token, under the code system FHIR binds.
                if let Some(code) = resource.get(field).and_then(Value::as_str) {
                    out.tokens.push(TokenEntry {
                        param: sp.name,
                        system: code_system(rtype, sp.name).to_string(),
                        code: code.to_string(),
                        type_system: String::new(),
                        type_code: String::new(),
                    });
                }
            }
            (ParamKind::Date, _) => {
                if let Some(day) = resource
                    .get(field)
                    .and_then(Value::as_str)
                    .and_then(crate::instant::date_index_day)
                {
                    out.tokens.push(TokenEntry {
                        param: sp.name,
                        system: String::new(),
                        code: day,
                        type_system: String::new(),
                        type_code: String::new(),
                    });
                }
            }
            (ParamKind::String, _) => {
                if let Some(s) = resource.get(field).and_then(Value::as_str) {
                    out.strings.push(StringEntry {
                        param: sp.name,
                        norm: normalize_string(s),
                        raw: s.to_string(),
                    });
                }
            }
            (ParamKind::Reference, _) => {
                let targets: Vec<&Value> = match resource.get(field) {
                    Some(Value::Array(items)) => items.iter().collect(),
                    Some(one) => vec![one],
                    None => vec![],
                };
                for r in targets {
                    if let Some(target) = r
                        .get("reference")
                        .and_then(Value::as_str)
                        .and_then(normalize_reference)
                    {
                        out.refs.push(RefEntry {
                            param: sp.name,
                            target,
                        });
                    }
                }
            }
        }
    }
    out
}

/// The code system of a `code` element a token parameter indexes (a required binding).
fn code_system(rtype: ResourceType, param: &str) -> &'static str {
    match (rtype, param) {
        (ResourceType::Patient, "gender") => "http://hl7.org/fhir/administrative-gender",
        (ResourceType::Coverage, "status") => "http://hl7.org/fhir/fm-status",
        _ => "",
    }
}

fn identifier_tokens(param: &'static str, ident: &Value, tokens: &mut Vec<TokenEntry>) {
    let system = str_at(ident, "system").to_string();
    let code = str_at(ident, "value").to_string();
    let codings = ident
        .get("type")
        .map(|t| as_array(t.get("coding")))
        .unwrap_or(&[]);
    if codings.is_empty() {
        tokens.push(TokenEntry {
            param,
            system,
            code,
            type_system: String::new(),
            type_code: String::new(),
        });
        return;
    }
    for coding in codings {
        tokens.push(TokenEntry {
            param,
            system: system.clone(),
            code: code.clone(),
            type_system: str_at(coding, "system").to_string(),
            type_code: str_at(coding, "code").to_string(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strings_lose_case_and_accents() {
        assert_eq!(normalize_string("Ångström Clinic"), "angstrom clinic");
    }

    #[test]
    fn identifiers_index_with_their_types() {
        let g = json!({"resourceType":"Group","name":"Riverside",
            "identifier":[{"system":"http://hl7.org/fhir/sid/us-npi","value":"1234567893",
              "type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0203","code":"NPI"}]}},
              {"value":"x"}],
            "managingEntity":{"reference":"Organization/payer-1"}});
        let e = extract(ResourceType::Group, &g);
        assert_eq!(e.tokens.len(), 2);
        assert_eq!(e.tokens[0].type_code, "NPI");
        assert_eq!(e.tokens[1].system, "");
        assert_eq!(e.strings[0].norm, "riverside");
        assert_eq!(e.refs[0].target, "Organization/payer-1");
    }

    #[test]
    fn coverage_references_are_indexed() {
        let c = json!({"resourceType":"Coverage","beneficiary":{"reference":"Patient/p1"},
            "payor":[{"reference":"Organization/o1"}]});
        let e = extract(ResourceType::Coverage, &c);
        assert!(e.refs.contains(&RefEntry {
            param: "beneficiary",
            target: "Patient/p1".into()
        }));
        assert!(e.refs.contains(&RefEntry {
            param: "payor",
            target: "Organization/o1".into()
        }));
    }
}
