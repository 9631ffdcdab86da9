//! The bulk export engine of the Producer: `$davinci-data-export` and `$export` jobs, at the Group,
//! Patient and system levels.
//!
//! A kick-off becomes a durable job row ([`Exporter::submit`]); workers on any instance claim
//! jobs under leases, read the Group version's members and the resources they reference at the
//! job's snapshot instant (stored bytes, copied), and write one set of NDJSON files per type,
//! split at a size, plus the error and deleted files of the manifest, to an [`ExportFileStore`]
//! (a local directory or an S3 bucket).
//!
//! This crate knows nothing of HTTP or SQL: the server parses requests and serves files; the
//! store reads rows.

pub mod engine;
pub mod file_store;
pub mod files;
pub mod filter;
pub mod local_store;
pub mod request;
pub mod s3_store;

pub use engine::{ExportConfig, ExportError, Exporter, FilterParser, Manifest, Submission};
pub use file_store::{ByteStream, ExportFileError, ExportFileStore, ExportStorage};
pub use files::{FileEntry, is_export_file_name, is_job_id};
pub use filter::TypeFilter;
pub use local_store::LocalExportStore;
pub use request::{ExportRequest, ExportSource, Note};
pub use s3_store::{S3Credentials, S3ExportStore, S3Location, S3Settings};
