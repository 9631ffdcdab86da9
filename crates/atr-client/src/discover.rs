//! Finding a provider's attribution lists: Group search by NPI, TIN, any identifier or name,
//! always with `_summary=true` (a list's members can run to millions), every page followed.

use atr_model::{EXT_CONTRACT_VALIDITY_PERIOD, SYSTEM_NPI, SYSTEM_TIN};
use serde::Serialize;
use serde_json::Value;

use crate::{ClientError, Fhir};

/// Most pages followed in one discovery (a provider has a handful of lists, not thousands).
const MAX_PAGES: usize = 100;

/// How to find lists; the criteria given are combined (AND).
#[derive(Debug, Clone, Default)]
pub struct Criteria {
    pub npi: Option<String>,
    pub tin: Option<String>,
    /// `system|value` (or `value`).
    pub identifier: Option<String>,
    pub name: Option<String>,
}

/// One identifier of a list.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ListIdentifier {
    pub system: String,
    pub value: String,
    /// The identifier's `type` code (NPI, TAX, …), when given.
    pub kind: Option<String>,
}

/// What discovery shows of a list (no members).
#[derive(Debug, Clone, Serialize)]
pub struct ListSummary {
    pub id: String,
    pub name: Option<String>,
    pub identifiers: Vec<ListIdentifier>,
    /// draft, open or final.
    pub status: Option<String>,
    /// The contract validity period (`YYYY-MM-DD…`).
    pub period_start: Option<String>,
    pub period_end: Option<String>,
    pub member_count: Option<u64>,
    pub version: Option<String>,
    pub last_updated: Option<String>,
}

impl Criteria {
    fn query(&self) -> Result<Vec<(String, String)>, ClientError> {
        let mut q = Vec::new();
        if let Some(npi) = &self.npi {
            q.push(("identifier".into(), format!("{SYSTEM_NPI}|{npi}")));
        }
        if let Some(tin) = &self.tin {
            q.push(("identifier".into(), format!("{SYSTEM_TIN}|{tin}")));
        }
        if let Some(i) = &self.identifier {
            q.push(("identifier".into(), i.clone()));
        }
        if let Some(n) = &self.name {
            q.push(("name".into(), n.clone()));
        }
        if q.is_empty() {
            return Err(ClientError::Config(
                "say which lists: --npi, --tin, --identifier or --name".into(),
            ));
        }
        q.push(("_summary".into(), "true".into()));
        q.push(("_count".into(), "100".into()));
        Ok(q)
    }
}

/// The lists matching `criteria`, in the Producer's order.
pub async fn discover(fhir: &Fhir, criteria: &Criteria) -> Result<Vec<ListSummary>, ClientError> {
    let query = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(criteria.query()?)
        .finish();
    let mut next = Some(fhir.url(&format!("Group?{query}")));
    let mut out = Vec::new();
    let mut pages = 0;
    while let Some(url) = next.take() {
        pages += 1;
        if pages > MAX_PAGES {
            return Err(ClientError::Unexpected(format!(
                "discovery stopped after {MAX_PAGES} pages; narrow the criteria"
            )));
        }
        let bundle = fhir.get_json(&url).await?;
        for e in bundle["entry"].as_array().into_iter().flatten() {
            if e["resource"]["resourceType"] == "Group" {
                out.push(summary(&e["resource"]));
            }
        }
        next = bundle["link"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|l| l["relation"] == "next")
            .and_then(|l| l["url"].as_str())
            .map(str::to_string);
    }
    Ok(out)
}

/// The summary of a Group resource.
pub fn summary(group: &Value) -> ListSummary {
    let period = atr_model::validate::extensions(group, EXT_CONTRACT_VALIDITY_PERIOD)
        .first()
        .map(|e| &e["valuePeriod"]);
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_string);
    ListSummary {
        id: group["id"].as_str().unwrap_or_default().to_string(),
        name: text(group.get("name")),
        identifiers: group["identifier"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|i| ListIdentifier {
                system: i["system"].as_str().unwrap_or_default().to_string(),
                value: i["value"].as_str().unwrap_or_default().to_string(),
                kind: i["type"]["coding"][0]["code"].as_str().map(str::to_string),
            })
            .collect(),
        status: atr_model::group::list_status(group).map(str::to_string),
        period_start: text(period.map(|p| &p["start"])),
        period_end: text(period.map(|p| &p["end"])),
        member_count: group["quantity"].as_u64(),
        version: text(group.get("meta").map(|m| &m["versionId"])),
        last_updated: text(group.get("meta").map(|m| &m["lastUpdated"])),
    }
}

/// The list for a contract: one carrying `identifier` (`system|value` or `value`) whose
/// contract validity period covers `date` (`YYYY-MM-DD`); the most recently updated when several
/// do. Lists without a period are taken as always valid.
pub fn pick_for_contract<'a>(
    lists: &'a [ListSummary],
    identifier: &str,
    date: &str,
) -> Option<&'a ListSummary> {
    let (system, value) = match identifier.split_once('|') {
        Some((s, v)) => (Some(s), v),
        None => (None, identifier),
    };
    lists
        .iter()
        .filter(|l| {
            l.identifiers
                .iter()
                .any(|i| i.value == value && system.is_none_or(|s| s.is_empty() || i.system == s))
        })
        .filter(|l| {
            // ISO dates compare as text; a date-time start compares by its date part.
            let starts = l
                .period_start
                .as_deref()
                .is_none_or(|s| &s[..s.len().min(10)] <= date);
            let ends = l
                .period_end
                .as_deref()
                .is_none_or(|e| &e[..e.len().min(10)] >= date);
            starts && ends
        })
        .max_by(|a, b| a.last_updated.cmp(&b.last_updated))
}
