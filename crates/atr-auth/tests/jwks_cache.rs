//! JwksCache against a real (tiny, hand-written) HTTP/1.1 server on
//! 127.0.0.1, counting requests to show caching, `Cache-Control` handling
//! and the minimum refresh interval.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use atr_auth::{AuthError, JwkSet, JwksCache, JwksCacheConfig};
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// What the server answers next.
#[derive(Clone)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
    /// Hold the response this long (to exercise the timeout).
    delay: Duration,
    /// Send no Content-Length: the body ends when the connection closes, so
    /// the client cannot refuse it up front.
    omit_length: bool,
}

impl Reply {
    fn ok(body: String) -> Reply {
        Reply {
            status: 200,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body,
            delay: Duration::ZERO,
            omit_length: false,
        }
    }

    fn cache_control(mut self, value: &str) -> Reply {
        self.headers.push(("Cache-Control".into(), value.into()));
        self
    }
}

struct Server {
    url: String,
    hits: Arc<AtomicUsize>,
    reply: Arc<Mutex<Reply>>,
}

impl Server {
    async fn start(reply: Reply) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let reply = Arc::new(Mutex::new(reply));
        let (h, r) = (hits.clone(), reply.clone());
        tokio::spawn(async move {
            // Runs until the test's runtime shuts down.
            while let Ok((mut socket, _)) = listener.accept().await {
                let (h, r) = (h.clone(), r.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match socket.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    h.fetch_add(1, Ordering::SeqCst);
                    let reply = r.lock().unwrap().clone();
                    tokio::time::sleep(reply.delay).await;
                    let mut head = format!("HTTP/1.1 {} X\r\nConnection: close\r\n", reply.status);
                    if !reply.omit_length {
                        head.push_str(&format!("Content-Length: {}\r\n", reply.body.len()));
                    }
                    for (k, v) in &reply.headers {
                        head.push_str(&format!("{k}: {v}\r\n"));
                    }
                    head.push_str("\r\n");
                    let _ = socket.write_all(head.as_bytes()).await;
                    let _ = socket.write_all(reply.body.as_bytes()).await;
                    let _ = socket.shutdown().await;
                });
            }
        });
        Server {
            url: format!("http://{addr}/jwks.json"),
            hits,
            reply,
        }
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    fn set(&self, reply: Reply) {
        *self.reply.lock().unwrap() = reply;
    }
}

fn cache() -> JwksCache {
    JwksCache::new(JwksCacheConfig {
        allow_http: true,
        timeout: Duration::from_millis(1500),
        ..JwksCacheConfig::default()
    })
    .unwrap()
}

fn rsa_jwks() -> String {
    rsa_keys().public.to_json()
}

fn rsa_kid() -> String {
    rsa_keys().public.keys[0].kid.clone().unwrap()
}

fn ec_kid() -> String {
    ec_keys().public.keys[0].kid.clone().unwrap()
}

#[tokio::test]
async fn fetched_set_is_cached_for_max_age() {
    let server = Server::start(Reply::ok(rsa_jwks()).cache_control("max-age=120")).await;
    let cache = cache();
    let keys = cache.get(&server.url, Some(&rsa_kid()), NOW).await.unwrap();
    assert_eq!(keys, rsa_keys().public);
    cache
        .get(&server.url, Some(&rsa_kid()), NOW + 60)
        .await
        .unwrap();
    cache.get(&server.url, None, NOW + 119).await.unwrap();
    assert_eq!(server.hits(), 1);
    cache.get(&server.url, None, NOW + 120).await.unwrap();
    assert_eq!(server.hits(), 2);
}

#[tokio::test]
async fn without_cache_control_the_set_is_kept_five_minutes() {
    let server = Server::start(Reply::ok(rsa_jwks())).await;
    let cache = cache();
    cache.get(&server.url, None, NOW).await.unwrap();
    cache.get(&server.url, None, NOW + 299).await.unwrap();
    assert_eq!(server.hits(), 1);
    cache.get(&server.url, None, NOW + 300).await.unwrap();
    assert_eq!(server.hits(), 2);
}

#[tokio::test]
async fn max_age_is_capped_at_24_hours() {
    let server = Server::start(Reply::ok(rsa_jwks()).cache_control("max-age=31536000")).await;
    let cache = cache();
    cache.get(&server.url, None, NOW).await.unwrap();
    cache.get(&server.url, None, NOW + 86_399).await.unwrap();
    assert_eq!(server.hits(), 1);
    cache.get(&server.url, None, NOW + 86_400).await.unwrap();
    assert_eq!(server.hits(), 2);
}

#[tokio::test]
async fn no_store_is_still_kept_ten_seconds_to_resist_floods() {
    let server = Server::start(Reply::ok(rsa_jwks()).cache_control("no-store")).await;
    let cache = cache();
    for t in 0..10 {
        cache
            .get(&server.url, Some(&rsa_kid()), NOW + t)
            .await
            .unwrap();
    }
    assert_eq!(server.hits(), 1);
    cache
        .get(&server.url, Some(&rsa_kid()), NOW + 10)
        .await
        .unwrap();
    assert_eq!(server.hits(), 2);
}

#[tokio::test]
async fn unknown_kid_refetches_at_most_once_per_30_seconds() {
    let server = Server::start(Reply::ok(rsa_jwks()).cache_control("max-age=3600")).await;
    let cache = cache();
    cache.get(&server.url, None, NOW).await.unwrap();
    assert_eq!(server.hits(), 1);
    // A flood of unknown kids inside the minimum refresh interval: no fetch;
    // the cached set (without the kid) comes back.
    for t in 0..30 {
        let keys = cache.get(&server.url, Some("nope"), NOW + t).await.unwrap();
        assert!(!keys.contains_kid("nope"));
    }
    assert_eq!(server.hits(), 1);
    // After 30 s, one refetch; then quiet again for 30 s.
    cache
        .get(&server.url, Some("nope"), NOW + 30)
        .await
        .unwrap();
    assert_eq!(server.hits(), 2);
    cache
        .get(&server.url, Some("nope"), NOW + 45)
        .await
        .unwrap();
    assert_eq!(server.hits(), 2);
    cache
        .get(&server.url, Some("nope"), NOW + 60)
        .await
        .unwrap();
    assert_eq!(server.hits(), 3);
    // Known kids keep being served from cache meanwhile.
    cache
        .get(&server.url, Some(&rsa_kid()), NOW + 61)
        .await
        .unwrap();
    assert_eq!(server.hits(), 3);
}

#[tokio::test]
async fn rotated_in_kid_is_picked_up_by_a_refetch() {
    let server = Server::start(Reply::ok(rsa_jwks()).cache_control("max-age=3600")).await;
    let cache = cache();
    cache.get(&server.url, Some(&rsa_kid()), NOW).await.unwrap();
    // The client adds its new EC key.
    let mut rotated = rsa_keys().public.clone();
    rotated.keys.push(ec_keys().public.keys[0].clone());
    server.set(Reply::ok(rotated.to_json()).cache_control("max-age=3600"));
    let keys = cache
        .get(&server.url, Some(&ec_kid()), NOW + 31)
        .await
        .unwrap();
    assert!(keys.contains_kid(&ec_kid()));
    assert_eq!(server.hits(), 2);
}

#[tokio::test]
async fn non_2xx_status_is_an_error_and_briefly_remembered() {
    let server = Server::start(Reply {
        status: 404,
        ..Reply::ok("not found".into())
    })
    .await;
    let cache = cache();
    let err = cache.get(&server.url, None, NOW).await.unwrap_err();
    assert_eq!(err, AuthError::JwksFetch("HTTP status 404".into()));
    assert_eq!(err.oauth_code(), "invalid_client");
    // Within 10 s the failure is replayed without a request.
    assert_eq!(
        cache.get(&server.url, None, NOW + 5).await.unwrap_err(),
        err
    );
    assert_eq!(server.hits(), 1);
    // Once fixed, the next attempt after 10 s succeeds.
    server.set(Reply::ok(rsa_jwks()));
    cache.get(&server.url, None, NOW + 10).await.unwrap();
    assert_eq!(server.hits(), 2);
}

#[tokio::test]
async fn body_over_64_kib_is_refused() {
    let mut body = rsa_jwks();
    body.push_str(&" ".repeat(64 * 1024));
    let server = Server::start(Reply::ok(body)).await;
    let err = cache().get(&server.url, None, NOW).await.unwrap_err();
    assert!(
        matches!(&err, AuthError::JwksFetch(m) if m.contains("larger than")),
        "{err:?}"
    );
}

#[tokio::test]
async fn streamed_body_over_64_kib_without_length_is_refused() {
    let server = Server::start(Reply {
        omit_length: true,
        ..Reply::ok(format!("{}{}", rsa_jwks(), " ".repeat(200 * 1024)))
    })
    .await;
    let err = cache().get(&server.url, None, NOW).await.unwrap_err();
    assert!(
        matches!(&err, AuthError::JwksFetch(m) if m.contains("larger than")),
        "{err:?}"
    );
    // The same small body without a length is fine.
    server.set(Reply {
        omit_length: true,
        ..Reply::ok(rsa_jwks())
    });
    cache().get(&server.url, None, NOW).await.unwrap();
}

#[tokio::test]
async fn invalid_jwks_body_is_an_error() {
    let server = Server::start(Reply::ok(r#"{"keys":[{"kty":"oct","k":"AAAA"}]}"#.into())).await;
    let err = cache().get(&server.url, None, NOW).await.unwrap_err();
    assert!(matches!(err, AuthError::InvalidJwk(_)), "{err:?}");
}

#[tokio::test]
async fn jwks_url_serving_private_keys_is_refused() {
    let server = Server::start(Reply::ok(rsa_keys().private.to_json())).await;
    let err = cache().get(&server.url, None, NOW).await.unwrap_err();
    assert!(
        matches!(&err, AuthError::JwksFetch(m) if m.contains("private")),
        "{err:?}"
    );
}

#[tokio::test]
async fn slow_server_times_out() {
    let server = Server::start(Reply {
        delay: Duration::from_secs(5),
        ..Reply::ok(rsa_jwks())
    })
    .await;
    let cache = JwksCache::new(JwksCacheConfig {
        allow_http: true,
        timeout: Duration::from_millis(300),
        ..JwksCacheConfig::default()
    })
    .unwrap();
    let start = std::time::Instant::now();
    let err = cache.get(&server.url, None, NOW).await.unwrap_err();
    assert!(matches!(err, AuthError::JwksFetch(_)), "{err:?}");
    assert!(start.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn plain_http_is_refused_unless_allowed() {
    let server = Server::start(Reply::ok(rsa_jwks())).await;
    let strict = JwksCache::new(JwksCacheConfig::default()).unwrap();
    let err = strict.get(&server.url, None, NOW).await.unwrap_err();
    assert_eq!(err, AuthError::JwksFetch("JWKS URL must be https".into()));
    assert_eq!(server.hits(), 0);
}

#[tokio::test]
async fn fetched_keys_verify_a_client_assertion() {
    let server = Server::start(Reply::ok(ec_keys().public.to_json())).await;
    let token =
        atr_auth::sign_client_assertion(private(ec_keys()), CLIENT, TOKEN_URL, NOW, 300, "jti-9")
            .unwrap();
    let peeked = atr_auth::peek(&token).unwrap();
    let keys: JwkSet = cache()
        .get(&server.url, peeked.kid.as_deref(), NOW)
        .await
        .unwrap();
    let verified = atr_auth::verify(&token, &keys, TOKEN_URL, NOW).unwrap();
    assert_eq!(verified.client_id, CLIENT);
}
