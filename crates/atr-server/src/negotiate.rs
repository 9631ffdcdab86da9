//! Content negotiation: JSON only, in its FHIR and plain spellings, by `Accept` or `_format`.

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

pub const FHIR_JSON: &str = "application/fhir+json; charset=utf-8";
const PLAIN_JSON: &str = "application/json; charset=utf-8";

fn is_json_media(m: &str) -> bool {
    let m = m
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    matches!(
        m.as_str(),
        "application/fhir+json" | "application/json" | "json" | "application/*" | "*/*" | ""
    )
}

fn format_param(query: Option<&str>) -> Option<String> {
    form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == "_format")
        .map(|(_, v)| v.into_owned())
}

/// Refuses what we cannot produce (406) or read (415), and answers in `application/json` when
/// that is all the client accepts.
pub async fn negotiate(req: Request, next: Next) -> Response {
    let format = format_param(req.uri().query());
    if let Some(f) = &format
        && !is_json_media(f)
    {
        return ApiError::new(
            StatusCode::NOT_ACCEPTABLE,
            "not-supported",
            format!(
                "_format={f} is not supported: this server speaks JSON (application/fhir+json)"
            ),
        )
        .into_response();
    }
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if let Some(accept) = &accept
        && format.is_none()
        && !accept.split(',').any(is_json_media)
    {
        return ApiError::new(
            StatusCode::NOT_ACCEPTABLE,
            "not-supported",
            format!("cannot answer in {accept}: this server speaks application/fhir+json and application/json"),
        )
        .into_response();
    }
    if let Some(err) = check_content_type(req.method(), req.headers(), req.uri().path()) {
        return err.into_response();
    }
    let plain_only = accept.as_deref().is_some_and(|a| {
        let a = a.to_ascii_lowercase();
        a.contains("application/json") && !a.contains("fhir+json")
    });
    let mut resp = next.run(req).await;
    if plain_only {
        let is_fhir = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/fhir+json"));
        if is_fhir {
            resp.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(PLAIN_JSON));
        }
    }
    resp
}

fn check_content_type(method: &Method, headers: &HeaderMap, path: &str) -> Option<ApiError> {
    if !(method == Method::POST || method == Method::PUT) {
        return None;
    }
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let media = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let ok = if path.ends_with("/_search") {
        media == "application/x-www-form-urlencoded" || media.is_empty()
    } else {
        media == "application/fhir+json" || media == "application/json"
    };
    (!ok).then(|| {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "not-supported",
            format!("Content-Type {ct:?} is not supported: send application/fhir+json"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_spellings_are_accepted() {
        for m in [
            "application/fhir+json",
            "application/json; charset=utf-8",
            "*/*",
            "json",
            "application/*",
        ] {
            assert!(is_json_media(m), "{m}");
        }
        for m in ["application/fhir+xml", "xml", "text/html"] {
            assert!(!is_json_media(m), "{m}");
        }
    }
}
