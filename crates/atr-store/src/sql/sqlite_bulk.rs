//! The SQLite side of `load_batch`, written straight to the database file with rusqlite on a
//! blocking thread: resources without member rows, and Groups that do not exist yet (with their
//! member rows; a million-member roster is most of a large load).
//!
//! Through sqlx every statement is a round trip between the async side (which builds an owned
//! argument vector) and sqlx's SQLite worker thread, so the two alternate and the load runs at the
//! speed of one thread with hand-offs in between. Here one thread runs the whole batch in one
//! transaction with cached single-row statements binding borrowed values: no argument copies, no
//! SQL text per chunk, no hand-offs. The semantics are those of the generic `load_plain`: an id
//! that has a current version gets the next version and its index rows are replaced.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use atr_model::ResourceType;
use rusqlite::{CachedStatement, Connection, OptionalExtension, TransactionBehavior};

use super::sqlite::{DirectMode, direct_err as err, open_direct};
use crate::{Prestamped, ResourceWrite, StoreError};

/// The statements of one batch, prepared (or taken from the cache) once per batch so the hot loop
/// neither hashes SQL text nor compiles anything.
struct Statements<'c> {
    current: CachedStatement<'c>,
    retire: CachedStatement<'c>,
    drop_tokens: CachedStatement<'c>,
    drop_strings: CachedStatement<'c>,
    drop_refs: CachedStatement<'c>,
    version: CachedStatement<'c>,
    group_version: CachedStatement<'c>,
    watched: CachedStatement<'c>,
    member: CachedStatement<'c>,
    token: CachedStatement<'c>,
    string: CachedStatement<'c>,
    reference: CachedStatement<'c>,
    claim_release: CachedStatement<'c>,
    claim_holder: CachedStatement<'c>,
    claim_insert: CachedStatement<'c>,
}

impl<'c> Statements<'c> {
    fn prepare(conn: &'c Connection) -> Result<Self, StoreError> {
        let p = |sql: &str| conn.prepare_cached(sql).map_err(err);
        Ok(Statements {
            current: p(
                "SELECT version FROM resource_version WHERE rtype = ?1 AND id = ?2 AND is_current",
            )?,
            retire: p(
                "UPDATE resource_version SET is_current = FALSE WHERE rtype = ?1 AND id = ?2 AND is_current",
            )?,
            drop_tokens: p("DELETE FROM search_token WHERE rtype = ?1 AND id = ?2")?,
            drop_strings: p("DELETE FROM search_string WHERE rtype = ?1 AND id = ?2")?,
            drop_refs: p("DELETE FROM search_ref WHERE rtype = ?1 AND id = ?2")?,
            // member_count stays NULL: these are not Groups.
            version: p(
                "INSERT INTO resource_version (rtype, id, version, last_updated, body, deleted, is_current) \
                 VALUES (?1, ?2, ?3, ?4, ?5, FALSE, TRUE)",
            )?,
            group_version: p(
                "INSERT INTO resource_version (rtype, id, version, last_updated, body, deleted, is_current, member_count) \
                 VALUES ('Group', ?1, 1, ?2, ?3, FALSE, TRUE, ?4)",
            )?,
            // A Subscription may name a Group before the Group exists; its creation is then an
            // event, which the generic path records.
            watched: p(
                "SELECT 1 FROM subscription WHERE group_id = ?1 AND status <> 'off' LIMIT 1",
            )?,
            member: p(
                "INSERT INTO group_member (group_id, ord, member_key, patient, coverage, provider, period_start, \
                 period_end, inactive, change_type, content_hash, extensions, body, from_version) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, 1)",
            )?,
            token: p(
                "INSERT INTO search_token (rtype, id, param, system, code, type_system, type_code) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?,
            string: p(
                "INSERT INTO search_string (rtype, id, param, norm, raw) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?,
            reference: p(
                "INSERT INTO search_ref (rtype, id, param, target) VALUES (?1, ?2, ?3, ?4)",
            )?,
            claim_release: p("DELETE FROM unique_claim WHERE rtype = ?1 AND id = ?2")?,
            claim_holder: p("SELECT rtype, id FROM unique_claim WHERE claim = ?1")?,
            claim_insert: p("INSERT INTO unique_claim (claim, rtype, id) VALUES (?1, ?2, ?3)")?,
        })
    }
}

/// WAL pages after which the bulk connection checkpoints, instead of SQLite's 1,000. A batch
/// writes several thousand pages, so the default checkpointed after every batch: it synced the WAL
/// and the database and copied back the index pages that the next batch dirtied again, all on the
/// writer's critical path. About 400 MB of WAL between checkpoints made the plain part of a
/// 240k-resource load ~10% faster than 1,000 (~6% at 30,000). Durability is unchanged: this only
/// decides when committed pages move from the WAL into the database file.
const WAL_AUTOCHECKPOINT: u32 = 100_000;

/// What [`load`] did with a batch.
pub(crate) struct BulkOutcome {
    /// Groups left to the generic path: those that already exist (their roster is a diff against
    /// the current one) or that a Subscription watches (their creation is an event).
    pub deferred_groups: Vec<ResourceWrite>,
    /// The written batch, spent: freeing its parsed resources is a good part of the work, which
    /// the caller can do off the writer's path.
    pub spent: Vec<ResourceWrite>,
}

/// Writes `batch` to the SQLite file at `path` in one transaction (runs on a blocking thread):
/// every resource without members, and every Group that is new. A batch naming one id twice fails
/// with `AlreadyExists` before anything is written. With `checkpointed_elsewhere` (a
/// [`super::sqlite_checkpoint::BackgroundCheckpoint`] runs) the commit never checkpoints.
pub(crate) fn load(
    path: &Path,
    batch: Vec<ResourceWrite>,
    checkpointed_elsewhere: bool,
) -> Result<BulkOutcome, StoreError> {
    reject_duplicates(&batch)?;
    let autocheckpoint = if checkpointed_elsewhere {
        0
    } else {
        WAL_AUTOCHECKPOINT
    };
    let mut conn = open(path, autocheckpoint)?;
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(err)?;
    let mut deferred = Vec::new();
    let mut spent = Vec::with_capacity(batch.len());
    {
        let mut st = Statements::prepare(&tx)?;
        let last_updated = atr_model::instant::now_micros();
        for mut w in batch {
            if w.members.is_none() {
                write_one(&mut st, &mut w, last_updated)?;
            } else if !write_new_group(&mut st, &mut w, last_updated)? {
                deferred.push(w);
                continue;
            }
            spent.push(w);
        }
    }
    tx.commit().map_err(err)?;
    Ok(BulkOutcome {
        deferred_groups: deferred,
        spent,
    })
}

/// Records `w`'s unique claims (see `claims.rs`), after releasing what it held when it replaces
/// a current version. Earlier writes of the batch are already in the table, so a value claimed
/// twice in one batch is caught as one claimed in the store.
fn record_claims(
    st: &mut Statements<'_>,
    rtype: ResourceType,
    id: &str,
    claims: Vec<atr_model::contract::UniqueClaim>,
    replacing: bool,
) -> Result<(), StoreError> {
    if !super::claims::may_claim(rtype) {
        return Ok(());
    }
    let t = rtype.as_str();
    if replacing {
        st.claim_release.execute((t, id)).map_err(err)?;
    }
    for c in claims {
        let holder: Option<(String, String)> = st
            .claim_holder
            .query_row([c.key.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()
            .map_err(err)?;
        if let Some((rtype, holder)) = holder {
            if rtype == t && holder == id {
                continue;
            }
            return Err(StoreError::Claimed {
                what: c.what,
                holder: format!("{rtype}/{holder}"),
                element: c.element,
            });
        }
        st.claim_insert
            .execute((c.key.as_str(), t, id))
            .map_err(err)?;
    }
    Ok(())
}

/// Writes a Group that does not exist yet as version 1 with its member rows, as the generic
/// roster write would (every entry new, `changeType` derived for attribution lists). Returns
/// `false`, having written nothing, for a Group that exists or is watched.
fn write_new_group(
    st: &mut Statements<'_>,
    w: &mut ResourceWrite,
    last_updated: i64,
) -> Result<bool, StoreError> {
    let id = w.id.as_str();
    let exists = st
        .current
        .query_row(("Group", id), |_| Ok(()))
        .optional()
        .map_err(err)?
        .is_some();
    if exists || st.watched.exists([id]).map_err(err)? {
        return Ok(false);
    }
    record_claims(st, w.rtype, id, std::mem::take(&mut w.claims), false)?;
    let derive = atr_model::group::is_attribution_list(&w.resource);
    let members = w.members.take().unwrap_or_default();
    let count = members.len() as i64;
    for (ord, m) in members.iter().enumerate() {
        let derived = if m.inactive { "dropped" } else { "new" };
        let change_type = m.change_type.as_deref().or(derive.then_some(derived));
        st.member
            .execute(rusqlite::params![
                id,
                ord as i64,
                m.key,
                m.patient,
                m.coverage,
                m.provider,
                m.period_start,
                m.period_end,
                m.inactive,
                change_type,
                m.content_hash,
                m.extensions,
                m.body,
            ])
            .map_err(err)?;
    }
    w.resource["quantity"] = count.into();
    atr_model::meta::stamp(&mut w.resource, id, 1, last_updated);
    let body = serde_json::to_vec(&w.resource).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    st.group_version
        .execute((id, last_updated, body.as_slice(), count))
        .map_err(err)?;
    write_index(st, w)?;
    Ok(true)
}

/// A connection of its own per batch: keeping one between batches measured no faster, and this
/// way nothing outlives the store.
fn open(path: &Path, autocheckpoint: u32) -> Result<Connection, StoreError> {
    let conn = open_direct(path, DirectMode::Write, Duration::from_secs(30))?;
    // The pool's settings: WAL (kept in the file) with NORMAL, which may lose the last commits on
    // power loss but never consistency; a page cache that holds a batch's dirty pages.
    conn.execute_batch(&format!(
        "PRAGMA synchronous = NORMAL; PRAGMA cache_size = -65536; \
         PRAGMA wal_autocheckpoint = {autocheckpoint};"
    ))
    .map_err(err)?;
    Ok(conn)
}

/// The error `load_plain` gives for a batch with a repeated id: the first repeat, taking resource
/// types in their order (it works type by type).
fn reject_duplicates(batch: &[ResourceWrite]) -> Result<(), StoreError> {
    let mut seen: HashSet<(ResourceType, &str)> = HashSet::with_capacity(batch.len());
    let mut first: Option<&ResourceWrite> = None;
    for w in batch {
        if !seen.insert((w.rtype, w.id.as_str())) && first.is_none_or(|f| w.rtype < f.rtype) {
            first = Some(w);
        }
    }
    match first {
        Some(w) => Err(StoreError::AlreadyExists {
            rtype: w.rtype.to_string(),
            id: w.id.clone(),
        }),
        None => Ok(()),
    }
}

fn write_one(
    st: &mut Statements<'_>,
    w: &mut ResourceWrite,
    last_updated: i64,
) -> Result<(), StoreError> {
    let t = w.rtype.as_str();
    let id = w.id.as_str();
    // Most bulk writes are creates, pre-stamped as version 1: try that first and let the keys on
    // (rtype, id, version) and on the current (rtype, id) turn away an id that already exists,
    // which saves a lookup per resource. A refused insert is undone on its own (SQLite's ABORT)
    // and the transaction goes on.
    let created = match &w.prestamped {
        Some(p) if p.version == 1 => {
            match st
                .version
                .execute((t, id, 1, p.last_updated, p.body.as_slice()))
            {
                Ok(_) => true,
                Err(rusqlite::Error::SqliteFailure(e, _))
                    if e.code == rusqlite::ErrorCode::ConstraintViolation =>
                {
                    false
                }
                Err(e) => return Err(err(e)),
            }
        }
        _ => false,
    };
    let mut replacing = false;
    if !created {
        let current: Option<i64> = st
            .current
            .query_row((t, id), |r| r.get(0))
            .optional()
            .map_err(err)?;
        if current.is_some() {
            replacing = true;
            st.retire.execute((t, id)).map_err(err)?;
            st.drop_tokens.execute((t, id)).map_err(err)?;
            st.drop_strings.execute((t, id)).map_err(err)?;
            st.drop_refs.execute((t, id)).map_err(err)?;
        }
        let version = current.map_or(1, |v| v + 1);
        let stamped;
        let (stamped_at, body) = match &w.prestamped {
            Some(p) if p.version == version => (p.last_updated, p.body.as_slice()),
            _ => {
                let mut resource =
                    Prestamped::take_resource(&mut w.resource, w.prestamped.as_ref())
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                atr_model::meta::stamp(&mut resource, id, version, last_updated);
                stamped = serde_json::to_vec(&resource)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                (last_updated, stamped.as_slice())
            }
        };
        st.version
            .execute((t, id, version, stamped_at, body))
            .map_err(err)?;
    }
    record_claims(st, w.rtype, &w.id, std::mem::take(&mut w.claims), replacing)?;
    write_index(st, w)
}

fn write_index(st: &mut Statements<'_>, w: &ResourceWrite) -> Result<(), StoreError> {
    let t = w.rtype.as_str();
    let id = w.id.as_str();
    for tok in &w.index.tokens {
        st.token
            .execute((
                t,
                id,
                tok.param,
                tok.system.as_str(),
                tok.code.as_str(),
                tok.type_system.as_str(),
                tok.type_code.as_str(),
            ))
            .map_err(err)?;
    }
    for s in &w.index.strings {
        st.string
            .execute((t, id, s.param, s.norm.as_str(), s.raw.as_str()))
            .map_err(err)?;
    }
    for r in &w.index.refs {
        st.reference
            .execute((t, id, r.param, r.target.as_str()))
            .map_err(err)?;
    }
    Ok(())
}
