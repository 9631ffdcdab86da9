//! [`Fhir`]: requests to one Producer with its bearer token, retries and safe redirects.
//!
//! The token goes only to the Producer's own origin: a redirect elsewhere (a file store, say) is
//! followed without it. 429 and 503 are retried for every method, honouring `Retry-After`
//! (seconds or an HTTP date); other 5xx answers and broken connections only for GET, whose
//! repetition is harmless.

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use url::Url;

use crate::error::outcome_text;
use crate::token::TokenSource;
use crate::{ClientError, Profile};

/// Attempts of one request (the first included).
const ATTEMPTS: u32 = 5;
const MAX_REDIRECTS: u32 = 5;

pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// One Producer.
#[derive(Clone)]
pub struct Fhir {
    base: String,
    origin: url::Origin,
    http: reqwest::Client,
    tokens: Arc<TokenSource>,
}

/// An answer: status, headers and body bytes.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub url: String,
    pub response: reqwest::Response,
}

impl Fhir {
    pub async fn connect(profile: &Profile) -> Result<Fhir, ClientError> {
        let base_url = Url::parse(&profile.fhir_base_url).map_err(|e| {
            ClientError::Config(format!(
                "the FHIR base URL {:?} is not a URL: {e}",
                profile.fhir_base_url
            ))
        })?;
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("atr-client/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(20))
            .build()
            .map_err(|e| ClientError::Config(format!("HTTP client: {e}")))?;
        let tokens = Arc::new(TokenSource::new(http.clone(), profile).await?);
        Ok(Fhir {
            base: profile.fhir_base_url.clone(),
            origin: base_url.origin(),
            http,
            tokens,
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// `path` under the base, or `path` itself when it is absolute.
    pub fn url(&self, path: &str) -> String {
        if path.starts_with("http://") || path.starts_with("https://") {
            path.to_string()
        } else {
            format!("{}/{}", self.base, path.trim_start_matches('/'))
        }
    }

    fn same_origin(&self, url: &str) -> bool {
        Url::parse(url).is_ok_and(|u| u.origin() == self.origin)
    }

    /// Sends a request with retries and redirects; any status comes back (callers decide).
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, String)],
        body: Option<&[u8]>,
    ) -> Result<Answer, ClientError> {
        let mut url = self.url(url);
        let mut redirects = 0;
        let mut attempt = 0;
        let mut renewed = false;
        loop {
            attempt += 1;
            let mut req = self.http.request(method.clone(), &url);
            for (name, value) in headers {
                req = req.header(*name, value.as_str());
            }
            if self.same_origin(&url) {
                req = req.bearer_auth(self.tokens.token().await?);
            }
            if let Some(b) = body {
                req = req.body(b.to_vec());
            }
            let result = req.send().await;
            let resp = match result {
                Ok(r) => r,
                Err(e) if method == Method::GET && attempt < ATTEMPTS => {
                    tracing::debug!(url, error = %e, "retrying after a transport error");
                    tokio::time::sleep(backoff(attempt)).await;
                    continue;
                }
                Err(e) => {
                    return Err(ClientError::Transport {
                        method: method.to_string(),
                        url,
                        reason: error_chain(&e),
                    });
                }
            };
            let status = resp.status();
            if status.is_redirection()
                && let Some(next) = resp.headers().get("location").and_then(|v| v.to_str().ok())
            {
                redirects += 1;
                if redirects > MAX_REDIRECTS {
                    return Err(ClientError::Unexpected(format!(
                        "{url}: more than {MAX_REDIRECTS} redirects"
                    )));
                }
                url = Url::parse(&url)
                    .and_then(|u| u.join(next))
                    .map(|u| u.to_string())
                    .map_err(|e| ClientError::Unexpected(format!("bad redirect {next:?}: {e}")))?;
                continue;
            }
            if status == StatusCode::UNAUTHORIZED && !renewed && self.same_origin(&url) {
                // A token the Producer no longer takes (its keys rotated): one fresh one.
                renewed = true;
                self.tokens.invalidate().await;
                continue;
            }
            let retriable = status == StatusCode::TOO_MANY_REQUESTS
                || status == StatusCode::SERVICE_UNAVAILABLE
                || (method == Method::GET && status.is_server_error());
            if retriable && attempt < ATTEMPTS {
                let wait = retry_after(resp.headers()).unwrap_or_else(|| backoff(attempt));
                tokio::time::sleep(wait.min(Duration::from_secs(120))).await;
                continue;
            }
            return Ok(Answer {
                status,
                headers: resp.headers().clone(),
                url,
                response: resp,
            });
        }
    }

    /// GET a JSON resource; an error status is a [`ClientError::Refused`] with its outcome.
    pub async fn get_json(&self, url: &str) -> Result<Value, ClientError> {
        let answer = self
            .send(
                Method::GET,
                url,
                &[("Accept", "application/fhir+json".into())],
                None,
            )
            .await?;
        answer.json_ok().await.map(|(_, v)| v)
    }

    /// POST (or PUT) a JSON body; the status, headers and JSON body of a 2xx answer.
    pub async fn send_json(
        &self,
        method: Method,
        url: &str,
        body: &Value,
        extra: &[(&str, String)],
    ) -> Result<(StatusCode, HeaderMap, Value), ClientError> {
        let mut headers = vec![
            ("Accept", "application/fhir+json".to_string()),
            ("Content-Type", "application/fhir+json".to_string()),
        ];
        headers.extend(extra.iter().cloned());
        let text = body.to_string();
        let answer = self
            .send(method, url, &headers, Some(text.as_bytes()))
            .await?;
        let headers = answer.headers.clone();
        let (status, v) = answer.json_ok().await?;
        Ok((status, headers, v))
    }
}

impl Answer {
    /// The JSON body of a 2xx answer; otherwise the OperationOutcome as an error.
    pub async fn json_ok(self) -> Result<(StatusCode, Value), ClientError> {
        let status = self.status;
        let url = self.url.clone();
        let text = self
            .response
            .text()
            .await
            .map_err(|e| ClientError::Transport {
                method: "read".into(),
                url: url.clone(),
                reason: error_chain(&e),
            })?;
        let value: Value = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).map_err(|e| {
                if status.is_success() {
                    ClientError::Unexpected(format!(
                        "{url} answered {status} with invalid JSON: {e}"
                    ))
                } else {
                    ClientError::Refused {
                        url: url.clone(),
                        status: status.as_u16(),
                        message: text.chars().take(300).collect(),
                    }
                }
            })?
        };
        if status.is_success() {
            Ok((status, value))
        } else {
            Err(ClientError::Refused {
                url,
                status: status.as_u16(),
                message: outcome_text(&value),
            })
        }
    }
}

fn backoff(attempt: u32) -> Duration {
    let base = Duration::from_millis(250) * 2u32.pow(attempt.min(6));
    // Jitter from a fresh random id: clients that failed together do not retry together.
    let jitter = uuid::Uuid::new_v4().as_u128() as u64 % (base.as_millis() as u64 / 2 + 1);
    base / 2 + Duration::from_millis(jitter)
}

/// `Retry-After` as seconds or as an HTTP date.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v: &HeaderValue = headers.get("retry-after")?;
    let text = v.to_str().ok()?.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(text).ok()?;
    Some(
        when.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}
