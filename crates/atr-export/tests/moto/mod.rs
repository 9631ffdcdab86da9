//! A real S3 API on loopback for tests: `moto_server` (PyPI `moto[server]`) as a child process on
//! a free port, killed when the handle drops. Without `moto_server` a test skips with a printed
//! reason, except in CI (`CI=true`), where it fails.
//!
//! Shared by the `atr-export` and `atr-server` tests (the latter include this file by path).
#![allow(dead_code)] // each test binary uses a different part

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use atr_export::{S3Credentials, S3Location, S3Settings};
use rusty_s3::actions::{CreateBucket, ListObjectsV2, PutObject};
use rusty_s3::{Bucket, S3Action, UrlStyle};

const REGION: &str = "us-east-1";
const SIGNED_FOR: Duration = Duration::from_secs(600);

/// A running `moto_server`.
pub struct Moto {
    child: Child,
    pub endpoint: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn credentials() -> S3Credentials {
    // moto takes any keys; requests are signed all the same.
    S3Credentials::new("atr-test-key", "atr-test-secret")
}

/// Starts `moto_server` and creates `bucket` through the S3 API; `None` (with the reason
/// printed) when `moto_server` cannot run here and this is not CI.
pub async fn start(bucket: &str) -> Option<Moto> {
    let moto = match spawn().await {
        Ok(m) => m,
        Err(why) => {
            atr_testkit::skip::unavailable("moto_server (pip install 'moto[server]')", &why);
            return None;
        }
    };
    let b = moto.bucket(bucket);
    let creds = credentials();
    let action = CreateBucket::new(&b, &creds);
    let body = action.body();
    let r = reqwest::Client::new()
        .put(action.sign(SIGNED_FOR))
        .header("content-length", body.len())
        .body(body)
        .send()
        .await
        .expect("CreateBucket");
    assert!(r.status().is_success(), "CreateBucket: {}", r.status());
    Some(moto)
}

async fn spawn() -> Result<Moto, String> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("no free port: {e}"))?
        .port();
    let child = Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("moto_server does not start: {e}"))?;
    let mut moto = Moto {
        child,
        endpoint: format!("http://127.0.0.1:{port}"),
    };
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(Some(status)) = moto.child.try_wait() {
            return Err(format!("moto_server exited at start ({status})"));
        }
        if http.get(&moto.endpoint).send().await.is_ok() {
            return Ok(moto);
        }
        if Instant::now() > deadline {
            let _ = moto.child.kill();
            return Err("moto_server did not answer within 30 s".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

impl Moto {
    pub fn bucket(&self, name: &str) -> Bucket {
        Bucket::new(
            self.endpoint.parse().expect("endpoint URL"),
            UrlStyle::Path,
            name.to_string(),
            REGION,
        )
        .expect("bucket")
    }

    /// Settings for `s3://bucket/prefix` on this server.
    pub fn settings(&self, bucket: &str, prefix: &str) -> S3Settings {
        let location: S3Location = format!("s3://{bucket}/{prefix}").parse().expect("location");
        let mut s = S3Settings::new(location, REGION);
        s.endpoint = Some(self.endpoint.clone());
        s.path_style = true;
        s.credentials = Some(credentials());
        s
    }

    /// Every key in the bucket under `prefix` (read straight from the S3 API).
    pub async fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let b = self.bucket(bucket);
        let creds = credentials();
        let mut action = ListObjectsV2::new(&b, Some(&creds));
        action.with_prefix(prefix);
        action.query_mut().remove("encoding-type");
        let text = reqwest::Client::new()
            .get(action.sign(SIGNED_FOR))
            .send()
            .await
            .expect("ListObjectsV2")
            .text()
            .await
            .expect("list text");
        let page = ListObjectsV2::parse_response(&text).expect("list XML");
        page.contents.into_iter().map(|c| c.key).collect()
    }

    /// Stores an object straight through the S3 API.
    pub async fn put(&self, bucket: &str, key: &str, body: &'static str) {
        let b = self.bucket(bucket);
        let creds = credentials();
        let r = reqwest::Client::new()
            .put(PutObject::new(&b, Some(&creds), key).sign(SIGNED_FOR))
            .body(body)
            .send()
            .await
            .expect("PutObject");
        assert!(r.status().is_success(), "PutObject: {}", r.status());
    }
}

impl Moto {
    /// Deletes an object straight through the S3 API.
    pub async fn delete(&self, bucket: &str, key: &str) {
        let b = self.bucket(bucket);
        let creds = credentials();
        let r = reqwest::Client::new()
            .delete(rusty_s3::actions::DeleteObject::new(&b, Some(&creds), key).sign(SIGNED_FOR))
            .send()
            .await
            .expect("DeleteObject");
        assert!(r.status().is_success(), "DeleteObject: {}", r.status());
    }
}
