//! Export files in a local directory (the default): one directory per job under the root.
//!
//! Several instances share jobs only when they share this directory (a network file system);
//! otherwise an S3 bucket is the place ([`crate::s3_store`]).

use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;

use bytes::Bytes;
use tokio::io::AsyncWriteExt;

use crate::file_store::{
    ByteStream, ExportFileError, ExportFileStore, ExportFileWriter, check_names,
};
use crate::files::is_export_file_name;

/// Chunks a download is read in.
const READ_CHUNK: usize = 1 << 20;

/// The root directory of all jobs' files.
#[derive(Debug, Clone)]
pub struct LocalExportStore {
    root: PathBuf,
}

impl LocalExportStore {
    pub fn new(root: PathBuf) -> Self {
        LocalExportStore { root }
    }

    fn job_dir(&self, job_id: &str) -> PathBuf {
        self.root.join(job_id)
    }

    fn path(&self, job_id: &str, name: &str) -> Result<PathBuf, ExportFileError> {
        check_names(job_id, Some(name))?;
        Ok(self.job_dir(job_id).join(name))
    }
}

#[async_trait::async_trait]
impl ExportFileStore for LocalExportStore {
    async fn start_job(&self, job_id: &str) -> Result<(), ExportFileError> {
        self.remove_job(job_id).await?;
        tokio::fs::create_dir_all(self.job_dir(job_id)).await?;
        Ok(())
    }

    async fn create(
        &self,
        job_id: &str,
        name: &str,
    ) -> Result<Box<dyn ExportFileWriter>, ExportFileError> {
        let file = tokio::fs::File::create(self.path(job_id, name)?).await?;
        Ok(Box::new(LocalFileWriter { file }))
    }

    async fn list(&self, job_id: &str) -> Result<Vec<String>, ExportFileError> {
        check_names(job_id, None)?;
        let mut names = Vec::new();
        let mut dir = match tokio::fs::read_dir(self.job_dir(job_id)).await {
            Ok(dir) => dir,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(names),
            Err(e) => return Err(e.into()),
        };
        while let Some(entry) = dir.next_entry().await? {
            if let Some(name) = entry.file_name().to_str()
                && is_export_file_name(name)
            {
                names.push(name.to_string());
            }
        }
        Ok(names)
    }

    async fn remove(&self, job_id: &str, name: &str) -> Result<(), ExportFileError> {
        match tokio::fs::remove_file(self.path(job_id, name)?).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    async fn remove_job(&self, job_id: &str) -> Result<(), ExportFileError> {
        if check_names(job_id, None).is_err() {
            // Nothing of a job this engine never made can be stored.
            return Ok(());
        }
        match tokio::fs::remove_dir_all(self.job_dir(job_id)).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    async fn len(&self, job_id: &str, name: &str) -> Result<Option<u64>, ExportFileError> {
        match tokio::fs::metadata(self.path(job_id, name)?).await {
            Ok(m) if m.is_file() => Ok(Some(m.len())),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn read(
        &self,
        job_id: &str,
        name: &str,
        start: u64,
        end: u64,
    ) -> Result<Option<ByteStream>, ExportFileError> {
        let path = self.path(job_id, name)?;
        let mut file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        file.seek(SeekFrom::Start(start))?;
        // Blocking reads of large chunks on a thread of their own: far fewer hops than
        // tokio::fs's small ones.
        let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(4);
        tokio::task::spawn_blocking(move || pump(file, end.saturating_sub(start), tx));
        Ok(Some(Box::pin(tokio_stream_from(rx))))
    }
}

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>,
) -> impl futures::Stream<Item = std::io::Result<Bytes>> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

fn pump(
    mut file: std::fs::File,
    mut remaining: u64,
    tx: tokio::sync::mpsc::Sender<std::io::Result<Bytes>>,
) {
    let mut buf = vec![0u8; READ_CHUNK];
    while remaining > 0 {
        let want = (remaining as usize).min(READ_CHUNK);
        let n = match file.read(&mut buf[..want]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                let _ = tx.blocking_send(Err(e));
                return;
            }
        };
        remaining -= n as u64;
        if tx
            .blocking_send(Ok(Bytes::copy_from_slice(&buf[..n])))
            .is_err()
        {
            return;
        }
    }
}

struct LocalFileWriter {
    // Unbuffered: writes come in chunks of a quarter megabyte or more, and a buffer would only
    // copy them once more.
    file: tokio::fs::File,
}

#[async_trait::async_trait]
impl ExportFileWriter for LocalFileWriter {
    async fn write(&mut self, bytes: &[u8]) -> Result<(), ExportFileError> {
        self.file.write_all(bytes).await?;
        Ok(())
    }

    async fn finish(mut self: Box<Self>) -> Result<(), ExportFileError> {
        self.file.flush().await?;
        self.file.sync_data().await?;
        Ok(())
    }
}
