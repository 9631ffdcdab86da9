//! Several `atr serve` instances on one PostgreSQL database, as a payer runs them behind a load
//! balancer: any instance answers for any job, because jobs, leases, progress and signing keys
//! live in the database and export files in a directory all instances share (a shared volume
//! here; object storage in production).
//!
//! An export is kicked off through an instance that runs no export jobs, polled through a second,
//! and the instance that claimed it is killed with `kill -9` part way: the remaining one takes the
//! job over when its lease runs out, and the client, polling and downloading through it, gets the
//! complete export. Changes made through two instances reach a Subscription's endpoint once
//! each, in order.

mod common;
#[path = "../../atr-server/tests/common/receiver.rs"]
mod receiver;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use common::bulk::{
    Poll, download, get_json, http, ids_by_type, kick_off, manifest_of, member_ids, poll,
};
use common::{PG_URL, Server, TIMEOUT};
use receiver::{Receiver, accepted_events};
use serde_json::json;

/// The export lease: a dead instance's job is taken over this long after its last renewal.
const LEASE_SECS: &str = "2";
const CLIENT_ID: &str = "instances-admin";

fn start_instance(store: &[&str], data_dir: &std::path::Path, workers: &str) -> Server {
    let mut args: Vec<&std::ffi::OsStr> = store.iter().map(|a| a.as_ref()).collect();
    args.extend([
        "--data-dir".as_ref(),
        data_dir.as_os_str(),
        "--export-lease-secs".as_ref(),
        LEASE_SECS.as_ref(),
        "--export-file-mb".as_ref(),
        "1".as_ref(),
        "--export-workers".as_ref(),
        workers.as_ref(),
    ]);
    Server::start(&args, TIMEOUT)
}

/// The job's status and the pid in its lease owner (`atr-<pid>-<uuid>`), read with `psql`.
fn job_row(schema: &str, job: &str) -> (String, Option<u32>) {
    let out = common::run(
        TIMEOUT,
        Command::new("psql").args([
            PG_URL,
            "-At",
            "-c",
            &format!("SELECT status, coalesce(lease_owner, '') FROM {schema}.export_job WHERE id = '{job}'"),
        ]),
    );
    assert!(out.status.success(), "psql: {}", out.stderr);
    let (status, owner) = out.stdout.trim().split_once('|').unwrap_or(("", ""));
    let pid = owner.split('-').nth(1).and_then(|p| p.parse().ok());
    (status.to_string(), pid)
}

/// A synthetic set loaded into a schema of its own on the test PostgreSQL, with the admin client;
/// the schema's name goes with it, to be dropped at the end.
fn pg_dataset(
    dir: &std::path::Path,
    synth: &[&str],
    scope: Option<&str>,
) -> (String, common::Dataset) {
    let schema = format!("t_{}", uuid::Uuid::now_v7().simple());
    let store = ["--database", PG_URL, "--schema", schema.as_str()];
    let dataset = common::admin_dataset_on(dir, &store, synth, CLIENT_ID, scope, TIMEOUT);
    (schema, dataset)
}

#[tokio::test]
async fn an_export_outlives_kill_9_of_its_instance_and_finishes_on_another() {
    if !common::postgres_available() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path();
    let (schema, dataset) = pg_dataset(
        dir,
        &[
            "--members",
            "14000",
            "--lists",
            "2",
            "--largest-list-share",
            "0.9",
        ],
        None,
    );
    let store = ["--database", PG_URL, "--schema", schema.as_str()];
    let common::Dataset {
        data_dir: shared,
        private_jwks,
        ..
    } = dataset;

    // A takes requests only; B and C run export jobs.
    let front = start_instance(&store, &shared, "0");
    let mut workers = [
        Some(start_instance(&store, &shared, "1")),
        Some(start_instance(&store, &shared, "1")),
    ];
    let client = http();
    let token = common::access_token(&front, dir, CLIENT_ID, &private_jwks, None);
    let status_on_front = kick_off(&client, &front.base, "list-1", &token).await;
    let job = status_on_front
        .rsplit_once("/bulkstatus/")
        .map(|(_, j)| j.to_string())
        .expect("…/bulkstatus/<job>");

    // Kill whichever worker claimed the job, as soon as it has.
    let started = Instant::now();
    let runner = loop {
        assert!(started.elapsed() < TIMEOUT, "no instance claimed the job");
        let (status, pid) = job_row(&schema, &job);
        assert_ne!(
            status, "completed",
            "the job finished before it could be killed: make the list bigger"
        );
        if let Some(pid) = pid {
            break workers
                .iter()
                .position(|w| w.as_ref().is_some_and(|w| w.pid() == pid))
                .unwrap_or_else(|| panic!("the lease owner {pid} is none of the workers"));
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let mut dead = workers[runner].take().expect("the runner");
    dead.kill_9();
    let killed = Instant::now();
    let (status, _) = job_row(&schema, &job);
    assert_eq!(
        status, "running",
        "the job was not part way when its instance died"
    );
    let survivor = workers[1 - runner].take().expect("the other worker");

    // Polled through the survivor (the job was kicked off elsewhere), finished by it.
    let status_on_survivor = format!("{}/bulkstatus/{job}", survivor.base);
    let manifest = manifest_of(&client, &status_on_survivor, &token, &survivor).await;
    eprintln!(
        "the surviving instance finished the job {:?} after the kill",
        killed.elapsed()
    );
    assert_eq!(manifest["error"], serde_json::json!([]), "{manifest}");

    // Downloaded through the survivor: exactly the list's members, nothing twice.
    let by_type = download(&client, &manifest, &survivor.base, &job, &token).await;
    let ids = ids_by_type(&by_type);
    let group = get_json(&client, &format!("{}/Group/list-1", survivor.base), &token).await;
    let (patients, coverages) = member_ids(&group);
    assert_eq!(
        ids["Patient"], patients,
        "the Patients are the list's members"
    );
    assert_eq!(
        ids["Coverage"], coverages,
        "the Coverages are the list's coverages"
    );
    assert_eq!(by_type["Group"].len(), 1);
    // The front instance, which ran nothing, answers for the job too.
    assert!(matches!(
        poll(&client, &status_on_front, &token).await,
        Poll::Done(_)
    ));
    let counts: BTreeMap<&String, usize> = ids.iter().map(|(t, s)| (t, s.len())).collect();
    eprintln!("exported across instances: {counts:?}");
    drop((front, survivor));
    let _ = atr_store::SqlStore::drop_postgres_schema(PG_URL, &schema).await;
}

const BACKPORT: &str = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/";

#[tokio::test]
async fn changes_through_two_instances_are_each_notified_once_in_order() {
    if !common::postgres_available() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path();
    let (schema, dataset) = pg_dataset(
        dir,
        &["--members", "200", "--lists", "2"],
        Some("system/*.cruds"),
    );
    let store = ["--database", PG_URL, "--schema", schema.as_str()];
    let common::Dataset {
        data_dir: shared,
        private_jwks,
        ..
    } = dataset;
    let data = shared.to_str().expect("utf-8 path");
    let mut status_open = vec!["roster"];
    status_open.extend_from_slice(&store);
    status_open.extend_from_slice(&["--data-dir", data, "status", "list-2", "open"]);
    common::atr_ok(TIMEOUT, &status_open);
    let instances = [
        start_instance(&store, &shared, "1"),
        start_instance(&store, &shared, "1"),
    ];
    let client = http();
    let token = common::access_token(
        &instances[0],
        dir,
        CLIENT_ID,
        &private_jwks,
        Some("system/*.cruds"),
    );

    let receiver = Receiver::start().await;
    let hook = receiver.endpoint("two");
    let subscription = json!({
        "resourceType": "Subscription",
        "status": "active",
        "reason": "two instances",
        "criteria": "http://hl7.org/fhir/us/davinci-atr/SubscriptionTopic/atr-list-change",
        "_criteria": {"extension": [{"url": format!("{BACKPORT}backport-filter-criteria"),
                                      "valueString": "Group?_id=list-2"}]},
        "channel": {
            "type": "rest-hook",
            "endpoint": hook,
            "payload": "application/fhir+json",
            "_payload": {"extension": [{"url": format!("{BACKPORT}backport-payload-content"),
                                         "valueCode": "id-only"}]},
        },
    });
    let (status, made) = common::call(
        &client,
        reqwest::Method::POST,
        &format!("{}/Subscription", instances[0].base),
        &token,
        Some(subscription),
    )
    .await;
    assert_eq!(status, 201, "{made}");
    receiver
        .wait_for("the handshake", TIMEOUT, |s| s.iter().any(|r| r.accepted()))
        .await;

    // Six removals, alternating between the instances.
    let group = get_json(
        &client,
        &format!("{}/Group/list-2", instances[1].base),
        &token,
    )
    .await;
    let patients: Vec<String> = group["member"]
        .as_array()
        .expect("members")
        .iter()
        .filter_map(|m| Some(m["entity"]["reference"].as_str()?.to_string()))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .take(6)
        .collect();
    assert_eq!(patients.len(), 6, "list-2 has six patients to remove");
    for (i, patient) in patients.iter().enumerate() {
        let base = &instances[i % 2].base;
        let body = json!({"resourceType": "Parameters", "parameter": [
            {"name": "patientReference", "valueReference": {"reference": patient}}]});
        let (status, out) = common::call(
            &client,
            reqwest::Method::POST,
            &format!("{base}/Group/list-2/$member-remove"),
            &token,
            Some(body),
        )
        .await;
        assert!((200..300).contains(&status), "{patient}: {out}");
    }
    let seen = receiver
        .wait_for("events 1 to 6", TIMEOUT, |s| {
            accepted_events(s, "/hook/two").last() == Some(&6)
        })
        .await;
    // A moment for a duplicate, were one coming.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let numbers = accepted_events(&receiver.received(), "/hook/two");
    assert_eq!(
        numbers,
        (1..=6).collect::<Vec<u64>>(),
        "each event once, in order (first seen: {:?})",
        accepted_events(&seen, "/hook/two")
    );
    drop(instances);
    let _ = atr_store::SqlStore::drop_postgres_schema(PG_URL, &schema).await;
}
