//! The FHIR REST routes and the small pieces every handler shares.

mod audit_event;
mod bundle;
pub(crate) mod export;
mod metadata;
mod reconcile;
mod resource;
mod search;
mod subscription;

use atr_model::ResourceType;
use atr_model::instant::http_date;
use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::routing::{get, post};

use crate::error::{ApiError, ApiResult};
use crate::negotiate::FHIR_JSON;
use crate::render::ByteStream;
use crate::state::AppState;

/// The FHIR API. Everything but `metadata` passes the bearer-token gate.
pub fn fhir_routes(state: &AppState) -> Router<AppState> {
    let protected = Router::new()
        .route("/Provenance", get(reconcile::search_provenance))
        .route(
            "/bulkstatus/{job}",
            get(export::status).delete(export::cancel),
        )
        .route("/Provenance/{id}", get(reconcile::read_provenance))
        .route(
            "/$export",
            get(export::system_kick_off).post(export::system_kick_off),
        )
        .route(
            "/Patient/$export",
            get(export::patient_kick_off).post(export::patient_kick_off),
        )
        .route("/AuditEvent", get(audit_event::search))
        .route("/AuditEvent/{id}", get(audit_event::read))
        .route(
            "/Subscription",
            get(subscription::search).post(subscription::create),
        )
        .route(
            "/Subscription/{id}",
            get(subscription::read)
                .put(subscription::update)
                .delete(subscription::delete),
        )
        .route(
            "/Subscription/{id}/{operation}",
            get(subscription::operation).post(subscription::operation),
        )
        .route("/{rtype}", get(search::search_get).post(resource::create))
        .route("/{rtype}/_search", post(search::search_post))
        .route(
            "/{rtype}/{id}",
            get(resource::read)
                .put(resource::update)
                .delete(resource::delete),
        )
        .route("/{rtype}/{id}/_history", get(resource::history))
        .route("/{rtype}/{id}/_history/{version}", get(resource::vread))
        .route(
            "/{rtype}/{id}/{operation}",
            get(reconcile::instance_operation).post(reconcile::instance_operation),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            wake_notifier,
        ))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::auth::enforce::require_token,
        ));
    Router::new()
        .route("/metadata", get(metadata::capability_statement))
        .merge(protected)
}

/// After a write that succeeded, delivery looks for due notifications at once instead of at its
/// next poll (a Group change's events are already committed in the outbox).
async fn wake_notifier(
    axum::extract::State(state): axum::extract::State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let writes = !matches!(
        *req.method(),
        axum::http::Method::GET | axum::http::Method::HEAD
    );
    let resp = next.run(req).await;
    if writes && resp.status().is_success() {
        state.notifier.wake();
    }
    resp
}

/// The resource type named in a path; unsupported types do not exist here (404).
pub(crate) fn resource_type(name: &str) -> ApiResult<ResourceType> {
    name.parse()
        .map_err(|e: atr_model::resource_type::UnsupportedType| ApiError::not_found(e.to_string()))
}

pub(crate) fn check_id(id: &str) -> ApiResult<()> {
    if atr_model::ident::is_valid_id(id) {
        Ok(())
    } else {
        // An id is echoed so the client sees which one; a hostile one is cut short.
        let shown: String = id.chars().take(80).collect();
        let more = if shown.len() < id.len() { "…" } else { "" };
        Err(ApiError::bad_request(format!(
            "{shown:?}{more} is not a valid FHIR id ([A-Za-z0-9-.]{{1,64}})"
        )))
    }
}

pub(crate) fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    query
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}

/// `Prefer` header tokens, e.g. `return=minimal`, `handling=lenient`.
pub(crate) fn prefers(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split([',', ';']))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

pub(crate) fn etag(version: i64) -> HeaderValue {
    HeaderValue::from_str(&format!("W/\"{version}\""))
        .unwrap_or(HeaderValue::from_static("W/\"0\""))
}

pub(crate) fn version_headers(headers: &mut HeaderMap, version: i64, last_updated: i64) {
    headers.insert(header::ETAG, etag(version));
    if let Ok(v) = HeaderValue::from_str(&http_date(last_updated)) {
        headers.insert(header::LAST_MODIFIED, v);
    }
}

pub(crate) fn fhir_body(status: StatusCode, body: ByteStream) -> Response {
    let mut resp = Response::new(Body::from_stream(body));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
    resp
}

pub(crate) fn fhir_json(status: StatusCode, value: &serde_json::Value) -> Response {
    let mut resp = Response::new(Body::from(value.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
    resp
}
