//! Export files: their names, manifest entries, and the per-type NDJSON files split at a size
//! limit on line boundaries, so a download can resume and no file grows without bound. Where the
//! files go is the [`ExportFileStore`]'s business.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::file_store::{ExportFileError, ExportFileStore, ExportFileWriter};

/// One file of a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// The resource type of every line (`OperationOutcome` for errors, `Bundle` for deletions).
    #[serde(rename = "type")]
    pub rtype: String,
    /// The file name within the job's directory.
    pub name: String,
    /// Lines in the file.
    pub count: u64,
}

/// Whether `name` is a file name this engine writes (`Type-N.ndjson`): nothing else is ever
/// served, so a crafted name cannot reach outside the job's directory.
pub fn is_export_file_name(name: &str) -> bool {
    let Some(stem) = name.strip_suffix(".ndjson") else {
        return false;
    };
    let Some((kind, n)) = stem.rsplit_once('-') else {
        return false;
    };
    !kind.is_empty()
        && kind.bytes().all(|b| b.is_ascii_alphabetic())
        && !n.is_empty()
        && n.bytes().all(|b| b.is_ascii_digit())
}

/// Whether `id` looks like a job id this engine makes (a UUID).
pub fn is_job_id(id: &str) -> bool {
    uuid::Uuid::parse_str(id).is_ok()
}

/// Writes the lines of one kind (a resource type, `error` or `deleted`) into `Kind-1.ndjson`,
/// `Kind-2.ndjson`, … of at most `max_bytes` each (a single longer line gets a file of its own).
pub struct SplitWriter {
    store: Arc<dyn ExportFileStore>,
    job_id: String,
    kind: String,
    rtype: String,
    max_bytes: u64,
    current: Option<Open>,
    files: Vec<FileEntry>,
}

struct Open {
    file: Box<dyn ExportFileWriter>,
    name: String,
    bytes: u64,
    lines: u64,
}

impl SplitWriter {
    /// `kind` names the files; `rtype` is the manifest `type` of their lines.
    pub fn new(
        store: Arc<dyn ExportFileStore>,
        job_id: &str,
        kind: &str,
        rtype: &str,
        max_bytes: u64,
    ) -> Self {
        SplitWriter {
            store,
            job_id: job_id.to_string(),
            kind: kind.to_string(),
            rtype: rtype.to_string(),
            max_bytes: max_bytes.max(1),
            current: None,
            files: Vec::new(),
        }
    }

    async fn open(&mut self) -> Result<&mut Open, ExportFileError> {
        if self.current.is_none() {
            let name = format!("{}-{}.ndjson", self.kind, self.files.len() + 1);
            let file = self.store.create(&self.job_id, &name).await?;
            self.current = Some(Open {
                file,
                name,
                bytes: 0,
                lines: 0,
            });
        }
        match self.current.as_mut() {
            Some(open) => Ok(open),
            None => Err(ExportFileError::Protocol("export file not open".into())),
        }
    }

    async fn close(&mut self) -> Result<(), ExportFileError> {
        if let Some(open) = self.current.take() {
            open.file.finish().await?;
            self.files.push(FileEntry {
                rtype: self.rtype.clone(),
                name: open.name,
                count: open.lines,
            });
        }
        Ok(())
    }

    /// Appends whole lines (each ending in `\n`).
    pub async fn write(&mut self, mut lines: &[u8]) -> Result<(), ExportFileError> {
        while !lines.is_empty() {
            let max = self.max_bytes;
            let open = self.open().await?;
            let room = max.saturating_sub(open.bytes) as usize;
            let take = if lines.len() <= room {
                lines.len()
            } else {
                match lines[..room].iter().rposition(|b| *b == b'\n') {
                    Some(end) => end + 1,
                    // Not even one line fits: a fresh file takes the next line whole.
                    None if open.bytes == 0 => lines
                        .iter()
                        .position(|b| *b == b'\n')
                        .map_or(lines.len(), |e| e + 1),
                    None => 0,
                }
            };
            if take > 0 {
                let piece = &lines[..take];
                open.file.write(piece).await?;
                open.bytes += take as u64;
                open.lines += count_lines(piece);
                lines = &lines[take..];
            }
            if !lines.is_empty() {
                self.close().await?;
            }
        }
        Ok(())
    }

    /// Appends part of a line that must not be split (a Group with all its members is one line
    /// of any size).
    pub async fn write_unsplit(&mut self, bytes: &[u8]) -> Result<(), ExportFileError> {
        let open = self.open().await?;
        open.file.write(bytes).await?;
        open.bytes += bytes.len() as u64;
        open.lines += count_lines(bytes);
        Ok(())
    }

    /// Closes the last file; the files written, in order.
    pub async fn finish(mut self) -> Result<Vec<FileEntry>, ExportFileError> {
        self.close().await?;
        Ok(self.files)
    }
}

fn count_lines(bytes: &[u8]) -> u64 {
    memchr::memchr_iter(b'\n', bytes).count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_engine_file_names_are_served() {
        assert!(is_export_file_name("Patient-1.ndjson"));
        assert!(is_export_file_name("error-12.ndjson"));
        assert!(!is_export_file_name("../Patient-1.ndjson"));
        assert!(!is_export_file_name("Patient-1.ndjson/x"));
        assert!(!is_export_file_name("Patient-.ndjson"));
        assert!(!is_export_file_name("Patient-1.json"));
    }

    #[tokio::test]
    async fn lines_split_at_the_size_limit_and_are_counted() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(crate::local_store::LocalExportStore::new(dir.path().into()));
        let job = uuid::Uuid::new_v4().to_string();
        store.start_job(&job).await.unwrap();
        let mut w = SplitWriter::new(store, &job, "Patient", "Patient", 10);
        w.write(b"aaaa\nbbbb\ncccc\n").await.unwrap();
        w.write(b"a-very-long-line\nd\n").await.unwrap();
        let files = w.finish().await.unwrap();
        let counts: Vec<u64> = files.iter().map(|f| f.count).collect();
        assert_eq!(counts, vec![2, 1, 1, 1]);
        let first =
            std::fs::read_to_string(dir.path().join(&job).join("Patient-1.ndjson")).unwrap();
        assert_eq!(first, "aaaa\nbbbb\n");
        let third =
            std::fs::read_to_string(dir.path().join(&job).join("Patient-3.ndjson")).unwrap();
        assert_eq!(third, "a-very-long-line\n");
    }
}
