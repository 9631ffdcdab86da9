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
    /// A write would make a second holder of a unique value (`atr_model::contract::UniqueClaim`).
    #[error("{what} already belongs to {holder}")]
    Claimed {
        what: String,
        holder: String,
        /// Where the value is (`Group.identifier`), when known.
        element: &'static str,
    },
    /// `$member-add`/`$member-remove` on a list whose status is final.
    #[error("Group/{0} is final: its membership can no longer change")]
    ListFinal(String),
    /// `$member-remove` for a patient with no active entry on the list.
    #[error("{patient} has no active entry on Group/{group}")]
    NotOnList { group: String, patient: String },
    /// Data in the database that this version of atr cannot read.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// Not `#[source]`: the text is already in this error's own, and a chain printed with `{:#}`
    /// would say it twice.
    #[error("database error: {0}")]
    Database(sqlx::Error),
    /// The database did not let us connect: `database` is its URL without the password, `cause`
    /// what the connection attempt said (refused, no such database, authentication failed, …).
    #[error("cannot connect to {database}: {cause}")]
    Connect { database: String, cause: String },
    /// From the direct SQLite reader (streaming member rows).
    #[error("database error: {0}")]
    Direct(String),
    #[error("migration failed: {0}")]
    Migration(String),
    /// Holds the URL without its password.
    #[error("unsupported database URL {0:?}: use sqlite://PATH or postgres://...")]
    UnsupportedUrl(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::Database(e)
    }
}

/// `url` as it may be shown to a person or a log: any password in its user part is replaced by
/// `***`. Not a URL parser: it only needs to find `scheme://user:password@`.
pub(crate) fn without_password(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_string();
    };
    let authority_end = url[scheme_end..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| scheme_end + i);
    let authority = &url[scheme_end..authority_end];
    match authority.rfind('@') {
        Some(at) => match authority[..at].find(':') {
            Some(colon) => format!(
                "{}{}:***{}",
                &url[..scheme_end],
                &authority[..colon],
                &url[scheme_end + at..]
            ),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}
impl StoreError {
    /// True when the database could not be reached (the server answers 503).
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            StoreError::Database(
                sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed
            ) | StoreError::Connect { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::without_password;

    #[test]
    fn a_shown_url_keeps_everything_but_the_password() {
        assert_eq!(
            without_password("postgres://atr:s3cr@t@db.internal:5432/atr?sslmode=require"),
            "postgres://atr:***@db.internal:5432/atr?sslmode=require"
        );
        assert_eq!(
            without_password("postgres://postgres@127.0.0.1:5432/test"),
            "postgres://postgres@127.0.0.1:5432/test"
        );
        assert_eq!(without_password("sqlite://atr.db"), "sqlite://atr.db");
        assert_eq!(without_password("not a url"), "not a url");
    }
}
