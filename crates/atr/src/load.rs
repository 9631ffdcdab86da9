//! `atr load DIR`: bulk ingestion of NDJSON. A reader thread parses, validates and indexes lines
//! while the store writes the previous batch, each batch in one transaction.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use atr_model::ResourceType;
use atr_server::ingest::{IngestError, prepare, prepare_parsed};
use atr_store::{ResourceWrite, Store, WriteMode};
use clap::Args;

use crate::StoreArgs;

pub const DEFAULT_BATCH: usize = 5000;

#[derive(Args)]
pub struct LoadArgs {
    /// Directory of `*.ndjson` files (or one file).
    pub path: PathBuf,
    #[command(flatten)]
    pub store: StoreArgs,
    /// Resources per transaction.
    #[arg(long, default_value_t = DEFAULT_BATCH)]
    pub batch: usize,
}

pub struct LoadReport {
    pub resources: u64,
    pub elapsed: Duration,
}

pub async fn run(args: LoadArgs) -> Result<()> {
    let store = crate::serve::open_store(&args.store).await?;
    let report = load_dir(&store, &args.path, args.batch.max(1)).await?;
    println!(
        "loaded {} resources in {:.2?} ({:.0} resources/s) into {}",
        report.resources,
        report.elapsed,
        report.resources as f64 / report.elapsed.as_secs_f64(),
        store.dialect()
    );
    Ok(())
}

/// The NDJSON files to load: Groups last, so the resources they point to are there first.
fn files_in(path: &Path) -> Result<Vec<PathBuf>> {
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .with_context(|| format!("reading {}", path.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "ndjson"))
        .collect();
    files.sort_by_key(|p| (p.file_stem().is_some_and(|s| s == "Group"), p.clone()));
    if files.is_empty() {
        bail!("no .ndjson files in {}", path.display());
    }
    Ok(files)
}

/// Reads one NDJSON line into a write, naming file and line in errors. Each line is parsed once;
/// a Group line goes to the roster splitter instead, which never builds its members as values.
fn parse_line(file: &Path, line_no: usize, line: &str) -> Result<ResourceWrite> {
    let at = || format!("{}:{line_no}", file.display());
    let head = &line[..line.len().min(200)];
    let looks_like_group =
        head.contains("\"resourceType\":\"Group\"") || head.contains("\"resourceType\": \"Group\"");
    let prepared = if looks_like_group {
        let id = atr_server::ingest::body_id(line)
            .with_context(|| format!("{}: the resource has no id", at()))?;
        check_id(&id, &at)?;
        (
            ResourceType::Group,
            id.clone(),
            prepare(ResourceType::Group, &id, line, WriteMode::Upsert),
        )
    } else {
        let value: serde_json::Value =
            serde_json::from_str(line).with_context(|| format!("{}: not a JSON object", at()))?;
        let rtype: ResourceType = value
            .get("resourceType")
            .and_then(|v| v.as_str())
            .unwrap_or("(none)")
            .parse()
            .with_context(|| format!("{}: unsupported resourceType", at()))?;
        let id = value
            .get("id")
            .and_then(|v| v.as_str())
            .with_context(|| format!("{}: the resource has no id", at()))?
            .to_string();
        check_id(&id, &at)?;
        let prepared = prepare_parsed(rtype, &id, value, WriteMode::Upsert);
        (rtype, id, prepared)
    };
    let (rtype, id, prepared) = prepared;
    prepared.map_err(|e| match e {
        IngestError::Invalid(issues) => {
            let list: Vec<String> = issues
                .iter()
                .take(5)
                .map(|i| {
                    format!(
                        "{} ({})",
                        i.diagnostics,
                        i.expression.as_deref().unwrap_or("-")
                    )
                })
                .collect();
            anyhow::anyhow!("{}: {rtype}/{id} is invalid: {}", at(), list.join("; "))
        }
        other => anyhow::anyhow!("{}: {other}", at()),
    })
}

fn check_id(id: &str, at: &dyn Fn() -> String) -> Result<()> {
    if !atr_model::ident::is_valid_id(id) {
        bail!("{}: {id:?} is not a valid FHIR id", at());
    }
    Ok(())
}

/// Loads every NDJSON file under `path`. Stops at the first bad line; batches already committed
/// stay (each is whole), and reloading the same files is safe: existing ids get a new version.
pub async fn load_dir(store: &dyn Store, path: &Path, batch: usize) -> Result<LoadReport> {
    let files = files_in(path)?;
    let started = Instant::now();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Vec<ResourceWrite>>>(2);
    let reader = std::thread::spawn(move || {
        let stamp_time = atr_model::instant::now_micros();
        let send = |b: Result<Vec<ResourceWrite>>| tx.blocking_send(b).is_ok();
        for file in files {
            let f = match std::fs::File::open(&file) {
                Ok(f) => f,
                Err(e) => {
                    send(Err(anyhow::anyhow!("opening {}: {e}", file.display())));
                    return;
                }
            };
            let mut reader = std::io::BufReader::with_capacity(1 << 20, f);
            let mut current = Vec::with_capacity(batch);
            let mut line = String::new();
            let mut line_no = 0;
            loop {
                line.clear();
                match reader.read_line(&mut line) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) => {
                        send(Err(anyhow::anyhow!(
                            "{}:{}: {e}",
                            file.display(),
                            line_no + 1
                        )));
                        return;
                    }
                }
                line_no += 1;
                let text = line.trim();
                if text.is_empty() {
                    continue;
                }
                match parse_line(&file, line_no, text) {
                    Ok(mut w) => {
                        // Most loads create: stamp version 1 here, on this thread, and let the
                        // store re-stamp the few that already exist.
                        w.prestamp(1, stamp_time);
                        // A Group's rows weigh like many resources: send it on its own.
                        let heavy = w.members.as_ref().is_some_and(|m| m.len() > batch);
                        current.push(w);
                        let full = current.len() >= batch || heavy;
                        if full && !send(Ok(std::mem::take(&mut current))) {
                            return;
                        }
                    }
                    Err(e) => {
                        send(Err(e));
                        return;
                    }
                }
            }
            if !current.is_empty() && !send(Ok(current)) {
                return;
            }
        }
    });
    let mut resources = 0u64;
    while let Some(b) = rx.recv().await {
        resources += store.load_batch(b?).await?;
    }
    reader
        .join()
        .map_err(|_| anyhow::anyhow!("the NDJSON reader thread panicked"))?;
    Ok(LoadReport {
        resources,
        elapsed: started.elapsed(),
    })
}
