//! The Producer's HTTP side: an axum app serving the ATR IG's FHIR R4 API over an
//! [`atr_store::Store`].
//!
//! Handlers stay thin: they parse the request (path, query, headers, body), call the store and
//! write the answer. Every failure is an [`error::ApiError`], answered as an `OperationOutcome`.
//! This crate knows no SQL; it knows HTTP, FHIR's REST rules and the ATR IG's conventions.

pub mod error;
pub mod ingest;
pub mod negotiate;
mod render;
mod routes;
pub mod search_params;
pub mod state;

use std::sync::Arc;

use atr_store::Store;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{StatusCode, Uri};
use tokio::net::TcpListener;
use tower_http::compression::CompressionLayer;
use tower_http::trace::TraceLayer;

pub use error::ApiError;
pub use state::AppState;

/// Server settings beyond the store.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Public FHIR base URL; `None` derives `http://ADDR/fhir` from the listening address.
    pub base_url: Option<String>,
    /// Largest request body accepted (a Group upload can be hundreds of megabytes).
    pub max_body_bytes: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            base_url: None,
            max_body_bytes: 1 << 30,
        }
    }
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError::not_found(format!("nothing is served at {}", uri.path()))
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "not-supported",
        "this method is not allowed on this URL",
    )
}

/// The whole application.
pub fn app(state: AppState, config: &ServerConfig) -> Router {
    let fhir = routes::fhir_routes()
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn(negotiate::negotiate));
    Router::new()
        .nest("/fhir", fhir)
        .fallback(not_found)
        .with_state(state)
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .layer(CompressionLayer::new())
        .layer(TraceLayer::new_for_http())
}

/// Serves until the process ends. Returns the base URL it serves.
pub async fn serve(
    listener: TcpListener,
    store: Arc<dyn Store>,
    config: ServerConfig,
) -> std::io::Result<()> {
    let state = state_for(&listener, store, &config)?;
    tracing::info!(base = %state.base_url, dialect = state.store.dialect(), "serving FHIR");
    let router = app(state, &config);
    axum::serve(listener, router).await
}

/// The state for a listener: the base URL is the configured one or the bound address.
pub fn state_for(
    listener: &TcpListener,
    store: Arc<dyn Store>,
    config: &ServerConfig,
) -> std::io::Result<AppState> {
    let base_url = match &config.base_url {
        Some(b) => b.trim_end_matches('/').to_string(),
        None => format!("http://{}/fhir", listener.local_addr()?),
    };
    Ok(AppState {
        store,
        base_url: base_url.into(),
    })
}
