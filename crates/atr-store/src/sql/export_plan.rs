//! Planning an export: which Groups it shows and which ids of each type are in its scope.
//!
//! A Group export reads one list; a Consumer's Patient- or system-level export reads every list it
//! may see; an administration client's reads everything stored. The lists' member rows give the
//! Patients, Coverages and attributed providers in scope (one pass per list, unioned), the
//! managing entities join the providers, and with `_since` the members who joined a list after it
//! bring everything they reference while those who left are reported deleted. An export of
//! everything skips the member rows: its id sets are every stored resource of each type.
//!
//! The readers (`export_read.rs`) then take each type's id set as it is.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

use atr_model::ResourceType;
use futures::TryStreamExt;

use super::db::{Arg, Col, Pool};
use super::export_read::{
    LINK_PARAMS, pg_member_refs, ref_targets, role_targets, sqlite_member_refs,
};
use crate::{ExportLists, ExportPlan, ExportScope, IdSet, ListVersion, StoreError};

/// The member rows of `list` at its version (arguments `$1` group, `$2` version, then the
/// `patient` subset from `$3`).
fn members_at(list: &ListVersion, patients: Option<&[String]>) -> (String, Vec<Arg>) {
    let mut sql = String::from(
        "group_id = $1 AND from_version <= $2 AND (to_version IS NULL OR to_version > $2)",
    );
    let mut args = vec![Arg::from(list.id.as_str()), Arg::Int(list.version)];
    if let Some(patients) = patients {
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

/// Plans an export (see the module doc).
pub(crate) async fn plan(pool: &Pool, scope: &ExportScope) -> Result<ExportPlan, StoreError> {
    let patients = scope.patients.as_deref();
    let groups = match &scope.lists {
        ExportLists::One(list) => vec![list.clone()],
        ExportLists::Visible(lists) => lists.clone(),
        ExportLists::Everything => {
            let mut all = groups_at(pool, scope.at).await?;
            if patients.is_none()
                && let Some(since) = scope.since
            {
                // Everything changed since: a list unchanged since is not sent again.
                all.retain(|(_, last_updated)| *last_updated > since);
            }
            all.into_iter().map(|(list, _)| list).collect()
        }
    };
    let complete = matches!(scope.lists, ExportLists::Everything) && patients.is_none();
    if complete {
        let mut ids = BTreeMap::new();
        for rtype in ResourceType::ALL {
            if rtype != ResourceType::Group {
                ids.insert(rtype, Arc::new(stored_ids(pool, rtype).await?));
            }
        }
        return Ok(ExportPlan {
            scope: scope.clone(),
            groups,
            complete,
            ids,
            attributed: BTreeSet::new(),
            since: scope.since,
            joined: HashSet::new(),
            left: Vec::new(),
        });
    }

    let mut refs = MemberRefs::with_capacity(entries_in_scope(pool, &groups, patients).await?);
    for list in &groups {
        refs = member_refs(pool, list, patients, refs).await?;
    }
    if matches!(scope.lists, ExportLists::Everything) {
        // The Patients named are exported whether or not a list holds them.
        for p in patients.into_iter().flatten() {
            refs.add(p, None, None);
        }
    }
    let mut attributed = refs.providers;
    attributed.extend(managing_entities(pool, &groups).await?);

    let (since, joined, left) = match scope.since {
        None => (None, HashSet::new(), Vec::new()),
        Some(since) => {
            let mut joined = HashSet::new();
            let mut left = Vec::new();
            let mut seen = HashSet::new();
            let mut filtered = false;
            for list in &groups {
                let then = version_at(pool, &list.id, since).await?;
                if then.is_none() && groups.len() == 1 {
                    // A single list that did not exist then: every member joined after it.
                    break;
                }
                filtered = true;
                joined.extend(joined_since(pool, list, patients, then).await?);
                if let Some(then) = then {
                    for p in left_since(pool, list, patients, then, &refs.patients).await? {
                        if seen.insert(p.clone()) {
                            left.push(p);
                        }
                    }
                }
            }
            if filtered {
                (Some(since), joined, left)
            } else {
                (None, HashSet::new(), Vec::new())
            }
        }
    };
    let mut ids = BTreeMap::new();
    ids.insert(ResourceType::Patient, Arc::new(refs.patients));
    ids.insert(ResourceType::Coverage, Arc::new(refs.coverages));
    Ok(ExportPlan {
        scope: scope.clone(),
        groups,
        complete,
        ids,
        attributed,
        since,
        joined,
        left,
    })
}

/// Every Group that existed at `at`, at its version then, with that version's `last_updated`.
async fn groups_at(pool: &Pool, at: i64) -> Result<Vec<(ListVersion, i64)>, StoreError> {
    let sql = "SELECT v.id, v.version, v.last_updated FROM resource_version v \
               WHERE v.rtype = 'Group' AND NOT v.deleted AND v.version = (\
               SELECT MAX(w.version) FROM resource_version w \
               WHERE w.rtype = 'Group' AND w.id = v.id AND w.last_updated <= $1) \
               ORDER BY v.id";
    Ok(pool
        .fetch_all(sql, &[at.into()], &[Col::Text, Col::Int, Col::Int])
        .await?
        .into_iter()
        .map(|mut r| {
            let list = ListVersion {
                id: r.text(0),
                version: r.int(1),
            };
            (list, r.int(2))
        })
        .collect())
}

/// The ids of every stored resource of `rtype` (current versions, deleted ones too: with
/// `_since` a deletion is reported, without it the reader passes it over).
async fn stored_ids(pool: &Pool, rtype: ResourceType) -> Result<IdSet, StoreError> {
    let mut ids = IdSet::new();
    let args = [Arg::Static(rtype.as_str())];
    let mut rows = pool.rows(
        "SELECT id FROM resource_version WHERE rtype = $1 AND is_current",
        &args,
        &[Col::Text],
    );
    while let Some(mut r) = rows.try_next().await? {
        ids.insert(&r.text(0));
    }
    Ok(ids)
}

/// `Type/id` of the managing entities of `groups`.
async fn managing_entities(pool: &Pool, groups: &[ListVersion]) -> Result<Vec<String>, StoreError> {
    let ids: Vec<&str> = groups.iter().map(|g| g.id.as_str()).collect();
    ref_targets(pool, "Group", "('managing-entity')", &ids).await
}

/// The version of the Group current at `since`, when it existed then.
async fn version_at(pool: &Pool, group_id: &str, at: i64) -> Result<Option<i64>, StoreError> {
    Ok(pool
        .fetch_optional(
            "SELECT MAX(version) FROM resource_version WHERE rtype = 'Group' AND id = $1 \
             AND last_updated <= $2 AND NOT deleted",
            &[group_id.into(), at.into()],
            &[Col::OptInt],
        )
        .await?
        .and_then(|r| r.opt_int(0)))
}

/// `Patient/id` of the members on `list` at version `then` (active or not) who have no entry
/// in scope (`in_scope`: the Patients of every exported list), in the order their rows were first
/// written. A `patient` subset narrows it to those patients.
async fn left_since(
    pool: &Pool,
    list: &ListVersion,
    patients: Option<&[String]>,
    then: i64,
    in_scope: &IdSet,
) -> Result<Vec<String>, StoreError> {
    let sql = "SELECT patient FROM group_member WHERE group_id = $1 AND from_version <= $2 \
               AND (to_version IS NULL OR to_version > $2) ORDER BY ord";
    let args = [Arg::from(list.id.as_str()), Arg::Int(then)];
    let mut rows = pool.rows(sql, &args, &[Col::Text]);
    let mut seen = HashSet::new();
    let mut left = Vec::new();
    while let Some(mut r) = rows.try_next().await? {
        let patient = r.text(0);
        let Some(id) = patient.strip_prefix("Patient/") else {
            continue;
        };
        let asked = patients.is_none_or(|p| p.contains(&patient));
        if asked && !in_scope.contains(id) && seen.insert(patient.clone()) {
            left.push(patient);
        }
    }
    Ok(left)
}

/// What the member rows in scope reference.
pub(super) struct MemberRefs {
    /// Patient ids (without `Patient/`).
    pub(super) patients: IdSet,
    /// Coverage ids (without `Coverage/`).
    pub(super) coverages: IdSet,
    /// Attributed providers, as `Type/id`.
    pub(super) providers: BTreeSet<String>,
}

impl MemberRefs {
    /// Sized for `entries` member rows (ids of about 16 bytes).
    fn with_capacity(entries: usize) -> Self {
        MemberRefs {
            patients: IdSet::with_capacity(entries, 16),
            coverages: IdSet::with_capacity(entries, 16),
            providers: BTreeSet::new(),
        }
    }

    pub(super) fn add(&mut self, patient: &str, coverage: Option<&str>, provider: Option<&str>) {
        if let Some(id) = patient.strip_prefix("Patient/") {
            self.patients.insert(id);
        }
        if let Some(id) = coverage.and_then(|c| c.strip_prefix("Coverage/")) {
            self.coverages.insert(id);
        }
        if let Some(p) = provider
            && !self.providers.contains(p)
        {
            self.providers.insert(p.to_string());
        }
    }
}

/// About how many member rows the plan will read: the `patient` subset, else the lists' sizes.
async fn entries_in_scope(
    pool: &Pool,
    groups: &[ListVersion],
    patients: Option<&[String]>,
) -> Result<usize, StoreError> {
    if let Some(p) = patients {
        return Ok(p.len());
    }
    let mut entries = 0usize;
    for list in groups {
        let n = pool
            .fetch_optional(
                "SELECT member_count FROM resource_version WHERE rtype = 'Group' AND id = $1 AND version = $2",
                &[list.id.as_str().into(), list.version.into()],
                &[Col::OptInt],
            )
            .await?
            .and_then(|r| r.opt_int(0))
            .unwrap_or(0)
            .max(0) as usize;
        entries = entries.saturating_add(n);
    }
    Ok(entries)
}

/// One pass over the member rows of `list` in scope, added to `refs`.
async fn member_refs(
    pool: &Pool,
    list: &ListVersion,
    patients: Option<&[String]>,
    refs: MemberRefs,
) -> Result<MemberRefs, StoreError> {
    let (at_v, args) = members_at(list, patients);
    let sql = format!("SELECT patient, coverage, provider FROM group_member WHERE {at_v}");
    match pool {
        Pool::Sqlite(p) => {
            let path = p.connect_options().get_filename().to_path_buf();
            tokio::task::spawn_blocking(move || sqlite_member_refs(&path, &sql, &args, refs))
                .await
                .map_err(|e| StoreError::Direct(e.to_string()))?
        }
        Pool::Postgres(p) => pg_member_refs(p, &sql, &args, refs).await,
    }
}

/// What the members who joined `list` after version `then` reference (`None`: the list did not
/// exist then, so every member joined after it).
async fn joined_since(
    pool: &Pool,
    list: &ListVersion,
    patients: Option<&[String]>,
    then: Option<i64>,
) -> Result<HashSet<String>, StoreError> {
    // Rows that began after `then` are candidates; their patient joined unless it had a row then.
    let (at_v, mut args) = members_at(list, patients);
    let n = args.len();
    args.push(Arg::Int(then.unwrap_or(0)));
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
        return Ok(HashSet::new());
    }
    let mut candidates: HashSet<String> = rows.iter().cloned().map(|mut r| r.text(0)).collect();
    if let Some(then) = then {
        let sql = "SELECT patient FROM group_member WHERE group_id = $1 AND from_version <= $2 \
                   AND (to_version IS NULL OR to_version > $2)";
        let args = [Arg::from(list.id.as_str()), Arg::Int(then)];
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
    let coverage_ids: Vec<&str> = coverages
        .iter()
        .map(|c| c.strip_prefix("Coverage/").unwrap_or(c))
        .collect();
    joined.extend(ref_targets(pool, "Coverage", LINK_PARAMS, &coverage_ids).await?);
    role_targets(pool, &mut joined).await?;
    Ok(joined.into_iter().collect())
}
