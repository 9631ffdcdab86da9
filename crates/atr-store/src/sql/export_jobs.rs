//! Bulk export jobs as durable rows with leases: any instance claims an accepted job, or a
//! running one whose lease ran out (its worker died), and renews the lease while it works.

use super::db::{Arg, Col, Dialect, Pool, Row};
use crate::{ExportAdmission, ExportJob, ExportLimits, ExportStatus, StoreError};

const JOB_COLS: [Col; 15] = [
    Col::Text,
    Col::Text,
    Col::Text,
    Col::Int,
    Col::Int,
    Col::Text,
    Col::Text,
    Col::Text,
    Col::Int,
    Col::Int,
    Col::Int,
    Col::Int,
    Col::Int,
    Col::OptText,
    Col::OptInt,
];

const JOB_SELECT: &str = "SELECT id, client_id, group_id, group_version, transaction_time, request, params, status, \
     created_at, expires_at, attempts, done, planned, result, finished_at FROM export_job";

fn job_from(mut r: Row) -> Result<ExportJob, StoreError> {
    let status = r.text(7);
    Ok(ExportJob {
        id: r.text(0),
        client_id: r.text(1),
        group_id: r.text(2),
        group_version: r.int(3),
        transaction_time: r.int(4),
        request: r.text(5),
        params: r.text(6),
        status: ExportStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("export job status {status:?}")))?,
        created_at: r.int(8),
        expires_at: r.int(9),
        attempts: r.int(10),
        done: r.int(11),
        planned: r.int(12),
        result: r.opt_text(13),
        finished_at: r.opt_int(14),
    })
}

/// Stores a new job when the limits allow. Counting and inserting happen under the write lock
/// (SQLite) or an advisory lock (PostgreSQL), so two kick-offs cannot both take the last slot.
pub(crate) async fn create(
    pool: &Pool,
    job: &ExportJob,
    limits: ExportLimits,
) -> Result<ExportAdmission, StoreError> {
    let mut tx = pool.begin_write().await?;
    if tx.dialect() == Dialect::Postgres {
        tx.execute("SELECT pg_advisory_xact_lock(7366010002)", &[])
            .await?;
    }
    let counts = tx
        .fetch_all(
            "SELECT client_id FROM export_job WHERE status IN ('accepted', 'running')",
            &[],
            &[Col::Text],
        )
        .await?;
    let mine = counts
        .into_iter()
        .map(|mut r| r.text(0))
        .collect::<Vec<_>>();
    if mine.iter().filter(|c| **c == job.client_id).count() >= limits.per_client as usize {
        return Ok(ExportAdmission::ClientBusy);
    }
    if mine.len() >= limits.total as usize {
        return Ok(ExportAdmission::ServerBusy);
    }
    tx.execute(
        "INSERT INTO export_job (id, client_id, group_id, group_version, transaction_time, request, params, status, \
         created_at, expires_at, attempts, done, planned) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 0, 0, 0)",
        &[
            job.id.as_str().into(),
            job.client_id.as_str().into(),
            job.group_id.as_str().into(),
            job.group_version.into(),
            job.transaction_time.into(),
            job.request.as_str().into(),
            job.params.as_str().into(),
            job.status.as_str().into(),
            job.created_at.into(),
            job.expires_at.into(),
        ],
    )
    .await?;
    tx.commit().await?;
    Ok(ExportAdmission::Admitted)
}

pub(crate) async fn get(pool: &Pool, id: &str) -> Result<Option<ExportJob>, StoreError> {
    let sql = format!("{JOB_SELECT} WHERE id = $1");
    pool.fetch_optional(&sql, &[id.into()], &JOB_COLS)
        .await?
        .map(job_from)
        .transpose()
}

/// Claims the oldest job that is waiting or whose worker's lease ran out.
pub(crate) async fn claim(
    pool: &Pool,
    owner: &str,
    now: i64,
    lease_until: i64,
) -> Result<Option<ExportJob>, StoreError> {
    let candidates = pool
        .fetch_all(
            "SELECT id FROM export_job WHERE status = 'accepted' \
             OR (status = 'running' AND lease_until < $1) ORDER BY created_at LIMIT 8",
            &[now.into()],
            &[Col::Text],
        )
        .await?;
    for mut c in candidates {
        let id = c.text(0);
        // Conditional update: of several instances racing for one job, one wins.
        let mut tx = pool.begin_write().await?;
        let won = tx
            .execute(
                "UPDATE export_job SET status = 'running', lease_owner = $1, lease_until = $2, \
                 attempts = attempts + 1, done = 0, planned = 0 \
                 WHERE id = $3 AND (status = 'accepted' OR (status = 'running' AND lease_until < $4))",
                &[owner.into(), lease_until.into(), id.as_str().into(), now.into()],
            )
            .await?;
        tx.commit().await?;
        if won == 1 {
            return get(pool, &id).await;
        }
    }
    Ok(None)
}

/// Extends the lease and records progress; false when the job is no longer this worker's (it was
/// cancelled, or another instance took it over).
pub(crate) async fn renew(
    pool: &Pool,
    id: &str,
    owner: &str,
    lease_until: i64,
    done: i64,
    planned: i64,
) -> Result<bool, StoreError> {
    let mut tx = pool.begin_write().await?;
    let n = tx
        .execute(
            "UPDATE export_job SET lease_until = $1, done = $2, planned = $3 \
             WHERE id = $4 AND lease_owner = $5 AND status = 'running'",
            &[
                lease_until.into(),
                done.into(),
                planned.into(),
                id.into(),
                owner.into(),
            ],
        )
        .await?;
    tx.commit().await?;
    Ok(n == 1)
}

/// Ends a running job as completed or failed; false when it was no longer this worker's.
pub(crate) async fn finish(
    pool: &Pool,
    id: &str,
    owner: &str,
    status: ExportStatus,
    result: &str,
    done: i64,
    now: i64,
) -> Result<bool, StoreError> {
    let mut tx = pool.begin_write().await?;
    let n = tx
        .execute(
            "UPDATE export_job SET status = $1, result = $2, finished_at = $3, done = $4, planned = $4, \
             lease_owner = NULL, lease_until = NULL \
             WHERE id = $5 AND lease_owner = $6 AND status = 'running'",
            &[
                status.as_str().into(),
                result.into(),
                now.into(),
                done.into(),
                id.into(),
                owner.into(),
            ],
        )
        .await?;
    tx.commit().await?;
    Ok(n == 1)
}

/// Marks a job cancelled (its worker stops at its next lease renewal); the job as it was before,
/// or `None` when there is no such job or it was already cancelled.
pub(crate) async fn cancel(
    pool: &Pool,
    id: &str,
    now: i64,
) -> Result<Option<ExportJob>, StoreError> {
    let Some(job) = get(pool, id).await? else {
        return Ok(None);
    };
    if job.status == ExportStatus::Cancelled {
        return Ok(None);
    }
    let mut tx = pool.begin_write().await?;
    let n = tx
        .execute(
            "UPDATE export_job SET status = 'cancelled', finished_at = $1, lease_owner = NULL, \
             lease_until = NULL WHERE id = $2 AND status <> 'cancelled'",
            &[Arg::Int(now), id.into()],
        )
        .await?;
    tx.commit().await?;
    Ok((n == 1).then_some(job))
}

/// Jobs whose files should go: expired, or cancelled before `cancelled_before` (late enough that
/// a worker still running it has seen the cancellation).
pub(crate) async fn finished_ids(
    pool: &Pool,
    now: i64,
    cancelled_before: i64,
) -> Result<Vec<String>, StoreError> {
    Ok(pool
        .fetch_all(
            "SELECT id FROM export_job WHERE expires_at < $1 \
             OR (status = 'cancelled' AND finished_at < $2)",
            &[now.into(), cancelled_before.into()],
            &[Col::Text],
        )
        .await?
        .into_iter()
        .map(|mut r| r.text(0))
        .collect())
}

pub(crate) async fn delete(pool: &Pool, id: &str) -> Result<(), StoreError> {
    let mut tx = pool.begin_write().await?;
    tx.execute("DELETE FROM export_job WHERE id = $1", &[id.into()])
        .await?;
    tx.commit().await
}
