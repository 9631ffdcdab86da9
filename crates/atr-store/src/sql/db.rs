//! The dialect layer: one pool or transaction type over SQLite and PostgreSQL, statements written
//! once with `$N` placeholders (rewritten to `?` for SQLite), arguments and columns as small enums.
//!
//! Everything above this module is dialect-free; everything dialect-specific (connecting,
//! migrations, locking) lives in `sqlite.rs` and `postgres.rs`.

use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use sqlx::{AssertSqlSafe, Postgres, Row as _, Sqlite, Transaction};

use crate::StoreError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

#[derive(Clone)]
pub(crate) enum Pool {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

pub(crate) enum Tx {
    Sqlite(Transaction<'static, Sqlite>),
    Postgres(Transaction<'static, Postgres>),
}

/// A statement argument.
#[derive(Debug, Clone)]
pub(crate) enum Arg {
    /// A constant (a resource type, a parameter name): no allocation per row.
    Static(&'static str),
    Text(String),
    OptText(Option<String>),
    Int(i64),
    OptInt(Option<i64>),
    Bool(bool),
    Bytes(Vec<u8>),
}

impl From<&str> for Arg {
    fn from(s: &str) -> Self {
        Arg::Text(s.to_string())
    }
}
impl From<String> for Arg {
    fn from(s: String) -> Self {
        Arg::Text(s)
    }
}
impl From<i64> for Arg {
    fn from(v: i64) -> Self {
        Arg::Int(v)
    }
}
impl From<bool> for Arg {
    fn from(v: bool) -> Self {
        Arg::Bool(v)
    }
}
impl From<Option<String>> for Arg {
    fn from(v: Option<String>) -> Self {
        Arg::OptText(v)
    }
}
impl From<Option<i64>> for Arg {
    fn from(v: Option<i64>) -> Self {
        Arg::OptInt(v)
    }
}

/// The type of a result column, so rows decode the same way in both dialects.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Col {
    Text,
    OptText,
    Int,
    OptInt,
    Bool,
    Bytes,
}

#[derive(Debug, Clone)]
pub(crate) enum Val {
    Text(String),
    OptText(Option<String>),
    Int(i64),
    OptInt(Option<i64>),
    Bool(bool),
    Bytes(Vec<u8>),
}

/// A decoded result row.
#[derive(Debug, Clone)]
pub(crate) struct Row(pub Vec<Val>);

impl Row {
    pub fn text(&mut self, i: usize) -> String {
        match std::mem::replace(&mut self.0[i], Val::Bool(false)) {
            Val::Text(s) => s,
            Val::OptText(s) => s.unwrap_or_default(),
            other => {
                panic!("column {i} is {other:?}, not text: a query and its column list disagree")
            }
        }
    }
    pub fn opt_text(&mut self, i: usize) -> Option<String> {
        match std::mem::replace(&mut self.0[i], Val::Bool(false)) {
            Val::Text(s) => Some(s),
            Val::OptText(s) => s,
            other => {
                panic!("column {i} is {other:?}, not text: a query and its column list disagree")
            }
        }
    }
    pub fn int(&self, i: usize) -> i64 {
        match &self.0[i] {
            Val::Int(v) => *v,
            Val::OptInt(v) => v.unwrap_or(0),
            other => panic!(
                "column {i} is {other:?}, not an integer: a query and its column list disagree"
            ),
        }
    }
    pub fn opt_int(&self, i: usize) -> Option<i64> {
        match &self.0[i] {
            Val::Int(v) => Some(*v),
            Val::OptInt(v) => *v,
            other => panic!(
                "column {i} is {other:?}, not an integer: a query and its column list disagree"
            ),
        }
    }
    pub fn bool(&self, i: usize) -> bool {
        match &self.0[i] {
            Val::Bool(v) => *v,
            Val::Int(v) => *v != 0,
            other => panic!(
                "column {i} is {other:?}, not a boolean: a query and its column list disagree"
            ),
        }
    }
    pub fn bytes(&mut self, i: usize) -> Vec<u8> {
        match std::mem::replace(&mut self.0[i], Val::Bool(false)) {
            Val::Bytes(b) => b,
            other => {
                panic!("column {i} is {other:?}, not bytes: a query and its column list disagree")
            }
        }
    }
}

macro_rules! bind_all {
    ($query:expr, $args:expr) => {{
        let mut q = $query;
        for arg in $args {
            q = match arg {
                Arg::Static(v) => q.bind(*v),
                Arg::Text(v) => q.bind(v.as_str()),
                Arg::OptText(v) => q.bind(v.as_deref()),
                Arg::Int(v) => q.bind(*v),
                Arg::OptInt(v) => q.bind(*v),
                Arg::Bool(v) => q.bind(*v),
                Arg::Bytes(v) => q.bind(v.as_slice()),
            };
        }
        q
    }};
}

macro_rules! decode_row {
    ($row:expr, $cols:expr) => {{
        let row = $row;
        let mut vals = Vec::with_capacity($cols.len());
        for (i, col) in $cols.iter().enumerate() {
            vals.push(match col {
                Col::Text => Val::Text(row.try_get(i)?),
                Col::OptText => Val::OptText(row.try_get(i)?),
                Col::Int => Val::Int(row.try_get(i)?),
                Col::OptInt => Val::OptInt(row.try_get(i)?),
                Col::Bool => Val::Bool(row.try_get(i)?),
                Col::Bytes => Val::Bytes(row.try_get(i)?),
            });
        }
        Row(vals)
    }};
}

/// Rewrites `$N` placeholders to anonymous `?` and orders (and repeats) the arguments to match.
///
/// sqlx-sqlite looks up every parameter's name, and SQLite finds a name by scanning the list of
/// named parameters, so binding a 3,000-parameter multi-row INSERT written with `$N` is quadratic:
/// it was 45% of `atr load`'s time. Anonymous `?` parameters have no names to scan.
fn sqlite_positional<'a>(sql: &str, args: &'a [Arg]) -> (String, Vec<&'a Arg>) {
    let mut out = String::with_capacity(sql.len());
    let mut ordered = Vec::with_capacity(args.len());
    let bytes = sql.as_bytes();
    let mut i = 0;
    let mut in_literal = false;
    let mut copied = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\'' => in_literal = !in_literal,
            b'$' if !in_literal => {
                let start = i + 1;
                let mut end = start;
                while end < bytes.len() && bytes[end].is_ascii_digit() {
                    end += 1;
                }
                if end > start
                    && let Ok(n) = sql[start..end].parse::<usize>()
                    && (1..=args.len()).contains(&n)
                {
                    out.push_str(&sql[copied..i]);
                    out.push('?');
                    ordered.push(&args[n - 1]);
                    copied = end;
                    i = end;
                    continue;
                }
            }
            _ => {}
        }
        i += 1;
    }
    out.push_str(&sql[copied..]);
    (out, ordered)
}

fn decode_sqlite(row: &sqlx::sqlite::SqliteRow, cols: &[Col]) -> Result<Row, sqlx::Error> {
    Ok(decode_row!(row, cols))
}

fn decode_pg(row: &sqlx::postgres::PgRow, cols: &[Col]) -> Result<Row, sqlx::Error> {
    Ok(decode_row!(row, cols))
}

impl Pool {
    pub fn dialect(&self) -> Dialect {
        match self {
            Pool::Sqlite(_) => Dialect::Sqlite,
            Pool::Postgres(_) => Dialect::Postgres,
        }
    }

    /// A transaction that will write. SQLite takes its write lock at once (`BEGIN IMMEDIATE`), so
    /// two writers queue on the busy timeout instead of failing when one upgrades from reading.
    pub async fn begin_write(&self) -> Result<Tx, StoreError> {
        Ok(match self {
            Pool::Sqlite(p) => Tx::Sqlite(p.begin_with("BEGIN IMMEDIATE").await?),
            Pool::Postgres(p) => Tx::Postgres(p.begin().await?),
        })
    }

    pub async fn fetch_all(
        &self,
        sql: &str,
        args: &[Arg],
        cols: &[Col],
    ) -> Result<Vec<Row>, StoreError> {
        Ok(match self {
            Pool::Sqlite(p) => {
                let (sql, args) = sqlite_positional(sql, args);
                let q = bind_all!(sqlx::query(AssertSqlSafe(sql)), args);
                let rows = q.fetch_all(p).await?;
                rows.iter()
                    .map(|r| decode_sqlite(r, cols))
                    .collect::<Result<_, _>>()?
            }
            Pool::Postgres(p) => {
                let q = bind_all!(sqlx::query(AssertSqlSafe(sql)), args);
                let rows = q.fetch_all(p).await?;
                rows.iter()
                    .map(|r| decode_pg(r, cols))
                    .collect::<Result<_, _>>()?
            }
        })
    }

    pub async fn fetch_optional(
        &self,
        sql: &str,
        args: &[Arg],
        cols: &[Col],
    ) -> Result<Option<Row>, StoreError> {
        Ok(self.fetch_all(sql, args, cols).await?.into_iter().next())
    }

    /// Runs a query and yields decoded rows as they arrive, without collecting them.
    pub fn rows<'a>(
        &'a self,
        sql: &'a str,
        args: &'a [Arg],
        cols: &'a [Col],
    ) -> BoxStream<'a, Result<Row, StoreError>> {
        match self {
            Pool::Sqlite(p) => {
                let (sql, args) = sqlite_positional(sql, args);
                let q = bind_all!(sqlx::query(AssertSqlSafe(sql)), args);
                q.fetch(p)
                    .map(move |r| Ok(decode_sqlite(&r?, cols)?))
                    .boxed()
            }
            Pool::Postgres(p) => {
                let q = bind_all!(sqlx::query(AssertSqlSafe(sql)), args);
                q.fetch(p).map(move |r| Ok(decode_pg(&r?, cols)?)).boxed()
            }
        }
    }
}

/// Rows from which `COPY` beats multi-row `INSERT`s on PostgreSQL (it costs a round trip more).
const COPY_FROM_ROWS: usize = 64;

impl Tx {
    /// The PostgreSQL connection, when `rows` rows are better sent by `COPY`.
    pub fn postgres_bulk(&mut self, rows: usize) -> Option<&mut sqlx::PgConnection> {
        match self {
            Tx::Postgres(tx) if rows >= COPY_FROM_ROWS => Some(&mut **tx),
            _ => None,
        }
    }

    pub async fn execute(&mut self, sql: &str, args: &[Arg]) -> Result<u64, StoreError> {
        Ok(match self {
            Tx::Sqlite(tx) => {
                let (sql, args) = sqlite_positional(sql, args);
                bind_all!(sqlx::query(AssertSqlSafe(sql)), args)
                    .execute(&mut **tx)
                    .await?
                    .rows_affected()
            }
            Tx::Postgres(tx) => bind_all!(sqlx::query(AssertSqlSafe(sql)), args)
                .execute(&mut **tx)
                .await?
                .rows_affected(),
        })
    }

    pub async fn fetch_all(
        &mut self,
        sql: &str,
        args: &[Arg],
        cols: &[Col],
    ) -> Result<Vec<Row>, StoreError> {
        Ok(match self {
            Tx::Sqlite(tx) => {
                let (sql, args) = sqlite_positional(sql, args);
                let rows = bind_all!(sqlx::query(AssertSqlSafe(sql)), args)
                    .fetch_all(&mut **tx)
                    .await?;
                rows.iter()
                    .map(|r| decode_sqlite(r, cols))
                    .collect::<Result<_, _>>()?
            }
            Tx::Postgres(tx) => {
                let rows = bind_all!(sqlx::query(AssertSqlSafe(sql)), args)
                    .fetch_all(&mut **tx)
                    .await?;
                rows.iter()
                    .map(|r| decode_pg(r, cols))
                    .collect::<Result<_, _>>()?
            }
        })
    }

    pub async fn fetch_optional(
        &mut self,
        sql: &str,
        args: &[Arg],
        cols: &[Col],
    ) -> Result<Option<Row>, StoreError> {
        Ok(self.fetch_all(sql, args, cols).await?.into_iter().next())
    }

    /// Streams rows into `each` inside this transaction.
    pub async fn for_each_row(
        &mut self,
        sql: &str,
        args: &[Arg],
        cols: &[Col],
        mut each: impl FnMut(Row) -> Result<(), StoreError> + Send,
    ) -> Result<(), StoreError> {
        match self {
            Tx::Sqlite(tx) => {
                let (sql, args) = sqlite_positional(sql, args);
                let q = bind_all!(sqlx::query(AssertSqlSafe(sql)), args);
                let mut rows = q.fetch(&mut **tx);
                while let Some(r) = rows.try_next().await? {
                    each(decode_sqlite(&r, cols)?)?;
                }
            }
            Tx::Postgres(tx) => {
                let q = bind_all!(sqlx::query(AssertSqlSafe(sql)), args);
                let mut rows = q.fetch(&mut **tx);
                while let Some(r) = rows.try_next().await? {
                    each(decode_pg(&r, cols)?)?;
                }
            }
        }
        Ok(())
    }

    pub async fn commit(self) -> Result<(), StoreError> {
        match self {
            Tx::Sqlite(tx) => tx.commit().await?,
            Tx::Postgres(tx) => tx.commit().await?,
        }
        Ok(())
    }

    /// Ends the transaction now, so the next one (SQLite's write lock) does not wait for a
    /// rollback queued by a drop.
    pub async fn rollback(self) -> Result<(), StoreError> {
        match self {
            Tx::Sqlite(tx) => tx.rollback().await?,
            Tx::Postgres(tx) => tx.rollback().await?,
        }
        Ok(())
    }

    pub fn dialect(&self) -> Dialect {
        match self {
            Tx::Sqlite(_) => Dialect::Sqlite,
            Tx::Postgres(_) => Dialect::Postgres,
        }
    }
}

/// Appends `(…),(…)` rows of `width` placeholders to a multi-row `INSERT … VALUES`, numbering
/// placeholders from `$1`.
pub(crate) fn values_clause(sql: &mut String, rows: usize, width: usize) {
    use std::fmt::Write;
    for r in 0..rows {
        sql.push_str(if r == 0 { "(" } else { ",(" });
        for c in 0..width {
            if c > 0 {
                sql.push(',');
            }
            let _ = write!(sql, "${}", r * width + c + 1);
        }
        sql.push(')');
    }
}

impl Tx {
    /// Runs several `;`-separated statements (a migration script).
    pub async fn execute_script(&mut self, sql: &str) -> Result<(), StoreError> {
        match self {
            Tx::Sqlite(tx) => {
                sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut **tx).await?;
            }
            Tx::Postgres(tx) => {
                sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut **tx).await?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_placeholders_follow_occurrence_order_and_skip_literals() {
        let args = [Arg::Int(1), Arg::Text("b".into()), Arg::Int(3)];
        let (sql, ordered) = sqlite_positional(
            "SELECT '$1' WHERE a = $2 AND b = $1 OR c = $2 AND d = $3",
            &args,
        );
        assert_eq!(sql, "SELECT '$1' WHERE a = ? AND b = ? OR c = ? AND d = ?");
        let shown: Vec<String> = ordered.iter().map(|a| format!("{a:?}")).collect();
        assert_eq!(shown, ["Text(\"b\")", "Int(1)", "Text(\"b\")", "Int(3)"]);
    }
}
