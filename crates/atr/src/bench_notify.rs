//! `atr bench-notify`: Subscription delivery figures. N active Subscriptions on one Group, each
//! with its own rest-hook endpoint on a loopback receiver in this process; one change, then a
//! burst of changes. Prints the time until every endpoint has the first change's notification,
//! and sustained notifications (and events) per second.
//!
//! The server runs in this process too (its delivery is what is measured), so the receiver's own
//! work counts against the same cores: the figures are a floor.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use atr_auth::SigningAlg;
use atr_store::Store;
use clap::Args;
use futures::StreamExt;
use serde_json::{Value, json};

#[derive(Args)]
pub struct BenchNotifyArgs {
    /// Active Subscriptions, all on the same Group.
    #[arg(long, default_value_t = 1000)]
    subscribers: usize,
    /// Changes of the Group in the sustained run (each is one event for every Subscription).
    #[arg(long, default_value_t = 20)]
    changes: usize,
    /// Database (default: a SQLite file in a temporary directory); `postgres://…` for PostgreSQL
    /// (a fresh schema is made and dropped).
    #[arg(long)]
    database: Option<String>,
    /// Longest the whole run may take, in seconds.
    #[arg(long, default_value_t = 300)]
    timeout_secs: u64,
}

/// What the receiver has seen, per endpoint.
struct Tally {
    /// Highest event number each endpoint has accepted.
    highest: Vec<AtomicU64>,
    /// When each endpoint first saw event 1 (µs after `epoch`).
    first_event_at: Vec<AtomicU64>,
    handshakes: AtomicU64,
    posts: AtomicU64,
    events: AtomicU64,
    epoch: Instant,
}

async fn hook(
    axum::extract::State(tally): axum::extract::State<Arc<Tally>>,
    axum::extract::Path(n): axum::extract::Path<usize>,
    body: axum::body::Bytes,
) -> axum::http::StatusCode {
    let Ok(bundle) = serde_json::from_slice::<Value>(&body) else {
        return axum::http::StatusCode::BAD_REQUEST;
    };
    let params = bundle["entry"][0]["resource"]["parameter"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let kind = params
        .iter()
        .find(|p| p["name"] == "type")
        .and_then(|p| p["valueCode"].as_str())
        .unwrap_or("");
    tally.posts.fetch_add(1, Ordering::Relaxed);
    if kind == "handshake" {
        tally.handshakes.fetch_add(1, Ordering::Relaxed);
    }
    let numbers: Vec<u64> = params
        .iter()
        .filter(|p| p["name"] == "notification-event")
        .filter_map(|p| {
            p["part"]
                .as_array()?
                .iter()
                .find(|x| x["name"] == "event-number")?["valueString"]
                .as_str()?
                .parse()
                .ok()
        })
        .collect();
    if let (Some(slot), Some(top)) = (tally.highest.get(n), numbers.iter().max()) {
        tally
            .events
            .fetch_add(numbers.len() as u64, Ordering::Relaxed);
        slot.fetch_max(*top, Ordering::Relaxed);
        if numbers.contains(&1) {
            let at = tally.epoch.elapsed().as_micros() as u64;
            let _ = tally.first_event_at[n].compare_exchange(
                0,
                at,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
    }
    axum::http::StatusCode::OK
}

async fn wait_until(what: &str, deadline: Instant, done: impl Fn() -> bool) -> Result<()> {
    while !done() {
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(())
}

pub async fn run(args: BenchNotifyArgs) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(args.timeout_secs);
    let dir = std::env::temp_dir().join(format!("atr-bench-notify-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir)?;
    let schema = format!("bench_notify_{}", uuid::Uuid::now_v7().simple());
    let store: Arc<dyn Store> = match &args.database {
        Some(url) if url.starts_with("postgres") => {
            Arc::new(atr_store::SqlStore::open_postgres(url, Some(&schema)).await?)
        }
        Some(url) => Arc::new(atr_store::SqlStore::open(url).await?),
        None => Arc::new(atr_store::SqlStore::open_sqlite(&dir.join("atr.db")).await?),
    };
    let result = measure(&args, store.clone(), &dir, deadline).await;
    if let Some(url) = &args.database
        && url.starts_with("postgres")
    {
        atr_store::SqlStore::drop_postgres_schema(url, &schema).await?;
    }
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn measure(
    args: &BenchNotifyArgs,
    store: Arc<dyn Store>,
    dir: &std::path::Path,
    deadline: Instant,
) -> Result<()> {
    // A small payer; list-3 is open, so members can leave and come back.
    let synth = dir.join("ndjson");
    atr_synth::generate(
        &atr_synth::SynthConfig {
            members: 300,
            lists: 3,
            ..Default::default()
        },
        &synth,
    )?;
    crate::load::load_dir(store.as_ref(), &synth, 5_000, atr_store::DeferIndexes::Auto).await?;

    let tally = Arc::new(Tally {
        highest: (0..args.subscribers).map(|_| AtomicU64::new(0)).collect(),
        first_event_at: (0..args.subscribers).map(|_| AtomicU64::new(0)).collect(),
        handshakes: AtomicU64::new(0),
        posts: AtomicU64::new(0),
        events: AtomicU64::new(0),
        epoch: Instant::now(),
    });
    let receiver = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let hooks = format!("http://{}/hook", receiver.local_addr()?);
    let app = axum::Router::new()
        .route("/hook/{n}", axum::routing::post(hook))
        .with_state(tally.clone());
    tokio::spawn(async move { axum::serve(receiver, app).await });

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let config = atr_server::ServerConfig {
        export: atr_export::ExportConfig::new(dir.join("exports")),
        ..Default::default()
    };
    let state = atr_server::state_for(&listener, store.clone(), &config).await?;
    let base = state.base_url.to_string();
    let token_url = state.auth.token_url.clone();
    tokio::spawn(atr_server::serve(listener, state, config));

    let keys = atr_auth::generate(SigningAlg::Es384)?;
    atr_server::auth::registry::register(
        store.as_ref(),
        atr_server::auth::registry::NewClient {
            client_id: "bench-notify".into(),
            name: "bench-notify".into(),
            admin: true,
            jwks: Some(keys.public.to_json()),
            jwks_url: None,
            scopes: vec!["system/*.cruds".into()],
            identifiers: vec![],
        },
    )
    .await?;
    let key = keys.private.keys.first().context("keygen made no key")?;
    let assertion = atr_auth::sign_client_assertion(
        key,
        "bench-notify",
        &token_url,
        atr_server::auth::now_unix(),
        290,
        &uuid::Uuid::now_v7().to_string(),
    )?;
    let http = reqwest::Client::new();
    let token: Value = http
        .post(&token_url)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(format!(
            "grant_type=client_credentials&scope=system%2F*.cruds&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion={assertion}"
        ))
        .send()
        .await?
        .json()
        .await?;
    let token = token["access_token"]
        .as_str()
        .context("no access token")?
        .to_string();

    // Subscriptions, 32 creates in flight.
    let backport = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/";
    let started = Instant::now();
    let created = futures::stream::iter(0..args.subscribers)
        .map(|n| {
            let body = json!({
                "resourceType": "Subscription", "status": "active", "reason": "bench",
                "criteria": atr_notify::TOPIC_ATR_LIST_CHANGE,
                "_criteria": {"extension": [{"url": format!("{backport}backport-filter-criteria"),
                                              "valueString": "Group/list-3"}]},
                "channel": {"type": "rest-hook", "endpoint": format!("{hooks}/{n}"),
                            "payload": "application/fhir+json",
                            "_payload": {"extension": [{"url": format!("{backport}backport-payload-content"),
                                                         "valueCode": "id-only"}]}},
            });
            let (http, base, token) = (http.clone(), base.clone(), token.clone());
            async move {
                http.post(format!("{base}/Subscription"))
                    .bearer_auth(token)
                    .header("Content-Type", "application/fhir+json")
                    .body(body.to_string())
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    if let Some(bad) = created.iter().find(|r| !matches!(r, Ok(201))) {
        bail!("creating a Subscription failed: {bad:?}");
    }
    let n = args.subscribers as u64;
    wait_until("every handshake", deadline, || {
        tally.handshakes.load(Ordering::Relaxed) >= n
    })
    .await?;
    let setup = started.elapsed();
    // The handshake answer is recorded just after the endpoint answers: wait for `active`.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let (_, group) = get(&http, &format!("{base}/Group/list-3"), &token).await?;
    let patient = group["member"][0]["entity"]["reference"]
        .as_str()
        .context("list-3 has no member")?
        .to_string();
    let provider = group["member"][0]["extension"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| {
            e["url"]
                .as_str()
                .is_some_and(|u| u.ends_with("ext-attributedProvider"))
        })
        .and_then(|e| e["valueReference"]["reference"].as_str())
        .map(str::to_string);
    let mut params =
        vec![json!({"name": "patientReference", "valueReference": {"reference": patient}})];
    if let Some(p) = &provider {
        params.push(json!({"name": "providerReference", "valueReference": {"reference": p}}));
    }
    let params = json!({"resourceType": "Parameters", "parameter": params});
    let change = |i: usize| {
        let op = if i.is_multiple_of(2) {
            "$member-remove"
        } else {
            "$member-add"
        };
        let (http, url, token, params) = (
            http.clone(),
            format!("{base}/Group/list-3/{op}"),
            token.clone(),
            params.clone(),
        );
        async move {
            let r = http
                .post(url)
                .bearer_auth(token)
                .header("Content-Type", "application/fhir+json")
                .body(params.to_string())
                .send()
                .await?;
            if !r.status().is_success() {
                bail!(
                    "a change failed: {} {}",
                    r.status(),
                    r.text().await.unwrap_or_default()
                );
            }
            Ok(())
        }
    };

    // One change: until every endpoint has event 1.
    let t0 = tally.epoch.elapsed().as_micros() as u64;
    let one = Instant::now();
    change(0).await?;
    wait_until("event 1 at every endpoint", deadline, || {
        tally.highest.iter().all(|h| h.load(Ordering::Relaxed) >= 1)
    })
    .await?;
    let all_have_it = one.elapsed();
    let mut latencies: Vec<u64> = tally
        .first_event_at
        .iter()
        .map(|a| a.load(Ordering::Relaxed).saturating_sub(t0))
        .collect();
    latencies.sort_unstable();
    let pct = |p: f64| latencies[((latencies.len() as f64 - 1.0) * p) as usize] as f64 / 1000.0;

    // Sustained: `changes` more, back to back.
    let (posts0, events0) = (
        tally.posts.load(Ordering::Relaxed),
        tally.events.load(Ordering::Relaxed),
    );
    let burst = Instant::now();
    for i in 1..=args.changes {
        change(i).await?;
    }
    let changes_done = burst.elapsed();
    let last = 1 + args.changes as u64;
    wait_until("every event of the burst", deadline, || {
        tally
            .highest
            .iter()
            .all(|h| h.load(Ordering::Relaxed) >= last)
    })
    .await?;
    let drained = burst.elapsed();
    let posts = tally.posts.load(Ordering::Relaxed) - posts0;
    let events = tally.events.load(Ordering::Relaxed) - events0;

    println!(
        "atr bench-notify: {} Subscriptions on Group/list-3 ({}), {} cores",
        args.subscribers,
        store.dialect(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "  set-up: {} creates + handshakes in {:.2} s",
        args.subscribers,
        setup.as_secs_f64()
    );
    println!(
        "  one change -> all {} endpoints notified: {:.1} ms (per endpoint p50 {:.1} ms, p99 {:.1} ms)",
        args.subscribers,
        all_have_it.as_secs_f64() * 1000.0,
        pct(0.5),
        pct(0.99)
    );
    println!(
        "  sustained: {} changes in {:.2} s; all {} events delivered after {:.2} s: {:.0} events/s in {} notifications ({:.0} POSTs/s)",
        args.changes,
        changes_done.as_secs_f64(),
        args.changes as u64 * n,
        drained.as_secs_f64(),
        events as f64 / drained.as_secs_f64(),
        posts,
        posts as f64 / drained.as_secs_f64()
    );
    Ok(())
}

async fn get(http: &reqwest::Client, url: &str, token: &str) -> Result<(u16, Value)> {
    let r = http
        .get(url)
        .bearer_auth(token)
        .header("Accept", "application/fhir+json")
        .send()
        .await?;
    let status = r.status().as_u16();
    Ok((status, r.json().await?))
}
