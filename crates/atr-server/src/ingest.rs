//! From a resource's JSON text to a validated, indexed write: shared by the REST API and the bulk
//! loader, so both accept exactly the same resources.

use atr_model::contract;
use atr_model::group::{MemberEntry, assign_unique_keys, is_attribution_list, split_group};
use atr_model::validate::{group_profile, validate_group_member, validate_resource};
use atr_model::{Issue, ResourceType, index};
use atr_store::{ResourceWrite, WriteMode};
use serde_json::Value;

/// At most this many issues are listed; a roster with a million bad rows says so in one line.
const MAX_ISSUES: usize = 100;

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("the body is not valid JSON: {0}")]
    Json(String),
    #[error("the resource is a {found}, expected {expected}")]
    WrongType {
        expected: ResourceType,
        found: String,
    },
    #[error("the resource does not conform to its ATR profile")]
    Invalid(Vec<Issue>),
}

/// Parses, validates and indexes `text` as resource `rtype/id`.
pub fn prepare(
    rtype: ResourceType,
    id: &str,
    text: &str,
    mode: WriteMode,
) -> Result<ResourceWrite, IngestError> {
    if rtype == ResourceType::Group {
        let split = split_group(text).map_err(|e| IngestError::Json(e.to_string()))?;
        prepare_parts(rtype, id, split.header, Some(split.members), mode)
    } else {
        let resource =
            serde_json::from_str::<Value>(text).map_err(|e| IngestError::Json(e.to_string()))?;
        prepare_parts(rtype, id, resource, None, mode)
    }
}

/// As [`prepare`], for a resource other than a Group that is already parsed (the bulk loader
/// parses each line once).
pub fn prepare_parsed(
    rtype: ResourceType,
    id: &str,
    resource: Value,
    mode: WriteMode,
) -> Result<ResourceWrite, IngestError> {
    if rtype == ResourceType::Group {
        let text = resource.to_string();
        return prepare(rtype, id, &text, mode);
    }
    prepare_parts(rtype, id, resource, None, mode)
}

fn prepare_parts(
    rtype: ResourceType,
    id: &str,
    mut resource: Value,
    raw_members: Option<Vec<&serde_json::value::RawValue>>,
    mode: WriteMode,
) -> Result<ResourceWrite, IngestError> {
    let found = resource
        .get("resourceType")
        .and_then(Value::as_str)
        .unwrap_or("(none)");
    if found != rtype.as_str() {
        return Err(IngestError::WrongType {
            expected: rtype,
            found: found.to_string(),
        });
    }
    if let Some(obj) = resource.as_object_mut() {
        obj.insert("id".into(), Value::from(id));
    }
    let mut issues: Vec<Issue> = validate_resource(rtype, &resource)
        .into_iter()
        .filter(Issue::is_error)
        .collect();
    let attribution_list = rtype == ResourceType::Group && is_attribution_list(&resource);
    if attribution_list {
        issues.extend(contract::list_header_issues(&resource));
    }
    let contract_period = attribution_list
        .then(|| contract::contract_period(&resource))
        .flatten();
    let mut errors_beyond = 0usize;
    let members = match raw_members {
        None => None,
        Some(raw) => {
            let profile = group_profile(&resource);
            let mut entries = Vec::with_capacity(raw.len());
            for (i, r) in raw.iter().enumerate() {
                let member: Value =
                    serde_json::from_str(r.get()).map_err(|e| IngestError::Json(e.to_string()))?;
                let outside = member.get("period").and_then(|period| {
                    contract::attribution_period_issue(
                        contract_period.as_ref(),
                        period,
                        &format!("Group.member[{i}].period"),
                    )
                });
                for issue in validate_group_member(profile, &member, i)
                    .into_iter()
                    .filter(Issue::is_error)
                    .chain(outside)
                {
                    if issues.len() < MAX_ISSUES {
                        issues.push(issue);
                    } else {
                        errors_beyond += 1;
                    }
                }
                entries.push(MemberEntry::from_value(&member));
            }
            assign_unique_keys(&mut entries);
            Some(entries)
        }
    };
    if !issues.is_empty() {
        if errors_beyond > 0 {
            issues.push(Issue::error(
                "too-costly",
                format!("{errors_beyond} more errors not listed"),
            ));
        }
        return Err(IngestError::Invalid(issues));
    }
    Ok(ResourceWrite {
        rtype,
        id: id.to_string(),
        claims: contract::unique_claims(rtype, &resource),
        index: index::extract(rtype, &resource),
        resource,
        members,
        mode,
        expected_version: None,
        prestamped: None,
    })
}

/// The top-level `id` of a JSON object text, read without building the rest (a Group's members can
/// be hundreds of megabytes). Text that is not JSON at all is an error, so a client hears that
/// rather than "no id"; JSON without a string `id` is `None`.
pub fn body_id(text: &str) -> Result<Option<String>, IngestError> {
    #[derive(serde::Deserialize)]
    struct IdOnly {
        id: Option<String>,
    }
    match serde_json::from_str::<IdOnly>(text) {
        Ok(head) => Ok(head.id),
        Err(e) if e.is_syntax() || e.is_eof() => Err(IngestError::Json(e.to_string())),
        Err(_) => Ok(None),
    }
}
