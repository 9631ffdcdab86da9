//! What the server refuses before a handler sees a request, and how: every refusal is an
//! `OperationOutcome` saying which limit was met.
//!
//! - bodies larger than [`Limits::max_body_bytes`] → 413;
//! - JSON bodies nesting deeper than [`MAX_JSON_DEPTH`] → 400;
//! - query strings (and `_search` form bodies) with more than [`Limits::max_query_params`]
//!   parameters, or whose percent-decoding is not UTF-8 → 400;
//! - query strings longer than [`MAX_QUERY_BYTES`] → 414;
//! - and any error answer made by axum or tower (an extractor's rejection, a panic) is rewritten
//!   as an `OperationOutcome` by [`outcome_for_errors`] and [`panic_outcome`].
//!
//! Header sizes are hyper's: more than 100 headers, or a request head beyond hyper's read buffer
//! (2 MiB is refused, 512 KiB passes), is answered 431 by hyper itself before this code runs (so
//! with an empty body).

use std::any::Any;

use atr_model::json_depth::{MAX_JSON_DEPTH, nesting_exceeds};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// Default largest request body: a Group upload can be hundreds of megabytes.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1 << 30;
/// Default most parameters in one query string or `_search` form body.
pub const DEFAULT_MAX_QUERY_PARAMS: usize = 100;
/// Longest query string served; hyper itself refuses a request target over 64 KiB.
pub const MAX_QUERY_BYTES: usize = 32 * 1024;
/// Largest error body read back to turn a plain-text rejection into an `OperationOutcome`.
const MAX_REJECTION_BYTES: usize = 16 * 1024;

/// The request limits in force.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub max_query_params: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_query_params: DEFAULT_MAX_QUERY_PARAMS,
        }
    }
}

impl Limits {
    fn body_too_large(&self) -> ApiError {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too-long",
            format!(
                "the request body is larger than this server's limit of {} (atr serve --max-body-mb)",
                human_bytes(self.max_body_bytes)
            ),
        )
    }
}

fn human_bytes(n: usize) -> String {
    if n >= 1 << 20 && n.is_multiple_of(1 << 20) {
        format!("{} MiB", n >> 20)
    } else {
        format!("{n} bytes")
    }
}

/// Checks a form-encoded parameter list (a query string, a `_search` body): at most
/// `max_params` parameters, every name and value UTF-8 once percent-decoded. `what` names it in
/// the answer.
pub fn check_form(what: &str, form: &[u8], max_params: usize) -> Result<(), ApiError> {
    let mut count = 0usize;
    for pair in form.split(|b| *b == b'&').filter(|p| !p.is_empty()) {
        count += 1;
        if count > max_params {
            return Err(ApiError::bad_request(format!(
                "the {what} has more than {max_params} parameters"
            )));
        }
        let (name, value) = match pair.iter().position(|b| *b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &pair[..0]),
        };
        for part in [name, value] {
            if std::str::from_utf8(&percent_decode(part)).is_err() {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "structure",
                    format!(
                        "the {what} is not UTF-8 once percent-decoded (at {:?})",
                        String::from_utf8_lossy(pair)
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// `application/x-www-form-urlencoded` decoding: `+` is a space, `%XY` a byte; a `%` without two
/// hex digits stays as it is (as `form_urlencoded` reads it).
fn percent_decode(input: &[u8]) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        match input[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < input.len() => match (hex(input[i + 1]), hex(input[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    out
}

fn is_json(req: &Request) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|ct| ct.split(';').next())
        .map(|m| m.trim().to_ascii_lowercase())
        .is_some_and(|m| m == "application/json" || m == "application/fhir+json")
}

/// The request's query string and (for JSON) body limits; see the module's documentation.
pub async fn guard_request(State(limits): State<Limits>, req: Request, next: Next) -> Response {
    if let Some(query) = req.uri().query() {
        if query.len() > MAX_QUERY_BYTES {
            return ApiError::new(
                StatusCode::URI_TOO_LONG,
                "too-long",
                format!(
                    "the query string is {} bytes long; at most {MAX_QUERY_BYTES} are served (POST [type]/_search takes long searches)",
                    query.len()
                ),
            )
            .into_response();
        }
        if let Err(e) = check_form("query string", query.as_bytes(), limits.max_query_params) {
            return e.into_response();
        }
    }
    if !(matches!(*req.method(), Method::POST | Method::PUT) && is_json(&req)) {
        return next.run(req).await;
    }
    // JSON bodies are read here, once, to bound their nesting before any parser meets them; the
    // handler's extractor gets the same bytes back without a copy.
    let (parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, limits.max_body_bytes).await {
        Ok(b) => b,
        Err(e) if is_length_limit(&e) => return limits.body_too_large().into_response(),
        Err(e) => {
            return ApiError::bad_request(format!("the request body could not be read: {e}"))
                .into_response();
        }
    };
    if nesting_exceeds(&bytes, MAX_JSON_DEPTH) {
        return ApiError::new(
            StatusCode::BAD_REQUEST,
            "structure",
            format!("the JSON body nests arrays and objects more than {MAX_JSON_DEPTH} deep"),
        )
        .into_response();
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

fn is_length_limit(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = s.source();
    }
    false
}

/// Rewrites an error answer that is not already FHIR (axum's plain-text rejections of a path,
/// query or body it could not extract; a 413 from the body limit) as an `OperationOutcome`, its
/// text as the diagnostics. OAuth's JSON errors from the token endpoint stay as they are.
pub async fn outcome_for_errors(
    State(limits): State<Limits>,
    req: Request,
    next: Next,
) -> Response {
    let resp = next.run(req).await;
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let is_json_already = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            ct.starts_with("application/fhir+json") || ct.starts_with("application/json")
        });
    if is_json_already {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let text = match axum::body::to_bytes(body, MAX_REJECTION_BYTES).await {
        Ok(b) if parts.headers.get(header::CONTENT_ENCODING).is_none() => {
            String::from_utf8_lossy(&b).trim().to_string()
        }
        _ => String::new(),
    };
    let error = if status == StatusCode::PAYLOAD_TOO_LARGE {
        limits.body_too_large()
    } else {
        let diagnostics = if text.is_empty() {
            status
                .canonical_reason()
                .unwrap_or("the request was refused")
                .to_string()
        } else {
            text
        };
        ApiError::new(status, issue_code(status), diagnostics)
    };
    let mut out = error.into_response();
    // Keep what the original answer said beyond its body (`Allow`, `Retry-After`, …).
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE
            && name != header::CONTENT_LENGTH
            && name != header::CONTENT_ENCODING
        {
            out.headers_mut().insert(name.clone(), value.clone());
        }
    }
    out
}

/// The FHIR `issue-type` for an error status that carries no better one.
fn issue_code(status: StatusCode) -> &'static str {
    match status {
        StatusCode::NOT_FOUND => "not-found",
        StatusCode::METHOD_NOT_ALLOWED
        | StatusCode::NOT_ACCEPTABLE
        | StatusCode::UNSUPPORTED_MEDIA_TYPE => "not-supported",
        StatusCode::PAYLOAD_TOO_LARGE | StatusCode::URI_TOO_LONG => "too-long",
        StatusCode::TOO_MANY_REQUESTS => "throttled",
        StatusCode::UNAUTHORIZED => "login",
        StatusCode::FORBIDDEN => "forbidden",
        s if s.is_server_error() => "exception",
        _ => "invalid",
    }
}

/// A handler's panic answers 500 with an `OperationOutcome` (the panic's text goes to the log
/// only), and the connection and the server live on.
pub fn panic_outcome(panic: Box<dyn Any + Send + 'static>) -> Response {
    let what = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    tracing::error!(panic = %what, "a handler panicked");
    let mut resp = ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "exception",
        "internal error while handling the request",
    )
    .into_response();
    resp.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding_reads_plus_escapes_and_stray_percents() {
        assert_eq!(percent_decode(b"a+b%2Cc"), b"a b,c");
        assert_eq!(percent_decode(b"100%"), b"100%");
        assert_eq!(percent_decode(b"%4"), b"%4");
        assert_eq!(percent_decode(b"%zz%41"), b"%zzA");
        assert_eq!(percent_decode(b"%FF"), vec![0xFF]);
    }

    #[test]
    fn forms_are_checked_for_count_and_utf8() {
        assert!(check_form("q", b"a=1&b=2", 2).is_ok());
        assert!(check_form("q", b"a=1&b=2&c", 2).is_err());
        assert!(check_form("q", b"a=1&&&b=2", 2).is_ok());
        assert!(check_form("q", b"name=%C3%A9", 2).is_ok());
        assert!(check_form("q", b"name=%FF", 2).is_err());
        assert!(check_form("q", b"%C3=x", 2).is_err());
    }
}
