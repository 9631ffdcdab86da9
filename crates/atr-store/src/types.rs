//! What goes into and comes out of a store.

use atr_model::ResourceType;
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
