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
use serde_json::value::RawValue;

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

/// Reads one NDJSON line into a write stamped as version 1 at `stamped` (an instant and its
/// text), naming file and line in errors. Each line is parsed once; a Group line goes to the
/// roster splitter instead, which never builds its members as values.
fn parse_line(
    file: &Path,
    line_no: usize,
    line: &str,
    stamped: (i64, &str),
) -> Result<ResourceWrite> {
    let at = || format!("{}:{line_no}", file.display());
    // Not `..200`: a character may straddle byte 200, and slicing there would panic.
    let head = &line[..line.floor_char_boundary(200)];
    let looks_like_group =
        head.contains("\"resourceType\":\"Group\"") || head.contains("\"resourceType\": \"Group\"");
    let prepared = if looks_like_group {
        let id = atr_server::ingest::body_id(line)
            .with_context(at)?
            .with_context(|| format!("{}: the resource has no id", at()))?;
        check_id(&id, &at)?;
        (
            ResourceType::Group,
            id.clone(),
            prepare(ResourceType::Group, &id, line, WriteMode::Upsert),
            None,
        )
    } else {
        let members: TopLevel =
            serde_json::from_str(line).with_context(|| format!("{}: not a JSON object", at()))?;
        let value = members
            .tree()
            .with_context(|| format!("{}: not a JSON object", at()))?;
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
        // Names given twice leave the tree with the last value only: the body is then written
        // from the tree, as the REST API would.
        let distinct = value
            .as_object()
            .is_some_and(|o| o.len() == members.0.len());
        let prepared = prepare_parsed(rtype, &id, value, WriteMode::Upsert);
        (rtype, id, prepared, distinct.then_some(members))
    };
    let (rtype, id, prepared, members) = prepared;
    let mut write = prepared.map_err(|e| match e {
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
    })?;
    // Most loads create: stamp version 1 here, in parallel, and let the store re-stamp the few
    // that already exist.
    let (stamp_time, stamp_text) = stamped;
    match members {
        Some(members) => {
            let body = atr_model::meta::stamp_text(&members.borrowed(), &id, 1, stamp_text)
                .with_context(|| format!("{}: not a JSON object", at()))?;
            write.prestamp_with(1, stamp_time, body);
        }
        None => write.prestamp(1, stamp_time),
    }
    Ok(write)
}

/// A JSON object's members as written: names (decoded) and their values' text, in order.
struct TopLevel<'a>(Vec<(std::borrow::Cow<'a, str>, &'a RawValue)>);

impl TopLevel<'_> {
    /// The object as a tree, parsed member by member.
    fn tree(&self) -> serde_json::Result<serde_json::Value> {
        let mut map = serde_json::Map::with_capacity(self.0.len());
        for (name, value) in &self.0 {
            map.insert(name.to_string(), serde_json::from_str(value.get())?);
        }
        Ok(serde_json::Value::Object(map))
    }

    fn borrowed(&self) -> Vec<(&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_ref(), v.get())).collect()
    }
}

impl<'de> serde::Deserialize<'de> for TopLevel<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Members;
        impl<'de> serde::de::Visitor<'de> for Members {
            type Value = TopLevel<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                let mut members = Vec::with_capacity(16);
                while let Some(name) = map.next_key::<Name<'de>>()? {
                    members.push((name.0, map.next_value::<&'de RawValue>()?));
                }
                Ok(TopLevel(members))
            }
        }
        d.deserialize_map(Members)
    }
}

/// A member name, borrowed from the line unless it had escapes.
struct Name<'a>(std::borrow::Cow<'a, str>);

impl<'de> serde::Deserialize<'de> for Name<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Text;
        impl<'de> serde::de::Visitor<'de> for Text {
            type Value = Name<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a member name")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Name(v.into()))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Name(v.to_owned().into()))
            }
        }
        d.deserialize_str(Text)
    }
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

/// A line longer than this makes the reader set aside room for the rest of its file at once: a
/// million-member Group is one line of ~600 MB, and growing a buffer to that by doubling touches
/// twice the memory, each new page faulted and zeroed by the kernel (seconds on this machine).
const LONG_LINE: usize = 64 << 20;

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
        let mut unread = f.metadata().map_or(0, |m| m.len());
        let mut reader = std::io::BufReader::with_capacity(1 << 20, f);
        let mut pending = PendingChunk::new();
        let mut line_no = 0;
        loop {
            let start = pending.text.len();
            let mut made_room = false;
            // One line, its newline included, appended to the chunk's bytes.
            let read = loop {
                let buf = match reader.fill_buf() {
                    Ok(buf) => buf,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => break Err(e),
                };
                if buf.is_empty() {
                    break Ok(());
                }
                let (taken, ends) = match memchr::memchr(b'\n', buf) {
                    Some(i) => (i + 1, true),
                    None => (buf.len(), false),
                };
                if !made_room && pending.text.len() - start + taken > LONG_LINE {
                    pending
                        .text
                        .reserve(usize::try_from(unread).unwrap_or(0).max(taken));
                    made_room = true;
                }
                pending.text.extend_from_slice(&buf[..taken]);
                reader.consume(taken);
                unread = unread.saturating_sub(taken as u64);
                if ends {
                    break Ok(());
                }
            };
            if let Err(e) = read {
                pending.text.truncate(start);
                if deal_pending(pending, index, file, &mut deal) {
                    deal(Work::Failed(
                        index,
                        anyhow::anyhow!("{}:{}: {e}", file.display(), line_no + 1),
                    ));
                }
                return;
            }
            if pending.text.len() == start {
                break;
            }
            line_no += 1;
            let line = &pending.text[start..];
            let from = start + line.len() - line.trim_ascii_start().len();
            let to = from + pending.text[from..].trim_ascii_end().len();
            if from == to {
                pending.text.truncate(start);
                continue;
            }
            pending.lines.push((line_no, from..to));
            if (pending.lines.len() >= CHUNK_LINES || pending.text.len() >= CHUNK_BYTES)
                && !deal_pending(
                    std::mem::replace(&mut pending, PendingChunk::new()),
                    index,
                    file,
                    &mut deal,
                )
            {
                return;
            }
        }
        if !deal_pending(pending, index, file, &mut deal) {
            return;
        }
    }
}

/// Deals the lines of `pending` (file number `file` at `path`) and, if one of them is not UTF-8,
/// the failure naming it. False when reading has to stop: a line was not text, or the parsers
/// are gone.
fn deal_pending(
    pending: PendingChunk,
    file: usize,
    path: &Path,
    deal: &mut impl FnMut(Work) -> bool,
) -> bool {
    let (chunk, bad) = pending.finish(file, path);
    if chunk.is_some_and(|c| !deal(Work::Lines(c))) {
        return false;
    }
    match bad {
        Some(bad) => {
            deal(bad);
            false
        }
        None => true,
    }
}

/// Lines read as bytes, not yet checked to be text.
struct PendingChunk {
    text: Vec<u8>,
    lines: Vec<(usize, Range<usize>)>,
}

impl PendingChunk {
    fn new() -> Self {
        PendingChunk {
            text: Vec::with_capacity(CHUNK_BYTES / 2),
            lines: Vec::with_capacity(CHUNK_LINES),
        }
    }

    /// The chunk of file number `file` as text (checked once, whole), or, if a line is not UTF-8,
    /// the lines before it and the failure naming that line.
    fn finish(mut self, file: usize, path: &Path) -> (Option<Chunk>, Option<Work>) {
        let (text, bad) = match String::from_utf8(self.text) {
            Ok(text) => (text, None),
            Err(e) => {
                let at = e.utf8_error().valid_up_to();
                let first_bad = self.lines.partition_point(|(_, r)| r.end <= at);
                let line_no = self.lines.get(first_bad).map_or(0, |(n, _)| *n);
                let cut = self.lines.get(first_bad).map_or(at, |(_, r)| r.start);
                self.lines.truncate(first_bad);
                let mut bytes = e.into_bytes();
                bytes.truncate(cut);
                let bad = Work::Failed(
                    file,
                    anyhow::anyhow!("{}:{line_no}: the line is not UTF-8 text", path.display()),
                );
                // Everything before `at` is text, and `cut` is not past it.
                (String::from_utf8(bytes).unwrap_or_default(), Some(bad))
            }
        };
        if self.lines.is_empty() {
            return (None, bad);
        }
        (
            Some(Chunk {
                file,
                text,
                lines: self.lines,
            }),
            bad,
        )
    }
}

/// A parser thread: parses, validates, indexes and pre-stamps each chunk it is dealt.
fn parse_chunks(
    files: &[PathBuf],
    stamp_time: i64,
    work: Receiver<Work>,
    done: SyncSender<Parsed>,
) {
    // The store's writer is the load's bottleneck and these threads run ahead of it: let it have
    // the cores first.
    crate::background_priority::lower_this_thread();
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
    let stamp_text = atr_model::instant::fhir_instant(stamp_time);
    let mut writes = Vec::with_capacity(chunk.lines.len());
    for (line_no, range) in &chunk.lines {
        writes.push(parse_line(
            file,
            *line_no,
            &chunk.text[range.clone()],
            (stamp_time, &stamp_text),
        )?);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Everything the reader deals for `files`, in order.
    fn read_all(files: Vec<PathBuf>) -> Vec<Work> {
        let (tx, rx) = std::sync::mpsc::sync_channel(2);
        let reader = std::thread::spawn(move || read_chunks(&files, vec![tx]));
        let dealt: Vec<Work> = rx.into_iter().collect();
        reader.join().expect("reader");
        dealt
    }

    fn lines_of(dealt: &[Work]) -> Vec<(usize, String)> {
        dealt
            .iter()
            .filter_map(|w| match w {
                Work::Lines(c) => Some(c),
                _ => None,
            })
            .flat_map(|c| {
                c.lines
                    .iter()
                    .map(|(n, r)| (*n, c.text[r.clone()].to_string()))
            })
            .collect()
    }

    #[test]
    fn a_line_longer_than_the_room_set_aside_is_read_whole_between_its_neighbours() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("Group.ndjson");
        let long = "x".repeat(LONG_LINE + 3 * (1 << 20) + 7);
        std::fs::write(&path, format!("a\n{long}\r\n  \nc")).expect("write");
        let dealt = read_all(vec![path]);
        assert!(dealt.iter().all(|w| matches!(w, Work::Lines(_))));
        let lines = lines_of(&dealt);
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0], (1, "a".to_string()));
        assert_eq!(lines[1].0, 2);
        assert!(lines[1].1 == long, "the long line comes back whole");
        assert_eq!(lines[2], (4, "c".to_string()));
    }

    #[test]
    fn a_line_that_is_not_text_fails_naming_it_after_the_lines_before_it() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("Patient.ndjson");
        let mut bytes = b"{\"a\":1}\n\n{\"b\":2}\n{\"c\":\"".to_vec();
        bytes.extend_from_slice(&[0xff, 0xfe]);
        bytes.extend_from_slice(b"\"}\n{\"d\":4}\n");
        std::fs::write(&path, bytes).expect("write");
        let dealt = read_all(vec![path]);
        assert_eq!(
            lines_of(&dealt),
            vec![(1, "{\"a\":1}".to_string()), (3, "{\"b\":2}".to_string())]
        );
        let Some(Work::Failed(0, e)) = dealt.last() else {
            panic!("the read ends with the failure");
        };
        let message = e.to_string();
        assert!(
            message.contains("Patient.ndjson:4:") && message.contains("not UTF-8"),
            "{message}"
        );
    }
}

#[cfg(test)]
mod stamping_tests {
    use super::*;

    fn example(name: &str) -> String {
        atr_testkit::ig::example(name).to_string()
    }

    fn body(w: &ResourceWrite) -> serde_json::Value {
        let p = w.prestamped.as_ref().expect("stamped as version 1");
        assert_eq!((p.version, p.last_updated), (1, 5_000_000));
        serde_json::from_slice(&p.body).expect("the body is JSON")
    }

    #[test]
    fn a_line_is_stored_as_read_with_id_and_meta_stamped() {
        let line = example("practitioner-1.json");
        let read: serde_json::Value = serde_json::from_str(&line).expect("json");
        let instant = atr_model::instant::fhir_instant(5_000_000);
        let w = parse_line(Path::new("P.ndjson"), 1, &line, (5_000_000, &instant)).expect("valid");
        let stored = body(&w);
        let text = String::from_utf8(w.prestamped.expect("stamped").body).expect("text");
        assert!(
            text.starts_with(r#"{"resourceType":"Practitioner","id":"#),
            "{text}"
        );
        assert_eq!(stored["meta"]["versionId"], "1");
        assert_eq!(stored["meta"]["lastUpdated"], instant.as_str());
        let mut expected = read.clone();
        atr_model::meta::stamp(
            &mut expected,
            read["id"].as_str().expect("id"),
            1,
            5_000_000,
        );
        assert_eq!(stored, expected);
    }

    #[test]
    fn a_line_naming_a_member_twice_is_stored_with_the_value_it_was_validated_with() {
        let line = example("practitioner-1.json");
        let twice = format!("{},\"gender\":\"female\"}}", &line[..line.len() - 1]);
        let twice = twice.replacen('{', "{\"gender\":\"male\",", 1);
        let instant = atr_model::instant::fhir_instant(5_000_000);
        let w = parse_line(Path::new("P.ndjson"), 1, &twice, (5_000_000, &instant)).expect("valid");
        let text = String::from_utf8(w.prestamped.clone().expect("stamped").body).expect("text");
        assert_eq!(text.matches("\"gender\"").count(), 1, "{text}");
        assert_eq!(body(&w)["gender"], "female");
    }
}
