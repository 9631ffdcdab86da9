//! Bulk export as a client sees it, for the process-level tests: kick-off, status polls, the
//! files of a manifest downloaded and checked line by line.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::Value;

use super::{Server, TIMEOUT};

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(TIMEOUT)
        .build()
        .expect("http client")
}

pub async fn get_json(client: &reqwest::Client, url: &str, token: &str) -> Value {
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
pub async fn kick_off(client: &reqwest::Client, base: &str, group: &str, token: &str) -> String {
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
pub enum Poll {
    /// 202, with its `X-Progress` and `Retry-After`.
    Running {
        progress: String,
        retry_after: Option<u64>,
    },
    /// 200: the manifest.
    Done(Value),
}

pub async fn poll(client: &reqwest::Client, url: &str, token: &str) -> Poll {
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
pub fn is_running(progress: &str) -> bool {
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
pub fn files_on_disk(job_dir: &Path) -> BTreeMap<String, u64> {
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
pub async fn download(
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
            "file URL {url} is not on the server {base} it was asked of"
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
pub fn ids_by_type(by_type: &BTreeMap<String, Vec<Value>>) -> BTreeMap<String, BTreeSet<String>> {
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
pub fn member_ids(group: &Value) -> (BTreeSet<String>, BTreeSet<String>) {
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

/// Polls `url` until the manifest, failing with `server`'s log after `TIMEOUT`.
pub async fn manifest_of(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    server: &Server,
) -> Value {
    let started = std::time::Instant::now();
    loop {
        assert!(
            started.elapsed() < TIMEOUT,
            "the export at {url} did not finish in {TIMEOUT:?}\n{}",
            server.log()
        );
        if let Poll::Done(m) = poll(client, url, token).await {
            return m;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
