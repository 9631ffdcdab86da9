//! Bulk export with `--export-store s3://…`: the files live in a real S3 API (`moto_server` on
//! loopback), and the server behaves as with the local directory: the same manifest and lines,
//! `Range` and gzip downloads through the server with the client's token, `DELETE` and expiry
//! removing the objects, a taken-over job rewriting its files. On SQLite and PostgreSQL.

mod common;
#[path = "common/downloads.rs"]
mod downloads;
#[path = "../../atr-export/tests/moto/mod.rs"]
mod moto;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use atr_server::ServerConfig;
use common::exports::{consumer, consumer_token, manifest, started};
use common::{load_synthetic, spawn_apps, spawn_apps_with};
use downloads::check_range_and_gzip;
use serde_json::Value;

const BUCKET: &str = "atr-exports";
const PREFIX: &str = "fhir/exports";

/// Server settings with export files in the bucket (spooled in the app's export directory).
fn in_bucket(moto: &moto::Moto) -> impl Fn(&mut ServerConfig) + use<> {
    let settings = moto.settings(BUCKET, PREFIX);
    move |c: &mut ServerConfig| c.export.storage = atr_export::ExportStorage::S3(settings.clone())
}

fn job_of(location: &str) -> String {
    location.rsplit('/').next().expect("job id").to_string()
}

fn job_prefix(job: &str) -> String {
    format!("{PREFIX}/{job}/")
}

/// Each output file's type, count and lines, with what differs between two loads of the same
/// data (`meta.lastUpdated`, `meta.versionId`) left out.
async fn contents(http: &reqwest::Client, m: &Value) -> BTreeMap<String, (u64, Vec<String>)> {
    let mut out: BTreeMap<String, (u64, Vec<String>)> = BTreeMap::new();
    for item in m["output"].as_array().expect("output") {
        let url = item["url"].as_str().expect("url");
        let r = http.get(url).send().await.expect("file");
        assert_eq!(r.status(), 200, "{url}");
        assert_eq!(r.headers()["content-type"], "application/fhir+ndjson");
        let text = r.text().await.expect("text");
        let entry = out
            .entry(item["type"].as_str().expect("type").to_string())
            .or_default();
        entry.0 += item["count"].as_u64().expect("count");
        for line in text.split_terminator('\n') {
            let mut v: Value = serde_json::from_str(line).expect("JSON line");
            if let Some(meta) = v.get_mut("meta").and_then(Value::as_object_mut) {
                meta.remove("lastUpdated");
                meta.remove("versionId");
            }
            entry.1.push(v.to_string());
        }
    }
    for (_, lines) in out.values_mut() {
        lines.sort();
    }
    out
}

#[tokio::test]
async fn an_export_to_s3_holds_what_a_local_export_holds() {
    let Some(moto) = moto::start(BUCKET).await else {
        return;
    };
    let local = spawn_apps().await;
    let s3 = spawn_apps_with(in_bucket(&moto)).await;
    for (local, s3) in local.iter().zip(&s3) {
        assert_eq!(local.dialect, s3.dialect);
        let mut found = Vec::new();
        for app in [local, s3] {
            load_synthetic(app).await;
            let http = consumer(app, "org-1-exporter").await;
            let location = started(app, &http, "Group/list-1/$davinci-data-export").await;
            let m = manifest(&http, &location).await;
            assert_eq!(m["requiresAccessToken"], true);
            assert_eq!(m["error"], serde_json::json!([]));
            found.push((contents(&http, &m).await, location, http));
        }
        let (s3_contents, location, _) = &found[1];
        assert_eq!(&found[0].0, s3_contents, "{}", s3.dialect);
        assert!(s3_contents["Patient"].0 >= 2 && s3_contents["Group"].0 == 1);
        // The files are objects under the job's prefix, and nothing is left in the spool.
        let job = job_of(location);
        let mut keys = moto.keys(BUCKET, &job_prefix(&job)).await;
        keys.sort();
        assert!(
            keys.iter().any(|k| k.ends_with("/Patient-1.ndjson")),
            "{keys:?}"
        );
        assert!(!s3.export_dir.join(&job).join("Patient-1.ndjson").exists());
    }
}

#[tokio::test]
async fn s3_files_stream_through_the_server_with_range_and_gzip() {
    let Some(moto) = moto::start(BUCKET).await else {
        return;
    };
    for app in spawn_apps_with(in_bucket(&moto)).await {
        load_synthetic(&app).await;
        let token = consumer_token(&app, "org-1-files").await;
        let http = app.client_with(&token);
        let location = started(&app, &http, "Group/list-1/$export?_type=Patient").await;
        let m = manifest(&http, &location).await;
        let url = m["output"][0]["url"].as_str().expect("url").to_string();
        // Only through the server, with the requesting client's token.
        assert_eq!(app.anon.get(&url).send().await.expect("file").status(), 401);
        let other = consumer(&app, "org-1-other").await;
        assert_eq!(other.get(&url).send().await.expect("file").status(), 404);

        // reqwest would ask for gzip and unpack it itself, hiding the headers: ask by hand.
        let raw = reqwest::Client::builder()
            .no_gzip()
            .build()
            .expect("client");
        let r = raw
            .get(&url)
            .bearer_auth(&token)
            .send()
            .await
            .expect("file");
        assert_eq!(r.status(), 200);
        assert!(r.headers().get("content-encoding").is_none());
        let len = r.headers()["content-length"]
            .to_str()
            .expect("ascii")
            .to_string();
        let whole = r.bytes().await.expect("body");
        assert_eq!(len, whole.len().to_string());
        check_range_and_gzip(&http, &token, &url, &whole).await;
        let r = http
            .get(&url)
            .header("Range", "bytes=-25")
            .send()
            .await
            .expect("suffix range");
        assert_eq!(r.status(), 206);
        assert_eq!(
            r.bytes().await.expect("body"),
            whole.slice(whole.len() - 25..)
        );

        // An object missing from the bucket is a 404 OperationOutcome, not a failure.
        let job = job_of(&location);
        for key in moto.keys(BUCKET, &job_prefix(&job)).await {
            moto.delete(BUCKET, &key).await;
        }
        let r = http.get(&url).send().await.expect("file");
        assert_eq!(r.status(), 404);
        let body: Value = r.json().await.expect("OperationOutcome");
        assert_eq!(body["resourceType"], "OperationOutcome");
    }
}

#[tokio::test]
async fn delete_removes_the_jobs_objects() {
    let Some(moto) = moto::start(BUCKET).await else {
        return;
    };
    for app in spawn_apps_with(in_bucket(&moto)).await {
        load_synthetic(&app).await;
        let http = consumer(&app, "org-1-deleter").await;
        let location = started(&app, &http, "Group/list-1/$davinci-data-export").await;
        let m = manifest(&http, &location).await;
        let job = job_of(&location);
        let files = m["output"].as_array().expect("output").len();
        assert_eq!(moto.keys(BUCKET, &job_prefix(&job)).await.len(), files);
        let r = http.delete(&location).send().await.expect("delete");
        assert_eq!(r.status(), 202);
        assert_eq!(
            moto.keys(BUCKET, &job_prefix(&job)).await,
            Vec::<String>::new()
        );
        let url = m["output"][0]["url"].as_str().expect("url");
        assert_eq!(http.get(url).send().await.expect("file").status(), 404);
    }
}

#[tokio::test]
async fn expired_jobs_objects_are_cleaned_up() {
    let Some(moto) = moto::start(BUCKET).await else {
        return;
    };
    let edit = in_bucket(&moto);
    // Long enough for the job to finish and be downloaded, short enough to wait for.
    let apps = spawn_apps_with(move |c| {
        edit(c);
        c.export.retention = Duration::from_secs(4);
    })
    .await;
    for app in apps {
        load_synthetic(&app).await;
        let http = consumer(&app, "org-1-expiry").await;
        let location = started(&app, &http, "Group/list-1/$export").await;
        let m = manifest(&http, &location).await;
        let job = job_of(&location);
        let files = m["output"].as_array().expect("output").len();
        assert_eq!(moto.keys(BUCKET, &job_prefix(&job)).await.len(), files);
        // The cleaner removes the expired job's objects and row.
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            let keys = moto.keys(BUCKET, &job_prefix(&job)).await;
            let row = app.store.export_job(&job).await.expect("job");
            if row.is_none() && keys.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "expired job {job} not cleaned up: {keys:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let r = http
            .get(&location)
            .header("Accept", "application/json")
            .send()
            .await
            .expect("poll");
        assert_eq!(r.status(), 404);
    }
}

#[tokio::test]
async fn a_taken_over_job_rewrites_its_objects() {
    let Some(moto) = moto::start(BUCKET).await else {
        return;
    };
    let edit = in_bucket(&moto);
    let apps = spawn_apps_with(|c| {
        edit(c);
        c.export.workers = 0;
    })
    .await;
    for app in &apps {
        load_synthetic(app).await;
        let http = consumer(app, "org-1-takeover").await;
        let location = started(app, &http, "Group/list-1/$davinci-data-export").await;
        let job = job_of(&location);
        // A worker that dies mid-export: it claimed the job and left objects behind, one a file
        // name the rerun will write again, one it will not.
        let now = atr_model::instant::now_micros();
        let claimed = app
            .store
            .claim_export_job("dead-instance", now, now + 500_000)
            .await
            .expect("claim")
            .expect("a job");
        assert_eq!(claimed.id, job);
        let prefix = job_prefix(&job);
        moto.put(
            BUCKET,
            &format!("{prefix}Patient-1.ndjson"),
            "{\"stale\":true}\n",
        )
        .await;
        moto.put(
            BUCKET,
            &format!("{prefix}Patient-7.ndjson"),
            "{\"stale\":true}\n",
        )
        .await;
        let other = app
            .another_instance_with(|c| {
                edit(c);
                c.export.workers = 1;
            })
            .await;
        let m = manifest(&http, &location.replace(&app.base, &other)).await;
        let found = contents(&http, &m).await;
        assert!(found["Patient"].0 >= 2);
        assert!(
            found
                .values()
                .all(|(_, lines)| lines.iter().all(|l| !l.contains("stale"))),
            "a stale object was served"
        );
        let keys = moto.keys(BUCKET, &prefix).await;
        assert!(
            !keys.iter().any(|k| k.ends_with("/Patient-7.ndjson")),
            "{keys:?}"
        );
        let row = app.store.export_job(&job).await.expect("job").expect("row");
        assert_eq!(row.attempts, 2);
    }
}
