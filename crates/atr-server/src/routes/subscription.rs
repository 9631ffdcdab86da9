//! `atr-list-change` Subscriptions (R4 Backport): create, read, search, update, delete, and the
//! Backport's `$status` and `$events`.
//!
//! A Subscription belongs to the client that made it: another client's is answered as absent.
//! Naming a Group the client may not access is 401, as the IG requires, and nothing is stored.
//! The status is the server's: a new or re-enabled Subscription is `requested` until its
//! endpoint answers the handshake.

use atr_auth::Interaction;
use atr_model::instant::{fhir_instant, now_micros};
use atr_model::{Issue, ResourceType, operation_outcome};
use atr_notify::{
    ListChangeEvent, ListSubscription, Notification, NotificationKind, PayloadContent,
    SubscriptionStatus,
};
use atr_store::{SubscriptionRecord, SubscriptionWrite};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};

use super::resource::if_match;
use super::{check_id, fhir_json, query_pairs, version_headers};
use crate::audit::{self, AuditAction, AuditDraft};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

const RTYPE: &str = "Subscription";

/// Most events one `$events` call returns.
pub const MAX_EVENTS_PER_QUERY: u32 = 1000;

/// Create, update and delete are audited: a success in its own transaction, a refusal right
/// after. The entry's entity is the Group the Subscription is on.
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    // The server assigns ids on create; a client-sent id is ignored, as FHIR says.
    let id = uuid::Uuid::now_v7().to_string();
    let mut draft = AuditDraft::new(&caller, AuditAction::Create, "create", None)
        .with_detail(format!("Subscription/{id}"));
    let result = create_subscription(&state, &caller, &id, &body, &mut draft).await;
    audit::record_failure(&state, &draft, &result).await;
    result
}

async fn create_subscription(
    state: &AppState,
    caller: &Caller,
    id: &str,
    body: &[u8],
    draft: &mut AuditDraft,
) -> ApiResult<Response> {
    caller.require(RTYPE, Interaction::Create)?;
    let write = accepted(state, caller, id, body).await?;
    *draft = draft
        .clone()
        .with_entity(Some(format!("Group/{}", write.group_id)));
    let record = state
        .store
        .create_subscription_audited(&write, now_micros(), &draft.record(StatusCode::CREATED))
        .await?;
    state.notifier.wake();
    let mut resp = respond(&record, StatusCode::CREATED);
    if let Ok(v) = HeaderValue::from_str(&format!("{}/Subscription/{}", state.base_url, record.id))
    {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(resp)
}

pub async fn read(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    caller.require(RTYPE, Interaction::Read)?;
    let record = owned(&state, &caller, &id).await?;
    Ok(respond(&record, StatusCode::OK))
}

/// Update, or create with the client's id when there is none (FHIR's update-as-create).
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    let mut draft = AuditDraft::new(&caller, AuditAction::Update, "update", None)
        .with_detail(format!("Subscription/{id}"));
    let result = update_subscription(&state, &caller, &id, &headers, &body, &mut draft).await;
    audit::record_failure(&state, &draft, &result).await;
    result
}

async fn update_subscription(
    state: &AppState,
    caller: &Caller,
    id: &str,
    headers: &HeaderMap,
    body: &[u8],
    draft: &mut AuditDraft,
) -> ApiResult<Response> {
    check_id(id)?;
    caller.require(RTYPE, Interaction::Update)?;
    let expected = if_match(headers)?;
    // No update-as-create: ids are the server's (POST). So another client's id answers exactly as
    // an id nobody holds, and a PUT cannot tell a client that someone else subscribed.
    let missing = || {
        ApiError::not_found(format!(
            "Subscription/{id} does not exist (create a Subscription with POST; the server assigns its id)"
        ))
    };
    if !state
        .store
        .subscription(id)
        .await?
        .is_some_and(|e| owns(caller, &e))
    {
        return Err(missing());
    }
    // A body that is not JSON is refused by `accepted`; one that is must carry this id.
    if let Ok(resource) = serde_json::from_slice::<Value>(body) {
        match resource.get("id").and_then(Value::as_str) {
            Some(body_id) if body_id == id => {}
            Some(body_id) => {
                return Err(ApiError::bad_request(format!(
                    "the body's id {body_id:?} does not match the URL's {id:?}"
                ))
                .at("Subscription.id"));
            }
            None => {
                return Err(
                    ApiError::bad_request("an update must carry the resource's id")
                        .at("Subscription.id"),
                );
            }
        }
    }
    let write = accepted(state, caller, id, body).await?;
    *draft = draft
        .clone()
        .with_entity(Some(format!("Group/{}", write.group_id)));
    let now = now_micros();
    let record = state
        .store
        .update_subscription_audited(&write, expected, now, &draft.record(StatusCode::OK))
        .await?
        .ok_or_else(missing)?;
    state.notifier.wake();
    Ok(respond(&record, StatusCode::OK))
}

pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let mut draft = AuditDraft::new(&caller, AuditAction::Delete, "delete", None)
        .with_detail(format!("Subscription/{id}"));
    let result = delete_subscription(&state, &caller, &id, &mut draft).await;
    audit::record_failure(&state, &draft, &result).await;
    result
}

async fn delete_subscription(
    state: &AppState,
    caller: &Caller,
    id: &str,
    draft: &mut AuditDraft,
) -> ApiResult<Response> {
    caller.require(RTYPE, Interaction::Delete)?;
    let record = owned(state, caller, id).await?;
    *draft = draft
        .clone()
        .with_entity(Some(format!("Group/{}", record.group_id)));
    state
        .store
        .delete_subscription_audited(id, &draft.record(StatusCode::OK))
        .await?;
    Ok(fhir_json(
        StatusCode::OK,
        &operation_outcome(&[Issue::information(format!(
            "Subscription/{id} deleted; nothing more will be sent"
        ))]),
    ))
}

/// The caller's Subscriptions (a payer administrator's: all), narrowed by `_id`, `status`,
/// `filter-criteria` (`Group/{id}`) or `url` (the endpoint).
pub async fn search(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(query): RawQuery,
) -> ApiResult<Response> {
    caller.require(RTYPE, Interaction::Search)?;
    let mut records = state
        .store
        .subscriptions((!caller.admin).then_some(caller.client_id.as_str()))
        .await?;
    for (name, value) in query_pairs(query.as_deref()) {
        let wanted: Vec<&str> = value.split(',').collect();
        match name.as_str() {
            "_id" => records.retain(|r| wanted.contains(&r.id.as_str())),
            "status" => records.retain(|r| wanted.contains(&r.status.as_str())),
            "filter-criteria" => records.retain(|r| {
                wanted.iter().any(|w| {
                    atr_notify::subscription::parse_group_filter(w).as_deref() == Some(&r.group_id)
                })
            }),
            "url" => {
                records.retain(|r| endpoint_of(r).is_some_and(|e| wanted.contains(&e.as_str())))
            }
            "_format" | "_pretty" | "_count" => {}
            other => {
                return Err(ApiError::bad_param(
                    other,
                    format!(
                        "Subscription search supports _id, status, filter-criteria and url, not {other}"
                    ),
                ));
            }
        }
    }
    let entries: Vec<Value> = records
        .iter()
        .map(|r| {
            json!({
                "fullUrl": format!("{}/Subscription/{}", state.base_url, r.id),
                "resource": resource_of(r),
                "search": {"mode": "match"},
            })
        })
        .collect();
    Ok(fhir_json(
        StatusCode::OK,
        &json!({
            "resourceType": "Bundle",
            "id": uuid::Uuid::now_v7().to_string(),
            "type": "searchset",
            "total": entries.len(),
            "link": [{"relation": "self", "url": format!("{}/Subscription", state.base_url)}],
            "entry": entries,
        }),
    ))
}

/// `/Subscription/{id}/{operation}`: `$status` and `$events`.
pub async fn operation(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, operation)): Path<(String, String)>,
    method: Method,
    RawQuery(query): RawQuery,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    match operation.as_str() {
        "$status" if method == Method::GET => {
            caller.require(RTYPE, Interaction::Read)?;
            let record = owned(&state, &caller, &id).await?;
            let status = notification(
                &state,
                &record,
                NotificationKind::QueryStatus,
                id_only_or(&record),
                &[],
            );
            Ok(fhir_json(
                StatusCode::OK,
                &json!({
                    "resourceType": "Bundle",
                    "id": uuid::Uuid::now_v7().to_string(),
                    "type": "searchset",
                    "total": 1,
                    "entry": [{
                        "fullUrl": format!("urn:uuid:{}", uuid::Uuid::new_v4()),
                        "resource": status["entry"][0]["resource"].clone(),
                        "search": {"mode": "match"},
                    }],
                }),
            ))
        }
        "$events" if method == Method::GET || method == Method::POST => {
            caller.require(RTYPE, Interaction::Read)?;
            let record = owned(&state, &caller, &id).await?;
            let inputs = event_inputs(query.as_deref(), &body, &record)?;
            let events = state
                .store
                .subscription_events(&record.id, inputs.after, inputs.until, MAX_EVENTS_PER_QUERY)
                .await?;
            let events: Vec<ListChangeEvent> =
                events.into_iter().map(ListChangeEvent::from).collect();
            let bundle = notification(
                &state,
                &record,
                NotificationKind::QueryEvent,
                inputs.content,
                &events,
            );
            Ok(fhir_json(StatusCode::OK, &bundle))
        }
        "$status" | "$events" => Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "not-supported",
            format!(
                "{operation} is invoked with GET{}",
                if operation == "$events" {
                    " or POST"
                } else {
                    ""
                }
            ),
        )),
        _ => Err(ApiError::not_found(format!(
            "{operation} is not supported on Subscription (this server offers $status and $events)"
        ))),
    }
}

struct EventInputs {
    after: i64,
    until: i64,
    content: PayloadContent,
}

/// `eventsSinceNumber` and `eventsUntilNumber` (both inclusive, as the Backport defines them) and
/// `content`, from the query or a `Parameters` body.
fn event_inputs(
    query: Option<&str>,
    body: &[u8],
    record: &SubscriptionRecord,
) -> ApiResult<EventInputs> {
    let mut pairs = query_pairs(query);
    if !body.iter().all(u8::is_ascii_whitespace) {
        let v: Value = serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("the body is not valid JSON: {e}")))?;
        if v.get("resourceType").and_then(Value::as_str) != Some("Parameters") {
            return Err(ApiError::bad_request(
                "the body of $events must be a Parameters resource",
            ));
        }
        for p in v
            .get("parameter")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let name = p.get("name").and_then(Value::as_str).unwrap_or_default();
            let value = [
                "valueString",
                "valueCode",
                "valueInteger",
                "valueUnsignedInt",
                "valuePositiveInt",
                "valueInteger64",
            ]
            .iter()
            .find_map(|k| p.get(*k))
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
            .unwrap_or_default();
            pairs.push((name.to_string(), value));
        }
    }
    let mut since = 1i64;
    let mut until = record.events_since_start;
    let mut content = id_only_or(record);
    for (name, value) in pairs {
        match name.as_str() {
            "eventsSinceNumber" => since = event_number(&name, &value)?,
            "eventsUntilNumber" => until = event_number(&name, &value)?,
            "content" => {
                content = match value.as_str() {
                    "id-only" => PayloadContent::IdOnly,
                    "empty" => PayloadContent::Empty,
                    "full-resource" => {
                        return Err(ApiError::bad_param(
                            "content",
                            "full-resource is not offered: a Group can be very large; read Group/{id}/_history/{version} instead",
                        ));
                    }
                    other => {
                        return Err(ApiError::bad_param(
                            "content",
                            format!("content {other:?} is not one of empty, id-only"),
                        ));
                    }
                }
            }
            "_format" | "_pretty" => {}
            other => {
                return Err(ApiError::bad_param(
                    other,
                    format!(
                        "$events has eventsSinceNumber, eventsUntilNumber and content, not {other}"
                    ),
                ));
            }
        }
    }
    if until < since {
        return Err(ApiError::bad_param(
            "eventsUntilNumber",
            format!("eventsUntilNumber {until} is before eventsSinceNumber {since}"),
        ));
    }
    Ok(EventInputs {
        after: since - 1,
        until: until.min(record.events_since_start),
        content,
    })
}

fn event_number(name: &str, value: &str) -> ApiResult<i64> {
    value
        .trim()
        .parse::<i64>()
        .ok()
        .filter(|n| *n >= 1)
        .ok_or_else(|| {
            ApiError::bad_param(
                name,
                format!("{name} must be a positive event number, not {value:?}"),
            )
        })
}

/// The Subscription's own payload content (what it was written with), id-only when unreadable.
fn id_only_or(record: &SubscriptionRecord) -> PayloadContent {
    parsed(record).map_or(PayloadContent::IdOnly, |s| s.content)
}

fn parsed(record: &SubscriptionRecord) -> Option<ListSubscription> {
    let v: Value = serde_json::from_str(&record.body).ok()?;
    ListSubscription::from_resource(&v, atr_notify::EndpointPolicy::AllowPlainHttp).ok()
}

fn endpoint_of(record: &SubscriptionRecord) -> Option<String> {
    parsed(record).map(|s| s.endpoint.to_string())
}

fn status_of(record: &SubscriptionRecord) -> SubscriptionStatus {
    SubscriptionStatus::parse(&record.status).unwrap_or(SubscriptionStatus::Error)
}

fn notification(
    state: &AppState,
    record: &SubscriptionRecord,
    kind: NotificationKind,
    content: PayloadContent,
    events: &[ListChangeEvent],
) -> Value {
    Notification {
        base_url: &state.base_url,
        subscription_id: &record.id,
        status: status_of(record),
        kind,
        events_since_start: u64::try_from(record.events_since_start).unwrap_or(0),
        content,
        events,
    }
    .to_bundle(&uuid::Uuid::new_v4().to_string(), now_micros())
}

fn owns(caller: &Caller, record: &SubscriptionRecord) -> bool {
    caller.admin || record.client_id == caller.client_id
}

/// The caller's Subscription `id`; another client's is answered as absent.
async fn owned(state: &AppState, caller: &Caller, id: &str) -> ApiResult<SubscriptionRecord> {
    check_id(id)?;
    match state.store.subscription(id).await? {
        Some(r) if owns(caller, &r) => Ok(r),
        _ => Err(ApiError::not_found(format!(
            "Subscription/{id} does not exist"
        ))),
    }
}

/// Reads and checks a Subscription body, and the caller's right to the Group it names.
async fn accepted(
    state: &AppState,
    caller: &Caller,
    id: &str,
    body: &[u8],
) -> ApiResult<SubscriptionWrite> {
    let mut resource: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "structure",
            format!("the body is not valid JSON: {e}"),
        )
    })?;
    if resource.get("resourceType").and_then(Value::as_str) != Some(RTYPE) {
        return Err(ApiError::bad_request(format!(
            "the body must be a Subscription, not {}",
            resource
                .get("resourceType")
                .and_then(Value::as_str)
                .unwrap_or("a resource without resourceType")
        ))
        .at("resourceType"));
    }
    let sub = ListSubscription::from_resource(&resource, state.notifier.config().endpoint_policy)
        .map_err(ApiError::invalid_resource)?;
    let off = sub.requested_status == SubscriptionStatus::Off;
    let min_heartbeat = state.notifier.config().min_heartbeat.as_secs().max(1) as i64;
    // Turning a Subscription off never needs access: a client whose access to the list ended
    // must still be able to stop it.
    if !off {
        group_access(state, caller, &sub.group_id).await?;
    }
    if let Some(obj) = resource.as_object_mut() {
        obj.insert("id".into(), Value::from(id));
        // Server-kept elements are written on every read from the delivery state.
        obj.remove("meta");
        obj.remove("error");
    }
    Ok(SubscriptionWrite {
        id: id.to_string(),
        client_id: caller.client_id.clone(),
        group_id: sub.group_id,
        body: resource.to_string(),
        // 0 asks for no heartbeats; anything shorter than the floor would make them a flood.
        heartbeat_secs: sub
            .heartbeat_secs
            .filter(|s| *s > 0)
            .map(|s| i64::from(s).max(min_heartbeat)),
        off,
    })
}

/// 401 (the IG's status) unless the caller may read the Group; for a payer administrator, who
/// may read every Group, 422 when there is no such Group.
async fn group_access(state: &AppState, caller: &Caller, group_id: &str) -> ApiResult<()> {
    let permitted = caller.scopes.permits("Group", Interaction::Read)
        && state
            .store
            .visible(ResourceType::Group, group_id, &caller.access)
            .await?;
    if !permitted {
        let message = format!(
            "this client is not authorized for Group/{group_id}, so it cannot subscribe to it"
        );
        return Err(ApiError {
            status: StatusCode::UNAUTHORIZED,
            issues: vec![Issue::error("security", message).at("Subscription.criteria")],
            challenge: Some("Bearer realm=\"atr\", error=\"insufficient_scope\"".into()),
        });
    }
    let exists = state
        .store
        .read(ResourceType::Group, group_id, None)
        .await?
        .is_some_and(|g| !g.deleted);
    if !exists {
        return Err(ApiError::invalid_resource(vec![
            Issue::error(
                "not-found",
                format!("the filter criteria name Group/{group_id}, which does not exist"),
            )
            .at("Subscription.criteria"),
        ]));
    }
    Ok(())
}

/// The Subscription as stored, with the server's status, `error` and `meta`.
fn resource_of(record: &SubscriptionRecord) -> Value {
    let mut v: Value = serde_json::from_str(&record.body).unwrap_or_else(|_| json!({}));
    v["resourceType"] = Value::from(RTYPE);
    v["id"] = Value::from(record.id.as_str());
    v["status"] = Value::from(record.status.as_str());
    v["meta"] = json!({
        "versionId": record.version.to_string(),
        "lastUpdated": fhir_instant(record.updated_at),
        "profile": ["http://hl7.org/fhir/us/davinci-atr/StructureDefinition/atr-list-change-subscription"],
    });
    if record.status == "error"
        && let Some(e) = &record.last_error
        && let Some(obj) = v.as_object_mut()
    {
        obj.insert("error".into(), Value::from(e.as_str()));
    }
    v
}

fn respond(record: &SubscriptionRecord, status: StatusCode) -> Response {
    let mut resp = fhir_json(status, &resource_of(record));
    version_headers(resp.headers_mut(), record.version, record.updated_at);
    resp
}
