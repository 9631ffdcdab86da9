//! `POST /auth/token`: the `client_credentials` grant with a `private_key_jwt` client assertion
//! (SMART Backend Services). Errors are OAuth JSON, not OperationOutcomes: that is what OAuth
//! clients parse.

use atr_auth::{AuthError, JwkSet, Scope};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::{Authority, now_unix, supported_types};
use crate::state::AppState;

pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// An OAuth error answer (RFC 6749 §5.2).
#[derive(Debug)]
pub struct OAuthError {
    pub status: StatusCode,
    pub code: &'static str,
    pub description: String,
}

impl OAuthError {
    fn new(code: &'static str, description: impl Into<String>) -> Self {
        // RFC 6749: 401 when client authentication failed, 400 otherwise.
        let status = match code {
            "invalid_client" => StatusCode::UNAUTHORIZED,
            "server_error" => StatusCode::INTERNAL_SERVER_ERROR,
            "temporarily_unavailable" => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        };
        OAuthError {
            status,
            code,
            description: description.into(),
        }
    }
}

impl From<AuthError> for OAuthError {
    fn from(e: AuthError) -> Self {
        if let AuthError::Internal(detail) = &e {
            tracing::error!(error = %detail, "token endpoint failure");
            return OAuthError::new("server_error", "internal error");
        }
        OAuthError::new(e.oauth_code(), e.to_string())
    }
}

impl From<atr_store::StoreError> for OAuthError {
    fn from(e: atr_store::StoreError) -> Self {
        tracing::error!(error = %e, "token endpoint store failure");
        if e.is_unavailable() {
            OAuthError::new("temporarily_unavailable", "the database is unavailable")
        } else {
            OAuthError::new("server_error", "internal error")
        }
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let body = json!({"error": self.code, "error_description": self.description});
        let mut resp = (self.status, body.to_string()).into_response();
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if self.status == StatusCode::UNAUTHORIZED {
            h.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"atr\""),
            );
        }
        resp
    }
}

pub async fn token(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, OAuthError> {
    let form_encoded = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';').next().is_some_and(|m| {
                m.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            })
        });
    if !form_encoded {
        return Err(OAuthError::new(
            "invalid_request",
            "the token request must be application/x-www-form-urlencoded",
        ));
    }
    let mut grant_type = None;
    let mut assertion_type = None;
    let mut assertion = None;
    let mut scope = None;
    for (k, v) in form_urlencoded::parse(&body) {
        let slot = match k.as_ref() {
            "grant_type" => &mut grant_type,
            "client_assertion_type" => &mut assertion_type,
            "client_assertion" => &mut assertion,
            "scope" => &mut scope,
            _ => continue,
        };
        if slot.replace(v.into_owned()).is_some() {
            return Err(OAuthError::new(
                "invalid_request",
                format!("parameter {k} is repeated"),
            ));
        }
    }
    match grant_type.as_deref() {
        Some("client_credentials") => {}
        Some(other) => {
            return Err(OAuthError::new(
                "unsupported_grant_type",
                format!("grant_type {other:?} is not supported; use client_credentials"),
            ));
        }
        None => return Err(OAuthError::new("invalid_request", "grant_type is missing")),
    }
    if assertion_type.as_deref() != Some(ASSERTION_TYPE) {
        return Err(OAuthError::new(
            "invalid_request",
            format!("client_assertion_type must be {ASSERTION_TYPE}"),
        ));
    }
    let assertion = assertion
        .ok_or_else(|| OAuthError::new("invalid_request", "client_assertion is missing"))?;
    let scope = scope
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| OAuthError::new("invalid_scope", "scope is missing"))?;
    let auth = &state.auth;
    let (client_id, granted) = authenticate(auth, &assertion, &scope).await?;
    let now = now_unix();
    let jti = uuid::Uuid::now_v7().to_string();
    let ttl = auth.config.token_ttl_secs;
    let access_token = auth.keys().issue(&client_id, &granted, now, ttl, &jti);
    let body = json!({
        "access_token": access_token,
        "token_type": "bearer",
        "expires_in": ttl,
        "scope": granted,
    });
    let mut resp = (StatusCode::OK, body.to_string()).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    Ok(resp)
}

/// Checks the assertion and the scope request; returns the client id and the granted scope text.
async fn authenticate(
    auth: &Authority,
    assertion: &str,
    requested: &str,
) -> Result<(String, String), OAuthError> {
    let peeked = atr_auth::peek(assertion)?;
    let client_id = peeked
        .iss
        .clone()
        .ok_or_else(|| OAuthError::new("invalid_client", "the client assertion has no iss"))?;
    // The registry is read fresh here: a disabled client must not get a new token.
    let client = auth
        .store
        .client(&client_id)
        .await?
        .ok_or_else(|| OAuthError::new("invalid_client", "unknown client"))?;
    if !client.enabled {
        return Err(OAuthError::new("invalid_client", "this client is disabled"));
    }
    let now = now_unix();
    let keys = match (&client.jwks, &client.jwks_url) {
        (Some(inline), _) => {
            if peeked.jku.is_some() {
                return Err(OAuthError::new(
                    "invalid_client",
                    "the assertion names a jku but this client is registered with inline keys",
                ));
            }
            JwkSet::parse(inline)?
        }
        (None, Some(url)) => {
            if let Some(jku) = &peeked.jku
                && jku != url
            {
                return Err(OAuthError::new(
                    "invalid_client",
                    "the assertion's jku is not the client's registered JWKS URL",
                ));
            }
            auth.jwks.get(url, peeked.kid.as_deref(), now).await?
        }
        (None, None) => {
            return Err(OAuthError::new(
                "invalid_client",
                "this client has no registered keys",
            ));
        }
    };
    let verified = atr_auth::verify(assertion, &keys, &auth.token_url, now)?;
    if !auth
        .store
        .record_jti(&verified.client_id, &verified.jti, verified.exp + 60, now)
        .await?
    {
        return Err(AuthError::Replayed.into());
    }
    let allowed: Vec<Scope> = client
        .scopes
        .iter()
        .filter_map(|s| Scope::parse(s))
        .collect();
    let granted = atr_auth::grant(requested, &allowed, &supported_types())?;
    Ok((verified.client_id, granted.to_string()))
}
