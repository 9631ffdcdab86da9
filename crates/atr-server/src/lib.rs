//! The Producer's HTTP side: an axum app serving the ATR IG's FHIR R4 API over an
//! [`atr_store::Store`].
//!
//! Handlers stay thin: they parse the request (path, query, headers, body), call the store and
//! write the answer. Every failure is an [`error::ApiError`], answered as an `OperationOutcome`.
//! This crate knows no SQL; it knows HTTP, FHIR's REST rules and the ATR IG's conventions.

pub mod audit;
pub mod auth;
pub mod error;
pub mod ingest;
pub mod limits;
pub mod negotiate;
pub mod rate_limit;
mod render;
mod routes;
pub mod search_params;
pub mod state;
pub mod tls;

use std::sync::Arc;

use atr_store::Store;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{StatusCode, Uri};
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::compression::CompressionLayer;
use tower_http::trace::TraceLayer;

pub use auth::AuthConfig;
pub use error::ApiError;
pub use state::AppState;

/// Server settings beyond the store.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Public FHIR base URL; `None` derives `http://ADDR/fhir` (`https` with [`ServerConfig::tls`])
    /// from the listening address.
    pub base_url: Option<String>,
    /// Request size limits (body, query parameters).
    pub limits: limits::Limits,
    /// Per-client request rate limit; `None` (the default) is no limit.
    pub rate_limit: Option<rate_limit::RateLimit>,
    pub auth: AuthConfig,
    pub export: atr_export::ExportConfig,
    pub notify: atr_notify::NotifyConfig,
    /// Serve HTTPS with this certificate; `None` (the default) serves plain HTTP.
    pub tls: Option<tls::TlsSettings>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            base_url: None,
            limits: limits::Limits::default(),
            rate_limit: None,
            auth: AuthConfig::default(),
            export: atr_export::ExportConfig::new("atr-data/exports".into()),
            notify: atr_notify::NotifyConfig::default(),
            tls: None,
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
    let fhir = routes::fhir_routes(&state)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn(negotiate::negotiate));
    // OAuth documents and endpoints are plain JSON whatever the `Accept`: outside negotiation.
    let smart = get(auth::discovery::smart_configuration);
    // Export files stream their stored bytes (or gzip them itself, with Range support): outside
    // content negotiation (clients send no Accept or fhir+ndjson) and outside the compression
    // layer.
    let files = Router::new()
        .route("/fhir/bulkfiles/{job}/{name}", get(routes::export::file))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::enforce::require_token,
        ))
        .with_state(state.clone());
    let limits = config.limits;
    let outcomes = axum::middleware::from_fn_with_state(limits, limits::outcome_for_errors);
    let files = files.layer(outcomes.clone());
    let app = Router::new()
        .route("/fhir/.well-known/smart-configuration", smart.clone())
        .route("/.well-known/smart-configuration", smart)
        .route("/auth/token", post(auth::token::token))
        .nest("/fhir", fhir)
        .fallback(not_found)
        .with_state(state.clone())
        // Inside compression, so a rejection's text is read before it is gzipped.
        .layer(outcomes)
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .layer(CompressionLayer::new())
        .merge(files)
        .layer(axum::middleware::from_fn_with_state(
            limits,
            limits::guard_request,
        ))
        .layer(CatchPanicLayer::custom(limits::panic_outcome));
    // Outermost but for tracing: a throttled request costs no body read and no handler.
    let app = match config.rate_limit {
        Some(limit) => app.layer(axum::middleware::from_fn_with_state(
            (state, Arc::new(rate_limit::RateLimiter::new(limit))),
            rate_limit::limit_rate,
        )),
        None => app,
    };
    // The request span names the method and path only: query strings carry member identifiers
    // (`Patient?identifier=…`) and the default span would log the whole URI.
    app.layer(
        TraceLayer::new_for_http().make_span_with(|req: &axum::http::Request<axum::body::Body>| {
            tracing::debug_span!("request", method = %req.method(), path = %req.uri().path())
        }),
    )
}

/// Serves until the process ends, with the state [`state_for`] made for this listener.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    config: ServerConfig,
) -> std::io::Result<()> {
    tracing::info!(base = %state.base_url, dialect = state.store.dialect(), "serving FHIR");
    let router = app(state, &config);
    // The peer's address keys the rate limit of requests without a token.
    let service = router.into_make_service_with_connect_info::<std::net::SocketAddr>();
    match &config.tls {
        None => axum::serve(listener, service).await,
        Some(tls) => {
            use axum::serve::ListenerExt;
            // `tap_io` is what gives a custom listener axum's `SocketAddr` connect info.
            let listener = tls::TlsListener::new(listener, tls)?.tap_io(|_| {});
            axum::serve(listener, service).await
        }
    }
}

/// The state for a listener: the base URL is the configured one or the bound address (`https`
/// when the server has a certificate).
pub async fn state_for(
    listener: &TcpListener,
    store: Arc<dyn Store>,
    config: &ServerConfig,
) -> std::io::Result<AppState> {
    let base_url = match &config.base_url {
        Some(b) => b.trim_end_matches('/').to_string(),
        None => {
            let scheme = if config.tls.is_some() {
                "https"
            } else {
                "http"
            };
            format!("{scheme}://{}/fhir", listener.local_addr()?)
        }
    };
    let token_url = token_url_for(&base_url);
    let auth = auth::Authority::new(store.clone(), token_url, config.auth.clone())
        .await
        .map_err(std::io::Error::other)?;
    let exporter = Arc::new(
        atr_export::Exporter::new(
            store.clone(),
            config.export.clone(),
            Arc::new(|q: &str| routes::export::parse_type_filter(q)),
        )
        .map_err(std::io::Error::other)?,
    );
    exporter.spawn();
    let notifier = Arc::new(atr_notify::Notifier::new(
        store.clone(),
        &base_url,
        config.notify.clone(),
        auth::group_access_check(store.clone()),
    ));
    notifier.spawn();
    Ok(AppState {
        store,
        base_url: base_url.into(),
        auth: Arc::new(auth),
        exporter,
        notifier,
        limits: config.limits,
    })
}

/// The token endpoint beside a FHIR base: `http://host/fhir` → `http://host/auth/token`.
pub fn token_url_for(base_url: &str) -> String {
    let origin = base_url.strip_suffix("/fhir").unwrap_or(base_url);
    format!("{origin}/auth/token")
}
