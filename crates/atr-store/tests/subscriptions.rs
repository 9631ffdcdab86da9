//! Subscriptions and their outbox, run against every dialect.

mod common;

use atr_store::{DeliveryResult, MemberChange, StoreError, SubscriptionWrite, WriteMode};
use serde_json::json;

use common::{stores, write_of};

fn group(id: &str, patients: &[&str]) -> String {
    let members: Vec<_> = patients
        .iter()
        .map(|p| json!({"entity": {"reference": p}}))
        .collect();
    json!({"resourceType": "Group", "id": id, "type": "person", "actual": true,
        "extension": [{"url": "http://hl7.org/fhir/us/davinci-atr/StructureDefinition/ext-attributionListStatus",
            "valueCode": "open"}],
        "managingEntity": {"reference": "Organization/payer"}, "member": members})
    .to_string()
}

fn subscription(id: &str, group_id: &str, off: bool) -> SubscriptionWrite {
    SubscriptionWrite {
        id: id.into(),
        client_id: "clinic".into(),
        group_id: group_id.into(),
        body: json!({"resourceType": "Subscription", "id": id}).to_string(),
        heartbeat_secs: None,
        off,
    }
}

#[tokio::test]
async fn every_new_group_version_is_one_numbered_event_per_live_subscription() {
    for (store, _dir) in stores().await {
        store
            .write(write_of(&group("g1", &["Patient/a"]), WriteMode::Create))
            .await
            .expect("g1");
        store
            .write(write_of(&group("g2", &["Patient/z"]), WriteMode::Create))
            .await
            .expect("g2");
        for w in [
            subscription("s1", "g1", false),
            subscription("s2", "g2", false),
            subscription("s3", "g1", true),
        ] {
            let made = store.create_subscription(&w, 1).await.expect("create");
            assert_eq!(made.events_since_start, 0);
            assert_eq!(made.handshake_pending, !w.off);
            assert_eq!(made.status, if w.off { "off" } else { "requested" });
        }

        // Three new versions of g1: an update, a member change and a deletion.
        let v2 = store
            .write(write_of(
                &group("g1", &["Patient/a", "Patient/b"]),
                WriteMode::Upsert,
            ))
            .await
            .expect("v2");
        let v3 = store
            .change_members(
                "g1",
                MemberChange::Remove {
                    patient: "Patient/a".into(),
                    provider: None,
                    coverage: None,
                },
                None,
            )
            .await
            .expect("remove");
        // A change that changes nothing makes no version and no event.
        let same = store
            .change_members("g1", MemberChange::SetStatus("open".into()), None)
            .await
            .expect("no-op");
        assert!(!same.changed);
        let v4 = store.delete(atr_model::ResourceType::Group, "g1").await;
        let v4 = v4.expect("delete").expect("deleted");

        let events = store
            .subscription_events("s1", 0, i64::MAX, 100)
            .await
            .expect("events");
        let seen: Vec<(i64, i64)> = events
            .iter()
            .map(|e| (e.event_number, e.group_version))
            .collect();
        assert_eq!(
            seen,
            vec![(1, v2.version), (2, v3.version), (3, v4.version)]
        );
        assert!(events.iter().all(|e| e.group_id == "g1"));
        assert_eq!(events[1].occurred_at, v3.last_updated);
        let s1 = store.subscription("s1").await.expect("read").expect("s1");
        assert_eq!(s1.events_since_start, 3);

        // A range: after 1, through 2.
        let middle = store
            .subscription_events("s1", 1, 2, 100)
            .await
            .expect("range");
        assert_eq!(middle.len(), 1);
        assert_eq!(middle[0].event_number, 2);

        // Another Group's Subscription and an `off` one heard nothing.
        for quiet in ["s2", "s3"] {
            let none = store
                .subscription_events(quiet, 0, i64::MAX, 100)
                .await
                .expect("events");
            assert!(none.is_empty(), "{quiet} got {none:?}");
        }
    }
}

#[tokio::test]
async fn a_lease_gives_each_due_subscription_to_one_instance_and_outcomes_move_its_status() {
    for (store, _dir) in stores().await {
        store
            .write(write_of(&group("g1", &["Patient/a"]), WriteMode::Create))
            .await
            .expect("g1");
        store
            .create_subscription(&subscription("s1", "g1", false), 10)
            .await
            .expect("create");

        // The handshake is due: one instance gets it, the other nothing.
        let a = store.claim_deliveries("a", 20, 1_000, 10).await.expect("a");
        assert_eq!(a.len(), 1);
        assert!(a[0].handshake_pending);
        let b = store.claim_deliveries("b", 20, 1_000, 10).await.expect("b");
        assert!(b.is_empty());
        // Only the lease holder records an outcome.
        assert!(
            !store
                .finish_delivery("s1", "b", &DeliveryResult::Handshake, 30)
                .await
                .expect("b finish")
        );
        assert!(
            store
                .finish_delivery("s1", "a", &DeliveryResult::Handshake, 30)
                .await
                .expect("a finish")
        );
        let s = store.subscription("s1").await.expect("read").expect("s1");
        assert_eq!((s.status.as_str(), s.handshake_pending), ("active", false));
        // Nothing due now.
        assert!(
            store
                .claim_deliveries("a", 40, 1_000, 10)
                .await
                .expect("idle")
                .is_empty()
        );

        // Two events; the endpoint fails twice: the second failure (error_after 2) is `error`.
        for patient in ["Patient/b", "Patient/c"] {
            store
                .change_members(
                    "g1",
                    MemberChange::Add(atr_model::group::MemberEntry::from_value(
                        &json!({"entity": {"reference": patient}}),
                    )),
                    None,
                )
                .await
                .expect("add");
        }
        let failed = |at: i64| DeliveryResult::Failed {
            reason: "connection refused".into(),
            retry_at: at,
            error_after: 2,
        };
        let claimed = store
            .claim_deliveries("a", 50, 1_000, 10)
            .await
            .expect("claim");
        assert_eq!(
            claimed[0].events_since_start - claimed[0].delivered_through,
            2
        );
        store
            .finish_delivery("s1", "a", &failed(100), 60)
            .await
            .expect("fail 1");
        let s = store.subscription("s1").await.expect("read").expect("s1");
        assert_eq!((s.status.as_str(), s.failures), ("active", 1));
        // Backoff: not due before its time, and a lease that ran out is taken over.
        assert!(
            store
                .claim_deliveries("a", 90, 1_000, 10)
                .await
                .expect("early")
                .is_empty()
        );
        assert_eq!(
            store
                .claim_deliveries("a", 100, 150, 10)
                .await
                .expect("due")
                .len(),
            1
        );
        assert_eq!(
            store
                .claim_deliveries("b", 151, 2_000, 10)
                .await
                .expect("taken")
                .len(),
            1
        );
        assert!(
            !store
                .finish_delivery("s1", "a", &failed(200), 160)
                .await
                .expect("stale")
        );
        store
            .finish_delivery("s1", "b", &failed(200), 160)
            .await
            .expect("fail 2");
        let s = store.subscription("s1").await.expect("read").expect("s1");
        assert_eq!((s.status.as_str(), s.failures), ("error", 2));
        assert_eq!(s.last_error.as_deref(), Some("connection refused"));

        // The endpoint answers again: events delivered, active, failures cleared.
        store
            .claim_deliveries("a", 200, 3_000, 10)
            .await
            .expect("retry");
        store
            .finish_delivery("s1", "a", &DeliveryResult::Events { through: 2 }, 210)
            .await
            .expect("delivered");
        let s = store.subscription("s1").await.expect("read").expect("s1");
        assert_eq!(
            (s.status.as_str(), s.failures, s.delivered_through),
            ("active", 0, 2)
        );
        assert_eq!(s.last_error, None);
    }
}

#[tokio::test]
async fn a_client_update_turns_delivery_off_and_on_and_checks_if_match() {
    for (store, _dir) in stores().await {
        let made = store
            .create_subscription(&subscription("s1", "g1", false), 10)
            .await
            .expect("create");
        assert!(matches!(
            store
                .create_subscription(&subscription("s1", "g1", false), 10)
                .await,
            Err(StoreError::AlreadyExists { .. })
        ));

        let off = store
            .update_subscription(&subscription("s1", "g1", true), Some(made.version), 20)
            .await
            .expect("off")
            .expect("exists");
        assert_eq!(
            (off.status.as_str(), off.handshake_pending, off.version),
            ("off", false, 2)
        );
        assert!(
            store
                .claim_deliveries("a", 30, 1_000, 10)
                .await
                .expect("off")
                .is_empty()
        );
        assert!(matches!(
            store
                .update_subscription(&subscription("s1", "g1", false), Some(1), 40)
                .await,
            Err(StoreError::VersionConflict { current: 2, .. })
        ));

        // Back on: a new handshake first.
        let on = store
            .update_subscription(&subscription("s1", "g2", false), None, 40)
            .await
            .expect("on")
            .expect("exists");
        assert_eq!(
            (on.status.as_str(), on.handshake_pending),
            ("requested", true)
        );
        assert_eq!(on.group_id, "g2");
        assert_eq!(
            store
                .claim_deliveries("a", 50, 1_000, 10)
                .await
                .expect("due")
                .len(),
            1
        );

        assert!(
            store
                .update_subscription(&subscription("nope", "g1", false), None, 60)
                .await
                .expect("missing")
                .is_none()
        );
        assert_eq!(
            store
                .subscriptions(Some("clinic"))
                .await
                .expect("list")
                .len(),
            1
        );
        assert!(
            store
                .subscriptions(Some("other"))
                .await
                .expect("list")
                .is_empty()
        );
        assert!(store.delete_subscription("s1").await.expect("delete"));
        assert!(!store.delete_subscription("s1").await.expect("again"));
        assert!(store.subscription("s1").await.expect("read").is_none());
    }
}

#[tokio::test]
async fn heartbeats_fall_due_after_the_period_of_silence() {
    for (store, _dir) in stores().await {
        let mut w = subscription("s1", "g1", false);
        w.heartbeat_secs = Some(60);
        store.create_subscription(&w, 0).await.expect("create");
        store
            .claim_deliveries("a", 1, 10, 10)
            .await
            .expect("handshake");
        store
            .finish_delivery("s1", "a", &DeliveryResult::Handshake, 1_000_000)
            .await
            .expect("ok");
        assert!(
            store
                .claim_deliveries("a", 60_000_000, 70_000_000, 10)
                .await
                .expect("quiet")
                .is_empty()
        );
        let due = store
            .claim_deliveries("a", 61_000_000, 70_000_000, 10)
            .await
            .expect("due");
        assert_eq!(due.len(), 1);
    }
}

#[tokio::test]
async fn old_delivered_events_are_pruned_and_undelivered_ones_stay() {
    for (store, _dir) in stores().await {
        store
            .write(write_of(&group("g1", &["Patient/a"]), WriteMode::Create))
            .await
            .expect("g1");
        store
            .create_subscription(&subscription("s1", "g1", false), 0)
            .await
            .expect("create");
        let mut times = Vec::new();
        for patient in ["Patient/b", "Patient/c", "Patient/d"] {
            let out = store
                .change_members(
                    "g1",
                    MemberChange::Add(atr_model::group::MemberEntry::from_value(
                        &json!({"entity": {"reference": patient}}),
                    )),
                    None,
                )
                .await
                .expect("add");
            times.push(out.last_updated);
        }
        // Events 1 and 2 delivered; 3 not.
        store.claim_deliveries("a", 1, 10, 10).await.expect("claim");
        store
            .finish_delivery("s1", "a", &DeliveryResult::Events { through: 2 }, 5)
            .await
            .expect("delivered");
        // Everything is older than the cutoff; only delivered events go.
        let gone = store
            .prune_subscription_events(times[2] + 1)
            .await
            .expect("prune");
        assert_eq!(gone, 2);
        let left = store
            .subscription_events("s1", 0, i64::MAX, 10)
            .await
            .expect("events");
        assert_eq!(left.iter().map(|e| e.event_number).collect::<Vec<_>>(), [3]);
        // A cutoff before them all keeps everything.
        assert_eq!(store.prune_subscription_events(0).await.expect("prune"), 0);
    }
}
