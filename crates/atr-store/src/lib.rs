//! Storage for `atr`: versioned FHIR resources kept as their JSON bytes, the search indexes beside
//! them, Group members as versioned rows, the durable rows of export jobs, and Subscriptions with
//! their outbox (each new Group version's events are written in the transaction that makes it).
//!
//! [`Store`] is the contract the server programs against. [`SqlStore`] implements it for two SQL
//! dialects: SQLite (the embedded default, one file in WAL mode) and PostgreSQL (for several
//! server instances). Both run the same statements through a thin dialect layer (`sql::db`) and
//! have their own versioned migrations.
//!
//! This crate knows nothing of HTTP: it gets resources already validated and indexed by
//! `atr-model`, and hands back bytes.

mod error;
mod id_set;
mod query;
mod sql;
mod types;

use std::pin::Pin;

use async_trait::async_trait;
use bytes::Bytes;
use futures::Stream;

pub use atr_model::ResourceType;
pub use error::StoreError;
pub use id_set::IdSet;
pub use query::{Access, Clause, Compare, SearchPage, SearchQuery, StringMode, TokenMatch};
pub use sql::ExportStream;
pub use sql::SqlStore;
pub use sql::is_provider_type;
pub use types::{
    AuditQuery, AuditRecord, ClientRecord, DeferIndexes, DeliveryResult, ExportAdmission,
    ExportItem, ExportJob, ExportLimits, ExportLists, ExportPlan, ExportScope, ExportStatus,
    ListVersion, MemberChange, MemberChangeOutcome, Prestamped, ResourceWrite, StoredResource,
    SubscriptionEvent, SubscriptionRecord, SubscriptionWrite, TokenKey, VersionInfo, WriteMode,
    WriteOutcome,
};

/// Chunks of a Group's `member` array elements, comma-separated, without the brackets.
pub type MemberStream = Pin<Box<dyn Stream<Item = Result<Bytes, StoreError>> + Send>>;

/// Everything the Producer keeps.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Creates or updates one resource as a new version, in one transaction (for a Group: its
    /// header and its member rows).
    async fn write(&self, write: ResourceWrite) -> Result<WriteOutcome, StoreError>;

    /// Deletes a resource (a new, deleted version). `Ok(None)` when there was nothing to delete.
    async fn delete(
        &self,
        rtype: ResourceType,
        id: &str,
    ) -> Result<Option<VersionInfo>, StoreError>;

    /// The current version (or `version`) of a resource, including deleted versions (the caller
    /// answers 410 for those). `Ok(None)` when it never existed (or that version did not).
    async fn read(
        &self,
        rtype: ResourceType,
        id: &str,
        version: Option<i64>,
    ) -> Result<Option<StoredResource>, StoreError>;

    /// Versions of one resource, newest first, at most `limit`, older than `before_version` when
    /// given.
    async fn history(
        &self,
        rtype: ResourceType,
        id: &str,
        before_version: Option<i64>,
        limit: u32,
    ) -> Result<Vec<StoredResource>, StoreError>;

    /// Current, not deleted resources matching a query, ordered by id.
    async fn search(&self, query: &SearchQuery) -> Result<SearchPage, StoreError>;

    /// The members of Group `group_id` at `version`, as JSON elements, streamed in their order.
    /// `derive_change_type` fills `changeType` for entries the Producer left without one.
    fn stream_members(
        &self,
        group_id: &str,
        version: i64,
        derive_change_type: bool,
    ) -> MemberStream;

    /// Writes many new resources at once (the bulk loader). Existing ids are replaced as new
    /// versions. One transaction per call.
    async fn load_batch(&self, batch: Vec<ResourceWrite>) -> Result<u64, StoreError>;

    /// Prepares for a load of about `input_bytes` of NDJSON: when `defer` allows and the load is
    /// large next to what is stored, the store sets aside the secondary indexes that cost most to
    /// keep up row by row and builds them at [`Store::finish_bulk_load`]. Returns whether it did.
    /// The store may also start work that runs beside the load's batches (SQLite: checkpoints);
    /// call [`Store::finish_bulk_load`] after a begun load in every case, failed or not.
    /// A load that dies in between leaves a usable database: the store builds the missing
    /// indexes when it is next opened.
    async fn begin_bulk_load(
        &self,
        _input_bytes: u64,
        _defer: DeferIndexes,
    ) -> Result<bool, StoreError> {
        Ok(false)
    }

    /// Tells a load begun by [`Store::begin_bulk_load`] that every resource other than a Group has
    /// been written and only Groups follow. The store may build the indexes over those resources
    /// that it set aside now, while the loader is still parsing Groups (Groups written afterwards
    /// keep them up row by row).
    async fn bulk_load_groups_next(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Ends a load begun by [`Store::begin_bulk_load`]: stops what it started beside the batches
    /// and builds the indexes it set aside.
    async fn finish_bulk_load(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Refreshes the planner's statistics after a bulk load (PostgreSQL's autovacuum would get to
    /// it minutes later; until then plans for the new rows are guesses). No-op on SQLite, whose
    /// few size-sensitive statements name their plan.
    async fn refresh_statistics(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Which dialect this is, for logs and benchmarks.
    fn dialect(&self) -> &'static str;

    /// Whether `access` may see the current version of `rtype/id` (see [`Access`]).
    async fn visible(
        &self,
        rtype: ResourceType,
        id: &str,
        access: &Access,
    ) -> Result<bool, StoreError>;

    /// Applies a reconciliation change to Group `group_id` as row operations and, when something
    /// changed, one new Group version. `expected_version` is `If-Match`.
    async fn change_members(
        &self,
        group_id: &str,
        change: MemberChange,
        expected_version: Option<i64>,
    ) -> Result<MemberChangeOutcome, StoreError> {
        self.change_members_with_provenance(group_id, change, expected_version, None)
            .await
    }

    /// As [`Store::change_members`], storing `provenance` (a Provenance with its `id` set) linked
    /// to the new Group version in the same transaction, when something changed.
    async fn change_members_with_provenance(
        &self,
        group_id: &str,
        change: MemberChange,
        expected_version: Option<i64>,
        provenance: Option<serde_json::Value>,
    ) -> Result<MemberChangeOutcome, StoreError>;

    /// Stored Provenance: the one with `id`, or those of Group `group_id`; each with its Group.
    async fn provenance(
        &self,
        id: Option<&str>,
        group_id: Option<&str>,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError>;

    /// The current entries of `patient` (`Patient/id`) on Group `group_id` at `version` (its
    /// current version), as member JSON elements.
    async fn entries_of(
        &self,
        group_id: &str,
        version: i64,
        patient: &str,
        derive_change_type: bool,
    ) -> Result<Vec<String>, StoreError>;

    /// The entries of `patients` (`Patient/id`) on Group `group_id` at `version` (any version:
    /// an export at `_until` reads an older one), as `(patient, member JSON element)` in list
    /// order.
    async fn entries_at(
        &self,
        group_id: &str,
        version: i64,
        patients: &[String],
        derive_change_type: bool,
    ) -> Result<Vec<(String, String)>, StoreError>;

    /// Registers a client or replaces its record.
    async fn put_client(&self, client: &ClientRecord) -> Result<(), StoreError>;

    async fn client(&self, client_id: &str) -> Result<Option<ClientRecord>, StoreError>;

    async fn clients(&self) -> Result<Vec<ClientRecord>, StoreError>;

    /// Records a client assertion's `jti` until `expires_at` (seconds); `false` when the client
    /// already used it (a replay). Forgets expired ones on the way.
    async fn record_jti(
        &self,
        client_id: &str,
        jti: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<bool, StoreError>;

    /// The access-token signing keys, newest first.
    async fn token_keys(&self) -> Result<Vec<TokenKey>, StoreError>;

    /// Adds a token key (instances starting together may both add one; both stay valid).
    async fn add_token_key(&self, key: &TokenKey) -> Result<(), StoreError>;

    /// Removes token keys created before `created_before` (seconds).
    async fn retire_token_keys(&self, created_before: i64) -> Result<u64, StoreError>;

    /// Stores a new bulk export job when `limits` allow another one.
    async fn create_export_job(
        &self,
        job: &ExportJob,
        limits: ExportLimits,
    ) -> Result<ExportAdmission, StoreError>;

    async fn export_job(&self, id: &str) -> Result<Option<ExportJob>, StoreError>;

    /// Claims a waiting job, or a running one whose lease ran out before `now`, for `owner` until
    /// `lease_until` (microseconds).
    async fn claim_export_job(
        &self,
        owner: &str,
        now: i64,
        lease_until: i64,
    ) -> Result<Option<ExportJob>, StoreError>;

    /// Extends `owner`'s lease and records progress; false when the job is no longer `owner`'s
    /// (cancelled, or taken over after the lease ran out).
    async fn renew_export_lease(
        &self,
        id: &str,
        owner: &str,
        lease_until: i64,
        done: i64,
        planned: i64,
    ) -> Result<bool, StoreError>;

    /// Ends `owner`'s running job as completed (with its manifest parts) or failed (with the
    /// reason); false when it was no longer `owner`'s.
    #[allow(clippy::too_many_arguments)]
    async fn finish_export_job(
        &self,
        id: &str,
        owner: &str,
        status: ExportStatus,
        result: &str,
        done: i64,
        now: i64,
    ) -> Result<bool, StoreError>;

    /// Cancels a job; the job as it was, or `None` when unknown or already cancelled.
    async fn cancel_export_job(&self, id: &str, now: i64) -> Result<Option<ExportJob>, StoreError>;

    /// Jobs to clean up: expired before `now`, or cancelled before `cancelled_before`.
    async fn finished_export_jobs(
        &self,
        now: i64,
        cancelled_before: i64,
    ) -> Result<Vec<String>, StoreError>;

    async fn delete_export_job(&self, id: &str) -> Result<(), StoreError>;

    /// Plans an export of `scope`: the Patient and Coverage ids in scope, the attributed
    /// providers, the `_since` rules.
    async fn plan_export(&self, scope: &ExportScope) -> Result<ExportPlan, StoreError>;

    /// `Type/id` of the subscribers, policy holders and payors of the Coverages in `plan`.
    async fn export_links(&self, plan: std::sync::Arc<ExportPlan>) -> Result<IdSet, StoreError>;

    /// The Practitioner, PractitionerRole, Organization and Location ids among `refs`
    /// (`Type/id`), with the Practitioners, Organizations and Locations of those roles.
    async fn export_providers(
        &self,
        refs: std::collections::BTreeSet<String>,
    ) -> Result<std::collections::BTreeMap<ResourceType, IdSet>, StoreError>;

    /// Streams the resources of one type (not Group) in an export, as NDJSON chunks.
    fn export_resources(
        &self,
        plan: std::sync::Arc<ExportPlan>,
        rtype: ResourceType,
    ) -> ExportStream;

    /// Stores a new Subscription as `requested` with its handshake pending (or `off`).
    async fn create_subscription(
        &self,
        write: &SubscriptionWrite,
        now: i64,
    ) -> Result<SubscriptionRecord, StoreError>;

    async fn subscription(&self, id: &str) -> Result<Option<SubscriptionRecord>, StoreError>;

    /// A client's Subscriptions (everybody's with `None`), by id.
    async fn subscriptions(
        &self,
        client_id: Option<&str>,
    ) -> Result<Vec<SubscriptionRecord>, StoreError>;

    /// A client's update; `expected_version` is `If-Match`. `Ok(None)` when there is no such
    /// Subscription. The status follows from the current one (see [`SubscriptionWrite::off`]).
    async fn update_subscription(
        &self,
        write: &SubscriptionWrite,
        expected_version: Option<i64>,
        now: i64,
    ) -> Result<Option<SubscriptionRecord>, StoreError>;

    /// Removes a Subscription and its events; false when there was none.
    async fn delete_subscription(&self, id: &str) -> Result<bool, StoreError>;

    /// Events numbered `after + 1 ..= until` of a Subscription, in order, at most `limit`.
    async fn subscription_events(
        &self,
        id: &str,
        after: i64,
        until: i64,
        limit: u32,
    ) -> Result<Vec<SubscriptionEvent>, StoreError>;

    /// Forgets delivered events that occurred before `before` (µs): `$events` answers for what
    /// is kept. Undelivered events stay whatever their age. Returns how many went.
    async fn prune_subscription_events(&self, before: i64) -> Result<u64, StoreError>;

    /// Leases to `owner`, until `lease_until`, up to `limit` Subscriptions with something due at
    /// `now`: a handshake, undelivered events, or a heartbeat after `heartbeat_secs` of silence.
    async fn claim_deliveries(
        &self,
        owner: &str,
        now: i64,
        lease_until: i64,
        limit: u32,
    ) -> Result<Vec<SubscriptionRecord>, StoreError>;

    /// Records how `owner`'s delivery ended and releases the lease; false when the lease was no
    /// longer `owner`'s.
    async fn finish_delivery(
        &self,
        id: &str,
        owner: &str,
        result: &DeliveryResult,
        now: i64,
    ) -> Result<bool, StoreError>;

    /// Appends one entry to the access audit log (reads, refusals, and changes that made none).
    async fn record_audit(&self, event: &AuditRecord) -> Result<(), StoreError>;

    /// Audit entries matching `query`, newest first, at most `query.limit`.
    async fn audit_events(&self, query: &AuditQuery) -> Result<Vec<AuditRecord>, StoreError>;

    async fn audit_event(&self, id: &str) -> Result<Option<AuditRecord>, StoreError>;

    /// [`Store::change_members_with_provenance`] and its audit entry: in the change's transaction
    /// when something changed, else right after (nothing was written to share it with).
    async fn change_members_audited(
        &self,
        group_id: &str,
        change: MemberChange,
        expected_version: Option<i64>,
        provenance: Option<serde_json::Value>,
        audit: &AuditRecord,
    ) -> Result<MemberChangeOutcome, StoreError> {
        let out = self
            .change_members_with_provenance(group_id, change, expected_version, provenance)
            .await?;
        self.record_audit(audit).await?;
        Ok(out)
    }

    /// [`Store::write`] and its audit entry, committed together.
    async fn write_audited(
        &self,
        write: ResourceWrite,
        audit: &AuditRecord,
    ) -> Result<WriteOutcome, StoreError> {
        let out = self.write(write).await?;
        self.record_audit(audit).await?;
        Ok(out)
    }

    /// [`Store::delete`] and its audit entry, committed together (on its own when there was
    /// nothing to delete).
    async fn delete_audited(
        &self,
        rtype: ResourceType,
        id: &str,
        audit: &AuditRecord,
    ) -> Result<Option<VersionInfo>, StoreError> {
        let out = self.delete(rtype, id).await?;
        self.record_audit(audit).await?;
        Ok(out)
    }

    /// [`Store::create_subscription`] and its audit entry, committed together.
    async fn create_subscription_audited(
        &self,
        write: &SubscriptionWrite,
        now: i64,
        audit: &AuditRecord,
    ) -> Result<SubscriptionRecord, StoreError> {
        let out = self.create_subscription(write, now).await?;
        self.record_audit(audit).await?;
        Ok(out)
    }

    /// [`Store::update_subscription`] and its audit entry (when there was a Subscription to
    /// update), committed together.
    async fn update_subscription_audited(
        &self,
        write: &SubscriptionWrite,
        expected_version: Option<i64>,
        now: i64,
        audit: &AuditRecord,
    ) -> Result<Option<SubscriptionRecord>, StoreError> {
        let out = self
            .update_subscription(write, expected_version, now)
            .await?;
        if out.is_some() {
            self.record_audit(audit).await?;
        }
        Ok(out)
    }

    /// [`Store::delete_subscription`] and its audit entry, committed together.
    async fn delete_subscription_audited(
        &self,
        id: &str,
        audit: &AuditRecord,
    ) -> Result<bool, StoreError> {
        let out = self.delete_subscription(id).await?;
        self.record_audit(audit).await?;
        Ok(out)
    }
}
