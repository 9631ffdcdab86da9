//! `atr-list-change` Subscriptions and their transactional outbox.
//!
//! [`record_group_version`] runs inside every transaction that makes a new Group version: it
//! takes the next event number of each live Subscription on that Group and stores the event, so
//! the change and its notifications commit (or vanish) together. Delivery leases a Subscription
//! (one instance, one attempt at a time, so its events go out in order) and records how the
//! attempt ended; every state change is one conditional `UPDATE`, so a client's write and a
//! delivery racing on the same row both take effect.

use super::db::{Arg, Col, Dialect, Pool, Row, Tx, values_clause};
use crate::{
    AuditRecord, DeliveryResult, StoreError, SubscriptionEvent, SubscriptionRecord,
    SubscriptionWrite,
};

const COLS: [Col; 17] = [
    Col::Text,
    Col::Text,
    Col::Text,
    Col::Text,
    Col::Int,
    Col::Text,
    Col::Int,
    Col::Int,
    Col::Int,
    Col::Int,
    Col::Bool,
    Col::OptInt,
    Col::Int,
    Col::Int,
    Col::OptInt,
    Col::OptText,
    Col::OptText,
];

const SELECT_COLS: &str = "id, client_id, group_id, status, version, body, created_at, updated_at, \
     events_since_start, delivered_through, handshake_pending, heartbeat_secs, failures, \
     next_attempt_at, last_sent_at, last_error, lease_owner";

/// Statuses that collect events (an `off` Subscription hears nothing).
const LIVE: &str = "status <> 'off'";

fn record(mut r: Row) -> SubscriptionRecord {
    SubscriptionRecord {
        id: r.text(0),
        client_id: r.text(1),
        group_id: r.text(2),
        status: r.text(3),
        version: r.int(4),
        body: r.text(5),
        created_at: r.int(6),
        updated_at: r.int(7),
        events_since_start: r.int(8),
        delivered_through: r.int(9),
        handshake_pending: r.bool(10),
        heartbeat_secs: r.opt_int(11),
        failures: r.int(12),
        next_attempt_at: r.int(13),
        last_sent_at: r.opt_int(14),
        last_error: r.opt_text(15),
    }
}

/// The outbox: one event per live Subscription on `group_id` for its new `version`, numbered in
/// this transaction. `RETURNING` gives each row's number as this statement set it, so a
/// Subscription created concurrently (after the `UPDATE` looked) cannot get a number it was not
/// given.
pub(crate) async fn record_group_version(
    tx: &mut Tx,
    group_id: &str,
    version: i64,
    occurred_at: i64,
) -> Result<(), StoreError> {
    let numbered = tx
        .fetch_all(
            &format!(
                "UPDATE subscription SET events_since_start = events_since_start + 1 \
                 WHERE group_id = $1 AND {LIVE} RETURNING id, events_since_start"
            ),
            &[group_id.into()],
            &[Col::Text, Col::Int],
        )
        .await?;
    const WIDTH: usize = 5;
    for chunk in numbered.chunks(super::index_rows::ROWS_PER_INSERT) {
        let mut sql = String::from(
            "INSERT INTO subscription_event (subscription_id, event_number, group_id, group_version, occurred_at) VALUES ",
        );
        values_clause(&mut sql, chunk.len(), WIDTH);
        let mut args = Vec::with_capacity(chunk.len() * WIDTH);
        for row in chunk {
            let mut row = row.clone();
            args.push(Arg::Text(row.text(0)));
            args.push(Arg::Int(row.int(1)));
            args.push(group_id.into());
            args.push(version.into());
            args.push(occurred_at.into());
        }
        tx.execute(&sql, &args).await?;
    }
    Ok(())
}

pub(crate) async fn create(
    pool: &Pool,
    w: &SubscriptionWrite,
    now: i64,
    audit: Option<&AuditRecord>,
) -> Result<SubscriptionRecord, StoreError> {
    let status = if w.off { "off" } else { "requested" };
    let mut tx = pool.begin_write().await?;
    let row = tx
        .fetch_optional(
            &format!(
                "INSERT INTO subscription (id, client_id, group_id, status, version, body, created_at, \
                 updated_at, events_since_start, delivered_through, handshake_pending, heartbeat_secs, \
                 failures, next_attempt_at) \
                 VALUES ($1, $2, $3, $4, 1, $5, $6, $6, 0, 0, $7, $8, 0, $6) RETURNING {SELECT_COLS}"
            ),
            &[
                w.id.as_str().into(),
                w.client_id.as_str().into(),
                w.group_id.as_str().into(),
                Arg::Static(status),
                w.body.as_str().into(),
                now.into(),
                (!w.off).into(),
                w.heartbeat_secs.into(),
            ],
            &COLS,
        )
        .await
        .map_err(|e| already_exists(e, &w.id))?;
    if let Some(a) = audit {
        super::audit::insert_in(&mut tx, a).await?;
    }
    tx.commit().await?;
    row.map(record)
        .ok_or_else(|| StoreError::Corrupt("INSERT … RETURNING returned nothing".into()))
}

fn already_exists(e: StoreError, id: &str) -> StoreError {
    if let StoreError::Database(sqlx::Error::Database(db)) = &e
        && db.is_unique_violation()
    {
        return StoreError::AlreadyExists {
            rtype: "Subscription".into(),
            id: id.to_string(),
        };
    }
    e
}

pub(crate) async fn get(pool: &Pool, id: &str) -> Result<Option<SubscriptionRecord>, StoreError> {
    Ok(pool
        .fetch_optional(
            &format!("SELECT {SELECT_COLS} FROM subscription WHERE id = $1"),
            &[id.into()],
            &COLS,
        )
        .await?
        .map(record))
}

pub(crate) async fn list(
    pool: &Pool,
    client_id: Option<&str>,
) -> Result<Vec<SubscriptionRecord>, StoreError> {
    let rows = match client_id {
        Some(c) => {
            pool.fetch_all(
                &format!("SELECT {SELECT_COLS} FROM subscription WHERE client_id = $1 ORDER BY id"),
                &[c.into()],
                &COLS,
            )
            .await?
        }
        None => {
            pool.fetch_all(
                &format!("SELECT {SELECT_COLS} FROM subscription ORDER BY id"),
                &[],
                &COLS,
            )
            .await?
        }
    };
    Ok(rows.into_iter().map(record).collect())
}

pub(crate) async fn update(
    pool: &Pool,
    w: &SubscriptionWrite,
    expected_version: Option<i64>,
    now: i64,
    audit: Option<&AuditRecord>,
) -> Result<Option<SubscriptionRecord>, StoreError> {
    let mut tx = pool.begin_write().await?;
    let Some(current) = tx
        .fetch_optional(
            "SELECT version FROM subscription WHERE id = $1",
            &[w.id.as_str().into()],
            &[Col::Int],
        )
        .await?
        .map(|r| r.int(0))
    else {
        return Ok(None);
    };
    if let Some(expected) = expected_version
        && expected != current
    {
        return Err(StoreError::VersionConflict {
            rtype: "Subscription".into(),
            id: w.id.clone(),
            expected,
            current,
        });
    }
    // The new status is computed from the row as it is when the UPDATE runs, not as it was read:
    // a delivery finishing at the same moment is not undone.
    let state = if w.off {
        "status = 'off', handshake_pending = FALSE"
    } else {
        "status = CASE WHEN status = 'off' THEN 'requested' ELSE status END, \
         handshake_pending = CASE WHEN status = 'off' THEN TRUE ELSE handshake_pending END, \
         failures = CASE WHEN status = 'off' THEN 0 ELSE failures END, \
         next_attempt_at = $6"
    };
    let row = tx
        .fetch_optional(
            &format!(
                "UPDATE subscription SET group_id = $1, body = $2, heartbeat_secs = $3, \
                 version = version + 1, updated_at = $6, {state} \
                 WHERE id = $4 AND version = $5 RETURNING {SELECT_COLS}"
            ),
            &[
                w.group_id.as_str().into(),
                w.body.as_str().into(),
                w.heartbeat_secs.into(),
                w.id.as_str().into(),
                current.into(),
                now.into(),
            ],
            &COLS,
        )
        .await?;
    if let (Some(a), Some(_)) = (audit, &row) {
        super::audit::insert_in(&mut tx, a).await?;
    }
    tx.commit().await?;
    match row {
        Some(r) => Ok(Some(record(r))),
        None => Err(StoreError::VersionConflict {
            rtype: "Subscription".into(),
            id: w.id.clone(),
            expected: current,
            current: current + 1,
        }),
    }
}

pub(crate) async fn delete(
    pool: &Pool,
    id: &str,
    audit: Option<&AuditRecord>,
) -> Result<bool, StoreError> {
    let mut tx = pool.begin_write().await?;
    if let Some(a) = audit {
        super::audit::insert_in(&mut tx, a).await?;
    }
    tx.execute(
        "DELETE FROM subscription_event WHERE subscription_id = $1",
        &[id.into()],
    )
    .await?;
    let n = tx
        .execute("DELETE FROM subscription WHERE id = $1", &[id.into()])
        .await?;
    tx.commit().await?;
    Ok(n == 1)
}

pub(crate) async fn events(
    pool: &Pool,
    id: &str,
    after: i64,
    until: i64,
    limit: u32,
) -> Result<Vec<SubscriptionEvent>, StoreError> {
    Ok(pool
        .fetch_all(
            "SELECT event_number, group_id, group_version, occurred_at FROM subscription_event \
             WHERE subscription_id = $1 AND event_number > $2 AND event_number <= $3 \
             ORDER BY event_number LIMIT $4",
            &[
                id.into(),
                after.into(),
                until.into(),
                i64::from(limit).into(),
            ],
            &[Col::Int, Col::Text, Col::Int, Col::Int],
        )
        .await?
        .into_iter()
        .map(|mut r| SubscriptionEvent {
            event_number: r.int(0),
            group_id: r.text(1),
            group_version: r.int(2),
            occurred_at: r.int(3),
        })
        .collect())
}

pub(crate) async fn prune(pool: &Pool, before: i64) -> Result<u64, StoreError> {
    let mut tx = pool.begin_write().await?;
    let n = tx
        .execute(
            "DELETE FROM subscription_event WHERE occurred_at < $1 AND event_number <= \
             COALESCE((SELECT delivered_through FROM subscription s WHERE s.id = subscription_event.subscription_id), \
             event_number)",
            &[before.into()],
        )
        .await?;
    tx.commit().await?;
    Ok(n)
}

/// What makes a Subscription due at `$1` (µs).
const DUE: &str = "status <> 'off' AND next_attempt_at <= $1 \
     AND (lease_until IS NULL OR lease_until < $1) \
     AND (handshake_pending OR delivered_through < events_since_start \
          OR (heartbeat_secs IS NOT NULL AND last_sent_at + heartbeat_secs * 1000000 <= $1))";

pub(crate) async fn claim(
    pool: &Pool,
    owner: &str,
    now: i64,
    lease_until: i64,
    limit: u32,
) -> Result<Vec<SubscriptionRecord>, StoreError> {
    // A read first: an idle server does not take the write lock at every poll.
    let due = pool
        .fetch_optional(
            &format!("SELECT id FROM subscription WHERE {DUE} LIMIT 1"),
            &[now.into()],
            &[Col::Text],
        )
        .await?;
    if due.is_none() {
        return Ok(Vec::new());
    }
    // PostgreSQL: rows another transaction holds (a Group change numbering its events, another
    // instance's claim) are skipped, not waited for: waiting on them in a different order is a
    // deadlock. SQLite has one writer at a time and no row locks.
    let skip_locked = match pool.dialect() {
        Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
        Dialect::Sqlite => "",
    };
    let mut tx = pool.begin_write().await?;
    // The lease condition is repeated outside the subquery, so a row is claimed only if it is
    // still free when it is updated.
    let rows = tx
        .fetch_all(
            &format!(
                "UPDATE subscription SET lease_owner = $2, lease_until = $3 \
                 WHERE id IN (SELECT id FROM subscription WHERE {DUE} ORDER BY next_attempt_at LIMIT $4{skip_locked}) \
                 AND (lease_until IS NULL OR lease_until < $1) AND status <> 'off' \
                 RETURNING {SELECT_COLS}"
            ),
            &[
                now.into(),
                owner.into(),
                lease_until.into(),
                i64::from(limit).into(),
            ],
            &COLS,
        )
        .await?;
    tx.commit().await?;
    Ok(rows.into_iter().map(record).collect())
}

pub(crate) async fn finish(
    pool: &Pool,
    id: &str,
    owner: &str,
    result: &DeliveryResult,
    now: i64,
) -> Result<bool, StoreError> {
    // `off` always stays off: the client's word wins over a delivery that was in flight.
    let (set, extra): (String, Vec<Arg>) = match result {
        DeliveryResult::Handshake => (
            "status = CASE WHEN status = 'off' THEN 'off' ELSE 'active' END, handshake_pending = FALSE, \
             failures = 0, last_error = NULL, last_sent_at = $3, next_attempt_at = $3"
                .into(),
            vec![],
        ),
        DeliveryResult::Events { through } => (
            "status = CASE WHEN status = 'error' THEN 'active' ELSE status END, \
             delivered_through = CASE WHEN delivered_through < $4 THEN $4 ELSE delivered_through END, \
             failures = 0, last_error = NULL, last_sent_at = $3, next_attempt_at = $3"
                .into(),
            vec![(*through).into()],
        ),
        DeliveryResult::Heartbeat => (
            "status = CASE WHEN status = 'error' THEN 'active' ELSE status END, \
             failures = 0, last_error = NULL, last_sent_at = $3, next_attempt_at = $3"
                .into(),
            vec![],
        ),
        DeliveryResult::Failed {
            reason,
            retry_at,
            error_after,
        } => (
            "status = CASE WHEN status = 'off' THEN 'off' \
             WHEN handshake_pending OR failures + 1 >= $6 THEN 'error' ELSE status END, \
             failures = failures + 1, last_error = $4, \
             next_attempt_at = CASE WHEN $5 > $3 THEN $5 ELSE $3 END"
                .into(),
            vec![
                reason.as_str().into(),
                (*retry_at).into(),
                (*error_after).into(),
            ],
        ),
    };
    let mut args: Vec<Arg> = vec![id.into(), owner.into(), now.into()];
    args.extend(extra);
    let mut tx = pool.begin_write().await?;
    let n = tx
        .execute(
            &format!(
                "UPDATE subscription SET {set}, lease_owner = NULL, lease_until = NULL \
                 WHERE id = $1 AND lease_owner = $2"
            ),
            &args,
        )
        .await?;
    tx.commit().await?;
    Ok(n == 1)
}
