//! The [`Exporter`]: takes kick-offs, runs jobs under leases on any instance, cleans up expired and
//! cancelled jobs.
//!
//! A job is a row (`atr-store`), so a process that dies mid-export loses nothing: its lease runs
//! out and a worker (of this or another instance) runs the job again from the start, at the same
//! snapshot instant and Group version, after clearing whatever the earlier run left in the
//! [`ExportFileStore`]. Each resource type is written by its own task, in parallel.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use atr_model::ResourceType;
use atr_model::group::is_attribution_list;
use atr_model::instant::now_micros;
use atr_store::{
    ExportAdmission, ExportItem, ExportJob, ExportLimits, ExportLists, ExportPlan, ExportScope,
    ExportStatus, IdSet, ListVersion, Store, StoreError, is_provider_type,
};
use bytes::Bytes;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::{Notify, Semaphore};

use crate::file_store::{ExportFileError, ExportFileStore, ExportStorage};
use crate::files::{FileEntry, SplitWriter};
use crate::filter::{TypeFilter, passes, subset};
use crate::request::{ExportRequest, ExportSource, Note};

/// How the engine runs.
#[derive(Debug, Clone)]
pub struct ExportConfig {
    /// Where job directories go (local storage), or where files are spooled until they are
    /// uploaded (S3).
    pub dir: PathBuf,
    /// Where finished files are kept and served from.
    pub storage: ExportStorage,
    /// Files are split when they reach this size.
    pub max_file_bytes: u64,
    /// How long a job and its files are kept after kick-off.
    pub retention: Duration,
    pub limits: ExportLimits,
    /// Jobs this instance runs at once; 0: this instance takes kick-offs and serves files but
    /// leaves running jobs to other instances.
    pub workers: usize,
    /// A worker's claim on a job; renewed every third of it. A dead worker's job is taken over
    /// after this long.
    pub lease: Duration,
    /// How often an idle worker looks for jobs other instances accepted.
    pub poll: Duration,
}

impl ExportConfig {
    pub fn new(dir: PathBuf) -> Self {
        ExportConfig {
            dir,
            storage: ExportStorage::Local,
            max_file_bytes: 512 * 1024 * 1024,
            retention: Duration::from_secs(24 * 3600),
            limits: ExportLimits {
                total: 32,
                per_client: 4,
            },
            workers: 2,
            lease: Duration::from_secs(15),
            poll: Duration::from_secs(1),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("export files: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Files(#[from] ExportFileError),
    #[error("export job {0} has unreadable parameters: {1}")]
    BadParams(String, String),
    #[error("Group/{0} version {1} is not stored")]
    GroupGone(String, i64),
}

/// The manifest parts a completed job keeps (URLs are made by the server from the names).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub output: Vec<FileEntry>,
    pub error: Vec<FileEntry>,
    pub deleted: Vec<FileEntry>,
}

/// Turns a `_typeFilter` query into clauses (the server's search parser, handed in so this crate
/// stays free of HTTP).
pub type FilterParser = Arc<dyn Fn(&str) -> Result<TypeFilter, String> + Send + Sync>;

/// A new job to store.
#[derive(Debug, Clone)]
pub struct Submission {
    pub client_id: String,
    /// The exported Group and its version; empty and 0 at the Patient and system levels (the
    /// request's `source` names the lists).
    pub group_id: String,
    pub group_version: i64,
    /// The snapshot instant (microseconds).
    pub at: i64,
    /// The kick-off URL.
    pub request_url: String,
    pub request: ExportRequest,
}

/// Most error-file lines about unresolved references; the rest are summed up in one line.
const MAX_REFERENCE_NOTES: usize = 10_000;

/// The export engine of one server instance.
pub struct Exporter {
    store: Arc<dyn Store>,
    config: ExportConfig,
    files: Arc<dyn ExportFileStore>,
    /// This instance's lease owner name: `atr-<pid>-<uuid>`, so an operator (or a test) can tell
    /// which process holds a job.
    owner: String,
    parse_filter: FilterParser,
    wake: Notify,
    /// Jobs this instance is running, so a local cancel stops them at once.
    running: Mutex<HashMap<String, Arc<AtomicBool>>>,
}

impl Exporter {
    /// Fails when the file store's settings are unusable (an S3 endpoint that is no URL).
    pub fn new(
        store: Arc<dyn Store>,
        config: ExportConfig,
        parse_filter: FilterParser,
    ) -> Result<Self, ExportFileError> {
        Ok(Exporter {
            files: config.storage.open(config.dir.clone())?,
            store,
            config,
            owner: format!("atr-{}-{}", std::process::id(), uuid::Uuid::new_v4()),
            parse_filter,
            wake: Notify::new(),
            running: Mutex::new(HashMap::new()),
        })
    }

    /// Where the jobs' files are.
    pub fn files(&self) -> &Arc<dyn ExportFileStore> {
        &self.files
    }

    /// Starts the workers and the cleaner on the current runtime.
    pub fn spawn(self: &Arc<Self>) {
        if self.config.workers > 0 {
            let me = self.clone();
            tokio::spawn(async move { me.work().await });
        }
        let me = self.clone();
        tokio::spawn(async move { me.clean().await });
    }

    /// Stores a job (202) or says why not (429).
    pub async fn submit(&self, s: Submission) -> Result<(ExportAdmission, String), ExportError> {
        let id = uuid::Uuid::new_v4().to_string();
        let params = serde_json::to_string(&s.request)
            .map_err(|e| ExportError::BadParams(id.clone(), e.to_string()))?;
        let now = now_micros();
        let job = ExportJob {
            id: id.clone(),
            client_id: s.client_id,
            group_id: s.group_id,
            group_version: s.group_version,
            transaction_time: s.at,
            request: s.request_url,
            params,
            status: ExportStatus::Accepted,
            created_at: now,
            expires_at: now + self.config.retention.as_micros() as i64,
            attempts: 0,
            done: 0,
            planned: 0,
            result: None,
            finished_at: None,
        };
        let admission = self
            .store
            .create_export_job(&job, self.config.limits)
            .await?;
        if admission == ExportAdmission::Admitted {
            self.wake.notify_one();
        }
        Ok((admission, id))
    }

    /// A job, unless it expired or was cancelled (both answer as unknown).
    pub async fn job(&self, id: &str) -> Result<Option<ExportJob>, ExportError> {
        if !crate::files::is_job_id(id) {
            return Ok(None);
        }
        Ok(self
            .store
            .export_job(id)
            .await?
            .filter(|j| j.status != ExportStatus::Cancelled && j.expires_at > now_micros()))
    }

    /// Cancels a job: a running one stops (here at once, elsewhere at its next lease renewal)
    /// and its files go. False when there was nothing to cancel.
    pub async fn cancel(&self, id: &str) -> Result<bool, ExportError> {
        let Some(job) = self.store.cancel_export_job(id, now_micros()).await? else {
            return Ok(false);
        };
        if let Some(flag) = self.lock_running().get(id) {
            flag.store(true, Ordering::Relaxed);
        }
        if job.status != ExportStatus::Running {
            self.files.remove_job(id).await?;
        }
        Ok(true)
    }

    /// The manifest parts of a completed job.
    pub fn manifest(job: &ExportJob) -> Option<Manifest> {
        job.result
            .as_deref()
            .and_then(|r| serde_json::from_str(r).ok())
    }

    fn lock_running(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<AtomicBool>>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn work(self: Arc<Self>) {
        let slots = Arc::new(Semaphore::new(self.config.workers));
        loop {
            let Ok(permit) = slots.clone().acquire_owned().await else {
                return;
            };
            let now = now_micros();
            let until = now + self.config.lease.as_micros() as i64;
            match self.store.claim_export_job(&self.owner, now, until).await {
                Ok(Some(job)) => {
                    let me = self.clone();
                    tokio::spawn(async move {
                        me.run(job).await;
                        drop(permit);
                    });
                    continue;
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "claiming export jobs"),
            }
            drop(permit);
            let _ = tokio::time::timeout(self.config.poll, self.wake.notified()).await;
        }
    }

    async fn clean(self: Arc<Self>) {
        let every = (self.config.lease * 2).min(Duration::from_secs(60));
        loop {
            tokio::time::sleep(every).await;
            let now = now_micros();
            let grace = 2 * self.config.lease.as_micros() as i64;
            match self.store.finished_export_jobs(now, now - grace).await {
                Ok(ids) => {
                    for id in ids {
                        if let Err(e) = self.files.remove_job(&id).await {
                            tracing::warn!(job = %id, error = %e, "removing export files");
                            continue;
                        }
                        if let Err(e) = self.store.delete_export_job(&id).await {
                            tracing::warn!(job = %id, error = %e, "forgetting export job");
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "listing finished export jobs"),
            }
        }
    }

    async fn run(self: Arc<Self>, job: ExportJob) {
        let cancelled = Arc::new(AtomicBool::new(false));
        self.lock_running()
            .insert(job.id.clone(), cancelled.clone());
        let progress = Progress::default();
        let renewer = {
            let me = self.clone();
            let job_id = job.id.clone();
            let progress = progress.clone();
            let cancelled = cancelled.clone();
            tokio::spawn(async move { me.keep_lease(job_id, progress, cancelled).await })
        };
        let outcome = self.export(&job, &progress, &cancelled).await;
        renewer.abort();
        self.lock_running().remove(&job.id);
        let now = now_micros();
        let done = progress.done.load(Ordering::Relaxed) as i64;
        let finished = match outcome {
            _ if cancelled.load(Ordering::Relaxed) => {
                let _ = self.files.remove_job(&job.id).await;
                return;
            }
            Ok(manifest) => {
                let result = serde_json::to_string(&manifest).unwrap_or_default();
                self.store
                    .finish_export_job(
                        &job.id,
                        &self.owner,
                        ExportStatus::Completed,
                        &result,
                        done,
                        now,
                    )
                    .await
            }
            Err(e) => {
                tracing::warn!(job = %job.id, error = %e, "export failed");
                let _ = self.files.remove_job(&job.id).await;
                self.store
                    .finish_export_job(
                        &job.id,
                        &self.owner,
                        ExportStatus::Failed,
                        &e.to_string(),
                        done,
                        now,
                    )
                    .await
            }
        };
        // `Ok(false)`: cancelled or taken over meanwhile; whoever holds it now owns the files.
        if let Err(e) = finished {
            tracing::warn!(job = %job.id, error = %e, "recording export outcome");
        }
    }

    async fn keep_lease(&self, job_id: String, progress: Progress, cancelled: Arc<AtomicBool>) {
        // Renewals also publish progress for status polls on any instance: at least every second.
        let every = (self.config.lease / 3).min(Duration::from_secs(1));
        loop {
            tokio::time::sleep(every).await;
            let until = now_micros() + self.config.lease.as_micros() as i64;
            let done = progress.done.load(Ordering::Relaxed) as i64;
            let planned = progress.planned.load(Ordering::Relaxed) as i64;
            match self
                .store
                .renew_export_lease(&job_id, &self.owner, until, done, planned)
                .await
            {
                Ok(true) => {}
                Ok(false) => {
                    cancelled.store(true, Ordering::Relaxed);
                    return;
                }
                // A database hiccup: keep working; the next renewal may pass.
                Err(e) => tracing::warn!(job = %job_id, error = %e, "renewing export lease"),
            }
        }
    }

    async fn export(
        &self,
        job: &ExportJob,
        progress: &Progress,
        cancelled: &Arc<AtomicBool>,
    ) -> Result<Manifest, ExportError> {
        let request: ExportRequest = serde_json::from_str(&job.params)
            .map_err(|e| ExportError::BadParams(job.id.clone(), e.to_string()))?;
        // A rerun (restart, takeover) starts from nothing: no file of an earlier run survives.
        self.files.start_job(&job.id).await?;
        let lists = match &request.source {
            ExportSource::Group => ExportLists::One(ListVersion {
                id: job.group_id.clone(),
                version: job.group_version,
            }),
            ExportSource::Lists(lists) => ExportLists::Visible(
                lists
                    .iter()
                    .map(|(id, version)| ListVersion {
                        id: id.clone(),
                        version: *version,
                    })
                    .collect(),
            ),
            ExportSource::Everything => ExportLists::Everything,
        };
        let scope = ExportScope {
            lists,
            at: job.transaction_time,
            since: request.since,
            patients: request.patients.clone(),
        };
        let started = std::time::Instant::now();
        let plan = Arc::new(self.store.plan_export(&scope).await?);
        tracing::debug!(job = %job.id, secs = started.elapsed().as_secs_f64(), "export planned");
        progress
            .planned
            .store(planned(&plan, &request.types), Ordering::Relaxed);

        let mut filters: Vec<TypeFilter> = Vec::new();
        for q in &request.type_filters {
            match (self.parse_filter)(q) {
                Ok(f) => filters.push(f),
                Err(e) => return Err(ExportError::BadParams(job.id.clone(), e)),
            }
        }
        let filters = Arc::new(filters);
        let task = |plan: &Arc<ExportPlan>, rtype: ResourceType| TypeTask {
            store: self.store.clone(),
            plan: plan.clone(),
            rtype,
            files: self.files.clone(),
            job_id: job.id.clone(),
            max_bytes: self.config.max_file_bytes,
            filters: filters.clone(),
            elements: request
                .elements
                .iter()
                .filter(|(t, _)| t.is_none_or(|t| t == rtype))
                .map(|(_, e)| e.clone())
                .collect(),
            progress: progress.clone(),
            cancelled: cancelled.clone(),
            job_started: started,
        };
        // The RelatedPersons and payers in scope are what the Coverages reference: those types
        // start once the Coverages' links are read, meanwhile the member-driven types run.
        let (now, later): (Vec<ResourceType>, Vec<ResourceType>) = request
            .types
            .iter()
            .partition(|t| **t != ResourceType::RelatedPerson && !is_provider_type(**t));
        let mut tasks = Vec::new();
        for rtype in now {
            tasks.push((rtype, tokio::spawn(task(&plan, rtype).run())));
        }
        if !later.is_empty() {
            let linked = if plan.complete {
                Ok(plan.clone())
            } else {
                self.with_links(&plan).await
            };
            let plan = match linked {
                Ok(plan) => plan,
                Err(e) => {
                    for (_, t) in &tasks {
                        t.abort();
                    }
                    return Err(e.into());
                }
            };
            progress
                .planned
                .store(planned(&plan, &request.types), Ordering::Relaxed);
            for rtype in later {
                tasks.push((rtype, tokio::spawn(task(&plan, rtype).run())));
            }
        }
        let mut outputs = Vec::new();
        for (rtype, t) in tasks {
            outputs.push((rtype, joined(t.await)));
        }
        let mut manifest = Manifest::default();
        let mut missing = Vec::new();
        let mut deleted = Vec::new();
        let mut failure = None;
        for (_, out) in outputs {
            match out {
                Ok(out) => {
                    manifest.output.extend(out.files);
                    missing.extend(out.missing);
                    deleted.extend(out.deleted);
                }
                Err(e) => failure = failure.or(Some(e)),
            }
        }
        // Manifest entries in the order the types were asked for.
        manifest.output.sort_by_key(|f| {
            request
                .types
                .iter()
                .position(|t| t.as_str() == f.rtype)
                .unwrap_or(usize::MAX)
        });
        if let Some(e) = failure {
            return Err(e);
        }
        if cancelled.load(Ordering::Relaxed) {
            return Ok(manifest);
        }

        let mut errors = SplitWriter::new(
            self.files.clone(),
            &job.id,
            "error",
            "OperationOutcome",
            self.config.max_file_bytes,
        );
        let mut lines = Vec::new();
        for note in &request.notes {
            push_line(&mut lines, &note.to_outcome());
        }
        let shown = missing.len().min(MAX_REFERENCE_NOTES);
        let referrer = job
            .group_reference()
            .unwrap_or_else(|| "an exported list".to_string());
        for reference in &missing[..shown] {
            let note = Note::warning(
                "not-found",
                format!(
                    "{reference} is referenced by {referrer} but is not on this server; it is left out"
                ),
                "Group.member",
            );
            push_line(&mut lines, &note.to_outcome());
        }
        if missing.len() > shown {
            let note = Note::warning(
                "not-found",
                format!(
                    "{} more references could not be resolved",
                    missing.len() - shown
                ),
                "Group.member",
            );
            push_line(&mut lines, &note.to_outcome());
        }
        errors.write(&lines).await?;
        manifest.error = errors.finish().await?;

        if request.types.contains(&ResourceType::Patient) {
            deleted.extend(plan.left.iter().cloned());
        }
        if !deleted.is_empty() {
            let mut writer = SplitWriter::new(
                self.files.clone(),
                &job.id,
                "deleted",
                "Bundle",
                self.config.max_file_bytes,
            );
            let mut lines = Vec::new();
            for reference in &deleted {
                let bundle = serde_json::json!({
                    "resourceType": "Bundle",
                    "type": "transaction",
                    "entry": [{"request": {"method": "DELETE", "url": reference}}]
                });
                push_line(&mut lines, &bundle);
            }
            writer.write(&lines).await?;
            manifest.deleted = writer.finish().await?;
        }
        Ok(manifest)
    }
}

impl Exporter {
    /// `plan` with the RelatedPersons and providers in scope: what the Coverages' subscribers,
    /// policy holders and payors reference, the attributed providers and the Group's managing
    /// entity, and the roles' practitioners, organizations and locations.
    async fn with_links(&self, plan: &Arc<ExportPlan>) -> Result<Arc<ExportPlan>, StoreError> {
        let linked = self.store.export_links(plan.clone()).await?;
        let mut refs = plan.attributed.clone();
        let mut related = IdSet::new();
        for r in linked.iter() {
            if let Some(id) = r.strip_prefix("RelatedPerson/") {
                related.insert(id);
            } else if r
                .split_once('/')
                .and_then(|(t, _)| t.parse::<ResourceType>().ok())
                .is_some_and(is_provider_type)
            {
                refs.insert(r.to_string());
            }
        }
        let providers = self.store.export_providers(refs).await?;
        let mut ids = plan.ids.clone();
        ids.insert(ResourceType::RelatedPerson, Arc::new(related));
        ids.extend(providers.into_iter().map(|(t, set)| (t, Arc::new(set))));
        Ok(Arc::new(ExportPlan {
            ids,
            ..(**plan).clone()
        }))
    }
}

/// A type task's outcome, a panic or abort counting as a failure.
fn joined(
    r: Result<Result<TypeOutput, ExportError>, tokio::task::JoinError>,
) -> Result<TypeOutput, ExportError> {
    r.unwrap_or_else(|e| Err(ExportError::Io(std::io::Error::other(e))))
}

fn push_line(out: &mut Vec<u8>, v: &Value) {
    if let Ok(bytes) = serde_json::to_vec(v) {
        out.extend_from_slice(&bytes);
        out.push(b'\n');
    }
}

/// Resources the job expects to write: the Group and the ids in scope of each type (the
/// RelatedPersons and providers once the Coverages' links are read).
fn planned(plan: &ExportPlan, types: &[ResourceType]) -> u64 {
    types
        .iter()
        .map(|t| match t {
            ResourceType::Group => plan.groups.len() as u64,
            other => plan.count(*other) as u64,
        })
        .sum()
}

/// Counters shared by a job's tasks and its lease renewal.
#[derive(Debug, Clone, Default)]
struct Progress {
    done: Arc<AtomicU64>,
    planned: Arc<AtomicU64>,
}

/// What one type's task wrote and found.
struct TypeOutput {
    files: Vec<FileEntry>,
    missing: Vec<String>,
    deleted: Vec<String>,
}

/// Writes one resource type's files.
struct TypeTask {
    store: Arc<dyn Store>,
    plan: Arc<ExportPlan>,
    rtype: ResourceType,
    files: Arc<dyn ExportFileStore>,
    job_id: String,
    max_bytes: u64,
    filters: Arc<Vec<TypeFilter>>,
    elements: Vec<String>,
    progress: Progress,
    cancelled: Arc<AtomicBool>,
    job_started: std::time::Instant,
}

impl TypeTask {
    async fn run(self) -> Result<TypeOutput, ExportError> {
        let name = self.rtype.as_str();
        let mut writer =
            SplitWriter::new(self.files.clone(), &self.job_id, name, name, self.max_bytes);
        let mut out = TypeOutput {
            files: Vec::new(),
            missing: Vec::new(),
            deleted: Vec::new(),
        };
        if self.rtype == ResourceType::Group {
            for list in &self.plan.groups {
                if self.cancelled.load(Ordering::Relaxed) {
                    return Ok(out);
                }
                self.write_group(list, &mut writer).await?;
            }
        } else {
            let filters: Vec<&TypeFilter> = self
                .filters
                .iter()
                .filter(|f| f.rtype == self.rtype)
                .collect();
            let transform = !filters.is_empty() || !self.elements.is_empty();
            let mut stream = self.store.export_resources(self.plan.clone(), self.rtype);
            while let Some(item) = stream.next().await {
                if self.cancelled.load(Ordering::Relaxed) {
                    return Ok(out);
                }
                match item? {
                    ExportItem::Lines { ndjson, count } => {
                        if transform {
                            let (lines, n) = self.transform(&ndjson, &filters);
                            writer.write(&lines).await?;
                            self.progress.done.fetch_add(n, Ordering::Relaxed);
                        } else {
                            writer.write(&ndjson).await?;
                            self.progress.done.fetch_add(count, Ordering::Relaxed);
                        }
                    }
                    ExportItem::Deleted(r) => out.deleted.push(r),
                    ExportItem::Missing(r) => out.missing.push(r),
                }
            }
        }
        out.files = writer.finish().await?;
        // An empty type has no file (Bulk Data: no output item for types without data).
        for f in out.files.iter().filter(|f| f.count == 0) {
            let _ = self.files.remove(&self.job_id, &f.name).await;
        }
        out.files.retain(|f| f.count > 0);
        tracing::debug!(
            rtype = %self.rtype,
            secs = self.job_started.elapsed().as_secs_f64(),
            "export type written"
        );
        Ok(out)
    }

    /// Applies `_typeFilter` and `_elements` to a chunk of lines.
    fn transform(&self, ndjson: &Bytes, filters: &[&TypeFilter]) -> (Vec<u8>, u64) {
        let keep: Vec<&str> = self.elements.iter().map(String::as_str).collect();
        let mut out = Vec::with_capacity(ndjson.len());
        let mut n = 0;
        for line in ndjson.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let Ok(mut v) = serde_json::from_slice::<Value>(line) else {
                continue;
            };
            if !passes(filters, self.rtype, &v) {
                continue;
            }
            if !keep.is_empty() {
                v = subset(self.rtype, v, &keep);
            }
            push_line(&mut out, &v);
            n += 1;
        }
        (out, n)
    }

    /// `list` at its version, with its members (or the `patient` subset's entries), as one line
    /// streamed from the member rows. At the Patient and system levels a list that holds none of
    /// the `patient` subset is left out.
    async fn write_group(
        &self,
        list: &ListVersion,
        writer: &mut SplitWriter,
    ) -> Result<(), ExportError> {
        let scope = &self.plan.scope;
        let stored = self
            .store
            .read(ResourceType::Group, &list.id, Some(list.version))
            .await?
            .filter(|g| !g.deleted)
            .ok_or_else(|| ExportError::GroupGone(list.id.clone(), list.version))?;
        let mut header: Value =
            serde_json::from_slice(&stored.body).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let filters: Vec<&TypeFilter> = self
            .filters
            .iter()
            .filter(|f| f.rtype == ResourceType::Group)
            .collect();
        if !passes(&filters, ResourceType::Group, &header) {
            return Ok(());
        }
        let derive = is_attribution_list(&header);
        // The subset's entries, read before anything is written: a list without any is skipped.
        let mut subset_entries = Vec::new();
        if let Some(patients) = &scope.patients {
            subset_entries = self
                .store
                .entries_at(&list.id, list.version, patients, derive)
                .await?;
            if subset_entries.is_empty() && !matches!(scope.lists, ExportLists::One(_)) {
                return Ok(());
            }
        }
        let with_members = self.elements.is_empty() || self.elements.iter().any(|e| e == "member");
        if !self.elements.is_empty() {
            let keep: Vec<&str> = self.elements.iter().map(String::as_str).collect();
            header = subset(ResourceType::Group, header, &keep);
        }
        if scope.patients.is_some() {
            atr_model::meta::mark_subsetted(&mut header);
        }
        let head = serde_json::to_vec(&header).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let members = stored.member_count.unwrap_or(0) > 0 && with_members;
        if !members || !head.ends_with(b"}") {
            let mut line = head;
            line.push(b'\n');
            writer.write(&line).await?;
            self.progress.done.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        let mut line = head[..head.len() - 1].to_vec();
        line.extend_from_slice(if head.len() > 2 {
            b",\"member\":["
        } else {
            b"\"member\":["
        });
        match &scope.patients {
            Some(_) => {
                for (i, (_, e)) in subset_entries.iter().enumerate() {
                    if i > 0 {
                        line.push(b',');
                    }
                    line.extend_from_slice(e.as_bytes());
                }
            }
            None => {
                let mut stream = self.store.stream_members(&list.id, list.version, derive);
                // The line is one JSON value: hand it to the file in pieces, never whole. The
                // chunks carry their own separating commas.
                while let Some(chunk) = stream.next().await {
                    if self.cancelled.load(Ordering::Relaxed) {
                        return Ok(());
                    }
                    line.extend_from_slice(&chunk?);
                    if line.len() >= 4 << 20 {
                        writer.write_unsplit(&line).await?;
                        line.clear();
                    }
                }
            }
        }
        line.extend_from_slice(b"]}\n");
        writer.write_unsplit(&line).await?;
        self.progress.done.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}
