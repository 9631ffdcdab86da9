//! A bulk export survives `kill -9` of the server that runs it: the job is a row with a lease, so
//! a restarted server on the same data directory takes it over once the lease runs out, runs it
//! again from the start, and the client polling the same job id gets a complete, duplicate-free
//! export with no files of the dead run left behind.
//!
//! Everything runs as a user would: `atr synth`, `atr load`, `atr keygen`, `atr clients add`,
//! `atr token` and `atr serve` as child processes, HTTP from here.

mod common;

use common::Server;
use common::bulk::{
    Poll, download, files_on_disk, get_json, http, ids_by_type, is_running, kick_off, manifest_of,
    member_ids, poll,
};

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use common::TIMEOUT;

/// How long the restarted server may take to finish the job it took over.
const TAKEOVER_TIMEOUT: Duration = Duration::from_secs(60);
/// The export lease: a dead server's job is taken over this long after its last renewal.
const LEASE_SECS: u64 = 2;
/// Members of the synthetic data set, nine in ten of them on list-1: big enough that the export
/// runs for a while in a debug build, small enough that `atr load` stays quick.
const MEMBERS: &str = "14000";
/// Export files are split at 1 MiB, so each type has several files and a dead run leaves many.
const FILE_MB: &str = "1";

const CLIENT_ID: &str = "export-kill-admin";

/// `atr serve` on `data_dir` with a short export lease and small export files.
fn start_server(data_dir: &Path) -> Server {
    let lease = LEASE_SECS.to_string();
    Server::start(
        &[
            "--data-dir".as_ref(),
            data_dir.as_os_str(),
            "--export-lease-secs".as_ref(),
            lease.as_ref(),
            "--export-file-mb".as_ref(),
            FILE_MB.as_ref(),
        ],
        TIMEOUT,
    )
}

fn admin_token(server: &Server, dir: &Path, private_jwks: &Value) -> String {
    common::access_token(server, dir, CLIENT_ID, private_jwks, None)
}

#[tokio::test]
async fn export_survives_kill_9_of_the_server_mid_export() {
    let started = Instant::now();
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path();
    // A data set with one big list, loaded; an admin client that sees every Group.
    let common::Dataset {
        data_dir: data,
        loaded,
        private_jwks,
    } = common::admin_dataset(
        dir,
        &[
            "--members",
            MEMBERS,
            "--lists",
            "2",
            "--largest-list-share",
            "0.9",
        ],
        CLIENT_ID,
        None,
        TIMEOUT,
    );
    let prepared = started.elapsed();

    // The first server; the largest list.
    let mut first = start_server(&data);
    let client = http();
    let token = admin_token(&first, dir, &private_jwks);
    let groups = get_json(
        &client,
        &format!("{}/Group?_summary=true", first.base),
        &token,
    )
    .await;
    let (largest, quantity) = groups["entry"]
        .as_array()
        .expect("Group search entries")
        .iter()
        .filter_map(|e| {
            Some((
                e["resource"]["id"].as_str()?.to_string(),
                e["resource"]["quantity"].as_u64()?,
            ))
        })
        .max_by_key(|(_, q)| *q)
        .expect("a Group");
    assert_eq!(largest, "list-1", "synth's first list is its largest");
    let group = get_json(&client, &format!("{}/Group/list-1", first.base), &token).await;
    let (member_patients, member_coverages) = member_ids(&group);
    assert_eq!(
        group["member"].as_array().map(Vec::len),
        Some(quantity as usize)
    );

    // Kick off, then kill -9 as soon as the job is part way: a status poll shows progress short of
    // the end, or a type has filled its first file (1 MiB) and started a second.
    let status_url = kick_off(&client, &first.base, "list-1", &token).await;
    let job = status_url
        .rsplit_once("/bulkstatus/")
        .map(|(_, j)| j.to_string())
        .unwrap_or_else(|| panic!("status URL {status_url} is not …/bulkstatus/<job>"));
    let job_dir: PathBuf = data.join("exports").join(&job);
    let kicked_off = Instant::now();
    let mut seen = Vec::new();
    let trigger = loop {
        assert!(
            kicked_off.elapsed() < TIMEOUT,
            "the export did not start writing in {TIMEOUT:?}; progress seen: {seen:?}\n{}",
            first.log()
        );
        match poll(&client, &status_url, &token).await {
            Poll::Done(_) => panic!(
                "the export finished before it could be killed (progress seen: {seen:?}): make MEMBERS bigger"
            ),
            Poll::Running { progress, .. } => {
                let running = is_running(&progress);
                if seen.last() != Some(&progress) {
                    seen.push(progress.clone());
                }
                if running {
                    break format!("status poll: X-Progress {progress:?}");
                }
            }
        }
        let on_disk = files_on_disk(&job_dir);
        if let Some(name) = on_disk.keys().find(|n| n.ends_with("-2.ndjson")) {
            break format!("{name} appeared in the job directory");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    first.kill_9();
    let killed = Instant::now();
    let dead_run = files_on_disk(&job_dir);
    eprintln!(
        "killed the server {:?} after kick-off ({trigger}); progress seen: {seen:?}; files of the dead run: {dead_run:?}",
        kicked_off.elapsed()
    );
    assert!(
        dead_run.len() >= 2,
        "the dead run left its partial files: {dead_run:?}"
    );
    assert!(
        first.log().lines().all(|l| !l.contains("panicked")),
        "{}",
        first.log()
    );

    // A new server on the same data takes the job over when the lease has run out.
    let second = start_server(&data);
    let token = admin_token(&second, dir, &private_jwks);
    let status_url = format!("{}/bulkstatus/{job}", second.base);
    let mut after = Vec::new();
    let manifest = loop {
        assert!(
            killed.elapsed() < TAKEOVER_TIMEOUT,
            "the restarted server did not finish the job in {TAKEOVER_TIMEOUT:?}; progress: {after:?}\n{}",
            second.log()
        );
        match poll(&client, &status_url, &token).await {
            Poll::Done(manifest) => break manifest,
            Poll::Running {
                progress,
                retry_after,
            } => {
                assert!(
                    retry_after.is_some_and(|s| s >= 1),
                    "202 without integer Retry-After"
                );
                if after.last() != Some(&progress) {
                    after.push(progress);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let recovered_in = killed.elapsed();
    // The first poll of the new server answered 202: the job was not complete when the first
    // server died, so the kill really was mid-run.
    assert!(
        !after.is_empty(),
        "the job was already complete when the server was killed ({trigger}); dead run's files {dead_run:?}: make MEMBERS bigger"
    );
    eprintln!(
        "the restarted server finished the job {recovered_in:?} after the kill; progress seen: {after:?}"
    );

    // The manifest.
    assert_eq!(manifest["requiresAccessToken"], true, "{manifest}");
    assert!(manifest["transactionTime"].is_string(), "{manifest}");
    assert!(
        manifest["request"]
            .as_str()
            .is_some_and(|r| r.ends_with("/Group/list-1/$davinci-data-export")),
        "{manifest}"
    );
    assert_eq!(manifest["error"], serde_json::json!([]), "{manifest}");
    // The job's directory holds exactly the manifest's files: nothing of the dead run is left.
    let named: BTreeSet<String> = ["output", "error", "deleted"]
        .iter()
        .flat_map(|k| manifest[*k].as_array().into_iter().flatten())
        .filter_map(|f| f["url"].as_str()?.rsplit('/').next().map(str::to_string))
        .collect();
    let on_disk: BTreeSet<String> = files_on_disk(&job_dir).into_keys().collect();
    assert_eq!(on_disk, named, "files in {} vs manifest", job_dir.display());

    // The files: every line a resource of its type, counts as in the manifest, no duplicates.
    let by_type = download(&client, &manifest, &second.base, &job, &token).await;
    let ids = ids_by_type(&by_type);
    let groups = &by_type["Group"];
    assert_eq!(groups.len(), 1, "the Group file has exactly one line");
    assert_eq!(groups[0]["id"], "list-1");
    assert_eq!(
        groups[0]["member"].as_array().map(Vec::len),
        Some(quantity as usize),
        "the exported Group has all its members"
    );
    assert_eq!(
        ids["Patient"], member_patients,
        "the Patients are exactly the list's members"
    );
    assert_eq!(
        ids["Coverage"], member_coverages,
        "the Coverages are exactly the list's coverages"
    );
    for rtype in ["Organization", "Practitioner", "PractitionerRole"] {
        assert!(ids.contains_key(rtype), "no {rtype} exported: {manifest}");
    }

    // The same export, uninterrupted, on the restarted server: the same resources.
    let fresh_url = kick_off(&client, &second.base, "list-1", &token).await;
    let fresh_job = fresh_url
        .rsplit_once("/bulkstatus/")
        .map(|(_, j)| j.to_string())
        .expect("job id");
    let fresh = manifest_of(&client, &fresh_url, &token, &second).await;
    let fresh_ids = ids_by_type(&download(&client, &fresh, &second.base, &fresh_job, &token).await);
    assert_eq!(
        ids, fresh_ids,
        "the recovered export differs from an uninterrupted one"
    );
    let log = second.log();
    assert!(
        log.lines()
            .all(|l| !l.contains("export failed") && !l.contains("panicked")),
        "{log}"
    );
    let counts: BTreeMap<&String, usize> = ids.iter().map(|(t, s)| (t, s.len())).collect();
    eprintln!(
        "{}; prepared in {prepared:?}; exported {counts:?}; test took {:?}",
        loaded.trim(),
        started.elapsed()
    );
}
