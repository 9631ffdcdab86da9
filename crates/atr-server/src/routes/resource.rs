//! Instance interactions: read, vread, history, create, update, delete.

use atr_auth::Interaction;
use atr_model::{Issue, operation_outcome};
use atr_store::{StoredResource, WriteMode, WriteOutcome};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use serde_json::json;

use super::bundle::BundleWriter;
use super::{check_id, fhir_body, fhir_json, prefers, query_pairs, resource_type, version_headers};
use crate::audit::{self, AuditAction, AuditDraft};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::ingest::{IngestError, prepare};
use crate::render::render;
use crate::search_params::{DEFAULT_COUNT, MAX_COUNT, Summary, parse_summary};
use crate::state::AppState;

/// `_summary` (and nothing else but `_format`) on a read.
fn read_summary(query: Option<&str>) -> ApiResult<Summary> {
    let mut summary = Summary::Full;
    for (k, v) in query_pairs(query) {
        match k.as_str() {
            "_summary" => summary = parse_summary(&v)?,
            "_format" | "_pretty" => {}
            other => {
                return Err(ApiError::bad_param(
                    other,
                    format!("parameter {other} is not supported on a read"),
                ));
            }
        }
    }
    Ok(summary)
}

fn respond_with(
    state: &AppState,
    r: &StoredResource,
    summary: Summary,
    status: StatusCode,
) -> ApiResult<Response> {
    let rendered = render(state.store.as_ref(), r, summary)?;
    let mut resp = fhir_body(status, rendered.into_stream());
    version_headers(resp.headers_mut(), r.version, r.last_updated);
    Ok(resp)
}

/// 403 without a read scope for the type; 404, exactly as for a resource that does not exist,
/// when the resource belongs to lists this client may not see.
pub(crate) async fn readable(
    state: &AppState,
    caller: &Caller,
    rtype: atr_model::ResourceType,
    id: &str,
) -> ApiResult<()> {
    caller.require(rtype.as_str(), Interaction::Read)?;
    if state.store.visible(rtype, id, &caller.access).await? {
        Ok(())
    } else {
        Err(ApiError::not_found(format!("{rtype}/{id} does not exist")))
    }
}

fn gone(rtype: &str, id: &str) -> ApiError {
    ApiError::new(
        StatusCode::GONE,
        "deleted",
        format!("{rtype}/{id} was deleted"),
    )
}

/// Read (`version` None) or vread: the stored version, 404 when absent, 410 when deleted.
async fn read_version(
    state: &AppState,
    caller: &Caller,
    rtype: &str,
    id: &str,
    version: Option<i64>,
    query: Option<&str>,
) -> ApiResult<Response> {
    let rtype = resource_type(rtype)?;
    check_id(id)?;
    let summary = read_summary(query)?;
    readable(state, caller, rtype, id).await?;
    match state.store.read(rtype, id, version).await? {
        None => Err(ApiError::not_found(match version {
            None => format!("{rtype}/{id} does not exist"),
            Some(v) => format!("{rtype}/{id} has no version {v}"),
        })),
        Some(r) if r.deleted => Err(gone(rtype.as_str(), id)),
        Some(r) => respond_with(state, &r, summary, StatusCode::OK),
    }
}

pub async fn read(
    State(state): State<AppState>,
    caller: Caller,
    Path((rtype, id)): Path<(String, String)>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    read_version(&state, &caller, &rtype, &id, None, q.as_deref()).await
}

pub async fn vread(
    State(state): State<AppState>,
    caller: Caller,
    Path((rtype, id, version)): Path<(String, String, String)>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    let v: i64 = version.parse().ok().filter(|v| *v > 0).ok_or_else(|| {
        ApiError::bad_request(format!("version {version:?} is not a positive integer"))
    })?;
    read_version(&state, &caller, &rtype, &id, Some(v), q.as_deref()).await
}

pub async fn history(
    State(state): State<AppState>,
    caller: Caller,
    Path((rtype, id)): Path<(String, String)>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    let rtype = resource_type(&rtype)?;
    check_id(&id)?;
    readable(&state, &caller, rtype, &id).await?;
    let mut summary = Summary::Full;
    let mut count = DEFAULT_COUNT;
    let mut before = None;
    for (k, v) in query_pairs(q.as_deref()) {
        match k.as_str() {
            "_summary" => summary = parse_summary(&v)?,
            "_count" => {
                count = v
                    .parse::<u32>()
                    .map_err(|_| {
                        ApiError::bad_param(
                            "_count",
                            format!("_count={v} is not a non-negative integer"),
                        )
                    })?
                    .clamp(1, MAX_COUNT)
            }
            "_cursor" => {
                before = Some(v.parse::<i64>().map_err(|_| {
                    ApiError::bad_param("_cursor", "not a cursor this server issued")
                })?)
            }
            "_format" | "_pretty" => {}
            other => {
                return Err(ApiError::bad_param(
                    other,
                    format!("parameter {other} is not supported on _history"),
                ));
            }
        }
    }
    let versions = state.store.history(rtype, &id, before, count + 1).await?;
    if versions.is_empty() && before.is_none() {
        return Err(ApiError::not_found(format!("{rtype}/{id} does not exist")));
    }
    let has_more = versions.len() > count as usize;
    let versions: Vec<StoredResource> = versions.into_iter().take(count as usize).collect();
    let base = state.base_url.to_string();
    let self_url = format!("{base}/{rtype}/{id}/_history");
    let mut links = vec![("self", self_url.clone())];
    if let (true, Some(last)) = (has_more, versions.last()) {
        links.push((
            "next",
            format!("{self_url}?_count={count}&_cursor={}", last.version),
        ));
    }
    let mut bundle = BundleWriter::new(state.store.clone(), "history", None, links);
    for r in versions {
        let full_url = format!("{base}/{rtype}/{id}/_history/{}", r.version);
        let (method, status) = match (r.deleted, r.version) {
            (true, _) => ("DELETE", "204"),
            (false, 1) => ("POST", "201"),
            (false, _) => ("PUT", "200"),
        };
        let url = if method == "POST" {
            rtype.to_string()
        } else {
            format!("{rtype}/{id}")
        };
        let extra = json!({
            "request": {"method": method, "url": url},
            "response": {"status": status, "etag": format!("W/\"{}\"", r.version),
                "lastModified": atr_model::instant::fhir_instant(r.last_updated)},
        });
        bundle.entry(full_url, (!r.deleted).then_some(r), summary, extra);
    }
    Ok(fhir_body(StatusCode::OK, bundle.finish()))
}

fn ingest_error(e: IngestError) -> ApiError {
    match e {
        IngestError::Json(msg) => ApiError::new(
            StatusCode::BAD_REQUEST,
            "structure",
            format!("the body is not valid JSON: {msg}"),
        ),
        IngestError::WrongType { expected, found } => ApiError::bad_request(format!(
            "the body is a {found} resource but the URL is for {expected}"
        )),
        IngestError::Invalid(issues) => ApiError::invalid_resource(issues),
    }
}

fn body_text(body: &[u8]) -> ApiResult<&str> {
    std::str::from_utf8(body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "structure",
            format!("the body is not UTF-8: {e}"),
        )
    })
}

/// The answer to a create or update: 201/200 with `Location`/`ETag`, and the body the client
/// asked for with `Prefer: return=`.
fn written(
    state: &AppState,
    rtype: atr_model::ResourceType,
    id: &str,
    headers: &HeaderMap,
    out: WriteOutcome,
) -> ApiResult<Response> {
    let status = if out.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let mut resp = if prefers(headers, "return=minimal") {
        let mut r = Response::new(axum::body::Body::empty());
        *r.status_mut() = status;
        r
    } else if prefers(headers, "return=OperationOutcome") {
        let verb = if out.created { "created" } else { "updated" };
        fhir_json(
            status,
            &operation_outcome(&[Issue::information(format!(
                "{rtype}/{id} {verb} as version {}",
                out.version
            ))]),
        )
    } else {
        let stored = StoredResource {
            rtype,
            id: id.to_string(),
            version: out.version,
            last_updated: out.last_updated,
            deleted: false,
            body: out.body,
            member_count: out.member_count,
        };
        respond_with(state, &stored, Summary::Full, status)?
    };
    version_headers(resp.headers_mut(), out.version, out.last_updated);
    let location = format!("{}/{rtype}/{id}/_history/{}", state.base_url, out.version);
    if let Ok(v) = HeaderValue::from_str(&location) {
        resp.headers_mut().insert(
            if out.created {
                header::LOCATION
            } else {
                header::CONTENT_LOCATION
            },
            v,
        );
    }
    Ok(resp)
}

/// Direct writes (create, update, delete) are audited: a success in the write's own
/// transaction, a refusal right after.
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Path(rtype): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    let mut draft = AuditDraft::new(&caller, AuditAction::Create, "create", None);
    let result = create_resource(&state, &caller, &rtype, &headers, &body, &mut draft).await;
    audit::record_failure(&state, &draft, &result).await;
    result
}

async fn create_resource(
    state: &AppState,
    caller: &Caller,
    rtype: &str,
    headers: &HeaderMap,
    body: &[u8],
    draft: &mut AuditDraft,
) -> ApiResult<Response> {
    let rtype = resource_type(rtype)?;
    // The server assigns ids on create; a client-sent id is ignored, as FHIR says.
    let id = uuid::Uuid::now_v7().to_string();
    *draft = draft.clone().with_entity(Some(format!("{rtype}/{id}")));
    caller.require(rtype.as_str(), Interaction::Create)?;
    caller.require_admin("creating resources")?;
    let write = prepare(rtype, &id, body_text(body)?, WriteMode::Create).map_err(ingest_error)?;
    let out = state
        .store
        .write_audited(write, &draft.record(StatusCode::CREATED))
        .await?;
    written(state, rtype, &id, headers, out)
}

pub(crate) fn if_match(headers: &HeaderMap) -> ApiResult<Option<i64>> {
    let Some(v) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let text = v.to_str().unwrap_or("");
    let digits = text.trim().trim_start_matches("W/").trim_matches('"');
    digits.parse::<i64>().map(Some).map_err(|_| {
        ApiError::bad_request(format!(
            "If-Match {text:?} is not a version ETag like W/\"3\""
        ))
    })
}

pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path((rtype, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    let draft = AuditDraft::new(
        &caller,
        AuditAction::Update,
        "update",
        Some(format!("{rtype}/{id}")),
    );
    let result = update_resource(&state, &caller, &rtype, &id, &headers, &body, &draft).await;
    audit::record_failure(&state, &draft, &result).await;
    result
}

async fn update_resource(
    state: &AppState,
    caller: &Caller,
    rtype: &str,
    id: &str,
    headers: &HeaderMap,
    body: &[u8],
    draft: &AuditDraft,
) -> ApiResult<Response> {
    let rtype = resource_type(rtype)?;
    check_id(id)?;
    caller.require(rtype.as_str(), Interaction::Update)?;
    caller.require_admin("updating resources")?;
    let text = body_text(body)?;
    // FHIR: the body's id must be present and match the URL.
    let body_id = crate::ingest::body_id(text).map_err(ingest_error)?;
    match body_id.as_deref() {
        Some(b) if b == id => {}
        Some(b) => {
            return Err(ApiError::bad_request(format!(
                "the body's id {b:?} does not match the URL's id {id:?}"
            )));
        }
        None => {
            return Err(ApiError::bad_request(
                "an update needs the resource's id in the body",
            ));
        }
    }
    let mut write = prepare(rtype, id, text, WriteMode::Upsert).map_err(ingest_error)?;
    write.expected_version = if_match(headers)?;
    // Recorded as 200 even when the update creates (201): both are a success, and which one is
    // only known inside the write.
    let out = state
        .store
        .write_audited(write, &draft.record(StatusCode::OK))
        .await?;
    written(state, rtype, id, headers, out)
}

pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path((rtype, id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let draft = AuditDraft::new(
        &caller,
        AuditAction::Delete,
        "delete",
        Some(format!("{rtype}/{id}")),
    );
    let result = delete_resource(&state, &caller, &rtype, &id, &draft).await;
    audit::record_failure(&state, &draft, &result).await;
    result
}

async fn delete_resource(
    state: &AppState,
    caller: &Caller,
    rtype: &str,
    id: &str,
    draft: &AuditDraft,
) -> ApiResult<Response> {
    let rtype = resource_type(rtype)?;
    check_id(id)?;
    caller.require(rtype.as_str(), Interaction::Delete)?;
    caller.require_admin("deleting resources")?;
    match state
        .store
        .delete_audited(rtype, id, &draft.record(StatusCode::OK))
        .await?
    {
        Some(v) => {
            let mut resp = fhir_json(
                StatusCode::OK,
                &operation_outcome(&[Issue::information(format!(
                    "{rtype}/{id} deleted (version {})",
                    v.version
                ))]),
            );
            resp.headers_mut()
                .insert(header::ETAG, super::etag(v.version));
            Ok(resp)
        }
        None => Ok(fhir_json(
            StatusCode::OK,
            &operation_outcome(&[Issue::information(format!(
                "{rtype}/{id} does not exist or is already deleted; nothing to do"
            ))]),
        )),
    }
}
