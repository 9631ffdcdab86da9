//! Unique claims: values no two resources may hold at once (one attribution list per contract,
//! one Coverage per member id + payer + contract + plan). The writer says what a resource claims
//! (`ResourceWrite::claims`); here they are recorded in the write's transaction, after the
//! resource's previous claims are released, and a value another resource holds refuses the write.
//! The table's primary key settles two writes that race for one value.

use std::collections::HashMap;

use atr_model::ResourceType;
use atr_model::contract::UniqueClaim;

use super::db::{Arg, Col, Tx};
use super::index_rows::{ROWS_PER_INSERT, delete_rows_of, insert_rows};
use super::statement::Statement;
use crate::StoreError;

/// True for the types that can claim anything: the others skip the table entirely.
pub(crate) fn may_claim(rtype: ResourceType) -> bool {
    matches!(rtype, ResourceType::Group | ResourceType::Coverage)
}

/// Releases what `ids` held (they are being replaced or deleted).
pub(crate) async fn release(
    tx: &mut Tx,
    rtype: ResourceType,
    ids: &[String],
) -> Result<(), StoreError> {
    if !may_claim(rtype) {
        return Ok(());
    }
    delete_rows_of(tx, &["unique_claim"], rtype, ids).await
}

/// Records the claims of resources of `rtype` (`(id, claims)`), whose earlier claims were
/// released. Fails with [`StoreError::Claimed`] naming the first value held by another resource,
/// in the store or earlier in the same batch.
pub(crate) async fn record(
    tx: &mut Tx,
    rtype: ResourceType,
    claims: Vec<(String, Vec<UniqueClaim>)>,
) -> Result<(), StoreError> {
    let mut wanted: HashMap<String, (String, UniqueClaim)> = HashMap::new();
    for (id, list) in claims {
        for c in list {
            if let Some((holder, _)) = wanted.get(&c.key)
                && *holder != id
            {
                return Err(StoreError::Claimed {
                    what: c.what,
                    holder: format!("{rtype}/{holder}"),
                    element: c.element,
                });
            }
            wanted.insert(c.key.clone(), (id.clone(), c));
        }
    }
    if wanted.is_empty() {
        return Ok(());
    }
    let keys: Vec<String> = wanted.keys().cloned().collect();
    for chunk in keys.chunks(ROWS_PER_INSERT) {
        let mut st = Statement::new("SELECT claim, rtype, id FROM unique_claim WHERE claim IN ");
        st.bind_list(chunk.iter().cloned());
        let held = tx
            .fetch_optional(&st.sql, &st.args, &[Col::Text, Col::Text, Col::Text])
            .await?;
        if let Some(mut row) = held {
            let key = row.text(0);
            let (what, element) = wanted
                .remove(&key)
                .map_or(("a unique value".to_string(), ""), |(_, c)| {
                    (c.what, c.element)
                });
            return Err(StoreError::Claimed {
                what,
                holder: format!("{}/{}", row.text(1), row.text(2)),
                element,
            });
        }
    }
    let rows: Vec<[Arg; 3]> = wanted
        .into_iter()
        .map(|(key, (id, _))| [key.into(), Arg::Static(rtype.as_str()), id.into()])
        .collect();
    insert_rows(tx, "unique_claim", "(claim, rtype, id)", rows)
        .await
        .map_err(raced)
}

/// A unique violation here means another transaction took the value between the check and the
/// insert.
fn raced(e: StoreError) -> StoreError {
    if let StoreError::Database(sqlx::Error::Database(db)) = &e
        && db.is_unique_violation()
    {
        return StoreError::Claimed {
            what: "a value this resource must hold alone (contract identifier, or member id, \
                   payer and plan)"
                .into(),
            holder: "a resource written at the same moment".into(),
            element: "",
        };
    }
    e
}
