//! SMART Backend Services on the server: the token endpoint, the smart-configuration document,
//! and bearer-token enforcement with per-Group access.
//!
//! [`Authority`] holds what every request needs: the access-token keys (kept in the database, so
//! restarts and other instances accept the same tokens), the JWKS cache for clients registered by
//! URL, and a short-lived cache of client records (so disabling a client takes effect within
//! [`CLIENT_CACHE_SECS`]). The cryptography and scope rules are `atr-auth`'s.

pub mod discovery;
pub mod enforce;
pub mod registry;
pub mod token;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use atr_auth::{AccessTokenKeys, AuthError, GrantedScopes, Interaction, JwksCache};
use atr_model::ResourceType;
use atr_store::{Access, ClientRecord, Store, StoreError, TokenKey};

use crate::error::ApiError;

/// How long a client record is trusted before it is read again.
pub const CLIENT_CACHE_SECS: u64 = 5;

/// Token settings.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// Lifetime of an access token (`expires_in`).
    pub token_ttl_secs: i64,
    /// A new signing key is made when the newest is older than this; keys older than this plus the
    /// token lifetime are removed.
    pub token_key_max_age_secs: i64,
    /// Least time between two fetches of a client's JWKS URL caused by an unknown `kid`.
    pub jwks_min_refresh_secs: i64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            token_ttl_secs: 300,
            token_key_max_age_secs: 30 * 24 * 3600,
            jwks_min_refresh_secs: 30,
        }
    }
}

/// Who is calling, as established from a valid bearer token.
#[derive(Debug, Clone)]
pub struct Caller {
    pub client_id: String,
    pub admin: bool,
    pub scopes: GrantedScopes,
    pub access: Access,
}

impl Caller {
    /// 403 unless the token's scopes allow `interaction` on `rtype`.
    pub fn require(&self, rtype: &str, interaction: Interaction) -> Result<(), ApiError> {
        if self.scopes.permits(rtype, interaction) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "the access token's scopes do not allow {} on {rtype}",
                interaction_name(interaction)
            )))
        }
    }

    /// 403 unless this is a payer administration client (direct writes of resources).
    pub fn require_admin(&self, what: &str) -> Result<(), ApiError> {
        if self.admin {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "{what} is reserved to the payer's administration clients"
            )))
        }
    }
}

fn interaction_name(i: Interaction) -> &'static str {
    match i {
        Interaction::Read => "read",
        Interaction::Search => "search",
        Interaction::Create => "create",
        Interaction::Update => "update",
        Interaction::Delete => "delete",
    }
}

/// The resource types scopes may name (those this server serves).
pub fn supported_types() -> Vec<&'static str> {
    let mut types: Vec<&'static str> = ResourceType::ALL.iter().map(|t| t.as_str()).collect();
    types.extend(["Provenance", "Subscription", "AuditEvent"]);
    types
}

/// `system|value` identifiers as pairs; an entry without `|` matches any system.
pub fn access_for(client: &ClientRecord) -> Access {
    if client.admin {
        return Access::All;
    }
    Access::ActingFor(
        client
            .identifiers
            .iter()
            .filter_map(|i| i.split_once('|'))
            .map(|(s, v)| (s.to_string(), v.to_string()))
            .collect(),
    )
}

/// Whether a registered, enabled client may still read a Group, as the notifier asks before each
/// delivery (read from the registry each time: a changed or disabled client takes effect at once).
pub fn group_access_check(store: Arc<dyn Store>) -> atr_notify::AccessCheck {
    Arc::new(move |client_id: String, group_id: String| {
        let store = store.clone();
        Box::pin(async move {
            match store.client(&client_id).await {
                Ok(Some(c)) if c.enabled => store
                    .visible(ResourceType::Group, &group_id, &access_for(&c))
                    .await
                    .unwrap_or(false),
                _ => false,
            }
        })
    })
}

/// A registry lookup and when it was made (`None`: no such client).
type CachedClient = (Instant, Option<Arc<ClientRecord>>);

pub struct Authority {
    pub store: Arc<dyn Store>,
    /// Absolute URL of the token endpoint (the `aud` of client assertions).
    pub token_url: String,
    pub config: AuthConfig,
    pub jwks: JwksCache,
    keys: RwLock<Arc<AccessTokenKeys>>,
    keys_loaded: Mutex<Instant>,
    clients: Mutex<HashMap<String, CachedClient>>,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthorityError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Auth(#[from] AuthError),
}

pub fn now_unix() -> i64 {
    atr_model::instant::now_micros() / 1_000_000
}

impl Authority {
    /// Loads (making or rotating as needed) the token keys.
    pub async fn new(
        store: Arc<dyn Store>,
        token_url: String,
        config: AuthConfig,
    ) -> Result<Authority, AuthorityError> {
        let now = now_unix();
        let keys = store.token_keys().await?;
        if keys
            .first()
            .is_none_or(|k| now - k.created_at >= config.token_key_max_age_secs)
        {
            store
                .add_token_key(&TokenKey {
                    kid: uuid::Uuid::now_v7().simple().to_string(),
                    secret: AccessTokenKeys::generate_secret(),
                    created_at: now,
                })
                .await?;
        }
        store
            .retire_token_keys(now - config.token_key_max_age_secs - config.token_ttl_secs)
            .await?;
        let keys = keys_from(&store.token_keys().await?)?;
        // Plain http is allowed here because registration only accepts it on loopback.
        let jwks = JwksCache::new(atr_auth::JwksCacheConfig {
            min_refresh_secs: config.jwks_min_refresh_secs,
            allow_http: true,
            ..Default::default()
        })?;
        Ok(Authority {
            store,
            token_url,
            config,
            jwks,
            keys: RwLock::new(Arc::new(keys)),
            keys_loaded: Mutex::new(Instant::now()),
            clients: Mutex::new(HashMap::new()),
        })
    }

    pub fn keys(&self) -> Arc<AccessTokenKeys> {
        match self.keys.read() {
            Ok(k) => k.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Re-reads the keys (another instance may have rotated), at most once a second.
    async fn reload_keys(&self) -> Result<bool, AuthorityError> {
        {
            let mut at = self.keys_loaded.lock().unwrap_or_else(|p| p.into_inner());
            if at.elapsed() < Duration::from_secs(1) {
                return Ok(false);
            }
            *at = Instant::now();
        }
        let keys = Arc::new(keys_from(&self.store.token_keys().await?)?);
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = keys;
        Ok(true)
    }

    /// A client record, from the cache when fresh.
    pub async fn client(&self, client_id: &str) -> Result<Option<Arc<ClientRecord>>, StoreError> {
        if let Some((at, c)) = self
            .clients
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(client_id)
            && at.elapsed() < Duration::from_secs(CLIENT_CACHE_SECS)
        {
            return Ok(c.clone());
        }
        let c = self.store.client(client_id).await?.map(Arc::new);
        let mut cache = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() > 10_000 {
            cache.clear();
        }
        cache.insert(client_id.to_string(), (Instant::now(), c.clone()));
        Ok(c)
    }

    /// The caller a bearer token stands for, or the 401 to answer.
    pub async fn caller(&self, token: &str) -> Result<Caller, ApiError> {
        let now = now_unix();
        let mut verified = self.keys().verify(token, now);
        if matches!(verified, Err(AuthError::UnknownKid)) && self.reload_keys().await? {
            verified = self.keys().verify(token, now);
        }
        let claims = verified.map_err(|e| match e {
            AuthError::Expired => {
                ApiError::unauthorized(Some("invalid_token"), "the access token has expired")
            }
            _ => ApiError::unauthorized(Some("invalid_token"), "the access token is not valid"),
        })?;
        let client = self
            .client(&claims.sub)
            .await?
            .filter(|c| c.enabled)
            .ok_or_else(|| {
                ApiError::unauthorized(
                    Some("invalid_token"),
                    "the client this token was issued to is no longer enabled",
                )
            })?;
        Ok(Caller {
            client_id: claims.sub.clone(),
            admin: client.admin,
            scopes: claims.granted(),
            access: access_for(&client),
        })
    }
}

impl From<AuthorityError> for ApiError {
    fn from(e: AuthorityError) -> Self {
        match e {
            AuthorityError::Store(e) => e.into(),
            AuthorityError::Auth(e) => {
                tracing::error!(error = %e, "token keys unusable");
                ApiError::new(
                    axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                    "exception",
                    "internal error while checking the access token",
                )
            }
        }
    }
}

fn keys_from(keys: &[TokenKey]) -> Result<AccessTokenKeys, AuthError> {
    let Some((current, previous)) = keys.split_first() else {
        return Err(AuthError::Internal("no token signing key".into()));
    };
    let previous: Vec<(&str, &[u8])> = previous
        .iter()
        .map(|k| (k.kid.as_str(), k.secret.as_slice()))
        .collect();
    AccessTokenKeys::new((&current.kid, &current.secret), &previous)
}
