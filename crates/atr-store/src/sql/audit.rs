//! The access audit log (`audit_event`): one row per audited interaction, appended inside the
//! transaction of the change it records (or on its own for reads and refusals), read newest
//! first with keyset paging.

use super::db::{Col, Pool, Row, Tx};
use super::statement::Statement;
use crate::{AuditQuery, AuditRecord, StoreError};

const INSERT: &str = "INSERT INTO audit_event (id, recorded, client_id, action, subtype, entity, detail, status) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";

const SELECT: &str =
    "SELECT id, recorded, client_id, action, subtype, entity, detail, status FROM audit_event";

const COLS: [Col; 8] = [
    Col::Text,
    Col::Int,
    Col::Text,
    Col::Text,
    Col::Text,
    Col::OptText,
    Col::OptText,
    Col::Int,
];

fn args(e: &AuditRecord) -> [super::db::Arg; 8] {
    [
        e.id.as_str().into(),
        e.recorded.into(),
        e.client_id.as_str().into(),
        e.action.as_str().into(),
        e.subtype.as_str().into(),
        e.entity.clone().into(),
        e.detail.clone().into(),
        e.status.into(),
    ]
}

fn record(mut r: Row) -> AuditRecord {
    AuditRecord {
        id: r.text(0),
        recorded: r.int(1),
        client_id: r.text(2),
        action: r.text(3),
        subtype: r.text(4),
        entity: r.opt_text(5),
        detail: r.opt_text(6),
        status: r.int(7),
    }
}

/// Appends `e` inside `tx`, so it commits (or vanishes) with the change it records.
pub(crate) async fn insert_in(tx: &mut Tx, e: &AuditRecord) -> Result<(), StoreError> {
    tx.execute(INSERT, &args(e)).await.map(|_| ())
}

pub(crate) async fn insert(pool: &Pool, e: &AuditRecord) -> Result<(), StoreError> {
    let mut tx = pool.begin_write().await?;
    insert_in(&mut tx, e).await?;
    tx.commit().await
}

pub(crate) async fn list(pool: &Pool, q: &AuditQuery) -> Result<Vec<AuditRecord>, StoreError> {
    let mut st = Statement::new(SELECT);
    st.push(" WHERE 1 = 1");
    if let Some(since) = q.since {
        st.push(" AND recorded >= ").bind(since);
    }
    if let Some(until) = q.until {
        st.push(" AND recorded <= ").bind(until);
    }
    if let Some(client) = &q.client_id {
        st.push(" AND client_id = ").bind(client.as_str());
    }
    if let Some(entity) = &q.entity {
        st.push(" AND entity = ").bind(entity.as_str());
    }
    if let Some((recorded, id)) = &q.before {
        st.push(" AND (recorded < ")
            .bind(*recorded)
            .push(" OR (recorded = ")
            .bind(*recorded)
            .push(" AND id < ")
            .bind(id.as_str())
            .push("))");
    }
    st.push(" ORDER BY recorded DESC, id DESC LIMIT ")
        .bind(i64::from(q.limit));
    let rows = pool.fetch_all(&st.sql, &st.args, &COLS).await?;
    Ok(rows.into_iter().map(record).collect())
}

pub(crate) async fn get(pool: &Pool, id: &str) -> Result<Option<AuditRecord>, StoreError> {
    Ok(pool
        .fetch_optional(&format!("{SELECT} WHERE id = $1"), &[id.into()], &COLS)
        .await?
        .map(record))
}
