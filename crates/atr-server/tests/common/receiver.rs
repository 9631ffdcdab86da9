//! A real rest-hook endpoint on loopback for Subscription tests: records every notification it
//! is sent (answered or refused) and answers with the status the test sets.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde_json::Value;
use tokio::sync::Notify;

/// One POST the endpoint received.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub content_type: String,
    pub headers: Vec<(String, String)>,
    pub body: Value,
    /// What the endpoint answered.
    pub answered: u16,
}

impl Received {
    fn status_parameters(&self) -> &Value {
        &self.body["entry"][0]["resource"]["parameter"]
    }

    fn parameter(&self, name: &str) -> Option<&Value> {
        self.status_parameters()
            .as_array()?
            .iter()
            .find(|p| p["name"] == name)
    }

    /// `handshake`, `heartbeat` or `event-notification`.
    pub fn kind(&self) -> String {
        self.parameter("type")
            .and_then(|p| p["valueCode"].as_str())
            .unwrap_or("")
            .to_string()
    }

    pub fn status(&self) -> String {
        self.parameter("status")
            .and_then(|p| p["valueCode"].as_str())
            .unwrap_or("")
            .to_string()
    }

    pub fn events_since_start(&self) -> String {
        self.parameter("events-since-subscription-start")
            .and_then(|p| p["valueString"].as_str())
            .unwrap_or("")
            .to_string()
    }

    /// (event number, focus reference) of each `notification-event`.
    pub fn events(&self) -> Vec<(u64, String)> {
        self.status_parameters()
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["name"] == "notification-event")
            .map(|p| {
                let part = |name: &str| {
                    p["part"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .find(|x| x["name"] == name)
                        .cloned()
                        .unwrap_or(Value::Null)
                };
                (
                    part("event-number")["valueString"]
                        .as_str()
                        .and_then(|n| n.parse().ok())
                        .unwrap_or(0),
                    part("focus")["valueReference"]["reference"]
                        .as_str()
                        .unwrap_or("")
                        .to_string(),
                )
            })
            .collect()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn accepted(&self) -> bool {
        (200..300).contains(&self.answered)
    }
}

#[derive(Clone)]
struct Shared {
    seen: Arc<Mutex<Vec<Received>>>,
    answer: Arc<AtomicU16>,
    changed: Arc<Notify>,
}

pub struct Receiver {
    /// `http://127.0.0.1:PORT`
    pub origin: String,
    shared: Shared,
}

async fn hook(
    State(shared): State<Shared>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> StatusCode {
    let answered = shared.answer.load(Ordering::SeqCst);
    let received = Received {
        path: format!("/hook/{name}"),
        content_type: headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string(),
        headers: headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("").to_string()))
            .collect(),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        answered,
    };
    shared
        .seen
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(received);
    shared.changed.notify_waiters();
    StatusCode::from_u16(answered).unwrap_or(StatusCode::OK)
}

impl Receiver {
    /// Listens on a free loopback port, answering 200 until told otherwise.
    pub async fn start() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind receiver");
        let origin = format!("http://{}", listener.local_addr().expect("addr"));
        let shared = Shared {
            seen: Arc::default(),
            answer: Arc::new(AtomicU16::new(200)),
            changed: Arc::new(Notify::new()),
        };
        let app = axum::Router::new()
            .route("/hook/{name}", axum::routing::post(hook))
            .with_state(shared.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver { origin, shared }
    }

    pub fn endpoint(&self, name: &str) -> String {
        format!("{}/hook/{name}", self.origin)
    }

    /// The status every later notification is answered with (503: "down").
    pub fn answer(&self, status: u16) {
        self.shared.answer.store(status, Ordering::SeqCst);
    }

    pub fn received(&self) -> Vec<Received> {
        self.shared
            .seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// What was received at `path`.
    pub fn at(&self, path: &str) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }

    /// Waits until `done` holds for what was received, at most `timeout`; panics with what was
    /// seen otherwise.
    pub async fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&[Received]) -> bool,
    ) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        loop {
            let notified = self.shared.changed.notified();
            let seen = self.received();
            if done(&seen) {
                return seen;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let summary: Vec<String> = seen
                    .iter()
                    .map(|r| format!("{} {} {:?} -> {}", r.path, r.kind(), r.events(), r.answered))
                    .collect();
                panic!("timed out waiting for {what}; received: {summary:#?}");
            }
            let _ = tokio::time::timeout(left.min(Duration::from_millis(200)), notified).await;
        }
    }
}

/// Event numbers the endpoint accepted at `path`, in the order they arrived.
pub fn accepted_events(seen: &[Received], path: &str) -> Vec<u64> {
    seen.iter()
        .filter(|r| r.path == path && r.accepted() && r.kind() == "event-notification")
        .flat_map(|r| r.events().into_iter().map(|(n, _)| n))
        .collect()
}
