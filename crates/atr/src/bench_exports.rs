//! `atr bench --only concurrent-exports`: many bulk exports of 100k-member lists kicked off at
//! once, as when every provider of a payer pulls its list the morning it is published. Prints the
//! time until the last manifest, each export's kick-off-to-manifest spread and the server's peak
//! RSS: memory must stay bounded however many exports are queued.
//!
//! The lists are cut from the synthetic `list-1` (each a window of its members, wrapping around,
//! so lists overlap as real ones do) and loaded once per database with `atr load`.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::StreamExt;

/// The ids of the lists made for this measurement.
pub fn list_id(k: usize) -> String {
    format!("bench-export-{k}")
}

/// Writes `count` Groups of `size` members each (cut from `list-1` in `data`/Group.ndjson) to
/// `dir`/concurrent-lists-<count>x<size>.ndjson and loads them with `atr load`, unless an earlier
/// run did (the marker file `concurrent-lists-<dialect>-<count>x<size>` says so).
pub fn prepare_lists(
    exe: &Path,
    flags: &[String],
    dir: &Path,
    data: &Path,
    dialect: &str,
    count: usize,
    size: usize,
) -> Result<()> {
    let marker = dir.join(format!("concurrent-lists-{dialect}-{count}x{size}"));
    if marker.exists() {
        return Ok(());
    }
    let file = dir.join(format!("concurrent-lists-{count}x{size}.ndjson"));
    if !file.exists() {
        write_lists(data, &file, count, size)?;
    }
    let out = Command::new(exe)
        .arg("load")
        .arg(&file)
        .args(flags)
        .output()?;
    if !out.status.success() {
        bail!(
            "loading the concurrent-export lists: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    std::fs::write(&marker, b"")?;
    Ok(())
}

fn write_lists(data: &Path, out: &Path, count: usize, size: usize) -> Result<()> {
    let groups = std::fs::File::open(data.join("Group.ndjson"))?;
    let mut line = String::new();
    let mut reader = BufReader::with_capacity(1 << 20, groups);
    let list_1 = loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            bail!("no list-1 in {}", data.display());
        }
        if line.contains("\"id\":\"list-1\"") {
            break line.trim_end();
        }
    };
    let split = atr_model::group::split_group(list_1).context("list-1")?;
    if split.members.is_empty() {
        bail!("list-1 has no members");
    }
    let mut text = String::new();
    for k in 0..count {
        let mut header = split.header.clone();
        header["id"] = list_id(k).into();
        header["name"] = format!("Concurrent export list {k}").into();
        // Other identifiers (NPI, TIN) would add these lists to list-1's discovery results.
        header["identifier"] = serde_json::json!([{
            "use": "official",
            "type": {"text": "Contract Identifier"},
            "system": "https://bench.example.org/fhir/sid/contract",
            "value": format!("BENCH-{k}")
        }]);
        header
            .as_object_mut()
            .context("a Group object")?
            .remove("meta");
        let header = serde_json::to_string(&header)?;
        // The header ends with `}`: the members go in before it.
        text.push_str(&header[..header.len() - 1]);
        text.push_str(",\"member\":[");
        for i in 0..size {
            if i > 0 {
                text.push(',');
            }
            let m = &split.members[(k * size + i) % split.members.len()];
            text.push_str(m.get());
        }
        text.push_str("]}\n");
    }
    std::fs::write(out, text)?;
    Ok(())
}

/// What the concurrent exports took.
pub struct ConcurrentExports {
    pub all_done: Duration,
    /// Each export's kick-off to manifest, sorted.
    pub each: Vec<Duration>,
    pub resources: u64,
}

/// Kicks off `$davinci-data-export` on each list at once and polls each until its manifest.
pub async fn run(client: &reqwest::Client, base: &str, count: usize) -> Result<ConcurrentExports> {
    let t = Instant::now();
    let results: Vec<Result<(Duration, u64)>> = futures::stream::iter(0..count)
        .map(|k| {
            let client = client.clone();
            let url = format!("{base}/Group/{}/$davinci-data-export", list_id(k));
            async move { one_export(&client, &url).await }
        })
        .buffer_unordered(count)
        .collect()
        .await;
    let all_done = t.elapsed();
    let mut each = Vec::with_capacity(count);
    let mut resources = 0;
    for r in results {
        let (took, n) = r?;
        each.push(took);
        resources += n;
    }
    each.sort();
    Ok(ConcurrentExports {
        all_done,
        each,
        resources,
    })
}

/// Kicks off an export at `url` (`…/$davinci-data-export`) and returns its status URL.
pub async fn kick_off(client: &reqwest::Client, url: &str) -> Result<String> {
    let resp = client
        .get(url)
        .header("Accept", "application/fhir+json")
        .header("Prefer", "respond-async")
        .send()
        .await?;
    if resp.status().as_u16() != 202 {
        bail!("kick-off {url}: {} {}", resp.status(), resp.text().await?);
    }
    Ok(resp
        .headers()
        .get("content-location")
        .and_then(|v| v.to_str().ok())
        .context("no Content-Location")?
        .to_string())
}

/// Polls the status URL `location` every `every` until the manifest, which it returns; an
/// export not done 15 minutes after `since` is an error.
pub async fn await_manifest(
    client: &reqwest::Client,
    location: &str,
    every: Duration,
    since: Instant,
) -> Result<serde_json::Value> {
    loop {
        let r = client.get(location).send().await?;
        match r.status().as_u16() {
            202 => tokio::time::sleep(every).await,
            200 => return Ok(r.json().await?),
            other => bail!("export status {other}: {}", r.text().await?),
        }
        if since.elapsed() > Duration::from_secs(900) {
            bail!("an export did not finish in 15 minutes");
        }
    }
}

async fn one_export(client: &reqwest::Client, url: &str) -> Result<(Duration, u64)> {
    let t = Instant::now();
    let location = kick_off(client, url).await?;
    let manifest = await_manifest(client, &location, Duration::from_millis(100), t).await?;
    let took = t.elapsed();
    let resources = manifest["output"].as_array().map_or(0, |files| {
        files.iter().filter_map(|f| f["count"].as_u64()).sum()
    });
    let _ = client.delete(&location).send().await;
    Ok((took, resources))
}
