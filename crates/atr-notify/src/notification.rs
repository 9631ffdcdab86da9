//! The Backport's notification Bundle (`backport-subscription-notification-r4`): a `history`
//! Bundle whose first entry is the SubscriptionStatus `Parameters`.
//!
//! Event numbers and counts are the caller's: they come from the outbox, where they were
//! assigned in the transaction that made the Group version, so a retry sends the same numbers.

use atr_model::instant::fhir_instant;
use serde_json::{Value, json};

use crate::subscription::{PayloadContent, SubscriptionStatus, TOPIC_ATR_LIST_CHANGE};

/// Why a notification is sent (the Backport's `type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotificationKind {
    Handshake,
    Heartbeat,
    EventNotification,
    QueryStatus,
    QueryEvent,
}

impl NotificationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationKind::Handshake => "handshake",
            NotificationKind::Heartbeat => "heartbeat",
            NotificationKind::EventNotification => "event-notification",
            NotificationKind::QueryStatus => "query-status",
            NotificationKind::QueryEvent => "query-event",
        }
    }
}

/// One `atr-list-change` event: a new version of a Group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListChangeEvent {
    /// Per subscription, from 1, no gaps.
    pub event_number: u64,
    /// When the Group version was made (µs since the epoch).
    pub timestamp_micros: i64,
    pub group_id: String,
    /// The Group version the event announces.
    pub group_version: i64,
}

impl From<atr_store::SubscriptionEvent> for ListChangeEvent {
    fn from(e: atr_store::SubscriptionEvent) -> Self {
        ListChangeEvent {
            event_number: u64::try_from(e.event_number).unwrap_or(0),
            timestamp_micros: e.occurred_at,
            group_id: e.group_id,
            group_version: e.group_version,
        }
    }
}

/// A notification for one Subscription.
#[derive(Debug, Clone)]
pub struct Notification<'a> {
    pub base_url: &'a str,
    pub subscription_id: &'a str,
    pub status: SubscriptionStatus,
    pub kind: NotificationKind,
    /// `events-since-subscription-start`: the highest event number made so far.
    pub events_since_start: u64,
    pub content: PayloadContent,
    pub events: &'a [ListChangeEvent],
}

impl Notification<'_> {
    /// The Bundle as JSON. `bundle_id` is fresh per sending attempt (a `urn:uuid` is derived for
    /// the status entry from it).
    pub fn to_bundle(&self, bundle_id: &str, now_micros: i64) -> Value {
        let base = self.base_url.trim_end_matches('/');
        let mut parameters = vec![
            json!({"name": "subscription",
                   "valueReference": {"reference": format!("{base}/Subscription/{}", self.subscription_id)}}),
            json!({"name": "topic", "valueCanonical": TOPIC_ATR_LIST_CHANGE}),
            json!({"name": "status", "valueCode": self.status.as_str()}),
            json!({"name": "type", "valueCode": self.kind.as_str()}),
            json!({"name": "events-since-subscription-start",
                   "valueString": self.events_since_start.to_string()}),
        ];
        for e in self.events {
            let mut part = vec![
                json!({"name": "event-number", "valueString": e.event_number.to_string()}),
                json!({"name": "timestamp", "valueInstant": fhir_instant(e.timestamp_micros)}),
            ];
            if self.content == PayloadContent::IdOnly {
                part.push(json!({"name": "focus",
                                 "valueReference": {"reference": format!("Group/{}", e.group_id)}}));
            }
            parameters.push(json!({"name": "notification-event", "part": part}));
        }
        let mut entries = vec![json!({
            "fullUrl": format!("urn:uuid:{bundle_id}"),
            "resource": {
                "resourceType": "Parameters",
                "meta": {"profile": ["http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-subscription-status-r4"]},
                "parameter": parameters,
            },
            "request": {"method": "GET", "url": format!("{base}/Subscription/{}/$status", self.subscription_id)},
            "response": {"status": "200"},
        })];
        if self.content == PayloadContent::IdOnly {
            // id-only: each focus as an entry with its URL and no resource.
            for e in self.events {
                entries.push(json!({
                    "fullUrl": format!("{base}/Group/{}/_history/{}", e.group_id, e.group_version),
                    "request": {"method": "PUT", "url": format!("Group/{}", e.group_id)},
                    "response": {"status": "200"},
                }));
            }
        }
        json!({
            "resourceType": "Bundle",
            "id": bundle_id,
            "meta": {"profile": ["http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-subscription-notification-r4"]},
            "type": "history",
            "timestamp": fhir_instant(now_micros),
            "entry": entries,
        })
    }
}
