//! Bulk export over HTTP: the kick-off at Bulk Data's three levels (`$davinci-data-export` and
//! `$export` on a Group, `Patient/$export`, `$export`), the status URL (poll, manifest, `DELETE`)
//! and the file URLs. The jobs themselves run in `atr-export`.
//!
//! Kick-off rules follow the ATR IG and Bulk Data 2.0 where the test suites agree, and the
//! behaviour that satisfies all of them where they pull apart (`docs/design-notes.md`, "Bulk Data
//! where the clients and test suites disagree"):
//! `Accept` and `Prefer: respond-async` are required, `Retry-After` is integer seconds, the first
//! poll answers 202.

use atr_auth::scope::Interaction;
use atr_export::{ExportRequest, ExportSource, Exporter, Note, Submission, TypeFilter};
use atr_model::ResourceType;
use atr_model::instant::{fhir_instant, http_date, now_micros, parse_fhir_range};
use atr_model::reference::parse_reference;
use atr_store::{Access, ExportAdmission, ExportJob, ExportStatus, SearchQuery};
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Value, json};

use super::prefers;
use crate::audit::{self, AuditAction, AuditDraft};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// The ATR export type.
const ATR_EXPORT_TYPE: &str = "hl7.fhir.us.davinci-atr";
/// The types a `$davinci-data-export` of the ATR export type SHALL name: seed 000 has Producers
/// "reject requests that do not contain the minimum resource types of
/// Group,Patient,Coverage,Practitioner,Organization".
const ATR_REQUIRED: [ResourceType; 5] = [
    ResourceType::Group,
    ResourceType::Patient,
    ResourceType::Coverage,
    ResourceType::Practitioner,
    ResourceType::Organization,
];
/// A status poll earlier than this after kick-off answers 202 even when the job is done: clients
/// and suites expect the asynchronous pattern, never an instant finish.
const MIN_JOB_AGE_MICROS: i64 = 1_000_000;
/// Most `patient` references one kick-off may name.
const MAX_PATIENTS: usize = 10_000;

/// Parses a `_typeFilter` query (`Type?param=value&…`) with the search parser.
pub fn parse_type_filter(query: &str) -> Result<TypeFilter, String> {
    let (rtype, params) = query
        .split_once('?')
        .ok_or_else(|| format!("_typeFilter {query:?} is not Type?query"))?;
    let rtype: ResourceType = rtype
        .parse()
        .map_err(|e: atr_model::resource_type::UnsupportedType| e.to_string())?;
    let pairs: Vec<(String, String)> = form_urlencoded::parse(params.as_bytes())
        .into_owned()
        .collect();
    for (k, _) in &pairs {
        if matches!(
            k.as_str(),
            "_count" | "_summary" | "_total" | "_sort" | "_cursor" | "_format" | "_pretty"
        ) {
            return Err(format!("_typeFilter {query:?}: {k} is not a filter"));
        }
    }
    let parsed = crate::search_params::parse(rtype, &pairs, false).map_err(|e| {
        e.issues
            .first()
            .map(|i| i.diagnostics.clone())
            .unwrap_or_else(|| "unsupported _typeFilter".into())
    })?;
    if parsed
        .query
        .clauses
        .iter()
        .any(|c| matches!(c, atr_store::Clause::Member(_)))
    {
        return Err(format!(
            "_typeFilter {query:?}: member is not a filter on exported lines (name the members with patient)"
        ));
    }
    Ok(TypeFilter {
        rtype,
        clauses: parsed.query.clauses,
    })
}

/// The kick-off's parameters, from the query string and a POSTed `Parameters` body.
fn kick_off_params(method: &Method, uri: &Uri, body: &[u8]) -> ApiResult<Vec<(String, String)>> {
    let mut pairs = super::query_pairs(uri.query());
    if *method == Method::POST && !body.iter().all(u8::is_ascii_whitespace) {
        let v: Value = serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("the body is not JSON: {e}")))?;
        if v.get("resourceType").and_then(Value::as_str) != Some("Parameters") {
            return Err(ApiError::bad_request(
                "the kick-off body must be a Parameters resource",
            ));
        }
        for p in v
            .get("parameter")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let name = p
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| ApiError::bad_param("parameter", "a parameter has no name"))?;
            let value = p.as_object().and_then(|o| {
                o.iter().find_map(|(k, v)| {
                    let kind = k.strip_prefix("value")?;
                    match (kind, v) {
                        ("Reference", v) => v
                            .get("reference")
                            .and_then(Value::as_str)
                            .map(str::to_string),
                        (_, Value::String(s)) => Some(s.clone()),
                        (_, Value::Bool(b)) => Some(b.to_string()),
                        (_, Value::Number(n)) => Some(n.to_string()),
                        _ => None,
                    }
                })
            });
            let value = value.ok_or_else(|| {
                ApiError::bad_param(
                    name,
                    format!("parameter {name} has no value this server reads"),
                )
            })?;
            pairs.push((name.to_string(), value));
        }
    }
    Ok(pairs)
}

/// Splits a `_typeFilter` value into queries: commas separate queries only where the next part
/// starts a new `Type?`.
fn split_type_filters(value: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for part in value.split(',') {
        let starts_query = part.split_once('?').is_some_and(|(t, _)| {
            t.chars().next().is_some_and(|c| c.is_ascii_uppercase())
                && t.chars().all(|c| c.is_ascii_alphanumeric())
        });
        match out.last_mut() {
            Some(last) if !starts_query => {
                last.push(',');
                last.push_str(part);
            }
            _ => out.push(part.to_string()),
        }
    }
    out.retain(|q| !q.is_empty());
    out
}

fn parse_instant(name: &str, value: &str) -> ApiResult<i64> {
    // A bare date is a day, not an instant; Bulk clients send full instants with an offset.
    if value.len() < 20 {
        return Err(ApiError::bad_param(
            name,
            format!("{name}={value} is not an instant (YYYY-MM-DDThh:mm:ss[.fff](Z|+hh:mm))"),
        ));
    }
    parse_fhir_range(value)
        .map(|r| r.start)
        .map_err(|e| ApiError::bad_param(name, e.to_string()))
}

/// What the kick-off parameters say, before the Group is consulted.
struct Parsed {
    request: ExportRequest,
    until: Option<i64>,
    patients: Vec<String>,
}

fn parse_kick_off(
    operation: &str,
    pairs: &[(String, String)],
    lenient: bool,
    caller: &Caller,
) -> ApiResult<Parsed> {
    let mut notes: Vec<Note> = Vec::new();
    let mut types: Option<Vec<ResourceType>> = None;
    let mut since = None;
    let mut until = None;
    let mut patients = Vec::new();
    let mut type_filters = Vec::new();
    let mut elements = Vec::new();
    let mut export_type = None;
    // An optional feature we do not offer: an error, or under lenient handling a note.
    let unsupported = |param: &str, why: String, notes: &mut Vec<Note>| -> ApiResult<()> {
        if lenient {
            notes.push(Note::warning(
                "not-supported",
                format!("{why}; ignored (handling=lenient)"),
                param,
            ));
            Ok(())
        } else {
            Err(ApiError::bad_param(
                param,
                format!("{why} (send Prefer: handling=lenient to have it ignored)"),
            ))
        }
    };
    for (name, value) in pairs {
        match name.as_str() {
            "_outputFormat" => {
                if !matches!(
                    value.as_str(),
                    "application/fhir+ndjson" | "application/ndjson" | "ndjson"
                ) {
                    return Err(ApiError::bad_param(
                        "_outputFormat",
                        format!(
                            "_outputFormat={value} is not supported: use application/fhir+ndjson, application/ndjson or ndjson"
                        ),
                    ));
                }
            }
            "_type" | "resourceTypes" => {
                let list = types.get_or_insert_with(Vec::new);
                for t in value.split(',').map(str::trim).filter(|t| !t.is_empty()) {
                    match t.parse::<ResourceType>() {
                        Ok(rt) => {
                            if !list.contains(&rt) {
                                list.push(rt);
                            }
                        }
                        Err(e) => unsupported(name, format!("{name}: {e}"), &mut notes)?,
                    }
                }
            }
            "exportType" => export_type = Some(value.clone()),
            "_since" => {
                let s = parse_instant("_since", value)?;
                if s > now_micros() {
                    return Err(ApiError::bad_param(
                        "_since",
                        format!("_since={value} is in the future"),
                    ));
                }
                since = Some(s);
            }
            "_until" => until = Some(parse_instant("_until", value)?),
            "patient" => {
                for v in value.split(',').map(str::trim).filter(|v| !v.is_empty()) {
                    patients.push(v.to_string());
                }
            }
            "_typeFilter" => {
                for q in split_type_filters(value) {
                    match parse_type_filter(&q) {
                        Ok(_) => type_filters.push(q),
                        Err(e) => unsupported("_typeFilter", e, &mut notes)?,
                    }
                }
            }
            "_elements" => {
                for e in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
                    let (t, el) = match e.split_once('.') {
                        Some((t, el)) => match t.parse::<ResourceType>() {
                            Ok(rt) => (Some(rt), el),
                            Err(err) => {
                                unsupported("_elements", err.to_string(), &mut notes)?;
                                continue;
                            }
                        },
                        None => (None, e),
                    };
                    if el.is_empty()
                        || !el.chars().all(|c| c.is_ascii_alphanumeric())
                        || el.contains('.')
                    {
                        unsupported(
                            "_elements",
                            format!("_elements {e:?}: only top-level elements can be selected"),
                            &mut notes,
                        )?;
                        continue;
                    }
                    elements.push((t, el.to_string()));
                }
            }
            "includeAssociatedData" => {
                for v in value.split(',').map(str::trim).filter(|v| !v.is_empty()) {
                    notes.push(Note::warning(
                        "not-supported",
                        format!("includeAssociatedData={v}: this server keeps no associated data of that kind; nothing was added"),
                        "includeAssociatedData",
                    ));
                }
            }
            "_format" => {}
            other => unsupported(
                other,
                format!("{other} is not a parameter of {operation}"),
                &mut notes,
            )?,
        }
    }
    let atr = operation == "$davinci-data-export";
    if let Some(et) = &export_type
        && et != ATR_EXPORT_TYPE
    {
        return Err(ApiError::bad_param(
            "exportType",
            format!("exportType={et} is not supported: this server exports {ATR_EXPORT_TYPE}"),
        ));
    }
    let types = match types {
        Some(list) => {
            if atr {
                let missing: Vec<&str> = ATR_REQUIRED
                    .iter()
                    .filter(|t| !list.contains(t))
                    .map(|t| t.as_str())
                    .collect();
                if !missing.is_empty() {
                    return Err(ApiError::bad_param(
                        "_type",
                        format!(
                            "$davinci-data-export of {ATR_EXPORT_TYPE} needs Group, Patient, Coverage, Practitioner and Organization in _type; missing: {}",
                            missing.join(", ")
                        ),
                    ));
                }
            }
            for t in &list {
                caller.require(t.as_str(), Interaction::Read)?;
            }
            list
        }
        None => {
            // Every type this client may read (the required ones must be among them).
            let list: Vec<ResourceType> = ResourceType::ALL
                .into_iter()
                .filter(|t| caller.require(t.as_str(), Interaction::Read).is_ok())
                .collect();
            if atr {
                for t in ATR_REQUIRED {
                    caller.require(t.as_str(), Interaction::Read)?;
                }
            }
            if list.is_empty() {
                return Err(ApiError::forbidden(
                    "the access token grants reading none of the exported types",
                ));
            }
            list
        }
    };
    if let (Some(s), Some(u)) = (since, until)
        && u < s
    {
        return Err(ApiError::bad_param("_until", "_until is before _since"));
    }
    if patients.len() > MAX_PATIENTS {
        return Err(ApiError::bad_param(
            "patient",
            format!("at most {MAX_PATIENTS} patient references per kick-off"),
        ));
    }
    Ok(Parsed {
        request: ExportRequest {
            source: ExportSource::Group,
            types,
            since,
            patients: None,
            type_filters,
            elements,
            notes,
        },
        until,
        patients,
    })
}

/// Where a kick-off was made: Bulk Data's three levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportLevel<'a> {
    /// `Group/{id}/$davinci-data-export` or `Group/{id}/$export`: one list.
    Group(&'a str),
    /// `Patient/$export`: the Patients the client may see and their data.
    Patient,
    /// `$export`: everything the client may see.
    System,
}

impl ExportLevel<'_> {
    /// The kick-off path below the base, for the manifest's `request`.
    fn path(&self, operation: &str) -> String {
        match self {
            ExportLevel::Group(id) => format!("Group/{id}/{operation}"),
            ExportLevel::Patient => format!("Patient/{operation}"),
            ExportLevel::System => operation.to_string(),
        }
    }
}

/// `GET|POST [base]/$export`.
pub async fn system_kick_off(
    State(state): State<AppState>,
    caller: Caller,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let request = (&method, &uri, &headers, &body[..]);
    audited_kick_off(&state, &caller, ExportLevel::System, request).await
}

/// `GET|POST [base]/Patient/$export`.
pub async fn patient_kick_off(
    State(state): State<AppState>,
    caller: Caller,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let request = (&method, &uri, &headers, &body[..]);
    audited_kick_off(&state, &caller, ExportLevel::Patient, request).await
}

/// A Patient- or system-level `$export`, audited.
async fn audited_kick_off(
    state: &AppState,
    caller: &Caller,
    level: ExportLevel<'_>,
    (method, uri, headers, body): (&Method, &Uri, &HeaderMap, &[u8]),
) -> ApiResult<Response> {
    let entity = (level == ExportLevel::Patient).then(|| "Patient".to_string());
    let draft = AuditDraft::new(caller, AuditAction::Execute, "$export", entity);
    let result = kick_off(state, caller, level, "$export", method, uri, headers, body).await;
    audit::record_outcome(state, &draft, &result).await;
    result
}

/// A kick-off at any level (`operation` is `$davinci-data-export` or `$export`).
#[allow(clippy::too_many_arguments)]
pub async fn kick_off(
    state: &AppState,
    caller: &Caller,
    level: ExportLevel<'_>,
    operation: &str,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> ApiResult<Response> {
    if headers.get(header::ACCEPT).is_none() {
        return Err(ApiError::bad_request(
            "a bulk export kick-off needs Accept: application/fhir+json",
        ));
    }
    if !prefers(headers, "respond-async") {
        return Err(ApiError::bad_request(
            "a bulk export kick-off needs Prefer: respond-async",
        ));
    }
    let lenient = prefers(headers, "handling=lenient");
    // The token must cover the exported types (checked with the parameters), not Group reads as
    // such: `$export?_type=Patient` with only Patient scopes is a valid Bulk Data request. Which
    // lists the client may export at all is its per-Group access.
    if let ExportLevel::Group(id) = level
        && !state
            .store
            .visible(ResourceType::Group, id, &caller.access)
            .await?
    {
        return Err(ApiError::not_found(format!("Group/{id} does not exist")));
    }
    let pairs = kick_off_params(method, uri, body)?;
    let Parsed {
        mut request,
        until,
        patients,
    } = parse_kick_off(operation, &pairs, lenient, caller)?;

    let now = now_micros();
    let at = until.map_or(now, |u| u.min(now));
    let (group_id, group_version) = match level {
        ExportLevel::Group(id) => {
            let version = list_version_at(state, id, at).await?.ok_or_else(|| {
                ApiError::bad_param("_until", format!("Group/{id} did not exist at _until"))
            })?;
            (id.to_string(), version)
        }
        ExportLevel::Patient | ExportLevel::System => {
            request.source = match caller.access {
                Access::All => ExportSource::Everything,
                Access::ActingFor(_) => {
                    ExportSource::Lists(visible_lists(state, caller, at).await?)
                }
            };
            (String::new(), 0)
        }
    };
    if !patients.is_empty() {
        let lists: Vec<(String, i64)> = match &request.source {
            ExportSource::Group => vec![(group_id.clone(), group_version)],
            ExportSource::Lists(lists) => lists.clone(),
            ExportSource::Everything => Vec::new(),
        };
        let members = resolve_patients(
            state,
            &request.source,
            &lists,
            &patients,
            &mut request.notes,
        )
        .await?;
        request.patients = Some(members);
    }
    let request_url = format!(
        "{}/{}{}",
        state.base_url,
        level.path(operation),
        uri.query().map(|q| format!("?{q}")).unwrap_or_default()
    );
    let (admission, job_id) = state
        .exporter
        .submit(Submission {
            client_id: caller.client_id.clone(),
            group_id,
            group_version,
            at,
            request_url,
            request,
        })
        .await
        .map_err(export_error)?;
    match admission {
        ExportAdmission::Admitted => {}
        ExportAdmission::ClientBusy | ExportAdmission::ServerBusy => {
            let who = if admission == ExportAdmission::ClientBusy {
                "this client already runs as many exports as it may"
            } else {
                "the server already runs as many exports as it may"
            };
            let mut resp = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "throttled",
                format!("{who}; retry later, or DELETE a finished export"),
            )
            .into_response();
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("30"));
            return Ok(resp);
        }
    }
    let location = status_url(state, &job_id);
    let what = match level {
        ExportLevel::Group(id) => format!("Group/{id}"),
        ExportLevel::Patient => "the Patients you may see".to_string(),
        ExportLevel::System => "everything you may see".to_string(),
    };
    let outcome = atr_model::operation_outcome(&[atr_model::Issue::information(format!(
        "export of {what} accepted; poll {location}"
    ))]);
    let mut resp = super::fhir_json(StatusCode::ACCEPTED, &outcome);
    if let Ok(v) = HeaderValue::from_str(&location) {
        resp.headers_mut().insert(header::CONTENT_LOCATION, v);
    }
    Ok(resp)
}

/// The `patient` references of a kick-off that are in its scope (a member of one of `lists`, or
/// for an export of everything a stored Patient); the others are left out with a note.
async fn resolve_patients(
    state: &AppState,
    source: &ExportSource,
    lists: &[(String, i64)],
    asked: &[String],
    notes: &mut Vec<Note>,
) -> ApiResult<Vec<String>> {
    let mut references = Vec::new();
    for p in asked {
        match parse_reference(p).filter(|(t, _)| *t == "Patient") {
            Some((t, pid)) => {
                let reference = format!("{t}/{pid}");
                if !references.contains(&reference) {
                    references.push(reference);
                }
            }
            None => notes.push(Note::error(
                "invalid",
                format!("patient {p:?} is not a Patient reference; left out"),
                "patient",
            )),
        }
    }
    let mut found = std::collections::HashSet::new();
    if *source == ExportSource::Everything {
        for reference in &references {
            let id = reference.trim_start_matches("Patient/");
            if state
                .store
                .read(ResourceType::Patient, id, None)
                .await?
                .is_some_and(|r| !r.deleted)
            {
                found.insert(reference.clone());
            }
        }
    } else {
        for (id, version) in lists {
            for (patient, _) in state
                .store
                .entries_at(id, *version, &references, false)
                .await?
            {
                found.insert(patient);
            }
        }
    }
    let scope = match source {
        ExportSource::Group => lists
            .first()
            .map(|(id, _)| format!("a member of Group/{id}"))
            .unwrap_or_default(),
        ExportSource::Lists(_) => "a member of a list you may see".to_string(),
        ExportSource::Everything => "stored on this server".to_string(),
    };
    let mut members = Vec::new();
    for reference in references {
        if found.contains(&reference) {
            members.push(reference);
        } else {
            notes.push(Note::error(
                "not-found",
                format!("{reference} is not {scope}; left out"),
                "patient",
            ));
        }
    }
    Ok(members)
}

/// The lists a Consumer may see, each at its version at `at` (lists created since are not in an
/// export of `at`).
async fn visible_lists(
    state: &AppState,
    caller: &Caller,
    at: i64,
) -> ApiResult<Vec<(String, i64)>> {
    let mut lists = Vec::new();
    let mut after_id = None;
    loop {
        let page = state
            .store
            .search(&SearchQuery {
                rtype: ResourceType::Group,
                clauses: Vec::new(),
                count: crate::search_params::MAX_COUNT,
                after_id: after_id.clone(),
                with_total: false,
                access: caller.access.clone(),
            })
            .await?;
        for g in &page.matches {
            let version = if g.last_updated <= at {
                Some(g.version)
            } else {
                list_version_at(state, &g.id, at).await?
            };
            if let Some(version) = version {
                lists.push((g.id.clone(), version));
            }
        }
        match page.matches.last() {
            Some(last) if page.has_more => after_id = Some(last.id.clone()),
            _ => break,
        }
    }
    Ok(lists)
}

/// The version of Group `id` current at `at` (the current one unless `_until` moved the
/// snapshot back); `None` when it did not exist then. 404 when it does not exist now.
async fn list_version_at(state: &AppState, id: &str, at: i64) -> ApiResult<Option<i64>> {
    let missing = || ApiError::not_found(format!("Group/{id} does not exist"));
    let current = state
        .store
        .read(ResourceType::Group, id, None)
        .await?
        .filter(|g| !g.deleted)
        .ok_or_else(missing)?;
    if current.last_updated <= at {
        return Ok(Some(current.version));
    }
    let mut before = None;
    loop {
        let page = state
            .store
            .history(ResourceType::Group, id, before, 100)
            .await?;
        let Some(last) = page.last() else {
            return Ok(None);
        };
        before = Some(last.version);
        if let Some(v) = page.iter().find(|v| v.last_updated <= at) {
            return Ok((!v.deleted).then_some(v.version));
        }
    }
}

fn export_error(e: atr_export::ExportError) -> ApiError {
    match e {
        atr_export::ExportError::Store(s) => ApiError::from(s),
        other => {
            tracing::error!(error = %other, "export");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "exception",
                "internal error while handling the export",
            )
        }
    }
}

fn status_url(state: &AppState, job_id: &str) -> String {
    format!("{}/bulkstatus/{job_id}", state.base_url)
}

fn file_url(state: &AppState, job_id: &str, name: &str) -> String {
    format!("{}/bulkfiles/{job_id}/{name}", state.base_url)
}

/// The caller's job, or 404 for an unknown, expired, cancelled or another client's job.
async fn callers_job(state: &AppState, caller: &Caller, id: &str) -> ApiResult<ExportJob> {
    super::check_id(id)?;
    let missing =
        || ApiError::not_found(format!("no export job {id} (unknown, expired or deleted)"));
    let job = state
        .exporter
        .job(id)
        .await
        .map_err(export_error)?
        .ok_or_else(missing)?;
    if job.client_id != caller.client_id {
        return Err(missing());
    }
    Ok(job)
}

/// `GET [base]/bulkstatus/{id}`: 202 while running, the manifest when done, 500 when failed.
/// Audited when it answers anything but 202 (polls while running are not worth a row each).
pub async fn status(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let mut draft = AuditDraft::new(&caller, AuditAction::Read, "bulk-status", None)
        .with_detail(format!("export job {id}"));
    let result = job_status(&state, &caller, &id, &mut draft).await;
    if !matches!(&result, Ok(r) if r.status() == StatusCode::ACCEPTED) {
        audit::record_outcome(&state, &draft, &result).await;
    }
    result
}

async fn job_status(
    state: &AppState,
    caller: &Caller,
    id: &str,
    draft: &mut AuditDraft,
) -> ApiResult<Response> {
    let job = callers_job(state, caller, id).await?;
    *draft = draft.clone().with_entity(job.group_reference());
    let young = now_micros() - job.created_at < MIN_JOB_AGE_MICROS;
    match job.status {
        ExportStatus::Completed if !young => Ok(manifest_response(state, &job)),
        ExportStatus::Failed if !young => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "exception",
            format!(
                "the export failed: {}",
                job.result.as_deref().unwrap_or("no reason recorded")
            ),
        )),
        _ => Ok(in_progress(&job)),
    }
}

fn in_progress(job: &ExportJob) -> Response {
    let (done, planned) = if job.status.is_active() {
        (job.done, job.planned)
    } else {
        (job.planned, job.planned)
    };
    let progress = match job.status {
        ExportStatus::Accepted => "waiting to start".to_string(),
        _ if planned > 0 => format!(
            "{}% ({done} of about {planned} resources)",
            (done.min(planned) * 100 / planned).min(99)
        ),
        _ => format!("{done} resources written"),
    };
    // Integer seconds, always: short while the job is small, longer for big ones.
    let retry = if planned > 1_000_000 { 3 } else { 1 };
    let outcome = atr_model::operation_outcome(&[atr_model::Issue::information(format!(
        "export in progress: {progress}"
    ))]);
    let mut resp = super::fhir_json(StatusCode::ACCEPTED, &outcome);
    if let Ok(v) = HeaderValue::from_str(&progress) {
        resp.headers_mut().insert("x-progress", v);
    }
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(retry));
    resp
}

fn manifest_response(state: &AppState, job: &ExportJob) -> Response {
    let manifest = Exporter::manifest(job).unwrap_or_default();
    let items = |files: &[atr_export::FileEntry]| -> Vec<Value> {
        files
            .iter()
            .map(|f| json!({"type": f.rtype, "url": file_url(state, &job.id, &f.name), "count": f.count}))
            .collect()
    };
    let mut body = json!({
        "transactionTime": fhir_instant(job.transaction_time),
        "request": job.request,
        "requiresAccessToken": true,
        "output": items(&manifest.output),
        "error": items(&manifest.error),
    });
    if !manifest.deleted.is_empty() {
        body["deleted"] = Value::Array(items(&manifest.deleted));
    }
    let mut resp = Response::new(Body::from(body.to_string()));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(v) = HeaderValue::from_str(&http_date(job.expires_at)) {
        resp.headers_mut().insert(header::EXPIRES, v);
    }
    resp
}

/// `DELETE [base]/bulkstatus/{id}`: cancels a running export or removes a finished one.
pub async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let mut draft = AuditDraft::new(&caller, AuditAction::Delete, "bulk-cancel", None)
        .with_detail(format!("export job {id}"));
    let result = cancel_job(&state, &caller, &id, &mut draft).await;
    audit::record_outcome(&state, &draft, &result).await;
    result
}

async fn cancel_job(
    state: &AppState,
    caller: &Caller,
    id: &str,
    draft: &mut AuditDraft,
) -> ApiResult<Response> {
    let job = callers_job(state, caller, id).await?;
    *draft = draft.clone().with_entity(job.group_reference());
    if !state.exporter.cancel(id).await.map_err(export_error)? {
        return Err(ApiError::not_found(format!("no export job {id}")));
    }
    let outcome = atr_model::operation_outcome(&[atr_model::Issue::information(format!(
        "export {id} deleted; its files are removed"
    ))]);
    Ok(super::fhir_json(StatusCode::ACCEPTED, &outcome))
}

/// `GET [base]/bulkfiles/{job}/{name}`: one NDJSON file of the caller's completed export, with
/// `Range` for resuming and gzip when asked for (and no range is).
/// Every answer is audited, each range request too (a resumed download is several).
pub async fn file(
    State(state): State<AppState>,
    caller: Caller,
    Path((job_id, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    // A hostile name is cut short in the log as it is in answers.
    let shown: String = name.chars().take(80).collect();
    let mut draft = AuditDraft::new(&caller, AuditAction::Read, "bulk-file", None)
        .with_detail(format!("export job {job_id} file {shown}"));
    let result = job_file(&state, &caller, &job_id, &name, &headers, &mut draft).await;
    audit::record_outcome(&state, &draft, &result).await;
    result
}

async fn job_file(
    state: &AppState,
    caller: &Caller,
    job_id: &str,
    name: &str,
    headers: &HeaderMap,
    draft: &mut AuditDraft,
) -> ApiResult<Response> {
    super::check_id(job_id)?;
    let missing = || ApiError::not_found(format!("no export file {job_id}/{name:?}"));
    let job = state
        .exporter
        .job(job_id)
        .await
        .map_err(export_error)?
        .filter(|j| j.status == ExportStatus::Completed)
        .ok_or_else(missing)?;
    *draft = draft.clone().with_entity(job.group_reference());
    if job.client_id != caller.client_id {
        // As its status URL answers: another client's job is not there for this caller.
        return Err(missing());
    }
    let manifest = Exporter::manifest(&job).unwrap_or_default();
    let entry = manifest
        .output
        .iter()
        .chain(&manifest.error)
        .chain(&manifest.deleted)
        .find(|f| f.name == name)
        .ok_or_else(missing)?;
    if manifest.output.iter().any(|f| f.name == name) {
        caller.require(&entry.rtype, Interaction::Read)?;
    }
    let files = state.exporter.files();
    let len = files
        .len(job_id, name)
        .await
        .map_err(|e| file_error(e, &missing))?
        .ok_or_else(missing)?;

    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(|r| parse_range(r, len));
    let gzip = range.is_none()
        && headers
            .get_all(header::ACCEPT_ENCODING)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|e| {
                let mut parts = e.split(';');
                let name = parts.next().unwrap_or("").trim();
                let q0 = parts.any(|p| p.trim().replace(' ', "") == "q=0");
                name.eq_ignore_ascii_case("gzip") && !q0
            });
    let (status, start, end) = match range {
        None => (StatusCode::OK, 0, len),
        Some(Some((s, e))) => (StatusCode::PARTIAL_CONTENT, s, e),
        Some(None) => {
            let mut resp = ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "invalid",
                format!("the range is outside the file's {len} bytes"),
            )
            .into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                resp.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return Ok(resp);
        }
    };
    let bytes = files
        .read(job_id, name, start, end)
        .await
        .map_err(|e| file_error(e, &missing))?
        .ok_or_else(missing)?;
    let mut resp = if gzip {
        Response::new(Body::from_stream(gzipped(bytes)))
    } else {
        Response::new(Body::from_stream(bytes))
    };
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/fhir+ndjson"),
    );
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    if gzip {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    } else {
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(end - start));
    }
    if status == StatusCode::PARTIAL_CONTENT
        && let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{}/{len}", end - 1))
    {
        h.insert(header::CONTENT_RANGE, v);
    }
    Ok(resp)
}

/// `bytes=a-b`, `bytes=a-` or `bytes=-n` as `[start, end)`; `None` when unsatisfiable. Several
/// ranges are not offered: the first is served.
fn parse_range(header: &str, len: u64) -> Option<(u64, u64)> {
    let spec = header.trim().strip_prefix("bytes=")?;
    let first = spec.split(',').next()?.trim();
    let (a, b) = first.split_once('-')?;
    let (start, end) = match (a.trim(), b.trim()) {
        ("", n) => {
            let n: u64 = n.parse().ok()?;
            (len.saturating_sub(n), len)
        }
        (a, "") => (a.parse().ok()?, len),
        (a, b) => {
            let b: u64 = b.parse().ok()?;
            (a.parse().ok()?, (b + 1).min(len))
        }
    };
    (start < end && start < len).then_some((start, end))
}

/// A file store's failure: a name it refuses is not found, anything else a 500 (logged: the
/// client learns nothing of the storage behind).
fn file_error(e: atr_export::ExportFileError, missing: &dyn Fn() -> ApiError) -> ApiError {
    match e {
        atr_export::ExportFileError::BadName(_) => missing(),
        other => export_error(atr_export::ExportError::Files(other)),
    }
}

/// Input gathered before each compression step: few hops to a blocking thread even when the
/// store hands out small chunks (an object storage response).
const GZIP_BATCH: usize = 1 << 20;

/// A file's bytes gzip-compressed as they come (fastest level: the network, not the ratio, is
/// what a download waits on), compressed on blocking threads.
fn gzipped(
    mut source: atr_export::ByteStream,
) -> tokio_stream::wrappers::ReceiverStream<std::io::Result<Bytes>> {
    use futures::StreamExt;
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(4);
    tokio::spawn(async move {
        let mut encoder = Some(flate2::write::GzEncoder::new(
            Vec::with_capacity(GZIP_BATCH),
            flate2::Compression::fast(),
        ));
        let mut pending: Vec<u8> = Vec::new();
        while let Some(mut enc) = encoder.take() {
            let done = match source.next().await {
                Some(Ok(chunk)) => {
                    pending.extend_from_slice(&chunk);
                    false
                }
                Some(Err(e)) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
                None => true,
            };
            if pending.len() < GZIP_BATCH && !done {
                encoder = Some(enc);
                continue;
            }
            let input = std::mem::take(&mut pending);
            let step = tokio::task::spawn_blocking(move || {
                use std::io::Write;
                enc.write_all(&input)?;
                if done {
                    return enc.finish().map(|out| (None, out));
                }
                let out = std::mem::take(enc.get_mut());
                Ok((Some(enc), out))
            })
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)));
            match step {
                Ok((next, out)) => {
                    if !out.is_empty() && tx.send(Ok(Bytes::from(out))).await.is_err() {
                        return;
                    }
                    encoder = next;
                }
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_cover_the_three_forms() {
        assert_eq!(parse_range("bytes=0-9", 100), Some((0, 10)));
        assert_eq!(parse_range("bytes=90-", 100), Some((90, 100)));
        assert_eq!(parse_range("bytes=-10", 100), Some((90, 100)));
        assert_eq!(parse_range("bytes=100-", 100), None);
        assert_eq!(parse_range("bytes=5-500", 100), Some((5, 100)));
    }

    #[test]
    fn type_filters_split_only_before_a_new_type() {
        assert_eq!(
            split_type_filters("Patient?identifier=a,b,Coverage?payor=Organization/x"),
            vec!["Patient?identifier=a,b", "Coverage?payor=Organization/x"]
        );
    }
}
