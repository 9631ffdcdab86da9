//! `atr load` killed with `kill -9` part way loses nothing it reported and leaves nothing half
//! written: each batch is one transaction, so what is in the database is whole batches (a type's
//! current count is a multiple of the batch size, all but the file's last), and loading the same
//! files again completes the set.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use atr_store::{Access, ResourceType, SearchQuery, SqlStore, Store};
use common::{ATR, TIMEOUT};

const MEMBERS: u64 = 20_000;
const BATCH: u64 = 1_000;

async fn current(store: &SqlStore, rtype: ResourceType) -> i64 {
    let page = store
        .search(&SearchQuery {
            rtype,
            clauses: Vec::new(),
            count: 0,
            after_id: None,
            with_total: true,
            access: Access::All,
        })
        .await
        .expect("count");
    page.total.expect("a total")
}

#[tokio::test]
async fn a_load_killed_part_way_leaves_whole_batches_and_a_rerun_completes_it() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().to_str().expect("utf-8 path");
    let (ndjson, data) = (format!("{dir}/ndjson"), format!("{dir}/data"));
    let members = MEMBERS.to_string();
    common::atr_ok(
        TIMEOUT,
        &[
            "synth",
            "--members",
            &members,
            "--lists",
            "2",
            "--out",
            &ndjson,
        ],
    );
    let batch = BATCH.to_string();
    let mut load = Command::new(ATR)
        .args(["load", &ndjson, "--data-dir", &data, "--batch", &batch])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn atr load");

    // Coverage.ndjson is loaded first: kill once its first batches are in, long before the end.
    std::fs::create_dir_all(&data).expect("data dir");
    let db = format!("{data}/atr.db");
    let started = Instant::now();
    let store = loop {
        assert!(started.elapsed() < TIMEOUT, "atr load wrote nothing");
        assert!(
            load.try_wait().expect("wait").is_none(),
            "atr load finished before it could be killed: make MEMBERS bigger"
        );
        if std::path::Path::new(&db).exists()
            && let Ok(store) = SqlStore::open_sqlite(std::path::Path::new(&db)).await
            && current(&store, ResourceType::Coverage).await >= 2 * BATCH as i64
        {
            break store;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    load.kill().expect("kill -9 atr load");
    let status = load.wait().expect("reap atr load");
    assert!(!status.success(), "atr load ended on its own");

    let coverages = current(&store, ResourceType::Coverage).await;
    eprintln!("killed atr load with {coverages} Coverages in");
    assert!(
        coverages < MEMBERS as i64,
        "atr load had loaded every Coverage before the kill: make MEMBERS bigger"
    );
    assert_eq!(
        coverages % BATCH as i64,
        0,
        "{coverages} Coverages: a batch was left half written"
    );
    assert_eq!(
        current(&store, ResourceType::Group).await,
        0,
        "the Groups come last"
    );
    drop(store);

    // The same files again: every resource is there (those of the dead run as new versions).
    common::atr_ok(
        Duration::from_secs(300),
        &["load", &ndjson, "--data-dir", &data],
    );
    let store = SqlStore::open_sqlite(std::path::Path::new(&db))
        .await
        .expect("open");
    for (rtype, file) in [
        (ResourceType::Coverage, "Coverage"),
        (ResourceType::Patient, "Patient"),
        (ResourceType::Group, "Group"),
    ] {
        let lines = std::fs::read_to_string(format!("{ndjson}/{file}.ndjson"))
            .expect("ndjson")
            .lines()
            .count() as i64;
        assert_eq!(
            current(&store, rtype).await,
            lines,
            "{file} after the rerun"
        );
    }
}
