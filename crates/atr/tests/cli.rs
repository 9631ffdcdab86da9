//! The `atr` binary: synth, load and serve --demo, as a user runs them.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

const ATR: &str = env!("CARGO_BIN_EXE_atr");

#[test]
fn synth_then_load_reports_and_bad_lines_fail_with_a_reason() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("ndjson");
    let out = Command::new(ATR)
        .args(["synth", "--members", "200", "--lists", "4", "--out"])
        .arg(&data)
        .output()
        .expect("synth");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let store = dir.path().join("store");
    let out = Command::new(ATR)
        .arg("load")
        .arg(&data)
        .arg("--data-dir")
        .arg(&store)
        .output()
        .expect("load");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with("loaded ") && stdout.contains("resources/s"),
        "{stdout}"
    );

    let bad = dir.path().join("bad");
    std::fs::create_dir_all(&bad).expect("mkdir");
    std::fs::write(
        bad.join("Coverage.ndjson"),
        "{\"resourceType\":\"Coverage\",\"id\":\"c1\",\"status\":\"cancelled\"}\n",
    )
    .expect("write");
    let out = Command::new(ATR)
        .arg("load")
        .arg(&bad)
        .arg("--data-dir")
        .arg(&store)
        .output()
        .expect("load");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.contains("Coverage.ndjson:1") && stderr.contains("Coverage/c1 is invalid"),
        "{stderr}"
    );

    // A second list for a contract that has one (seed 000: one Group per contract) is refused,
    // and so is a list that names no contract; nothing of either is written.
    let first_list = std::fs::read_to_string(data.join("Group.ndjson")).expect("groups");
    let mut copy: serde_json::Value =
        serde_json::from_str(first_list.lines().next().expect("a list")).expect("json");
    let original = copy["id"].as_str().expect("id").to_string();
    copy["id"] = "second-list".into();
    let mut nameless = copy.clone();
    nameless["id"] = "no-contract".into();
    nameless["identifier"] = serde_json::json!([]);
    for (list, says) in [
        (&copy, format!("already belongs to Group/{original}")),
        (&nameless, "contract identifier".to_string()),
    ] {
        std::fs::write(bad.join("Coverage.ndjson"), "").expect("empty");
        std::fs::write(bad.join("Group.ndjson"), format!("{list}\n")).expect("write");
        let out = Command::new(ATR)
            .arg("load")
            .arg(&bad)
            .arg("--data-dir")
            .arg(&store)
            .output()
            .expect("load");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{stderr}");
        assert!(stderr.contains(&says), "{says}: {stderr}");
    }
}

/// `scripts/sqlite_load_floor.py` copies what a load wrote into fresh files, one per journal mode,
/// and reports every row it found; it reads the set-aside indexes from the store's source, so a change
/// there that it no longer understands fails here.
#[test]
fn the_sqlite_load_floor_script_copies_a_loaded_store_in_each_mode() {
    if !python3_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("ndjson").display().to_string();
    let store = dir.path().join("store").display().to_string();
    assert!(atr(&["synth", "--members", "100", "--lists", "3", "--out", &data]).0);
    let (ok, stdout, stderr) = atr(&["load", &data, "--data-dir", &store]);
    assert!(ok, "{stderr}");
    let loaded = stdout
        .split_whitespace()
        .nth(1)
        .expect("loaded N resources")
        .to_string();

    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../scripts/sqlite_load_floor.py"
    );
    let out = Command::new("python3")
        .arg(script)
        .arg("--source")
        .arg(dir.path().join("store").join("atr.db"))
        .arg("--work")
        .arg(dir.path().join("floor"))
        .args(["--mode", "off", "wal", "delete"])
        .output()
        .expect("run the script");
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{printed}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let indexes: usize = printed
        .split("indexes built at the end: ")
        .nth(1)
        .and_then(|rest| rest.lines().next())
        .and_then(|n| n.trim().parse().ok())
        .expect("the count of set-aside indexes");
    assert!(indexes > 0, "{printed}");
    for mode in ["off", "wal", "delete"] {
        let line = printed
            .lines()
            .find(|l| l.starts_with(&format!("{mode} ")))
            .unwrap_or_else(|| panic!("no line for {mode}: {printed}"));
        assert!(line.contains(&format!(" {loaded} resources,")), "{line}");
        assert!(line.contains("resources/s"), "{line}");
    }
    let left: Vec<_> = std::fs::read_dir(dir.path().join("floor"))
        .expect("work dir")
        .collect();
    assert!(left.is_empty(), "the copies are removed: {left:?}");
}

/// A token for the demo Consumer, from the credentials file `serve --demo` writes.
async fn demo_token(dir: &std::path::Path) -> (String, serde_json::Value) {
    let doc: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("demo-client.json")).expect("demo-client.json"),
    )
    .expect("json");
    let jwks = atr_auth::JwkSet::parse(&doc["private_jwks"].to_string()).expect("jwks");
    let key = &jwks.keys[0];
    assert!(key.kid.is_some() && key.alg.is_some(), "kid and alg");
    let token_url = doc["token_url"].as_str().expect("token_url");
    let assertion = atr_auth::sign_client_assertion(
        key,
        doc["client_id"].as_str().expect("client_id"),
        token_url,
        atr_server::auth::now_unix(),
        300,
        &uuid::Uuid::now_v7().to_string(),
    )
    .expect("sign");
    let form = [
        ("grant_type", "client_credentials"),
        ("scope", "system/*.read"),
        (
            "client_assertion_type",
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        ),
        ("client_assertion", assertion.as_str()),
    ];
    let resp: serde_json::Value = reqwest::Client::new()
        .post(token_url)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(
            form.iter()
                .map(|(k, v)| format!("{k}={}", v.replace('/', "%2F").replace(':', "%3A")))
                .collect::<Vec<_>>()
                .join("&"),
        )
        .send()
        .await
        .expect("token")
        .json()
        .await
        .expect("json");
    (
        resp["access_token"]
            .as_str()
            .expect("access_token")
            .to_string(),
        doc,
    )
}

#[tokio::test]
async fn serve_demo_gives_a_consumer_its_lists_in_every_status_and_no_others() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut child = Command::new(ATR)
        .args(["serve", "--demo", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env("ATR_LOG", "warn")
        .stderr(Stdio::piped())
        .spawn()
        .expect("serve");
    let stderr = child.stderr.take().expect("stderr");
    let base = BufReader::new(stderr)
        .lines()
        .map_while(Result::ok)
        .find_map(|l| {
            l.split("serving FHIR at ")
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
                .map(str::to_string)
        })
        .expect("base URL line");
    let (token, doc) = demo_token(dir.path()).await;
    assert_eq!(doc["fhir_base_url"], base);
    let identifiers = doc["identifiers"].to_string();
    assert!(
        identifiers.contains("http://hl7.org/fhir/sid/us-npi|"),
        "{identifiers}"
    );
    assert!(
        identifiers.contains("urn:oid:2.16.840.1.113883.4.4|"),
        "{identifiers}"
    );
    let http = reqwest::Client::new();
    let groups: serde_json::Value = http
        .get(format!("{base}/Group?_summary=true"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("search")
        .json()
        .await
        .expect("json");
    let other = http
        .get(format!("{base}/Group/list-2?_summary=true"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("read")
        .status();
    let anonymous = reqwest::get(format!("{base}/Group"))
        .await
        .expect("get")
        .status();
    // The README's way: `atr token` prints a token from the same file.
    let creds = dir.path().join("demo-client.json");
    let out = Command::new(ATR)
        .args(["token", "--credentials"])
        .arg(&creds)
        .output()
        .expect("atr token");
    let printed = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let with_printed = http
        .get(format!("{base}/Group/list-1?_summary=true"))
        .bearer_auth(&printed)
        .send()
        .await
        .expect("read")
        .status();
    let _ = child.kill();
    let _ = child.wait();
    let statuses: std::collections::BTreeSet<String> = groups["entry"]
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|e| {
            e["resource"]["extension"].as_array()?.iter().find(|x| {
                x["url"] == "http://hl7.org/fhir/us/davinci-atr/StructureDefinition/ext-attributionListStatus"
            })?["valueCode"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    assert_eq!(groups["total"], 3, "{groups}");
    assert_eq!(
        statuses.into_iter().collect::<Vec<_>>(),
        ["draft", "final", "open"]
    );
    assert_eq!(other, 404, "another provider's list");
    assert_eq!(anonymous, 401);
    assert_eq!(
        with_printed,
        200,
        "atr token: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Whether `python3` runs here (the scripts' tests need it); a visible skip, or a failure in CI.
fn python3_available() -> bool {
    let python = Command::new("python3").arg("--version").output();
    let ok = python.is_ok_and(|o| o.status.success());
    if !ok {
        atr_testkit::skip::unavailable("python3", "it is not on PATH");
    }
    ok
}

fn atr(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(ATR).args(args).output().expect("run atr");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn keygen_and_the_client_registry_commands() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path().to_str().expect("utf-8 path");
    let private = format!("{d}/private.json");
    let public = format!("{d}/public.json");
    let (ok, out, err) = atr(&[
        "keygen",
        "--alg",
        "RS384",
        "--private",
        &private,
        "--public",
        &public,
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("\"RSA\""), "{out}");
    // Never overwrites a key file.
    let (ok, _, err) = atr(&["keygen", "--private", &private, "--public", &public]);
    assert!(!ok && err.lines().count() == 1, "{err}");
    let data = format!("{d}/data");
    let npi = "http://hl7.org/fhir/sid/us-npi|1234567893";
    let (ok, out, err) = atr(&[
        "clients",
        "--data-dir",
        &data,
        "add",
        "clinic-a",
        "--jwks",
        &public,
        "--identifier",
        npi,
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("clinic-a") && out.contains(npi), "{out}");
    // A private key set is refused, with one line saying why.
    let (ok, _, err) = atr(&[
        "clients",
        "--data-dir",
        &data,
        "add",
        "leaky",
        "--jwks",
        &private,
        "--identifier",
        npi,
    ]);
    assert!(!ok, "private keys accepted");
    assert!(
        err.contains("private") && err.trim().lines().count() == 1,
        "{err}"
    );
    let (ok, _, err) = atr(&[
        "clients",
        "--data-dir",
        &data,
        "add",
        "plain",
        "--jwks-url",
        "http://example.org/jwks",
        "--identifier",
        npi,
    ]);
    assert!(!ok && err.contains("https"), "{err}");
    let (ok, out, _) = atr(&["clients", "--data-dir", &data, "disable", "clinic-a"]);
    assert!(ok && out.contains("disabled"));
    let (ok, out, _) = atr(&["clients", "--data-dir", &data, "list"]);
    assert!(
        ok && out.contains("clinic-a") && out.contains("false"),
        "{out}"
    );
    let (ok, _, _) = atr(&["clients", "--data-dir", &data, "enable", "clinic-a"]);
    assert!(ok);
    let private2 = format!("{d}/private2.json");
    let public2 = format!("{d}/public2.json");
    assert!(atr(&["keygen", "--private", &private2, "--public", &public2]).0);
    let (ok, out, err) = atr(&[
        "clients",
        "--data-dir",
        &data,
        "rotate-keys",
        "clinic-a",
        "--jwks",
        &public2,
    ]);
    assert!(ok, "{err}");
    let kid = atr_auth::JwkSet::parse(&std::fs::read_to_string(&public2).expect("read"))
        .expect("jwks")
        .keys[0]
        .kid
        .clone()
        .expect("kid");
    assert!(out.contains(&kid), "{out}");
    let (ok, out, _) = atr(&["clients", "--data-dir", &data, "show", "clinic-a"]);
    assert!(ok && out.contains("enabled:     true"), "{out}");
    let (ok, _, err) = atr(&["clients", "--data-dir", &data, "show", "nobody"]);
    assert!(!ok && err.contains("nobody"), "{err}");
}

#[test]
fn roster_status_and_reload_make_new_versions_and_bad_rows_fail_with_a_reason() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path().to_str().expect("utf-8 path");
    let data = format!("{d}/ndjson");
    assert!(atr(&["synth", "--members", "50", "--lists", "3", "--out", &data]).0);
    let store = format!("{d}/store");
    let (ok, _, err) = atr(&["load", &data, "--data-dir", &store]);
    assert!(ok, "{err}");
    // list-1 is final; the payer reopens it.
    let (ok, out, err) = atr(&["roster", "--data-dir", &store, "status", "list-1", "open"]);
    assert!(ok, "{err}");
    assert!(out.contains("is open (version 2)"), "{out}");
    let (ok, out, _) = atr(&["roster", "--data-dir", &store, "status", "list-1", "open"]);
    assert!(ok && out.contains("already open"), "{out}");
    let (ok, _, err) = atr(&["roster", "--data-dir", &store, "status", "list-1", "closed"]);
    assert!(!ok && err.contains("not a list status"), "{err}");
    let csv = format!("{d}/roster.csv");
    std::fs::write(
        &csv,
        "patient,provider,coverage,period_start,period_end\n\
         Patient/pat-1,Practitioner/pract-1,Coverage/cov-1,2025-01-01,2025-12-31\n\
         Patient/pat-2,Practitioner/pract-2,Coverage/cov-2,2025-03-01,2025-12-31\n",
    )
    .expect("write");
    let (ok, out, err) = atr(&["roster", "--data-dir", &store, "reload", "list-1", &csv]);
    assert!(ok, "{err}");
    assert!(out.contains("2 entries, version 3"), "{out}");
    let bad = format!("{d}/bad.csv");
    std::fs::write(
        &bad,
        "patient,provider\nPractitioner/pract-1,Practitioner/pract-1\n",
    )
    .expect("write");
    let (ok, _, err) = atr(&["roster", "--data-dir", &store, "reload", "list-1", &bad]);
    assert!(!ok, "a Practitioner is not a member");
    assert!(
        err.contains("bad.csv:2") && err.trim().lines().count() == 1,
        "{err}"
    );
    // An attribution period that shares no day with the contract.
    std::fs::write(
        &bad,
        "patient,provider,coverage,period_start,period_end\n\
         Patient/pat-1,Practitioner/pract-1,Coverage/cov-1,1990-01-01,1990-12-31\n",
    )
    .expect("write");
    let (ok, _, err) = atr(&["roster", "--data-dir", &store, "reload", "list-1", &bad]);
    assert!(!ok);
    assert!(
        err.contains("bad.csv:2") && err.contains("outside the contract validity period"),
        "{err}"
    );
}

/// `.ci/standalone.py` keeps the repository standing alone: it passes on this checkout and names
/// each kind of reference to a path outside one (a sibling `shared/` folder, an absolute path beside
/// the checkout, `../` steps above the root from a crate's manifest folder).
#[test]
fn the_standalone_check_passes_here_and_names_paths_outside_a_repository() {
    if !python3_available() {
        return;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../.ci/standalone.py");
    let here = Command::new("python3").arg(script).output().expect("run");
    assert!(
        here.status.success(),
        "this repository refers outside itself:\n{}",
        String::from_utf8_lossy(&here.stdout)
    );

    let dir = tempfile::tempdir().expect("tmp");
    let write = |path: &str, text: &str| {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    };
    // Written in pieces so that this file does not show the check the very references it finds.
    let up = "..";
    write("README.md", &format!("The plan: {up}/shared/DESIGN.md\n"));
    write(
        "crates/x/src/lib.rs",
        &format!(
            "const P: &str = concat!(env!(\"CARGO_MANIFEST_DIR\"), \"/{up}/{up}/{up}/data\");\n"
        ),
    );
    write(
        "docs/notes.md",
        &format!("See /{}/.library/README.md\n", "work"),
    );
    // Inside the repository, and not paths at all: no finding.
    write(
        "docs/fine.md",
        "[crates](../crates/x) and `.../StructureDefinition/atr-group`\n",
    );
    let out = Command::new("python3")
        .arg(script)
        .arg(dir.path())
        .output()
        .expect("run");
    let printed = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{printed}");
    let files: Vec<&str> = printed
        .lines()
        .filter_map(|l| l.split(':').next())
        .collect();
    assert_eq!(
        files,
        ["crates/x/src/lib.rs", "docs/notes.md", "README.md"],
        "{printed}"
    );
}

/// Runs `atr serve ARGS…`, which must fail at start, and returns its one line of stderr.
fn serve_refused(args: &[&std::ffi::OsStr]) -> String {
    let out = common::run(common::TIMEOUT, Command::new(ATR).arg("serve").args(args));
    assert!(!out.status.success(), "atr serve started: {}", out.stderr);
    assert_eq!(out.stderr.trim().lines().count(), 1, "{}", out.stderr);
    out.stderr
}

/// A busy port stops `atr serve --demo` before anything else: one line naming the address, and no
/// database made and no demo data seeded in the data directory.
#[test]
fn serve_demo_on_a_busy_port_fails_at_once_and_leaves_the_data_dir_alone() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = busy.local_addr().expect("addr").to_string();
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("data");
    let stderr = serve_refused(&[
        "--demo".as_ref(),
        "--listen".as_ref(),
        addr.as_ref(),
        "--data-dir".as_ref(),
        data.as_os_str(),
    ]);
    assert!(
        stderr.contains(&format!("listening on {addr}")) && stderr.contains("in use"),
        "{stderr}"
    );
    assert!(
        !data.exists(),
        "the data directory was made before the bind"
    );
}

/// `atr serve --database postgres://…` that cannot connect says so in one line naming the
/// database (never its password) and the cause, without waiting for a pool to time out.
#[test]
fn serve_on_an_unreachable_postgres_names_the_database_and_the_cause() {
    let on = |database: &str| {
        serve_refused(&[
            "--listen".as_ref(),
            "127.0.0.1:0".as_ref(),
            "--database".as_ref(),
            database.as_ref(),
        ])
    };
    // Nothing listens on port 1 of the loopback address.
    let stderr = on("postgres://atr:hunter2@127.0.0.1:1/atr");
    assert!(
        stderr.contains("cannot connect to postgres://atr:***@127.0.0.1:1/atr: Connection refused"),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"), "{stderr}");

    if !common::postgres_available() {
        return;
    }
    let stderr = on("postgres://postgres@127.0.0.1:5432/atr_no_such_database");
    assert!(
        stderr.contains(
            "cannot connect to postgres://postgres@127.0.0.1:5432/atr_no_such_database: \
             database \"atr_no_such_database\" does not exist"
        ),
        "{stderr}"
    );
}
