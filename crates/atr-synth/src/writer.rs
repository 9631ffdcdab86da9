//! One NDJSON file per resource type, written through a large buffer.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use serde_json::Value;

/// Buffer size of every output file.
const BUFFER: usize = 256 * 1024;

/// An NDJSON file being written: one compact resource per line.
pub struct NdjsonFile {
    resource_type: &'static str,
    path: PathBuf,
    out: BufWriter<File>,
    count: u64,
}

impl NdjsonFile {
    /// Creates (or truncates) `<dir>/<resource_type>.ndjson`.
    pub fn create(dir: &Path, resource_type: &'static str) -> io::Result<NdjsonFile> {
        let path = dir.join(format!("{resource_type}.ndjson"));
        let out = BufWriter::with_capacity(BUFFER, File::create(&path)?);
        Ok(NdjsonFile {
            resource_type,
            path,
            out,
            count: 0,
        })
    }

    /// Writes one resource as one line.
    pub fn write(&mut self, resource: &Value) -> io::Result<()> {
        serde_json::to_writer(&mut self.out, resource).map_err(io::Error::other)?;
        self.out.write_all(b"\n")?;
        self.count += 1;
        Ok(())
    }

    /// Writes one resource given as compact JSON text (without the newline).
    pub fn write_line(&mut self, json: &[u8]) -> io::Result<()> {
        self.out.write_all(json)?;
        self.out.write_all(b"\n")?;
        self.count += 1;
        Ok(())
    }

    /// Writes one resource whose line the caller produces (it must end with a newline).
    pub fn write_with<F>(&mut self, f: F) -> io::Result<()>
    where
        F: FnOnce(&mut BufWriter<File>) -> io::Result<()>,
    {
        f(&mut self.out)?;
        self.count += 1;
        Ok(())
    }

    /// Flushes and closes the file: `(resource type, resources written, bytes)`.
    pub fn finish(self) -> io::Result<(&'static str, u64, u64)> {
        drop(self.out.into_inner().map_err(|e| e.into_error())?);
        let bytes = std::fs::metadata(&self.path)?.len();
        Ok((self.resource_type, self.count, bytes))
    }
}
