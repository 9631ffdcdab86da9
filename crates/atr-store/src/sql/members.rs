//! Group member rows: writing a roster as the difference from the current one, and streaming the
//! members of any version back out as JSON.

use std::collections::HashMap;

use atr_model::group::{MemberEntry, shown_change_type, write_member};
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::mpsc;

use super::db::{Arg, Col, Pool, Tx};
use super::index_rows::{ROWS_PER_INSERT, insert_rows};
use super::statement::Statement;
use crate::StoreError;

/// A current row, as much of it as a roster diff needs.
struct CurrentRow {
    row_id: i64,
    content_hash: i64,
    inactive: bool,
    ord: i64,
}

/// Makes `members` the roster of Group `group_id` at `version`: rows whose content is unchanged
/// stay (they span both versions), changed entries get a new row in the same position, entries
/// not in `members` end at `version`. Returns the number of entries at `version`.
///
/// `derive` (attribution lists) computes `changeType`: `new` (or `dropped` when it arrives
/// inactive), `changed`, or `dropped` when an active entry turns inactive; see
/// [`writer_or_derived`] for when the writer's own code is kept.
pub(crate) async fn write_roster(
    tx: &mut Tx,
    group_id: &str,
    version: i64,
    members: Vec<MemberEntry>,
    derive: bool,
    has_previous: bool,
) -> Result<i64, StoreError> {
    let mut current: HashMap<String, CurrentRow> = HashMap::new();
    let mut next_ord = 0;
    if has_previous {
        tx.for_each_row(
            "SELECT row_id, member_key, content_hash, inactive, ord FROM group_member \
             WHERE group_id = $1 AND to_version IS NULL",
            &[Arg::from(group_id)],
            &[Col::Int, Col::Text, Col::Int, Col::Bool, Col::Int],
            |mut row| {
                let ord = row.int(4);
                next_ord = next_ord.max(ord + 1);
                current.insert(
                    row.text(1),
                    CurrentRow {
                        row_id: row.int(0),
                        content_hash: row.int(2),
                        inactive: row.bool(3),
                        ord,
                    },
                );
                Ok(())
            },
        )
        .await?;
    }

    let mut ended: Vec<i64> = Vec::new();
    let mut inserts: Vec<[Arg; 14]> = Vec::new();
    let mut count = 0i64;
    for entry in members {
        count += 1;
        let (ord, derived) = match current.remove(&entry.key) {
            Some(old) if old.content_hash == entry.content_hash => continue,
            Some(old) => {
                ended.push(old.row_id);
                let code = if entry.inactive && !old.inactive {
                    "dropped"
                } else {
                    "changed"
                };
                (old.ord, code)
            }
            None => {
                next_ord += 1;
                (next_ord - 1, if entry.inactive { "dropped" } else { "new" })
            }
        };
        let change_type = writer_or_derived(entry.change_type, derived, derive, has_previous);
        inserts.push([
            group_id.into(),
            ord.into(),
            entry.key.into(),
            entry.patient.into(),
            entry.coverage.into(),
            entry.provider.into(),
            entry.period_start.into(),
            entry.period_end.into(),
            entry.inactive.into(),
            change_type.into(),
            entry.content_hash.into(),
            entry.extensions.into(),
            entry.body.into(),
            version.into(),
        ]);
        if inserts.len() >= ROWS_PER_INSERT * 4 {
            flush_inserts(tx, std::mem::take(&mut inserts)).await?;
        }
    }
    ended.extend(current.values().map(|r| r.row_id));
    end_rows(tx, version, &ended).await?;
    flush_inserts(tx, inserts).await?;
    Ok(count)
}

/// The `changeType` a row written now stores. On an attribution list's first version the writer's
/// code is kept (a payer loading a list it tracked elsewhere knows what changed there); after that
/// the server derives it from the versions it keeps, because the code is defined against the
/// previous version: a client that reads a list and puts it back echoes codes that were true of
/// the version it read, not of the one it writes. `cancelled` cannot be derived and is kept.
fn writer_or_derived(
    sent: Option<String>,
    derived: &str,
    derive: bool,
    has_previous: bool,
) -> Option<String> {
    if !derive {
        return sent;
    }
    match sent {
        Some(code) if !has_previous || code == "cancelled" => Some(code),
        _ => Some(derived.to_string()),
    }
}

async fn flush_inserts(tx: &mut Tx, rows: Vec<[Arg; 14]>) -> Result<(), StoreError> {
    insert_rows(
        tx,
        "group_member",
        "(group_id, ord, member_key, patient, coverage, provider, period_start, period_end, \
         inactive, change_type, content_hash, extensions, body, from_version)",
        rows,
    )
    .await
}

async fn end_rows(tx: &mut Tx, version: i64, row_ids: &[i64]) -> Result<(), StoreError> {
    for chunk in row_ids.chunks(ROWS_PER_INSERT) {
        let mut st = Statement::new("UPDATE group_member SET to_version = ");
        st.bind(version)
            .push(" WHERE row_id IN ")
            .bind_list(chunk.iter().copied());
        tx.execute(&st.sql, &st.args).await?;
    }
    Ok(())
}

/// Ends every current row of a Group (it was deleted at `version`).
pub(crate) async fn end_all(tx: &mut Tx, group_id: &str, version: i64) -> Result<(), StoreError> {
    tx.execute(
        "UPDATE group_member SET to_version = $1 WHERE group_id = $2 AND to_version IS NULL",
        &[version.into(), group_id.into()],
    )
    .await?;
    Ok(())
}

/// Bytes per chunk handed to the HTTP body: big enough for few wake-ups, small enough that a slow
/// client holds little memory.
pub(crate) const CHUNK: usize = 256 * 1024;

/// The newest version of Group `group_id` before `version` whose list status is `final` (the
/// last published list, which `changeType` is derived against). Reads the headers newest first and
/// stops at the first final one: a reconciliation round's versions, not the Group's whole history.
pub(crate) async fn last_final_before(
    pool: &Pool,
    group_id: &str,
    version: i64,
) -> Result<Option<i64>, StoreError> {
    let args = [Arg::from(group_id), Arg::Int(version)];
    let mut rows = pool.rows(
        "SELECT version, body FROM resource_version WHERE rtype = 'Group' AND id = $1 \
         AND version < $2 AND NOT deleted ORDER BY version DESC",
        &args,
        &[Col::Int, Col::Bytes],
    );
    while let Some(row) = rows.next().await {
        let mut row = row?;
        let header: serde_json::Value = serde_json::from_slice(&row.bytes(1))
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        if atr_model::group::list_status(&header) == Some("final") {
            return Ok(Some(row.int(0)));
        }
    }
    Ok(None)
}

/// Streams the member elements of a Group version, comma-separated, into `out`. Rows are
/// immutable once their version exists (only `to_version` is set later, and never to a version
/// at or below one already written), so no transaction is needed for a consistent read.
pub(crate) async fn stream(
    pool: Pool,
    group_id: String,
    version: i64,
    derive: bool,
    baseline: Option<i64>,
    out: mpsc::Sender<Result<Bytes, StoreError>>,
) {
    if let Err(e) = pump(&pool, &group_id, version, derive, baseline, &out).await {
        let _ = out.send(Err(e)).await;
    }
}

async fn pump(
    pool: &Pool,
    group_id: &str,
    version: i64,
    derive: bool,
    baseline: Option<i64>,
    out: &mpsc::Sender<Result<Bytes, StoreError>>,
) -> Result<(), StoreError> {
    let is_current = pool
        .fetch_optional(
            "SELECT version FROM resource_version WHERE rtype = 'Group' AND id = $1 AND is_current",
            &[group_id.into()],
            &[Col::Int],
        )
        .await?
        .is_some_and(|r| r.int(0) == version);
    // The current version reads its rows off a partial index in order; older versions filter
    // every row the Group ever had.
    let (sql, args): (&str, Vec<Arg>) = if is_current {
        (
            "SELECT from_version, change_type, inactive, extensions, body FROM group_member \
             WHERE group_id = $1 AND to_version IS NULL ORDER BY ord",
            vec![group_id.into()],
        )
    } else {
        (
            "SELECT from_version, change_type, inactive, extensions, body FROM group_member \
             WHERE group_id = $1 AND from_version <= $2 AND (to_version IS NULL OR to_version > $2) ORDER BY ord",
            vec![group_id.into(), version.into()],
        )
    };
    let cols = [Col::Int, Col::OptText, Col::Bool, Col::Text, Col::Text];
    let mut rows = pool.rows(sql, &args, &cols);
    let mut buf: Vec<u8> = Vec::with_capacity(CHUNK + 4096);
    let mut first = true;
    while let Some(row) = rows.next().await {
        let mut row = row?;
        if !first {
            buf.push(b',');
        }
        first = false;
        let stored = row.opt_text(1);
        let code = shown_change_type(
            derive,
            row.int(0),
            version,
            baseline,
            stored.as_deref(),
            row.bool(2),
        );
        write_member(&mut buf, code, &row.text(3), &row.text(4));
        if buf.len() >= CHUNK {
            let chunk = Bytes::from(std::mem::replace(
                &mut buf,
                Vec::with_capacity(CHUNK + 4096),
            ));
            if out.send(Ok(chunk)).await.is_err() {
                return Ok(()); // the client went away
            }
        }
    }
    if !buf.is_empty() {
        let _ = out.send(Ok(Bytes::from(buf))).await;
    }
    Ok(())
}
