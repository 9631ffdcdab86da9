//! What every handler shares.

use std::sync::Arc;

use atr_store::Store;

use crate::auth::Authority;

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    /// Absolute FHIR base URL without a trailing slash, e.g. `http://127.0.0.1:8080/fhir`.
    pub base_url: Arc<str>,
    pub auth: Arc<Authority>,
    /// The bulk export engine (its workers run beside the server).
    pub exporter: Arc<atr_export::Exporter>,
    /// Subscription delivery (its workers run beside the server).
    pub notifier: Arc<atr_notify::Notifier>,
    /// Request size limits, for the handlers that read forms themselves.
    pub limits: crate::limits::Limits,
}
