//! Where export files live: the [`ExportFileStore`] the engine writes a job's files to, lists and
//! removes them from, and the download route reads them from. Two implementations: a local
//! directory ([`crate::local_store::LocalExportStore`], the default) and an S3-compatible bucket
//! ([`crate::s3_store::S3ExportStore`]).
//!
//! Every method takes a job id and a file name this engine made ([`is_job_id`],
//! [`is_export_file_name`]); anything else is refused before it reaches a path or an object key.

use std::pin::Pin;

use bytes::Bytes;
use futures::Stream;

use crate::files::{is_export_file_name, is_job_id};

/// A file's bytes, in chunks.
pub type ByteStream = Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>;

#[derive(Debug, thiserror::Error)]
pub enum ExportFileError {
    #[error("export files: {0}")]
    Io(#[from] std::io::Error),
    #[error("export file name {0:?} is not one this engine makes")]
    BadName(String),
    #[error("object storage: {0}")]
    Http(#[from] reqwest::Error),
    #[error("object storage: {operation} answered {status}: {body}")]
    S3 {
        operation: &'static str,
        status: u16,
        body: String,
    },
    #[error("object storage: {0}")]
    Protocol(String),
}

/// Export files of all jobs: written once by the job's worker, then read by downloads until the
/// job is deleted or expires.
#[async_trait::async_trait]
pub trait ExportFileStore: Send + Sync + std::fmt::Debug {
    /// Clears whatever a previous run of the job left (a restarted or taken-over job rewrites all
    /// its files) and makes room for the new ones.
    async fn start_job(&self, job_id: &str) -> Result<(), ExportFileError>;

    /// A new file of the job, empty; written through the [`ExportFileWriter`], visible to
    /// [`ExportFileStore::len`] and [`ExportFileStore::read`] once finished.
    async fn create(
        &self,
        job_id: &str,
        name: &str,
    ) -> Result<Box<dyn ExportFileWriter>, ExportFileError>;

    /// The names of the job's files (finished ones), in no particular order.
    async fn list(&self, job_id: &str) -> Result<Vec<String>, ExportFileError>;

    /// Removes one file (nothing to do when it is not there).
    async fn remove(&self, job_id: &str, name: &str) -> Result<(), ExportFileError>;

    /// Removes all of a job's files (nothing to do when there are none).
    async fn remove_job(&self, job_id: &str) -> Result<(), ExportFileError>;

    /// A file's size in bytes, `None` when there is no such file.
    async fn len(&self, job_id: &str, name: &str) -> Result<Option<u64>, ExportFileError>;

    /// Bytes `start..end` of a file (the caller knows its length from [`ExportFileStore::len`]),
    /// streamed; `None` when there is no such file.
    async fn read(
        &self,
        job_id: &str,
        name: &str,
        start: u64,
        end: u64,
    ) -> Result<Option<ByteStream>, ExportFileError>;
}

/// One file being written. Dropping it unfinished leaves a partial file behind for
/// [`ExportFileStore::remove_job`] (a cancelled or failed job) or [`ExportFileStore::start_job`]
/// (a rerun) to clear.
#[async_trait::async_trait]
pub trait ExportFileWriter: Send {
    async fn write(&mut self, bytes: &[u8]) -> Result<(), ExportFileError>;

    /// Makes the file durable and readable.
    async fn finish(self: Box<Self>) -> Result<(), ExportFileError>;
}

/// Refuses a job id or file name this engine never makes: nothing else is ever turned into a
/// path or object key.
pub(crate) fn check_names(job_id: &str, name: Option<&str>) -> Result<(), ExportFileError> {
    if !is_job_id(job_id) {
        return Err(ExportFileError::BadName(job_id.to_string()));
    }
    match name {
        Some(n) if !is_export_file_name(n) => Err(ExportFileError::BadName(n.to_string())),
        _ => Ok(()),
    }
}

/// Which [`ExportFileStore`] a server uses.
#[derive(Debug, Clone, Default)]
pub enum ExportStorage {
    /// Job directories under the export directory.
    #[default]
    Local,
    /// A bucket; the export directory spools files until they are uploaded.
    S3(crate::s3_store::S3Settings),
}

impl ExportStorage {
    /// The store, with `dir` as its directory (local) or spool (S3).
    pub fn open(
        &self,
        dir: std::path::PathBuf,
    ) -> Result<std::sync::Arc<dyn ExportFileStore>, ExportFileError> {
        Ok(match self {
            ExportStorage::Local => {
                std::sync::Arc::new(crate::local_store::LocalExportStore::new(dir))
            }
            ExportStorage::S3(settings) => {
                std::sync::Arc::new(crate::s3_store::S3ExportStore::new(settings, dir)?)
            }
        })
    }
}
