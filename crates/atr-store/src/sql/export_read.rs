//! Reading an export's resources. Planning (`export_plan.rs`) keeps the Patient and Coverage ids in
//! scope as [`IdSet`]s; the Coverages' search-index rows give the subscribers, policy holders and
//! payors they bring in; the providers, payers and places are a few thousand ids at most.
//!
//! Each type is then read against its id set: when the set holds a good share of the type's stored
//! resources, one sequential scan of the type keeps the rows in the set (a 1M-member list reads
//! every Patient once, without a million index descents and without `DISTINCT` over the member
//! rows); a small set is looked up id by id.
//!
//! Stored bytes are copied, never parsed: a resource's body is already one compact JSON line.
//! Every resource is exported as it was at the job's snapshot instant: the current version when
//! it is not newer than the snapshot, else the newest version that is (looked up after the main
//! pass; rare while an export runs).
//!
//! SQLite runs each type on a blocking thread with its own read-only `rusqlite` connection
//! (sqlx would hand every row across threads). PostgreSQL scans with a binary `COPY … TO
//! STDOUT` (a streamed `SELECT` built a driver row per resource: a 1M-Patient scan took 16 s
//! through sqlx against 1.7 s for the server to produce it) and looks ids up in `= ANY` chunks.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use atr_model::ResourceType;
use bytes::Bytes;
use futures::TryStreamExt;
use sqlx::Row as _;
use tokio::sync::mpsc;

use super::db::{Arg, Col, Pool};
use super::export_plan::MemberRefs;
use crate::{ExportItem, ExportPlan, IdSet, StoreError};

pub(super) use self::pg::member_refs as pg_member_refs;
pub(super) use self::sqlite::member_refs as sqlite_member_refs;

/// Bytes per chunk handed to the file writer.
const CHUNK: usize = 256 * 1024;
/// Ids per `IN (…)` list.
const IDS_PER_QUERY: usize = 500;

pub type ExportStream =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<ExportItem, StoreError>> + Send>>;

fn prefix(rtype: ResourceType) -> String {
    format!("{}/", rtype.as_str())
}

/// The Coverage references that bring resources into an export: the search-index rows of the
/// Coverages' subscriber, policy holder and payors, read like the resources themselves (one scan
/// of the index table for a large share of the stored Coverages, else lookups per Coverage).
pub(crate) async fn links(pool: &Pool, plan: Arc<ExportPlan>) -> Result<IdSet, StoreError> {
    let coverages = plan
        .ids
        .get(&ResourceType::Coverage)
        .cloned()
        .unwrap_or_default();
    if coverages.is_empty() {
        return Ok(IdSet::new());
    }
    match pool {
        Pool::Sqlite(p) => {
            let path = p.connect_options().get_filename().to_path_buf();
            tokio::task::spawn_blocking(move || sqlite::links(&path, &coverages))
                .await
                .map_err(|e| StoreError::Direct(e.to_string()))?
        }
        Pool::Postgres(p) => pg::links(p, &coverages).await,
    }
}

/// The Coverage search parameters whose targets an export takes along.
pub(super) const LINK_PARAMS: &str = "('subscriber', 'policy-holder', 'payor')";

/// Splits the provider references of an export (`refs`, `Type/id`) by type, with the
/// Practitioners, Organizations and Locations of the PractitionerRoles among them.
pub(crate) async fn providers(
    pool: &Pool,
    mut refs: BTreeSet<String>,
) -> Result<BTreeMap<ResourceType, IdSet>, StoreError> {
    role_targets(pool, &mut refs).await?;
    let mut providers: BTreeMap<ResourceType, IdSet> = BTreeMap::new();
    for r in &refs {
        let Some((t, id)) = r.split_once('/') else {
            continue;
        };
        let Ok(rtype) = t.parse::<ResourceType>() else {
            continue;
        };
        if is_provider_type(rtype) {
            providers.entry(rtype).or_default().insert(id);
        }
    }
    Ok(providers)
}

/// The types an export resolves once the Coverages' links are read.
pub fn is_provider_type(rtype: ResourceType) -> bool {
    matches!(
        rtype,
        ResourceType::Practitioner
            | ResourceType::PractitionerRole
            | ResourceType::Organization
            | ResourceType::Location
    )
}

/// Adds the Practitioners, Organizations and Locations of the PractitionerRoles in `refs`.
pub(super) async fn role_targets(
    pool: &Pool,
    refs: &mut BTreeSet<String>,
) -> Result<(), StoreError> {
    let roles: Vec<&str> = refs
        .iter()
        .filter_map(|r| r.strip_prefix("PractitionerRole/"))
        .collect();
    let targets = ref_targets(
        pool,
        "PractitionerRole",
        "('practitioner', 'organization', 'location')",
        &roles,
    )
    .await?;
    refs.extend(targets);
    Ok(())
}

/// The targets (`Type/id`) of the reference parameters `params` (an SQL list such as
/// [`LINK_PARAMS`]) of the `rtype` resources `ids`, looked up [`IDS_PER_QUERY`] ids at a time.
pub(super) async fn ref_targets(
    pool: &Pool,
    rtype: &'static str,
    params: &str,
    ids: &[&str],
) -> Result<Vec<String>, StoreError> {
    let mut out = Vec::new();
    for chunk in ids.chunks(IDS_PER_QUERY) {
        let mut sql = format!(
            "SELECT target FROM search_ref WHERE rtype = $1 AND param IN {params} AND id IN ("
        );
        push_placeholders(&mut sql, 2, chunk.len());
        sql.push(')');
        let mut args = vec![Arg::Static(rtype)];
        args.extend(chunk.iter().map(|id| Arg::from(*id)));
        for mut r in pool.fetch_all(&sql, &args, &[Col::Text]).await? {
            out.push(r.text(0));
        }
    }
    Ok(out)
}

fn push_placeholders(sql: &mut String, first: usize, n: usize) {
    for i in 0..n {
        if i > 0 {
            sql.push(',');
        }
        sql.push_str(&format!("${}", first + i));
    }
}

/// Every current resource of a type, for the scan that filters by id set: rows of (id,
/// last_updated, deleted, body), as from [`LOOKUP_SQL`].
const SCAN_SQL: &str = "SELECT id, last_updated, deleted, body FROM resource_version \
     WHERE rtype = $1 AND is_current";

/// The current version of one resource (SQLite; PostgreSQL looks up many with `= ANY`).
const LOOKUP_SQL: &str = "SELECT id, last_updated, deleted, body FROM resource_version \
     WHERE rtype = $1 AND id = $2 AND is_current";

/// Current resources of a type.
const COUNT_SQL: &str = "SELECT count(*) FROM resource_version WHERE rtype = $1 AND is_current";

/// The newest version of one resource not after the snapshot.
const AS_OF_SQL: &str = "SELECT last_updated, deleted, body FROM resource_version \
     WHERE rtype = $1 AND id = $2 AND last_updated <= $3 ORDER BY version DESC LIMIT 1";

/// Whether reading every stored resource of the type (and keeping those in the set) beats looking
/// the ids up one by one: a lookup costs about two rows of a sequential scan.
fn scan_beats_lookups(wanted: usize, stored: i64) -> bool {
    wanted as i64 * 2 >= stored
}

/// Turns scanned rows into NDJSON chunks and the deleted/missing reports.
struct Emitter {
    plan: Arc<ExportPlan>,
    prefix: String,
    buf: Vec<u8>,
    count: u64,
    /// Ids whose current version is newer than the snapshot.
    late: Vec<String>,
    out: mpsc::Sender<Result<ExportItem, StoreError>>,
}

/// The receiver went away (the job was cancelled): stop reading.
struct Gone;

impl Emitter {
    fn new(
        plan: Arc<ExportPlan>,
        rtype: ResourceType,
        out: mpsc::Sender<Result<ExportItem, StoreError>>,
    ) -> Self {
        Emitter {
            plan,
            prefix: prefix(rtype),
            buf: Vec::with_capacity(CHUNK + 64 * 1024),
            count: 0,
            late: Vec::new(),
            out,
        }
    }

    fn reference(&self, id: &str) -> String {
        format!("{}{id}", self.prefix)
    }

    /// One resource in scope; `stored` is `(last_updated, deleted, body)` of its current version
    /// (or, `as_of`, of its version at the snapshot), `None` when nothing is stored.
    fn row(
        &mut self,
        id: &str,
        stored: Option<(i64, bool, &[u8])>,
        as_of: bool,
    ) -> Option<ExportItem> {
        // An export of everything stored names no references: a resource created after the
        // snapshot, or deleted before it, is simply not part of it.
        let Some((last_updated, deleted, body)) = stored else {
            return (!self.plan.complete).then(|| ExportItem::Missing(self.reference(id)));
        };
        if last_updated > self.plan.scope.at && !as_of {
            self.late.push(id.to_string());
            return None;
        }
        let since = self.plan.since;
        if deleted {
            return match since {
                Some(s) if last_updated > s => Some(ExportItem::Deleted(self.reference(id))),
                Some(_) => None,
                None => (!self.plan.complete).then(|| ExportItem::Missing(self.reference(id))),
            };
        }
        if let Some(s) = since
            && last_updated <= s
            && !self.plan.joined.contains(&self.reference(id))
        {
            return None;
        }
        self.buf.extend_from_slice(body);
        self.buf.push(b'\n');
        self.count += 1;
        None
    }

    fn full(&self) -> bool {
        self.buf.len() >= CHUNK
    }

    fn take(&mut self) -> Option<ExportItem> {
        if self.buf.is_empty() {
            return None;
        }
        let ndjson = Bytes::from(std::mem::replace(
            &mut self.buf,
            Vec::with_capacity(CHUNK + 64 * 1024),
        ));
        let count = std::mem::take(&mut self.count);
        Some(ExportItem::Lines { ndjson, count })
    }
}

/// Streams the resources of `rtype` in the export `plan` (every type but Group).
pub(crate) fn read(pool: &Pool, plan: Arc<ExportPlan>, rtype: ResourceType) -> ExportStream {
    let (tx, rx) = mpsc::channel(4);
    match pool {
        Pool::Sqlite(p) => {
            let path = p.connect_options().get_filename().to_path_buf();
            tokio::task::spawn_blocking(move || {
                let out = tx.clone();
                if let Err(e) = sqlite::read(path, plan, rtype, tx) {
                    let _ = out.blocking_send(Err(e));
                }
            });
        }
        Pool::Postgres(p) => {
            let p = p.clone();
            tokio::spawn(async move {
                let out = tx.clone();
                if let Err(e) = pg::read(p, plan, rtype, tx).await {
                    let _ = out.send(Err(e)).await;
                }
            });
        }
    }
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}

/// The ids of a set in byte order: lookups one by one go through the index in its order.
fn sorted(ids: &IdSet) -> Vec<(usize, &str)> {
    let mut v: Vec<(usize, &str)> = ids.iter().enumerate().collect();
    v.sort_unstable_by(|a, b| a.1.cmp(b.1));
    v
}

mod sqlite {
    use rusqlite::types::ValueRef;
    use rusqlite::{Connection, OptionalExtension, params_from_iter};

    use super::*;

    use crate::sql::sqlite::{DirectMode, direct_err as err, open_direct};

    fn bind(args: &[Arg]) -> Vec<rusqlite::types::Value> {
        use rusqlite::types::Value;
        args.iter()
            .map(|a| match a {
                Arg::Static(s) => Value::Text(s.to_string()),
                Arg::Text(s) => Value::Text(s.clone()),
                Arg::OptText(s) => s.clone().map_or(Value::Null, Value::Text),
                Arg::Int(i) => Value::Integer(*i),
                Arg::OptInt(i) => i.map_or(Value::Null, Value::Integer),
                Arg::Bool(b) => Value::Integer(*b as i64),
                Arg::Bytes(b) => Value::Blob(b.clone()),
            })
            .collect()
    }

    /// `$N` → `?N`: SQLite numbers these itself, no name lookups.
    fn numbered(sql: &str) -> String {
        sql.replace('$', "?")
    }

    fn send(
        out: &mpsc::Sender<Result<ExportItem, StoreError>>,
        item: ExportItem,
    ) -> Result<(), Gone> {
        out.blocking_send(Ok(item)).map_err(|_| Gone)
    }

    fn text<'r>(row: &'r rusqlite::Row<'_>, i: usize) -> Result<Option<&'r str>, StoreError> {
        match row.get_ref(i).map_err(err)? {
            ValueRef::Text(t) => std::str::from_utf8(t)
                .map(Some)
                .map_err(|e| StoreError::Corrupt(e.to_string())),
            _ => Ok(None),
        }
    }

    fn blob<'r>(row: &'r rusqlite::Row<'_>, i: usize) -> Result<&'r [u8], StoreError> {
        Ok(match row.get_ref(i).map_err(err)? {
            ValueRef::Blob(b) | ValueRef::Text(b) => b,
            _ => &[][..],
        })
    }

    /// A read-only connection with a small page cache and temporary b-trees on disk, so an
    /// export's memory stays flat whatever the list's size.
    fn open(path: &std::path::Path) -> Result<Connection, StoreError> {
        let conn = open_direct(path, DirectMode::Read, std::time::Duration::from_secs(30))?;
        conn.execute_batch(
            "PRAGMA cache_size = -2048; PRAGMA temp.cache_size = -2048; PRAGMA temp_store = FILE; BEGIN",
        )
        .map_err(err)?;
        Ok(conn)
    }

    pub(in crate::sql) fn member_refs(
        path: &std::path::Path,
        sql: &str,
        args: &[Arg],
        mut refs: MemberRefs,
    ) -> Result<MemberRefs, StoreError> {
        let conn = open(path)?;
        let mut stmt = conn.prepare(&numbered(sql)).map_err(err)?;
        let mut rows = stmt.query(params_from_iter(bind(args))).map_err(err)?;
        while let Some(row) = rows.next().map_err(err)? {
            let patient = text(row, 0)?.unwrap_or_default();
            refs.add(patient, text(row, 1)?, text(row, 2)?);
        }
        Ok(refs)
    }

    pub(super) fn links(path: &std::path::Path, coverages: &IdSet) -> Result<IdSet, StoreError> {
        let conn = open(path)?;
        let stored: i64 = conn
            .query_row(&numbered(COUNT_SQL), ["Coverage"], |r| r.get(0))
            .map_err(err)?;
        let mut links = IdSet::new();
        if scan_beats_lookups(coverages.len(), stored) {
            // A table scan: the (rtype, param, target) index would visit the rows in target
            // order, one table lookup each.
            let sql = format!(
                "SELECT id, target FROM search_ref NOT INDEXED \
                 WHERE rtype = 'Coverage' AND param IN {LINK_PARAMS}"
            );
            let mut stmt = conn.prepare(&sql).map_err(err)?;
            let mut rows = stmt.query([]).map_err(err)?;
            while let Some(row) = rows.next().map_err(err)? {
                if let (Some(id), Some(target)) = (text(row, 0)?, text(row, 1)?)
                    && coverages.contains(id)
                {
                    links.insert(target);
                }
            }
        } else {
            let sql = format!(
                "SELECT target FROM search_ref WHERE rtype = 'Coverage' AND id = ?1 \
                 AND param IN {LINK_PARAMS}"
            );
            let mut stmt = conn.prepare(&sql).map_err(err)?;
            for (_, id) in sorted(coverages) {
                let mut rows = stmt.query([id]).map_err(err)?;
                while let Some(row) = rows.next().map_err(err)? {
                    if let Some(target) = text(row, 0)? {
                        links.insert(target);
                    }
                }
            }
        }
        Ok(links)
    }

    /// Hands `item` on and, when the buffer is full, the buffered lines.
    fn emit(em: &mut Emitter, item: Option<ExportItem>) -> Result<(), Gone> {
        if let Some(item) = item {
            send(&em.out, item)?;
        }
        if em.full()
            && let Some(chunk) = em.take()
        {
            send(&em.out, chunk)?;
        }
        Ok(())
    }

    /// One row of (id, last_updated, deleted, body) into the emitter, if its id is in the set.
    fn take_row(
        row: &rusqlite::Row<'_>,
        ids: &IdSet,
        found: &mut [bool],
        em: &mut Emitter,
    ) -> Result<Result<(), Gone>, StoreError> {
        let Some(id) = text(row, 0)? else {
            return Ok(Ok(()));
        };
        let Some(i) = ids.index_of(id) else {
            return Ok(Ok(()));
        };
        found[i] = true;
        let stored = (
            row.get(1).map_err(err)?,
            row.get(2).map_err(err)?,
            blob(row, 3)?,
        );
        let item = em.row(id, Some(stored), false);
        Ok(emit(em, item))
    }

    /// Reads every id of the set; `Ok(Err(Gone))` when the job went away meanwhile.
    fn each_in_scope(
        conn: &Connection,
        rtype: ResourceType,
        ids: &IdSet,
        em: &mut Emitter,
    ) -> Result<Result<(), Gone>, StoreError> {
        let stored: i64 = conn
            .query_row(&numbered(COUNT_SQL), [rtype.as_str()], |r| r.get(0))
            .map_err(err)?;
        let mut found = vec![false; ids.len()];
        if scan_beats_lookups(ids.len(), stored) {
            let mut stmt = conn.prepare(&numbered(SCAN_SQL)).map_err(err)?;
            let mut rows = stmt.query([rtype.as_str()]).map_err(err)?;
            while let Some(row) = rows.next().map_err(err)? {
                if take_row(row, ids, &mut found, em)?.is_err() {
                    return Ok(Err(Gone));
                }
            }
        } else {
            let mut stmt = conn.prepare(&numbered(LOOKUP_SQL)).map_err(err)?;
            for (_, id) in sorted(ids) {
                let mut rows = stmt
                    .query(rusqlite::params![rtype.as_str(), id])
                    .map_err(err)?;
                if let Some(row) = rows.next().map_err(err)?
                    && take_row(row, ids, &mut found, em)?.is_err()
                {
                    return Ok(Err(Gone));
                }
            }
        }
        for (i, _) in found.iter().enumerate().filter(|(_, f)| !**f) {
            let item = em.row(ids.get(i), None, false);
            if emit(em, item).is_err() {
                return Ok(Err(Gone));
            }
        }
        Ok(Ok(()))
    }

    pub(super) fn read(
        path: PathBuf,
        plan: Arc<ExportPlan>,
        rtype: ResourceType,
        out: mpsc::Sender<Result<ExportItem, StoreError>>,
    ) -> Result<(), StoreError> {
        let conn = open(&path)?;
        let ids = plan.ids.get(&rtype).cloned().unwrap_or_default();
        let mut em = Emitter::new(plan.clone(), rtype, out);
        if !ids.is_empty() && each_in_scope(&conn, rtype, &ids, &mut em)?.is_err() {
            return Ok(());
        }
        let late = std::mem::take(&mut em.late);
        let mut stmt = conn.prepare(&numbered(AS_OF_SQL)).map_err(err)?;
        for id in late {
            let row = stmt
                .query_row(rusqlite::params![rtype.as_str(), id, plan.scope.at], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, bool>(1)?,
                        r.get::<_, Vec<u8>>(2)?,
                    ))
                })
                .optional()
                .map_err(err)?;
            let stored = row.as_ref().map(|(l, d, b)| (*l, *d, b.as_slice()));
            let item = em.row(&id, stored, true);
            if emit(&mut em, item).is_err() {
                return Ok(());
            }
        }
        if let Some(chunk) = em.take() {
            let _ = send(&em.out, chunk);
        }
        Ok(())
    }
}

mod pg {
    use sqlx::postgres::PgArguments;
    use sqlx::query::Query;
    use sqlx::{AssertSqlSafe, PgPool, Postgres};

    use super::*;

    use super::super::pg_copy::{self, CopyRows};

    /// Ids per `= ANY($2)` lookup.
    const IDS_PER_LOOKUP: usize = 2_000;

    /// Below this planner estimate, current resources are counted exactly (it is cheap there).
    const ESTIMATE_FROM: i64 = 100_000;

    /// About how many current resources of `rtype` are stored, which is all the scan-or-lookup
    /// choice needs: the planner's estimate, or an exact count when the estimate is small.
    /// `count(*)` reads the whole table (2.5 s per type at a million members, before the export's
    /// reads could start).
    async fn stored_estimate(pool: &PgPool, rtype: ResourceType) -> Result<i64, StoreError> {
        let sql = format!(
            "EXPLAIN SELECT 1 FROM resource_version WHERE rtype = {} AND is_current",
            pg_copy::literal(rtype.as_str())
        );
        // The top plan line ends in "(cost=… rows=N width=…)".
        let top: String = sqlx::query_scalar(AssertSqlSafe(sql))
            .fetch_one(pool)
            .await?;
        let estimate = top
            .split_once(" rows=")
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .and_then(|n| n.parse::<i64>().ok());
        match estimate {
            Some(rows) if rows >= ESTIMATE_FROM => Ok(rows),
            _ => Ok(sqlx::query_scalar(COUNT_SQL)
                .bind(rtype.as_str())
                .fetch_one(pool)
                .await?),
        }
    }

    /// Runs `COPY (select) TO STDOUT` on a connection of its own and calls `each` with every row;
    /// `each` answers items to hand on, sent between chunks. `Ok(Err(Gone))` when the receiver
    /// went away (the connection, mid-stream, is then closed rather than pooled).
    async fn copy_each(
        pool: &PgPool,
        select: &str,
        out: &mpsc::Sender<Result<ExportItem, StoreError>>,
        mut each: impl FnMut(&[Option<&[u8]>], &mut Vec<ExportItem>) -> Result<(), StoreError>,
    ) -> Result<Result<(), Gone>, StoreError> {
        let mut conn = pool.acquire().await?;
        let mut rows = CopyRows::new();
        let mut gone = false;
        {
            let mut stream = conn
                .copy_out_raw(&format!("COPY ({select}) TO STDOUT (FORMAT binary)"))
                .await?;
            let mut items = Vec::new();
            'chunks: while let Some(chunk) = stream.try_next().await? {
                rows.feed(&chunk, |fields| each(fields, &mut items))?;
                for item in items.drain(..) {
                    if send(out, item).await.is_err() {
                        gone = true;
                        break 'chunks;
                    }
                }
            }
        }
        if gone {
            conn.close_on_drop();
            return Ok(Err(Gone));
        }
        Ok(Ok(()))
    }

    fn bound<'q>(sql: &'q str, args: &'q [Arg]) -> Query<'q, Postgres, PgArguments> {
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for a in args {
            q = match a {
                Arg::Static(s) => q.bind(*s),
                Arg::Text(s) => q.bind(s.as_str()),
                Arg::OptText(s) => q.bind(s.as_deref()),
                Arg::Int(i) => q.bind(*i),
                Arg::OptInt(i) => q.bind(*i),
                Arg::Bool(b) => q.bind(*b),
                Arg::Bytes(b) => q.bind(b.as_slice()),
            };
        }
        q
    }

    async fn send(
        out: &mpsc::Sender<Result<ExportItem, StoreError>>,
        item: ExportItem,
    ) -> Result<(), Gone> {
        out.send(Ok(item)).await.map_err(|_| Gone)
    }

    async fn emit(em: &mut Emitter, item: Option<ExportItem>) -> Result<(), Gone> {
        if let Some(item) = item {
            send(&em.out, item).await?;
        }
        if em.full()
            && let Some(chunk) = em.take()
        {
            send(&em.out, chunk).await?;
        }
        Ok(())
    }

    pub(in crate::sql) async fn member_refs(
        pool: &PgPool,
        sql: &str,
        args: &[Arg],
        mut refs: MemberRefs,
    ) -> Result<MemberRefs, StoreError> {
        let mut rows = bound(sql, args).fetch(pool);
        while let Some(row) = rows.try_next().await? {
            refs.add(row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
        }
        Ok(refs)
    }

    pub(super) async fn links(pool: &PgPool, coverages: &IdSet) -> Result<IdSet, StoreError> {
        let stored = stored_estimate(pool, ResourceType::Coverage).await?;
        let mut links = IdSet::new();
        if scan_beats_lookups(coverages.len(), stored) {
            let sql = format!(
                "COPY (SELECT id, target FROM search_ref WHERE rtype = 'Coverage' \
                 AND param IN {LINK_PARAMS}) TO STDOUT (FORMAT binary)"
            );
            let mut conn = pool.acquire().await?;
            let mut stream = conn.copy_out_raw(&sql).await?;
            let mut rows = CopyRows::new();
            while let Some(chunk) = stream.try_next().await? {
                rows.feed(&chunk, |f| {
                    if let (Some(id), Some(target)) = (pg_copy::text(f[0])?, pg_copy::text(f[1])?)
                        && coverages.contains(id)
                    {
                        links.insert(target);
                    }
                    Ok(())
                })?;
            }
        } else {
            let sql = format!(
                "SELECT target FROM search_ref WHERE rtype = 'Coverage' AND id = ANY($1) \
                 AND param IN {LINK_PARAMS}"
            );
            let all = sorted(coverages);
            for chunk in all.chunks(IDS_PER_LOOKUP) {
                let wanted: Vec<&str> = chunk.iter().map(|(_, id)| *id).collect();
                let mut rows = sqlx::query(AssertSqlSafe(sql.as_str()))
                    .bind(&wanted)
                    .fetch(pool);
                while let Some(row) = rows.try_next().await? {
                    links.insert(row.try_get(0)?);
                }
            }
        }
        Ok(links)
    }

    /// One row of (id, last_updated, deleted, body) into the emitter, if its id is in the set.
    async fn take_row(
        row: &sqlx::postgres::PgRow,
        ids: &IdSet,
        found: &mut [bool],
        em: &mut Emitter,
    ) -> Result<Result<(), Gone>, StoreError> {
        let id: &str = row.try_get(0)?;
        let Some(i) = ids.index_of(id) else {
            return Ok(Ok(()));
        };
        found[i] = true;
        let stored = (
            row.try_get::<i64, _>(1)?,
            row.try_get::<bool, _>(2)?,
            row.try_get::<&[u8], _>(3)?,
        );
        let item = em.row(id, Some(stored), false);
        Ok(emit(em, item).await)
    }

    async fn each_in_scope(
        pool: &PgPool,
        rtype: ResourceType,
        ids: &IdSet,
        em: &mut Emitter,
    ) -> Result<Result<(), Gone>, StoreError> {
        let stored = stored_estimate(pool, rtype).await?;
        let mut found = vec![false; ids.len()];
        if scan_beats_lookups(ids.len(), stored) {
            let select = SCAN_SQL.replace("$1", &pg_copy::literal(rtype.as_str()));
            let out = em.out.clone();
            let scanned = copy_each(pool, &select, &out, |f, items| {
                let Some(id) = pg_copy::text(f[0])? else {
                    return Ok(());
                };
                let Some(i) = ids.index_of(id) else {
                    return Ok(());
                };
                found[i] = true;
                let stored = (
                    pg_copy::bigint(f[1])?.unwrap_or(0),
                    pg_copy::boolean(f[2]).unwrap_or(false),
                    f[3].unwrap_or_default(),
                );
                items.extend(em.row(id, Some(stored), false));
                if em.full() {
                    items.extend(em.take());
                }
                Ok(())
            })
            .await?;
            if scanned.is_err() {
                return Ok(Err(Gone));
            }
        } else {
            let all = sorted(ids);
            for chunk in all.chunks(IDS_PER_LOOKUP) {
                let wanted: Vec<&str> = chunk.iter().map(|(_, id)| *id).collect();
                let mut rows = sqlx::query(
                    "SELECT id, last_updated, deleted, body FROM resource_version \
                     WHERE rtype = $1 AND is_current AND id = ANY($2)",
                )
                .bind(rtype.as_str())
                .bind(&wanted)
                .fetch(pool);
                while let Some(row) = rows.try_next().await? {
                    if take_row(&row, ids, &mut found, em).await?.is_err() {
                        return Ok(Err(Gone));
                    }
                }
            }
        }
        for (i, _) in found.iter().enumerate().filter(|(_, f)| !**f) {
            let item = em.row(ids.get(i), None, false);
            if emit(em, item).await.is_err() {
                return Ok(Err(Gone));
            }
        }
        Ok(Ok(()))
    }

    pub(super) async fn read(
        pool: PgPool,
        plan: Arc<ExportPlan>,
        rtype: ResourceType,
        out: mpsc::Sender<Result<ExportItem, StoreError>>,
    ) -> Result<(), StoreError> {
        let ids = plan.ids.get(&rtype).cloned().unwrap_or_default();
        let mut em = Emitter::new(plan.clone(), rtype, out);
        if !ids.is_empty() && each_in_scope(&pool, rtype, &ids, &mut em).await?.is_err() {
            return Ok(());
        }
        for id in std::mem::take(&mut em.late) {
            let args = [
                Arg::Static(rtype.as_str()),
                Arg::Text(id.clone()),
                Arg::Int(plan.scope.at),
            ];
            let row = bound(AS_OF_SQL, &args).fetch_optional(&pool).await?;
            let stored = match &row {
                None => None,
                Some(r) => Some((
                    r.try_get::<i64, _>(0)?,
                    r.try_get::<bool, _>(1)?,
                    r.try_get::<&[u8], _>(2)?,
                )),
            };
            let item = em.row(&id, stored, true);
            if emit(&mut em, item).await.is_err() {
                return Ok(());
            }
        }
        if let Some(chunk) = em.take() {
            let _ = send(&em.out, chunk).await;
        }
        Ok(())
    }
}
