//! [`SqlStore`]: the [`Store`] over SQLite or PostgreSQL.

mod access;
mod audit;
mod auth;
mod claims;
mod db;
mod deferred_indexes;
mod export_jobs;
mod export_plan;
mod export_read;
mod index_rows;
mod member_ops;
mod members;
mod migrate;
mod pg_copy;
mod postgres;
mod search;
mod sqlite;
mod sqlite_bulk;
mod sqlite_checkpoint;
mod sqlite_direct;
mod statement;
mod subscriptions;

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use atr_model::ResourceType;
use atr_model::instant::now_micros;
use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use self::db::{Arg, Col, Dialect, Pool, Row, Tx};
pub use self::export_read::{ExportStream, is_provider_type};
use crate::{
    Access, AuditQuery, AuditRecord, ClientRecord, DeferIndexes, MemberStream, ResourceWrite,
    SearchPage, SearchQuery, Store, StoreError, StoredResource, TokenKey, VersionInfo, WriteMode,
    WriteOutcome,
};

/// The store over one SQL database.
#[derive(Clone)]
pub struct SqlStore {
    pool: Pool,
    /// Where searches run: on PostgreSQL a pool of its own whose sessions cache plans; on SQLite
    /// the same pool.
    searches: Pool,
    /// SQLite, between `begin_bulk_load` and `finish_bulk_load`: the load's checkpointer (shared
    /// by clones, like the pool).
    bulk_checkpoint: Arc<std::sync::Mutex<Option<Arc<sqlite_checkpoint::BackgroundCheckpoint>>>>,
}

/// Stops a load's checkpointer: its last checkpoint and the thread's end wait on the disk, so not
/// on the runtime.
async fn end_checkpoint(
    checkpoint: Option<Arc<sqlite_checkpoint::BackgroundCheckpoint>>,
) -> Result<(), StoreError> {
    if checkpoint.is_none() {
        return Ok(());
    }
    tokio::task::spawn_blocking(move || drop(checkpoint))
        .await
        .map_err(|e| StoreError::Direct(format!("the checkpointer failed: {e}")))
}

impl SqlStore {
    fn bulk_checkpoint(
        &self,
    ) -> std::sync::MutexGuard<'_, Option<Arc<sqlite_checkpoint::BackgroundCheckpoint>>> {
        // Nothing can be left half-done under this lock: a poisoned one holds a usable value.
        self.bulk_checkpoint
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Opens the database at `url` (`sqlite://PATH`, `sqlite:PATH` or `postgres://…`) and brings
    /// its schema up to date.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Self::open_postgres(url, None).await
        } else if url.starts_with("sqlite:") {
            Self::migrated(Pool::Sqlite(sqlite::connect(url).await?)).await
        } else {
            Err(StoreError::UnsupportedUrl(crate::error::without_password(
                url,
            )))
        }
    }

    /// Opens (creating if needed) the SQLite file at `path`.
    pub async fn open_sqlite(path: &Path) -> Result<Self, StoreError> {
        Self::migrated(Pool::Sqlite(sqlite::connect_file(path).await?)).await
    }

    /// Opens PostgreSQL; with `schema`, in that schema (created if absent): tests and benchmarks
    /// use a fresh schema each.
    pub async fn open_postgres(url: &str, schema: Option<&str>) -> Result<Self, StoreError> {
        let pools = postgres::connect(url, schema).await?;
        let mut store = Self::migrated(Pool::Postgres(pools.main)).await?;
        store.searches = Pool::Postgres(pools.searches);
        Ok(store)
    }

    /// Bytes the database (this store's schema, on PostgreSQL) takes on disk.
    async fn stored_bytes(&self) -> Result<u64, StoreError> {
        let sql = match self.pool.dialect() {
            Dialect::Sqlite => {
                "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()"
            }
            Dialect::Postgres => {
                "SELECT CAST(COALESCE(sum(pg_total_relation_size(c.oid)), 0) AS BIGINT) \
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = current_schema() AND c.relkind = 'r'"
            }
        };
        let row = self.pool.fetch_optional(sql, &[], &[Col::Int]).await?;
        Ok(row.map_or(0, |r| r.int(0).max(0) as u64))
    }

    async fn migrated(pool: Pool) -> Result<Self, StoreError> {
        let migrations = match pool.dialect() {
            Dialect::Sqlite => sqlite::MIGRATIONS,
            Dialect::Postgres => postgres::MIGRATIONS,
        };
        migrate::run(&pool, migrations).await?;
        // A bulk load that died left indexes unbuilt.
        deferred_indexes::restore(&pool, deferred_indexes::Scope::All).await?;
        Ok(SqlStore {
            searches: pool.clone(),
            pool,
            bulk_checkpoint: Arc::default(),
        })
    }

    /// The PostgreSQL schemas whose names start with `prefix` (tests and benchmarks make one each).
    pub async fn postgres_schemas(url: &str, prefix: &str) -> Result<Vec<String>, StoreError> {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect(url)
            .await?;
        let names: Vec<(String,)> =
            sqlx::query_as("SELECT nspname::text FROM pg_namespace WHERE starts_with(nspname, $1)")
                .bind(prefix)
                .fetch_all(&pool)
                .await?;
        pool.close().await;
        Ok(names.into_iter().map(|(n,)| n).collect())
    }

    /// Drops the schemas named `prefix` + a UUID v7 (`simple` form) made more than `max_age` ago:
    /// tests and benchmarks make a fresh schema each and would otherwise leave them forever.
    /// Returns how many were dropped.
    pub async fn drop_stale_postgres_schemas(
        url: &str,
        prefix: &str,
        max_age: std::time::Duration,
    ) -> Result<usize, StoreError> {
        let cutoff = now_micros() / 1000 - max_age.as_millis() as i64;
        let mut dropped = 0;
        for name in Self::postgres_schemas(url, prefix).await? {
            // A UUID v7 begins with its creation time: 48 bits of Unix milliseconds.
            let made = name
                .get(prefix.len()..prefix.len() + 12)
                .and_then(|hex| i64::from_str_radix(hex, 16).ok());
            if made.is_some_and(|ms| ms < cutoff) {
                Self::drop_postgres_schema(url, &name).await?;
                dropped += 1;
            }
        }
        Ok(dropped)
    }

    /// Drops a PostgreSQL schema and everything in it.
    pub async fn drop_postgres_schema(url: &str, schema: &str) -> Result<(), StoreError> {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect(url)
            .await?;
        let quoted = schema.replace('"', "\"\"");
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP SCHEMA IF EXISTS \"{quoted}\" CASCADE"
        )))
        .execute(&pool)
        .await?;
        pool.close().await;
        Ok(())
    }

    /// Closes the pools (tests drop schemas after this).
    pub async fn close(&self) {
        for pool in [&self.pool, &self.searches] {
            match pool {
                Pool::Sqlite(p) => p.close().await,
                Pool::Postgres(p) => p.close().await,
            }
        }
    }
}

const RESOURCE_COLS: [Col; 5] = [Col::Int, Col::Int, Col::Bool, Col::OptInt, Col::Bytes];

fn stored(rtype: ResourceType, id: String, mut row: Row) -> StoredResource {
    StoredResource {
        rtype,
        id,
        version: row.int(0),
        last_updated: row.int(1),
        deleted: row.bool(2),
        member_count: row.opt_int(3),
        body: Bytes::from(row.bytes(4)),
    }
}

/// The current version of a resource, locked for the rest of the transaction where the dialect
/// needs a lock (SQLite's `BEGIN IMMEDIATE` already serialises writers).
async fn lock_current(
    tx: &mut Tx,
    rtype: ResourceType,
    id: &str,
) -> Result<Option<(i64, bool)>, StoreError> {
    let sql = match tx.dialect() {
        Dialect::Sqlite => {
            "SELECT version, deleted FROM resource_version WHERE rtype = $1 AND id = $2 AND is_current"
        }
        Dialect::Postgres => {
            serialize_writers(tx, rtype.as_str(), id).await?;
            "SELECT version, deleted FROM resource_version WHERE rtype = $1 AND id = $2 AND is_current"
        }
    };
    let row = tx
        .fetch_optional(
            sql,
            &[rtype.as_str().into(), id.into()],
            &[Col::Int, Col::Bool],
        )
        .await?;
    Ok(row.map(|r| (r.int(0), r.bool(1))))
}

/// PostgreSQL: one writer per resource at a time, until the transaction ends. A row lock on the
/// current version is not enough: a second writer waiting on it wakes to find that row no longer
/// current (the first writer flipped it) and would see no current version at all.
pub(crate) async fn serialize_writers(
    tx: &mut Tx,
    rtype: &str,
    id: &str,
) -> Result<(), StoreError> {
    tx.fetch_optional(
        "SELECT CAST(1 AS BIGINT) FROM (SELECT pg_advisory_xact_lock(hashtextextended($1, 0))) AS locked",
        &[format!("{rtype}/{id}").into()],
        &[Col::Int],
    )
    .await?;
    Ok(())
}

/// Maps a unique-key violation (a concurrent create of the same id) to `AlreadyExists`.
fn conflict_as_exists(e: StoreError, rtype: ResourceType, id: &str) -> StoreError {
    if let StoreError::Database(sqlx::Error::Database(db)) = &e
        && db.is_unique_violation()
    {
        return StoreError::AlreadyExists {
            rtype: rtype.to_string(),
            id: id.to_string(),
        };
    }
    e
}

/// Writes one resource inside `tx`: new version row, index rows, Group member rows.
async fn write_in(tx: &mut Tx, w: ResourceWrite) -> Result<WriteOutcome, StoreError> {
    let ResourceWrite {
        rtype,
        id,
        mut resource,
        index,
        members,
        mode,
        expected_version,
        prestamped: _,
        claims: claimed,
    } = w;
    let current = lock_current(tx, rtype, &id).await?;
    if let (WriteMode::Create, Some((_, false))) = (mode, current) {
        return Err(StoreError::AlreadyExists {
            rtype: rtype.to_string(),
            id,
        });
    }
    if let Some(expected) = expected_version {
        let now = current
            .filter(|(_, deleted)| !deleted)
            .map_or(0, |(v, _)| v);
        if now != expected {
            return Err(StoreError::VersionConflict {
                rtype: rtype.to_string(),
                id,
                expected,
                current: now,
            });
        }
    }
    if current.is_some() {
        claims::release(tx, rtype, std::slice::from_ref(&id)).await?;
    }
    claims::record(tx, rtype, vec![(id.clone(), claimed)]).await?;
    let version = current.map_or(1, |(v, _)| v + 1);
    let last_updated = now_micros();
    let member_count = match members {
        Some(members) => {
            let derive = atr_model::group::is_attribution_list(&resource);
            let has_previous = current.is_some_and(|(_, deleted)| !deleted);
            let count =
                members::write_roster(tx, &id, version, members, derive, has_previous).await?;
            resource["quantity"] = count.into();
            Some(count)
        }
        None => None,
    };
    atr_model::meta::stamp(&mut resource, &id, version, last_updated);
    let body = serde_json::to_vec(&resource).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    if current.is_some() {
        tx.execute(
            "UPDATE resource_version SET is_current = FALSE WHERE rtype = $1 AND id = $2 AND is_current",
            &[rtype.as_str().into(), id.as_str().into()],
        )
        .await?;
        index_rows::delete_index(tx, rtype, std::slice::from_ref(&id)).await?;
    }
    tx.execute(
        "INSERT INTO resource_version (rtype, id, version, last_updated, deleted, is_current, member_count, body) \
         VALUES ($1, $2, $3, $4, FALSE, TRUE, $5, $6)",
        &[
            rtype.as_str().into(),
            id.as_str().into(),
            version.into(),
            last_updated.into(),
            member_count.into(),
            Arg::Bytes(body.clone()),
        ],
    )
    .await
    .map_err(|e| conflict_as_exists(e, rtype, &id))?;
    index_rows::insert_index(tx, rtype, vec![(id.clone(), index)]).await?;
    if rtype == ResourceType::Group {
        subscriptions::record_group_version(tx, &id, version, last_updated).await?;
    }
    Ok(WriteOutcome {
        version,
        last_updated,
        created: current.is_none_or(|(_, d)| d),
        body: body.into(),
        member_count,
    })
}

impl SqlStore {
    async fn write_with(
        &self,
        write: ResourceWrite,
        audit: Option<&AuditRecord>,
    ) -> Result<WriteOutcome, StoreError> {
        let mut tx = self.pool.begin_write().await?;
        let out = write_in(&mut tx, write).await?;
        if let Some(a) = audit {
            audit::insert_in(&mut tx, a).await?;
        }
        tx.commit().await?;
        Ok(out)
    }

    async fn delete_with(
        &self,
        rtype: ResourceType,
        id: &str,
        audit: Option<&AuditRecord>,
    ) -> Result<Option<VersionInfo>, StoreError> {
        let mut tx = self.pool.begin_write().await?;
        let Some((version, false)) = lock_current(&mut tx, rtype, id).await? else {
            tx.rollback().await?;
            // Nothing to delete: no transaction carries the entry.
            if let Some(a) = audit {
                audit::insert(&self.pool, a).await?;
            }
            return Ok(None);
        };
        let version = version + 1;
        let last_updated = now_micros();
        tx.execute(
            "UPDATE resource_version SET is_current = FALSE WHERE rtype = $1 AND id = $2 AND is_current",
            &[rtype.as_str().into(), id.into()],
        )
        .await?;
        tx.execute(
            "INSERT INTO resource_version (rtype, id, version, last_updated, deleted, is_current, member_count, body) \
             VALUES ($1, $2, $3, $4, TRUE, TRUE, NULL, $5)",
            &[rtype.as_str().into(), id.into(), version.into(), last_updated.into(), Arg::Bytes(Vec::new())],
        )
        .await?;
        index_rows::delete_index(&mut tx, rtype, &[id.to_string()]).await?;
        claims::release(&mut tx, rtype, &[id.to_string()]).await?;
        if rtype == ResourceType::Group {
            members::end_all(&mut tx, id, version).await?;
            subscriptions::record_group_version(&mut tx, id, version, last_updated).await?;
        }
        if let Some(a) = audit {
            audit::insert_in(&mut tx, a).await?;
        }
        tx.commit().await?;
        Ok(Some(VersionInfo {
            version,
            last_updated,
        }))
    }
}

#[async_trait]
impl Store for SqlStore {
    async fn write(&self, write: ResourceWrite) -> Result<WriteOutcome, StoreError> {
        self.write_with(write, None).await
    }

    async fn write_audited(
        &self,
        write: ResourceWrite,
        audit: &AuditRecord,
    ) -> Result<WriteOutcome, StoreError> {
        self.write_with(write, Some(audit)).await
    }

    async fn delete(
        &self,
        rtype: ResourceType,
        id: &str,
    ) -> Result<Option<VersionInfo>, StoreError> {
        self.delete_with(rtype, id, None).await
    }

    async fn delete_audited(
        &self,
        rtype: ResourceType,
        id: &str,
        audit: &AuditRecord,
    ) -> Result<Option<VersionInfo>, StoreError> {
        self.delete_with(rtype, id, Some(audit)).await
    }

    async fn record_audit(&self, event: &AuditRecord) -> Result<(), StoreError> {
        audit::insert(&self.pool, event).await
    }

    async fn audit_events(&self, query: &AuditQuery) -> Result<Vec<AuditRecord>, StoreError> {
        audit::list(&self.pool, query).await
    }

    async fn audit_event(&self, id: &str) -> Result<Option<AuditRecord>, StoreError> {
        audit::get(&self.pool, id).await
    }

    async fn change_members_audited(
        &self,
        group_id: &str,
        change: crate::MemberChange,
        expected_version: Option<i64>,
        provenance: Option<serde_json::Value>,
        audit: &AuditRecord,
    ) -> Result<crate::MemberChangeOutcome, StoreError> {
        let mut tx = self.pool.begin_write().await?;
        let out =
            member_ops::apply(&mut tx, group_id, change, expected_version, provenance).await?;
        if out.changed {
            audit::insert_in(&mut tx, audit).await?;
            tx.commit().await?;
        } else {
            // Nothing was written, so the entry stands alone.
            tx.rollback().await?;
            audit::insert(&self.pool, audit).await?;
        }
        Ok(out)
    }

    async fn create_subscription_audited(
        &self,
        write: &crate::SubscriptionWrite,
        now: i64,
        audit: &AuditRecord,
    ) -> Result<crate::SubscriptionRecord, StoreError> {
        subscriptions::create(&self.pool, write, now, Some(audit)).await
    }

    async fn update_subscription_audited(
        &self,
        write: &crate::SubscriptionWrite,
        expected_version: Option<i64>,
        now: i64,
        audit: &AuditRecord,
    ) -> Result<Option<crate::SubscriptionRecord>, StoreError> {
        subscriptions::update(&self.pool, write, expected_version, now, Some(audit)).await
    }

    async fn delete_subscription_audited(
        &self,
        id: &str,
        audit: &AuditRecord,
    ) -> Result<bool, StoreError> {
        subscriptions::delete(&self.pool, id, Some(audit)).await
    }

    async fn read(
        &self,
        rtype: ResourceType,
        id: &str,
        version: Option<i64>,
    ) -> Result<Option<StoredResource>, StoreError> {
        let head = "SELECT version, last_updated, deleted, member_count, body FROM resource_version WHERE rtype = $1 AND id = $2";
        let row = match version {
            None => {
                self.pool
                    .fetch_optional(
                        &format!("{head} AND is_current"),
                        &[rtype.as_str().into(), id.into()],
                        &RESOURCE_COLS,
                    )
                    .await?
            }
            Some(v) => {
                self.pool
                    .fetch_optional(
                        &format!("{head} AND version = $3"),
                        &[rtype.as_str().into(), id.into(), v.into()],
                        &RESOURCE_COLS,
                    )
                    .await?
            }
        };
        Ok(row.map(|r| stored(rtype, id.to_string(), r)))
    }

    async fn history(
        &self,
        rtype: ResourceType,
        id: &str,
        before_version: Option<i64>,
        limit: u32,
    ) -> Result<Vec<StoredResource>, StoreError> {
        let rows = self
            .pool
            .fetch_all(
                "SELECT version, last_updated, deleted, member_count, body FROM resource_version \
                 WHERE rtype = $1 AND id = $2 AND version < $3 ORDER BY version DESC LIMIT $4",
                &[
                    rtype.as_str().into(),
                    id.into(),
                    before_version.unwrap_or(i64::MAX).into(),
                    i64::from(limit).into(),
                ],
                &RESOURCE_COLS,
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| stored(rtype, id.to_string(), r))
            .collect())
    }

    async fn search(&self, query: &SearchQuery) -> Result<SearchPage, StoreError> {
        let count_all = |query: &SearchQuery| {
            let st = search::count_statement(query);
            let pool = self.searches.clone();
            async move {
                let row = pool.fetch_optional(&st.sql, &st.args, &[Col::Int]).await?;
                Ok::<_, StoreError>(row.map_or(0, |r| r.int(0)))
            }
        };
        if query.count == 0 {
            return Ok(SearchPage {
                matches: Vec::new(),
                total: Some(count_all(query).await?),
                has_more: false,
            });
        }
        let st = search::page_statement(query);
        let cols = [
            Col::Text,
            Col::Int,
            Col::Int,
            Col::Bool,
            Col::OptInt,
            Col::Bytes,
        ];
        let mut rows = self.searches.fetch_all(&st.sql, &st.args, &cols).await?;
        let has_more = rows.len() > query.count as usize;
        // A first page that holds every match is its own total: most searches (discovery by an
        // identifier) need no second query.
        let total = match (query.with_total, has_more, &query.after_id) {
            (false, _, _) => None,
            (true, false, None) => Some(rows.len() as i64),
            (true, _, _) => Some(count_all(query).await?),
        };
        rows.truncate(query.count as usize);
        let matches = rows
            .into_iter()
            .map(|mut r| {
                let id = r.text(0);
                let rest = Row(r.0.split_off(1));
                stored(query.rtype, id, rest)
            })
            .collect();
        Ok(SearchPage {
            matches,
            total,
            has_more,
        })
    }

    fn stream_members(
        &self,
        group_id: &str,
        version: i64,
        derive_change_type: bool,
    ) -> MemberStream {
        let (tx, rx) = mpsc::channel(4);
        let pool = self.pool.clone();
        let group_id = group_id.to_string();
        tokio::spawn(async move {
            let baseline = if derive_change_type {
                match members::last_final_before(&pool, &group_id, version).await {
                    Ok(b) => b,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                }
            } else {
                None
            };
            if let Pool::Sqlite(p) = &pool {
                let path = p.connect_options().get_filename().to_path_buf();
                let _ = tokio::task::spawn_blocking(move || {
                    sqlite_direct::stream(
                        path,
                        group_id,
                        version,
                        derive_change_type,
                        baseline,
                        members::CHUNK,
                        tx,
                    )
                })
                .await;
            } else {
                members::stream(pool, group_id, version, derive_change_type, baseline, tx).await;
            }
        });
        Box::pin(ReceiverStream::new(rx))
    }

    /// On SQLite a batch mixing Groups and other resources commits in two transactions: the
    /// others first (through [`sqlite_bulk`]), then the Groups. The loader sends Groups after
    /// everything else and large ones alone, so its batches are not mixed in practice.
    async fn load_batch(&self, batch: Vec<ResourceWrite>) -> Result<u64, StoreError> {
        let n = batch.len() as u64;
        let (groups, others): (Vec<_>, Vec<_>) =
            batch.into_iter().partition(|w| w.members.is_some());
        if let Pool::Sqlite(p) = &self.pool {
            let path = p.connect_options().get_filename().to_path_buf();
            let mut batch = others;
            batch.extend(groups);
            let checkpoint = self.bulk_checkpoint().clone();
            let outcome = tokio::task::spawn_blocking(move || {
                if let Some(c) = &checkpoint {
                    c.wait_for_room();
                }
                let elsewhere = checkpoint.as_ref().is_some_and(|c| c.is_running());
                let outcome = sqlite_bulk::load(&path, batch, elsewhere);
                if let Some(c) = &checkpoint {
                    c.committed();
                }
                outcome
            })
            .await
            .map_err(|e| StoreError::Direct(format!("the bulk writer failed: {e}")))??;
            // Freeing a batch of parsed resources takes a good fraction of the time it took to
            // write them: let another thread do it while the next batch is written.
            let spent = outcome.spent;
            tokio::task::spawn_blocking(move || drop(spent));
            if !outcome.deferred_groups.is_empty() {
                let mut tx = self.pool.begin_write().await?;
                for g in outcome.deferred_groups {
                    write_in(&mut tx, g).await?;
                }
                tx.commit().await?;
            }
            return Ok(n);
        }
        let mut tx = self.pool.begin_write().await?;
        load_plain(&mut tx, others).await?;
        for g in groups {
            write_in(&mut tx, g).await?;
        }
        tx.commit().await?;
        Ok(n)
    }

    async fn begin_bulk_load(
        &self,
        input_bytes: u64,
        defer: DeferIndexes,
    ) -> Result<bool, StoreError> {
        if let Pool::Sqlite(p) = &self.pool {
            let path = p.connect_options().get_filename().to_path_buf();
            let started = tokio::task::spawn_blocking(move || {
                sqlite_checkpoint::BackgroundCheckpoint::start(&path)
            })
            .await
            .map_err(|e| StoreError::Direct(format!("the checkpointer failed to start: {e}")))??;
            // A load begun twice ends its first checkpointer.
            let previous = self.bulk_checkpoint().replace(Arc::new(started));
            end_checkpoint(previous).await?;
        }
        let stored = self.stored_bytes().await?;
        if !defer.applies(input_bytes, stored) {
            return Ok(false);
        }
        deferred_indexes::set_aside(&self.pool).await?;
        Ok(true)
    }

    async fn finish_bulk_load(&self) -> Result<(), StoreError> {
        let checkpoint = self.bulk_checkpoint().take();
        end_checkpoint(checkpoint).await?;
        deferred_indexes::restore(&self.pool, deferred_indexes::Scope::All).await?;
        Ok(())
    }

    async fn bulk_load_groups_next(&self) -> Result<(), StoreError> {
        // PostgreSQL builds an index with parallel workers, on both cores already; built beside
        // the parsers its 1M load took 203 and 214 s against 188.8 s at the end.
        if self.pool.dialect() == Dialect::Sqlite {
            deferred_indexes::restore(&self.pool, deferred_indexes::Scope::Resources).await?;
        }
        Ok(())
    }

    fn dialect(&self) -> &'static str {
        match self.pool.dialect() {
            Dialect::Sqlite => "sqlite",
            Dialect::Postgres => "postgres",
        }
    }

    async fn refresh_statistics(&self) -> Result<(), StoreError> {
        if let Pool::Postgres(p) = &self.pool {
            // Only our tables (unqualified: the search path picks this store's schema).
            sqlx::query(
                "ANALYZE resource_version, search_token, search_string, search_ref, group_member",
            )
            .execute(p)
            .await?;
        }
        Ok(())
    }

    async fn visible(
        &self,
        rtype: ResourceType,
        id: &str,
        access: &Access,
    ) -> Result<bool, StoreError> {
        if *access == Access::All {
            return Ok(true);
        }
        let mut st = statement::Statement::new("SELECT CASE WHEN ");
        access::push_visible(&mut st, rtype, access::Subject::Id(id), access);
        st.push(" THEN CAST(1 AS BIGINT) ELSE CAST(0 AS BIGINT) END");
        let row = self
            .pool
            .fetch_optional(&st.sql, &st.args, &[Col::Int])
            .await?;
        Ok(row.is_some_and(|r| r.int(0) == 1))
    }

    async fn change_members_with_provenance(
        &self,
        group_id: &str,
        change: crate::MemberChange,
        expected_version: Option<i64>,
        provenance: Option<serde_json::Value>,
    ) -> Result<crate::MemberChangeOutcome, StoreError> {
        let mut tx = self.pool.begin_write().await?;
        let out =
            member_ops::apply(&mut tx, group_id, change, expected_version, provenance).await?;
        if out.changed {
            tx.commit().await?;
        }
        Ok(out)
    }

    async fn provenance(
        &self,
        id: Option<&str>,
        group_id: Option<&str>,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        member_ops::provenance(&self.pool, id, group_id).await
    }

    async fn entries_of(
        &self,
        group_id: &str,
        version: i64,
        patient: &str,
        derive_change_type: bool,
    ) -> Result<Vec<String>, StoreError> {
        member_ops::entries_of(&self.pool, group_id, version, patient, derive_change_type).await
    }

    async fn entries_at(
        &self,
        group_id: &str,
        version: i64,
        patients: &[String],
        derive_change_type: bool,
    ) -> Result<Vec<(String, String)>, StoreError> {
        member_ops::entries_at(&self.pool, group_id, version, patients, derive_change_type).await
    }

    async fn put_client(&self, client: &ClientRecord) -> Result<(), StoreError> {
        auth::put_client(&self.pool, client).await
    }

    async fn client(&self, client_id: &str) -> Result<Option<ClientRecord>, StoreError> {
        auth::client(&self.pool, client_id).await
    }

    async fn clients(&self) -> Result<Vec<ClientRecord>, StoreError> {
        auth::clients(&self.pool).await
    }

    async fn record_jti(
        &self,
        client_id: &str,
        jti: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<bool, StoreError> {
        auth::record_jti(&self.pool, client_id, jti, expires_at, now).await
    }

    async fn token_keys(&self) -> Result<Vec<TokenKey>, StoreError> {
        auth::token_keys(&self.pool).await
    }

    async fn add_token_key(&self, key: &TokenKey) -> Result<(), StoreError> {
        auth::add_token_key(&self.pool, key).await
    }

    async fn retire_token_keys(&self, created_before: i64) -> Result<u64, StoreError> {
        auth::retire_token_keys(&self.pool, created_before).await
    }

    async fn create_export_job(
        &self,
        job: &crate::ExportJob,
        limits: crate::ExportLimits,
    ) -> Result<crate::ExportAdmission, StoreError> {
        export_jobs::create(&self.pool, job, limits).await
    }

    async fn export_job(&self, id: &str) -> Result<Option<crate::ExportJob>, StoreError> {
        export_jobs::get(&self.pool, id).await
    }

    async fn claim_export_job(
        &self,
        owner: &str,
        now: i64,
        lease_until: i64,
    ) -> Result<Option<crate::ExportJob>, StoreError> {
        export_jobs::claim(&self.pool, owner, now, lease_until).await
    }

    async fn renew_export_lease(
        &self,
        id: &str,
        owner: &str,
        lease_until: i64,
        done: i64,
        planned: i64,
    ) -> Result<bool, StoreError> {
        export_jobs::renew(&self.pool, id, owner, lease_until, done, planned).await
    }

    async fn finish_export_job(
        &self,
        id: &str,
        owner: &str,
        status: crate::ExportStatus,
        result: &str,
        done: i64,
        now: i64,
    ) -> Result<bool, StoreError> {
        export_jobs::finish(&self.pool, id, owner, status, result, done, now).await
    }

    async fn cancel_export_job(
        &self,
        id: &str,
        now: i64,
    ) -> Result<Option<crate::ExportJob>, StoreError> {
        export_jobs::cancel(&self.pool, id, now).await
    }

    async fn finished_export_jobs(
        &self,
        now: i64,
        cancelled_before: i64,
    ) -> Result<Vec<String>, StoreError> {
        export_jobs::finished_ids(&self.pool, now, cancelled_before).await
    }

    async fn delete_export_job(&self, id: &str) -> Result<(), StoreError> {
        export_jobs::delete(&self.pool, id).await
    }

    async fn plan_export(
        &self,
        scope: &crate::ExportScope,
    ) -> Result<crate::ExportPlan, StoreError> {
        export_plan::plan(&self.pool, scope).await
    }

    async fn export_links(
        &self,
        plan: std::sync::Arc<crate::ExportPlan>,
    ) -> Result<crate::IdSet, StoreError> {
        export_read::links(&self.pool, plan).await
    }

    async fn export_providers(
        &self,
        refs: std::collections::BTreeSet<String>,
    ) -> Result<std::collections::BTreeMap<ResourceType, crate::IdSet>, StoreError> {
        export_read::providers(&self.pool, refs).await
    }

    fn export_resources(
        &self,
        plan: std::sync::Arc<crate::ExportPlan>,
        rtype: ResourceType,
    ) -> ExportStream {
        export_read::read(&self.pool, plan, rtype)
    }
    async fn create_subscription(
        &self,
        write: &crate::SubscriptionWrite,
        now: i64,
    ) -> Result<crate::SubscriptionRecord, StoreError> {
        subscriptions::create(&self.pool, write, now, None).await
    }

    async fn subscription(
        &self,
        id: &str,
    ) -> Result<Option<crate::SubscriptionRecord>, StoreError> {
        subscriptions::get(&self.pool, id).await
    }

    async fn subscriptions(
        &self,
        client_id: Option<&str>,
    ) -> Result<Vec<crate::SubscriptionRecord>, StoreError> {
        subscriptions::list(&self.pool, client_id).await
    }

    async fn update_subscription(
        &self,
        write: &crate::SubscriptionWrite,
        expected_version: Option<i64>,
        now: i64,
    ) -> Result<Option<crate::SubscriptionRecord>, StoreError> {
        subscriptions::update(&self.pool, write, expected_version, now, None).await
    }

    async fn delete_subscription(&self, id: &str) -> Result<bool, StoreError> {
        subscriptions::delete(&self.pool, id, None).await
    }

    async fn subscription_events(
        &self,
        id: &str,
        after: i64,
        until: i64,
        limit: u32,
    ) -> Result<Vec<crate::SubscriptionEvent>, StoreError> {
        subscriptions::events(&self.pool, id, after, until, limit).await
    }

    async fn prune_subscription_events(&self, before: i64) -> Result<u64, StoreError> {
        subscriptions::prune(&self.pool, before).await
    }

    async fn claim_deliveries(
        &self,
        owner: &str,
        now: i64,
        lease_until: i64,
        limit: u32,
    ) -> Result<Vec<crate::SubscriptionRecord>, StoreError> {
        subscriptions::claim(&self.pool, owner, now, lease_until, limit).await
    }

    async fn finish_delivery(
        &self,
        id: &str,
        owner: &str,
        result: &crate::DeliveryResult,
        now: i64,
    ) -> Result<bool, StoreError> {
        subscriptions::finish(&self.pool, id, owner, result, now).await
    }
}

/// Bulk path for resources without member rows: one lookup of existing versions per type, then
/// multi-row inserts of versions and index rows.
async fn load_plain(tx: &mut Tx, batch: Vec<ResourceWrite>) -> Result<(), StoreError> {
    let mut by_type: std::collections::BTreeMap<ResourceType, Vec<ResourceWrite>> =
        Default::default();
    for w in batch {
        by_type.entry(w.rtype).or_default().push(w);
    }
    let last_updated = now_micros();
    for (rtype, mut writes) in by_type {
        let mut existing: std::collections::HashMap<String, i64> = Default::default();
        for chunk in writes.chunks(index_rows::ROWS_PER_INSERT) {
            let mut st = statement::Statement::new(
                "SELECT id, version FROM resource_version WHERE rtype = ",
            );
            st.bind(rtype.as_str())
                .push(" AND is_current AND id IN ")
                .bind_list(chunk.iter().map(|w| w.id.clone()));
            for mut row in tx
                .fetch_all(&st.sql, &st.args, &[Col::Text, Col::Int])
                .await?
            {
                let v = row.int(1);
                existing.insert(row.text(0), v);
            }
        }
        let replaced: Vec<String> = existing.keys().cloned().collect();
        for chunk in replaced.chunks(index_rows::ROWS_PER_INSERT) {
            let mut st = statement::Statement::new(
                "UPDATE resource_version SET is_current = FALSE WHERE rtype = ",
            );
            st.bind(rtype.as_str())
                .push(" AND is_current AND id IN ")
                .bind_list(chunk.iter().cloned());
            tx.execute(&st.sql, &st.args).await?;
        }
        index_rows::delete_index(tx, rtype, &replaced).await?;
        claims::release(tx, rtype, &replaced).await?;

        let mut seen = std::collections::HashSet::new();
        for w in &writes {
            if !seen.insert(w.id.as_str()) {
                return Err(StoreError::AlreadyExists {
                    rtype: rtype.to_string(),
                    id: w.id.clone(),
                });
            }
        }
        drop(seen);
        let claimed: Vec<(String, Vec<atr_model::contract::UniqueClaim>)> = writes
            .iter_mut()
            .filter(|w| !w.claims.is_empty())
            .map(|w| (w.id.clone(), std::mem::take(&mut w.claims)))
            .collect();
        claims::record(tx, rtype, claimed).await?;
        let entries: Vec<(String, atr_model::index::IndexEntries)> = writes
            .iter_mut()
            .map(|w| (w.id.clone(), std::mem::take(&mut w.index)))
            .collect();
        index_rows::insert_index(tx, rtype, entries).await?;
        let mut rows: Vec<[Arg; 5]> = Vec::with_capacity(writes.len());
        for mut w in writes {
            let version = existing.get(&w.id).map_or(1, |v| v + 1);
            let (stamped_at, body) = match w.prestamped {
                Some(p) if p.version == version => (p.last_updated, p.body),
                _ => {
                    let mut resource = w
                        .take_resource()
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                    atr_model::meta::stamp(&mut resource, &w.id, version, last_updated);
                    let body = serde_json::to_vec(&resource)
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                    (last_updated, body)
                }
            };
            rows.push([
                Arg::Static(rtype.as_str()),
                w.id.into(),
                version.into(),
                stamped_at.into(),
                Arg::Bytes(body),
            ]);
        }
        insert_versions(tx, rows).await?;
    }
    Ok(())
}

async fn insert_versions(tx: &mut Tx, rows: Vec<[Arg; 5]>) -> Result<(), StoreError> {
    if let Some(conn) = tx.postgres_bulk(rows.len()) {
        let rows = rows
            .into_iter()
            .map(|[t, id, v, at, body]| [t, id, v, at, body, Arg::Bool(false), Arg::Bool(true)]);
        pg_copy::copy_rows(
            conn,
            "resource_version",
            "(rtype, id, version, last_updated, body, deleted, is_current)",
            rows,
        )
        .await?;
        return Ok(());
    }
    // deleted/is_current are constants; only the five varying columns are parameters.
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let chunk: Vec<Arg> = rows
            .by_ref()
            .take(index_rows::ROWS_PER_INSERT)
            .flatten()
            .collect();
        let n = chunk.len() / 5;
        let mut sql = String::from(
            "INSERT INTO resource_version (rtype, id, version, last_updated, body, deleted, is_current) VALUES ",
        );
        for r in 0..n {
            let b = r * 5;
            sql.push_str(&format!(
                "{}(${}, ${}, ${}, ${}, ${}, FALSE, TRUE)",
                if r == 0 { "" } else { "," },
                b + 1,
                b + 2,
                b + 3,
                b + 4,
                b + 5
            ));
        }
        tx.execute(&sql, &chunk).await?;
    }
    Ok(())
}
