//! Why a store call failed, in terms the server can answer with.

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// `If-Match` named another version than the current one.
    #[error("version conflict: the current version of {rtype}/{id} is {current}, not {expected}")]
    VersionConflict {
        rtype: String,
        id: String,
        expected: i64,
        current: i64,
    },
    /// A create found the id taken.
    #[error("{rtype}/{id} already exists")]
    AlreadyExists { rtype: String, id: String },
    #[error("{rtype}/{id} does not exist")]
    NotFound { rtype: String, id: String },
    /// `$member-add`/`$member-remove` on a list whose status is final.
    #[error("Group/{0} is final: its membership can no longer change")]
    ListFinal(String),
    /// `$member-remove` for a patient with no active entry on the list.
    #[error("{patient} has no active entry on Group/{group}")]
    NotOnList { group: String, patient: String },
    /// Data in the database that this version of atr cannot read.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// From the direct SQLite reader (streaming member rows).
    #[error("database error: {0}")]
    Direct(String),
    #[error("migration failed: {0}")]
    Migration(String),
    #[error("unsupported database URL {0:?}: use sqlite://PATH or postgres://...")]
    UnsupportedUrl(String),
}

impl StoreError {
    /// True when the database could not be reached (the server answers 503).
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            StoreError::Database(
                sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed
            )
        )
    }
}
