//! `atr listen`: the rest-hook endpoint of this Consumer's Subscriptions.
//!
//! It answers handshakes and heartbeats, takes only notifications that carry the secret its
//! Subscription was made with, checks event numbers for gaps (asking the Producer's `$events`
//! for the missing ones), and queues an incremental pull of each changed list. Pulls run one at
//! a time in their own task, and a list queued several times while a pull runs is pulled once
//! more, not once per event. The endpoint answers as soon as the events are recorded, so a slow
//! pull never makes the Producer time out; a crash between answer and pull is covered by the
//! catch-up pull of every subscribed list when the listener starts.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde::Serialize;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::pull::{PullOptions, pull};
use crate::store::ConsumerStore;
use crate::{ClientError, Fhir};

/// How the listener runs.
#[derive(Debug, Clone)]
pub struct ListenConfig {
    /// The consumer store directory.
    pub store_dir: PathBuf,
    /// Pull a list when it changes.
    pub pull: bool,
    /// At start, pull every list this Consumer subscribes to (catching up on changes missed
    /// while it was not running).
    pub catch_up: bool,
    pub pull_options: PullOptions,
}

/// What the listener did, for logs and tests.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum ListenEvent {
    Handshake {
        subscription: String,
    },
    Heartbeat {
        subscription: String,
    },
    /// Event numbers received, and those fetched with `$events` to fill a gap before them.
    Events {
        subscription: String,
        numbers: Vec<i64>,
        recovered: Vec<i64>,
    },
    Duplicate {
        subscription: String,
        numbers: Vec<i64>,
    },
    Pulled {
        group: String,
        pull_id: i64,
        members: usize,
    },
    PullFailed {
        group: String,
        error: String,
    },
    Rejected {
        status: u16,
        reason: String,
    },
}

struct Shared {
    fhir: Fhir,
    store: Mutex<ConsumerStore>,
    pulls: Option<mpsc::UnboundedSender<String>>,
    report: mpsc::UnboundedSender<ListenEvent>,
}

/// Serves notifications on `listener` until the process ends; what it does arrives on the
/// returned channel.
pub async fn start(
    listener: tokio::net::TcpListener,
    fhir: Fhir,
    config: ListenConfig,
) -> Result<(SocketAddr, mpsc::UnboundedReceiver<ListenEvent>), ClientError> {
    let addr = listener.local_addr()?;
    let (report, events) = mpsc::unbounded_channel();
    let pulls = if config.pull {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut store = ConsumerStore::open(&config.store_dir)?;
        let (fhir, report, options) = (fhir.clone(), report.clone(), config.pull_options.clone());
        tokio::spawn(async move { puller(fhir, &mut store, rx, report, options).await });
        Some(tx)
    } else {
        None
    };
    let store = ConsumerStore::open(&config.store_dir)?;
    if let (true, Some(tx)) = (config.catch_up, &pulls) {
        let groups: BTreeSet<String> = store
            .subscriptions(Some(fhir.base()))?
            .into_iter()
            .filter(|s| s.status != "off")
            .map(|s| s.group_id)
            .collect();
        for g in groups {
            let _ = tx.send(g);
        }
    }
    let shared = Arc::new(Shared {
        fhir,
        store: Mutex::new(store),
        pulls,
        report,
    });
    let app = axum::Router::new()
        .fallback(axum::routing::post(notification))
        .with_state(shared);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((addr, events))
}

async fn puller(
    fhir: Fhir,
    store: &mut ConsumerStore,
    mut rx: mpsc::UnboundedReceiver<String>,
    report: mpsc::UnboundedSender<ListenEvent>,
    options: PullOptions,
) {
    while let Some(first) = rx.recv().await {
        // Everything queued meanwhile: each list once.
        let mut groups = BTreeSet::from([first]);
        while let Ok(g) = rx.try_recv() {
            groups.insert(g);
        }
        for group in groups {
            let event = match pull(&fhir, store, &group, &options).await {
                Ok(r) => ListenEvent::Pulled {
                    group,
                    pull_id: r.pull_id,
                    members: r.members,
                },
                Err(e) => ListenEvent::PullFailed {
                    group,
                    error: e.to_string(),
                },
            };
            tracing::debug!(?event, "pull");
            let _ = report.send(event);
        }
    }
}

fn reject(shared: &Shared, status: StatusCode, reason: String) -> (StatusCode, String) {
    let _ = shared.report.send(ListenEvent::Rejected {
        status: status.as_u16(),
        reason: reason.clone(),
    });
    (status, reason)
}

async fn notification(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> (StatusCode, String) {
    match handle(&shared, &headers, &body).await {
        Ok(()) => (StatusCode::OK, String::new()),
        Err((status, reason)) => reject(&shared, status, reason),
    }
}

/// What a notification's SubscriptionStatus says.
struct Status {
    subscription: String,
    kind: String,
    since_start: i64,
    /// (event number, focus reference).
    events: Vec<(i64, String)>,
}

fn parse(bundle: &Value) -> Option<Status> {
    let params = bundle["entry"][0]["resource"]["parameter"].as_array()?;
    let find = |name: &str| params.iter().find(|p| p["name"] == name);
    let subscription = find("subscription")?["valueReference"]["reference"]
        .as_str()?
        .rsplit('/')
        .next()?
        .to_string();
    let kind = find("type")?["valueCode"].as_str()?.to_string();
    let since_start = find("events-since-subscription-start")
        .and_then(|p| p["valueString"].as_str())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let events = params
        .iter()
        .filter(|p| p["name"] == "notification-event")
        .filter_map(|p| {
            let part = |n: &str| {
                p["part"]
                    .as_array()?
                    .iter()
                    .find(|x| x["name"] == n)
                    .cloned()
            };
            let number = part("event-number")?["valueString"]
                .as_str()?
                .parse()
                .ok()?;
            let focus = part("focus")
                .and_then(|f| {
                    f["valueReference"]["reference"]
                        .as_str()
                        .map(str::to_string)
                })
                .unwrap_or_default();
            Some((number, focus))
        })
        .collect();
    Some(Status {
        subscription,
        kind,
        since_start,
        events,
    })
}

async fn handle(
    shared: &Shared,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), (StatusCode, String)> {
    let bundle: Value = serde_json::from_slice(body)
        .map_err(|e| (StatusCode::BAD_REQUEST, format!("not JSON: {e}")))?;
    let Status {
        subscription: id,
        kind,
        since_start,
        events,
    } = parse(&bundle).ok_or((
        StatusCode::BAD_REQUEST,
        "not a Subscription notification (no SubscriptionStatus Parameters first)".to_string(),
    ))?;
    let base = shared.fhir.base().to_string();
    let record = {
        let store = shared.store.lock().unwrap_or_else(|p| p.into_inner());
        store
            .subscriptions(Some(&base))
            .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
            .into_iter()
            .find(|s| s.id == id)
    };
    let record = record.ok_or((
        StatusCode::NOT_FOUND,
        format!("Subscription/{id} is not one of this Consumer's"),
    ))?;
    let expected = format!("Bearer {}", record.secret);
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
        return Err((
            StatusCode::UNAUTHORIZED,
            format!("a notification for Subscription/{id} without its secret"),
        ));
    }
    let store_err = |e: ClientError| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
    match kind.as_str() {
        "handshake" => {
            shared
                .store
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .set_subscription_status(&base, &id, "active")
                .map_err(store_err)?;
            let _ = shared
                .report
                .send(ListenEvent::Handshake { subscription: id });
            return Ok(());
        }
        "heartbeat" if since_start <= record.last_event => {
            let _ = shared
                .report
                .send(ListenEvent::Heartbeat { subscription: id });
            return Ok(());
        }
        "heartbeat" | "event-notification" => {}
        other => {
            return Err((
                StatusCode::BAD_REQUEST,
                format!("unexpected notification type {other:?}"),
            ));
        }
    }
    let mut numbers: Vec<i64> = events.iter().map(|(n, _)| *n).collect();
    numbers.sort_unstable();
    let newest = numbers
        .last()
        .copied()
        .unwrap_or(since_start)
        .max(since_start);
    if newest <= record.last_event {
        let _ = shared.report.send(ListenEvent::Duplicate {
            subscription: id,
            numbers,
        });
        return Ok(());
    }
    let mut groups: BTreeSet<String> = events
        .iter()
        .filter(|(n, _)| *n > record.last_event)
        .filter_map(|(_, f)| f.strip_prefix("Group/").map(str::to_string))
        .collect();
    // A gap: the events between the last handled and the first received.
    let first_new = numbers
        .iter()
        .copied()
        .find(|n| *n > record.last_event)
        .unwrap_or(newest + 1);
    let mut recovered = Vec::new();
    if first_new > record.last_event + 1 {
        let url = format!(
            "Subscription/{id}/$events?eventsSinceNumber={}&eventsUntilNumber={}",
            record.last_event + 1,
            first_new - 1
        );
        match shared.fhir.get_json(&url).await {
            Ok(missed) => {
                if let Some(got) = parse(&missed) {
                    for (n, focus) in got.events {
                        recovered.push(n);
                        if let Some(g) = focus.strip_prefix("Group/") {
                            groups.insert(g.to_string());
                        }
                    }
                }
            }
            Err(e) => {
                tracing::warn!(subscription = %id, error = %e, "fetching missed events failed");
            }
        }
        // Whatever $events said, the Subscription's list changed.
        groups.insert(record.group_id.clone());
    }
    shared
        .store
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .event_handled(&base, &id, newest)
        .map_err(store_err)?;
    let _ = shared.report.send(ListenEvent::Events {
        subscription: id,
        numbers,
        recovered,
    });
    if let Some(tx) = &shared.pulls {
        for g in groups {
            let _ = tx.send(g);
        }
    }
    Ok(())
}
