//! Type-level search, `GET [type]?…` and `POST [type]/_search`.

use atr_auth::Interaction;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::json;

use super::bundle::BundleWriter;
use super::{fhir_body, prefers, query_pairs, resource_type};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::search_params::parse;
use crate::state::AppState;

pub async fn search_get(
    State(state): State<AppState>,
    caller: Caller,
    Path(rtype): Path<String>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    run(state, &caller, &rtype, &headers, query_pairs(q.as_deref())).await
}

pub async fn search_post(
    State(state): State<AppState>,
    caller: Caller,
    Path(rtype): Path<String>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    crate::limits::check_form("_search body", &body, state.limits.max_query_params)?;
    let mut pairs = query_pairs(q.as_deref());
    pairs.extend(form_urlencoded::parse(&body).into_owned());
    run(state, &caller, &rtype, &headers, pairs).await
}

async fn run(
    state: AppState,
    caller: &Caller,
    rtype: &str,
    headers: &HeaderMap,
    pairs: Vec<(String, String)>,
) -> ApiResult<Response> {
    let rtype = resource_type(rtype)?;
    caller.require(rtype.as_str(), Interaction::Search)?;
    let lenient = prefers(headers, "handling=lenient");
    let mut parsed = parse(rtype, &pairs, lenient)?;
    // Another provider's lists are not there for this client: searches filter them out.
    parsed.query.access = caller.access.clone();
    let page = state.store.search(&parsed.query).await?;

    let base = state.base_url.to_string();
    let encode = |params: &[(String, String)]| {
        form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params.iter())
            .finish()
    };
    let mut self_params = parsed.link_params.clone();
    if let Some(after) = &parsed.query.after_id {
        self_params.push(("_cursor".into(), after.clone()));
    }
    let mut links = vec![("self", format!("{base}/{rtype}?{}", encode(&self_params)))];
    if let (true, Some(last)) = (page.has_more, page.matches.last()) {
        let mut next = parsed.link_params.clone();
        if !next.iter().any(|(k, _)| k == "_count") {
            next.push(("_count".into(), parsed.query.count.to_string()));
        }
        next.push(("_cursor".into(), last.id.clone()));
        links.push(("next", format!("{base}/{rtype}?{}", encode(&next))));
    }
    let mut bundle = BundleWriter::new(state.store.clone(), "searchset", page.total, links);
    for r in page.matches {
        let url = format!("{base}/{rtype}/{}", r.id);
        bundle.entry(
            url,
            Some(r),
            parsed.summary,
            json!({"search": {"mode": "match"}}),
        );
    }
    if !parsed.warnings.is_empty() {
        bundle.outcome(&parsed.warnings);
    }
    if parsed.query.count == 0 && page.total.is_none() {
        return Err(ApiError::bad_request(
            "_count=0 with _total=none asks for nothing",
        ));
    }
    Ok(fhir_body(StatusCode::OK, bundle.finish()))
}
