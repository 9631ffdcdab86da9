//! `/.well-known/smart-configuration` (at the FHIR base and at the host root: clients look in
//! both), and the CapabilityStatement's `security` element that points at the same endpoints.

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::state::AppState;

/// The scopes a client may ask for, as listed in the configuration document.
pub fn scopes_supported() -> Vec<String> {
    let mut scopes: Vec<String> = [
        "system/*.read",
        "system/*.rs",
        "system/*.write",
        "system/*.cud",
        "system/*.cruds",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for t in super::supported_types() {
        scopes.push(format!("system/{t}.read"));
        scopes.push(format!("system/{t}.rs"));
    }
    scopes
}

pub async fn smart_configuration(State(state): State<AppState>) -> Response {
    let doc = json!({
        "issuer": state.auth.token_url.trim_end_matches("/auth/token"),
        "token_endpoint": state.auth.token_url,
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
        "scopes_supported": scopes_supported(),
        "capabilities": ["client-confidential-asymmetric", "permission-v1", "permission-v2"],
    });
    let mut resp = (StatusCode::OK, doc.to_string()).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// `CapabilityStatement.rest.security`.
pub fn security(token_url: &str) -> Value {
    json!({
        "extension": [{
            "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
            "extension": [{"url": "token", "valueUri": token_url}]
        }],
        "service": [{
            "coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                "code": "SMART-on-FHIR"
            }],
            "text": "SMART Backend Services (client_credentials, private_key_jwt with RS384 or ES384)"
        }],
        "description": "Every interaction except metadata and .well-known/smart-configuration needs a bearer token from the token endpoint. A client sees only the attribution lists of the providers it was registered for, and the resources those lists reference."
    })
}
