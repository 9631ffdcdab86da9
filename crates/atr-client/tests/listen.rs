//! Subscribe and listen against our Producer on loopback: the handshake is answered, a member
//! change arrives as a numbered event and triggers a pull, a gap in event numbers is filled from
//! `$events`, a notification without the Subscription's secret is refused, and after
//! unsubscribing nothing more arrives.

#[path = "../../atr-server/tests/common/mod.rs"]
mod common;
mod support;

use std::time::Duration;

use atr_client::listen::{ListenConfig, ListenEvent};
use atr_client::pull::PullOptions;
use atr_client::reconcile::{self, MemberSelector};
use atr_client::{ConsumerStore, Fhir};
use common::{TestApp, load_synthetic_members, spawn_apps_with};
use tokio::sync::mpsc::UnboundedReceiver;

const WAIT: Duration = Duration::from_secs(20);

fn fast_delivery(config: &mut atr_server::ServerConfig) {
    config.notify.poll = Duration::from_millis(50);
    config.notify.backoff_base = Duration::from_millis(40);
    config.notify.backoff_max = Duration::from_millis(200);
}

/// The next reported event that `wanted` accepts (others are skipped), within [`WAIT`].
async fn next(
    events: &mut UnboundedReceiver<ListenEvent>,
    what: &str,
    wanted: impl Fn(&ListenEvent) -> bool,
) -> ListenEvent {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(e)) if wanted(&e) => return e,
            Ok(Some(_)) => {}
            Ok(None) => panic!("the listener stopped before {what}"),
            Err(_) => panic!("timed out waiting for {what}"),
        }
    }
}

async fn remove_first_active(fhir: &Fhir, app: &TestApp, group: &str) -> String {
    let (_, g) = app.get_json(&format!("Group/{group}")).await;
    let patient = g["member"]
        .as_array()
        .expect("members")
        .iter()
        .find(|m| m["inactive"] != true)
        .and_then(|m| m["entity"]["reference"].as_str())
        .expect("an active member")
        .to_string();
    reconcile::member_remove(
        fhir,
        group,
        &MemberSelector {
            patient: Some(patient.clone()),
            ..Default::default()
        },
        None,
    )
    .await
    .expect("remove");
    patient
}

#[tokio::test]
async fn a_change_is_a_numbered_event_that_triggers_a_pull_and_gaps_are_filled() {
    for app in spawn_apps_with(fast_delivery).await {
        load_synthetic_members(&app, 400).await;
        let profile = support::provider_profile(
            &app,
            "org-1-listener",
            "org-1",
            &[
                "system/*.read",
                "system/Group.u",
                "system/Subscription.cruds",
            ],
        )
        .await;
        let fhir = Fhir::connect(&profile).await.expect("connect");
        let dir = tempfile::tempdir().expect("dir");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let (addr, mut events) = atr_client::listen::start(
            listener,
            fhir.clone(),
            ListenConfig {
                store_dir: dir.path().to_path_buf(),
                pull: true,
                catch_up: false,
                pull_options: PullOptions::default(),
            },
        )
        .await
        .expect("listen");
        let store = ConsumerStore::open(dir.path()).expect("store");
        let endpoint = format!("http://{addr}/atr-hook");
        let sub = atr_client::subscribe::subscribe(&fhir, &store, "list-9", &endpoint, None)
            .await
            .expect("subscribe");
        assert_eq!(sub.status, "requested");
        next(&mut events, "the handshake", |e| {
            matches!(e, ListenEvent::Handshake { .. })
        })
        .await;

        // A change: event 1, then a pull of list-9.
        let (_, before) = app.get_json("Group/list-9?_summary=true").await;
        let quantity = before["quantity"].as_u64().expect("quantity") as usize;
        remove_first_active(&fhir, &app, "list-9").await;
        let e = next(&mut events, "event 1", |e| {
            matches!(e, ListenEvent::Events { .. })
        })
        .await;
        assert_eq!(
            e,
            ListenEvent::Events {
                subscription: sub.id.clone(),
                numbers: vec![1],
                recovered: vec![]
            }
        );
        let pulled = next(&mut events, "the pull", |e| {
            matches!(e, ListenEvent::Pulled { .. })
        })
        .await;
        let ListenEvent::Pulled { group, members, .. } = pulled else {
            unreachable!()
        };
        assert_eq!((group.as_str(), members), ("list-9", quantity - 1));

        // Event 1 "lost" on this side: event 2 shows the gap, $events fills it.
        store
            .set_last_event(fhir.base(), &sub.id, 0)
            .expect("forget event 1");
        remove_first_active(&fhir, &app, "list-9").await;
        let e = next(&mut events, "event 2", |e| {
            matches!(e, ListenEvent::Events { .. })
        })
        .await;
        assert_eq!(
            e,
            ListenEvent::Events {
                subscription: sub.id.clone(),
                numbers: vec![2],
                recovered: vec![1]
            }
        );
        next(
            &mut events,
            "the second pull",
            |e| matches!(e, ListenEvent::Pulled { members, .. } if *members == quantity - 2),
        )
        .await;

        // Someone else's POST, without the secret: 401.
        let forged = serde_json::json!({"resourceType": "Bundle", "type": "history", "entry": [{"resource": {
            "resourceType": "Parameters", "parameter": [
                {"name": "subscription", "valueReference": {"reference": format!("Subscription/{}", sub.id)}},
                {"name": "type", "valueCode": "event-notification"},
                {"name": "status", "valueCode": "active"}]}}]});
        let r = reqwest::Client::new()
            .post(&endpoint)
            .header("Content-Type", "application/fhir+json")
            .body(forged.to_string())
            .send()
            .await
            .expect("post");
        assert_eq!(r.status(), 401);

        // Unsubscribe: off at the Producer, and nothing more arrives.
        let off = atr_client::subscribe::unsubscribe(&fhir, &store, "list-9")
            .await
            .expect("unsubscribe");
        assert_eq!(off, vec![sub.id.clone()]);
        let (status, _) = atr_client::subscribe::status(&fhir, &sub.id)
            .await
            .expect("$status");
        assert_eq!(status, "off");
        remove_first_active(&fhir, &app, "list-9").await;
        let quiet = tokio::time::timeout(Duration::from_millis(700), async {
            loop {
                match events.recv().await {
                    Some(ListenEvent::Events { .. }) | None => return,
                    Some(_) => {}
                }
            }
        })
        .await;
        assert!(quiet.is_err(), "an event arrived after unsubscribing");
    }
}
