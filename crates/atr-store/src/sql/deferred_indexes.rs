//! The secondary indexes a large load sets aside and builds once at its end.
//!
//! A loaded row lands at a random place in these indexes (a code, a reference target, a patient
//! key): once they outgrow the page cache, each row costs a few page reads and writes, and at a
//! million members they were most of the SQLite writer's time. Built afterwards, an index is one
//! sort of its keys. The indexes a load itself reads (primary keys, the current version of an id,
//! a resource's own index rows, a Group's current roster) stay, so replacing existing resources
//! during a load is as correct and as fast as ever.
//!
//! A load that dies before its end leaves the indexes missing until the next store open (any
//! `atr serve` or `atr load` start), where [`restore`] builds whatever is missing. Queries in
//! between, and those of a server running during a load, are slower, never wrong: every index
//! here only speeds up lookups the tables can answer without it.

use super::db::{Col, Dialect, Pool};
use crate::StoreError;

/// Name and definition of each deferrable index, word for word as the migrations create it (a
/// test holds the two together).
pub(crate) const DEFERRED: &[(&str, &str)] = &[
    (
        "resource_updated",
        "resource_version (rtype, last_updated) WHERE is_current",
    ),
    ("search_token_code", "search_token (rtype, param, code)"),
    ("search_string_norm", "search_string (rtype, param, norm)"),
    ("search_ref_target", "search_ref (rtype, param, target)"),
    (
        "group_member_patient",
        "group_member (patient) WHERE to_version IS NULL",
    ),
    (
        "group_member_provider",
        "group_member (provider) WHERE to_version IS NULL",
    ),
    (
        "group_member_coverage",
        "group_member (coverage) WHERE to_version IS NULL",
    ),
];

/// Drops the deferrable indexes (a load is about to begin).
pub(crate) async fn set_aside(pool: &Pool) -> Result<(), StoreError> {
    let mut tx = pool.begin_write().await?;
    for (name, _) in DEFERRED {
        tx.execute(&format!("DROP INDEX IF EXISTS {name}"), &[])
            .await?;
    }
    tx.commit().await
}

/// Which of the set-aside indexes [`restore`] builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    All,
    /// Those over resources, not over Group rosters: a load builds them once its resources other
    /// than Groups are in, while it parses the Groups.
    Resources,
}

impl Scope {
    fn covers(self, definition: &str) -> bool {
        self == Scope::All || !definition.starts_with("group_member ")
    }
}

/// Builds the deferrable indexes in `scope` that are missing; returns how many it built.
pub(crate) async fn restore(pool: &Pool, scope: Scope) -> Result<usize, StoreError> {
    let mut missing = missing(pool).await?;
    missing.retain(|(_, definition)| scope.covers(definition));
    if missing.is_empty() {
        return Ok(0);
    }
    tracing::info!(
        indexes = missing.len(),
        "building the indexes a bulk load set aside"
    );
    let mut tx = pool.begin_write().await?;
    match pool.dialect() {
        // The sort of each build spills to disk past its memory: give it room, for this
        // transaction only.
        Dialect::Postgres => {
            tx.execute("SET LOCAL maintenance_work_mem = '512MB'", &[])
                .await?;
        }
        // Pages in the cache bound the sorter's memory too; helper threads sort in parallel.
        Dialect::Sqlite => {
            tx.execute("PRAGMA threads = 2", &[]).await?;
        }
    }
    for (name, definition) in &missing {
        tx.execute(
            &format!("CREATE INDEX IF NOT EXISTS {name} ON {definition}"),
            &[],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(missing.len())
}

async fn missing(pool: &Pool) -> Result<Vec<(&'static str, &'static str)>, StoreError> {
    let sql = match pool.dialect() {
        Dialect::Sqlite => "SELECT name FROM sqlite_master WHERE type = 'index'",
        Dialect::Postgres => {
            "SELECT indexname::text FROM pg_indexes WHERE schemaname = current_schema()"
        }
    };
    let present: Vec<String> = pool
        .fetch_all(sql, &[], &[Col::Text])
        .await?
        .iter_mut()
        .map(|r| r.text(0))
        .collect();
    Ok(DEFERRED
        .iter()
        .filter(|(name, _)| !present.iter().any(|p| p == name))
        .copied()
        .collect())
}

#[cfg(test)]
mod tests {
    use super::DEFERRED;

    #[test]
    fn every_deferred_index_is_defined_alike_by_both_dialects_migrations() {
        let dialects = [
            include_str!("../../migrations/sqlite/0001_resources.sql").to_string()
                + include_str!("../../migrations/sqlite/0002_auth.sql"),
            include_str!("../../migrations/postgres/0001_resources.sql").to_string()
                + include_str!("../../migrations/postgres/0002_auth.sql"),
        ];
        for sql in &dialects {
            for (name, definition) in DEFERRED {
                let ddl = format!("CREATE INDEX {name} ON {definition};");
                assert!(sql.contains(&ddl), "the migrations do not say {ddl}");
            }
        }
    }
}
