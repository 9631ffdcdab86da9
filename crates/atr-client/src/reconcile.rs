//! The reconciliation operations, with every parameter combination the IG names:
//! `$member-add`, `$member-remove`, `$attribution-status` and `$confirm-attribution-list`.

use reqwest::Method;
use serde_json::{Value, json};

use crate::error::outcome_text;
use crate::{ClientError, Fhir};

/// Who a member operation is about: by the payer's member id (with a provider's NPI), or by
/// references (with a provider's and a coverage's).
#[derive(Debug, Clone, Default)]
pub struct MemberSelector {
    /// `system|value` or `value`.
    pub member_id: Option<String>,
    pub provider_npi: Option<String>,
    pub patient: Option<String>,
    pub provider: Option<String>,
    pub coverage: Option<String>,
    /// `$member-add`: the attribution period.
    pub period_start: Option<String>,
    pub period_end: Option<String>,
}

fn identifier(text: &str) -> Value {
    match text.split_once('|') {
        Some((system, value)) => json!({"system": system, "value": value}),
        None => json!({"value": text}),
    }
}

impl MemberSelector {
    fn parameters(&self, with_period: bool) -> Value {
        let mut p = Vec::new();
        if let Some(m) = &self.member_id {
            p.push(json!({"name": "memberId", "valueIdentifier": identifier(m)}));
        }
        if let Some(n) = &self.provider_npi {
            let npi = if n.contains('|') {
                identifier(n)
            } else {
                json!({"system": atr_model::SYSTEM_NPI, "value": n})
            };
            p.push(json!({"name": "providerNpi", "valueIdentifier": npi}));
        }
        for (name, r) in [
            ("patientReference", &self.patient),
            ("providerReference", &self.provider),
            ("coverageReference", &self.coverage),
        ] {
            if let Some(r) = r {
                p.push(json!({"name": name, "valueReference": {"reference": r}}));
            }
        }
        if with_period && (self.period_start.is_some() || self.period_end.is_some()) {
            let mut period = json!({});
            if let Some(s) = &self.period_start {
                period["start"] = json!(s);
            }
            if let Some(e) = &self.period_end {
                period["end"] = json!(e);
            }
            p.push(json!({"name": "attributionPeriod", "valuePeriod": period}));
        }
        json!({"resourceType": "Parameters", "parameter": p})
    }
}

/// What the Producer said, and the new Group version when there is one.
#[derive(Debug, Clone, serde::Serialize)]
pub struct OperationResult {
    pub status: u16,
    /// The Producer's OperationOutcome in plain words (or the Bundle for `$attribution-status`).
    pub message: String,
    pub group_version: Option<String>,
    pub body: Value,
}

async fn operation(
    fhir: &Fhir,
    group_id: &str,
    name: &str,
    parameters: &Value,
    if_match: Option<&str>,
) -> Result<OperationResult, ClientError> {
    let mut extra = Vec::new();
    if let Some(v) = if_match {
        extra.push(("If-Match", format!("W/\"{v}\"")));
    }
    let (status, headers, body) = fhir
        .send_json(
            Method::POST,
            &format!("Group/{group_id}/{name}"),
            parameters,
            &extra,
        )
        .await?;
    let group_version = headers
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .map(|t| t.trim_start_matches("W/").trim_matches('"').to_string());
    let message = if body["resourceType"] == "OperationOutcome" {
        outcome_text(&body)
    } else {
        String::new()
    };
    Ok(OperationResult {
        status: status.as_u16(),
        message,
        group_version,
        body,
    })
}

pub async fn member_add(
    fhir: &Fhir,
    group_id: &str,
    who: &MemberSelector,
    if_match: Option<&str>,
) -> Result<OperationResult, ClientError> {
    operation(
        fhir,
        group_id,
        "$member-add",
        &who.parameters(true),
        if_match,
    )
    .await
}

pub async fn member_remove(
    fhir: &Fhir,
    group_id: &str,
    who: &MemberSelector,
    if_match: Option<&str>,
) -> Result<OperationResult, ClientError> {
    operation(
        fhir,
        group_id,
        "$member-remove",
        &who.parameters(false),
        if_match,
    )
    .await
}

/// `$attribution-status`: the member's entries and the resources about them (a Bundle).
pub async fn attribution_status(
    fhir: &Fhir,
    group_id: &str,
    who: &MemberSelector,
) -> Result<OperationResult, ClientError> {
    operation(
        fhir,
        group_id,
        "$attribution-status",
        &who.parameters(false),
        None,
    )
    .await
}

/// `$confirm-attribution-list`: any 2xx is success (the IG's text says "201 Accepted").
pub async fn confirm(fhir: &Fhir, group_id: &str) -> Result<OperationResult, ClientError> {
    operation(
        fhir,
        group_id,
        "$confirm-attribution-list",
        &json!({"resourceType": "Parameters"}),
        None,
    )
    .await
}
