//! The reconciliation operations on an attribution list: `$member-add`, `$member-remove`,
//! `$confirm-attribution-list` and `$attribution-status`.
//!
//! Handlers resolve the IG's identifiers (member id, provider NPI) and references to resources,
//! then hand one [`MemberChange`] to the store, which applies it as row operations.

use atr_auth::Interaction;
use atr_model::group::MemberEntry;
use atr_model::{
    EXT_ATTRIBUTED_PROVIDER, EXT_CONTRACT_VALIDITY_PERIOD, EXT_COVERAGE_REFERENCE, Issue,
    ResourceType, SYSTEM_NPI, operation_outcome,
};
use atr_store::{Access, Clause, MemberChange, SearchQuery, TokenMatch};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

use super::resource::if_match;
use super::{fhir_json, version_headers};
use crate::audit::{self, AuditAction, AuditDraft};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// The inputs of an operation, by name, with the FHIR type each came as.
struct Inputs(Vec<(String, &'static str, Value)>);

const VALUE_TYPES: [(&str, &str); 5] = [
    ("valueIdentifier", "Identifier"),
    ("valueReference", "Reference"),
    ("valuePeriod", "Period"),
    ("valueString", "string"),
    ("valueCode", "code"),
];

fn parse_parameters(body: &[u8]) -> ApiResult<Inputs> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Inputs(Vec::new()));
    }
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "structure",
            format!("the body is not valid JSON: {e}"),
        )
    })?;
    if v.get("resourceType").and_then(Value::as_str) != Some("Parameters") {
        return Err(ApiError::bad_request(
            "the body of an operation must be a Parameters resource",
        ));
    }
    let mut out = Vec::new();
    for p in v
        .get("parameter")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
    {
        let name = p
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::bad_param("parameter", "every parameter needs a name"))?;
        let (kind, value) = VALUE_TYPES
            .iter()
            .find_map(|(field, kind)| p.get(*field).map(|v| (*kind, v.clone())))
            .unwrap_or(("other", Value::Null));
        out.push((name.to_string(), kind, value));
    }
    Ok(Inputs(out))
}

impl Inputs {
    /// The names given, checked against the accepted combinations (each a list of required names
    /// plus optional ones), with the right types.
    fn check(
        &self,
        op: &str,
        combos: &[&[&str]],
        optional: &[&str],
        types: &[(&str, &str)],
    ) -> ApiResult<()> {
        let mut names: Vec<&str> = self.0.iter().map(|(n, _, _)| n.as_str()).collect();
        let listing = || {
            combos
                .iter()
                .map(|c| {
                    if c.is_empty() {
                        "(none)".to_string()
                    } else {
                        c.join(" + ")
                    }
                })
                .collect::<Vec<_>>()
                .join("; ")
        };
        for (name, kind, _) in &self.0 {
            match types.iter().find(|(n, _)| n == name) {
                None => {
                    return Err(ApiError::bad_param(
                        name,
                        format!(
                            "{op} has no parameter {name:?}; accepted combinations: {}",
                            listing()
                        ),
                    ));
                }
                Some((_, want)) if want != kind => {
                    return Err(ApiError::bad_param(
                        name,
                        format!("{op} parameter {name} must be a {want}, not a {kind}"),
                    ));
                }
                _ => {}
            }
        }
        let before = names.len();
        names.sort_unstable();
        names.dedup();
        if names.len() != before {
            return Err(ApiError::bad_request(format!(
                "{op}: a parameter is repeated; accepted combinations: {}",
                listing()
            )));
        }
        let required: Vec<&str> = names
            .iter()
            .copied()
            .filter(|n| !optional.contains(n))
            .collect();
        let fits = combos.iter().any(|c| {
            let mut c: Vec<&str> = c.to_vec();
            c.sort_unstable();
            c == required
        });
        if fits {
            Ok(())
        } else {
            Err(ApiError::bad_request(format!(
                "{op} does not accept this combination of parameters ({}); accepted combinations: {}",
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(" + ")
                },
                listing()
            )))
        }
    }

    fn get(&self, name: &str) -> Option<&Value> {
        self.0.iter().find(|(n, _, _)| n == name).map(|(_, _, v)| v)
    }
}

async fn search_ids(
    state: &AppState,
    rtype: ResourceType,
    clauses: Vec<Clause>,
) -> ApiResult<Vec<String>> {
    let page = state
        .store
        .search(&SearchQuery {
            rtype,
            clauses,
            count: 50,
            after_id: None,
            with_total: false,
            access: Access::All,
        })
        .await?;
    Ok(page.matches.into_iter().map(|m| m.id).collect())
}

fn token(system: Option<&str>, value: &str) -> Vec<TokenMatch> {
    vec![TokenMatch {
        system: system.map(str::to_string),
        code: Some(value.to_string()),
    }]
}

fn identifier_parts<'a>(v: &'a Value, name: &str) -> ApiResult<(Option<&'a str>, &'a str)> {
    let value = v
        .get("value")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            ApiError::bad_param(name, format!("{name} needs an Identifier with a value"))
        })?;
    Ok((v.get("system").and_then(Value::as_str), value))
}

/// `memberId` → `Patient/id`, through the Patient's identifiers, then the Coverage's.
async fn patient_by_member_id(state: &AppState, v: &Value) -> ApiResult<String> {
    let (system, value) = identifier_parts(v, "memberId")?;
    let identifier = |_: ()| Clause::Token {
        param: "identifier",
        any_of: token(system, value),
    };
    let mut ids = search_ids(state, ResourceType::Patient, vec![identifier(())]).await?;
    if ids.is_empty() {
        for cov in search_ids(state, ResourceType::Coverage, vec![identifier(())]).await? {
            if let Some(r) = state.store.read(ResourceType::Coverage, &cov, None).await?
                && !r.deleted
                && let Ok(c) = serde_json::from_slice::<Value>(&r.body)
                && let Some(p) = c["beneficiary"]["reference"].as_str()
                && let Some(p) = atr_model::reference::normalize_reference(p)
                && let Some(id) = p.strip_prefix("Patient/")
            {
                ids.push(id.to_string());
            }
        }
        ids.sort();
        ids.dedup();
    }
    match ids.as_slice() {
        [one] => Ok(format!("Patient/{one}")),
        [] => Err(ApiError::not_found(format!(
            "no Patient has member id {}{value}",
            system.map(|s| format!("{s}|")).unwrap_or_default()
        ))
        .at("memberId")),
        _ => Err(ApiError::bad_param(
            "memberId",
            format!("member id {value} matches several Patients; send patientReference instead"),
        )),
    }
}

/// `providerNpi` → the Practitioner, PractitionerRole or Organization with that NPI.
async fn provider_by_npi(state: &AppState, v: &Value) -> ApiResult<String> {
    let (system, value) = identifier_parts(v, "providerNpi")?;
    if system.is_some_and(|s| s != SYSTEM_NPI) {
        return Err(ApiError::bad_param(
            "providerNpi",
            format!("providerNpi must be an NPI ({SYSTEM_NPI})"),
        ));
    }
    for rtype in [
        ResourceType::Practitioner,
        ResourceType::PractitionerRole,
        ResourceType::Organization,
    ] {
        let ids = search_ids(
            state,
            rtype,
            vec![Clause::Token {
                param: "identifier",
                any_of: token(Some(SYSTEM_NPI), value),
            }],
        )
        .await?;
        if let Some(id) = ids.first() {
            return Ok(format!("{rtype}/{id}"));
        }
    }
    Err(ApiError::not_found(format!("no provider has NPI {value}")).at("providerNpi"))
}

/// A reference input that must name an existing resource of one of `types`.
async fn existing_reference(
    state: &AppState,
    v: &Value,
    name: &str,
    types: &[ResourceType],
) -> ApiResult<String> {
    let text = v
        .get("reference")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::bad_param(name, format!("{name} needs a reference")))?;
    let reference = atr_model::reference::normalize_reference(text).ok_or_else(|| {
        ApiError::bad_param(name, format!("{name} {text:?} is not a Type/id reference"))
    })?;
    let (rtype, id) = reference.split_once('/').unwrap_or_default();
    let rtype: ResourceType = rtype
        .parse()
        .ok()
        .filter(|t| types.contains(t))
        .ok_or_else(|| {
            let names: Vec<&str> = types.iter().map(|t| t.as_str()).collect();
            ApiError::bad_param(
                name,
                format!("{name} must reference a {}", names.join(" or ")),
            )
        })?;
    match state.store.read(rtype, id, None).await? {
        Some(r) if !r.deleted => Ok(reference),
        _ => Err(ApiError::not_found(format!("{reference} ({name}) does not exist")).at(name)),
    }
}

/// The member an operation names: by `memberId`, else by `patientReference`.
async fn member_patient(state: &AppState, inputs: &Inputs) -> ApiResult<String> {
    match inputs.get("memberId") {
        Some(m) => patient_by_member_id(state, m).await,
        None => {
            existing_reference(
                state,
                inputs.get("patientReference").unwrap_or(&Value::Null),
                "patientReference",
                &[ResourceType::Patient],
            )
            .await
        }
    }
}

const PROVIDER_TYPES: [ResourceType; 3] = [
    ResourceType::Practitioner,
    ResourceType::PractitionerRole,
    ResourceType::Organization,
];

/// The member's active Coverage with the contract's payer.
async fn coverage_with_payer(
    state: &AppState,
    patient: &str,
    payer: Option<&str>,
) -> ApiResult<String> {
    // By beneficiary only (a member has a handful of Coverages); the payer is checked on each.
    // Adding `payor` to the search would make the database gather every Coverage of the payer.
    let clauses = vec![Clause::Reference {
        param: "beneficiary",
        any_of: vec![patient.to_string()],
    }];
    for id in search_ids(state, ResourceType::Coverage, clauses).await? {
        if let Some(r) = state.store.read(ResourceType::Coverage, &id, None).await?
            && !r.deleted
            && let Ok(c) = serde_json::from_slice::<Value>(&r.body)
            && c["status"] == "active"
            && payer.is_none_or(|payer| {
                c["payor"].as_array().into_iter().flatten().any(|p| {
                    p["reference"]
                        .as_str()
                        .and_then(atr_model::reference::normalize_reference)
                        .is_some_and(|r| r == payer)
                })
            })
        {
            return Ok(format!("Coverage/{id}"));
        }
    }
    Err(ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "business-rule",
        format!(
            "{patient} has no active Coverage with {}: the payer does not attribute members it does not cover",
            payer.unwrap_or("this payer")
        ),
    ))
}

/// The Group's current header, for its payer and contract period.
async fn group_header(state: &AppState, group_id: &str) -> ApiResult<Value> {
    match state
        .store
        .read(ResourceType::Group, group_id, None)
        .await?
    {
        Some(r) if !r.deleted => serde_json::from_slice(&r.body).map_err(|e| {
            tracing::error!(error = %e, "stored Group header unreadable");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "exception",
                "internal error",
            )
        }),
        _ => Err(ApiError::not_found(format!(
            "Group/{group_id} does not exist"
        ))),
    }
}

/// The `X-Provenance` header (the IG: Consumers SHOULD send it with their changes), checked before
/// anything changes and given an id; the store links it to the version the change makes.
fn x_provenance(headers: &HeaderMap) -> ApiResult<Option<Value>> {
    let Some(v) = headers.get("x-provenance") else {
        return Ok(None);
    };
    let bad = |why: &str| ApiError::bad_param("X-Provenance", format!("X-Provenance {why}"));
    let text = v.to_str().map_err(|_| bad("is not text"))?;
    let mut p: Value = serde_json::from_str(text).map_err(|_| bad("is not a JSON resource"))?;
    if p.get("resourceType").and_then(Value::as_str) != Some("Provenance") {
        return Err(bad("must be a Provenance resource"));
    }
    if !p
        .get("agent")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty() && a.iter().all(|x| x.get("who").is_some()))
    {
        return Err(bad("needs at least one agent, each with a who"));
    }
    p["id"] = Value::from(uuid::Uuid::now_v7().to_string());
    Ok(Some(p))
}

fn answer(status: StatusCode, message: String, version: i64, last_updated: i64) -> Response {
    let mut resp = fhir_json(status, &operation_outcome(&[Issue::information(message)]));
    if last_updated > 0 {
        version_headers(resp.headers_mut(), version, last_updated);
    } else {
        resp.headers_mut()
            .insert(axum::http::header::ETAG, super::etag(version));
    }
    resp
}

/// The parameter combinations `$member-add` accepts.
fn check_member_add(inputs: &Inputs) -> ApiResult<()> {
    inputs.check(
        "$member-add",
        &[
            &["memberId", "providerNpi"],
            &["patientReference", "providerReference"],
        ],
        &["attributionPeriod"],
        &[
            ("memberId", "Identifier"),
            ("providerNpi", "Identifier"),
            ("patientReference", "Reference"),
            ("providerReference", "Reference"),
            ("attributionPeriod", "Period"),
        ],
    )
}

/// A given `attributionPeriod` is held to the rules a list write is: a valid Period, not inverted,
/// sharing at least a day with the contract.
fn check_attribution_period(header: &Value, member: &Value) -> ApiResult<()> {
    let contract = atr_model::contract::contract_period(header);
    let issues: Vec<Issue> = atr_model::validate::validate_group_member(
        atr_model::validate::GroupProfile::AttributionList,
        member,
        0,
    )
    .into_iter()
    .filter(Issue::is_error)
    .chain(member.get("period").and_then(|p| {
        atr_model::contract::attribution_period_issue(contract.as_ref(), p, "attributionPeriod")
    }))
    .map(|mut i| {
        i.expression = Some("attributionPeriod".into());
        i
    })
    .collect();
    if issues.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid_resource(issues))
    }
}

/// The period of the active entry `entry` names (same patient, provider and coverage), when the
/// list has it.
async fn current_period(
    state: &AppState,
    group_id: &str,
    header: &Value,
    entry: &MemberEntry,
) -> ApiResult<Option<Value>> {
    let Some(version) = header["meta"]["versionId"]
        .as_str()
        .and_then(|v| v.parse::<i64>().ok())
    else {
        return Ok(None);
    };
    for text in state
        .store
        .entries_of(group_id, version, &entry.patient, false)
        .await?
    {
        let Ok(member) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        let row = MemberEntry::from_value(&member);
        if row.key == entry.key && !row.inactive {
            return Ok(member.get("period").cloned());
        }
    }
    Ok(None)
}

pub async fn member_add(
    state: &AppState,
    caller: &Caller,
    group_id: &str,
    headers: &HeaderMap,
    body: &[u8],
    audit: &AuditDraft,
) -> ApiResult<Response> {
    caller.require("Group", Interaction::Update)?;
    let inputs = parse_parameters(body)?;
    check_member_add(&inputs)?;
    x_provenance(headers)?;
    let header = group_header(state, group_id).await?;
    let (patient, provider) = match (inputs.get("memberId"), inputs.get("providerNpi")) {
        (Some(m), Some(n)) => (
            patient_by_member_id(state, m).await?,
            provider_by_npi(state, n).await?,
        ),
        _ => (
            existing_reference(
                state,
                inputs.get("patientReference").unwrap_or(&Value::Null),
                "patientReference",
                &[ResourceType::Patient],
            )
            .await?,
            existing_reference(
                state,
                inputs.get("providerReference").unwrap_or(&Value::Null),
                "providerReference",
                &PROVIDER_TYPES,
            )
            .await?,
        ),
    };
    let payer = header["managingEntity"]["reference"]
        .as_str()
        .and_then(atr_model::reference::normalize_reference);
    let coverage = coverage_with_payer(state, &patient, payer.as_deref()).await?;
    let mut member = json!({
        "extension": [
            {"url": EXT_COVERAGE_REFERENCE, "valueReference": {"reference": coverage}},
            {"url": EXT_ATTRIBUTED_PROVIDER, "valueReference": {"reference": provider}},
        ],
        "entity": {"reference": patient},
    });
    let given = inputs.get("attributionPeriod").cloned();
    if let Some(p) = &given {
        member["period"] = p.clone();
    }
    member["inactive"] = Value::Bool(false);
    let period = match given {
        Some(p) => {
            check_attribution_period(&header, &member)?;
            Some(p)
        }
        // Without a period the attribution keeps the one it has, or, new, runs for the contract.
        None => current_period(state, group_id, &header, &MemberEntry::from_value(&member))
            .await?
            .or_else(|| {
                header["extension"].as_array().and_then(|exts| {
                    exts.iter()
                        .find(|e| e["url"] == EXT_CONTRACT_VALIDITY_PERIOD)
                        .map(|e| e["valuePeriod"].clone())
                })
            }),
    };
    if let Some(p) = period.filter(Value::is_object) {
        member["period"] = p;
    }
    let entry = MemberEntry::from_value(&member);
    let out = state
        .store
        .change_members_audited(
            group_id,
            MemberChange::Add(entry),
            if_match(headers)?,
            x_provenance(headers)?,
            &audit.record(StatusCode::OK),
        )
        .await?;
    let message = if out.changed {
        format!(
            "{patient} added to Group/{group_id} (or its attribution period updated), attributed to {provider} with {coverage}; version {}",
            out.version
        )
    } else {
        format!(
            "{patient} is already on Group/{group_id}, attributed to {provider} with {coverage}; nothing changed (version {})",
            out.version
        )
    };
    Ok(answer(
        StatusCode::OK,
        message,
        out.version,
        out.last_updated,
    ))
}

pub async fn member_remove(
    state: &AppState,
    caller: &Caller,
    group_id: &str,
    headers: &HeaderMap,
    body: &[u8],
    audit: &AuditDraft,
) -> ApiResult<Response> {
    caller.require("Group", Interaction::Update)?;
    let inputs = parse_parameters(body)?;
    inputs.check(
        "$member-remove",
        &[
            &["memberId"],
            &["memberId", "providerNpi"],
            &["patientReference"],
            &["patientReference", "providerReference"],
            &["patientReference", "providerReference", "coverageReference"],
        ],
        &[],
        &[
            ("memberId", "Identifier"),
            ("providerNpi", "Identifier"),
            ("patientReference", "Reference"),
            ("providerReference", "Reference"),
            ("coverageReference", "Reference"),
        ],
    )?;
    group_header(state, group_id).await?;
    let patient = member_patient(state, &inputs).await?;
    let provider = match (inputs.get("providerNpi"), inputs.get("providerReference")) {
        (Some(n), _) => Some(provider_by_npi(state, n).await?),
        (_, Some(r)) => {
            Some(existing_reference(state, r, "providerReference", &PROVIDER_TYPES).await?)
        }
        _ => None,
    };
    let coverage = match inputs.get("coverageReference") {
        Some(r) => Some(
            existing_reference(state, r, "coverageReference", &[ResourceType::Coverage]).await?,
        ),
        None => None,
    };
    let out = state
        .store
        .change_members_audited(
            group_id,
            MemberChange::Remove {
                patient: patient.clone(),
                provider,
                coverage,
            },
            if_match(headers)?,
            x_provenance(headers)?,
            &audit.record(StatusCode::OK),
        )
        .await?;
    let how = if out.status == "draft" {
        "marked inactive with changeType dropped (the list is a draft)"
    } else {
        "removed (the list is open)"
    };
    Ok(answer(
        StatusCode::OK,
        format!(
            "{} entr{} of {patient} on Group/{group_id} {how}; version {}",
            out.affected,
            if out.affected == 1 { "y" } else { "ies" },
            out.version
        ),
        out.version,
        out.last_updated,
    ))
}

pub async fn confirm(
    state: &AppState,
    caller: &Caller,
    group_id: &str,
    headers: &HeaderMap,
    body: &[u8],
    audit: &AuditDraft,
) -> ApiResult<Response> {
    caller.require("Group", Interaction::Update)?;
    parse_parameters(body)?.check("$confirm-attribution-list", &[&[]], &[], &[])?;
    let out = state
        .store
        .change_members_audited(
            group_id,
            MemberChange::Confirm,
            if_match(headers)?,
            x_provenance(headers)?,
            &audit.record(StatusCode::CREATED),
        )
        .await?;
    let message = if out.changed {
        format!(
            "Group/{group_id} is now final (version {}); {} inactive entr{} dropped",
            out.version,
            out.affected,
            if out.affected == 1 { "y" } else { "ies" }
        )
    } else {
        format!(
            "Group/{group_id} was already final; nothing changed (version {})",
            out.version
        )
    };
    Ok(answer(
        StatusCode::CREATED,
        message,
        out.version,
        out.last_updated,
    ))
}

pub async fn attribution_status(
    state: &AppState,
    group_id: &str,
    body: &[u8],
) -> ApiResult<Response> {
    let inputs = parse_parameters(body)?;
    inputs.check(
        "$attribution-status",
        &[&["memberId"], &["patientReference"]],
        &[],
        &[
            ("memberId", "Identifier"),
            ("patientReference", "Reference"),
        ],
    )?;
    let stored = match state
        .store
        .read(ResourceType::Group, group_id, None)
        .await?
    {
        Some(r) if !r.deleted => r,
        _ => {
            return Err(ApiError::not_found(format!(
                "Group/{group_id} does not exist"
            )));
        }
    };
    let patient = member_patient(state, &inputs).await?;
    let mut header: Value = serde_json::from_slice(&stored.body).map_err(|e| {
        tracing::error!(error = %e, "stored Group header unreadable");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "exception",
            "internal error",
        )
    })?;
    let derive = atr_model::group::is_attribution_list(&header);
    let entries = state
        .store
        .entries_of(group_id, stored.version, &patient, derive)
        .await?;
    if entries.is_empty() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "business-rule",
            format!("{patient} is not on Group/{group_id}"),
        ));
    }
    let members: Vec<Value> = entries
        .iter()
        .filter_map(|e| serde_json::from_str(e).ok())
        .collect();
    let mut refs: Vec<String> = vec![patient.clone()];
    for m in &members {
        for ext in m["extension"].as_array().into_iter().flatten() {
            if let Some(r) = ext["valueReference"]["reference"].as_str() {
                refs.push(r.to_string());
            }
        }
    }
    header["quantity"] = members.len().into();
    header["member"] = Value::Array(members);
    let base = state.base_url.to_string();
    let mut out = vec![json!({"fullUrl": format!("{base}/Group/{group_id}"), "resource": header})];
    let mut seen = std::collections::HashSet::new();
    let mut i = 0;
    while i < refs.len() {
        let r = refs[i].clone();
        i += 1;
        if !seen.insert(r.clone()) {
            continue;
        }
        let Some((t, id)) = r.split_once('/') else {
            continue;
        };
        let Ok(rtype) = t.parse::<ResourceType>() else {
            continue;
        };
        let Some(res) = state.store.read(rtype, id, None).await? else {
            continue;
        };
        if res.deleted {
            continue;
        }
        let Ok(value) = serde_json::from_slice::<Value>(&res.body) else {
            continue;
        };
        // A Coverage's subscriber (a RelatedPerson) comes too.
        if rtype == ResourceType::Coverage
            && let Some(s) = value["subscriber"]["reference"].as_str()
            && s.starts_with("RelatedPerson/")
        {
            refs.push(s.to_string());
        }
        out.push(json!({"fullUrl": format!("{base}/{r}"), "resource": value}));
    }
    let bundle = json!({
        "resourceType": "Bundle",
        "type": "collection",
        "timestamp": atr_model::instant::fhir_instant(atr_model::instant::now_micros()),
        "entry": out,
    });
    Ok(fhir_json(StatusCode::OK, &bundle))
}

/// `POST [base]/Group/{id}/$operation`: checks the type, the client's access to the list, and
/// dispatches. Another provider's list is a 404, as for a read.
pub async fn instance_operation(
    axum::extract::State(state): axum::extract::State<AppState>,
    caller: Caller,
    axum::extract::Path((rtype, id, operation)): axum::extract::Path<(String, String, String)>,
    method: axum::http::Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    let rtype = super::resource_type(&rtype)?;
    super::check_id(&id)?;
    let draft = AuditDraft::new(
        &caller,
        AuditAction::Execute,
        operation.as_str(),
        Some(format!("{rtype}/{id}")),
    );
    if rtype == ResourceType::Group
        && matches!(operation.as_str(), "$davinci-data-export" | "$export")
    {
        let result = super::export::kick_off(
            &state,
            &caller,
            super::export::ExportLevel::Group(&id),
            &operation,
            &method,
            &uri,
            &headers,
            &body,
        )
        .await;
        audit::record_outcome(&state, &draft, &result).await;
        return result;
    }
    let known = [
        "$member-add",
        "$member-remove",
        "$confirm-attribution-list",
        "$attribution-status",
    ];
    if rtype != ResourceType::Group || !known.contains(&operation.as_str()) {
        return Err(ApiError::not_found(format!(
            "operation {operation} is not supported on {rtype}"
        )));
    }
    if method != axum::http::Method::POST {
        return Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "not-supported",
            format!("{operation} is invoked with POST and a Parameters body"),
        ));
    }
    let result = async {
        super::resource::readable(&state, &caller, rtype, &id).await?;
        match operation.as_str() {
            "$member-add" => member_add(&state, &caller, &id, &headers, &body, &draft).await,
            "$member-remove" => member_remove(&state, &caller, &id, &headers, &body, &draft).await,
            "$confirm-attribution-list" => {
                confirm(&state, &caller, &id, &headers, &body, &draft).await
            }
            _ => attribution_status(&state, &id, &body).await,
        }
    }
    .await;
    if operation == "$attribution-status" {
        audit::record_outcome(&state, &draft, &result).await;
    } else {
        // A change that succeeded was recorded in its own transaction.
        audit::record_failure(&state, &draft, &result).await;
    }
    result
}

/// `GET [base]/Provenance/{id}`: a Provenance a Consumer sent with a change, visible to whoever may
/// see its Group.
pub async fn read_provenance(
    axum::extract::State(state): axum::extract::State<AppState>,
    caller: Caller,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> ApiResult<Response> {
    super::check_id(&id)?;
    caller.require("Provenance", Interaction::Read)?;
    let missing = || ApiError::not_found(format!("Provenance/{id} does not exist"));
    let (group, body) = state
        .store
        .provenance(Some(&id), None)
        .await?
        .into_iter()
        .next()
        .ok_or_else(missing)?;
    if !state
        .store
        .visible(ResourceType::Group, &group, &caller.access)
        .await?
    {
        return Err(missing());
    }
    let value: Value = serde_json::from_slice(&body).map_err(|e| {
        tracing::error!(error = %e, "stored Provenance unreadable");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "exception",
            "internal error",
        )
    })?;
    Ok(fhir_json(StatusCode::OK, &value))
}

/// `GET [base]/Provenance?target=Group/{id}`: the Provenance of a list's changes.
pub async fn search_provenance(
    axum::extract::State(state): axum::extract::State<AppState>,
    caller: Caller,
    axum::extract::RawQuery(q): axum::extract::RawQuery,
) -> ApiResult<Response> {
    caller.require("Provenance", Interaction::Search)?;
    let mut group = None;
    for (k, v) in super::query_pairs(q.as_deref()) {
        match k.as_str() {
            "target" => {
                let g = v
                    .split("/_history/")
                    .next()
                    .and_then(|r| r.strip_prefix("Group/"))
                    .filter(|g| atr_model::ident::is_valid_id(g))
                    .ok_or_else(|| ApiError::bad_param("target", "target must be Group/{id}"))?;
                group = Some(g.to_string());
            }
            "_format" => {}
            other => {
                return Err(ApiError::bad_param(
                    other,
                    format!("Provenance search supports target only, not {other}"),
                ));
            }
        }
    }
    let group = group.ok_or_else(|| {
        ApiError::bad_param("target", "Provenance search needs target=Group/{id}")
    })?;
    let mut entries = Vec::new();
    if state
        .store
        .visible(ResourceType::Group, &group, &caller.access)
        .await?
    {
        let base = state.base_url.to_string();
        for (_, body) in state.store.provenance(None, Some(&group)).await? {
            if let Ok(v) = serde_json::from_slice::<Value>(&body) {
                let id = v["id"].as_str().unwrap_or_default().to_string();
                entries.push(json!({"fullUrl": format!("{base}/Provenance/{id}"), "resource": v, "search": {"mode": "match"}}));
            }
        }
    }
    let bundle = json!({"resourceType": "Bundle", "type": "searchset", "total": entries.len(), "entry": entries});
    Ok(fhir_json(StatusCode::OK, &bundle))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use proptest::sample::select;

    use super::*;

    const NAMES: &[&str] = &[
        "memberId",
        "providerNpi",
        "patientReference",
        "providerReference",
        "coverageReference",
        "attributionPeriod",
        "",
        "member-id",
    ];
    const VALUE_FIELDS: &[&str] = &[
        "valueIdentifier",
        "valueReference",
        "valuePeriod",
        "valueString",
        "valueCode",
        "valueBoolean",
        "part",
        "resource",
    ];

    fn json_leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            ".{0,12}".prop_map(Value::from),
            Just(json!({"system": SYSTEM_NPI, "value": "1234567893"})),
            Just(json!({"reference": "Patient/p1"})),
            Just(json!({"start": "2026-01-01", "end": "2025-01-01"})),
        ]
    }

    fn parameter() -> impl Strategy<Value = Value> {
        (
            prop::option::of(prop_oneof![
                select(NAMES).prop_map(Value::from),
                json_leaf()
            ]),
            prop::collection::vec((select(VALUE_FIELDS), json_leaf()), 0..3),
        )
            .prop_map(|(name, values)| {
                let mut p = serde_json::Map::new();
                if let Some(n) = name {
                    p.insert("name".into(), n);
                }
                for (field, v) in values {
                    p.insert(field.into(), v);
                }
                Value::Object(p)
            })
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_are_parameters_or_a_400(body in prop::collection::vec(any::<u8>(), 0..200)) {
            if let Err(e) = parse_parameters(&body) {
                prop_assert_eq!(e.status, StatusCode::BAD_REQUEST);
            }
        }

        #[test]
        fn parameters_bodies_are_accepted_or_refused_with_a_400_naming_why(
            params in prop::collection::vec(parameter(), 0..6),
            resource_type in select(&["Parameters", "Parameters", "Patient", ""][..]),
            parameter_not_array in any::<bool>(),
        ) {
            let body = if parameter_not_array {
                json!({"resourceType": resource_type, "parameter": params.first().cloned()})
            } else {
                json!({"resourceType": resource_type, "parameter": params})
            };
            match parse_parameters(body.to_string().as_bytes()) {
                Err(e) => prop_assert_eq!(e.status, StatusCode::BAD_REQUEST),
                Ok(inputs) => {
                    prop_assert!(inputs.0.len() <= params.len());
                    if let Err(e) = check_member_add(&inputs) {
                        prop_assert_eq!(e.status, StatusCode::BAD_REQUEST);
                        prop_assert!(!e.issues.is_empty());
                    }
                }
            }
        }
    }
}
