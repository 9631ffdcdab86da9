//! The `atr` binary: synth, load and serve --demo, as a user runs them.

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
}

#[tokio::test]
async fn serve_demo_seeds_lists_in_every_status() {
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
    let groups: serde_json::Value = reqwest::get(format!("{base}/Group?_summary=true"))
        .await
        .expect("search")
        .json()
        .await
        .expect("json");
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
    assert_eq!(groups["total"], 6);
    assert_eq!(
        statuses.into_iter().collect::<Vec<_>>(),
        ["draft", "final", "open"]
    );
}
