//! SMART Backend Services on the client side: a fresh signed assertion (new `jti`) for each token
//! request, the token kept until shortly before it expires, then renewed.

use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use crate::{ClientError, Profile};

/// Renew this long before the token's `expires_in` runs out.
const RENEW_EARLY: Duration = Duration::from_secs(30);

/// Issues access tokens for one profile.
pub struct TokenSource {
    http: reqwest::Client,
    client_id: String,
    key: atr_auth::Jwk,
    scopes: String,
    token_url: String,
    current: Mutex<Option<(String, Instant)>>,
}

impl TokenSource {
    /// Reads the profile's key and finds its token URL (the profile's, or the Producer's
    /// `.well-known/smart-configuration`).
    pub async fn new(http: reqwest::Client, profile: &Profile) -> Result<TokenSource, ClientError> {
        let jwks = atr_auth::JwkSet::parse(&profile.private_jwks)
            .map_err(|e| ClientError::Config(format!("the private key set is not usable: {e}")))?;
        let key = jwks
            .keys
            .iter()
            .find(|k| k.has_private_parts())
            .cloned()
            .ok_or_else(|| {
                ClientError::Config("the private key set holds no private key".into())
            })?;
        let token_url = match &profile.token_url {
            Some(u) => u.clone(),
            None => discover_token_url(&http, &profile.fhir_base_url).await?,
        };
        Ok(TokenSource {
            http,
            client_id: profile.client_id.clone(),
            key,
            scopes: profile.scopes.clone(),
            token_url,
            current: Mutex::new(None),
        })
    }

    pub fn token_url(&self) -> &str {
        &self.token_url
    }

    /// A valid access token (cached, or a new one).
    pub async fn token(&self) -> Result<String, ClientError> {
        let mut current = self.current.lock().await;
        if let Some((token, until)) = current.as_ref()
            && Instant::now() < *until
        {
            return Ok(token.clone());
        }
        let (token, lifetime) = self.request().await?;
        *current = Some((
            token.clone(),
            Instant::now() + lifetime.saturating_sub(RENEW_EARLY),
        ));
        Ok(token)
    }

    /// Forgets the cached token (the Producer refused it: maybe rotated keys).
    pub async fn invalidate(&self) {
        *self.current.lock().await = None;
    }

    async fn request(&self) -> Result<(String, Duration), ClientError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let assertion = atr_auth::sign_client_assertion(
            &self.key,
            &self.client_id,
            &self.token_url,
            now,
            240,
            &uuid::Uuid::new_v4().to_string(),
        )
        .map_err(|e| ClientError::Auth(format!("signing the client assertion: {e}")))?;
        let form = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "client_credentials")
            .append_pair("scope", &self.scopes)
            .append_pair(
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            )
            .append_pair("client_assertion", &assertion)
            .finish();
        let resp = self
            .http
            .post(&self.token_url)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(form)
            .send()
            .await
            .map_err(|e| ClientError::Transport {
                method: "POST".into(),
                url: self.token_url.clone(),
                reason: crate::http::error_chain(&e),
            })?;
        let status = resp.status();
        let body: serde_json::Value = resp.json().await.unwrap_or_default();
        match body["access_token"].as_str() {
            Some(t) if status.is_success() => {
                let secs = body["expires_in"].as_u64().unwrap_or(300);
                Ok((t.to_string(), Duration::from_secs(secs)))
            }
            _ => Err(ClientError::Auth(format!(
                "{} refused the token request ({status}): {}",
                self.token_url,
                body["error_description"]
                    .as_str()
                    .or(body["error"].as_str())
                    .unwrap_or("no reason given")
            ))),
        }
    }
}

async fn discover_token_url(http: &reqwest::Client, base: &str) -> Result<String, ClientError> {
    let url = format!("{base}/.well-known/smart-configuration");
    let resp = http
        .get(&url)
        .header("Accept", "application/json")
        .send()
        .await
        .map_err(|e| ClientError::Transport {
            method: "GET".into(),
            url: url.clone(),
            reason: crate::http::error_chain(&e),
        })?;
    let status = resp.status();
    let doc: serde_json::Value = resp.json().await.unwrap_or_default();
    doc["token_endpoint"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| {
            ClientError::Config(format!(
                "{url} ({status}) names no token_endpoint; set token_url in the profile"
            ))
        })
}
