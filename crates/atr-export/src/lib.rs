//! The bulk export engine of the Producer: `$davinci-data-export` and `$export` jobs.
//!
//! A kick-off becomes a durable job row ([`Exporter::submit`]); workers on any instance claim
//! jobs under leases, read the Group version's members and the resources they reference at the
//! job's snapshot instant (stored bytes, copied), and write one set of NDJSON files per type,
//! split at a size, plus the error and deleted files of the manifest.
//!
//! This crate knows nothing of HTTP or SQL: the server parses requests and serves files; the
//! store reads rows.

pub mod engine;
pub mod files;
pub mod filter;
pub mod request;

pub use engine::{ExportConfig, ExportError, Exporter, FilterParser, Manifest, Submission};
pub use files::{FileEntry, LocalFiles, is_export_file_name, is_job_id};
pub use filter::TypeFilter;
pub use request::{ExportRequest, Note};
