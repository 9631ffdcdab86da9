//! Pulling a list: `$davinci-data-export` (falling back to STU1's `$export`), polling, parallel
//! resumable downloads, validation of every line, and the snapshot in the consumer store.
//!
//! Every step is recorded before the next begins (the job's status URL, the manifest, each
//! finished file), and bytes land in files that only grow, so the same command after Ctrl-C or a
//! crash carries on: it polls the same job, skips finished files and asks for the rest of a
//! partial one with `Range`.

use std::io::{BufRead, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde_json::Value;

use crate::http::retry_after;
use crate::roster::{directory_entry, stream_group};
use crate::store::{ConsumerStore, PullFile, PullRecord};
use crate::{ClientError, Fhir};

/// How a pull runs.
#[derive(Debug, Clone)]
pub struct PullOptions {
    /// `_since` to send; `None` with `incremental`: since the last complete pull of the list.
    pub since: Option<String>,
    /// Ask for everything, whatever was pulled before.
    pub full: bool,
    /// Files downloaded at once.
    pub parallel: usize,
    /// Progress bars on stderr.
    pub progress: bool,
    /// Longest wait between two status polls, whatever `Retry-After` says.
    pub max_poll_interval: Duration,
    /// Ask for gzip (fewer bytes on the wire; on a fast network the Producer's compressing can
    /// be the slower part).
    pub gzip: bool,
}

impl Default for PullOptions {
    fn default() -> Self {
        PullOptions {
            since: None,
            full: false,
            parallel: 4,
            progress: false,
            max_poll_interval: Duration::from_secs(30),
            gzip: true,
        }
    }
}

/// What a pull did.
#[derive(Debug, Clone, Serialize)]
pub struct PullReport {
    pub pull_id: i64,
    pub group_id: String,
    pub resumed: bool,
    pub operation: String,
    pub since: Option<String>,
    pub transaction_time: Option<String>,
    pub group_version: Option<String>,
    pub members: usize,
    pub files: usize,
    pub resources: u64,
    pub bytes: u64,
    /// Issues the Producer reported in the manifest's error files.
    pub producer_errors: usize,
    /// Seconds from kick-off to the manifest (the Producer's export; 0 when resumed after it).
    pub export_seconds: f64,
    /// Seconds downloading the files.
    pub download_seconds: f64,
    /// Seconds checking every line and storing the snapshot.
    pub store_seconds: f64,
}

struct Bars {
    _multi: MultiProgress,
    status: ProgressBar,
    files: ProgressBar,
    bytes: ProgressBar,
    resources: ProgressBar,
}

impl Bars {
    fn new(show: bool) -> Bars {
        let multi = MultiProgress::with_draw_target(if show {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        });
        let style = |t: &str| {
            ProgressStyle::with_template(t).unwrap_or_else(|_| ProgressStyle::default_bar())
        };
        let status = multi.add(ProgressBar::new_spinner());
        status.set_style(style("{spinner} {msg}"));
        let files = multi.add(ProgressBar::new(0));
        files.set_style(style("files     [{bar:30}] {pos}/{len}"));
        let bytes = multi.add(ProgressBar::new(0));
        bytes.set_style(style(
            "bytes     [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
        ));
        let resources = multi.add(ProgressBar::new(0));
        resources.set_style(style("resources {pos} checked {per_sec}"));
        Bars {
            _multi: multi,
            status,
            files,
            bytes,
            resources,
        }
    }
}

/// Pulls Group `group_id` into `store`, resuming an unfinished pull of it.
pub async fn pull(
    fhir: &Fhir,
    store: &mut ConsumerStore,
    group_id: &str,
    options: &PullOptions,
) -> Result<PullReport, ClientError> {
    let bars = Bars::new(options.progress);
    let base = fhir.base().to_string();
    let (record, resumed) = match store.unfinished(&base, group_id)? {
        Some(p) => (p, true),
        None => {
            let since = if options.full {
                None
            } else {
                match &options.since {
                    Some(s) => Some(s.clone()),
                    None => store
                        .last_complete(&base, group_id)?
                        .and_then(|p| p.transaction_time),
                }
            };
            (store.start_pull(&base, group_id, since.as_deref())?, false)
        }
    };
    match run(fhir, store, &record, options, &bars, resumed).await {
        Ok(report) => {
            bars.status.finish_with_message(format!(
                "pull {} of Group/{group_id}: {} members",
                report.pull_id, report.members
            ));
            Ok(report)
        }
        Err(e) => {
            bars.status
                .abandon_with_message(format!("pull {} stopped: {e}", record.id));
            // Resumable unless no export job was started, the Producer no longer has the job, or
            // what it sent does not hold together: those start afresh next time.
            let started_job = store
                .pull(record.id)?
                .is_some_and(|p| p.status_url.is_some());
            let gone = matches!(
                &e,
                ClientError::Refused {
                    status: 404 | 410,
                    ..
                }
            );
            if !started_job || gone || matches!(e, ClientError::InvalidData(_)) {
                store.fail(record.id, &e.to_string())?;
            }
            Err(e)
        }
    }
}

async fn run(
    fhir: &Fhir,
    store: &mut ConsumerStore,
    record: &PullRecord,
    options: &PullOptions,
    bars: &Bars,
    resumed: bool,
) -> Result<PullReport, ClientError> {
    let mut record = record.clone();
    let export_started = std::time::Instant::now();
    if record.status_url.is_none() {
        bars.status.set_message(format!(
            "kicking off the export of Group/{}",
            record.group_id
        ));
        let (operation, url) = kick_off(fhir, &record.group_id, record.since.as_deref()).await?;
        store.set_job(record.id, &operation, &url)?;
        record.operation = Some(operation);
        record.status_url = Some(url);
    }
    let status_url = record.status_url.clone().unwrap_or_default();
    if record.manifest.is_none() {
        let manifest = poll(fhir, &status_url, options, bars).await?;
        let files: Vec<(String, String)> = manifest["output"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|o| {
                Some((
                    o["type"].as_str()?.to_string(),
                    o["url"].as_str()?.to_string(),
                ))
            })
            .collect();
        store.set_manifest(
            record.id,
            &manifest.to_string(),
            manifest["transactionTime"].as_str(),
            &files,
        )?;
        record = store
            .pull(record.id)?
            .ok_or_else(|| ClientError::NotFound(format!("pull {} vanished", record.id)))?;
    }
    let export_seconds = export_started.elapsed().as_secs_f64();
    let download_started = std::time::Instant::now();
    let manifest: Value = serde_json::from_str(record.manifest.as_deref().unwrap_or("{}"))
        .map_err(|e| ClientError::Unexpected(format!("the stored manifest is unreadable: {e}")))?;
    let files = store.files(record.id)?;
    bars.files.set_length(files.len() as u64);
    bars.files
        .set_position(files.iter().filter(|f| f.complete).count() as u64);
    bars.status
        .set_message(format!("downloading {} files", files.len()));

    // Downloads, `parallel` at once; each finished file is recorded at once.
    let pending: Vec<PullFile> = files.iter().filter(|f| !f.complete).cloned().collect();
    let bytes = Arc::new(bars.bytes.clone());
    let gzip = options.gzip;
    let mut results = futures::stream::iter(pending)
        .map(|f| {
            let fhir = fhir.clone();
            let bytes = bytes.clone();
            async move { download(&fhir, &f, &bytes, gzip).await.map(|n| (f.idx, n)) }
        })
        .buffer_unordered(options.parallel.max(1));
    let mut first_error = None;
    while let Some(r) = results.next().await {
        match r {
            Ok((idx, n)) => {
                store.file_done(record.id, idx, n)?;
                bars.files.inc(1);
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }

    let download_seconds = download_started.elapsed().as_secs_f64();
    let store_started = std::time::Instant::now();
    bars.status.set_message("checking every line".to_string());
    let snapshot = check_and_store(store, &record, &files, &bars.resources)?;
    let producer_errors = count_producer_errors(fhir, &manifest).await;
    let members = snapshot.members;
    let total_bytes: u64 = files
        .iter()
        .map(|f| std::fs::metadata(&f.path).map_or(0, |m| m.len()))
        .sum();
    let store_seconds = store_started.elapsed().as_secs_f64();
    // The Producer may forget the job now (it frees its files).
    let _ = fhir.send(Method::DELETE, &status_url, &[], None).await;
    Ok(PullReport {
        pull_id: record.id,
        group_id: record.group_id.clone(),
        resumed,
        operation: record.operation.clone().unwrap_or_default(),
        since: record.since.clone(),
        transaction_time: record.transaction_time.clone(),
        group_version: snapshot.group_version,
        members,
        files: files.len(),
        resources: snapshot.resources,
        bytes: total_bytes,
        producer_errors,
        export_seconds,
        download_seconds,
        store_seconds,
    })
}

/// Starts the export; the operation used and the status URL. A Producer without
/// `$davinci-data-export` (STU1) is asked for `$export`.
async fn kick_off(
    fhir: &Fhir,
    group_id: &str,
    since: Option<&str>,
) -> Result<(String, String), ClientError> {
    let mut first: Option<ClientError> = None;
    for operation in ["$davinci-data-export", "$export"] {
        let query = {
            let mut q = url::form_urlencoded::Serializer::new(String::new());
            q.append_pair("_outputFormat", "application/fhir+ndjson");
            if operation == "$davinci-data-export" {
                q.append_pair("exportType", "hl7.fhir.us.davinci-atr");
            }
            if let Some(s) = since {
                q.append_pair("_since", s);
            }
            q.finish()
        };
        let url = fhir.url(&format!("Group/{group_id}/{operation}?{query}"));
        let answer = fhir
            .send(
                Method::GET,
                &url,
                &[
                    ("Accept", "application/fhir+json".into()),
                    ("Prefer", "respond-async".into()),
                ],
                None,
            )
            .await?;
        if answer.status == StatusCode::ACCEPTED {
            let location = answer
                .headers
                .get("content-location")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
                .ok_or_else(|| {
                    ClientError::Unexpected(format!("{url} answered 202 without Content-Location"))
                })?;
            return Ok((operation.to_string(), fhir.url(&location)));
        }
        let status = answer.status;
        let err = answer.json_ok().await.err().unwrap_or_else(|| {
            ClientError::Unexpected(format!("{url} answered {status}, not 202"))
        });
        let unsupported = matches!(status.as_u16(), 400 | 404 | 405 | 501);
        if operation == "$davinci-data-export" && unsupported {
            first = Some(err);
            continue;
        }
        // When both fail, the ATR operation's reason is the one to show.
        return Err(first.unwrap_or(err));
    }
    Err(first.unwrap_or_else(|| ClientError::Unexpected("no export operation answered".into())))
}

/// Polls until the manifest, honouring `Retry-After` and showing `X-Progress`.
async fn poll(
    fhir: &Fhir,
    status_url: &str,
    options: &PullOptions,
    bars: &Bars,
) -> Result<Value, ClientError> {
    loop {
        let answer = fhir
            .send(
                Method::GET,
                status_url,
                &[("Accept", "application/json".into())],
                None,
            )
            .await?;
        if answer.status == StatusCode::ACCEPTED {
            let progress = answer
                .headers
                .get("x-progress")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("in progress")
                .to_string();
            bars.status.set_message(format!("export: {progress}"));
            bars.status.tick();
            let wait = retry_after(&answer.headers)
                .unwrap_or(Duration::from_secs(1))
                .clamp(Duration::from_millis(100), options.max_poll_interval);
            tokio::time::sleep(wait).await;
            continue;
        }
        let (_, manifest) = answer.json_ok().await?;
        if !manifest["output"].is_array() {
            return Err(ClientError::Unexpected(format!(
                "{status_url}: the manifest has no output list"
            )));
        }
        return Ok(manifest);
    }
}

/// Downloads one file, continuing a partial one; its final size.
async fn download(
    fhir: &Fhir,
    f: &PullFile,
    bar: &ProgressBar,
    gzip: bool,
) -> Result<u64, ClientError> {
    let have = std::fs::metadata(&f.path).map_or(0, |m| m.len());
    let mut headers = vec![("Accept", "application/fhir+ndjson".to_string())];
    if have > 0 {
        // Byte offsets are of the plain file: ask for it unencoded.
        headers.push(("Range", format!("bytes={have}-")));
    }
    if have > 0 || !gzip {
        headers.push(("Accept-Encoding", "identity".into()));
    }
    let answer = fhir.send(Method::GET, &f.url, &headers, None).await?;
    let status = answer.status;
    if status == StatusCode::RANGE_NOT_SATISFIABLE && have > 0 {
        // Everything was already here.
        bar.inc(have);
        return Ok(have);
    }
    if !status.is_success() {
        return Err(answer
            .json_ok()
            .await
            .err()
            .unwrap_or_else(|| ClientError::Unexpected(format!("{}: {status}", f.url))));
    }
    let append = status == StatusCode::PARTIAL_CONTENT;
    if let Some(len) = answer.response.content_length() {
        bar.inc_length(len + if append { have } else { 0 });
    }
    if append {
        bar.inc(have);
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(&f.path)?;
    let mut written = if append { have } else { 0 };
    let mut body = answer.response.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| ClientError::Transport {
            method: "GET".into(),
            url: f.url.clone(),
            reason: crate::http::error_chain(&e),
        })?;
        file.write_all(&chunk)?;
        written += chunk.len() as u64;
        bar.inc(chunk.len() as u64);
    }
    file.sync_all()?;
    Ok(written)
}

struct Snapshot {
    members: usize,
    group_version: Option<String>,
    resources: u64,
}

/// Checks every line and stores the snapshot in one transaction, as it reads: every line JSON, of
/// the manifest's type, no blank lines; exactly one Group, the one pulled; every member's
/// Patient in this pull or an earlier one of this Producer. The other types are read first, so
/// the Group's members (streamed, never held whole) find their names.
fn check_and_store(
    store: &mut ConsumerStore,
    record: &PullRecord,
    files: &[PullFile],
    bar: &ProgressBar,
) -> Result<Snapshot, ClientError> {
    let mut writer = store.snapshot(record)?;
    let mut resources = 0u64;
    let (groups, others): (Vec<&PullFile>, Vec<&PullFile>) =
        files.iter().partition(|f| f.rtype == "Group");
    for f in others {
        let reader = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(&f.path)?);
        for (n, line) in reader.lines().enumerate() {
            let line = line?;
            let at = || format!("{} line {}", file_name(&f.path), n + 1);
            if line.trim().is_empty() {
                return Err(ClientError::InvalidData(format!("{}: a blank line", at())));
            }
            resources += 1;
            bar.inc(1);
            let v = crate::roster::ResourceView::parse(&line)
                .map_err(|e| ClientError::InvalidData(format!("{}: not a resource ({e})", at())))?;
            let rtype = v.resource_type.as_str();
            if rtype != f.rtype {
                return Err(ClientError::InvalidData(format!(
                    "{}: a {rtype:?} in the {} file",
                    at(),
                    f.rtype
                )));
            }
            if let Some(e) = directory_entry(&v) {
                writer.put_entry(&e)?;
            }
        }
    }
    let mut head: Option<crate::roster::GroupHead> = None;
    for f in groups {
        if head.is_some() {
            return Err(ClientError::InvalidData(format!(
                "{}: a second Group",
                file_name(&f.path)
            )));
        }
        let reader = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(&f.path)?);
        let mut failure: Option<ClientError> = None;
        let mut on_member = |m: &crate::roster::Member| -> Result<(), String> {
            let n = writer.member_count() + 1;
            let Some(patient) = m.patient() else {
                return Err(format!("member {n} has no entity reference"));
            };
            let lookup = |r: &str| writer.lookup(r).ok().flatten();
            if lookup(patient).is_none() {
                return Err(format!(
                    "member {n} names {patient}, which is neither in this export nor in an earlier pull"
                ));
            }
            let row = m.row(&lookup);
            if let Err(e) = writer.add_member(&row) {
                let text = e.to_string();
                failure = Some(e);
                return Err(text);
            }
            Ok(())
        };
        let parsed = stream_group(reader, &mut on_member);
        if let Some(e) = failure {
            return Err(e);
        }
        let g =
            parsed.map_err(|e| ClientError::InvalidData(format!("{}: {e}", file_name(&f.path))))?;
        if g.resource_type.as_deref() != Some("Group")
            || g.id.as_deref() != Some(record.group_id.as_str())
        {
            return Err(ClientError::InvalidData(format!(
                "{}: {}/{} where Group/{} was pulled",
                file_name(&f.path),
                g.resource_type.as_deref().unwrap_or("?"),
                g.id.as_deref().unwrap_or("?"),
                record.group_id
            )));
        }
        resources += 1;
        bar.inc(1);
        head = Some(g);
    }
    let head = head.ok_or_else(|| {
        ClientError::InvalidData(format!("the export holds no Group/{}", record.group_id))
    })?;
    let members = writer.member_count() as usize;
    writer.finish(head.version.as_deref(), resources as i64)?;
    Ok(Snapshot {
        members,
        group_version: head.version,
        resources,
    })
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Lines in the manifest's error files (OperationOutcomes the Producer wrote); 0 when they
/// cannot be read (they are advisory).
async fn count_producer_errors(fhir: &Fhir, manifest: &Value) -> usize {
    let mut n = 0;
    for e in manifest["error"].as_array().into_iter().flatten() {
        let Some(url) = e["url"].as_str() else {
            continue;
        };
        if let Ok(answer) = fhir.send(Method::GET, url, &[], None).await
            && answer.status.is_success()
            && let Ok(text) = answer.response.text().await
        {
            n += text.lines().filter(|l| !l.trim().is_empty()).count();
        }
    }
    n
}
