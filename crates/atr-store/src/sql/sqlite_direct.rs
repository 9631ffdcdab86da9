//! Streaming a Group's member rows straight from the SQLite file, on a blocking thread.
//!
//! sqlx runs SQLite on a worker thread and hands every row to the async side through a channel:
//! one wake-up and context switch per row, which held streaming to ~75 MB/s. Here one blocking
//! thread reads rows with borrowed column values and sends ready 256 KB JSON chunks, one message
//! each. It opens its own read-only connection: WAL readers never wait for the writer.

use std::path::PathBuf;

use atr_model::group::{shown_change_type, write_member};
use bytes::Bytes;
use rusqlite::{OptionalExtension, params};
use tokio::sync::mpsc;

use super::sqlite::{DirectMode, direct_err as err, open_direct};
use crate::StoreError;

/// Streams the members of `group_id` at `version` into `out` (runs on a blocking thread).
pub(crate) fn stream(
    path: PathBuf,
    group_id: String,
    version: i64,
    derive: bool,
    baseline: Option<i64>,
    chunk: usize,
    out: mpsc::Sender<Result<Bytes, StoreError>>,
) {
    if let Err(e) = pump(&path, &group_id, version, derive, baseline, chunk, &out) {
        let _ = out.blocking_send(Err(e));
    }
}

fn pump(
    path: &std::path::Path,
    group_id: &str,
    version: i64,
    derive: bool,
    baseline: Option<i64>,
    chunk: usize,
    out: &mpsc::Sender<Result<Bytes, StoreError>>,
) -> Result<(), StoreError> {
    let conn = open_direct(path, DirectMode::Read, std::time::Duration::from_secs(30))?;
    // One read transaction: the version check and the rows see the same snapshot.
    conn.execute_batch("BEGIN").map_err(err)?;
    let current: Option<i64> = conn
        .query_row(
            "SELECT version FROM resource_version WHERE rtype = 'Group' AND id = ?1 AND is_current",
            params![group_id],
            |r| r.get(0),
        )
        .optional()
        .map_err(err)?;
    let mut stmt = if current == Some(version) {
        conn.prepare(
            "SELECT from_version, change_type, inactive, extensions, body FROM group_member \
             WHERE group_id = ?1 AND to_version IS NULL ORDER BY ord",
        )
    } else {
        conn.prepare(
            "SELECT from_version, change_type, inactive, extensions, body FROM group_member \
             WHERE group_id = ?1 AND from_version <= ?2 AND (to_version IS NULL OR to_version > ?2) ORDER BY ord",
        )
    }
    .map_err(err)?;
    let mut rows = if current == Some(version) {
        stmt.query(params![group_id])
    } else {
        stmt.query(params![group_id, version])
    }
    .map_err(err)?;
    let mut buf: Vec<u8> = Vec::with_capacity(chunk + 4096);
    let mut first = true;
    while let Some(row) = rows.next().map_err(err)? {
        if !first {
            buf.push(b',');
        }
        first = false;
        let from_version: i64 = row.get(0).map_err(err)?;
        let stored = row
            .get_ref(1)
            .map_err(err)?
            .as_str_or_null()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let inactive: bool = row.get(2).map_err(err)?;
        let code = shown_change_type(derive, from_version, version, baseline, stored, inactive);
        let extensions = row
            .get_ref(3)
            .map_err(err)?
            .as_str()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let body = row
            .get_ref(4)
            .map_err(err)?
            .as_str()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        write_member(&mut buf, code, extensions, body);
        if buf.len() >= chunk {
            let full = std::mem::replace(&mut buf, Vec::with_capacity(chunk + 4096));
            if out.blocking_send(Ok(Bytes::from(full))).is_err() {
                return Ok(()); // the client went away
            }
        }
    }
    if !buf.is_empty() {
        let _ = out.blocking_send(Ok(Bytes::from(buf)));
    }
    Ok(())
}
