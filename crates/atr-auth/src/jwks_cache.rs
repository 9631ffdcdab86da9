//! Fetching and caching the JWK Set of a client registered with a JWKS URL.
//!
//! The URL belongs to the client, so every fetch is bounded (timeout, body
//! size, redirects off by default) and the cache protects both sides: a
//! client sending unknown `kid`s cannot make the server hammer its URL
//! (refetch at most once per [`JwksCacheConfig::min_refresh_secs`]), and a
//! `no-store` response is still kept briefly. Time is passed in by the
//! caller (Unix seconds) so behaviour is testable without sleeping.
//!
//! The map holds one entry per URL ever asked for; URLs come from client
//! registrations, so it is bounded by them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::error::AuthError;
use crate::jwk::{JwkSet, MAX_JWKS_BYTES};

/// Tunables; [`Default`] gives the values SMART deployments expect.
#[derive(Debug, Clone)]
pub struct JwksCacheConfig {
    /// Whole-fetch timeout. Default 5 s.
    pub timeout: Duration,
    /// Largest body read. Default 64 KiB.
    pub max_body_bytes: usize,
    /// Lifetime when the response has no `max-age`. Default 300 s.
    pub default_ttl_secs: i64,
    /// Cap on `max-age`. Default 24 h.
    pub max_ttl_secs: i64,
    /// Floor for `no-store`, `no-cache`, `max-age=0`, and how long a failed
    /// fetch is remembered. Default 10 s.
    pub min_ttl_secs: i64,
    /// Least time between two fetches caused by an unknown `kid`.
    /// Default 30 s.
    pub min_refresh_secs: i64,
    /// Allow `http://` URLs (tests, local development). Default false.
    pub allow_http: bool,
}

impl Default for JwksCacheConfig {
    fn default() -> Self {
        JwksCacheConfig {
            timeout: Duration::from_secs(5),
            max_body_bytes: MAX_JWKS_BYTES,
            default_ttl_secs: 300,
            max_ttl_secs: 24 * 3600,
            min_ttl_secs: 10,
            min_refresh_secs: 30,
            allow_http: false,
        }
    }
}

#[derive(Default)]
struct Slot {
    cached: Option<Cached>,
    /// When the last fetch (successful or not) started.
    last_fetch_at: Option<i64>,
    /// The last fetch's error, replayed until `min_ttl_secs` pass so an
    /// unreachable URL is not retried on every token request.
    last_error: Option<(i64, AuthError)>,
}

struct Cached {
    keys: JwkSet,
    expires_at: i64,
}

/// A cache of fetched JWK Sets keyed by URL.
pub struct JwksCache {
    client: reqwest::Client,
    config: JwksCacheConfig,
    /// Per-URL slots; the async lock inside makes concurrent misses for one
    /// URL share a single fetch without blocking other URLs.
    slots: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Slot>>>>,
}

impl JwksCache {
    /// A cache with its own HTTP client (redirects off, config timeout).
    ///
    /// The client has whatever TLS support the final binary enables in
    /// `reqwest`; use [`JwksCache::with_client`] to supply one.
    pub fn new(config: JwksCacheConfig) -> Result<JwksCache, AuthError> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(config.timeout)
            .build()
            .map_err(|e| AuthError::Internal(format!("building HTTP client: {e}")))?;
        Ok(JwksCache::with_client(client, config))
    }

    /// A cache using the caller's HTTP client (e.g. one with TLS roots).
    pub fn with_client(client: reqwest::Client, config: JwksCacheConfig) -> JwksCache {
        JwksCache {
            client,
            config,
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// The key set at `url` as of `now` (Unix seconds), fetching when the
    /// cached copy is stale, or lacks `want_kid` and the last fetch is at
    /// least `min_refresh_secs` old. A set still lacking `want_kid` is
    /// returned as is; the verifier then reports the unknown kid.
    pub async fn get(
        &self,
        url: &str,
        want_kid: Option<&str>,
        now: i64,
    ) -> Result<JwkSet, AuthError> {
        let slot = self.slot(url);
        let mut slot = slot.lock().await;

        let recently_fetched = slot
            .last_fetch_at
            .is_some_and(|at| now.saturating_sub(at) < self.config.min_refresh_secs);
        if let Some(cached) = &slot.cached
            && now < cached.expires_at
            && (recently_fetched || want_kid.is_none_or(|kid| cached.keys.contains_kid(kid)))
        {
            return Ok(cached.keys.clone());
        }
        if let Some((at, err)) = &slot.last_error
            && now.saturating_sub(*at) < self.config.min_ttl_secs
        {
            return Err(err.clone());
        }

        slot.last_fetch_at = Some(now);
        match self.fetch(url).await {
            Ok((keys, ttl)) => {
                slot.cached = Some(Cached {
                    keys: keys.clone(),
                    expires_at: now.saturating_add(ttl),
                });
                slot.last_error = None;
                Ok(keys)
            }
            Err(err) => {
                slot.last_error = Some((now, err.clone()));
                Err(err)
            }
        }
    }

    fn slot(&self, url: &str) -> Arc<tokio::sync::Mutex<Slot>> {
        // A panic elsewhere while holding this lock leaves the map intact.
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        slots.entry(url.to_owned()).or_default().clone()
    }

    async fn fetch(&self, url: &str) -> Result<(JwkSet, i64), AuthError> {
        let https = url.starts_with("https://");
        let http = url.starts_with("http://");
        if !(https || (http && self.config.allow_http)) {
            return Err(AuthError::JwksFetch("JWKS URL must be https".into()));
        }
        // The outer timeout bounds the body read too, whatever client the
        // caller supplied.
        tokio::time::timeout(self.config.timeout, self.fetch_inner(url))
            .await
            .map_err(|_| AuthError::JwksFetch("timed out".into()))?
    }

    async fn fetch_inner(&self, url: &str) -> Result<(JwkSet, i64), AuthError> {
        let fail = |msg: String| AuthError::JwksFetch(msg);
        let mut response = self
            .client
            .get(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .timeout(self.config.timeout)
            .send()
            .await
            .map_err(|e| fail(format!("request failed: {}", without_url(e))))?;
        let status = response.status();
        if !status.is_success() {
            return Err(fail(format!("HTTP status {}", status.as_u16())));
        }
        let ttl = response
            .headers()
            .get(reqwest::header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .map_or(self.config.default_ttl_secs, |v| self.ttl_from(v));

        let limit = self.config.max_body_bytes;
        if response
            .content_length()
            .is_some_and(|len| len > limit as u64)
        {
            return Err(fail(format!("body larger than {limit} bytes")));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| fail(format!("reading body: {}", without_url(e))))?
        {
            if body.len() + chunk.len() > limit {
                return Err(fail(format!("body larger than {limit} bytes")));
            }
            body.extend_from_slice(&chunk);
        }
        let text = std::str::from_utf8(&body).map_err(|_| fail("body is not UTF-8".into()))?;
        let keys = JwkSet::parse(text)?;
        if keys.has_private_parts() {
            return Err(fail("the JWKS URL serves private key material".into()));
        }
        Ok((keys, ttl))
    }

    /// Lifetime from a `Cache-Control` value, clamped to
    /// `min_ttl_secs..=max_ttl_secs`.
    fn ttl_from(&self, cache_control: &str) -> i64 {
        let mut ttl = self.config.default_ttl_secs;
        for directive in cache_control.split(',').map(str::trim) {
            let lower = directive.to_ascii_lowercase();
            if lower == "no-store" || lower == "no-cache" {
                return self.config.min_ttl_secs;
            }
            if let Some(v) = lower.strip_prefix("max-age=")
                && let Ok(secs) = v.trim_matches('"').parse::<i64>()
            {
                ttl = secs;
            }
        }
        ttl.clamp(self.config.min_ttl_secs, self.config.max_ttl_secs)
    }
}

/// reqwest errors print the URL, which may carry client-chosen query text;
/// the caller already knows the URL.
fn without_url(e: reqwest::Error) -> String {
    e.without_url().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_control_is_clamped_and_no_store_keeps_ten_seconds() {
        let cache = JwksCache::with_client(reqwest::Client::new(), JwksCacheConfig::default());
        assert_eq!(cache.ttl_from("max-age=120"), 120);
        assert_eq!(cache.ttl_from("public, max-age=600, must-revalidate"), 600);
        assert_eq!(cache.ttl_from("max-age=0"), 10);
        assert_eq!(cache.ttl_from("max-age=999999"), 24 * 3600);
        assert_eq!(cache.ttl_from("no-store"), 10);
        assert_eq!(cache.ttl_from("max-age=600, no-cache"), 10);
        assert_eq!(cache.ttl_from("public"), 300);
        assert_eq!(cache.ttl_from("max-age=abc"), 300);
    }
}
