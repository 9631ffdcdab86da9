//! `atr load` killed with `kill -9` part way loses nothing it reported and leaves nothing half
//! written: each batch is one transaction, so what is in the database is whole batches (a type's
//! current count is a multiple of the batch size, all but the file's last), and loading the same
//! files again completes the set. A load that had set its search indexes aside gets them back
//! when the store is next opened.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use atr_store::{Access, Clause, ResourceType, SearchQuery, SqlStore, Store, TokenMatch};
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

/// Current rows of a type, read with plain SQLite: opening a `SqlStore` would build set-aside
/// indexes under the running load.
fn current_rows(db: &str, rtype: &str) -> i64 {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open read-only");
    conn.busy_timeout(TIMEOUT).expect("busy timeout");
    conn.query_row(
        "SELECT count(*) FROM resource_version WHERE rtype = ?1 AND is_current",
        [rtype],
        |r| r.get(0),
    )
    .unwrap_or(0)
}

fn index_names(db: &Path) -> Vec<String> {
    let conn = rusqlite::Connection::open(db).expect("open");
    let mut st = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'index' ORDER BY name")
        .expect("prepare");
    st.query_map([], |r| r.get(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("names")
}

/// Synthesises 20k members into `ndjson`, starts `atr load` with `defer` and kills it once two
/// Coverage batches are in. Returns the database's path.
async fn load_and_kill(ndjson: &str, data: &str, defer: &str) -> String {
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
            ndjson,
        ],
    );
    let batch = BATCH.to_string();
    let mut load = Command::new(ATR)
        .args(["load", ndjson, "--data-dir", data, "--batch", &batch])
        .args(["--defer-indexes", defer])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn atr load");

    // Coverage.ndjson is loaded first: kill once its first batches are in, long before the end.
    std::fs::create_dir_all(data).expect("data dir");
    let db = format!("{data}/atr.db");
    let started = Instant::now();
    loop {
        assert!(started.elapsed() < TIMEOUT, "atr load wrote nothing");
        assert!(
            load.try_wait().expect("wait").is_none(),
            "atr load finished before it could be killed: make MEMBERS bigger"
        );
        if Path::new(&db).exists() && current_rows(&db, "Coverage") >= 2 * BATCH as i64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    load.kill().expect("kill -9 atr load");
    let status = load.wait().expect("reap atr load");
    assert!(!status.success(), "atr load ended on its own");
    db
}

/// The counts after the kill: whole batches of Coverages, no Groups.
async fn assert_whole_batches(store: &SqlStore) {
    let coverages = current(store, ResourceType::Coverage).await;
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
        current(store, ResourceType::Group).await,
        0,
        "the Groups come last"
    );
}

/// Loads the same files again: every resource is there (those of the dead run as new versions).
async fn assert_rerun_completes(ndjson: &str, data: &str, db: &str) {
    common::atr_ok(
        Duration::from_secs(300),
        &["load", ndjson, "--data-dir", data],
    );
    let store = SqlStore::open_sqlite(Path::new(db)).await.expect("open");
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

#[tokio::test]
async fn a_load_killed_part_way_leaves_whole_batches_and_a_rerun_completes_it() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().to_str().expect("utf-8 path");
    let (ndjson, data) = (format!("{dir}/ndjson"), format!("{dir}/data"));
    let db = load_and_kill(&ndjson, &data, "never").await;
    let store = SqlStore::open_sqlite(Path::new(&db)).await.expect("open");
    assert_whole_batches(&store).await;
    drop(store);
    assert_rerun_completes(&ndjson, &data, &db).await;
}

#[tokio::test]
async fn a_load_killed_with_its_indexes_set_aside_gets_them_back_when_the_store_opens() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().to_str().expect("utf-8 path");
    let (ndjson, data) = (format!("{dir}/ndjson"), format!("{dir}/data"));
    let fresh = format!("{dir}/fresh.db");
    drop(
        SqlStore::open_sqlite(Path::new(&fresh))
            .await
            .expect("a fresh store"),
    );
    let all_indexes = index_names(Path::new(&fresh));

    let db = load_and_kill(&ndjson, &data, "always").await;
    let left = index_names(Path::new(&db));
    assert!(
        left.len() < all_indexes.len(),
        "the load had not set any index aside: {left:?}"
    );

    let store = SqlStore::open_sqlite(Path::new(&db)).await.expect("open");
    assert_eq!(
        index_names(Path::new(&db)),
        all_indexes,
        "opening the store builds the indexes the dead load set aside"
    );
    assert_whole_batches(&store).await;
    // A loaded Coverage is found by its identifier through the rebuilt token index.
    let first = std::fs::read_to_string(format!("{ndjson}/Coverage.ndjson")).expect("ndjson");
    let first: serde_json::Value =
        serde_json::from_str(first.lines().next().expect("a Coverage")).expect("json");
    let identifier = &first["identifier"][0];
    let page = store
        .search(&SearchQuery {
            rtype: ResourceType::Coverage,
            clauses: vec![Clause::Token {
                param: "identifier",
                any_of: vec![TokenMatch {
                    system: identifier["system"].as_str().map(String::from),
                    code: identifier["value"].as_str().map(String::from),
                }],
            }],
            count: 10,
            after_id: None,
            with_total: true,
            access: Access::All,
        })
        .await
        .expect("search");
    assert_eq!(page.total, Some(1), "{identifier} finds its Coverage");
    drop(store);
    assert_rerun_completes(&ndjson, &data, &db).await;
}
