//! Bulk export steps over HTTP shared by the export tests: a Consumer's token, kick-off, polling
//! to the manifest.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use atr_auth::SigningAlg;
use serde_json::Value;

use super::{NPI, TestApp, npi_of};

/// A Consumer acting for org-1, with a read-and-write token.
pub async fn consumer(app: &TestApp, id: &str) -> reqwest::Client {
    app.client_with(&consumer_token(app, id).await)
}

pub async fn consumer_token(app: &TestApp, id: &str) -> String {
    let npi = npi_of(app, "org-1").await;
    let c = app
        .register(
            id,
            SigningAlg::Es384,
            &[&format!("{NPI}|{npi}")],
            &["system/*.read", "system/*.write"],
            false,
        )
        .await;
    app.token(&c, "system/*.read system/*.write")
        .await
        .expect("token")
}

pub async fn kick_off(
    app: &TestApp,
    http: &reqwest::Client,
    path: &str,
    prefer: &str,
) -> (u16, Option<String>, Value) {
    let r = http
        .get(app.url(path))
        .header("Accept", "application/fhir+json")
        .header("Prefer", prefer)
        .send()
        .await
        .expect("kick-off");
    let status = r.status().as_u16();
    let location = r
        .headers()
        .get("content-location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = r.json().await.unwrap_or(Value::Null);
    (status, location, body)
}

pub async fn started(app: &TestApp, http: &reqwest::Client, path: &str) -> String {
    let (status, location, body) = kick_off(app, http, path, "respond-async").await;
    assert_eq!(status, 202, "{path}: {body}");
    location.expect("Content-Location")
}

/// Polls until the manifest; checks every in-progress answer on the way.
pub async fn manifest(http: &reqwest::Client, location: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = http
            .get(location)
            .header("Accept", "application/json")
            .send()
            .await
            .expect("poll");
        match r.status().as_u16() {
            202 => {
                let retry = r.headers()["retry-after"].to_str().expect("ascii");
                assert!(retry.parse::<u32>().is_ok(), "Retry-After {retry}");
                assert!(r.headers().get("x-progress").is_some());
                assert!(Instant::now() < deadline, "export did not finish");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            200 => {
                assert!(
                    r.headers()["content-type"]
                        .to_str()
                        .expect("ascii")
                        .starts_with("application/json")
                );
                assert!(r.headers().get("expires").is_some());
                return r.json().await.expect("manifest JSON");
            }
            other => panic!("status {other}: {}", r.text().await.unwrap_or_default()),
        }
    }
}

/// Every line of every output file, by type; checks line shape, type and count on the way.
pub async fn download(http: &reqwest::Client, manifest: &Value) -> Vec<(String, Value)> {
    let mut lines = Vec::new();
    for item in manifest["output"].as_array().expect("output") {
        let url = item["url"].as_str().expect("url");
        let r = http.get(url).send().await.expect("file");
        assert_eq!(r.status(), 200, "{url}");
        assert_eq!(r.headers()["content-type"], "application/fhir+ndjson");
        let text = r.text().await.expect("text");
        assert!(text.ends_with('\n'));
        let mut n = 0;
        for line in text.split_terminator('\n') {
            assert!(!line.is_empty(), "blank line in {url}");
            let v: Value = serde_json::from_str(line).expect("JSON line");
            assert_eq!(v["resourceType"], item["type"], "{url}");
            lines.push((item["type"].as_str().unwrap_or("").to_string(), v));
            n += 1;
        }
        assert_eq!(item["count"], n, "{url}");
    }
    lines
}

pub async fn error_lines(http: &reqwest::Client, manifest: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    for item in manifest["error"].as_array().expect("error array") {
        let text = http
            .get(item["url"].as_str().expect("url"))
            .send()
            .await
            .expect("error file")
            .text()
            .await
            .expect("text");
        out.extend(
            text.lines()
                .map(|l| serde_json::from_str::<Value>(l).expect("JSON")),
        );
    }
    out
}

pub fn ids_of(lines: &[(String, Value)], rtype: &str) -> Vec<String> {
    lines
        .iter()
        .filter(|(t, _)| t == rtype)
        .map(|(_, v)| format!("{rtype}/{}", v["id"].as_str().unwrap_or("")))
        .collect()
}

/// Every reference in the exported lines (but the Groups', checked on their own) resolves to an
/// exported line, and no line appears twice. The exported `Type/id`s.
pub fn references_resolve(lines: &[(String, Value)]) -> HashSet<String> {
    let all: HashSet<String> = lines
        .iter()
        .map(|(t, v)| format!("{t}/{}", v["id"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(all.len(), lines.len(), "a resource appears twice");
    for (t, v) in lines.iter().filter(|(t, _)| t != "Group") {
        let text = v.to_string();
        for piece in text.split("\"reference\":\"").skip(1) {
            let r = piece.split('"').next().unwrap_or("");
            assert!(
                all.contains(r),
                "{t}/{} references {r}, not exported",
                v["id"]
            );
        }
    }
    all
}
