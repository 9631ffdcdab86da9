//! Every error the server answers is an `OperationOutcome` with the right status.

use atr_model::{Issue, operation_outcome};
use atr_store::StoreError;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// An HTTP error with the issues that explain it.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub issues: Vec<Issue>,
    /// `WWW-Authenticate` for a 401 (RFC 6750).
    pub challenge: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, diagnostics: impl Into<String>) -> Self {
        ApiError {
            status,
            issues: vec![Issue::error(code, diagnostics)],
            challenge: None,
        }
    }

    pub fn bad_param(param: &str, diagnostics: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            issues: vec![Issue::error("invalid", diagnostics).at(param)],
            challenge: None,
        }
    }

    pub fn bad_request(diagnostics: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid", diagnostics)
    }

    pub fn not_found(diagnostics: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", diagnostics)
    }

    pub fn invalid_resource(issues: Vec<Issue>) -> Self {
        ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            issues,
            challenge: None,
        }
    }

    /// 401: no usable bearer token. `error` is RFC 6750's code (`invalid_token`), or `None` when
    /// the request carried no credentials at all.
    pub fn unauthorized(error: Option<&str>, diagnostics: impl Into<String>) -> Self {
        let diagnostics = diagnostics.into();
        let challenge = match error {
            None => "Bearer realm=\"atr\"".to_string(),
            Some(code) => format!(
                "Bearer realm=\"atr\", error=\"{code}\", error_description=\"{}\"",
                diagnostics.replace(['"', '\\'], "'")
            ),
        };
        ApiError {
            status: StatusCode::UNAUTHORIZED,
            issues: vec![Issue::error("login", diagnostics)],
            challenge: Some(challenge),
        }
    }

    /// Names the element or parameter every issue is about.
    pub fn at(mut self, expression: &str) -> Self {
        for issue in &mut self.issues {
            issue.expression = Some(expression.to_string());
        }
        self
    }

    /// 403: authenticated, but the token's scopes (or the client's role) do not cover this.
    pub fn forbidden(diagnostics: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", diagnostics)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match &e {
            StoreError::VersionConflict { .. } => {
                Self::new(StatusCode::PRECONDITION_FAILED, "conflict", e.to_string())
            }
            StoreError::AlreadyExists { .. } => {
                Self::new(StatusCode::CONFLICT, "duplicate", e.to_string())
            }
            StoreError::NotFound { .. } => Self::not_found(e.to_string()),
            StoreError::ListFinal(_) => {
                Self::new(StatusCode::CONFLICT, "business-rule", e.to_string())
            }
            // Seed 000: one list per contract; member id + payer + contract + plan unique.
            StoreError::Claimed { element, .. } => {
                let refused = Self::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "duplicate",
                    format!("{e}; nothing was written"),
                );
                if element.is_empty() {
                    refused
                } else {
                    refused.at(element)
                }
            }
            StoreError::NotOnList { .. } => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "business-rule",
                e.to_string(),
            ),
            _ if e.is_unavailable() => {
                tracing::error!(error = %e, "database unavailable");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "transient",
                    "the database is unavailable; retry later",
                )
            }
            _ => {
                // Details go to the log, never to the client.
                tracing::error!(error = %e, "store failure");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "exception",
                    "internal error while reading or writing data",
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = operation_outcome(&self.issues).to_string();
        let mut resp = (self.status, body).into_response();
        if let Some(challenge) = self.challenge
            && let Ok(v) = HeaderValue::from_str(&challenge)
        {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(crate::negotiate::FHIR_JSON),
        );
        resp
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
