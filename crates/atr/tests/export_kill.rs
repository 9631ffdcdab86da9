//! A bulk export survives `kill -9` of the server that runs it: the job is a row with a lease, so
//! a restarted server on the same data directory takes it over once the lease runs out, runs it
//! again from the start, and the client polling the same job id gets a complete, duplicate-free
//! export with no files of the dead run left behind.
//!
//! Everything runs as a user would: `atr synth`, `atr load`, `atr keygen`, `atr clients add`,
//! `atr token` and `atr serve` as child processes, HTTP from here.

mod common;

use common::{ATR, Server};

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

/// No child command, server start or HTTP request of this test may take longer than this.
const TIMEOUT: Duration = Duration::from_secs(60);
/// How long the restarted server may take to finish the job it took over.
const TAKEOVER_TIMEOUT: Duration = Duration::from_secs(60);
/// The export lease: a dead server's job is taken over this long after its last renewal.
const LEASE_SECS: u64 = 2;
/// Members of the synthetic data set, nine in ten of them on list-1: big enough that the export
/// runs for a while in a debug build, small enough that `atr load` stays quick.
const MEMBERS: &str = "14000";
/// Export files are split at 1 MiB, so each type has several files and a dead run leaves many.
const FILE_MB: &str = "1";

/// An access token of the test's admin client (`atr token` with a credentials file for this
/// server's token URL).
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
    let creds = dir.join("credentials.json");
    let doc = serde_json::json!({
        "client_id": CLIENT_ID,
        "token_url": atr_server::token_url_for(&server.base),
        "fhir_base_url": server.base,
        "private_jwks": private_jwks,
    });
    std::fs::write(&creds, doc.to_string()).expect("write credentials");
    let out = common::run(
        TIMEOUT,
        Command::new(ATR)
            .arg("token")
            .arg("--credentials")
            .arg(&creds),
    );
    assert!(out.status.success(), "atr token: {}", out.stderr);
    out.stdout.trim().to_string()
}

const CLIENT_ID: &str = "export-kill-admin";

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(TIMEOUT)
        .build()
        .expect("http client")
}

async fn get_json(client: &reqwest::Client, url: &str, token: &str) -> Value {
    let resp = client
        .get(url)
        .bearer_auth(token)
        .header("Accept", "application/fhir+json")
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = resp.status();
    let text = resp.text().await.expect("body");
    assert_eq!(status, 200, "GET {url}: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("GET {url}: not JSON ({e})"))
}

/// Kicks off `$davinci-data-export` of a Group; the status URL.
async fn kick_off(client: &reqwest::Client, base: &str, group: &str, token: &str) -> String {
    let url = format!("{base}/Group/{group}/$davinci-data-export");
    let resp = client
        .get(&url)
        .bearer_auth(token)
        .header("Accept", "application/fhir+json")
        .header("Prefer", "respond-async")
        .send()
        .await
        .unwrap_or_else(|e| panic!("kick-off {url}: {e}"));
    let status = resp.status();
    let location = resp
        .headers()
        .get("content-location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = resp.text().await.unwrap_or_default();
    assert_eq!(status, 202, "kick-off: {body}");
    location.unwrap_or_else(|| panic!("kick-off without Content-Location: {body}"))
}

/// One status poll.
enum Poll {
    /// 202, with its `X-Progress` and `Retry-After`.
    Running {
        progress: String,
        retry_after: Option<u64>,
    },
    /// 200: the manifest.
    Done(Value),
}

async fn poll(client: &reqwest::Client, url: &str, token: &str) -> Poll {
    let resp = client
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .unwrap_or_else(|e| panic!("poll {url}: {e}"));
    let status = resp.status();
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let progress = header("x-progress");
    let retry_after = header("retry-after").and_then(|v| v.parse().ok());
    let text = resp.text().await.unwrap_or_default();
    match status.as_u16() {
        202 => Poll::Running {
            progress: progress.unwrap_or_else(|| panic!("202 without X-Progress: {text}")),
            retry_after,
        },
        200 => Poll::Done(
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("manifest not JSON ({e})")),
        ),
        other => panic!("status poll {url}: {other} {text}"),
    }
}

/// `X-Progress` of a job part way through: `N% (done of about planned resources)` with
/// `0 < done < planned`, or `N resources written` with `N > 0`. (A finished job younger than a
/// second also answers 202, with `done == planned`: that is not part way.)
fn is_running(progress: &str) -> bool {
    let numbers: Vec<u64> = progress
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect();
    if progress.contains('%') {
        matches!(numbers[..], [_, done, planned] if 0 < done && done < planned)
    } else {
        progress.ends_with("resources written") && numbers.first().is_some_and(|n| *n > 0)
    }
}

/// The export files in a job's directory: name and size.
fn files_on_disk(job_dir: &Path) -> BTreeMap<String, u64> {
    match std::fs::read_dir(job_dir) {
        Err(_) => BTreeMap::new(),
        Ok(entries) => entries
            .filter_map(Result::ok)
            .map(|e| {
                (
                    e.file_name().to_string_lossy().into_owned(),
                    e.metadata().map(|m| m.len()).unwrap_or(0),
                )
            })
            .collect(),
    }
}

/// Every file of a manifest downloaded: resources by type (each line parsed), and the lines of
/// each `output` entry checked against its `count`.
async fn download(
    client: &reqwest::Client,
    manifest: &Value,
    base: &str,
    job: &str,
    token: &str,
) -> BTreeMap<String, Vec<Value>> {
    let mut by_type: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    let output = manifest["output"].as_array().expect("manifest output");
    for item in output {
        let rtype = item["type"].as_str().expect("output type");
        let url = item["url"].as_str().expect("output url");
        let count = item["count"].as_u64().expect("output count");
        assert!(
            url.starts_with(&format!("{base}/bulkfiles/{job}/")),
            "file URL {url} is not on the restarted server {base}"
        );
        let resp = client
            .get(url)
            .bearer_auth(token)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        assert_eq!(resp.status(), 200, "GET {url}");
        let text = resp.text().await.expect("file body");
        assert!(text.ends_with('\n'), "{url} does not end with a newline");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len() as u64, count, "{url}: lines vs manifest count");
        let into = by_type.entry(rtype.to_string()).or_default();
        for (i, line) in lines.iter().enumerate() {
            let v: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{url} line {}: not JSON ({e})", i + 1));
            assert_eq!(v["resourceType"], rtype, "{url} line {}", i + 1);
            assert!(v["id"].is_string(), "{url} line {}: no id", i + 1);
            into.push(v);
        }
    }
    by_type
}

/// Ids per type, asserting that no type has a resource twice.
fn ids_by_type(by_type: &BTreeMap<String, Vec<Value>>) -> BTreeMap<String, BTreeSet<String>> {
    by_type
        .iter()
        .map(|(rtype, resources)| {
            let mut ids = BTreeSet::new();
            for r in resources {
                let id = r["id"].as_str().expect("id").to_string();
                assert!(ids.insert(id.clone()), "{rtype}/{id} is exported twice");
            }
            (rtype.clone(), ids)
        })
        .collect()
}

/// The ids of the member references of a Group: `entity` (Patients) and the coverage extension.
fn member_ids(group: &Value) -> (BTreeSet<String>, BTreeSet<String>) {
    let members = group["member"].as_array().expect("Group.member");
    let patients = members
        .iter()
        .filter_map(|m| m["entity"]["reference"].as_str()?.strip_prefix("Patient/"))
        .map(str::to_string)
        .collect();
    let coverages = members
        .iter()
        .flat_map(|m| m["extension"].as_array().into_iter().flatten())
        .filter(|x| {
            x["url"]
                == "http://hl7.org/fhir/us/davinci-atr/StructureDefinition/ext-coverageReference"
        })
        .filter_map(|x| {
            x["valueReference"]["reference"]
                .as_str()?
                .strip_prefix("Coverage/")
        })
        .map(str::to_string)
        .collect();
    (patients, coverages)
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
    let t = Instant::now();
    let fresh = loop {
        assert!(
            t.elapsed() < TIMEOUT,
            "the uninterrupted export did not finish\n{}",
            second.log()
        );
        if let Poll::Done(m) = poll(&client, &fresh_url, &token).await {
            break m;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
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
