//! Export files on the local disk: one directory per job, per-type NDJSON files split at a size
//! limit on line boundaries, so a download can resume and no file grows without bound.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

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

/// The root directory of all jobs' files.
#[derive(Debug, Clone)]
pub struct LocalFiles {
    root: PathBuf,
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

impl LocalFiles {
    pub fn new(root: PathBuf) -> Self {
        LocalFiles { root }
    }

    pub fn job_dir(&self, job_id: &str) -> PathBuf {
        self.root.join(job_id)
    }

    /// The path of a job's file, or `None` for a name or id this engine never makes.
    pub fn path(&self, job_id: &str, name: &str) -> Option<PathBuf> {
        (is_job_id(job_id) && is_export_file_name(name)).then(|| self.job_dir(job_id).join(name))
    }

    /// Removes a job's files (nothing to do when there are none).
    pub async fn remove_job(&self, job_id: &str) -> std::io::Result<()> {
        if !is_job_id(job_id) {
            return Ok(());
        }
        match tokio::fs::remove_dir_all(self.job_dir(job_id)).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// Writes the lines of one kind (a resource type, `error` or `deleted`) into `Kind-1.ndjson`,
/// `Kind-2.ndjson`, … of at most `max_bytes` each (a single longer line gets a file of its own).
pub struct SplitWriter {
    dir: PathBuf,
    kind: String,
    rtype: String,
    max_bytes: u64,
    current: Option<Open>,
    files: Vec<FileEntry>,
}

struct Open {
    // Unbuffered: writes come in chunks of a quarter megabyte or more, and a buffer would only
    // copy them once more.
    file: tokio::fs::File,
    name: String,
    bytes: u64,
    lines: u64,
}

impl SplitWriter {
    /// `kind` names the files; `rtype` is the manifest `type` of their lines.
    pub fn new(dir: &Path, kind: &str, rtype: &str, max_bytes: u64) -> Self {
        SplitWriter {
            dir: dir.to_path_buf(),
            kind: kind.to_string(),
            rtype: rtype.to_string(),
            max_bytes: max_bytes.max(1),
            current: None,
            files: Vec::new(),
        }
    }

    async fn open(&mut self) -> std::io::Result<&mut Open> {
        if self.current.is_none() {
            let name = format!("{}-{}.ndjson", self.kind, self.files.len() + 1);
            let file = tokio::fs::File::create(self.dir.join(&name)).await?;
            self.current = Some(Open {
                file,
                name,
                bytes: 0,
                lines: 0,
            });
        }
        match self.current.as_mut() {
            Some(open) => Ok(open),
            None => Err(std::io::Error::other("export file not open")),
        }
    }

    async fn close(&mut self) -> std::io::Result<()> {
        if let Some(mut open) = self.current.take() {
            open.file.flush().await?;
            open.file.sync_data().await?;
            self.files.push(FileEntry {
                rtype: self.rtype.clone(),
                name: open.name,
                count: open.lines,
            });
        }
        Ok(())
    }

    /// Appends whole lines (each ending in `\n`).
    pub async fn write(&mut self, mut lines: &[u8]) -> std::io::Result<()> {
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
                open.file.write_all(piece).await?;
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
    pub async fn write_unsplit(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let open = self.open().await?;
        open.file.write_all(bytes).await?;
        open.bytes += bytes.len() as u64;
        open.lines += count_lines(bytes);
        Ok(())
    }

    /// Closes the last file; the files written, in order.
    pub async fn finish(mut self) -> std::io::Result<Vec<FileEntry>> {
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
        let mut w = SplitWriter::new(dir.path(), "Patient", "Patient", 10);
        w.write(b"aaaa\nbbbb\ncccc\n").await.unwrap();
        w.write(b"a-very-long-line\nd\n").await.unwrap();
        let files = w.finish().await.unwrap();
        let counts: Vec<u64> = files.iter().map(|f| f.count).collect();
        assert_eq!(counts, vec![2, 1, 1, 1]);
        let first = std::fs::read_to_string(dir.path().join("Patient-1.ndjson")).unwrap();
        assert_eq!(first, "aaaa\nbbbb\n");
        let third = std::fs::read_to_string(dir.path().join("Patient-3.ndjson")).unwrap();
        assert_eq!(third, "a-very-long-line\n");
    }
}
