//! Per-client request rate limits: a token bucket per authenticated client id (per peer IP for
//! requests without a valid bearer token), answered 429 with `Retry-After` when empty.
//!
//! The buckets live in this instance's memory: behind a load balancer over N instances a client
//! may get up to N times the rate. Off unless configured.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::state::AppState;

/// Buckets kept before idle, full ones are dropped (a flood from many addresses stays bounded).
const MAX_BUCKETS: usize = 100_000;

/// A sustained rate and the burst allowed above it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Requests per second, sustained.
    pub per_second: f64,
    /// Requests that may come at once after a quiet time (the bucket's size).
    pub burst: u32,
}

struct Bucket {
    tokens: f64,
    refilled: Instant,
}

/// The buckets of one instance.
pub struct RateLimiter {
    limit: RateLimit,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RateLimiter {
    pub fn new(limit: RateLimit) -> Self {
        RateLimiter {
            limit: RateLimit {
                per_second: limit.per_second.max(0.001),
                burst: limit.burst.max(1),
            },
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request from `key`'s bucket; `Err(seconds)` is how long until one is there.
    pub fn take(&self, key: &str, now: Instant) -> Result<(), u64> {
        let RateLimit { per_second, burst } = self.limit;
        let burst = f64::from(burst);
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= MAX_BUCKETS && !buckets.contains_key(key) {
            buckets.retain(|_, b| {
                b.tokens + now.duration_since(b.refilled).as_secs_f64() * per_second < burst
            });
        }
        let bucket = buckets.entry(key.to_string()).or_insert(Bucket {
            tokens: burst,
            refilled: now,
        });
        let elapsed = now.saturating_duration_since(bucket.refilled).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * per_second).min(burst);
        bucket.refilled = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            // Whole seconds, rounded up: `Retry-After` takes an integer.
            Err(((1.0 - bucket.tokens) / per_second).ceil().max(1.0) as u64)
        }
    }
}

/// Whose bucket a request draws from: the client id of a bearer token this server issued and
/// can verify (without a database read), else the peer's IP address.
fn bucket_key(state: &AppState, req: &Request) -> String {
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    if let Some(token) = bearer
        && let Ok(claims) = state.auth.keys().verify(token, crate::auth::now_unix())
    {
        return format!("client:{}", claims.sub);
    }
    match req.extensions().get::<ConnectInfo<SocketAddr>>() {
        Some(ConnectInfo(addr)) => format!("ip:{}", addr.ip()),
        None => "ip:unknown".to_string(),
    }
}

/// The middleware: 429 with `Retry-After` and an `OperationOutcome` when the bucket is empty.
pub async fn limit_rate(
    State((state, limiter)): State<(AppState, Arc<RateLimiter>)>,
    req: Request,
    next: Next,
) -> Response {
    let key = bucket_key(&state, &req);
    match limiter.take(&key, Instant::now()) {
        Ok(()) => next.run(req).await,
        Err(wait) => {
            let mut resp = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "throttled",
                format!(
                    "too many requests from this client (at most {} per second, bursts of {}); retry in {wait} s",
                    limiter.limit.per_second, limiter.limit.burst
                ),
            )
            .into_response();
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(wait));
            resp
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_burst_passes_then_the_rate_refills() {
        let limiter = RateLimiter::new(RateLimit {
            per_second: 2.0,
            burst: 3,
        });
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.take("a", t0), Ok(()));
        }
        assert_eq!(limiter.take("a", t0), Err(1));
        assert_eq!(limiter.take("b", t0), Ok(()), "buckets are per key");
        let later = t0 + Duration::from_millis(500);
        assert_eq!(limiter.take("a", later), Ok(()));
        assert_eq!(limiter.take("a", later), Err(1));
    }

    #[test]
    fn retry_after_is_whole_seconds_until_a_token() {
        let limiter = RateLimiter::new(RateLimit {
            per_second: 0.2,
            burst: 1,
        });
        let t0 = Instant::now();
        assert_eq!(limiter.take("a", t0), Ok(()));
        assert_eq!(limiter.take("a", t0), Err(5));
        assert_eq!(limiter.take("a", t0 + Duration::from_secs(4)), Err(1));
        assert_eq!(limiter.take("a", t0 + Duration::from_secs(5)), Ok(()));
    }
}
