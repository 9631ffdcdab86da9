//! Notifications survive `kill -9` of the server: events pending for an endpoint that is down
//! are rows in the outbox, so a restarted server on the same data directory delivers every one,
//! in order, once the endpoint answers again.

mod common;
#[path = "../../atr-server/tests/common/receiver.rs"]
mod receiver;

use common::Server;
use receiver::{Receiver, accepted_events};

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const TIMEOUT: Duration = Duration::from_secs(60);
const CLIENT_ID: &str = "notify-kill-admin";
const BACKPORT: &str = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/";

fn start_server(data_dir: &Path) -> Server {
    Server::start(
        &[
            "--data-dir".as_ref(),
            data_dir.as_os_str(),
            "--notify-backoff-secs".as_ref(),
            "0.05".as_ref(),
            "--notify-backoff-max-secs".as_ref(),
            "0.2".as_ref(),
            "--notify-poll-ms".as_ref(),
            "50".as_ref(),
            // A delivery cut off by the kill is retried 2 + 5 s later at most.
            "--notify-max-timeout-secs".as_ref(),
            "2".as_ref(),
        ],
        TIMEOUT,
    )
}

fn admin_token(server: &Server, dir: &Path, private_jwks: &Value) -> String {
    common::access_token(server, dir, CLIENT_ID, private_jwks, Some("system/*.cruds"))
}

#[tokio::test]
async fn events_pending_when_the_server_is_killed_are_delivered_after_restart() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path();
    let common::Dataset {
        data_dir: data,
        private_jwks,
        ..
    } = common::admin_dataset(
        dir,
        &["--members", "60", "--lists", "3"],
        CLIENT_ID,
        Some("system/*.cruds"),
        TIMEOUT,
    );

    let receiver = Receiver::start().await;
    let hook = receiver.endpoint("kill");
    let mut first = start_server(&data);
    let token = admin_token(&first, dir, &private_jwks);
    let client = reqwest::Client::builder()
        .timeout(TIMEOUT)
        .build()
        .expect("http");
    let subscription = json!({
        "resourceType": "Subscription",
        "status": "active",
        "reason": "kill test",
        "criteria": "http://hl7.org/fhir/us/davinci-atr/SubscriptionTopic/atr-list-change",
        "_criteria": {"extension": [{"url": format!("{BACKPORT}backport-filter-criteria"),
                                      "valueString": "Group?_id=list-3"}]},
        "channel": {
            "type": "rest-hook",
            "endpoint": hook,
            "payload": "application/fhir+json",
            "_payload": {"extension": [{"url": format!("{BACKPORT}backport-payload-content"),
                                         "valueCode": "id-only"}]},
        },
    });
    let url = format!("{}/Subscription", first.base);
    let (status, made) = common::call(
        &client,
        reqwest::Method::POST,
        &url,
        &token,
        Some(subscription),
    )
    .await;
    assert_eq!(status, 201, "{made}\n{}", first.log());
    receiver
        .wait_for("the handshake", TIMEOUT, |s| s.iter().any(|r| r.accepted()))
        .await;

    // The endpoint goes down; three changes of list-3 wait in the outbox.
    receiver.answer(503);
    let (_, group) = common::call(
        &client,
        reqwest::Method::GET,
        &format!("{}/Group/list-3", first.base),
        &token,
        None,
    )
    .await;
    let patient = group["member"][0]["entity"]["reference"]
        .as_str()
        .expect("a member")
        .to_string();
    let by_patient = json!({"resourceType": "Parameters", "parameter": [
        {"name": "patientReference", "valueReference": {"reference": patient}}]});
    for op in ["$member-remove", "$confirm-attribution-list"] {
        let (status, body) = common::call(
            &client,
            reqwest::Method::POST,
            &format!("{}/Group/list-3/{op}", first.base),
            &token,
            Some(if op == "$member-remove" {
                by_patient.clone()
            } else {
                json!({"resourceType": "Parameters"})
            }),
        )
        .await;
        assert!((200..300).contains(&status), "{op}: {body}");
    }
    receiver
        .wait_for("a refused event notification", TIMEOUT, |s| {
            s.iter()
                .any(|r| !r.accepted() && r.kind() == "event-notification")
        })
        .await;
    first.kill_9();
    let killed = Instant::now();

    receiver.answer(200);
    let second = start_server(&data);
    let seen = receiver
        .wait_for("both events after the restart", TIMEOUT, |s| {
            accepted_events(s, "/hook/kill").last() == Some(&2)
        })
        .await;
    let recovered = killed.elapsed();
    let mut numbers = accepted_events(&seen, "/hook/kill");
    assert!(
        numbers.windows(2).all(|w| w[0] <= w[1]),
        "in order: {numbers:?}"
    );
    numbers.dedup();
    assert_eq!(
        numbers,
        vec![1, 2],
        "every event, none missing\n{}",
        second.log()
    );
    eprintln!("notifications resumed {recovered:?} after kill -9 (restart included)");
}
