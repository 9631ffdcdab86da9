//! `atr bench`: end-to-end figures on a synthetic data set, per dialect. The loader and the server
//! run as child processes, so each one's peak memory is its own.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use atr_auth::SigningAlg;
use clap::Args;
use futures::StreamExt;

#[derive(Args)]
pub struct BenchArgs {
    /// Members in the synthetic set (all on the first list, which is the Group read back).
    #[arg(long, default_value_t = 1_000_000)]
    members: u64,
    /// Attribution lists (Groups) for discovery.
    #[arg(long, default_value_t = 10_000)]
    lists: u64,
    /// Discovery requests to time.
    #[arg(long, default_value_t = 2_000)]
    searches: usize,
    /// Token requests per signing algorithm.
    #[arg(long, default_value_t = 2000)]
    tokens: usize,
    /// PostgreSQL to measure too (a fresh schema is created).
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
    postgres: String,
    #[arg(long)]
    skip_postgres: bool,
    #[arg(long)]
    skip_sqlite: bool,
    /// Working directory (default: a new temporary directory, removed afterwards).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Keep the synthetic set and the loaded databases in `--work-dir` and use them again on the
    /// next run instead of synthesising and loading anew (the PostgreSQL schema `bench_reuse` is
    /// kept).
    #[arg(long, requires = "work_dir")]
    reuse: bool,
    /// Only these measurements, comma-separated: stream, export, discovery, discovery-load,
    /// member-ops, tokens, concurrent-exports, export-recovery (default: all).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Concurrent connections of the discovery load.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// How long the discovery load runs, in seconds (it stops then, however far it got).
    #[arg(long, default_value_t = 10)]
    load_secs: u64,
    /// Exports kicked off at once by `concurrent-exports`, each of its own list.
    #[arg(long, default_value_t = 20)]
    concurrent_exports: usize,
    /// Members of each list `concurrent-exports` exports.
    #[arg(long, default_value_t = 100_000)]
    concurrent_list_size: usize,
}

impl BenchArgs {
    fn runs(&self, phase: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|p| p == phase)
    }
}

/// Lines in the NDJSON files of a synthetic set kept from an earlier run.
fn count_resources(data: &Path) -> Result<u64> {
    let mut n = 0u64;
    for entry in std::fs::read_dir(data)? {
        let path = entry?.path();
        if path.extension().is_some_and(|x| x == "ndjson") {
            let mut file = std::fs::File::open(&path)?;
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let read = std::io::Read::read(&mut file, &mut buf)?;
                if read == 0 {
                    break;
                }
                n += buf[..read].iter().filter(|&&b| b == b'\n').count() as u64;
            }
        }
    }
    Ok(n)
}

struct ChildGuard(Child);
impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn peak_rss_mb(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Resets a process's peak-RSS mark (`VmHWM`), so the next reading is that of what follows.
fn reset_peak_rss(pid: u32) {
    let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
}

fn store_flags(dialect: &str, dir: &Path, pg: &str, schema: &str) -> Vec<String> {
    match dialect {
        "sqlite" => vec![
            "--data-dir".into(),
            dir.join("sqlite").display().to_string(),
        ],
        _ => vec![
            "--database".into(),
            pg.into(),
            "--schema".into(),
            schema.into(),
        ],
    }
}

pub async fn run(args: BenchArgs) -> Result<()> {
    let tmp;
    let dir = match &args.work_dir {
        Some(d) => d.clone(),
        None => {
            tmp = tempfile_dir()?;
            tmp.clone()
        }
    };
    let exe = std::env::current_exe()?;
    let data = dir.join("ndjson");
    let started = Instant::now();
    let (resources, largest) = if args.reuse && data.is_dir() {
        let n = count_resources(&data)?;
        println!("synthetic set: {n} resources, kept from an earlier run");
        (n, "list-1's".to_string())
    } else {
        let config = crate::synth_config(args.members, args.lists, 7, 1.0);
        let summary = atr_synth::generate(&config, &data)?;
        let resources: u64 = summary.counts.iter().map(|(_, n)| n).sum();
        println!(
            "synthetic set: {resources} resources, {} MB, largest list {} entries ({:.1?})",
            summary.bytes / 1_000_000,
            summary.largest_list_members,
            started.elapsed()
        );
        (resources, summary.largest_list_members.to_string())
    };
    let schema = if args.reuse {
        "bench_reuse".to_string()
    } else {
        format!("bench_{}", std::process::id())
    };
    let mut dialects = Vec::new();
    if !args.skip_sqlite {
        dialects.push("sqlite");
    }
    if !args.skip_postgres {
        dialects.push("postgres");
    }
    for dialect in dialects {
        let flags = store_flags(dialect, &dir, &args.postgres, &schema);
        // Load, unless an earlier run's load is kept (the marker is written once it completed).
        let loaded = dir.join(format!("loaded-{dialect}"));
        if args.reuse && loaded.exists() {
            println!("[{dialect}] load: kept from an earlier run");
        } else {
            let t = Instant::now();
            let out = Command::new(&exe)
                .arg("load")
                .arg(&data)
                .args(&flags)
                .output()?;
            if !out.status.success() {
                bail!(
                    "{dialect} load failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            let load_s = t.elapsed().as_secs_f64();
            println!(
                "[{dialect}] load: {resources} resources in {load_s:.1} s = {:.0} resources/s",
                resources as f64 / load_s
            );
            if args.reuse {
                std::fs::write(&loaded, &schema)?;
            }
        }
        prepare_member_ops(&exe, &flags, &dir)?;
        if args.runs("concurrent-exports") {
            crate::bench_exports::prepare_lists(
                &exe,
                &flags,
                &dir,
                &data,
                dialect,
                args.concurrent_exports,
                args.concurrent_list_size,
            )?;
        }
        let mut bench_clients = Vec::new();
        for alg in [SigningAlg::Rs384, SigningAlg::Es384] {
            bench_clients.push(register_client(&exe, &flags, &dir, alg)?);
        }

        // Serve.
        let server_args = [
            // The bench's one client kicks off all the concurrent exports.
            "--export-max-jobs-per-client".to_string(),
            args.concurrent_exports.max(4).to_string(),
            "--export-max-jobs".to_string(),
            args.concurrent_exports.max(32).to_string(),
        ];
        let (child, base) = spawn_server(&exe, &flags, &server_args)
            .with_context(|| format!("{dialect} server"))?;
        let pid = child.0.id();
        let token_url = atr_server::token_url_for(&base);
        let token = fetch_token(&reqwest::Client::new(), &token_url, &bench_clients[1]).await?;
        let mut auth_headers = reqwest::header::HeaderMap::new();
        auth_headers.insert(
            reqwest::header::AUTHORIZATION,
            format!("Bearer {token}").parse()?,
        );
        let client = reqwest::Client::builder()
            .default_headers(auth_headers)
            .build()?;
        let idle_rss = peak_rss_mb(pid).unwrap_or(0.0);

        // Stream the big Group.
        if args.runs("stream") {
            let t = Instant::now();
            let resp = client
                .get(format!("{base}/Group/list-1"))
                .send()
                .await?
                .error_for_status()?;
            let mut bytes = 0u64;
            let mut body = resp.bytes_stream();
            while let Some(chunk) = body.next().await {
                bytes += chunk?.len() as u64;
            }
            let read_s = t.elapsed().as_secs_f64();
            println!(
                "[{dialect}] stream Group/list-1 ({} entries): {} MB in {read_s:.2} s = {:.0} MB/s; server peak RSS {:.0} MB (idle {:.0} MB)",
                largest,
                bytes / 1_000_000,
                bytes as f64 / 1e6 / read_s,
                peak_rss_mb(pid).unwrap_or(f64::NAN),
                idle_rss
            );
        }

        // Bulk export of the big Group, then its files downloaded plain and gzipped.
        if args.runs("export") {
            export_figures(dialect, &client, &base, pid, &token).await?;
        }

        if args.runs("concurrent-exports") {
            reset_peak_rss(pid);
            let c = crate::bench_exports::run(&client, &base, args.concurrent_exports).await?;
            let pct = |p: f64| {
                ms(c.each[((c.each.len() as f64 * p) as usize).min(c.each.len() - 1)]) / 1000.0
            };
            println!(
                "[{dialect}] {} concurrent exports of {}-member lists: {} resources, all manifests in {:.2} s = {:.0} resources/s; each kick-off to manifest {:.2}-{:.2} s (median {:.2} s); server peak RSS {:.0} MB",
                args.concurrent_exports,
                args.concurrent_list_size,
                c.resources,
                c.all_done.as_secs_f64(),
                c.resources as f64 / c.all_done.as_secs_f64(),
                pct(0.0),
                pct(1.0),
                pct(0.5),
                peak_rss_mb(pid).unwrap_or(f64::NAN),
            );
        }

        // Discovery by NPI.
        if args.runs("discovery") {
            let npis = collect_npis(&client, &base).await?;
            let mut latencies = Vec::with_capacity(args.searches);
            for i in 0..args.searches {
                let npi = &npis[(i * 7919) % npis.len()];
                let t = Instant::now();
                let r = client
                    .get(format!(
                        "{base}/Group?identifier=http://hl7.org/fhir/sid/us-npi|{npi}&_summary=true"
                    ))
                    .send()
                    .await?
                    .error_for_status()?;
                r.bytes().await?;
                latencies.push(t.elapsed());
            }
            latencies.sort();
            let pct = |p: f64| {
                latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)]
            };
            println!(
                "[{dialect}] discovery by NPI over {} Groups ({} requests, 1 connection): median {:.2} ms, p99 {:.2} ms",
                args.lists,
                latencies.len(),
                ms(pct(0.5)),
                ms(pct(0.99))
            );
        }
        // Discovery under load: many connections at once, for a bounded time.
        if args.runs("discovery-load") {
            let npis = std::sync::Arc::new(collect_npis(&client, &base).await?);
            let load = discovery_load(
                &client,
                &base,
                npis,
                args.connections,
                Duration::from_secs(args.load_secs),
            )
            .await?;
            println!(
                "[{dialect}] discovery by NPI under load ({} connections, {:.0} s): {} requests = {:.0} requests/s, median {:.2} ms, p99 {:.2} ms",
                args.connections,
                load.elapsed.as_secs_f64(),
                load.latencies.len(),
                load.latencies.len() as f64 / load.elapsed.as_secs_f64(),
                ms(load.percentile(0.5)),
                ms(load.percentile(0.99))
            );
        }
        // Reconciliation on the big list and on a 1,000-member list of the same payer.
        if args.runs("member-ops") {
            let big = member_op_latency(&client, &base, "list-1", 1).await?;
            let small = member_op_latency(&client, &base, "list-3", 1).await?;
            println!(
                "[{dialect}] $member-remove/$member-add on Group/list-1 ({} entries): median {:.2} ms, p99 {:.2} ms; on a 1,000-member Group: median {:.2} ms, p99 {:.2} ms; ratio {:.2}",
                largest,
                big.0,
                big.1,
                small.0,
                small.1,
                big.0 / small.0
            );
        }
        // Token endpoint: assertions signed beforehand, so the figure is the server's.
        for bc in bench_clients.iter().filter(|_| args.runs("tokens")) {
            let (n, secs) = token_throughput(&token_url, bc, args.tokens).await?;
            println!(
                "[{dialect}] token endpoint, {} assertions: {n} tokens in {secs:.2} s = {:.0} tokens/s (16 connections)",
                bc.alg,
                n as f64 / secs
            );
        }
        // Last, as it kills the server: an export interrupted by `kill -9` and finished by the
        // restarted server, once the dead one's lease has run out.
        if args.runs("export-recovery") {
            let r = export_recovery(child, &exe, &flags, &server_args, &client, &base).await?;
            println!(
                "[{dialect}] export of Group/list-1 killed (kill -9) after {:.1} s, server restarted: ready in {:.2} s, manifest {:.2} s after the kill (lease {} s)",
                r.killed_after.as_secs_f64(),
                r.ready.as_secs_f64(),
                r.done.as_secs_f64(),
                std::env::var("ATR_EXPORT_LEASE_SECS").unwrap_or_else(|_| "15".into()),
            );
        } else {
            drop(child);
        }
        if dialect == "postgres" && !args.reuse {
            atr_store::SqlStore::drop_postgres_schema(&args.postgres, &schema).await?;
        }
    }
    // The gate's own cost: verifying an access token and finding its client, per request.
    let (median, p99) = gate_latency(&dir).await?;
    println!(
        "token validation added to each request (in process, 20000 tokens): median {median:.1} µs, p99 {p99:.1} µs"
    );
    if args.work_dir.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}

/// `atr serve --listen 127.0.0.1:0` with `flags` and `extra`, once it says where it serves.
fn spawn_server(exe: &Path, flags: &[String], extra: &[String]) -> Result<(ChildGuard, String)> {
    let mut child = ChildGuard(
        Command::new(exe)
            .arg("serve")
            .args(["--listen", "127.0.0.1:0"])
            .args(flags)
            .args(extra)
            .env("ATR_LOG", "warn")
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()?,
    );
    let stderr = child.0.stderr.take().context("server stderr")?;
    let mut base = String::new();
    let mut lines = BufReader::new(stderr).lines();
    for line in lines.by_ref() {
        let line = line?;
        if let Some(rest) = line.split("serving FHIR at ").nth(1) {
            base = rest.split_whitespace().next().unwrap_or("").to_string();
            break;
        }
    }
    // Keep draining the server's log: a full pipe would stall the server being measured.
    std::thread::spawn(move || lines.for_each(drop));
    if base.is_empty() {
        bail!("the server did not start");
    }
    Ok((child, base))
}

struct Recovery {
    killed_after: Duration,
    /// From the kill until the restarted server serves.
    ready: Duration,
    /// From the kill until the manifest.
    done: Duration,
}

/// Kicks off an export of Group/list-1, kills the server with `kill -9` a few seconds in,
/// restarts it and polls the same job (under the new address) until its manifest.
async fn export_recovery(
    mut child: ChildGuard,
    exe: &Path,
    flags: &[String],
    server_args: &[String],
    client: &reqwest::Client,
    base: &str,
) -> Result<Recovery> {
    let location = crate::bench_exports::kick_off(
        client,
        &format!("{base}/Group/list-1/$davinci-data-export"),
    )
    .await?;
    let status_path = location
        .strip_prefix(base)
        .context("a status URL under the base")?
        .to_string();
    let killed_after = Duration::from_secs(3);
    tokio::time::sleep(killed_after).await;
    child.0.kill()?;
    let killed = Instant::now();
    child.0.wait()?;
    let (restarted, base) = spawn_server(exe, flags, server_args)?;
    let ready = killed.elapsed();
    let status = format!("{base}{status_path}");
    crate::bench_exports::await_manifest(client, &status, Duration::from_millis(50), killed)
        .await
        .context("the interrupted export, after the restart")?;
    let done = killed.elapsed();
    let _ = client.delete(&status).send().await;
    drop(restarted);
    Ok(Recovery {
        killed_after,
        ready,
        done,
    })
}

/// Kick-off to manifest of `$davinci-data-export` on Group/list-1 (the server's peak RSS during
/// it), then the files downloaded plain and with gzip.
async fn export_figures(
    dialect: &str,
    client: &reqwest::Client,
    base: &str,
    pid: u32,
    token: &str,
) -> Result<()> {
    reset_peak_rss(pid);
    let t = Instant::now();
    let location = crate::bench_exports::kick_off(
        client,
        &format!("{base}/Group/list-1/$davinci-data-export"),
    )
    .await?;
    let manifest =
        crate::bench_exports::await_manifest(client, &location, Duration::from_millis(50), t)
            .await?;
    let export_s = t.elapsed().as_secs_f64();
    let rss = peak_rss_mb(pid).unwrap_or(f64::NAN);
    let files = manifest["output"].as_array().cloned().unwrap_or_default();
    let resources: u64 = files.iter().filter_map(|f| f["count"].as_u64()).sum();
    // Plain download of every file, 4 at a time.
    let t = Instant::now();
    let mut bytes = 0u64;
    let mut downloads = futures::stream::iter(files.iter().filter_map(|f| f["url"].as_str()))
        .map(|url| {
            let client = client.clone();
            let url = url.to_string();
            async move {
                let mut n = 0u64;
                let mut body = client
                    .get(&url)
                    .send()
                    .await?
                    .error_for_status()?
                    .bytes_stream();
                while let Some(chunk) = body.next().await {
                    n += chunk?.len() as u64;
                }
                Ok::<u64, anyhow::Error>(n)
            }
        })
        .buffer_unordered(4);
    while let Some(n) = downloads.next().await {
        bytes += n?;
    }
    let download_s = t.elapsed().as_secs_f64();
    println!(
        "[{dialect}] $davinci-data-export of Group/list-1: {resources} resources ({} MB) kick-off to manifest in {export_s:.2} s = {:.0} resources/s, {:.0} MB/s; server peak RSS during export {rss:.0} MB",
        bytes / 1_000_000,
        resources as f64 / export_s,
        bytes as f64 / 1e6 / export_s,
    );
    println!(
        "[{dialect}] export download (plain, 4 parallel): {} MB in {download_s:.2} s = {:.0} MB/s",
        bytes / 1_000_000,
        bytes as f64 / 1e6 / download_s
    );
    // gzip: the Patient file, compressed by the server as it is sent.
    if let Some(f) = files.iter().find(|f| f["type"] == "Patient") {
        let url = f["url"].as_str().unwrap_or_default();
        let lines = f["count"].as_u64().unwrap_or(0);
        let raw = reqwest::Client::builder().no_gzip().build()?;
        let req = raw
            .get(url)
            .bearer_auth(token)
            .header("Accept-Encoding", "gzip");
        let t = Instant::now();
        let mut packed = 0u64;
        let mut body = req.send().await?.error_for_status()?.bytes_stream();
        while let Some(chunk) = body.next().await {
            packed += chunk?.len() as u64;
        }
        let s = t.elapsed().as_secs_f64();
        println!(
            "[{dialect}] gzip download of the Patient file: {lines} resources in {s:.2} s = {:.0} resources/s ({} MB compressed)",
            lines as f64 / s,
            packed / 1_000_000
        );
    }
    let _ = client.delete(&location).send().await;
    Ok(())
}

/// A registered benchmark client: an administration client with its own key.
struct BenchClient {
    id: String,
    alg: SigningAlg,
    key: atr_auth::Jwk,
}

fn register_client(
    exe: &Path,
    flags: &[String],
    dir: &Path,
    alg: SigningAlg,
) -> Result<BenchClient> {
    let keys = atr_auth::generate(alg)?;
    let public = dir.join(format!("bench-{alg}.jwks.json"));
    std::fs::write(&public, keys.public.to_json())?;
    // One id per run: a kept database already has the earlier runs' clients.
    let id = format!(
        "bench-{}-{}",
        alg.as_str().to_ascii_lowercase(),
        std::process::id()
    );
    let out = Command::new(exe)
        .args(["clients"])
        .args(flags)
        .args([
            "add",
            &id,
            "--admin",
            "--scope",
            "system/*.read system/*.rs system/*.write",
            "--jwks",
        ])
        .arg(&public)
        .output()?;
    if !out.status.success() {
        bail!("registering {id}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let key = keys
        .private
        .keys
        .first()
        .cloned()
        .context("keygen made no key")?;
    Ok(BenchClient { id, alg, key })
}

fn assertion(bc: &BenchClient, token_url: &str) -> Result<String> {
    let now = atr_server::auth::now_unix();
    Ok(atr_auth::sign_client_assertion(
        &bc.key,
        &bc.id,
        token_url,
        now,
        290,
        &uuid::Uuid::now_v7().to_string(),
    )?)
}

async fn post_assertion(
    client: &reqwest::Client,
    token_url: &str,
    assertion: &str,
) -> Result<reqwest::Response> {
    let body = format!(
        "grant_type=client_credentials&scope=system%2F*.read+system%2F*.write&client_assertion_type={}&client_assertion={assertion}",
        "urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer"
    );
    Ok(client
        .post(token_url)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await?)
}

async fn fetch_token(
    client: &reqwest::Client,
    token_url: &str,
    bc: &BenchClient,
) -> Result<String> {
    let resp = post_assertion(client, token_url, &assertion(bc, token_url)?).await?;
    let status = resp.status();
    let body: serde_json::Value = resp.json().await?;
    body["access_token"]
        .as_str()
        .map(str::to_string)
        .with_context(|| format!("token endpoint answered {status}: {body}"))
}

async fn token_throughput(token_url: &str, bc: &BenchClient, n: usize) -> Result<(usize, f64)> {
    let assertions: Vec<String> = (0..n)
        .map(|_| assertion(bc, token_url))
        .collect::<Result<_>>()?;
    let client = reqwest::Client::new();
    let t = Instant::now();
    let results: Vec<Result<bool>> = futures::stream::iter(assertions)
        .map(|a| {
            let client = client.clone();
            async move {
                let r = post_assertion(&client, token_url, &a).await?;
                Ok(r.status().is_success())
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let secs = t.elapsed().as_secs_f64();
    let ok = results
        .into_iter()
        .filter(|r| matches!(r, Ok(true)))
        .count();
    if ok != n {
        bail!("only {ok} of {n} token requests succeeded");
    }
    Ok((ok, secs))
}

/// Median and p99 (µs) of `Authority::caller` on a fresh SQLite store with one client.
async fn gate_latency(dir: &Path) -> Result<(f64, f64)> {
    let store: std::sync::Arc<dyn atr_store::Store> =
        std::sync::Arc::new(atr_store::SqlStore::open_sqlite(&dir.join("gate.db")).await?);
    let keys = atr_auth::generate(SigningAlg::Es384)?;
    atr_server::auth::registry::register(
        store.as_ref(),
        atr_server::auth::registry::NewClient {
            client_id: "gate".into(),
            name: "gate".into(),
            admin: false,
            jwks: Some(keys.public.to_json()),
            jwks_url: None,
            scopes: vec!["system/*.read".into()],
            identifiers: vec!["http://hl7.org/fhir/sid/us-npi|1234567893".into()],
        },
    )
    .await?;
    let auth = atr_server::auth::Authority::new(
        store,
        "http://127.0.0.1/auth/token".into(),
        Default::default(),
    )
    .await?;
    let now = atr_server::auth::now_unix();
    let tokens: Vec<String> = (0..20_000)
        .map(|i| {
            auth.keys()
                .issue("gate", "system/*.read", now, 300, &format!("t{i}"))
        })
        .collect();
    let mut micros = Vec::with_capacity(tokens.len());
    for t in &tokens {
        let started = Instant::now();
        auth.caller(t)
            .await
            .map_err(|e| anyhow::anyhow!("token rejected: {:?}", e.issues))?;
        micros.push(started.elapsed().as_secs_f64() * 1e6);
    }
    micros.sort_by(f64::total_cmp);
    Ok((micros[micros.len() / 2], micros[micros.len() * 99 / 100]))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn tempfile_dir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("atr-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// NPIs of the Groups on the server, from a few pages of `_summary=true` search.
/// Latencies of a load run, sorted.
struct LoadRun {
    latencies: Vec<Duration>,
    elapsed: Duration,
}

impl LoadRun {
    fn percentile(&self, p: f64) -> Duration {
        let n = self.latencies.len();
        if n == 0 {
            return Duration::ZERO;
        }
        self.latencies[((n as f64 * p) as usize).min(n - 1)]
    }
}

/// `connections` clients searching Groups by NPI back to back until `duration` is over.
async fn discovery_load(
    client: &reqwest::Client,
    base: &str,
    npis: std::sync::Arc<Vec<String>>,
    connections: usize,
    duration: Duration,
) -> Result<LoadRun> {
    let started = Instant::now();
    let mut workers = Vec::with_capacity(connections);
    for w in 0..connections {
        let (client, base, npis) = (client.clone(), base.to_string(), npis.clone());
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut i = w;
            while started.elapsed() < duration {
                let npi = &npis[(i * 7919) % npis.len()];
                i += connections;
                let t = Instant::now();
                client
                    .get(format!(
                        "{base}/Group?identifier=http://hl7.org/fhir/sid/us-npi|{npi}&_summary=true"
                    ))
                    .send()
                    .await?
                    .error_for_status()?
                    .bytes()
                    .await?;
                latencies.push(t.elapsed());
            }
            Ok::<_, anyhow::Error>(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for w in workers {
        latencies.extend(w.await??);
    }
    let elapsed = started.elapsed();
    latencies.sort();
    Ok(LoadRun { latencies, elapsed })
}

async fn collect_npis(client: &reqwest::Client, base: &str) -> Result<Vec<String>> {
    let mut npis = Vec::new();
    let mut url = Some(format!(
        "{base}/Group?_summary=true&_count=1000&_total=none"
    ));
    while let Some(u) = url.take() {
        let page: serde_json::Value = client.get(&u).send().await?.json().await?;
        for e in page["entry"].as_array().into_iter().flatten() {
            for ident in e["resource"]["identifier"].as_array().into_iter().flatten() {
                if ident["system"] == atr_model::SYSTEM_NPI
                    && let Some(v) = ident["value"].as_str()
                {
                    npis.push(v.to_string());
                }
            }
        }
        if npis.len() >= 5000 {
            break;
        }
        url = page["link"]
            .as_array()
            .and_then(|l| l.iter().find(|l| l["relation"] == "next"))
            .and_then(|l| l["url"].as_str())
            .map(str::to_string);
    }
    if npis.is_empty() {
        bail!("no Group NPIs found");
    }
    Ok(npis)
}

/// Opens the big list (synthetic `list-1` is final) and gives `list-3` (same payer) 1,000 members.
fn prepare_member_ops(exe: &Path, flags: &[String], dir: &Path) -> Result<()> {
    let csv = dir.join("list-3.csv");
    let mut text = String::from("patient,provider,coverage,period_start,period_end\n");
    for i in 1..=1000 {
        text.push_str(&format!(
            "Patient/pat-{i},Practitioner/pract-1,Coverage/cov-{i},2026-01-01,2026-12-31\n"
        ));
    }
    std::fs::write(&csv, text)?;
    for args in [
        vec!["status".to_string(), "list-1".into(), "open".into()],
        vec![
            "reload".to_string(),
            "list-3".into(),
            csv.display().to_string(),
        ],
        vec!["status".to_string(), "list-3".into(), "open".into()],
    ] {
        let out = Command::new(exe)
            .arg("roster")
            .args(flags)
            .args(&args)
            .output()?;
        if !out.status.success() {
            bail!(
                "atr roster {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    Ok(())
}

/// Median and p99 (ms) of 200 operations: 100 members each removed, then added back.
async fn member_op_latency(
    client: &reqwest::Client,
    base: &str,
    group: &str,
    first_patient: usize,
) -> Result<(f64, f64)> {
    let mut times = Vec::with_capacity(200);
    for i in first_patient..first_patient + 100 {
        let patient = format!("Patient/pat-{i}");
        for (op, params) in [
            (
                "$member-remove",
                serde_json::json!([{"name": "patientReference", "valueReference": {"reference": patient}}]),
            ),
            (
                "$member-add",
                serde_json::json!([
                    {"name": "patientReference", "valueReference": {"reference": patient}},
                    {"name": "providerReference", "valueReference": {"reference": "Practitioner/pract-1"}}
                ]),
            ),
        ] {
            let body = serde_json::json!({"resourceType": "Parameters", "parameter": params});
            let t = Instant::now();
            let r = client
                .post(format!("{base}/Group/{group}/{op}"))
                .header("Content-Type", "application/fhir+json")
                .body(body.to_string())
                .send()
                .await?;
            let status = r.status();
            let text = r.text().await?;
            // A synthetic member may carry no entry on this list yet: the add still counts.
            let tolerated = op == "$member-remove" && status.as_u16() == 422;
            if !(status.is_success() || tolerated) {
                bail!("{op} on {group}: {status} {text}");
            }
            times.push(t.elapsed().as_secs_f64() * 1000.0);
        }
    }
    times.sort_by(f64::total_cmp);
    Ok((times[times.len() / 2], times[times.len() * 99 / 100]))
}
