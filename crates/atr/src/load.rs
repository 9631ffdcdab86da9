//! `atr load DIR`: bulk ingestion of NDJSON. Parser threads parse, validate and index lines while
//! the store writes the previous batch, each batch in one transaction.

use std::io::BufRead;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use atr_model::ResourceType;
use atr_server::ingest::{IngestError, prepare, prepare_parsed};
use atr_store::{DeferIndexes, ResourceWrite, Store, WriteMode};
use clap::{Args, ValueEnum};

use crate::StoreArgs;

pub const DEFAULT_BATCH: usize = 5000;

/// Resources loaded before statistics are first refreshed (then at four times as many, and so on).
const STATISTICS_FIRST_AT: u64 = 20_000;

#[derive(Args)]
pub struct LoadArgs {
    /// Directory of `*.ndjson` files (or one file).
    pub path: PathBuf,
    #[command(flatten)]
    pub store: StoreArgs,
    /// Resources per transaction.
    #[arg(long, default_value_t = DEFAULT_BATCH)]
    pub batch: usize,
    /// Set the search indexes aside during the load and build them at its end: `auto` does when
    /// the input is at least 64 MiB and a quarter of what is stored.
    #[arg(long, value_enum, default_value_t = DeferArg::Auto)]
    pub defer_indexes: DeferArg,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum DeferArg {
    Auto,
    Always,
    Never,
}

impl From<DeferArg> for DeferIndexes {
    fn from(d: DeferArg) -> Self {
        match d {
            DeferArg::Auto => DeferIndexes::Auto,
            DeferArg::Always => DeferIndexes::Always,
            DeferArg::Never => DeferIndexes::Never,
        }
    }
}

pub struct LoadReport {
    pub resources: u64,
    pub elapsed: Duration,
}

pub async fn run(args: LoadArgs) -> Result<()> {
    let store = crate::serve::open_store(&args.store).await?;
    let report = load_dir(
        &store,
        &args.path,
        args.batch.max(1),
        args.defer_indexes.into(),
    )
    .await?;
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
    // Not `..200`: a character may straddle byte 200, and slicing there would panic.
    let head = &line[..line.floor_char_boundary(200)];
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

/// Lines per chunk handed to a parser thread (or fewer, when they pass `CHUNK_BYTES`): large
/// enough that the hand-offs cost nothing next to the parsing, small enough to keep every parser
/// busy on the smaller files.
const CHUNK_LINES: usize = 1000;
const CHUNK_BYTES: usize = 4 << 20;

/// Non-empty lines of one file, as read: the text and, per line, its number and its trimmed
/// extent in `text`.
struct Chunk {
    file: usize,
    text: String,
    lines: Vec<(usize, Range<usize>)>,
}

/// What the reader hands a parser: lines, or why reading a file stopped (passed on in sequence,
/// so that it is reported only if no earlier line failed).
enum Work {
    Lines(Chunk),
    Failed(usize, anyhow::Error),
    /// Every line before this was a resource other than a Group; Groups follow.
    GroupsNext,
}

/// What a parser hands the collector: a parsed chunk (its file, and its writes or the first
/// failure in it), or the reader's word that Groups follow.
enum Parsed {
    Chunk(usize, Result<Vec<ResourceWrite>>),
    GroupsNext,
}

/// What the collector hands the store.
enum ToStore {
    Batch(Vec<ResourceWrite>),
    /// Every resource other than a Group is in the batches sent before.
    GroupsNext,
}

/// How many threads parse: parsing, validating and indexing is most of a load's work, and the
/// store writes on one thread of its own.
fn parser_count() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 8))
}

/// Loads every NDJSON file under `path`. Stops at the first bad line; batches already committed
/// stay (each is whole), and reloading the same files is safe: existing ids get a new version.
///
/// One thread reads raw lines in chunks and deals them round-robin to the parser threads; a
/// collector takes the parsed chunks back in the same round-robin order, so files, lines and
/// errors keep their order, and cuts them into batches for the store.
///
/// A large load may set the search indexes aside ([`Store::begin_bulk_load`]); they are built at
/// the end, after a failure too.
pub async fn load_dir(
    store: &dyn Store,
    path: &Path,
    batch: usize,
    defer: DeferIndexes,
) -> Result<LoadReport> {
    let files: Arc<[PathBuf]> = files_in(path)?.into();
    let started = Instant::now();
    let input_bytes = files
        .iter()
        .map(|f| std::fs::metadata(f).map_or(0, |m| m.len()))
        .sum();
    let deferred = store.begin_bulk_load(input_bytes, defer).await?;
    let loaded = load_files(store, files, batch).await;
    let finishing = Instant::now();
    store.finish_bulk_load().await?;
    if deferred {
        tracing::info!(elapsed = ?finishing.elapsed(), "built the deferred indexes");
    }
    let resources = loaded?;
    store.refresh_statistics().await?;
    Ok(LoadReport {
        resources,
        elapsed: started.elapsed(),
    })
}

async fn load_files(store: &dyn Store, files: Arc<[PathBuf]>, batch: usize) -> Result<u64> {
    let stamp_time = atr_model::instant::now_micros();
    let n = parser_count();
    let mut threads = Vec::with_capacity(n + 2);
    let mut to_parsers = Vec::with_capacity(n);
    let mut from_parsers = Vec::with_capacity(n);
    for i in 0..n {
        let (work_tx, work_rx) = std::sync::mpsc::sync_channel::<Work>(2);
        let (done_tx, done_rx) = std::sync::mpsc::sync_channel::<Parsed>(2);
        let files = files.clone();
        threads.push(
            std::thread::Builder::new()
                .name(format!("atr-parse-{i}"))
                .spawn(move || parse_chunks(&files, stamp_time, work_rx, done_tx))?,
        );
        to_parsers.push(work_tx);
        from_parsers.push(done_rx);
    }
    let reader_files = files.clone();
    threads.push(
        std::thread::Builder::new()
            .name("atr-read".into())
            .spawn(move || read_chunks(&reader_files, to_parsers))?,
    );
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<ToStore>>(2);
    threads.push(
        std::thread::Builder::new()
            .name("atr-collect".into())
            .spawn(move || collect(from_parsers, batch, tx))?,
    );
    let mut resources = 0u64;
    // A planner that still thinks the tables empty picks scans for the loader's own lookups
    // (PostgreSQL chose a whole-type index scan per batch: quadratic), so statistics are
    // refreshed as the tables grow, not only at the end.
    let mut refresh_at = STATISTICS_FIRST_AT;
    while let Some(message) = rx.recv().await {
        let b = match message? {
            ToStore::Batch(b) => b,
            ToStore::GroupsNext => {
                let building = Instant::now();
                store.bulk_load_groups_next().await?;
                tracing::debug!(elapsed = ?building.elapsed(), "the resources before the Groups are indexed");
                continue;
            }
        };
        resources += store.load_batch(b).await?;
        if resources >= refresh_at {
            store.refresh_statistics().await?;
            refresh_at = resources.saturating_mul(4);
        }
    }
    // A parser that died would look like the end of the input to the collector: check.
    for t in threads {
        t.join()
            .map_err(|_| anyhow::anyhow!("an NDJSON loader thread panicked"))?;
    }
    Ok(resources)
}

/// The reader thread: deals chunks of lines to the parsers in turn. Returns early when they are
/// gone (the load stopped).
fn read_chunks(files: &[PathBuf], to_parsers: Vec<SyncSender<Work>>) {
    let mut seq = 0usize;
    let mut deal = |w: Work| {
        let ok = to_parsers[seq % to_parsers.len()].send(w).is_ok();
        seq += 1;
        ok
    };
    for (index, file) in files.iter().enumerate() {
        // `files_in` puts the Group file last: the store may start on the indexes of everything
        // else while the parsers take the Groups (the largest of them alone for seconds).
        if index > 0 && file.file_stem().is_some_and(|s| s == "Group") && !deal(Work::GroupsNext) {
            return;
        }
        let f = match std::fs::File::open(file) {
            Ok(f) => f,
            Err(e) => {
                deal(Work::Failed(
                    index,
                    anyhow::anyhow!("opening {}: {e}", file.display()),
                ));
                return;
            }
        };
        let mut reader = std::io::BufReader::with_capacity(1 << 20, f);
        let new_chunk = || Chunk {
            file: index,
            text: String::with_capacity(CHUNK_BYTES / 2),
            lines: Vec::with_capacity(CHUNK_LINES),
        };
        let mut chunk = new_chunk();
        let mut line_no = 0;
        loop {
            let start = chunk.text.len();
            match reader.read_line(&mut chunk.text) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => {
                    if !chunk.lines.is_empty() && !deal(Work::Lines(chunk)) {
                        return;
                    }
                    deal(Work::Failed(
                        index,
                        anyhow::anyhow!("{}:{}: {e}", file.display(), line_no + 1),
                    ));
                    return;
                }
            }
            line_no += 1;
            let line = &chunk.text[start..];
            let trimmed = line.trim_start();
            let from = start + (line.len() - trimmed.len());
            let to = from + trimmed.trim_end().len();
            if from == to {
                chunk.text.truncate(start);
                continue;
            }
            chunk.lines.push((line_no, from..to));
            if (chunk.lines.len() >= CHUNK_LINES || chunk.text.len() >= CHUNK_BYTES)
                && !deal(Work::Lines(std::mem::replace(&mut chunk, new_chunk())))
            {
                return;
            }
        }
        if !chunk.lines.is_empty() && !deal(Work::Lines(chunk)) {
            return;
        }
    }
}

/// A parser thread: parses, validates, indexes and pre-stamps each chunk it is dealt.
fn parse_chunks(
    files: &[PathBuf],
    stamp_time: i64,
    work: Receiver<Work>,
    done: SyncSender<Parsed>,
) {
    for w in work {
        let parsed = match w {
            Work::Lines(chunk) => Parsed::Chunk(chunk.file, parse_chunk(files, stamp_time, &chunk)),
            Work::Failed(file, e) => Parsed::Chunk(file, Err(e)),
            Work::GroupsNext => Parsed::GroupsNext,
        };
        if done.send(parsed).is_err() {
            return;
        }
    }
}

fn parse_chunk(files: &[PathBuf], stamp_time: i64, chunk: &Chunk) -> Result<Vec<ResourceWrite>> {
    let file = &files[chunk.file];
    let mut writes = Vec::with_capacity(chunk.lines.len());
    for (line_no, range) in &chunk.lines {
        let mut w = parse_line(file, *line_no, &chunk.text[range.clone()])?;
        // Most loads create: stamp version 1 here, in parallel, and let the store re-stamp the
        // few that already exist.
        w.prestamp(1, stamp_time);
        writes.push(w);
    }
    Ok(writes)
}

/// The collector thread: takes parsed chunks in the order they were dealt and sends batches of up
/// to `batch` writes, never mixing files, to the store. The first failure, in file order, ends the
/// load.
fn collect(
    from_parsers: Vec<Receiver<Parsed>>,
    batch: usize,
    out: tokio::sync::mpsc::Sender<Result<ToStore>>,
) {
    let send = |b: Result<Vec<ResourceWrite>>| out.blocking_send(b.map(ToStore::Batch)).is_ok();
    let mut current: Vec<ResourceWrite> = Vec::with_capacity(batch);
    let mut current_file = None;
    // Parsers close their output once the reader is done and they have passed everything on; the
    // next chunk's parser closing means there is no next chunk.
    for seq in 0.. {
        let Ok(received) = from_parsers[seq % from_parsers.len()].recv() else {
            break;
        };
        let (file, parsed) = match received {
            Parsed::Chunk(file, parsed) => (file, parsed),
            Parsed::GroupsNext => {
                if !current.is_empty()
                    && !send(Ok(std::mem::replace(
                        &mut current,
                        Vec::with_capacity(batch),
                    )))
                {
                    return;
                }
                if out.blocking_send(Ok(ToStore::GroupsNext)).is_err() {
                    return;
                }
                continue;
            }
        };
        // A file's last batch goes when the next file starts, even if that one fails at once.
        if current_file.is_some_and(|f| f != file)
            && !current.is_empty()
            && !send(Ok(std::mem::replace(
                &mut current,
                Vec::with_capacity(batch),
            )))
        {
            return;
        }
        current_file = Some(file);
        let writes = match parsed {
            Ok(writes) => writes,
            Err(e) => {
                send(Err(e));
                return;
            }
        };
        for w in writes {
            // A Group's rows weigh like many resources: send it without waiting for more.
            let heavy = w.members.as_ref().is_some_and(|m| m.len() > batch);
            current.push(w);
            if (current.len() >= batch || heavy)
                && !send(Ok(std::mem::replace(
                    &mut current,
                    Vec::with_capacity(batch),
                )))
            {
                return;
            }
        }
    }
    if !current.is_empty() {
        send(Ok(current));
    }
}
