//! The access audit log, HTTP side: which client pulled, changed or subscribed to which list,
//! when, and how it was answered.
//!
//! A handler describes the access with an [`AuditDraft`] before doing it. A change hands the
//! finished record to the store's `*_audited` method, so it commits with the change; a read, a
//! refusal or a failure is appended right after the answer is known ([`record_outcome`]). Entries
//! hold ids, never resource content, and are served as R4 `AuditEvent` resources
//! ([`audit_event_resource`]) to administration clients only.

use atr_model::instant::{fhir_instant, now_micros};
use atr_store::AuditRecord;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use crate::auth::Caller;
use crate::error::ApiResult;
use crate::state::AppState;

/// FHIR's AuditEvent action codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditAction {
    Create,
    Read,
    Update,
    Delete,
    Execute,
}

impl AuditAction {
    pub fn code(self) -> &'static str {
        match self {
            AuditAction::Create => "C",
            AuditAction::Read => "R",
            AuditAction::Update => "U",
            AuditAction::Delete => "D",
            AuditAction::Execute => "E",
        }
    }
}

/// An access about to happen: who, what, on which list.
#[derive(Debug, Clone)]
pub struct AuditDraft {
    client_id: String,
    action: AuditAction,
    subtype: String,
    entity: Option<String>,
    detail: Option<String>,
}

impl AuditDraft {
    /// `subtype` is the interaction (`create`, `update`, `delete`) or operation (`$member-add`,
    /// `bulk-status`, …); `entity` the `Type/id` it is about, when known.
    pub fn new(
        caller: &Caller,
        action: AuditAction,
        subtype: impl Into<String>,
        entity: Option<String>,
    ) -> AuditDraft {
        AuditDraft {
            client_id: caller.client_id.clone(),
            action,
            subtype: subtype.into(),
            entity,
            detail: None,
        }
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> AuditDraft {
        self.detail = Some(detail.into());
        self
    }

    pub fn with_entity(mut self, entity: Option<String>) -> AuditDraft {
        self.entity = entity;
        self
    }

    /// The entry for an answer with `status`, stamped now.
    pub fn record(&self, status: StatusCode) -> AuditRecord {
        AuditRecord {
            id: uuid::Uuid::now_v7().to_string(),
            recorded: now_micros(),
            client_id: self.client_id.clone(),
            action: self.action.code().to_string(),
            subtype: self.subtype.clone(),
            entity: self.entity.clone(),
            detail: self.detail.clone(),
            status: i64::from(status.as_u16()),
        }
    }
}

/// Appends the entry for however `result` turned out. A failure to write it is logged, not
/// answered: the client's request was served (or refused) either way.
// Not an `async fn`: the future must not hold `result` (a response body is not `Sync`).
pub fn record_outcome<'a>(
    state: &'a AppState,
    draft: &AuditDraft,
    result: &ApiResult<Response>,
) -> impl Future<Output = ()> + Send + 'a {
    let status = match result {
        Ok(resp) => resp.status(),
        Err(e) => e.status,
    };
    let record = draft.record(status);
    async move { append(state, &record).await }
}

/// Appends the entry when `result` is a refusal or failure (a success was recorded with its
/// change).
pub fn record_failure<'a>(
    state: &'a AppState,
    draft: &AuditDraft,
    result: &ApiResult<Response>,
) -> impl Future<Output = ()> + Send + 'a {
    let record = result.as_ref().err().map(|e| draft.record(e.status));
    async move {
        if let Some(record) = record {
            append(state, &record).await;
        }
    }
}

pub async fn append(state: &AppState, record: &AuditRecord) {
    if let Err(e) = state.store.record_audit(record).await {
        tracing::error!(error = %e, subtype = %record.subtype, "audit entry not written");
    }
}

/// `AuditEvent.outcome` for an HTTP status: 0 success, 4 minor failure (refused), 8 serious
/// failure (the server's).
fn outcome_code(status: i64) -> &'static str {
    match status {
        s if s < 400 => "0",
        s if s < 500 => "4",
        _ => "8",
    }
}

/// FHIR's restful-interaction code for a subtype.
fn interaction_code(subtype: &str) -> &'static str {
    match subtype {
        "create" => "create",
        "update" => "update",
        "delete" => "delete",
        "read" => "read",
        _ => "operation",
    }
}

/// The system of the server's own subtype codes (operation names and bulk steps).
pub const SUBTYPE_SYSTEM: &str = "urn:atr:audit-subtype";

/// The system of `agent.who.identifier`: client ids are issued by this server's token endpoint.
pub fn client_id_system(token_url: &str) -> String {
    token_url.to_string()
}

/// An entry as an R4 `AuditEvent`.
pub fn audit_event_resource(r: &AuditRecord, token_url: &str) -> Value {
    let mut event = json!({
        "resourceType": "AuditEvent",
        "id": r.id,
        "meta": {"lastUpdated": fhir_instant(r.recorded)},
        "type": {
            "system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
            "code": "rest",
            "display": "RESTful Operation"
        },
        "subtype": [
            {"system": "http://hl7.org/fhir/restful-interaction", "code": interaction_code(&r.subtype)},
            {"system": SUBTYPE_SYSTEM, "code": r.subtype}
        ],
        "action": r.action,
        "recorded": fhir_instant(r.recorded),
        "outcome": outcome_code(r.status),
        "outcomeDesc": format!("HTTP {}", r.status),
        "agent": [{
            "type": {"coding": [{
                "system": "http://dicom.nema.org/resources/ontology/DCM",
                "code": "110153",
                "display": "Source Role ID"
            }]},
            "who": {
                "identifier": {"system": client_id_system(token_url), "value": r.client_id},
                "display": r.client_id
            },
            "altId": r.client_id,
            "requestor": true
        }],
        "source": {
            "observer": {"display": "atr Producer"},
            "type": [{
                "system": "http://terminology.hl7.org/CodeSystem/security-source-type",
                "code": "3",
                "display": "Web Server"
            }]
        }
    });
    if r.entity.is_some() || r.detail.is_some() {
        let mut entity = json!({
            "type": {
                "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                "code": "2",
                "display": "System Object"
            }
        });
        if let Some(reference) = &r.entity {
            entity["what"] = json!({"reference": reference});
        }
        if let Some(detail) = &r.detail {
            entity["description"] = json!(detail);
        }
        event["entity"] = json!([entity]);
    }
    event
}
