//! The notification Bundles as the Backport shapes them.

use atr_notify::{
    ListChangeEvent, Notification, NotificationKind, PayloadContent, SubscriptionStatus,
};
use serde_json::Value;

const BASE: &str = "http://127.0.0.1:8080/fhir";

fn param<'a>(status: &'a Value, name: &str) -> Vec<&'a Value> {
    status["parameter"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["name"] == name)
        .collect()
}

fn events() -> Vec<ListChangeEvent> {
    vec![
        ListChangeEvent {
            event_number: 7,
            timestamp_micros: 1_700_000_000_000_000,
            group_id: "list-1".into(),
            group_version: 12,
        },
        ListChangeEvent {
            event_number: 8,
            timestamp_micros: 1_700_000_001_000_000,
            group_id: "list-1".into(),
            group_version: 13,
        },
    ]
}

#[test]
fn id_only_event_notification_carries_numbers_and_focus_but_no_resource() {
    let events = events();
    let n = Notification {
        base_url: BASE,
        subscription_id: "sub-1",
        status: SubscriptionStatus::Active,
        kind: NotificationKind::EventNotification,
        events_since_start: 8,
        content: PayloadContent::IdOnly,
        events: &events,
    };
    let b = n.to_bundle(
        "0b9c3c1e-6c1e-4d3a-9d7e-1a2b3c4d5e6f",
        1_700_000_002_000_000,
    );
    assert_eq!(b["type"], "history");
    let entries = b["entry"].as_array().unwrap();
    assert_eq!(entries.len(), 3);
    let status = &entries[0]["resource"];
    assert_eq!(status["resourceType"], "Parameters");
    assert!(
        entries[0]["fullUrl"]
            .as_str()
            .unwrap()
            .starts_with("urn:uuid:")
    );
    assert_eq!(
        entries[0]["request"]["url"],
        format!("{BASE}/Subscription/sub-1/$status")
    );
    assert_eq!(param(status, "type")[0]["valueCode"], "event-notification");
    assert_eq!(param(status, "status")[0]["valueCode"], "active");
    assert_eq!(
        param(status, "events-since-subscription-start")[0]["valueString"],
        "8"
    );
    let ev = param(status, "notification-event");
    assert_eq!(ev.len(), 2);
    assert_eq!(ev[0]["part"][0]["valueString"], "7");
    assert_eq!(ev[1]["part"][0]["valueString"], "8");
    assert_eq!(
        ev[0]["part"][1]["valueInstant"],
        "2023-11-14T22:13:20.000000Z"
    );
    assert_eq!(
        ev[0]["part"][2]["valueReference"]["reference"],
        "Group/list-1"
    );
    for e in &entries[1..] {
        assert!(e.get("resource").is_none(), "id-only never carries content");
    }
    assert_eq!(
        entries[2]["fullUrl"],
        format!("{BASE}/Group/list-1/_history/13")
    );
}

#[test]
fn handshake_is_requested_with_no_events_and_empty_content_has_no_focus() {
    let n = Notification {
        base_url: BASE,
        subscription_id: "sub-1",
        status: SubscriptionStatus::Requested,
        kind: NotificationKind::Handshake,
        events_since_start: 0,
        content: PayloadContent::IdOnly,
        events: &[],
    };
    let b = n.to_bundle("id-1", 0);
    let status = &b["entry"][0]["resource"];
    assert_eq!(b["entry"].as_array().unwrap().len(), 1);
    assert_eq!(param(status, "type")[0]["valueCode"], "handshake");
    assert_eq!(param(status, "status")[0]["valueCode"], "requested");
    assert!(param(status, "notification-event").is_empty());

    let events = events();
    let empty = Notification {
        content: PayloadContent::Empty,
        kind: NotificationKind::EventNotification,
        events: &events,
        ..n
    };
    let b = empty.to_bundle("id-2", 0);
    assert_eq!(b["entry"].as_array().unwrap().len(), 1);
    let ev = param(&b["entry"][0]["resource"], "notification-event");
    assert!(ev.iter().all(|e| e["part"].as_array().unwrap().len() == 2));
}
