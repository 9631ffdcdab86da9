//! Reading an export's resources: the Patients, Coverages and RelatedPersons a Group version's
//! members reference (joins over the member rows, streamed), and the providers, payers and
//! places around them (small id sets resolved once, in [`plan`]).
//!
//! Stored bytes are copied, never parsed: a resource's body is already one compact JSON line.
//! Every resource is exported as it was at the job's snapshot instant: the current version when
//! it is not newer than the snapshot, else the newest version that is (looked up after the main
//! scan; rare while an export runs).
//!
//! The member rows always drive the joins: on SQLite `CROSS JOIN` fixes that order (without
//! statistics, its planner preferred scanning `search_ref` and probing the materialised member
//! set, which has no index: quadratic on a large list); PostgreSQL reads it as a plain join.
//!
//! SQLite runs each type on a blocking thread with its own read-only `rusqlite` connection
//! (sqlx would hand every row across threads); PostgreSQL streams rows through sqlx.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use atr_model::ResourceType;
use bytes::Bytes;
use futures::TryStreamExt;
use sqlx::Row as _;
use tokio::sync::mpsc;

use super::db::{Arg, Col, Pool};
use crate::{ExportItem, ExportPlan, ExportScope, StoreError};

/// Bytes per chunk handed to the file writer.
const CHUNK: usize = 256 * 1024;
/// Ids per `IN (…)` list.
const IDS_PER_QUERY: usize = 500;

pub type ExportStream =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<ExportItem, StoreError>> + Send>>;

/// The member rows of the exported version (arguments `$1` group, `$2` version, then the
/// `patient` subset from `$3`).
fn members_at(scope: &ExportScope) -> (String, Vec<Arg>) {
    let mut sql = String::from(
        "group_id = $1 AND from_version <= $2 AND (to_version IS NULL OR to_version > $2)",
    );
    let mut args = vec![
        Arg::from(scope.group_id.as_str()),
        Arg::Int(scope.group_version),
    ];
    if let Some(patients) = &scope.patients {
        sql.push_str(" AND patient IN (");
        for (i, p) in patients.iter().enumerate() {
            if i > 0 {
                sql.push(',');
            }
            sql.push_str(&format!("${}", args.len() + 1));
            args.push(Arg::from(p.as_str()));
        }
        if patients.is_empty() {
            sql.push_str("NULL");
        }
        sql.push(')');
    }
    (sql, args)
}

fn prefix(rtype: ResourceType) -> String {
    format!("{}/", rtype.as_str())
}

/// Resolves the small reference sets of an export (providers, payers, places) and, with
/// `_since`, what the members who joined after it reference.
pub(crate) async fn plan(pool: &Pool, scope: &ExportScope) -> Result<ExportPlan, StoreError> {
    let entries = match &scope.patients {
        Some(p) => p.len() as i64,
        None => pool
            .fetch_optional(
                "SELECT member_count FROM resource_version WHERE rtype = 'Group' AND id = $1 AND version = $2",
                &[scope.group_id.as_str().into(), scope.group_version.into()],
                &[Col::OptInt],
            )
            .await?
            .and_then(|r| r.opt_int(0))
            .unwrap_or(0),
    };
    let (since, joined) = match scope.since {
        None => (None, HashSet::new()),
        Some(since) => match joined_since(pool, scope, since).await? {
            None => (None, HashSet::new()),
            Some(joined) => (Some(since), joined),
        },
    };
    Ok(ExportPlan {
        scope: scope.clone(),
        providers: BTreeMap::new(),
        since,
        joined,
        entries,
    })
}

/// The ids of the Practitioners, PractitionerRoles, Organizations and Locations in scope: the
/// attributed providers, the roles' practitioners, organizations and locations, the Coverages'
/// payors and the Group's managing entity.
pub(crate) async fn providers(
    pool: &Pool,
    scope: &ExportScope,
) -> Result<BTreeMap<ResourceType, Vec<String>>, StoreError> {
    let (at_v, args) = members_at(scope);
    let mut refs: BTreeSet<String> = BTreeSet::new();
    let provider_sql =
        format!("SELECT DISTINCT provider FROM group_member WHERE {at_v} AND provider IS NOT NULL");
    refs.extend(scan_texts(pool, provider_sql, args.clone()).await?);
    let managing = pool
        .fetch_all(
            "SELECT target FROM search_ref WHERE rtype = 'Group' AND id = $1 AND param = 'managing-entity'",
            &[scope.group_id.as_str().into()],
            &[Col::Text],
        )
        .await?;
    refs.extend(managing.into_iter().map(|mut r| r.text(0)));
    let payor_sql = format!(
        "SELECT DISTINCT sr.target FROM \
         (SELECT coverage AS ref FROM group_member WHERE {at_v} AND coverage IS NOT NULL) m \
         CROSS JOIN search_ref sr WHERE sr.rtype = 'Coverage' AND sr.id = substr(m.ref, 10) \
         AND sr.param = 'payor' AND substr(m.ref, 1, 9) = 'Coverage/'"
    );
    let payors = scan_texts(pool, payor_sql, args).await?;
    refs.extend(payors);
    role_targets(pool, &mut refs).await?;

    let mut providers: BTreeMap<ResourceType, Vec<String>> = BTreeMap::new();
    for r in &refs {
        let Some((t, id)) = r.split_once('/') else {
            continue;
        };
        let Ok(rtype) = t.parse::<ResourceType>() else {
            continue;
        };
        if matches!(
            rtype,
            ResourceType::Practitioner
                | ResourceType::PractitionerRole
                | ResourceType::Organization
                | ResourceType::Location
        ) {
            providers.entry(rtype).or_default().push(id.to_string());
        }
    }
    Ok(providers)
}

/// The first column of a query that scans a whole member list (a few rows out): on SQLite on its
/// own small-cache connection, so the scan does not fill a pooled connection's page cache.
async fn scan_texts(pool: &Pool, sql: String, args: Vec<Arg>) -> Result<Vec<String>, StoreError> {
    match pool {
        Pool::Sqlite(p) => {
            let path = p.connect_options().get_filename().to_path_buf();
            tokio::task::spawn_blocking(move || sqlite::texts(&path, &sql, &args))
                .await
                .map_err(|e| StoreError::Direct(e.to_string()))?
        }
        Pool::Postgres(_) => Ok(pool
            .fetch_all(&sql, &args, &[Col::Text])
            .await?
            .into_iter()
            .map(|mut r| r.text(0))
            .collect()),
    }
}

/// Adds the Practitioners, Organizations and Locations of the PractitionerRoles in `refs`.
async fn role_targets(pool: &Pool, refs: &mut BTreeSet<String>) -> Result<(), StoreError> {
    let roles: Vec<String> = refs
        .iter()
        .filter_map(|r| r.strip_prefix("PractitionerRole/"))
        .map(str::to_string)
        .collect();
    for chunk in roles.chunks(IDS_PER_QUERY) {
        let mut sql = String::from(
            "SELECT target FROM search_ref WHERE rtype = 'PractitionerRole' \
             AND param IN ('practitioner', 'organization', 'location') AND id IN (",
        );
        push_placeholders(&mut sql, 1, chunk.len());
        sql.push(')');
        let args: Vec<Arg> = chunk.iter().map(|id| Arg::from(id.as_str())).collect();
        for mut r in pool.fetch_all(&sql, &args, &[Col::Text]).await? {
            refs.insert(r.text(0));
        }
    }
    Ok(())
}

fn push_placeholders(sql: &mut String, first: usize, n: usize) {
    for i in 0..n {
        if i > 0 {
            sql.push(',');
        }
        sql.push_str(&format!("${}", first + i));
    }
}

/// What the members who joined the Group after `since` reference; `None` when the Group did not
/// exist then (everyone joined after it).
async fn joined_since(
    pool: &Pool,
    scope: &ExportScope,
    since: i64,
) -> Result<Option<HashSet<String>>, StoreError> {
    let then = pool
        .fetch_optional(
            "SELECT MAX(version) FROM resource_version WHERE rtype = 'Group' AND id = $1 \
             AND last_updated <= $2 AND NOT deleted",
            &[scope.group_id.as_str().into(), since.into()],
            &[Col::OptInt],
        )
        .await?
        .and_then(|r| r.opt_int(0));
    let Some(then) = then else {
        return Ok(None);
    };
    // Rows that began after `then` are candidates; their patient joined unless it had a row then.
    let (at_v, mut args) = members_at(scope);
    let n = args.len();
    args.push(Arg::Int(then));
    let rows = pool
        .fetch_all(
            &format!(
                "SELECT patient, coverage, provider FROM group_member WHERE {at_v} AND from_version > ${}",
                n + 1
            ),
            &args,
            &[Col::Text, Col::OptText, Col::OptText],
        )
        .await?;
    if rows.is_empty() {
        return Ok(Some(HashSet::new()));
    }
    let mut candidates: HashSet<String> = rows.iter().cloned().map(|mut r| r.text(0)).collect();
    {
        let sql = "SELECT patient FROM group_member WHERE group_id = $1 AND from_version <= $2 \
                   AND (to_version IS NULL OR to_version > $2)";
        let args = [Arg::from(scope.group_id.as_str()), Arg::Int(then)];
        let cols = [Col::Text];
        let mut earlier = pool.rows(sql, &args, &cols);
        while let Some(mut r) = earlier.try_next().await? {
            candidates.remove(&r.text(0));
            if candidates.is_empty() {
                break;
            }
        }
    }
    let mut joined: BTreeSet<String> = BTreeSet::new();
    let mut coverages = Vec::new();
    for mut r in rows {
        let patient = r.text(0);
        if !candidates.contains(&patient) {
            continue;
        }
        if let Some(c) = r.opt_text(1) {
            coverages.push(c.clone());
            joined.insert(c);
        }
        if let Some(p) = r.opt_text(2) {
            joined.insert(p);
        }
        joined.insert(patient);
    }
    for chunk in coverages.chunks(IDS_PER_QUERY) {
        let mut sql = String::from(
            "SELECT target FROM search_ref WHERE rtype = 'Coverage' \
             AND param IN ('subscriber', 'policy-holder', 'payor') AND id IN (",
        );
        push_placeholders(&mut sql, 1, chunk.len());
        sql.push(')');
        let args: Vec<Arg> = chunk
            .iter()
            .map(|c| Arg::from(c.strip_prefix("Coverage/").unwrap_or(c)))
            .collect();
        for mut r in pool.fetch_all(&sql, &args, &[Col::Text]).await? {
            joined.insert(r.text(0));
        }
    }
    role_targets(pool, &mut joined).await?;
    Ok(Some(joined.into_iter().collect()))
}

/// The statement that lists one type's resources in scope: rows of (reference, version,
/// last_updated, deleted, body), the last four NULL for a reference nothing is stored under.
enum Source {
    Join { sql: String, args: Vec<Arg> },
    Ids(Vec<String>),
}

fn source(plan: &ExportPlan, rtype: ResourceType) -> Source {
    let (at_v, args) = members_at(&plan.scope);
    let by_ref = |inner: String, strip: usize| {
        format!(
            "SELECT m.ref, rv.version, rv.last_updated, rv.deleted, rv.body FROM ({inner}) m \
             LEFT JOIN resource_version rv ON rv.rtype = '{}' AND rv.id = substr(m.ref, {}) AND rv.is_current",
            rtype.as_str(),
            strip + 1
        )
    };
    match rtype {
        ResourceType::Patient => Source::Join {
            sql: by_ref(
                format!(
                    "SELECT DISTINCT patient AS ref FROM group_member WHERE {at_v} \
                     AND substr(patient, 1, 8) = 'Patient/'"
                ),
                8,
            ),
            args,
        },
        ResourceType::Coverage => Source::Join {
            sql: by_ref(
                format!(
                    "SELECT DISTINCT coverage AS ref FROM group_member WHERE {at_v} \
                     AND coverage IS NOT NULL AND substr(coverage, 1, 9) = 'Coverage/'"
                ),
                9,
            ),
            args,
        },
        ResourceType::RelatedPerson => Source::Join {
            sql: by_ref(
                format!(
                    "SELECT DISTINCT sr.target AS ref FROM \
                     (SELECT coverage AS c FROM group_member WHERE {at_v} AND coverage IS NOT NULL) cv \
                     CROSS JOIN search_ref sr WHERE sr.rtype = 'Coverage' AND sr.id = substr(cv.c, 10) \
                     AND sr.param IN ('subscriber', 'policy-holder') \
                     AND substr(cv.c, 1, 9) = 'Coverage/' AND substr(sr.target, 1, 14) = 'RelatedPerson/'"
                ),
                14,
            ),
            args,
        },
        other => Source::Ids(plan.providers.get(&other).cloned().unwrap_or_default()),
    }
}

/// The statement for a list of ids: (reference, version, last_updated, deleted, body).
fn ids_sql(rtype: ResourceType, n: usize) -> String {
    let mut sql = format!(
        "SELECT '{}/' || id, version, last_updated, deleted, body FROM resource_version \
         WHERE rtype = '{}' AND is_current AND id IN (",
        rtype.as_str(),
        rtype.as_str()
    );
    push_placeholders(&mut sql, 1, n);
    sql.push(')');
    sql
}

/// The newest version of one resource not after the snapshot.
const AS_OF_SQL: &str = "SELECT version, last_updated, deleted, body FROM resource_version \
     WHERE rtype = $1 AND id = $2 AND last_updated <= $3 ORDER BY version DESC LIMIT 1";

/// Turns scanned rows into NDJSON chunks and the deleted/missing reports.
struct Emitter {
    plan: Arc<ExportPlan>,
    prefix: String,
    buf: Vec<u8>,
    count: u64,
    /// References whose current version is newer than the snapshot.
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

    /// One scanned row; `stored` is `(version, last_updated, deleted, body)`.
    fn row(
        &mut self,
        reference: &str,
        stored: Option<(i64, i64, bool, &[u8])>,
        as_of: bool,
    ) -> Option<ExportItem> {
        let Some((_, last_updated, deleted, body)) = stored else {
            return Some(ExportItem::Missing(reference.to_string()));
        };
        if last_updated > self.plan.scope.at && !as_of {
            self.late.push(reference.to_string());
            return None;
        }
        let since = self.plan.since;
        if deleted {
            return match since {
                Some(s) if last_updated > s => Some(ExportItem::Deleted(reference.to_string())),
                Some(_) => None,
                None => Some(ExportItem::Missing(reference.to_string())),
            };
        }
        if let Some(s) = since
            && last_updated <= s
            && !self.plan.joined.contains(reference)
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

    fn strip<'a>(&self, reference: &'a str) -> &'a str {
        reference
            .strip_prefix(self.prefix.as_str())
            .unwrap_or(reference)
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

mod sqlite {
    use rusqlite::types::ValueRef;
    use rusqlite::{Connection, OpenFlags, OptionalExtension, params_from_iter};

    use super::*;

    fn err(e: rusqlite::Error) -> StoreError {
        StoreError::Direct(e.to_string())
    }

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

    fn scan(
        conn: &Connection,
        sql: &str,
        args: &[Arg],
        em: &mut Emitter,
        mut found: Option<&mut HashSet<String>>,
    ) -> Result<Result<(), Gone>, StoreError> {
        let mut stmt = conn.prepare(&numbered(sql)).map_err(err)?;
        let mut rows = stmt.query(params_from_iter(bind(args))).map_err(err)?;
        while let Some(row) = rows.next().map_err(err)? {
            let reference = match row.get_ref(0).map_err(err)? {
                ValueRef::Text(t) => {
                    std::str::from_utf8(t).map_err(|e| StoreError::Corrupt(e.to_string()))?
                }
                _ => continue,
            };
            let stored = match row.get_ref(1).map_err(err)? {
                ValueRef::Null => None,
                _ => {
                    let body = match row.get_ref(4).map_err(err)? {
                        ValueRef::Blob(b) | ValueRef::Text(b) => b,
                        _ => &[][..],
                    };
                    Some((
                        row.get::<_, i64>(1).map_err(err)?,
                        row.get::<_, i64>(2).map_err(err)?,
                        row.get::<_, bool>(3).map_err(err)?,
                        body,
                    ))
                }
            };
            if let Some(found) = found.as_deref_mut() {
                found.insert(reference.to_string());
            }
            if let Some(item) = em.row(reference, stored, false)
                && send(&em.out, item).is_err()
            {
                return Ok(Err(Gone));
            }
            if em.full()
                && let Some(chunk) = em.take()
                && send(&em.out, chunk).is_err()
            {
                return Ok(Err(Gone));
            }
        }
        Ok(Ok(()))
    }

    /// A read-only connection with a small page cache and temporary b-trees on disk, so an
    /// export's memory stays flat whatever the list's size.
    fn open(path: &std::path::Path) -> Result<Connection, StoreError> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(30))
            .map_err(err)?;
        conn.execute_batch(
            "PRAGMA cache_size = -8192; PRAGMA temp.cache_size = -8192; PRAGMA temp_store = FILE; BEGIN",
        )
        .map_err(err)?;
        Ok(conn)
    }

    /// The first column of every row, as text.
    pub(super) fn texts(
        path: &std::path::Path,
        sql: &str,
        args: &[Arg],
    ) -> Result<Vec<String>, StoreError> {
        let conn = open(path)?;
        let mut stmt = conn.prepare(&numbered(sql)).map_err(err)?;
        let rows = stmt
            .query_map(params_from_iter(bind(args)), |r| r.get::<_, String>(0))
            .map_err(err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(err)?;
        Ok(rows)
    }

    pub(super) fn read(
        path: PathBuf,
        plan: Arc<ExportPlan>,
        rtype: ResourceType,
        out: mpsc::Sender<Result<ExportItem, StoreError>>,
    ) -> Result<(), StoreError> {
        let conn = open(&path)?;
        let mut em = Emitter::new(plan.clone(), rtype, out);
        match source(&plan, rtype) {
            Source::Join { sql, args } => {
                if scan(&conn, &sql, &args, &mut em, None)?.is_err() {
                    return Ok(());
                }
            }
            Source::Ids(ids) => {
                let mut found = HashSet::new();
                for chunk in ids.chunks(IDS_PER_QUERY) {
                    let args: Vec<Arg> = chunk.iter().map(|i| Arg::from(i.as_str())).collect();
                    found.clear();
                    let sql = ids_sql(rtype, chunk.len());
                    if scan(&conn, &sql, &args, &mut em, Some(&mut found))?.is_err() {
                        return Ok(());
                    }
                    for id in chunk {
                        let reference = format!("{}{id}", em.prefix);
                        if !found.contains(&reference)
                            && send(&em.out, ExportItem::Missing(reference)).is_err()
                        {
                            return Ok(());
                        }
                    }
                }
            }
        }
        let late = std::mem::take(&mut em.late);
        let mut stmt = conn.prepare(&numbered(AS_OF_SQL)).map_err(err)?;
        for reference in late {
            let id = em.strip(&reference).to_string();
            let row = stmt
                .query_row(rusqlite::params![rtype.as_str(), id, plan.scope.at], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, bool>(2)?,
                        r.get::<_, Vec<u8>>(3)?,
                    ))
                })
                .optional()
                .map_err(err)?;
            let stored = row.as_ref().map(|(v, l, d, b)| (*v, *l, *d, b.as_slice()));
            if let Some(item) = em.row(&reference, stored, true)
                && send(&em.out, item).is_err()
            {
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

    async fn scan(
        pool: &PgPool,
        sql: &str,
        args: &[Arg],
        em: &mut Emitter,
        found: &mut HashSet<String>,
    ) -> Result<Result<(), Gone>, StoreError> {
        let mut rows = bound(sql, args).fetch(pool);
        while let Some(row) = rows.try_next().await? {
            let reference: &str = row.try_get(0)?;
            let version: Option<i64> = row.try_get(1)?;
            let stored = match version {
                None => None,
                Some(v) => Some((
                    v,
                    row.try_get::<i64, _>(2)?,
                    row.try_get::<bool, _>(3)?,
                    row.try_get::<&[u8], _>(4)?,
                )),
            };
            found.insert(reference.to_string());
            if let Some(item) = em.row(reference, stored, false)
                && send(&em.out, item).await.is_err()
            {
                return Ok(Err(Gone));
            }
            if em.full()
                && let Some(chunk) = em.take()
                && send(&em.out, chunk).await.is_err()
            {
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
        let mut em = Emitter::new(plan.clone(), rtype, out);
        let mut found = HashSet::new();
        match source(&plan, rtype) {
            Source::Join { sql, args } => {
                if scan(&pool, &sql, &args, &mut em, &mut HashSet::new())
                    .await?
                    .is_err()
                {
                    return Ok(());
                }
            }
            Source::Ids(ids) => {
                for chunk in ids.chunks(IDS_PER_QUERY) {
                    let args: Vec<Arg> = chunk.iter().map(|i| Arg::from(i.as_str())).collect();
                    found.clear();
                    if scan(
                        &pool,
                        &ids_sql(rtype, chunk.len()),
                        &args,
                        &mut em,
                        &mut found,
                    )
                    .await?
                    .is_err()
                    {
                        return Ok(());
                    }
                    for id in chunk {
                        let reference = format!("{}{id}", em.prefix);
                        if !found.contains(&reference)
                            && send(&em.out, ExportItem::Missing(reference)).await.is_err()
                        {
                            return Ok(());
                        }
                    }
                }
            }
        }
        for reference in std::mem::take(&mut em.late) {
            let id = em.strip(&reference).to_string();
            let args = [
                Arg::Static(rtype.as_str()),
                Arg::Text(id),
                Arg::Int(plan.scope.at),
            ];
            let row = bound(AS_OF_SQL, &args).fetch_optional(&pool).await?;
            let stored = match &row {
                None => None,
                Some(r) => Some((
                    r.try_get::<i64, _>(0)?,
                    r.try_get::<i64, _>(1)?,
                    r.try_get::<bool, _>(2)?,
                    r.try_get::<&[u8], _>(3)?,
                )),
            };
            if let Some(item) = em.row(&reference, stored, true)
                && send(&em.out, item).await.is_err()
            {
                return Ok(());
            }
        }
        if let Some(chunk) = em.take() {
            let _ = send(&em.out, chunk).await;
        }
        Ok(())
    }
}
