//! `atr lists pull` survives `kill -9` mid-download: run again, it resumes the same export job,
//! keeps the files it finished, continues the partial one with `Range`, and ends with every
//! resource of the manifest exactly once.
//!
//! Everything runs as a user would: `atr synth`, `atr load`, `atr keygen`, `atr clients add` and
//! `atr serve` and `atr lists pull` as child processes.

mod common;

use common::{ATR, Server};

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const TIMEOUT: Duration = Duration::from_secs(60);
const CLIENT_ID: &str = "consumer-kill";
/// Enough members that the list's files take a while to download one at a time.
const MEMBERS: &str = "12000";

fn lines_by_type(dir: &Path) -> BTreeMap<String, Vec<Value>> {
    let mut out: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for entry in std::fs::read_dir(dir).expect("pull dir") {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("read");
        for line in text.lines() {
            let v: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{}: a line that is not JSON ({e})", path.display()));
            let t = v["resourceType"]
                .as_str()
                .expect("resourceType")
                .to_string();
            out.entry(t).or_default().push(v);
        }
    }
    out
}

/// A Producer serving a large list, credentials for it, and a consumer store to pull into.
struct Setup {
    _tmp: tempfile::TempDir,
    _server: Server,
    creds: std::path::PathBuf,
    consumer: std::path::PathBuf,
}

impl Setup {
    fn new() -> Setup {
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
        let server = Server::start(
            &[
                "--data-dir".as_ref(),
                data.as_os_str(),
                // Many small files: a kill lands between and inside them.
                "--export-file-mb".as_ref(),
                "1".as_ref(),
            ],
            TIMEOUT,
        );
        let creds = dir.join("credentials.json");
        std::fs::write(
            &creds,
            json!({"client_id": CLIENT_ID, "fhir_base_url": server.base, "private_jwks": private_jwks})
                .to_string(),
        )
        .expect("write credentials");
        let consumer = dir.join("consumer");
        Setup {
            _tmp: tmp,
            _server: server,
            creds,
            consumer,
        }
    }

    /// `atr lists pull list-1`, one file at a time, printing its report as JSON.
    fn pull(&self) -> Command {
        let mut cmd = Command::new(ATR);
        cmd.args([
            "lists",
            "pull",
            "list-1",
            "--parallel",
            "1",
            "--quiet",
            "--json",
        ])
        .arg("--credentials")
        .arg(&self.creds)
        .arg("--store")
        .arg(&self.consumer)
        .arg("--scopes")
        .arg("system/*.read");
        cmd
    }

    /// Starts a pull and returns once one of its files is complete and the next is under way.
    fn pull_part_way(&self) -> std::process::Child {
        let mut child = self
            .pull()
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn pull");
        let started = Instant::now();
        loop {
            let one_done = self.consumer.join("consumer.db").exists()
                && atr_client::ConsumerStore::open(&self.consumer)
                    .and_then(|s| s.files(1))
                    .is_ok_and(|f| f.iter().any(|f| f.complete));
            if one_done {
                return child;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("the pull ended ({status}) before it could be stopped: make MEMBERS bigger");
            }
            assert!(started.elapsed() < TIMEOUT, "no file was finished");
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

#[tokio::test]
async fn a_pull_killed_mid_download_resumes_with_every_resource_once() {
    let setup = Setup::new();
    let consumer = &setup.consumer;
    let creds = &setup.creds;
    let files = consumer.join("pulls").join("1");

    // First run: killed once a file is done and the next is part way (files are split at 1 MiB).
    let mut child = setup.pull_part_way();
    child.kill().expect("kill -9");
    let _ = child.wait();
    let store_after_kill = atr_client::ConsumerStore::open(consumer).expect("store");
    let killed = store_after_kill.pull(1).expect("read").expect("pull 1");
    assert_eq!(
        killed.state, "started",
        "the kill came before the pull finished"
    );
    let done_before: usize = store_after_kill
        .files(1)
        .expect("files")
        .iter()
        .filter(|f| f.complete)
        .count();
    let total_files = store_after_kill.files(1).expect("files").len();
    assert!(
        done_before >= 1 && done_before < total_files,
        "killed with {done_before} of {total_files} files done"
    );
    drop(store_after_kill);

    // Second run: the same pull, resumed.
    let out = common::run(TIMEOUT, &mut setup.pull());
    assert!(out.status.success(), "resumed pull: {}", out.stderr);
    let report: Value = serde_json::from_str(&out.stdout).expect("report JSON");
    assert_eq!(report["pull_id"], 1);
    assert_eq!(report["resumed"], true);

    // Every resource of the manifest exactly once; every member's Patient there.
    let store = atr_client::ConsumerStore::open(consumer).expect("store");
    let p = store.pull(1).expect("read").expect("pull 1");
    assert_eq!(p.state, "complete");
    let manifest: Value =
        serde_json::from_str(p.manifest.as_deref().expect("manifest")).expect("json");
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    for o in manifest["output"].as_array().expect("output") {
        *expected
            .entry(o["type"].as_str().expect("type").to_string())
            .or_default() += o["count"].as_u64().expect("count");
    }
    let got = lines_by_type(&files);
    for (rtype, lines) in &got {
        let ids: BTreeSet<&str> = lines.iter().filter_map(|v| v["id"].as_str()).collect();
        assert_eq!(ids.len(), lines.len(), "{rtype}: a resource twice");
        assert_eq!(
            Some(&(lines.len() as u64)),
            expected.get(rtype),
            "{rtype}: count"
        );
    }
    assert_eq!(got.len(), expected.len());
    let patients: BTreeSet<String> = got["Patient"]
        .iter()
        .map(|v| format!("Patient/{}", v["id"].as_str().expect("id")))
        .collect();
    let members = store.members(1).expect("members");
    assert_eq!(
        members.len() as u64,
        report["members"].as_u64().expect("members")
    );
    assert!(members.iter().all(|m| patients.contains(&m.patient)));
    // The store as the other commands show it.
    let cli = |args: &[&str]| {
        let mut cmd = Command::new(ATR);
        cmd.args(args)
            .arg("--credentials")
            .arg(creds)
            .arg("--store")
            .arg(consumer)
            .arg("--scopes")
            .arg("system/*.read");
        common::run(TIMEOUT, &mut cmd)
    };
    let shown = cli(&["lists", "show", "list-1", "--csv"]);
    assert!(shown.status.success(), "{}", shown.stderr);
    assert_eq!(
        shown.stdout.lines().count(),
        members.len() + 1,
        "a header and a row per entry"
    );
    assert!(
        shown.stdout.starts_with("NAME,MEMBER ID,PATIENT,"),
        "{}",
        &shown.stdout[..80]
    );
    let none = cli(&["lists", "show", "list-9"]);
    assert_eq!(none.status.code(), Some(7), "not found: {}", none.stderr);
    assert_eq!(
        none.stderr.trim().lines().count(),
        1,
        "one line: {}",
        none.stderr
    );
    let diff = cli(&["lists", "diff", "list-1"]);
    assert_eq!(
        diff.status.code(),
        Some(7),
        "one pull has nothing to compare: {}",
        diff.stderr
    );
    // A read-only token may not change the list: refused as an authorization failure.
    let write = cli(&[
        "member",
        "remove",
        "list-1",
        "--patient",
        &members[0].patient,
    ]);
    assert_eq!(write.status.code(), Some(3), "{}", write.stderr);
    assert!(write.stderr.contains("403"), "{}", write.stderr);
    eprintln!(
        "killed with {done_before}/{total_files} files done; resumed to {} members",
        members.len()
    );
}

/// Ctrl-C during a pull ends it with one line saying how to resume, exit code 130, and the same
/// command then resumes the same pull.
#[tokio::test]
async fn a_pull_interrupted_with_ctrl_c_says_how_to_resume_it() {
    let setup = Setup::new();
    let child = setup.pull_part_way();
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill -INT");
    assert!(sent.success());
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert_eq!(
        stderr.trim(),
        "atr: pull of Group/list-1 interrupted; run the same command again to resume it"
    );

    let out = common::run(TIMEOUT, &mut setup.pull());
    assert!(out.status.success(), "resumed pull: {}", out.stderr);
    let report: Value = serde_json::from_str(&out.stdout).expect("report JSON");
    assert_eq!(
        (&report["pull_id"], &report["resumed"]),
        (&json!(1), &json!(true))
    );
}
