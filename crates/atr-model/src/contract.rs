//! The data-model rules of seed 000 that go beyond the profiles: an attribution list is the list
//! of one contract, named in `Group.identifier` with its validity period in
//! `ext-contractValidityPeriod`; one list per contract; attribution periods within the contract;
//! member id + payer + contract + plan unique among Coverages.
//!
//! The profiles leave `Group.identifier` open and the extension 0..1, so the IG's own examples pass
//! validation without a contract identifier. These rules are what a Producer must hold itself to
//! when it writes (the REST API, `atr load`, `atr roster reload` and `$member-add` all call them);
//! a document that merely conforms to the profiles is still readable.
//!
//! The IG names no identifier type for contracts, so a contract identifier is recognised by what
//! it says: its `type` (text, or a coding's code or display) or its `system` mentions "contract"
//! (`docs/design-notes.md`, "Contract identifiers").

use serde_json::Value;

use crate::{EXT_CONTRACT_VALIDITY_PERIOD, Issue, ResourceType, SYSTEM_V2_0203};

/// True when `ident` (a `Group.identifier`) is a contract identifier.
pub fn is_contract_identifier(ident: &Value) -> bool {
    let says_contract =
        |s: Option<&str>| s.is_some_and(|s| s.to_ascii_lowercase().contains("contract"));
    let ty = ident.get("type");
    let typed = says_contract(ty.and_then(|t| t.get("text")).and_then(Value::as_str))
        || ty
            .and_then(|t| t.get("coding"))
            .and_then(Value::as_array)
            .is_some_and(|codings| {
                codings.iter().any(|c| {
                    says_contract(c.get("code").and_then(Value::as_str))
                        || says_contract(c.get("display").and_then(Value::as_str))
                })
            });
    typed || says_contract(ident.get("system").and_then(Value::as_str))
}

/// The contract identifiers of a Group header, as `(system, value)` (a value is required; the
/// system may be empty).
pub fn contract_identifiers(header: &Value) -> Vec<(String, String)> {
    header
        .get("identifier")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
        .iter()
        .filter(|i| is_contract_identifier(i))
        .filter_map(|i| {
            let value = i.get("value").and_then(Value::as_str)?;
            let system = i.get("system").and_then(Value::as_str).unwrap_or("");
            (!value.is_empty()).then(|| (system.to_string(), value.to_string()))
        })
        .collect()
}

/// A period's date bounds (`YYYY`, `YYYY-MM`, `YYYY-MM-DD`, or the date part of a dateTime).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DateSpan {
    pub start: Option<String>,
    pub end: Option<String>,
}

impl DateSpan {
    /// The bounds of a FHIR `Period` value.
    pub fn of(period: &Value) -> DateSpan {
        let bound = |k: &str| {
            period
                .get(k)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(|s| s.get(..10).unwrap_or(s).to_string())
        };
        DateSpan {
            start: bound("start"),
            end: bound("end"),
        }
    }

    /// True when the two spans share at least a day. Dates of different precision compare on
    /// their common prefix ("2026" overlaps "2026-05-01"); a missing bound is open.
    pub fn overlaps(&self, other: &DateSpan) -> bool {
        let before = |end: &Option<String>, start: &Option<String>| match (end, start) {
            (Some(e), Some(s)) => {
                let n = e.len().min(s.len());
                e[..n] < s[..n]
            }
            _ => false,
        };
        !before(&self.end, &other.start) && !before(&other.end, &self.start)
    }

    /// `start–end` for messages, with `…` for an open bound.
    pub fn shown(&self) -> String {
        format!(
            "{}–{}",
            self.start.as_deref().unwrap_or("…"),
            self.end.as_deref().unwrap_or("…")
        )
    }
}

/// The contract validity period of a Group header.
pub fn contract_period(header: &Value) -> Option<DateSpan> {
    header
        .get("extension")?
        .as_array()?
        .iter()
        .find(|e| e.get("url").and_then(Value::as_str) == Some(EXT_CONTRACT_VALIDITY_PERIOD))?
        .get("valuePeriod")
        .map(DateSpan::of)
}

/// The header rules an attribution list must meet to be written: a contract identifier in
/// `Group.identifier` and a contract validity period.
pub fn list_header_issues(header: &Value) -> Vec<Issue> {
    let mut issues = Vec::new();
    if contract_identifiers(header).is_empty() {
        issues.push(
            Issue::error(
                "required",
                "an attribution list SHALL carry its contract identifier in Group.identifier (an \
                 identifier whose type or system names the contract, e.g. type.text \"Contract \
                 Identifier\", with a value)",
            )
            .at("Group.identifier"),
        );
    }
    if contract_period(header).is_none() {
        issues.push(
            Issue::error(
                "required",
                "an attribution list SHALL give the contract's validity period in \
                 ext-contractValidityPeriod (valuePeriod)",
            )
            .at(format!("Group.extension('{EXT_CONTRACT_VALIDITY_PERIOD}')")),
        );
    }
    issues
}

/// An attribution period that shares no day with the contract is refused: it cannot be an
/// attribution under this contract. One that overlaps it only in part is accepted, because payers
/// carry the member's own span (an enrolment that began before the contract, an open end) and
/// the contract period already bounds what the list means; clipping it would change their data.
pub fn attribution_period_issue(
    contract: Option<&DateSpan>,
    period: &Value,
    at: &str,
) -> Option<Issue> {
    let contract = contract?;
    let span = DateSpan::of(period);
    (!span.overlaps(contract)).then(|| {
        Issue::error(
            "business-rule",
            format!(
                "the attribution period {} lies wholly outside the contract validity period {}",
                span.shown(),
                contract.shown()
            ),
        )
        .at(at)
    })
}

/// A value no other resource may hold at the same time (one list per contract; one Coverage per
/// member id, payer, contract and plan), and how to name it in an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UniqueClaim {
    pub key: String,
    pub what: String,
    /// The element that carries the value, for an issue's `expression`.
    pub element: &'static str,
}

/// The claims a resource makes: an attribution list claims its contract identifiers; a Coverage
/// with a member identifier and a payer claims member id + payer + contract + plan.
pub fn unique_claims(rtype: ResourceType, resource: &Value) -> Vec<UniqueClaim> {
    match rtype {
        ResourceType::Group if crate::group::is_attribution_list(resource) => {
            contract_identifiers(resource)
                .into_iter()
                .map(|(system, value)| UniqueClaim {
                    key: format!("contract\u{1f}{system}\u{1f}{value}"),
                    what: format!("the contract identifier {system}|{value}"),
                    element: "Group.identifier",
                })
                .collect()
        }
        ResourceType::Coverage => coverage_claim(resource).into_iter().collect(),
        _ => Vec::new(),
    }
}

fn coverage_claim(c: &Value) -> Option<UniqueClaim> {
    let member = c
        .get("identifier")?
        .as_array()?
        .iter()
        .find(|i| has_type(i, "MB"))?;
    let member = format!(
        "{}|{}",
        member.get("system").and_then(Value::as_str).unwrap_or(""),
        member.get("value").and_then(Value::as_str)?
    );
    let payer = c
        .get("payor")?
        .as_array()?
        .iter()
        .filter_map(|p| {
            p.get("reference")
                .and_then(Value::as_str)
                .map(str::to_string)
                .or_else(|| {
                    let i = p.get("identifier")?;
                    Some(format!(
                        "{}|{}",
                        i.get("system").and_then(Value::as_str).unwrap_or(""),
                        i.get("value").and_then(Value::as_str)?
                    ))
                })
        })
        .next()?;
    let plan = c
        .get("class")
        .and_then(Value::as_array)
        .and_then(|classes| {
            classes.iter().find(|cl| {
                cl.get("type")
                    .and_then(|t| t.get("coding"))
                    .and_then(Value::as_array)
                    .is_some_and(|cs| {
                        cs.iter()
                            .any(|c| c.get("code").and_then(Value::as_str) == Some("plan"))
                    })
            })
        })
        .and_then(|cl| cl.get("value").and_then(Value::as_str))
        .unwrap_or("");
    let mut contracts: Vec<&str> = c
        .get("contract")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
        .iter()
        .filter_map(|r| r.get("reference").and_then(Value::as_str))
        .collect();
    contracts.sort_unstable();
    let contract = contracts.join(",");
    Some(UniqueClaim {
        key: format!("coverage\u{1f}{member}\u{1f}{payer}\u{1f}{contract}\u{1f}{plan}"),
        element: "Coverage.identifier",
        what: format!(
            "member id {member} with payer {payer}{}{}",
            if plan.is_empty() {
                String::new()
            } else {
                format!(", plan {plan}")
            },
            if contract.is_empty() {
                String::new()
            } else {
                format!(", contract {contract}")
            },
        ),
    })
}

/// An identifier whose type carries the v2-0203 `code`.
fn has_type(ident: &Value, code: &str) -> bool {
    ident
        .get("type")
        .and_then(|t| t.get("coding"))
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                c.get("code").and_then(Value::as_str) == Some(code)
                    && c.get("system")
                        .and_then(Value::as_str)
                        .is_none_or(|s| s == SYSTEM_V2_0203)
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn contract_identifiers_are_told_by_type_or_system() {
        let g = json!({"identifier": [
            {"system": "http://hl7.org/fhir/sid/us-npi", "value": "1234567893"},
            {"type": {"text": "Contract Identifier"}, "system": "https://p.example/sid/x", "value": "C1"},
            {"system": "https://p.example/fhir/sid/contract", "value": "C2"},
            {"type": {"coding": [{"code": "CONTRACT"}]}, "value": "C3"},
            {"type": {"text": "Contract"}, "system": "s"},
        ]});
        let found: Vec<String> = contract_identifiers(&g)
            .into_iter()
            .map(|(_, v)| v)
            .collect();
        assert_eq!(found, ["C1", "C2", "C3"]);
    }

    #[test]
    fn periods_overlap_on_their_common_precision() {
        let contract = DateSpan::of(&json!({"start": "2026-01-01", "end": "2026-12-31"}));
        let inside = |p: Value| DateSpan::of(&p).overlaps(&contract);
        assert!(inside(json!({"start": "2026-03-01", "end": "2026-04-01"})));
        assert!(inside(json!({"start": "2025-06-01", "end": "2026-01-01"})));
        assert!(inside(json!({"start": "2026"})));
        assert!(inside(json!({"end": "2026-01-01T10:00:00Z"})));
        assert!(inside(json!({})));
        assert!(!inside(json!({"start": "2027-01-01"})));
        assert!(!inside(json!({"start": "2024-01-01", "end": "2025-12-31"})));
    }

    #[test]
    fn a_coverage_claims_member_payer_contract_and_plan() {
        let c = json!({"resourceType": "Coverage",
            "identifier": [{"type": {"coding": [{"system": SYSTEM_V2_0203, "code": "MB"}]}, "system": "m", "value": "M1"}],
            "payor": [{"reference": "Organization/p"}],
            "class": [{"type": {"coding": [{"code": "plan"}]}, "value": "PLAN-A"}]});
        let claims = unique_claims(ResourceType::Coverage, &c);
        assert_eq!(claims.len(), 1);
        assert!(claims[0].what.contains("M1") && claims[0].what.contains("PLAN-A"));
        let mut other_plan = c.clone();
        other_plan["class"][0]["value"] = json!("PLAN-B");
        assert_ne!(unique_claims(ResourceType::Coverage, &other_plan), claims);
        let mut no_member = c.clone();
        no_member["identifier"] = json!([]);
        assert!(unique_claims(ResourceType::Coverage, &no_member).is_empty());
    }
}
