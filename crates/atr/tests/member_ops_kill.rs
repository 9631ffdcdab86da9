//! `kill -9` of the server while Consumers reconcile: every `$member-remove` the server answered
//! 2xx is in the list after a restart, the one in flight at the kill is either wholly there or
//! wholly absent, and the list's version and `quantity` agree with its members.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Server, TIMEOUT};
use serde_json::{Value, json};

const CLIENT_ID: &str = "member-ops-kill-admin";

fn start_server(data_dir: &Path) -> Server {
    Server::start(&["--data-dir".as_ref(), data_dir.as_os_str()], TIMEOUT)
}

async fn list_1(client: &reqwest::Client, base: &str, token: &str) -> (Value, i64) {
    let resp = client
        .get(format!("{base}/Group/list-1"))
        .bearer_auth(token)
        .send()
        .await
        .expect("GET Group/list-1");
    assert_eq!(resp.status(), 200);
    let etag = resp.headers()["etag"].to_str().expect("ascii").to_string();
    let version = etag
        .trim_start_matches("W/")
        .trim_matches('"')
        .parse()
        .expect("ETag W/\"N\"");
    (resp.json().await.expect("Group JSON"), version)
}

fn patients(group: &Value) -> BTreeSet<String> {
    group["member"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| Some(m["entity"]["reference"].as_str()?.to_string()))
        .collect()
}

#[tokio::test]
async fn member_operations_answered_before_a_kill_9_are_all_in_the_list_after_restart() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path();
    let common::Dataset {
        data_dir: data,
        private_jwks,
        ..
    } = common::admin_dataset(
        dir,
        &[
            "--members",
            "400",
            "--lists",
            "2",
            "--largest-list-share",
            "0.9",
        ],
        CLIENT_ID,
        Some("system/*.cruds"),
        TIMEOUT,
    );
    // An open list: a removed entry leaves the list (a draft would keep it, inactive).
    let data_arg = data.to_str().expect("utf-8 path");
    common::atr_ok(
        TIMEOUT,
        &["roster", "--data-dir", data_arg, "status", "list-1", "open"],
    );

    let mut server = start_server(&data);
    let token = common::access_token(
        &server,
        dir,
        CLIENT_ID,
        &private_jwks,
        Some("system/*.cruds"),
    );
    let client = reqwest::Client::builder()
        .timeout(TIMEOUT)
        .build()
        .expect("http");
    let (before, version_before) = list_1(&client, &server.base, &token).await;
    let members_before = patients(&before);
    let quantity_before = before["quantity"].as_i64().expect("quantity");

    // Removals one after another; the answered ones are recorded as they come.
    let answered: Arc<Mutex<Vec<String>>> = Arc::default();
    let remover = {
        let (client, base, token) = (client.clone(), server.base.clone(), token.clone());
        let answered = answered.clone();
        let targets: Vec<String> = members_before.iter().cloned().collect();
        tokio::spawn(async move {
            for patient in targets {
                let body = json!({"resourceType": "Parameters", "parameter": [
                    {"name": "patientReference", "valueReference": {"reference": patient}}]});
                let sent = client
                    .post(format!("{base}/Group/list-1/$member-remove"))
                    .bearer_auth(&token)
                    .header("Content-Type", "application/fhir+json")
                    .body(body.to_string())
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status().is_success() => {
                        answered.lock().expect("lock").push(patient)
                    }
                    Ok(r) => panic!(
                        "{patient}: {} {}",
                        r.status(),
                        r.text().await.unwrap_or_default()
                    ),
                    Err(_) => return patient, // the server died with this one in flight
                }
            }
            panic!("every member was removed before the kill: make the list bigger");
        })
    };
    let started = Instant::now();
    while answered.lock().expect("lock").len() < 25 {
        assert!(
            started.elapsed() < TIMEOUT && !remover.is_finished(),
            "removals did not get going"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    server.kill_9();
    let in_flight = remover.await.expect("the remover");
    let answered = answered.lock().expect("lock").clone();

    let second = start_server(&data);
    let (after, version_after) = list_1(&client, &second.base, &token).await;
    let members_after = patients(&after);
    for p in &answered {
        assert!(
            !members_after.contains(p),
            "{p}'s answered removal was lost"
        );
    }
    let removed: BTreeSet<&String> = members_before.difference(&members_after).collect();
    let expected: BTreeSet<&String> = answered.iter().collect();
    let mut with_in_flight = expected.clone();
    with_in_flight.insert(&in_flight);
    assert!(
        removed == expected || removed == with_in_flight,
        "removed {} members; answered {} (+ {in_flight} in flight)",
        removed.len(),
        answered.len()
    );
    let n = removed.len() as i64;
    // A patient attributed to two providers is two entries; removing the patient ends both.
    let entries_removed = before["member"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| {
            m["entity"]["reference"]
                .as_str()
                .is_some_and(|p| removed.contains(&p.to_string()))
        })
        .count() as i64;
    assert_eq!(
        after["quantity"].as_i64(),
        Some(quantity_before - entries_removed)
    );
    assert_eq!(
        after["member"].as_array().map(Vec::len),
        Some((quantity_before - entries_removed) as usize)
    );
    assert_eq!(version_after, version_before + n, "one version per removal");
    eprintln!(
        "{} removals answered before the kill, the one in flight {}",
        answered.len(),
        if removed.len() > answered.len() {
            "applied"
        } else {
            "not applied"
        }
    );
}
