//! `GET [base]/AuditEvent` and `GET [base]/AuditEvent/{id}`: the access audit log for the
//! payer's administration clients (everyone else: 403).
//!
//! Search: `date` (`ge`, `gt`, `le`, `lt`, `eq` or no prefix: the range the value covers),
//! `agent` (a client id), `entity` (`Type/id`, an absolute URL under this base, or a bare Group
//! id), `_count`; newest first, paged by an opaque `_cursor` in the `next` link.

use atr_auth::Interaction;
use atr_model::instant::parse_fhir_range;
use atr_store::AuditQuery;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use super::{check_id, fhir_json, query_pairs};
use crate::audit::audit_event_resource;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::search_params::{DEFAULT_COUNT, MAX_COUNT};
use crate::state::AppState;

const RTYPE: &str = "AuditEvent";

fn require_reader(caller: &Caller, interaction: Interaction) -> ApiResult<()> {
    caller.require_admin("the audit log")?;
    caller.require(RTYPE, interaction)
}

pub async fn read(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    require_reader(&caller, Interaction::Read)?;
    check_id(&id)?;
    let record = state
        .store
        .audit_event(&id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("AuditEvent/{id} does not exist")))?;
    Ok(fhir_json(
        StatusCode::OK,
        &audit_event_resource(&record, &state.auth.token_url),
    ))
}

pub async fn search(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    require_reader(&caller, Interaction::Search)?;
    let pairs = query_pairs(raw.as_deref());
    let mut query = AuditQuery {
        limit: DEFAULT_COUNT,
        ..Default::default()
    };
    // What the `self` and `next` links repeat (without the cursor).
    let mut kept: Vec<(String, String)> = Vec::new();
    for (name, value) in &pairs {
        match name.as_str() {
            "date" => {
                date_clause(&mut query, value)?;
                kept.push((name.clone(), value.clone()));
            }
            "agent" => {
                query.client_id = Some(value.clone());
                kept.push((name.clone(), value.clone()));
            }
            "entity" => {
                query.entity = Some(entity_reference(&state.base_url, value)?);
                kept.push((name.clone(), value.clone()));
            }
            "_count" => {
                let n: u32 = value.parse().map_err(|_| {
                    ApiError::bad_param("_count", format!("_count {value:?} is not a number"))
                })?;
                query.limit = n.min(MAX_COUNT);
            }
            "_cursor" => query.before = Some(parse_cursor(value)?),
            // Formatting parameters the negotiation layer already handled.
            "_format" | "_pretty" => {}
            other => {
                return Err(ApiError::bad_param(
                    other,
                    format!(
                        "unknown AuditEvent search parameter {other:?} (supported: date, agent, entity, _count)"
                    ),
                ));
            }
        }
    }
    kept.push(("_count".into(), query.limit.to_string()));
    // One more than asked says whether there is a next page.
    let mut page_query = query.clone();
    page_query.limit = query.limit.saturating_add(1);
    let mut records = state.store.audit_events(&page_query).await?;
    let more = records.len() > query.limit as usize;
    records.truncate(query.limit as usize);

    let url_with = |extra: Option<String>| {
        let mut ser = form_urlencoded::Serializer::new(String::new());
        ser.extend_pairs(kept.iter());
        if let Some(c) = extra {
            ser.append_pair("_cursor", &c);
        }
        format!("{}/{RTYPE}?{}", state.base_url, ser.finish())
    };
    let mut links = vec![
        json!({"relation": "self", "url": url_with(query.before.as_ref().map(|(r, i)| format!("{r}.{i}")))}),
    ];
    if more && let Some(last) = records.last() {
        links.push(json!({"relation": "next", "url": url_with(Some(format!("{}.{}", last.recorded, last.id)))}));
    }
    let entries: Vec<Value> = records
        .iter()
        .map(|r| {
            json!({
                "fullUrl": format!("{}/{RTYPE}/{}", state.base_url, r.id),
                "resource": audit_event_resource(r, &state.auth.token_url),
                "search": {"mode": "match"},
            })
        })
        .collect();
    let bundle = json!({
        "resourceType": "Bundle",
        "id": uuid::Uuid::now_v7().to_string(),
        "meta": {"lastUpdated": atr_model::instant::fhir_instant(atr_model::instant::now_micros())},
        "type": "searchset",
        "link": links,
        "entry": entries,
    });
    Ok(fhir_json(StatusCode::OK, &bundle))
}

/// Narrows `query` by one `date` value; several values all apply (`date=ge…&date=le…`).
fn date_clause(query: &mut AuditQuery, value: &str) -> ApiResult<()> {
    let (prefix, date) = match value.get(..2) {
        Some(p @ ("ge" | "gt" | "le" | "lt" | "eq")) => (p, &value[2..]),
        _ => ("eq", value),
    };
    let range = parse_fhir_range(date).map_err(|e| ApiError::bad_param("date", e.to_string()))?;
    // `range.end` is exclusive: the first instant after the value's precision.
    let (since, until) = match prefix {
        "ge" => (Some(range.start), None),
        "gt" => (Some(range.end), None),
        "le" => (None, Some(range.end - 1)),
        "lt" => (None, Some(range.start - 1)),
        _ => (Some(range.start), Some(range.end - 1)),
    };
    if let Some(s) = since {
        query.since = Some(query.since.map_or(s, |q| q.max(s)));
    }
    if let Some(u) = until {
        query.until = Some(query.until.map_or(u, |q| q.min(u)));
    }
    Ok(())
}

/// `Type/id` from an `entity` value: a relative reference, an absolute one under this server's
/// base, or a bare id (a Group: the lists are what the log is about).
fn entity_reference(base: &str, value: &str) -> ApiResult<String> {
    let relative = value
        .strip_prefix(base)
        .map(|r| r.trim_start_matches('/'))
        .unwrap_or(value);
    let reference = match relative.split_once('/') {
        Some((rtype, id)) => {
            check_id(id)?;
            if !rtype.chars().all(|c| c.is_ascii_alphabetic()) || rtype.is_empty() {
                return Err(ApiError::bad_param(
                    "entity",
                    format!("{value:?} is not a Type/id reference"),
                ));
            }
            format!("{rtype}/{id}")
        }
        None => {
            check_id(relative)?;
            format!("Group/{relative}")
        }
    };
    Ok(reference)
}

fn parse_cursor(value: &str) -> ApiResult<(i64, String)> {
    let bad = || ApiError::bad_param("_cursor", "not a cursor this server made");
    let (recorded, id) = value.split_once('.').ok_or_else(bad)?;
    let recorded: i64 = recorded.parse().map_err(|_| bad())?;
    check_id(id).map_err(|_| bad())?;
    Ok((recorded, id.to_string()))
}

/// The CapabilityStatement's entry for AuditEvent.
pub fn capability_entry() -> Value {
    json!({
        "type": RTYPE,
        "profile": "http://hl7.org/fhir/StructureDefinition/AuditEvent",
        "documentation": "The access audit log, for the payer's administration clients only (403 for others): every bulk export kick-off, completed status request and file download, member operation ($member-add, $member-remove, $confirm-attribution-list), direct write and Subscription create, update and delete, with the client (agent), the Group or resource (entity), when (recorded) and the outcome (0 success, 4 refused, 8 server failure; outcomeDesc has the HTTP status). Newest first.",
        "interaction": [{"code": "read"}, {"code": "search-type"}],
        "searchParam": [
            {"name": "date", "type": "date", "documentation": "recorded; ge, gt, le, lt, eq"},
            {"name": "agent", "type": "token", "documentation": "the client id"},
            {"name": "entity", "type": "reference", "documentation": "Type/id (a bare id is a Group)"},
            {"name": "_count", "type": "number", "documentation": "entries per page (at most 1000)"}
        ],
    })
}
