//! Shared set-up: every store test runs against SQLite and PostgreSQL.

use std::sync::Arc;

use atr_model::ResourceType;
use atr_model::group::{MemberEntry, assign_unique_keys, split_group};
use atr_model::index::extract;
use atr_store::{ResourceWrite, SqlStore, Store, WriteMode};
use serde_json::Value;

pub const PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// A store of each dialect available: SQLite always, PostgreSQL when it answers (in CI it must).
pub async fn stores() -> Vec<(Arc<dyn Store>, tempfile::TempDir)> {
    let dir = tempfile::tempdir().expect("temp dir");
    let sqlite = SqlStore::open_sqlite(&dir.path().join("atr.db"))
        .await
        .expect("open sqlite");
    let mut out: Vec<(Arc<dyn Store>, tempfile::TempDir)> = vec![(Arc::new(sqlite), dir)];
    drop_stale_test_schemas().await;
    let schema = format!("t_{}", uuid::Uuid::now_v7().simple());
    match SqlStore::open_postgres(PG_URL, Some(&schema)).await {
        Ok(pg) => out.push((Arc::new(pg), tempfile::tempdir().expect("temp dir"))),
        Err(e) => atr_testkit::skip::unavailable("PostgreSQL", &e.to_string()),
    }
    out
}

/// A write of a resource given as JSON text, indexed as the server would.
pub fn write_of(text: &str, mode: WriteMode) -> ResourceWrite {
    let (resource, members) = if text.contains("\"resourceType\":\"Group\"")
        || text.contains("\"resourceType\": \"Group\"")
    {
        let split = split_group(text).expect("group json");
        let mut members: Vec<MemberEntry> = split
            .members
            .iter()
            .map(|raw| {
                MemberEntry::from_value(&serde_json::from_str::<Value>(raw.get()).expect("member"))
            })
            .collect();
        assign_unique_keys(&mut members);
        (split.header, Some(members))
    } else {
        (serde_json::from_str::<Value>(text).expect("json"), None)
    };
    let rtype: ResourceType = resource["resourceType"]
        .as_str()
        .expect("resourceType")
        .parse()
        .expect("type");
    let id = resource["id"].as_str().expect("id").to_string();
    ResourceWrite {
        rtype,
        id,
        claims: atr_model::contract::unique_claims(rtype, &resource),
        index: extract(rtype, &resource),
        resource,
        members,
        mode,
        expected_version: None,
        prestamped: None,
    }
}

/// Drops the `t_<uuid v7>` schemas of test runs more than an hour old (each run makes fresh ones).
/// Once per test process.
async fn drop_stale_test_schemas() {
    static DONE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if !DONE.swap(true, std::sync::atomic::Ordering::SeqCst) {
        let hour = std::time::Duration::from_secs(3600);
        let _ = SqlStore::drop_stale_postgres_schemas(PG_URL, "t_", hour).await;
    }
}
