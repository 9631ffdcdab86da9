//! Export files in an S3-compatible bucket, under `s3://bucket/prefix/{job}/{name}`, so every
//! instance of the server reads what any instance wrote.
//!
//! A file is written to a local spool file first and uploaded when it is complete (one PUT, or a
//! multipart upload streamed from the spool file for large ones), then the spool file goes: memory
//! stays at one read chunk per upload in flight whatever the file's size, a failed request is
//! retried from the spool file, and an object only ever appears whole. Requests are signed by
//! `rusty-s3` (pre-signed URLs, valid for minutes) and sent with `reqwest`.

use std::io::SeekFrom;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use bytes::Bytes;
use futures::TryStreamExt;
use rusty_s3::actions::{
    AbortMultipartUpload, CompleteMultipartUpload, CreateMultipartUpload, DeleteObject, GetObject,
    HeadObject, ListObjectsV2, PutObject, UploadPart,
};
use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use crate::file_store::{
    ByteStream, ExportFileError, ExportFileStore, ExportFileWriter, check_names,
};
use crate::files::is_export_file_name;

/// How long a signed request URL is valid: it is used at once, so only clock skew and a slow
/// upload's start need room.
const SIGNED_FOR: Duration = Duration::from_secs(15 * 60);
/// Chunks a spool file is read in for an upload: what an upload in flight holds in memory.
const UPLOAD_CHUNK: u64 = 256 * 1024;
/// S3 allows at most this many parts in one multipart upload.
const MAX_PARTS: u64 = 10_000;
/// S3's smallest part (every part but the last).
const MIN_PART: u64 = 5 * 1024 * 1024;
/// Attempts of one upload request before the file (and so the job) fails.
const ATTEMPTS: u32 = 3;

/// A bucket and a key prefix, from `s3://bucket/prefix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    pub bucket: String,
    /// Empty, or ending in `/`.
    pub prefix: String,
}

impl FromStr for S3Location {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let rest = s
            .strip_prefix("s3://")
            .ok_or_else(|| format!("{s:?} is not an s3://bucket/prefix URL"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        // Bucket naming rules: 3 to 63 lower-case letters, digits, dots and hyphens.
        if !(3..=63).contains(&bucket.len())
            || !bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        {
            return Err(format!("{bucket:?} is not an S3 bucket name"));
        }
        let prefix = prefix.trim_matches('/');
        // Keys with `.`/`..` segments would resolve like paths in the request URL.
        if prefix.split('/').any(|seg| seg == "." || seg == "..") {
            return Err(format!("{prefix:?}: a prefix cannot hold . or .. segments"));
        }
        Ok(S3Location {
            bucket: bucket.to_string(),
            prefix: if prefix.is_empty() {
                String::new()
            } else {
                format!("{prefix}/")
            },
        })
    }
}

/// What it takes to reach the bucket.
#[derive(Debug, Clone)]
pub struct S3Settings {
    pub location: S3Location,
    /// The S3 API's base URL; `None`: AWS's regional endpoint.
    pub endpoint: Option<String>,
    pub region: String,
    /// `endpoint/bucket/key` rather than `bucket.endpoint/key` (most S3-compatible servers).
    pub path_style: bool,
    /// `None`: unsigned requests (a bucket open to this network).
    pub credentials: Option<Credentials>,
    /// Files larger than this are uploaded in parts of this size (at least 5 MiB, and larger when
    /// a file would need more than 10,000 parts).
    pub part_bytes: u64,
}

/// Access keys for signing requests.
pub use rusty_s3::Credentials as S3Credentials;

impl S3Settings {
    /// The standard variables: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and, for temporary
    /// credentials, `AWS_SESSION_TOKEN`; `None` when the first two are not both set.
    pub fn credentials_from_env() -> Option<S3Credentials> {
        Credentials::from_env()
    }

    pub fn new(location: S3Location, region: &str) -> Self {
        S3Settings {
            location,
            endpoint: None,
            region: region.to_string(),
            path_style: false,
            credentials: None,
            part_bytes: 64 * 1024 * 1024,
        }
    }
}

/// A bucket holding export files, with a local spool directory for files being written.
#[derive(Debug, Clone)]
pub struct S3ExportStore {
    bucket: Bucket,
    credentials: Option<Credentials>,
    prefix: String,
    part_bytes: u64,
    spool: PathBuf,
    http: reqwest::Client,
}

impl S3ExportStore {
    pub fn new(settings: &S3Settings, spool: PathBuf) -> Result<Self, ExportFileError> {
        let endpoint = settings
            .endpoint
            .clone()
            .unwrap_or_else(|| format!("https://s3.{}.amazonaws.com", settings.region));
        let url = endpoint
            .parse()
            .map_err(|e| ExportFileError::Protocol(format!("S3 endpoint {endpoint:?}: {e}")))?;
        let style = if settings.path_style {
            UrlStyle::Path
        } else {
            UrlStyle::VirtualHost
        };
        let bucket = Bucket::new(
            url,
            style,
            settings.location.bucket.clone(),
            settings.region.clone(),
        )
        .map_err(|e| ExportFileError::Protocol(format!("S3 endpoint {endpoint:?}: {e}")))?;
        let http = reqwest::Client::builder()
            // Objects are served as stored; reqwest must not unpack anything on the way.
            .no_gzip()
            .connect_timeout(Duration::from_secs(10))
            .build()?;
        Ok(S3ExportStore {
            bucket,
            credentials: settings.credentials.clone(),
            prefix: settings.location.prefix.clone(),
            part_bytes: settings.part_bytes.max(MIN_PART),
            spool,
            http,
        })
    }

    fn job_prefix(&self, job_id: &str) -> String {
        format!("{}{job_id}/", self.prefix)
    }

    fn key(&self, job_id: &str, name: &str) -> Result<String, ExportFileError> {
        check_names(job_id, Some(name))?;
        Ok(format!("{}{name}", self.job_prefix(job_id)))
    }

    fn spool_dir(&self, job_id: &str) -> PathBuf {
        self.spool.join(job_id)
    }

    fn creds(&self) -> Option<&Credentials> {
        self.credentials.as_ref()
    }

    /// Keys under `prefix`, all pages.
    async fn keys(&self, prefix: &str) -> Result<Vec<String>, ExportFileError> {
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut action = ListObjectsV2::new(&self.bucket, self.creds());
            action.with_prefix(prefix);
            // Plain keys in the answer (they are ours: no characters that need encoding).
            action.query_mut().remove("encoding-type");
            if let Some(t) = &token {
                action.with_continuation_token(t.as_str());
            }
            let resp = self.http.get(action.sign(SIGNED_FOR)).send().await?;
            let text = checked(resp, "ListObjectsV2").await?.text().await?;
            let page = ListObjectsV2::parse_response(&text)
                .map_err(|e| ExportFileError::Protocol(format!("ListObjectsV2 answer: {e}")))?;
            keys.extend(page.contents.into_iter().map(|c| c.key));
            match page.next_continuation_token {
                Some(t) => token = Some(t),
                None => return Ok(keys),
            }
        }
    }

    async fn delete_key(&self, key: &str) -> Result<(), ExportFileError> {
        let url = DeleteObject::new(&self.bucket, self.creds(), key).sign(SIGNED_FOR);
        let resp = self.http.delete(url).send().await?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(());
        }
        checked(resp, "DeleteObject").await?;
        Ok(())
    }

    /// Uploads a complete spool file as `key`.
    async fn upload(&self, path: &Path, key: &str, len: u64) -> Result<(), ExportFileError> {
        if len <= self.part_bytes {
            return self
                .send_file(path, 0, len, "PutObject", || {
                    PutObject::new(&self.bucket, self.creds(), key).sign(SIGNED_FOR)
                })
                .await
                .map(|_| ());
        }
        let part = self.part_bytes.max(len.div_ceil(MAX_PARTS));
        let url = CreateMultipartUpload::new(&self.bucket, self.creds(), key).sign(SIGNED_FOR);
        // An explicit empty body: some servers refuse a POST without a length (411).
        let resp = self
            .http
            .post(url)
            .header(reqwest::header::CONTENT_LENGTH, 0)
            .send()
            .await?;
        let text = checked(resp, "CreateMultipartUpload").await?.text().await?;
        let created = CreateMultipartUpload::parse_response(&text)
            .map_err(|e| ExportFileError::Protocol(format!("CreateMultipartUpload answer: {e}")))?;
        let upload_id = created.upload_id();
        match self.upload_parts(path, key, upload_id, len, part).await {
            Ok(()) => Ok(()),
            Err(e) => {
                // Parts are kept (and paid for) until the upload is completed or aborted.
                let url = AbortMultipartUpload::new(&self.bucket, self.creds(), key, upload_id)
                    .sign(SIGNED_FOR);
                if let Err(abort) = self.http.delete(url).send().await {
                    tracing::warn!(key, error = %abort, "aborting a multipart upload");
                }
                Err(e)
            }
        }
    }

    async fn upload_parts(
        &self,
        path: &Path,
        key: &str,
        upload_id: &str,
        len: u64,
        part: u64,
    ) -> Result<(), ExportFileError> {
        let mut etags = Vec::new();
        let mut start = 0;
        while start < len {
            let n = part.min(len - start);
            let number = etags.len() as u16 + 1;
            let resp = self
                .send_file(path, start, n, "UploadPart", || {
                    UploadPart::new(&self.bucket, self.creds(), key, number, upload_id)
                        .sign(SIGNED_FOR)
                })
                .await?;
            let etag = resp
                .headers()
                .get(reqwest::header::ETAG)
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| ExportFileError::Protocol("UploadPart answered no ETag".into()))?;
            etags.push(etag.to_string());
            start += n;
        }
        let action = CompleteMultipartUpload::new(
            &self.bucket,
            self.creds(),
            key,
            upload_id,
            etags.iter().map(String::as_str),
        );
        let url = action.sign(SIGNED_FOR);
        let body = action.body();
        let resp = self
            .http
            .post(url)
            .header(reqwest::header::CONTENT_LENGTH, body.len())
            .body(body)
            .send()
            .await?;
        let text = checked(resp, "CompleteMultipartUpload")
            .await?
            .text()
            .await?;
        // S3 may answer 200 and still fail, with an `Error` element for the result. (Only that
        // is looked for: S3-compatible servers name the result element differently.)
        if text.contains("<Error>") {
            return Err(ExportFileError::Protocol(format!(
                "CompleteMultipartUpload failed: {text}"
            )));
        }
        Ok(())
    }

    /// PUTs bytes `start..start + len` of a spool file to a freshly signed URL, retrying what may
    /// pass on a second try (connection errors, 5xx: S3 answers 503 when it wants a slower pace).
    async fn send_file(
        &self,
        path: &Path,
        start: u64,
        len: u64,
        operation: &'static str,
        url: impl Fn() -> url::Url,
    ) -> Result<reqwest::Response, ExportFileError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let body = file_body(path, start, len).await?;
            let sent = self
                .http
                .put(url())
                .header(reqwest::header::CONTENT_LENGTH, len)
                .body(body)
                .send()
                .await;
            let retry = match sent {
                Ok(resp) if resp.status().is_server_error() && attempt < ATTEMPTS => {
                    format!("status {}", resp.status())
                }
                Ok(resp) => return checked(resp, operation).await,
                Err(e) if attempt < ATTEMPTS => e.to_string(),
                Err(e) => return Err(e.into()),
            };
            tracing::debug!(operation, attempt, reason = %retry, "retrying an upload");
            tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
        }
    }
}

/// A success, or its status and text as the error.
async fn checked(
    resp: reqwest::Response,
    operation: &'static str,
) -> Result<reqwest::Response, ExportFileError> {
    if resp.status().is_success() {
        return Ok(resp);
    }
    let status = resp.status().as_u16();
    let body: String = resp
        .text()
        .await
        .unwrap_or_default()
        .chars()
        .take(500)
        .collect();
    Err(ExportFileError::S3 {
        operation,
        status,
        body,
    })
}

/// Bytes `start..start + len` of a file as a request body, read chunk by chunk as it is sent.
async fn file_body(path: &Path, start: u64, len: u64) -> Result<reqwest::Body, ExportFileError> {
    let mut file = tokio::fs::File::open(path).await?;
    file.seek(SeekFrom::Start(start)).await?;
    let chunks = futures::stream::try_unfold((file, len), |(mut file, remaining)| async move {
        if remaining == 0 {
            return Ok(None);
        }
        let mut buf = vec![0u8; remaining.min(UPLOAD_CHUNK) as usize];
        let n = file.read(&mut buf).await?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "spooled export file is shorter than written",
            ));
        }
        buf.truncate(n);
        Ok::<_, std::io::Error>(Some((Bytes::from(buf), (file, remaining - n as u64))))
    });
    Ok(reqwest::Body::wrap_stream(chunks))
}

#[async_trait::async_trait]
impl ExportFileStore for S3ExportStore {
    async fn start_job(&self, job_id: &str) -> Result<(), ExportFileError> {
        self.remove_job(job_id).await?;
        tokio::fs::create_dir_all(self.spool_dir(job_id)).await?;
        Ok(())
    }

    async fn create(
        &self,
        job_id: &str,
        name: &str,
    ) -> Result<Box<dyn ExportFileWriter>, ExportFileError> {
        let key = self.key(job_id, name)?;
        let path = self.spool_dir(job_id).join(name);
        let file = tokio::fs::File::create(&path).await?;
        Ok(Box::new(S3FileWriter {
            store: self.clone(),
            key,
            path,
            file,
            len: 0,
        }))
    }

    async fn list(&self, job_id: &str) -> Result<Vec<String>, ExportFileError> {
        check_names(job_id, None)?;
        let prefix = self.job_prefix(job_id);
        Ok(self
            .keys(&prefix)
            .await?
            .into_iter()
            .filter_map(|k| k.strip_prefix(&prefix).map(str::to_string))
            .filter(|n| is_export_file_name(n))
            .collect())
    }

    async fn remove(&self, job_id: &str, name: &str) -> Result<(), ExportFileError> {
        let key = self.key(job_id, name)?;
        self.delete_key(&key).await
    }

    async fn remove_job(&self, job_id: &str) -> Result<(), ExportFileError> {
        if check_names(job_id, None).is_err() {
            // Nothing of a job this engine never made can be stored.
            return Ok(());
        }
        // Every object under the job's prefix, not only the names this engine makes: nothing of
        // a deleted job stays behind.
        for key in self.keys(&self.job_prefix(job_id)).await? {
            self.delete_key(&key).await?;
        }
        match tokio::fs::remove_dir_all(self.spool_dir(job_id)).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    async fn len(&self, job_id: &str, name: &str) -> Result<Option<u64>, ExportFileError> {
        let key = self.key(job_id, name)?;
        let url = HeadObject::new(&self.bucket, self.creds(), &key).sign(SIGNED_FOR);
        let resp = self.http.head(url).send().await?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let resp = checked(resp, "HeadObject").await?;
        resp.headers()
            .get(reqwest::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .map(Some)
            .ok_or_else(|| {
                ExportFileError::Protocol("HeadObject answered no Content-Length".into())
            })
    }

    async fn read(
        &self,
        job_id: &str,
        name: &str,
        start: u64,
        end: u64,
    ) -> Result<Option<ByteStream>, ExportFileError> {
        let key = self.key(job_id, name)?;
        if end <= start {
            return Ok(Some(Box::pin(futures::stream::empty())));
        }
        let url = GetObject::new(&self.bucket, self.creds(), &key).sign(SIGNED_FOR);
        let resp = self
            .http
            .get(url)
            .header(reqwest::header::RANGE, format!("bytes={start}-{}", end - 1))
            .send()
            .await?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let resp = checked(resp, "GetObject").await?;
        Ok(Some(Box::pin(
            resp.bytes_stream().map_err(std::io::Error::other),
        )))
    }
}

/// A file spooled locally while it is written, uploaded when finished.
struct S3FileWriter {
    store: S3ExportStore,
    key: String,
    path: PathBuf,
    // Unbuffered, as the local store's files: writes come in large chunks.
    file: tokio::fs::File,
    len: u64,
}

#[async_trait::async_trait]
impl ExportFileWriter for S3FileWriter {
    async fn write(&mut self, bytes: &[u8]) -> Result<(), ExportFileError> {
        self.file.write_all(bytes).await?;
        self.len += bytes.len() as u64;
        Ok(())
    }

    async fn finish(mut self: Box<Self>) -> Result<(), ExportFileError> {
        self.file.flush().await?;
        self.store.upload(&self.path, &self.key, self.len).await?;
        tokio::fs::remove_file(&self.path).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_parse_bucket_and_prefix() {
        let l: S3Location = "s3://exports/atr/prod/".parse().unwrap();
        assert_eq!(l.bucket, "exports");
        assert_eq!(l.prefix, "atr/prod/");
        let l: S3Location = "s3://exports".parse().unwrap();
        assert_eq!(l.prefix, "");
        assert!("s3://Bad_Bucket/x".parse::<S3Location>().is_err());
        assert!("s3://exports/../x".parse::<S3Location>().is_err());
        assert!("/var/exports".parse::<S3Location>().is_err());
    }
}
