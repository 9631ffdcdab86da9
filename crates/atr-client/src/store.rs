//! The consumer store: one SQLite file under the store directory, with every pull of every list
//! (its export job, manifest and files, so an interrupted pull resumes), the members of each
//! completed pull (what `show` and `diff` read), and a directory of the people and providers
//! those members name, kept across pulls so an incremental pull (which sends only what changed)
//! still shows every member's name. Raw NDJSON stays in `pulls/<id>/` beside the database.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use crate::ClientError;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS pull (
    id               INTEGER PRIMARY KEY,
    base_url         TEXT NOT NULL,
    group_id         TEXT NOT NULL,
    state            TEXT NOT NULL,  -- started | complete | failed
    operation        TEXT,           -- $davinci-data-export or $export
    since            TEXT,
    status_url       TEXT,
    manifest         TEXT,
    transaction_time TEXT,
    started_at       TEXT NOT NULL,
    finished_at      TEXT,
    group_version    TEXT,
    member_count     INTEGER,
    resource_count   INTEGER,
    error            TEXT
);
CREATE INDEX IF NOT EXISTS pull_list ON pull (base_url, group_id, id);
CREATE TABLE IF NOT EXISTS pull_file (
    pull_id  INTEGER NOT NULL,
    idx      INTEGER NOT NULL,
    rtype    TEXT    NOT NULL,
    url      TEXT    NOT NULL,
    path     TEXT    NOT NULL,
    complete BOOLEAN NOT NULL DEFAULT FALSE,
    bytes    INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (pull_id, idx)
);
CREATE TABLE IF NOT EXISTS member (
    pull_id       INTEGER NOT NULL,
    ord           INTEGER NOT NULL,
    patient       TEXT    NOT NULL,
    member_id     TEXT,
    name          TEXT,
    provider      TEXT,
    provider_name TEXT,
    coverage      TEXT,
    plan          TEXT,
    period_start  TEXT,
    period_end    TEXT,
    change_type   TEXT,
    inactive      BOOLEAN NOT NULL,
    PRIMARY KEY (pull_id, ord)
);
CREATE TABLE IF NOT EXISTS subscription (
    base_url   TEXT NOT NULL,
    id         TEXT NOT NULL,
    group_id   TEXT NOT NULL,
    endpoint   TEXT NOT NULL,
    secret     TEXT NOT NULL,  -- sent back by the Producer in every notification's Authorization
    last_event INTEGER NOT NULL DEFAULT 0,  -- the highest event number handled
    status     TEXT NOT NULL,
    PRIMARY KEY (base_url, id)
);
CREATE TABLE IF NOT EXISTS directory (
    base_url  TEXT NOT NULL,
    reference TEXT NOT NULL,  -- Type/id
    display   TEXT,
    member_id TEXT,
    plan      TEXT,
    PRIMARY KEY (base_url, reference)
);
";

/// The consumer store at a directory.
pub struct ConsumerStore {
    dir: PathBuf,
    db: Connection,
}

/// One pull of a list.
#[derive(Debug, Clone, Serialize)]
pub struct PullRecord {
    pub id: i64,
    pub base_url: String,
    pub group_id: String,
    pub state: String,
    pub operation: Option<String>,
    pub since: Option<String>,
    pub status_url: Option<String>,
    #[serde(skip)]
    pub manifest: Option<String>,
    pub transaction_time: Option<String>,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub group_version: Option<String>,
    pub member_count: Option<i64>,
    pub resource_count: Option<i64>,
    pub error: Option<String>,
}

/// One file of a pull's manifest.
#[derive(Debug, Clone)]
pub struct PullFile {
    pub idx: i64,
    pub rtype: String,
    pub url: String,
    pub path: PathBuf,
    pub complete: bool,
}

/// One member entry of a completed pull.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemberRow {
    pub patient: String,
    pub member_id: Option<String>,
    pub name: Option<String>,
    pub provider: Option<String>,
    pub provider_name: Option<String>,
    pub coverage: Option<String>,
    pub plan: Option<String>,
    pub period_start: Option<String>,
    pub period_end: Option<String>,
    pub change_type: Option<String>,
    pub inactive: bool,
}

/// A Subscription this Consumer made.
#[derive(Debug, Clone, Serialize)]
pub struct SubscriptionRecord {
    pub base_url: String,
    pub id: String,
    pub group_id: String,
    pub endpoint: String,
    #[serde(skip)]
    pub secret: String,
    pub last_event: i64,
    pub status: String,
}

/// A person or provider as members show them.
#[derive(Debug, Clone, Default)]
pub struct DirectoryEntry {
    pub reference: String,
    pub display: Option<String>,
    pub member_id: Option<String>,
    pub plan: Option<String>,
}

const PULL_COLS: &str = "id, base_url, group_id, state, operation, since, status_url, manifest, \
     transaction_time, started_at, finished_at, group_version, member_count, resource_count, error";

fn pull_from(r: &rusqlite::Row<'_>) -> rusqlite::Result<PullRecord> {
    Ok(PullRecord {
        id: r.get(0)?,
        base_url: r.get(1)?,
        group_id: r.get(2)?,
        state: r.get(3)?,
        operation: r.get(4)?,
        since: r.get(5)?,
        status_url: r.get(6)?,
        manifest: r.get(7)?,
        transaction_time: r.get(8)?,
        started_at: r.get(9)?,
        finished_at: r.get(10)?,
        group_version: r.get(11)?,
        member_count: r.get(12)?,
        resource_count: r.get(13)?,
        error: r.get(14)?,
    })
}

fn now_text() -> String {
    httpdate::fmt_http_date(std::time::SystemTime::now())
}

impl ConsumerStore {
    /// Opens (creating) the store in `dir`.
    pub fn open(dir: &Path) -> Result<ConsumerStore, ClientError> {
        std::fs::create_dir_all(dir.join("pulls")).map_err(|e| {
            ClientError::Config(format!(
                "creating the store directory {}: {e}",
                dir.display()
            ))
        })?;
        let db = Connection::open(dir.join("consumer.db"))?;
        db.pragma_update(None, "journal_mode", "WAL")?;
        db.pragma_update(None, "synchronous", "NORMAL")?;
        db.busy_timeout(std::time::Duration::from_secs(30))?;
        db.execute_batch(SCHEMA)?;
        Ok(ConsumerStore {
            dir: dir.to_path_buf(),
            db,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where a pull's files go.
    pub fn pull_dir(&self, pull_id: i64) -> PathBuf {
        self.dir.join("pulls").join(pull_id.to_string())
    }

    pub fn start_pull(
        &self,
        base_url: &str,
        group_id: &str,
        since: Option<&str>,
    ) -> Result<PullRecord, ClientError> {
        self.db.execute(
            "INSERT INTO pull (base_url, group_id, state, since, started_at) VALUES (?1, ?2, 'started', ?3, ?4)",
            params![base_url, group_id, since, now_text()],
        )?;
        let id = self.db.last_insert_rowid();
        std::fs::create_dir_all(self.pull_dir(id))?;
        self.pull(id)?
            .ok_or_else(|| ClientError::NotFound(format!("pull {id} vanished")))
    }

    pub fn pull(&self, id: i64) -> Result<Option<PullRecord>, ClientError> {
        Ok(self
            .db
            .query_row(
                &format!("SELECT {PULL_COLS} FROM pull WHERE id = ?1"),
                params![id],
                pull_from,
            )
            .optional()?)
    }

    /// The pulls of a list, oldest first.
    pub fn pulls(&self, base_url: &str, group_id: &str) -> Result<Vec<PullRecord>, ClientError> {
        let mut st = self.db.prepare(&format!(
            "SELECT {PULL_COLS} FROM pull WHERE base_url = ?1 AND group_id = ?2 ORDER BY id"
        ))?;
        let rows = st.query_map(params![base_url, group_id], pull_from)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The latest pull of a list in `state`.
    fn latest(
        &self,
        base_url: &str,
        group_id: &str,
        state: &str,
    ) -> Result<Option<PullRecord>, ClientError> {
        Ok(self
            .db
            .query_row(
                &format!(
                    "SELECT {PULL_COLS} FROM pull WHERE base_url = ?1 AND group_id = ?2 AND state = ?3 \
                     ORDER BY id DESC LIMIT 1"
                ),
                params![base_url, group_id, state],
                pull_from,
            )
            .optional()?)
    }

    /// The latest unfinished pull of a list (to resume).
    pub fn unfinished(
        &self,
        base_url: &str,
        group_id: &str,
    ) -> Result<Option<PullRecord>, ClientError> {
        self.latest(base_url, group_id, "started")
    }

    /// The latest completed pull of a list.
    pub fn last_complete(
        &self,
        base_url: &str,
        group_id: &str,
    ) -> Result<Option<PullRecord>, ClientError> {
        self.latest(base_url, group_id, "complete")
    }

    pub fn set_job(&self, id: i64, operation: &str, status_url: &str) -> Result<(), ClientError> {
        self.db.execute(
            "UPDATE pull SET operation = ?1, status_url = ?2 WHERE id = ?3",
            params![operation, status_url, id],
        )?;
        Ok(())
    }

    /// Records the manifest and its files (once: a resumed pull keeps its file rows).
    pub fn set_manifest(
        &mut self,
        id: i64,
        manifest: &str,
        transaction_time: Option<&str>,
        files: &[(String, String)],
    ) -> Result<(), ClientError> {
        let dir = self.pull_dir(id);
        let tx = self.db.transaction()?;
        tx.execute(
            "UPDATE pull SET manifest = ?1, transaction_time = ?2 WHERE id = ?3",
            params![manifest, transaction_time, id],
        )?;
        for (idx, (rtype, url)) in files.iter().enumerate() {
            let path = dir.join(format!("{idx:04}-{rtype}.ndjson"));
            tx.execute(
                "INSERT OR IGNORE INTO pull_file (pull_id, idx, rtype, url, path) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![id, idx as i64, rtype, url, path.to_string_lossy()],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    pub fn files(&self, id: i64) -> Result<Vec<PullFile>, ClientError> {
        let mut st = self.db.prepare(
            "SELECT idx, rtype, url, path, complete FROM pull_file WHERE pull_id = ?1 ORDER BY idx",
        )?;
        let rows = st.query_map(params![id], |r| {
            Ok(PullFile {
                idx: r.get(0)?,
                rtype: r.get(1)?,
                url: r.get(2)?,
                path: PathBuf::from(r.get::<_, String>(3)?),
                complete: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn file_done(&self, id: i64, idx: i64, bytes: u64) -> Result<(), ClientError> {
        self.db.execute(
            "UPDATE pull_file SET complete = TRUE, bytes = ?1 WHERE pull_id = ?2 AND idx = ?3",
            params![bytes as i64, id, idx],
        )?;
        Ok(())
    }

    /// Forgets a pull's job (it expired on the Producer): the next run starts a new one.
    pub fn fail(&self, id: i64, error: &str) -> Result<(), ClientError> {
        self.db.execute(
            "UPDATE pull SET state = 'failed', error = ?1, finished_at = ?2 WHERE id = ?3",
            params![error, now_text(), id],
        )?;
        Ok(())
    }

    /// Starts storing a pull's snapshot: directory entries and member rows are written as they
    /// are read, in one transaction that [`SnapshotWriter::finish`] commits (dropped unfinished,
    /// nothing of it stays).
    pub fn snapshot(&mut self, pull: &PullRecord) -> Result<SnapshotWriter<'_>, ClientError> {
        let tx = self.db.transaction()?;
        tx.execute("DELETE FROM member WHERE pull_id = ?1", params![pull.id])?;
        Ok(SnapshotWriter {
            tx,
            base_url: pull.base_url.clone(),
            pull_id: pull.id,
            members: 0,
        })
    }

    /// The members of a completed pull, in the list's order.
    pub fn members(&self, pull_id: i64) -> Result<Vec<MemberRow>, ClientError> {
        let mut st = self.db.prepare(
            "SELECT patient, member_id, name, provider, provider_name, coverage, plan, period_start, period_end, \
             change_type, inactive FROM member WHERE pull_id = ?1 ORDER BY ord",
        )?;
        let rows = st.query_map(params![pull_id], |r| {
            Ok(MemberRow {
                patient: r.get(0)?,
                member_id: r.get(1)?,
                name: r.get(2)?,
                provider: r.get(3)?,
                provider_name: r.get(4)?,
                coverage: r.get(5)?,
                plan: r.get(6)?,
                period_start: r.get(7)?,
                period_end: r.get(8)?,
                change_type: r.get(9)?,
                inactive: r.get(10)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn put_subscription(&self, s: &SubscriptionRecord) -> Result<(), ClientError> {
        self.db.execute(
            "INSERT INTO subscription (base_url, id, group_id, endpoint, secret, last_event, status) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (base_url, id) DO UPDATE SET \
             group_id = excluded.group_id, endpoint = excluded.endpoint, secret = excluded.secret, \
             last_event = excluded.last_event, status = excluded.status",
            params![s.base_url, s.id, s.group_id, s.endpoint, s.secret, s.last_event, s.status],
        )?;
        Ok(())
    }

    /// This Consumer's Subscriptions (at one Producer, or everywhere).
    pub fn subscriptions(
        &self,
        base_url: Option<&str>,
    ) -> Result<Vec<SubscriptionRecord>, ClientError> {
        let mut st = self.db.prepare(
            "SELECT base_url, id, group_id, endpoint, secret, last_event, status FROM subscription \
             WHERE ?1 IS NULL OR base_url = ?1 ORDER BY base_url, id",
        )?;
        let rows = st.query_map(params![base_url], |r| {
            Ok(SubscriptionRecord {
                base_url: r.get(0)?,
                id: r.get(1)?,
                group_id: r.get(2)?,
                endpoint: r.get(3)?,
                secret: r.get(4)?,
                last_event: r.get(5)?,
                status: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Records the highest event number handled (never lowers it).
    pub fn event_handled(&self, base_url: &str, id: &str, number: i64) -> Result<(), ClientError> {
        self.db.execute(
            "UPDATE subscription SET last_event = MAX(last_event, ?1) WHERE base_url = ?2 AND id = ?3",
            params![number, base_url, id],
        )?;
        Ok(())
    }

    /// Sets the highest event number handled (after `$events` recovery, or to replay).
    pub fn set_last_event(&self, base_url: &str, id: &str, number: i64) -> Result<(), ClientError> {
        self.db.execute(
            "UPDATE subscription SET last_event = ?1 WHERE base_url = ?2 AND id = ?3",
            params![number, base_url, id],
        )?;
        Ok(())
    }

    pub fn set_subscription_status(
        &self,
        base_url: &str,
        id: &str,
        status: &str,
    ) -> Result<(), ClientError> {
        self.db.execute(
            "UPDATE subscription SET status = ?1 WHERE base_url = ?2 AND id = ?3",
            params![status, base_url, id],
        )?;
        Ok(())
    }
}

/// A pull's snapshot being written (see [`ConsumerStore::snapshot`]).
pub struct SnapshotWriter<'a> {
    tx: rusqlite::Transaction<'a>,
    base_url: String,
    pull_id: i64,
    members: i64,
}

impl SnapshotWriter<'_> {
    /// Adds or replaces a directory entry.
    pub fn put_entry(&self, e: &DirectoryEntry) -> Result<(), ClientError> {
        self.tx
            .prepare_cached(
                "INSERT INTO directory (base_url, reference, display, member_id, plan) VALUES (?1, ?2, ?3, ?4, ?5) \
                 ON CONFLICT (base_url, reference) DO UPDATE SET display = excluded.display, \
                 member_id = excluded.member_id, plan = excluded.plan",
            )?
            .execute(params![self.base_url, e.reference, e.display, e.member_id, e.plan])?;
        Ok(())
    }

    /// The entry for `reference`, from this pull or an earlier one.
    pub fn lookup(&self, reference: &str) -> Result<Option<DirectoryEntry>, ClientError> {
        Ok(self
            .tx
            .prepare_cached(
                "SELECT reference, display, member_id, plan FROM directory WHERE base_url = ?1 AND reference = ?2",
            )?
            .query_row(params![self.base_url, reference], |r| {
                Ok(DirectoryEntry {
                    reference: r.get(0)?,
                    display: r.get(1)?,
                    member_id: r.get(2)?,
                    plan: r.get(3)?,
                })
            })
            .optional()?)
    }

    /// Appends a member row (in the list's order).
    pub fn add_member(&mut self, m: &MemberRow) -> Result<(), ClientError> {
        self.tx
            .prepare_cached(
                "INSERT INTO member (pull_id, ord, patient, member_id, name, provider, provider_name, coverage, plan, \
                 period_start, period_end, change_type, inactive) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
            )?
            .execute(params![
                self.pull_id,
                self.members,
                m.patient,
                m.member_id,
                m.name,
                m.provider,
                m.provider_name,
                m.coverage,
                m.plan,
                m.period_start,
                m.period_end,
                m.change_type,
                m.inactive
            ])?;
        self.members += 1;
        Ok(())
    }

    pub fn member_count(&self) -> i64 {
        self.members
    }

    /// Marks the pull complete and commits everything.
    pub fn finish(
        self,
        group_version: Option<&str>,
        resource_count: i64,
    ) -> Result<(), ClientError> {
        self.tx.execute(
            "UPDATE pull SET state = 'complete', finished_at = ?1, group_version = ?2, member_count = ?3, \
             resource_count = ?4 WHERE id = ?5",
            params![now_text(), group_version, self.members, resource_count, self.pull_id],
        )?;
        self.tx.commit()?;
        Ok(())
    }
}
