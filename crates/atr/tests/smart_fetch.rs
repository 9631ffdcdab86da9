//! A real Bulk Data client against `atr serve --demo`: `smart-fetch bulk` (PyPI `smart-fetch`) runs a
//! Group-level `$export` of list-1, and a system-level `$export` (kick-off, polling, downloads), and
//! must bring back exactly the Patients that are members of the list, or of every list the demo
//! Consumer may see.
//!
//! `smart-fetch` must be on `PATH` (`.ci/run` installs it). Without it the tests print why they skip;
//! with `CI` set they fail instead.

mod common;

use common::{ATR, Server};

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

const SMART_FETCH: &str = "smart-fetch";
/// No child process of these tests may run longer than this.
const TIMEOUT: Duration = Duration::from_secs(120);

/// `atr serve --demo` on a free port (killed on drop), with its data directory.
struct DemoServer {
    server: Server,
    data_dir: PathBuf,
}

impl DemoServer {
    fn start(data_dir: &Path) -> DemoServer {
        DemoServer {
            server: Server::start(
                &[
                    "--demo".as_ref(),
                    "--data-dir".as_ref(),
                    data_dir.as_os_str(),
                ],
                TIMEOUT,
            ),
            data_dir: data_dir.to_path_buf(),
        }
    }

    fn credentials(&self) -> PathBuf {
        self.data_dir.join("demo-client.json")
    }

    /// An access token for the demo Consumer (`atr token`, scope `system/*.read`).
    fn token(&self) -> String {
        let out = common::run(
            TIMEOUT,
            Command::new(ATR)
                .arg("token")
                .arg("--credentials")
                .arg(self.credentials()),
        );
        assert!(out.status.success(), "atr token: {}", out.stderr);
        out.stdout.trim().to_string()
    }
}

/// Whether `smart-fetch` can run here. Missing: a printed skip, or a failure when `CI` is set.
fn smart_fetch_available() -> bool {
    match Command::new(SMART_FETCH)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(status) if status.success() => true,
        found => {
            let why = match found {
                Ok(status) => format!("`{SMART_FETCH} --version` failed ({status})"),
                Err(e) => format!("`{SMART_FETCH}` is not on PATH ({e})"),
            };
            atr_testkit::skip::unavailable("smart-fetch (pip install smart-fetch)", &why);
            false
        }
    }
}

/// The ids of the Patients that are members of `Group/{id}`, read from the server.
async fn group_patient_ids(server: &DemoServer, token: &str, id: &str) -> BTreeSet<String> {
    let group: serde_json::Value = reqwest::Client::new()
        .get(format!("{}/Group/{id}", server.server.base))
        .bearer_auth(token)
        .header("Accept", "application/fhir+json")
        .timeout(TIMEOUT)
        .send()
        .await
        .expect("GET Group")
        .error_for_status()
        .expect("GET Group status")
        .json()
        .await
        .expect("Group JSON");
    let ids: BTreeSet<String> = group["member"]
        .as_array()
        .expect("Group.member")
        .iter()
        .filter_map(|m| m["entity"]["reference"].as_str())
        .filter_map(|r| r.strip_prefix("Patient/"))
        .map(str::to_string)
        .collect();
    assert!(!ids.is_empty(), "Group/{id} has no Patient members");
    ids
}

/// The ids of every Group the token's client finds by search (its lists).
async fn visible_group_ids(server: &DemoServer, token: &str) -> Vec<String> {
    let bundle: serde_json::Value = reqwest::Client::new()
        .get(format!("{}/Group?_summary=true", server.server.base))
        .bearer_auth(token)
        .header("Accept", "application/fhir+json")
        .timeout(TIMEOUT)
        .send()
        .await
        .expect("Group search")
        .error_for_status()
        .expect("Group search status")
        .json()
        .await
        .expect("Bundle JSON");
    bundle["entry"]
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|e| e["resource"]["id"].as_str().map(str::to_string))
        .collect()
}

/// Every resource in the `*.ndjson` files smart-fetch wrote: (file name, resource).
fn ndjson_resources(dir: &Path) -> Vec<(String, serde_json::Value)> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read output dir")
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|n| n.ends_with(".ndjson") && n != "log.ndjson")
        .collect();
    names.sort();
    let mut resources = Vec::new();
    for name in names {
        let text = std::fs::read_to_string(dir.join(&name)).expect("read ndjson");
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{name}:{}: not JSON ({e}): {line}", i + 1));
            resources.push((name.clone(), value));
        }
    }
    resources
}

enum Auth {
    /// `--bearer-token FILE`, a token from `atr token`.
    Bearer,
    /// `--smart-client-id` / `--smart-key *.jwks` / `--token-url`: smart-fetch's own SMART
    /// Backend Services flow with the demo Consumer's ES384 key.
    Smart,
}

/// Runs `smart-fetch bulk [--group GROUP] --type Patient` and checks that it brings back exactly
/// the Patient members of the Group, or without one (a system-level `$export`) of every list the
/// demo Consumer may see.
async fn export_patients_with_smart_fetch(auth: Auth, group: Option<&str>) {
    if !smart_fetch_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let server = DemoServer::start(&dir.path().join("data"));
    let doc: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(server.credentials()).expect("demo-client.json"),
    )
    .expect("demo-client.json is JSON");
    let out_dir = dir.path().join("export");

    let mut cmd = Command::new(SMART_FETCH);
    cmd.arg("bulk")
        .args(["--fhir-url", &server.server.base])
        .args(group.map(|g| ["--group", g]).into_iter().flatten())
        .args(["--type", "Patient"])
        .arg("--no-default-filters")
        .arg("--no-compression");
    match auth {
        Auth::Bearer => {
            let token_file = dir.path().join("token.txt");
            std::fs::write(&token_file, server.token()).expect("write token");
            cmd.arg("--bearer-token").arg(&token_file);
        }
        Auth::Smart => {
            // smart-fetch wants a `.jwks` (or `.pem`) file; a private JWK needs kid, alg and
            // key_ops ["sign"], which the demo credentials file carries.
            let key = &doc["private_jwks"]["keys"][0];
            assert!(
                key["kid"].is_string()
                    && key["alg"].is_string()
                    && key["key_ops"]
                        .as_array()
                        .is_some_and(|ops| ops.iter().any(|o| o == "sign")),
                "demo key lacks kid/alg/key_ops: {key}"
            );
            let key_file = dir.path().join("demo-client.jwks");
            std::fs::write(&key_file, doc["private_jwks"].to_string()).expect("write jwks");
            cmd.args([
                "--smart-client-id",
                doc["client_id"].as_str().expect("client_id"),
            ])
            .arg("--smart-key")
            .arg(&key_file)
            .args(["--token-url", doc["token_url"].as_str().expect("token_url")]);
        }
    }
    cmd.arg(&out_dir);
    let out = common::run(TIMEOUT, &mut cmd);
    let log = std::fs::read_to_string(out_dir.join("log.ndjson")).unwrap_or_default();
    assert!(
        out.status.success(),
        "{cmd:?} failed ({})\nstdout:\n{}\nstderr:\n{}\nlog.ndjson:\n{log}",
        out.status,
        out.stdout,
        out.stderr
    );

    let resources = ndjson_resources(&out_dir);
    assert!(
        !resources.is_empty(),
        "no NDJSON resources in {}\nstdout:\n{}\nlog.ndjson:\n{log}",
        out_dir.display(),
        out.stdout
    );
    let mut exported = BTreeSet::new();
    for (file, resource) in &resources {
        assert_eq!(
            resource["resourceType"], "Patient",
            "{file}: not a Patient: {resource}"
        );
        let id = resource["id"].as_str().expect("Patient.id").to_string();
        assert!(exported.insert(id.clone()), "{file}: Patient/{id} twice");
    }
    let token = server.token();
    let lists = match group {
        Some(g) => vec![g.to_string()],
        None => visible_group_ids(&server, &token).await,
    };
    assert!(
        lists.len() >= (if group.is_some() { 1 } else { 2 }),
        "{lists:?}"
    );
    let mut members = BTreeSet::new();
    for list in &lists {
        members.extend(group_patient_ids(&server, &token, list).await);
    }
    assert_eq!(
        exported, members,
        "exported Patients differ from the Patient members of {lists:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn smart_fetch_bulk_exports_the_patient_members_of_a_group() {
    export_patients_with_smart_fetch(Auth::Bearer, Some("list-1")).await;
}

/// A system-level `$export` (smart-fetch without `--group`) by a Consumer: the members of its
/// lists, nobody else.
#[tokio::test(flavor = "multi_thread")]
async fn smart_fetch_bulk_system_export_holds_the_members_of_the_consumers_lists() {
    export_patients_with_smart_fetch(Auth::Bearer, None).await;
}

/// smart-fetch's own SMART Backend Services flow. It asks for a fixed set of resource-type scopes
/// (`system/Patient.read`, `system/Encounter.read`, ... 21 types, never `system/Group.read`): the
/// kick-off must be judged by the exported types' scopes, not by Group reads.
#[tokio::test(flavor = "multi_thread")]
async fn smart_fetch_bulk_with_its_own_smart_backend_services_auth() {
    export_patients_with_smart_fetch(Auth::Smart, Some("list-1")).await;
}
