//! The checkpoints of a SQLite bulk load, run on a thread of their own instead of the writer's.
//!
//! In WAL mode a commit appends pages to the log and a checkpoint copies them into the database
//! file, syncing both. SQLite runs that checkpoint inside the commit that crosses
//! `wal_autocheckpoint`, so the single writer of a load stopped for every one: the copy, then the
//! syncs (at 1M members about 13 s of a 104 s load were waits on `fsync` alone). During a bulk load
//! the writer's connections do not checkpoint; this thread does, passively (a passive checkpoint
//! never blocks a writer), as soon as there are committed frames.
//!
//! The log starts again from its beginning only when a transaction begins after a checkpoint has
//! copied all of it, which a writer that begins its next batch at once never sees: left alone the
//! log grew to the size of the whole load (5 GB at 1M members). So once it passes
//! [`MAX_LOG_FRAMES`], [`BackgroundCheckpoint::wait_for_room`] holds the writer until the
//! checkpointer has caught up, and the writer's next commit starts the log afresh. The last
//! checkpoint truncates the log file.
//!
//! Durability is unchanged: commits are not synced either way (`synchronous = NORMAL`), a
//! checkpoint syncs, and a process that dies leaves committed frames in the log for the next
//! connection to copy.

use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;

use super::sqlite::{DirectMode, direct_err as err, open_direct};
use crate::StoreError;

/// Log frames (pages) past which the writer waits for the checkpointer to catch up, so that its
/// next commit starts the log afresh: 1 GiB of 4 KiB pages, about the size the log file reaches.
const MAX_LOG_FRAMES: u64 = 1 << 18;

/// How long the checkpointer sleeps, when the log holds nothing to copy, unless a commit wakes
/// it.
const IDLE: Duration = Duration::from_millis(50);

/// The longest [`BackgroundCheckpoint::wait_for_room`] holds a writer.
const MAX_WAIT: Duration = Duration::from_secs(5);

/// The checkpointing thread of one bulk load. Dropping it stops the thread after a last
/// checkpoint.
pub(crate) struct BackgroundCheckpoint {
    shared: Arc<Shared>,
    max_log_frames: u64,
    thread: Option<JoinHandle<()>>,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Default)]
struct State {
    stop: bool,
    running: bool,
    /// Commits the writer has reported.
    commits: u64,
    /// Commits made before the last finished checkpoint began: all of their frames were there
    /// for it to copy.
    covered: u64,
    /// Frames in the log at the last checkpoint.
    log: u64,
    /// Frames the last checkpoint left uncopied (readers still need them).
    backlog: u64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is plain numbers, whole after any panic.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl BackgroundCheckpoint {
    /// Starts checkpointing the database at `path`.
    pub(crate) fn start(path: &Path) -> Result<Self, StoreError> {
        Self::start_with_limit(path, MAX_LOG_FRAMES)
    }

    fn start_with_limit(path: &Path, max_log_frames: u64) -> Result<Self, StoreError> {
        // Only the truncating last checkpoint waits for others.
        let conn = open_direct(path, DirectMode::Write, Duration::from_secs(5))?;
        // The pool's durability: a checkpoint syncs the log before it copies, the file after.
        conn.execute_batch("PRAGMA synchronous = NORMAL")
            .map_err(err)?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                running: true,
                ..State::default()
            }),
            changed: Condvar::new(),
        });
        let theirs = shared.clone();
        let thread = std::thread::Builder::new()
            .name("atr-checkpoint".into())
            .spawn(move || {
                if let Err(e) = run(&conn, &theirs) {
                    // The frames stay in the log, safe; the next connection's automatic
                    // checkpoint copies them. Only the load's speed suffers.
                    tracing::warn!(error = %e, "background checkpoints stopped");
                }
                theirs.lock().running = false;
                theirs.changed.notify_all();
            })
            .map_err(|e| StoreError::Direct(format!("cannot start the checkpointer: {e}")))?;
        Ok(BackgroundCheckpoint {
            shared,
            max_log_frames,
            thread: Some(thread),
        })
    }

    /// Call before a batch, holding no transaction. When the log has grown past its limit,
    /// blocks until a checkpoint that began after the last commit has copied all of it, so that
    /// the batch's commit starts the log afresh. A reader that keeps old frames needed (a long
    /// export on a running server) holds the writer back [`MAX_WAIT`] at most.
    pub(crate) fn wait_for_room(&self) {
        let st = self.shared.lock();
        if st.log <= self.max_log_frames {
            return;
        }
        let target = st.commits;
        // Timing out only lets the log grow further: the load goes on either way.
        let _ = self.shared.changed.wait_timeout_while(st, MAX_WAIT, |st| {
            st.running && (st.covered < target || st.backlog > 0)
        });
    }

    /// Whether the thread still checkpoints. A writer must not turn its own checkpoints off
    /// otherwise: nothing would keep the log from growing.
    pub(crate) fn is_running(&self) -> bool {
        self.shared.lock().running
    }

    /// Call after each commit: wakes the checkpointer.
    pub(crate) fn committed(&self) {
        self.shared.lock().commits += 1;
        self.shared.changed.notify_all();
    }
}

impl Drop for BackgroundCheckpoint {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.changed.notify_all();
        if let Some(t) = self.thread.take() {
            // A panic on that thread has nothing left to report: the frames are in the log.
            let _ = t.join();
        }
    }
}

fn run(conn: &Connection, shared: &Shared) -> Result<(), StoreError> {
    loop {
        // Read before the checkpoint: the pass covers every commit counted so far, and the last
        // pass every commit made before the stop.
        let (stopping, commits) = {
            let st = shared.lock();
            (st.stop, st.commits)
        };
        // The last one, with no writer left, also cuts the log file back to nothing.
        let mode = if stopping { "TRUNCATE" } else { "PASSIVE" };
        let (busy, log, copied): (i64, i64, i64) = conn
            .query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .map_err(err)?;
        let mut st = shared.lock();
        // -1 for both when the database is not in WAL mode: nothing to copy.
        st.log = u64::try_from(log).unwrap_or(0);
        st.backlog = u64::try_from(log - copied).unwrap_or(0);
        st.covered = commits;
        shared.changed.notify_all();
        if stopping {
            return Ok(());
        }
        // Frames left and nobody else checkpointing: go on at once. Otherwise sleep until the
        // next commit (or a while: the pool's commits are not reported).
        if st.backlog == 0 || busy != 0 {
            let _ = shared
                .changed
                .wait_timeout_while(st, IDLE, |st| st.commits == commits && !st.stop);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wal_bytes(db: &Path) -> u64 {
        let mut wal = db.as_os_str().to_owned();
        wal.push("-wal");
        std::fs::metadata(wal).map_or(0, |m| m.len())
    }

    /// A writer that never checkpoints and always begins its next transaction at once: with
    /// `wait_for_room` before each, the log starts afresh past its limit instead of growing with
    /// the load, and the checkpointer's last pass leaves it empty.
    #[test]
    fn the_log_stays_bounded_and_ends_empty() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = dir.path().join("t.db");
        let writer = Connection::open(&db).expect("open");
        writer
            .execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA wal_autocheckpoint = 0; \
                 CREATE TABLE t (body BLOB NOT NULL);",
            )
            .expect("schema");
        let limit = 64;
        let checkpoint = BackgroundCheckpoint::start_with_limit(&db, limit).expect("start");
        let page = 4096u64;
        let body = vec![7u8; 3000];
        let mut largest = 0;
        // 200 transactions of ~40 pages each: ~8,000 pages in all, 125 times the limit.
        for _ in 0..200 {
            checkpoint.wait_for_room();
            let tx = writer.unchecked_transaction().expect("begin");
            for _ in 0..40 {
                tx.execute("INSERT INTO t (body) VALUES (?1)", [&body])
                    .expect("insert");
            }
            tx.commit().expect("commit");
            checkpoint.committed();
            largest = largest.max(wal_bytes(&db));
        }
        // Left alone it reaches the whole load (8,000 pages). The margin over the limit is for a
        // checkpointer descheduled on a busy machine while the writer goes on.
        assert!(
            largest < 32 * limit * page,
            "the log reached {largest} bytes for a limit of {limit} pages"
        );
        drop(checkpoint);
        assert_eq!(wal_bytes(&db), 0, "the last checkpoint truncates the log");
        let rows: i64 = writer
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .expect("count");
        assert_eq!(rows, 8000);
    }
}
