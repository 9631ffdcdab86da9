//! `atr-list-change` Subscriptions against a real rest-hook receiver on loopback: handshake,
//! one numbered notification per Group change, nothing for other Groups, every event delivered
//! in order after the receiver comes back, `off` stops delivery, and 401 for a Group the client
//! may not access.

mod common;

use std::time::Duration;

use common::receiver::{Receiver, accepted_events};
use common::{TestApp, load_synthetic, provider_client, spawn_apps_with};
use serde_json::{Value, json};

/// Longest any wait for a notification may take.
const WAIT: Duration = Duration::from_secs(20);

const BACKPORT: &str = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/";

fn fast_delivery(config: &mut atr_server::ServerConfig) {
    config.notify.poll = Duration::from_millis(50);
    config.notify.backoff_base = Duration::from_millis(40);
    config.notify.backoff_max = Duration::from_millis(200);
    config.notify.error_after = 3;
    config.notify.min_heartbeat = Duration::from_secs(1);
}

fn subscription(group: &str, endpoint: &str) -> Value {
    json!({
        "resourceType": "Subscription",
        "status": "active",
        "reason": "attribution list changes",
        "criteria": "http://hl7.org/fhir/us/davinci-atr/SubscriptionTopic/atr-list-change",
        "_criteria": {"extension": [{"url": format!("{BACKPORT}backport-filter-criteria"),
                                      "valueString": format!("Group/{group}")}]},
        "channel": {
            "extension": [
                {"url": format!("{BACKPORT}backport-timeout"), "valueUnsignedInt": 5},
                {"url": format!("{BACKPORT}backport-max-count"), "valuePositiveInt": 20},
            ],
            "type": "rest-hook",
            "endpoint": endpoint,
            "payload": "application/fhir+json",
            "_payload": {"extension": [{"url": format!("{BACKPORT}backport-payload-content"),
                                         "valueCode": "id-only"}]},
            "header": ["Authorization: Bearer receiver-secret"],
        },
    })
}

async fn send(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    body: Option<&Value>,
) -> (u16, Value, Option<String>) {
    let mut r = client
        .request(method, url)
        .header("Accept", "application/fhir+json");
    if let Some(b) = body {
        r = r
            .header("Content-Type", "application/fhir+json")
            .body(b.to_string());
    }
    let resp = r.send().await.expect("request");
    let status = resp.status().as_u16();
    let etag = resp
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    (status, resp.json().await.unwrap_or(Value::Null), etag)
}

async fn create(app: &TestApp, client: &reqwest::Client, body: &Value) -> (u16, Value) {
    let (status, body, _) = send(
        client,
        reqwest::Method::POST,
        app.url("Subscription"),
        Some(body),
    )
    .await;
    (status, body)
}

/// The first active member of a Group: (patient, provider).
async fn first_member(app: &TestApp, group: &str) -> (String, String) {
    let (_, g) = app.get_json(&format!("Group/{group}")).await;
    let m = g["member"]
        .as_array()
        .expect("members")
        .iter()
        .find(|m| {
            !m["inactive"].as_bool().unwrap_or(false)
                && m["extension"]
                    .to_string()
                    .contains("ext-attributedProvider")
        })
        .expect("an active member with a provider")
        .clone();
    let provider = m["extension"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| {
            e["url"]
                .as_str()
                .is_some_and(|u| u.ends_with("ext-attributedProvider"))
        })
        .and_then(|e| e["valueReference"]["reference"].as_str())
        .expect("provider")
        .to_string();
    (
        m["entity"]["reference"]
            .as_str()
            .expect("patient")
            .to_string(),
        provider,
    )
}

/// `$member-remove` then `$member-add` of one member of an open list: two new Group versions.
/// Returns the version each made.
async fn remove_and_add(app: &TestApp, group: &str) -> (i64, i64) {
    let (patient, provider) = first_member(app, group).await;
    let params = json!({"resourceType": "Parameters", "parameter": [
        {"name": "patientReference", "valueReference": {"reference": patient}},
        {"name": "providerReference", "valueReference": {"reference": provider}},
    ]});
    let mut versions = Vec::new();
    for op in ["$member-remove", "$member-add"] {
        let (status, body, etag) = send(
            &app.client,
            reqwest::Method::POST,
            app.url(&format!("Group/{group}/{op}")),
            Some(&params),
        )
        .await;
        assert_eq!(status, 200, "{op} on {group}: {body}");
        let etag = etag.expect("etag");
        versions.push(
            etag.trim_start_matches("W/")
                .trim_matches('"')
                .parse::<i64>()
                .expect("version"),
        );
    }
    (versions[0], versions[1])
}

async fn status_of(app: &TestApp, id: &str) -> Value {
    let (status, body) = app.get_json(&format!("Subscription/{id}")).await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn wait_for_status(app: &TestApp, id: &str, want: &str) -> Value {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let s = status_of(app, id).await;
        if s["status"] == want {
            return s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "Subscription/{id} never became {want}: {s}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn handshake_then_each_change_of_the_group_is_one_numbered_id_only_notification() {
    for app in spawn_apps_with(fast_delivery).await {
        load_synthetic(&app).await;
        let receiver = Receiver::start().await;
        let hook = receiver.endpoint("list-3");
        let (status, made) = create(&app, &app.client, &subscription("list-3", &hook)).await;
        assert_eq!(status, 201, "{made}");
        assert_eq!(made["status"], "requested", "{made}");
        let id = made["id"].as_str().expect("id").to_string();

        // Handshake first, then active.
        let seen = receiver
            .wait_for("the handshake", WAIT, |s| !s.is_empty())
            .await;
        let handshake = &seen[0];
        assert_eq!(handshake.kind(), "handshake");
        assert_eq!(handshake.status(), "requested");
        assert!(handshake.events().is_empty());
        assert_eq!(handshake.body["type"], "history");
        assert!(
            handshake.content_type.starts_with("application/fhir+json"),
            "{}",
            handshake.content_type
        );
        assert_eq!(
            handshake.header("authorization"),
            Some("Bearer receiver-secret")
        );
        wait_for_status(&app, &id, "active").await;

        // Two changes of list-3, with a change of list-6 between them.
        let (v1, _) = remove_and_add(&app, "list-3").await;
        remove_and_add(&app, "list-6").await;
        let seen = receiver
            .wait_for("events 1 and 2", WAIT, |s| {
                accepted_events(s, "/hook/list-3").len() >= 2
            })
            .await;
        let events: Vec<(u64, String)> = seen
            .iter()
            .filter(|r| r.kind() == "event-notification")
            .flat_map(|r| r.events())
            .collect();
        assert_eq!(
            events,
            vec![
                (1, "Group/list-3".to_string()),
                (2, "Group/list-3".to_string())
            ],
            "one event per change of list-3, none for list-6"
        );
        // id-only: the Group version's URL, no resource.
        let first = seen
            .iter()
            .find(|r| r.kind() == "event-notification")
            .expect("an event");
        let focus = &first.body["entry"][1];
        assert!(focus.get("resource").is_none(), "{focus}");
        assert_eq!(
            focus["fullUrl"],
            format!("{}/Group/list-3/_history/{v1}", app.base)
        );
        let last = seen
            .iter()
            .rev()
            .find(|r| r.kind() == "event-notification")
            .expect("an event");
        assert_eq!(last.events_since_start(), "2");

        // $status and $events answer from the same numbers.
        let (status, bundle) = app.get_json(&format!("Subscription/{id}/$status")).await;
        assert_eq!(status, 200, "{bundle}");
        let params = bundle["entry"][0]["resource"]["parameter"].to_string();
        assert!(
            params.contains("query-status") && params.contains("\"2\""),
            "{params}"
        );
        let (status, events) = app
            .get_json(&format!(
                "Subscription/{id}/$events?eventsSinceNumber=2&eventsUntilNumber=2"
            ))
            .await;
        assert_eq!(status, 200, "{events}");
        let text = events["entry"][0]["resource"].to_string();
        assert!(
            text.contains("query-event") && text.contains("\"event-number\""),
            "{text}"
        );
        assert_eq!(
            events["entry"].as_array().map(Vec::len),
            Some(2),
            "{events}"
        );
        let (status, _) = app
            .get_json(&format!("Subscription/{id}/$events?eventsSinceNumber=zero"))
            .await;
        assert_eq!(status, 400);
    }
}

#[tokio::test]
async fn a_receiver_that_was_down_gets_every_event_in_order_and_the_subscription_recovers() {
    for app in spawn_apps_with(fast_delivery).await {
        load_synthetic(&app).await;
        let receiver = Receiver::start().await;
        let (status, made) = create(
            &app,
            &app.client,
            &subscription("list-3", &receiver.endpoint("down")),
        )
        .await;
        assert_eq!(status, 201, "{made}");
        let id = made["id"].as_str().expect("id").to_string();
        wait_for_status(&app, &id, "active").await;

        receiver.answer(503);
        for _ in 0..2 {
            remove_and_add(&app, "list-3").await;
        }
        // Three refusals in a row (error_after): error, with the reason.
        let failed = wait_for_status(&app, &id, "error").await;
        assert!(
            failed["error"].as_str().is_some_and(|e| e.contains("503")),
            "{failed}"
        );
        receiver.answer(200);
        let seen = receiver
            .wait_for("all four events", WAIT, |s| {
                accepted_events(s, "/hook/down").last() == Some(&4)
            })
            .await;
        let mut numbers = accepted_events(&seen, "/hook/down");
        // In order; a repeat is allowed (at least once), a gap is not.
        assert!(numbers.windows(2).all(|w| w[0] <= w[1]), "{numbers:?}");
        numbers.dedup();
        assert_eq!(numbers, vec![1, 2, 3, 4]);
        wait_for_status(&app, &id, "active").await;
    }
}

#[tokio::test]
async fn off_stops_delivery_and_a_group_the_client_may_not_see_is_401() {
    for app in spawn_apps_with(fast_delivery).await {
        load_synthetic(&app).await;
        let receiver = Receiver::start().await;
        // A Consumer for org-1 (lists 1, 5, 9).
        let client = provider_client(
            &app,
            "org-1-listener",
            "org-1",
            "system/*.read system/Subscription.cruds",
        )
        .await;
        let (status, body) = create(
            &app,
            &client,
            &subscription("list-3", &receiver.endpoint("x")),
        )
        .await;
        assert_eq!(status, 401, "another provider's list: {body}");
        assert_eq!(body["resourceType"], "OperationOutcome");
        let (status, body) = create(
            &app,
            &client,
            &subscription("no-such-list", &receiver.endpoint("x")),
        )
        .await;
        assert_eq!(status, 401, "an unknown list is not told apart: {body}");
        let (_, all) = app.get_json("Subscription").await;
        assert_eq!(all["total"], 0, "nothing was stored: {all}");

        // Invalid Subscriptions: every problem named.
        let mut bad = subscription("list-5", "ftp://example.org/hook");
        bad["channel"]["type"] = json!("websocket");
        let (status, body) = create(&app, &client, &bad).await;
        assert_eq!(status, 422, "{body}");
        let expressions = body["issue"].to_string();
        assert!(
            expressions.contains("Subscription.channel.type")
                && expressions.contains("Subscription.channel.endpoint"),
            "{body}"
        );
        let broken = client
            .post(app.url("Subscription"))
            .header("Content-Type", "application/fhir+json")
            .body("{\"resourceType\": \"Subscription\",")
            .send()
            .await
            .expect("post");
        assert_eq!(broken.status(), 400);

        // Its own list: accepted, handshake, active.
        let hook = receiver.endpoint("list-5");
        let (status, made) = create(&app, &client, &subscription("list-5", &hook)).await;
        assert_eq!(status, 201, "{made}");
        let id = made["id"].as_str().expect("id").to_string();
        receiver
            .wait_for("the handshake", WAIT, |s| {
                s.iter().any(|r| r.path == "/hook/list-5" && r.accepted())
            })
            .await;
        // Another provider's client does not see it, nor can it take its id.
        let other = provider_client(
            &app,
            "org-2-listener",
            "org-2",
            "system/*.read system/Subscription.cruds",
        )
        .await;
        let (status, _, _) = send(
            &other,
            reqwest::Method::GET,
            app.url(&format!("Subscription/{id}")),
            None,
        )
        .await;
        assert_eq!(status, 404);
        let (_, listed, _) =
            send(&other, reqwest::Method::GET, app.url("Subscription"), None).await;
        assert_eq!(listed["total"], 0, "{listed}");
        // A PUT on its id answers exactly as on an id nobody holds.
        let (_, theirs, _) = send(
            &client,
            reqwest::Method::GET,
            app.url(&format!("Subscription/{id}")),
            None,
        )
        .await;
        let mut nobodys = theirs.clone();
        nobodys["id"] = json!("nobody-holds-this");
        let (taken, taken_body, _) = send(
            &other,
            reqwest::Method::PUT,
            app.url(&format!("Subscription/{id}")),
            Some(&theirs),
        )
        .await;
        let (free, free_body, _) = send(
            &other,
            reqwest::Method::PUT,
            app.url("Subscription/nobody-holds-this"),
            Some(&nobodys),
        )
        .await;
        assert_eq!((taken, free), (404, 404), "{taken_body} / {free_body}");
        assert_eq!(
            taken_body["issue"][0]["code"],
            free_body["issue"][0]["code"]
        );
        assert_eq!(
            taken_body["issue"][0]["diagnostics"]
                .as_str()
                .map(|d| d.replace(id.as_str(), "X")),
            free_body["issue"][0]["diagnostics"]
                .as_str()
                .map(|d| d.replace("nobody-holds-this", "X")),
        );

        // PUT off (with If-Match), then a change: nothing more arrives.
        let (_, current, etag) = send(
            &client,
            reqwest::Method::GET,
            app.url(&format!("Subscription/{id}")),
            None,
        )
        .await;
        let mut off = current.clone();
        off["status"] = json!("off");
        let (status, body, _) = send(
            &client,
            reqwest::Method::PUT,
            app.url(&format!("Subscription/{id}")),
            Some(&off),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["status"], "off");
        let stale = client
            .put(app.url(&format!("Subscription/{id}")))
            .header("Content-Type", "application/fhir+json")
            .header("If-Match", etag.expect("etag"))
            .body(off.to_string())
            .send()
            .await
            .expect("put");
        assert_eq!(stale.status(), 412);
        let before = receiver.at("/hook/list-5").len();
        remove_and_add(&app, "list-5").await;
        // A notification would have come within a few polls.
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(
            receiver.at("/hook/list-5").len(),
            before,
            "nothing after off"
        );

        // Deleted: gone for its client too.
        let (status, _, _) = send(
            &client,
            reqwest::Method::DELETE,
            app.url(&format!("Subscription/{id}")),
            None,
        )
        .await;
        assert_eq!(status, 200);
        let (status, _, _) = send(
            &client,
            reqwest::Method::GET,
            app.url(&format!("Subscription/{id}")),
            None,
        )
        .await;
        assert_eq!(status, 404);
    }
}

#[tokio::test]
async fn a_client_that_loses_access_to_the_list_hears_nothing_more_about_it() {
    for app in spawn_apps_with(fast_delivery).await {
        load_synthetic(&app).await;
        let receiver = Receiver::start().await;
        let client = provider_client(
            &app,
            "org-1-leaving",
            "org-1",
            "system/*.read system/Subscription.cruds",
        )
        .await;
        let hook = receiver.endpoint("leaving");
        let (status, made) = create(&app, &client, &subscription("list-5", &hook)).await;
        assert_eq!(status, 201, "{made}");
        let id = made["id"].as_str().expect("id").to_string();
        wait_for_status(&app, &id, "active").await;
        // The contract ends: the payer registers the client for another organisation only.
        let npi = common::npi_of(&app, "org-2").await;
        app.register(
            "org-1-leaving",
            atr_auth::SigningAlg::Es384,
            &[&format!("{}|{npi}", common::NPI)],
            &["system/*.read", "system/Subscription.cruds"],
            false,
        )
        .await;
        remove_and_add(&app, "list-5").await;
        let failed = wait_for_status(&app, &id, "error").await;
        assert!(
            failed["error"]
                .as_str()
                .is_some_and(|e| e.contains("may no longer access Group/list-5")),
            "{failed}"
        );
        assert!(
            receiver
                .at("/hook/leaving")
                .iter()
                .all(|r| r.kind() != "event-notification"),
            "no event reached a client without access"
        );
    }
}

#[tokio::test]
async fn a_quiet_subscription_gets_heartbeats_at_its_period() {
    for app in spawn_apps_with(fast_delivery).await {
        load_synthetic(&app).await;
        let receiver = Receiver::start().await;
        let mut body = subscription("list-3", &receiver.endpoint("beat"));
        body["channel"]["extension"]
            .as_array_mut()
            .expect("extensions")
            .push(json!({"url": format!("{BACKPORT}backport-heartbeat-period"), "valueUnsignedInt": 1}));
        let (status, made) = create(&app, &app.client, &body).await;
        assert_eq!(status, 201, "{made}");
        let seen = receiver
            .wait_for("two heartbeats", WAIT, |s| {
                s.iter().filter(|r| r.kind() == "heartbeat").count() >= 2
            })
            .await;
        let beats: Vec<_> = seen.iter().filter(|r| r.kind() == "heartbeat").collect();
        assert_eq!(beats[0].status(), "active");
        assert!(beats[0].events().is_empty());
        assert_eq!(beats[0].events_since_start(), "0");
        assert_eq!(seen[0].kind(), "handshake", "the handshake comes first");
    }
}

#[tokio::test]
async fn two_instances_on_one_database_deliver_each_event_once() {
    for app in spawn_apps_with(fast_delivery).await {
        load_synthetic(&app).await;
        // A second server over the same store: both deliver, each Subscription by one at a time.
        app.another_instance_with(fast_delivery).await;
        let receiver = Receiver::start().await;
        const SUBSCRIBERS: usize = 12;
        for n in 0..SUBSCRIBERS {
            let hook = receiver.endpoint(&format!("s{n}"));
            let (status, made) = create(&app, &app.client, &subscription("list-3", &hook)).await;
            assert_eq!(status, 201, "{made}");
        }
        receiver
            .wait_for("every handshake", WAIT, |s| {
                s.iter().filter(|r| r.kind() == "handshake").count() >= SUBSCRIBERS
            })
            .await;
        // Changes through the first instance; delivery by either.
        remove_and_add(&app, "list-3").await;
        remove_and_add(&app, "list-3").await;
        let seen = receiver
            .wait_for("four events at every endpoint", WAIT, |s| {
                (0..SUBSCRIBERS)
                    .all(|n| accepted_events(s, &format!("/hook/s{n}")).last() == Some(&4))
            })
            .await;
        // Let a duplicate, if there were one, arrive.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let seen = if seen.len() == receiver.received().len() {
            seen
        } else {
            receiver.received()
        };
        for n in 0..SUBSCRIBERS {
            let path = format!("/hook/s{n}");
            assert_eq!(
                accepted_events(&seen, &path),
                vec![1, 2, 3, 4],
                "{path}: each event once, in order"
            );
            let handshakes = seen
                .iter()
                .filter(|r| r.path == path && r.kind() == "handshake")
                .count();
            assert_eq!(handshakes, 1, "{path}: one handshake");
        }
    }
}

#[tokio::test]
async fn the_capability_statement_names_the_subscription_profile_and_the_topic() {
    for app in spawn_apps_with(fast_delivery).await {
        let (_, cs) = app.get_json("metadata").await;
        let text = cs.to_string();
        assert!(
            text.contains("atr-list-change-subscription")
                && text.contains("SubscriptionTopic/atr-list-change")
                && text.contains("backport-subscription"),
            "{text}"
        );
    }
}
