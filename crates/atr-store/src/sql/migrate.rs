//! Versioned schema migrations, one list per dialect, applied in order in one transaction each.

use super::db::{Arg, Col, Pool};
use crate::StoreError;

pub(crate) struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

pub(crate) async fn run(pool: &Pool, migrations: &[Migration]) -> Result<(), StoreError> {
    let create = "CREATE TABLE IF NOT EXISTS atr_schema_migration (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)";
    let mut tx = pool.begin_write().await?;
    tx.execute(create, &[]).await?;
    if let super::db::Tx::Postgres(_) = tx {
        // Several instances starting at once: one migrates, the others wait and find it done.
        tx.execute("SELECT pg_advisory_xact_lock(7366010001)", &[])
            .await?;
    }
    let applied: Vec<i64> = tx
        .fetch_all("SELECT version FROM atr_schema_migration", &[], &[Col::Int])
        .await?
        .iter()
        .map(|r| r.int(0))
        .collect();
    for m in migrations.iter().filter(|m| !applied.contains(&m.version)) {
        tx.execute_script(m.sql)
            .await
            .map_err(|e| StoreError::Migration(format!("{} ({}): {e}", m.version, m.name)))?;
        tx.execute(
            "INSERT INTO atr_schema_migration (version, name, applied_at) VALUES ($1, $2, $3)",
            &[
                Arg::Int(m.version),
                Arg::from(m.name),
                Arg::Int(atr_model::instant::now_micros()),
            ],
        )
        .await?;
    }
    if let Some(newest) = applied.iter().max() {
        let known = migrations.iter().map(|m| m.version).max().unwrap_or(0);
        if *newest > known {
            return Err(StoreError::Migration(format!(
                "the database is at schema version {newest}, newer than this atr knows ({known})"
            )));
        }
    }
    tx.commit().await
}
