//! Faults of what the server stands on. PostgreSQL going away and coming back: while it is
//! unreachable every request that needs it is answered 503 with an OperationOutcome (never a hang,
//! a 500 or a dead server), and service returns by itself once the database is back. The export
//! directory filling up: the job fails with the reason, its partial files are removed, and
//! everything else (reads, a smaller export) goes on.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use common::PG_URL;
use common::link_proxy::LinkProxy;

/// How long a request may take to answer while the database is away (the pool's connect attempts
/// are bounded by its acquire timeout).
const ANSWER_WITHIN: Duration = Duration::from_secs(30);

async fn get(app: &common::TestApp, path: &str) -> (u16, serde_json::Value) {
    tokio::time::timeout(ANSWER_WITHIN, app.get_json(path))
        .await
        .unwrap_or_else(|_| panic!("GET {path} did not answer within {ANSWER_WITHIN:?}"))
}

#[tokio::test]
async fn postgres_outage_is_503_operation_outcome_and_service_returns_with_the_database() {
    let proxy = LinkProxy::start("127.0.0.1:5432".parse().expect("address")).await;
    let url = PG_URL.replace("127.0.0.1:5432", &proxy.addr.to_string());
    let Some(app) = common::spawn_postgres_at(&url).await else {
        return;
    };
    common::load_synthetic_members(&app, 20).await;
    let (status, body) = get(&app, "/Group?_summary=true").await;
    assert_eq!(status, 200, "{body}");
    let id = body["entry"][0]["resource"]["id"]
        .as_str()
        .expect("a Group")
        .to_string();

    proxy.cut();
    for path in [
        "/Group?_summary=true".to_string(),
        format!("/Group/{id}"),
        "/Patient?_count=5".to_string(),
    ] {
        let started = Instant::now();
        let (status, body) = get(&app, &path).await;
        assert_eq!(status, 503, "GET {path} with the database away: {body}");
        assert_eq!(body["resourceType"], "OperationOutcome", "{body}");
        assert_eq!(body["issue"][0]["code"], "transient", "{body}");
        eprintln!("GET {path}: 503 in {:?}", started.elapsed());
    }

    proxy.restore();
    let back = Instant::now();
    loop {
        let (status, body) = get(&app, &format!("/Group/{id}")).await;
        if status == 200 {
            assert_eq!(body["id"], id.as_str());
            break;
        }
        assert_eq!(status, 503, "{body}");
        assert!(
            back.elapsed() < ANSWER_WITHIN,
            "still {status} {:?} after the database came back",
            back.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("service returned {:?} after the database", back.elapsed());
    let (status, _) = get(&app, "/Group?_summary=true").await;
    assert_eq!(status, 200);
}

/// A 1 MiB tmpfs mounted for the test, unmounted on drop.
struct SmallFileSystem {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl SmallFileSystem {
    /// `None` (with the reason printed) where this process may not mount (not root, no
    /// CAP_SYS_ADMIN).
    fn mount() -> Option<SmallFileSystem> {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("exports");
        std::fs::create_dir(&path).expect("mount point");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
            .arg(&path)
            .output();
        match out {
            Ok(o) if o.status.success() => Some(SmallFileSystem { path, _dir: dir }),
            Ok(o) => {
                eprintln!(
                    "skipping: cannot mount a small tmpfs here ({})",
                    String::from_utf8_lossy(&o.stderr).trim()
                );
                None
            }
            Err(e) => {
                eprintln!("skipping: no mount command ({e})");
                None
            }
        }
    }

    fn used(&self) -> u64 {
        fn walk(p: &Path) -> u64 {
            std::fs::read_dir(p)
                .into_iter()
                .flatten()
                .filter_map(Result::ok)
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => walk(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        }
        walk(&self.path)
    }
}

impl Drop for SmallFileSystem {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.path).status();
    }
}

/// Kicks off an export and polls it to its end: the final status and body.
async fn export_to_the_end(app: &common::TestApp, path: &str) -> (u16, Value) {
    let r = app
        .client
        .get(app.url(path))
        .header("Accept", "application/fhir+json")
        .header("Prefer", "respond-async")
        .send()
        .await
        .expect("kick-off");
    assert_eq!(r.status(), 202, "{path}");
    let location = r.headers()["content-location"]
        .to_str()
        .expect("ascii")
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = app.client.get(&location).send().await.expect("poll");
        let status = r.status().as_u16();
        if status != 202 {
            return (status, r.json().await.unwrap_or(Value::Null));
        }
        assert!(Instant::now() < deadline, "the export did not end");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_full_export_directory_fails_the_job_with_the_reason_and_nothing_else() {
    let Some(small) = SmallFileSystem::mount() else {
        return;
    };
    let app = common::spawn_sqlite_exporting_to(&small.path).await;
    common::load_synthetic_members(&app, 3000).await;

    // list-1 holds most of the 3,000 members: several MiB of NDJSON into 1 MiB.
    let (status, body) = export_to_the_end(&app, "Group/list-1/$davinci-data-export").await;
    assert_eq!(status, 500, "{body}");
    assert_eq!(body["resourceType"], "OperationOutcome", "{body}");
    let said = body.to_string();
    assert!(
        said.contains("No space left") || said.contains("space"),
        "the reason names the full disk: {body}"
    );
    assert_eq!(
        small.used(),
        0,
        "the failed job's partial files are removed"
    );

    // Everything else goes on: searches, and an export that fits.
    let (status, _) = app.get_json("/Group?_summary=true").await;
    assert_eq!(status, 200);
    let (status, manifest) = export_to_the_end(&app, "Group/list-9/$export?_type=Group").await;
    assert_eq!(status, 200, "{manifest}");
    assert_eq!(manifest["output"][0]["type"], "Group", "{manifest}");
}
