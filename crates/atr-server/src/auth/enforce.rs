//! The bearer-token gate in front of the FHIR API: a valid token becomes a [`Caller`] in the
//! request's extensions; anything else is a 401 with `WWW-Authenticate: Bearer`.

use axum::extract::{FromRequestParts, Request, State};
use axum::http::header;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::Caller;
use crate::error::ApiError;
use crate::state::AppState;

pub async fn require_token(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    let mut headers = req.headers().get_all(header::AUTHORIZATION).iter();
    let (first, second) = (headers.next(), headers.next());
    if second.is_some() {
        // Serving the first of several would let a proxy and the client disagree about who
        // is asking.
        return ApiError::unauthorized(
            Some("invalid_request"),
            "the request has more than one Authorization header",
        )
        .into_response();
    }
    let header = first.and_then(|v| v.to_str().ok());
    let Some(header) = header else {
        return ApiError::unauthorized(None, "this request needs a bearer access token")
            .into_response();
    };
    let token = match header.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            token.trim()
        }
        _ => {
            return ApiError::unauthorized(
                Some("invalid_request"),
                "the Authorization header must be 'Bearer <token>'",
            )
            .into_response();
        }
    };
    match state.auth.caller(token).await {
        Ok(caller) => {
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        Err(e) => e.into_response(),
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or_else(|| ApiError::unauthorized(None, "this request needs a bearer access token"))
    }
}
