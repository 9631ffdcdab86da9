//! What goes into and comes out of a store.

use atr_model::ResourceType;
use atr_model::contract::UniqueClaim;
use atr_model::group::MemberEntry;
use atr_model::index::IndexEntries;
use bytes::Bytes;
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// Fails with `AlreadyExists` when the id is taken (POST).
    Create,
    /// Creates or makes a new version (PUT).
    Upsert,
}

/// One resource to write, validated and indexed.
#[derive(Debug, Clone)]
pub struct ResourceWrite {
    pub rtype: ResourceType,
    pub id: String,
    /// The resource; for a Group, its header (no `member`). The store stamps `id`, `meta` and, for
    /// Groups, `quantity`.
    pub resource: Value,
    pub index: IndexEntries,
    /// Group members (keys unique within the roster); `None` for other types.
    pub members: Option<Vec<MemberEntry>>,
    pub mode: WriteMode,
    /// `If-Match`: the version the client last saw.
    pub expected_version: Option<i64>,
    /// A body already stamped for the version the writer expects (bulk loads stamp in their
    /// parsing threads, off the store's critical path). Used only when the version matches.
    pub prestamped: Option<Prestamped>,
    /// Values this resource holds that no other may (`atr_model::contract::unique_claims`),
    /// computed by the writer while it has the tree; the store records them in the same
    /// transaction and refuses the write when another resource holds one.
    pub claims: Vec<UniqueClaim>,
}

/// A resource body serialised with `meta.versionId = version` and `meta.lastUpdated = last_updated`.
#[derive(Debug, Clone)]
pub struct Prestamped {
    pub version: i64,
    pub last_updated: i64,
    pub body: Vec<u8>,
}

impl ResourceWrite {
    /// Serialises the body as `version` at `last_updated`, for a store that will find that version.
    pub fn prestamp(&mut self, version: i64, last_updated: i64) {
        if self.members.is_some() {
            // A Group's body carries its member count, known only to the store.
            return;
        }
        // Stamped in place, not on a copy: a store that finds another version stamps the
        // resource again, and stamping replaces `versionId` and `lastUpdated`.
        atr_model::meta::stamp(&mut self.resource, &self.id, version, last_updated);
        if let Ok(body) = serde_json::to_vec(&self.resource) {
            self.prestamped = Some(Prestamped {
                version,
                last_updated,
                body,
            });
            // The tree is freed here, on the thread that built it (cheaper than across threads,
            // and a load's batches in flight hold only their bodies); the rare write that needs
            // it again, for another version, reads it back from the body.
            self.resource = Value::Null;
        }
    }

    /// Takes `body`, already stamped as `version` at `last_updated` (the bulk loader writes it from
    /// the text it read), and frees the tree as [`Self::prestamp`] does.
    pub fn prestamp_with(&mut self, version: i64, last_updated: i64, body: Vec<u8>) {
        self.prestamped = Some(Prestamped {
            version,
            last_updated,
            body,
        });
        self.resource = Value::Null;
    }

    /// The resource, to stamp for a version other than the prestamped one.
    pub fn take_resource(&mut self) -> Result<Value, serde_json::Error> {
        Prestamped::take_resource(&mut self.resource, self.prestamped.as_ref())
    }
}

impl Prestamped {
    /// [`ResourceWrite::take_resource`] over its fields, for a caller that holds another of them.
    pub fn take_resource(
        resource: &mut Value,
        prestamped: Option<&Prestamped>,
    ) -> Result<Value, serde_json::Error> {
        match (&resource, prestamped) {
            (Value::Null, Some(p)) => serde_json::from_slice(&p.body),
            _ => Ok(std::mem::take(resource)),
        }
    }
}

/// What a write made.
#[derive(Debug, Clone)]
pub struct WriteOutcome {
    pub version: i64,
    pub last_updated: i64,
    pub created: bool,
    /// The stored body (a Group's header).
    pub body: Bytes,
    pub member_count: Option<i64>,
}

/// Version, time and kind of one stored version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VersionInfo {
    pub version: i64,
    pub last_updated: i64,
}

/// One stored version of a resource.
#[derive(Debug, Clone)]
pub struct StoredResource {
    pub rtype: ResourceType,
    pub id: String,
    pub version: i64,
    pub last_updated: i64,
    pub deleted: bool,
    /// The JSON bytes (a Group's header); empty when deleted.
    pub body: Bytes,
    /// Groups: member entries at this version.
    pub member_count: Option<i64>,
}

/// A registered SMART Backend Services client, as the registry keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRecord {
    pub client_id: String,
    pub name: String,
    pub enabled: bool,
    /// A payer administration client: reads and writes everything.
    pub admin: bool,
    /// The client's public JWK set, inline.
    pub jwks: Option<String>,
    /// Or the URL the server fetches it from.
    pub jwks_url: Option<String>,
    /// Scopes the client may be granted.
    pub scopes: Vec<String>,
    /// `system|value` identifiers (NPI, TIN, contract, settlement entity) the client acts for.
    pub identifiers: Vec<String>,
    /// Seconds since the epoch.
    pub created_at: i64,
    pub updated_at: i64,
}

/// A secret the server signs its access tokens with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenKey {
    pub kid: String,
    pub secret: Vec<u8>,
    /// Seconds since the epoch.
    pub created_at: i64,
}

/// One reconciliation change to an attribution list, already resolved to references.
#[derive(Debug, Clone)]
pub enum MemberChange {
    /// Adds an entry (idempotent when the same attribution is already there and active).
    Add(atr_model::group::MemberEntry),
    /// Removes the patient's active entries, narrowed by provider and coverage when given: on a
    /// draft list they stay, inactive; on an open list they leave.
    Remove {
        patient: String,
        provider: Option<String>,
        coverage: Option<String>,
    },
    /// Makes the list final, dropping inactive entries.
    Confirm,
    /// The payer sets the list's status (`draft`, `open` or `final`; final drops inactive entries).
    SetStatus(String),
}

/// What a reconciliation change did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberChangeOutcome {
    /// False when nothing changed (no new version was made).
    pub changed: bool,
    /// The Group's version after the change.
    pub version: i64,
    /// When the new version was written (0 when unchanged).
    pub last_updated: i64,
    /// Entries added, removed or dropped.
    pub affected: u64,
    /// The list status after the change.
    pub status: String,
    pub member_count: i64,
}

/// Where a bulk export job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportStatus {
    /// Waiting for a worker.
    Accepted,
    /// A worker holds its lease.
    Running,
    Completed,
    Failed,
    /// Deleted by its client; its files go and its status URL answers 404.
    Cancelled,
}

impl ExportStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ExportStatus::Accepted => "accepted",
            ExportStatus::Running => "running",
            ExportStatus::Completed => "completed",
            ExportStatus::Failed => "failed",
            ExportStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "accepted" => ExportStatus::Accepted,
            "running" => ExportStatus::Running,
            "completed" => ExportStatus::Completed,
            "failed" => ExportStatus::Failed,
            "cancelled" => ExportStatus::Cancelled,
            _ => return None,
        })
    }

    /// Accepted or running: counts against the concurrency limits.
    pub fn is_active(self) -> bool {
        matches!(self, ExportStatus::Accepted | ExportStatus::Running)
    }
}

/// A bulk export job as the store keeps it. Times are microseconds since the epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportJob {
    pub id: String,
    pub client_id: String,
    /// The exported Group; empty for a Patient- or system-level export (their lists are in
    /// `params`).
    pub group_id: String,
    /// The Group version the export shows (0 when `group_id` is empty).
    pub group_version: i64,
    /// The snapshot instant: every resource is exported as it was then.
    pub transaction_time: i64,
    /// The kick-off URL.
    pub request: String,
    /// The parsed request (JSON owned by the export engine).
    pub params: String,
    pub status: ExportStatus,
    pub created_at: i64,
    pub expires_at: i64,
    /// Started attempts (a killed worker's job is attempted again).
    pub attempts: i64,
    pub done: i64,
    pub planned: i64,
    /// Completed: the manifest parts (JSON); failed: the reason.
    pub result: Option<String>,
    pub finished_at: Option<i64>,
}

impl ExportJob {
    /// `Group/{id}` of a Group export; `None` at the Patient and system levels.
    pub fn group_reference(&self) -> Option<String> {
        (!self.group_id.is_empty()).then(|| format!("Group/{}", self.group_id))
    }
}

/// Limits a new export job must fit in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportLimits {
    /// Accepted or running jobs, all clients.
    pub total: u32,
    /// Accepted or running jobs of one client.
    pub per_client: u32,
}

/// Whether a new export job was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportAdmission {
    Admitted,
    /// The client already runs `per_client` jobs.
    ClientBusy,
    /// The server already runs `total` jobs.
    ServerBusy,
}

/// One list at one version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListVersion {
    pub id: String,
    pub version: i64,
}

/// Which lists an export reads, and so which resources are in its scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExportLists {
    /// `Group/{id}/$export`: one list at the version current at the snapshot.
    One(ListVersion),
    /// A Consumer's Patient- or system-level `$export`: the lists it may see, each at its version
    /// at the snapshot, and what their members reference.
    Visible(Vec<ListVersion>),
    /// An administration client's Patient- or system-level `$export`: every stored resource of
    /// the exported types, and every Group as it was at the snapshot (resolved when the export is
    /// planned). With `patient`, the Patients named and what the lists say of them.
    Everything,
}

/// What an export reads: the members of some Group versions (or every stored resource) and the
/// resources they reference, each as it was at `at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportScope {
    pub lists: ExportLists,
    /// The snapshot instant (microseconds): versions last updated after it are not exported.
    pub at: i64,
    /// `_since` (microseconds): only resources updated after it, plus everything of members who
    /// joined a list after it.
    pub since: Option<i64>,
    /// `patient`: only these members (`Patient/id`).
    pub patients: Option<Vec<String>>,
}

/// An export's resolved scope, shared by the per-type readers.
#[derive(Debug, Clone)]
pub struct ExportPlan {
    pub scope: ExportScope,
    /// The Groups exported, each at its version (one for a Group export; with `_since` on an
    /// [`ExportLists::Everything`] export, only those changed since).
    pub groups: Vec<ListVersion>,
    /// True when `ids` already hold every resource in scope of every type ([`ExportLists::Everything`]
    /// without `patient`): no references are followed.
    pub complete: bool,
    /// The ids in scope per type (every type but Group): Patient and Coverage from the member
    /// rows when the export is planned; RelatedPerson and the provider types added once the
    /// Coverages' links are known ([`crate::Store::export_links`]).
    pub ids: std::collections::BTreeMap<atr_model::ResourceType, std::sync::Arc<crate::IdSet>>,
    /// `Type/id` of the attributed providers and the Group's managing entity.
    pub attributed: std::collections::BTreeSet<String>,
    /// The `_since` filter in effect: `None` when every resource in scope is exported (no
    /// `_since`, or the Group did not exist then, so every member joined after it).
    pub since: Option<i64>,
    /// With a `since` filter: `Type/id` of everything referenced by members who joined after it
    /// (exported whatever its lastUpdated).
    pub joined: std::collections::HashSet<String>,
    /// With a `since` filter: `Patient/id` of the members on the list at `since` who are not on it
    /// at the exported version. They left (an open list's removal takes the entry away), so an
    /// incremental pull reports them in `deleted`: the Consumer no longer holds them, and may no
    /// longer read them.
    pub left: Vec<String>,
}

impl ExportPlan {
    /// Resources of `rtype` in scope, as far as the plan knows them.
    pub fn count(&self, rtype: atr_model::ResourceType) -> usize {
        self.ids.get(&rtype).map_or(0, |ids| ids.len())
    }
}

/// What an export reader yields for one resource type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExportItem {
    /// Whole NDJSON lines, each ending in `\n`.
    Lines { ndjson: Bytes, count: u64 },
    /// `Type/id` in scope, deleted after `_since`.
    Deleted(String),
    /// `Type/id` referenced by the list but absent (never stored, or deleted) at the snapshot.
    Missing(String),
}

/// A stored `atr-list-change` Subscription and where its delivery stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionRecord {
    pub id: String,
    /// The client that made it; only that client reads or changes it.
    pub client_id: String,
    pub group_id: String,
    /// `requested`, `active`, `error` or `off`: the server's, not the client's.
    pub status: String,
    /// Bumped by every client write (the `ETag`); delivery does not change it.
    pub version: i64,
    /// The Subscription JSON as the client wrote it.
    pub body: String,
    pub created_at: i64,
    pub updated_at: i64,
    /// The last event number assigned (`events-since-subscription-start`).
    pub events_since_start: i64,
    /// The last event number the endpoint acknowledged.
    pub delivered_through: i64,
    pub handshake_pending: bool,
    pub heartbeat_secs: Option<i64>,
    /// Consecutive failed deliveries.
    pub failures: i64,
    /// No delivery before this (µs): the backoff after a failure.
    pub next_attempt_at: i64,
    pub last_sent_at: Option<i64>,
    pub last_error: Option<String>,
}

/// What a client's create or update sets.
#[derive(Debug, Clone)]
pub struct SubscriptionWrite {
    pub id: String,
    pub client_id: String,
    pub group_id: String,
    pub body: String,
    pub heartbeat_secs: Option<i64>,
    /// The client asked for `off`: delivery stops. Otherwise a Subscription that was off starts
    /// again from a handshake, and one in `error` is retried at once.
    pub off: bool,
}

/// One past `atr-list-change` event of a Subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionEvent {
    pub event_number: i64,
    pub group_id: String,
    pub group_version: i64,
    /// The Group version's `lastUpdated` (µs).
    pub occurred_at: i64,
}

/// How one delivery attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryResult {
    /// The endpoint accepted the handshake: the Subscription is active.
    Handshake,
    /// The endpoint accepted events up to and including this number.
    Events {
        through: i64,
    },
    Heartbeat,
    /// The endpoint failed; try again at `retry_at` (µs). The Subscription goes to `error` after a
    /// failed handshake or after `error_after` consecutive failures.
    Failed {
        reason: String,
        retry_at: i64,
        error_after: i64,
    },
}

/// One entry of the access audit log: which client pulled, changed or subscribed to what, when,
/// and the HTTP status it was answered. Never any resource content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// A UUID v7 (time-ordered).
    pub id: String,
    /// Microseconds since the epoch.
    pub recorded: i64,
    pub client_id: String,
    /// `C`, `R`, `U`, `D` or `E` (FHIR's AuditEvent action codes).
    pub action: String,
    /// The interaction or operation: `create`, `update`, `delete`, `$member-remove`, `bulk-file`, …
    pub subtype: String,
    /// `Type/id` of what the interaction was about (the Group for list operations), when known.
    pub entity: Option<String>,
    /// What else identifies the access (an export job, a file name).
    pub detail: Option<String>,
    /// The HTTP status answered.
    pub status: i64,
}

/// A page of the audit log, newest first.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// Recorded at or after (µs).
    pub since: Option<i64>,
    /// Recorded at or before (µs).
    pub until: Option<i64>,
    pub client_id: Option<String>,
    /// `Type/id`.
    pub entity: Option<String>,
    /// Keyset paging: only entries older than this `(recorded, id)`.
    pub before: Option<(i64, String)>,
    pub limit: u32,
}

/// Whether a bulk load sets aside the secondary indexes and builds them at its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeferIndexes {
    /// When the load is large (at least 64 MiB) and at least a quarter of what is stored:
    /// building an index once from sorted keys then beats keeping it up row by row.
    Auto,
    Always,
    Never,
}

impl DeferIndexes {
    /// Input below this is loaded with the indexes in place whatever is stored.
    pub const AUTO_MIN_INPUT: u64 = 64 << 20;

    /// Whether a load of `input_bytes` into a store of `stored_bytes` defers.
    pub fn applies(self, input_bytes: u64, stored_bytes: u64) -> bool {
        match self {
            DeferIndexes::Always => true,
            DeferIndexes::Never => false,
            DeferIndexes::Auto => {
                input_bytes >= Self::AUTO_MIN_INPUT && input_bytes >= stored_bytes / 4
            }
        }
    }
}
