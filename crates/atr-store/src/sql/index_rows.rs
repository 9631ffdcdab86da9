//! Writing the search index rows of resources, many per statement.

use atr_model::ResourceType;
use atr_model::index::IndexEntries;

use super::db::{Arg, Tx, values_clause};
use crate::StoreError;

/// Rows per multi-row INSERT: large enough to amortise a statement, small enough for SQLite's
/// 32,766-parameter limit at the widest table.
pub(crate) const ROWS_PER_INSERT: usize = 500;

/// Removes the index rows of resources (before their new version's rows go in).
pub(crate) async fn delete_index(
    tx: &mut Tx,
    rtype: ResourceType,
    ids: &[String],
) -> Result<(), StoreError> {
    delete_rows_of(
        tx,
        &["search_token", "search_string", "search_ref"],
        rtype,
        ids,
    )
    .await
}

/// Removes the rows that `tables` keep for resources `rtype/ids` (tables keyed by `rtype, id`).
pub(crate) async fn delete_rows_of(
    tx: &mut Tx,
    tables: &[&str],
    rtype: ResourceType,
    ids: &[String],
) -> Result<(), StoreError> {
    for chunk in ids.chunks(ROWS_PER_INSERT) {
        for table in tables {
            let mut st =
                super::statement::Statement::new(&format!("DELETE FROM {table} WHERE rtype = "));
            st.bind(rtype.as_str())
                .push(" AND id IN ")
                .bind_list(chunk.iter().cloned());
            tx.execute(&st.sql, &st.args).await?;
        }
    }
    Ok(())
}

/// Inserts the index rows of resources.
pub(crate) async fn insert_index(
    tx: &mut Tx,
    rtype: ResourceType,
    entries: Vec<(String, IndexEntries)>,
) -> Result<(), StoreError> {
    let t = rtype.as_str();
    let mut tokens: Vec<[Arg; 7]> = Vec::new();
    let mut strings: Vec<[Arg; 5]> = Vec::new();
    let mut refs: Vec<[Arg; 4]> = Vec::new();
    for (id, idx) in entries {
        for tok in idx.tokens {
            tokens.push([
                Arg::Static(t),
                id.as_str().into(),
                Arg::Static(tok.param),
                tok.system.into(),
                tok.code.into(),
                tok.type_system.into(),
                tok.type_code.into(),
            ]);
        }
        for s in idx.strings {
            strings.push([
                Arg::Static(t),
                id.as_str().into(),
                Arg::Static(s.param),
                s.norm.into(),
                s.raw.into(),
            ]);
        }
        for r in idx.refs {
            refs.push([
                Arg::Static(t),
                id.as_str().into(),
                Arg::Static(r.param),
                r.target.into(),
            ]);
        }
    }
    insert_rows(
        tx,
        "search_token",
        "(rtype, id, param, system, code, type_system, type_code)",
        tokens,
    )
    .await?;
    insert_rows(
        tx,
        "search_string",
        "(rtype, id, param, norm, raw)",
        strings,
    )
    .await?;
    insert_rows(tx, "search_ref", "(rtype, id, param, target)", refs).await?;
    Ok(())
}

/// Inserts rows of `N` columns into `table (columns)`: many rows on PostgreSQL by `COPY`, else
/// with as few `INSERT`s as the parameter limits allow.
pub(crate) async fn insert_rows<const N: usize>(
    tx: &mut Tx,
    table: &str,
    columns: &str,
    rows: Vec<[Arg; N]>,
) -> Result<(), StoreError> {
    if let Some(conn) = tx.postgres_bulk(rows.len()) {
        super::pg_copy::copy_rows(conn, table, columns, rows).await?;
        return Ok(());
    }
    let head = format!("INSERT INTO {table} {columns} VALUES ");
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let chunk: Vec<Arg> = rows.by_ref().take(ROWS_PER_INSERT).flatten().collect();
        let mut sql = String::with_capacity(head.len() + chunk.len() * 6);
        sql.push_str(&head);
        values_clause(&mut sql, chunk.len() / N, N);
        tx.execute(&sql, &chunk).await?;
    }
    Ok(())
}
