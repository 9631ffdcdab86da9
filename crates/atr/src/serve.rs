//! `atr serve`: open the store, seed demo data on request, serve HTTP.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use atr_server::ServerConfig;
use atr_store::{ResourceType, SearchQuery, Store};
use clap::Args;

use crate::StoreArgs;

#[derive(Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "ATR_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    #[command(flatten)]
    store: StoreArgs,
    /// Public FHIR base URL, when it differs from http://LISTEN/fhir (behind a proxy).
    #[arg(long, env = "ATR_BASE_URL")]
    base_url: Option<String>,
    /// Seed a small realistic data set on first start (when the database holds no Group).
    #[arg(long)]
    demo: bool,
    /// Serve HTTPS with this PEM certificate chain (server certificate first); needs --tls-key.
    #[arg(long, env = "ATR_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// The PEM private key (PKCS#8, PKCS#1 or SEC1) of --tls-cert.
    #[arg(long, env = "ATR_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
    #[command(flatten)]
    export: ExportArgs,
    #[command(flatten)]
    notify: NotifyArgs,
    #[command(flatten)]
    limits: LimitArgs,
}

/// Request limits and per-client rate limiting.
#[derive(Args)]
pub struct LimitArgs {
    /// Largest request body, in MiB (larger ones answer 413).
    #[arg(long, env = "ATR_MAX_BODY_MB", default_value_t = 1024)]
    max_body_mb: usize,
    /// Most parameters in one query string or `_search` form body (more answer 400).
    #[arg(long, env = "ATR_MAX_QUERY_PARAMS", default_value_t = atr_server::limits::DEFAULT_MAX_QUERY_PARAMS)]
    max_query_params: usize,
    /// Requests per second each client may make, sustained (by client id with a valid token,
    /// else by IP address; more answer 429). Counted per instance. Off when not given.
    #[arg(long, env = "ATR_RATE_LIMIT_RPS")]
    rate_limit_rps: Option<f64>,
    /// Requests a client may make at once above the sustained rate (with --rate-limit-rps;
    /// default: one second's worth, at least 1).
    #[arg(long, env = "ATR_RATE_LIMIT_BURST", requires = "rate_limit_rps")]
    rate_limit_burst: Option<u32>,
}

impl LimitArgs {
    fn limits(&self) -> atr_server::limits::Limits {
        atr_server::limits::Limits {
            max_body_bytes: self.max_body_mb.clamp(1, 1 << 20) << 20,
            max_query_params: self.max_query_params.max(1),
        }
    }

    fn rate_limit(&self) -> Option<atr_server::rate_limit::RateLimit> {
        let per_second = self.rate_limit_rps.filter(|r| r.is_finite() && *r > 0.0)?;
        Some(atr_server::rate_limit::RateLimit {
            per_second,
            burst: self
                .rate_limit_burst
                .unwrap_or(per_second.ceil().min(f64::from(u32::MAX)) as u32)
                .max(1),
        })
    }
}

/// Subscription delivery settings.
#[derive(Args)]
pub struct NotifyArgs {
    /// Development mode: accept Subscription endpoints over plain http to any host (by default
    /// only https, or http to a loopback address).
    #[arg(long, env = "ATR_ALLOW_HTTP_SUBSCRIPTIONS")]
    allow_http_subscriptions: bool,
    /// Consecutive failed deliveries after which a Subscription's status is `error` (delivery
    /// goes on with backoff, and it is `active` again when the endpoint answers).
    #[arg(long, env = "ATR_NOTIFY_ERROR_AFTER", default_value_t = 5)]
    notify_error_after: u32,
    /// Seconds before the first retry of a failed notification; each further failure doubles it.
    #[arg(long, env = "ATR_NOTIFY_BACKOFF_SECS", default_value_t = 1.0)]
    notify_backoff_secs: f64,
    /// Longest wait between two retries, in seconds.
    #[arg(long, env = "ATR_NOTIFY_BACKOFF_MAX_SECS", default_value_t = 300.0)]
    notify_backoff_max_secs: f64,
    /// Notifications in flight at once from this instance.
    #[arg(long, env = "ATR_NOTIFY_CONCURRENCY", default_value_t = 256)]
    notify_concurrency: usize,
    /// Milliseconds between looks for notifications other instances' changes made.
    #[arg(long, env = "ATR_NOTIFY_POLL_MS", default_value_t = 500)]
    notify_poll_ms: u64,
    /// Longest a notification POST may take, whatever the Subscription's timeout asks. A
    /// delivery cut off by a dying instance is resent by another this long plus 5 s later.
    #[arg(long, env = "ATR_NOTIFY_MAX_TIMEOUT_SECS", default_value_t = 120)]
    notify_max_timeout_secs: u64,
    /// Days delivered events are kept for `$events` (undelivered ones are kept until delivered).
    #[arg(long, env = "ATR_NOTIFY_EVENT_RETENTION_DAYS", default_value_t = 30)]
    notify_event_retention_days: u64,
}

impl NotifyArgs {
    fn config(&self) -> atr_notify::NotifyConfig {
        let secs = |s: f64| std::time::Duration::from_secs_f64(s.clamp(0.001, 86_400.0));
        atr_notify::NotifyConfig {
            concurrency: self.notify_concurrency.max(1),
            poll: std::time::Duration::from_millis(self.notify_poll_ms.max(10)),
            error_after: self.notify_error_after.max(1),
            backoff_base: secs(self.notify_backoff_secs),
            backoff_max: secs(self.notify_backoff_max_secs),
            max_timeout: std::time::Duration::from_secs(self.notify_max_timeout_secs.max(1)),
            event_retention: std::time::Duration::from_secs(
                self.notify_event_retention_days.max(1) * 24 * 3600,
            ),
            endpoint_policy: if self.allow_http_subscriptions {
                atr_notify::EndpointPolicy::AllowPlainHttp
            } else {
                atr_notify::EndpointPolicy::HttpsOrLoopback
            },
            ..Default::default()
        }
    }
}

/// Bulk export settings.
#[derive(Args)]
pub struct ExportArgs {
    /// Directory for export files (default: `<data-dir>/exports`).
    #[arg(long, env = "ATR_EXPORT_DIR")]
    export_dir: Option<std::path::PathBuf>,
    /// Where finished export files are kept: `s3://BUCKET/PREFIX` for an S3-compatible bucket
    /// (files are spooled in the export directory until each is complete, then uploaded).
    /// Default: the export directory. S3 credentials come from the environment only
    /// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, optionally `AWS_SESSION_TOKEN`).
    #[arg(long, env = "ATR_EXPORT_STORE", value_parser = parse_export_store)]
    export_store: Option<atr_export::S3Location>,
    /// The S3 API's base URL, for S3-compatible servers (default: AWS's endpoint of the region).
    #[arg(long, env = "ATR_S3_ENDPOINT", requires = "export_store")]
    s3_endpoint: Option<String>,
    /// The bucket's region.
    #[arg(long, env = "AWS_REGION", default_value = "us-east-1")]
    s3_region: String,
    /// Path-style requests (ENDPOINT/BUCKET/KEY rather than BUCKET.ENDPOINT/KEY), which most
    /// S3-compatible servers need.
    #[arg(long, env = "ATR_S3_PATH_STYLE", requires = "export_store")]
    s3_path_style: bool,
    /// Export files are split when they reach this many MiB.
    #[arg(long, env = "ATR_EXPORT_FILE_MB", default_value_t = 512)]
    export_file_mb: u64,
    /// Hours an export and its files are kept after kick-off.
    #[arg(long, env = "ATR_EXPORT_RETENTION_HOURS", default_value_t = 24)]
    export_retention_hours: u64,
    /// Exports waiting or running at once, all clients together (more answer 429).
    #[arg(long, env = "ATR_EXPORT_MAX_JOBS", default_value_t = 32)]
    export_max_jobs: u32,
    /// Exports waiting or running at once for one client (more answer 429).
    #[arg(long, env = "ATR_EXPORT_MAX_JOBS_PER_CLIENT", default_value_t = 4)]
    export_max_jobs_per_client: u32,
    /// Exports this instance runs at once (0: leave them to other instances).
    #[arg(long, env = "ATR_EXPORT_WORKERS", default_value_t = 2)]
    export_workers: usize,
    /// Seconds before another instance takes over the export of an instance that died.
    #[arg(long, env = "ATR_EXPORT_LEASE_SECS", default_value_t = 15)]
    export_lease_secs: u64,
}

fn parse_export_store(s: &str) -> Result<atr_export::S3Location, String> {
    if !s.starts_with("s3://") {
        return Err(format!(
            "{s:?}: only s3://BUCKET/PREFIX is supported (a local directory is --export-dir)"
        ));
    }
    s.parse()
}

impl ExportArgs {
    /// Where finished files go; S3 needs credentials in the environment.
    fn storage(&self) -> Result<atr_export::ExportStorage> {
        let Some(location) = &self.export_store else {
            return Ok(atr_export::ExportStorage::Local);
        };
        let credentials = atr_export::S3Settings::credentials_from_env().context(
            "--export-store s3://… needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the environment",
        )?;
        let mut s3 = atr_export::S3Settings::new(location.clone(), &self.s3_region);
        s3.endpoint = self.s3_endpoint.clone();
        s3.path_style = self.s3_path_style;
        s3.credentials = Some(credentials);
        Ok(atr_export::ExportStorage::S3(s3))
    }

    fn config(&self, data_dir: &std::path::Path) -> Result<atr_export::ExportConfig> {
        let dir = self
            .export_dir
            .clone()
            .unwrap_or_else(|| data_dir.join("exports"));
        let mut c = atr_export::ExportConfig::new(dir);
        c.storage = self.storage()?;
        c.max_file_bytes = self.export_file_mb.max(1) * 1024 * 1024;
        c.retention = std::time::Duration::from_secs(self.export_retention_hours * 3600);
        c.limits = atr_store::ExportLimits {
            total: self.export_max_jobs,
            per_client: self.export_max_jobs_per_client,
        };
        c.workers = self.export_workers;
        c.lease = std::time::Duration::from_secs(self.export_lease_secs.max(1));
        Ok(c)
    }
}

/// Opens the store named by the arguments, creating the data directory for SQLite.
pub async fn open_store(args: &StoreArgs) -> Result<atr_store::SqlStore> {
    match &args.database {
        Some(url) if args.schema.is_some() => {
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                anyhow::bail!("--schema applies to PostgreSQL only");
            }
            atr_store::SqlStore::open_postgres(url, args.schema.as_deref())
                .await
                .with_context(|| "opening the database".to_string())
        }
        Some(url) => atr_store::SqlStore::open(url)
            .await
            .with_context(|| "opening the database".to_string()),
        None => {
            std::fs::create_dir_all(&args.data_dir)
                .with_context(|| format!("creating data directory {}", args.data_dir.display()))?;
            let path = args.data_dir.join("atr.db");
            atr_store::SqlStore::open_sqlite(&path)
                .await
                .with_context(|| format!("opening {}", path.display()))
        }
    }
}

pub async fn run(args: ServeArgs) -> Result<()> {
    // A bad certificate is found before anything else is touched.
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(atr_server::tls::TlsSettings::from_pem_files(cert, key)?),
        _ => None,
    };
    // The port before the store: a busy port fails at once, with no database made or demo seeded.
    // Connections that arrive while the demo is seeded wait in the listen queue.
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let store = open_store(&args.store).await?;
    if args.demo {
        seed_demo(&store, &args.store).await?;
    }
    let config = ServerConfig {
        base_url: args.base_url.clone(),
        export: args.export.config(&args.store.data_dir)?,
        notify: args.notify.config(),
        limits: args.limits.limits(),
        rate_limit: args.limits.rate_limit(),
        tls,
        ..Default::default()
    };
    let state = atr_server::state_for(&listener, Arc::new(store.clone()), &config)
        .await
        .context("setting up the server")?;
    let base = state.base_url.clone();
    if args.demo {
        let file = demo_client(&store, &args.store, &base, &state.auth.token_url).await?;
        eprintln!(
            "atr: demo Consumer client credentials in {}",
            file.display()
        );
    }
    eprintln!("atr: serving FHIR at {base} (try {base}/metadata)");
    atr_server::serve(listener, state, config).await?;
    Ok(())
}

pub const DEMO_CLIENT_ID: &str = "demo-consumer";
/// The demo Consumer acts for the first provider organisation, whose lists are in every status.
const DEMO_ORG: &str = "org-1";

/// Registers the demo Consumer (once) and writes `<data-dir>/demo-client.json` with what a client
/// needs: its id, the FHIR base and token URLs, its private keys and whom it acts for.
async fn demo_client(
    store: &atr_store::SqlStore,
    args: &StoreArgs,
    base: &str,
    token_url: &str,
) -> Result<std::path::PathBuf> {
    let path = args.data_dir.join("demo-client.json");
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))?;
    let existing: Option<serde_json::Value> = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok());
    let registered = store.client(DEMO_CLIENT_ID).await?.is_some();
    let (private_jwks, identifiers) = match existing {
        Some(doc) if registered => (doc["private_jwks"].clone(), doc["identifiers"].clone()),
        _ => {
            let identifiers = demo_identifiers(store).await?;
            let keys = atr_auth::generate(atr_auth::SigningAlg::Es384)?;
            atr_server::auth::registry::register(
                store,
                atr_server::auth::registry::NewClient {
                    client_id: DEMO_CLIENT_ID.into(),
                    name: "Demo Consumer (Riverside provider organisation)".into(),
                    admin: false,
                    jwks: Some(keys.public.to_json()),
                    jwks_url: None,
                    scopes: vec![
                        "system/*.read".into(),
                        "system/*.rs".into(),
                        "system/Group.cud".into(),
                        "system/Subscription.cruds".into(),
                    ],
                    identifiers: identifiers.clone(),
                },
            )
            .await?;
            let private: serde_json::Value = serde_json::from_str(&keys.private.to_json())?;
            (private, serde_json::json!(identifiers))
        }
    };
    // The base URL may change between runs (another --listen): the file always says the current one.
    let doc = serde_json::json!({
        "client_id": DEMO_CLIENT_ID,
        "fhir_base_url": base,
        "token_url": token_url,
        "scope": "system/*.read",
        "private_jwks": private_jwks,
        "identifiers": identifiers,
    });
    std::fs::write(&path, serde_json::to_string_pretty(&doc)?)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// The demo organisation's NPI and TIN, and the contract identifiers of its lists.
async fn demo_identifiers(store: &atr_store::SqlStore) -> Result<Vec<String>> {
    let org = store
        .read(ResourceType::Organization, DEMO_ORG, None)
        .await?
        .context("the demo data has no Organization/org-1")?;
    let org: serde_json::Value = serde_json::from_slice(&org.body)?;
    let mut ids = Vec::new();
    for ident in org["identifier"].as_array().into_iter().flatten() {
        if let (Some(system), Some(value)) = (ident["system"].as_str(), ident["value"].as_str()) {
            ids.push(format!("{system}|{value}"));
        }
    }
    let npi = ids
        .iter()
        .find(|i| i.starts_with(atr_model::SYSTEM_NPI))
        .context("Organization/org-1 has no NPI")?
        .clone();
    let (system, value) = npi.split_once('|').unwrap_or_default();
    let lists = store
        .search(&SearchQuery {
            rtype: ResourceType::Group,
            clauses: vec![atr_store::Clause::Token {
                param: "identifier",
                any_of: vec![atr_store::TokenMatch {
                    system: Some(system.to_string()),
                    code: Some(value.to_string()),
                }],
            }],
            count: 100,
            after_id: None,
            with_total: false,
            access: atr_store::Access::All,
        })
        .await?;
    for list in lists.matches {
        let group: serde_json::Value = serde_json::from_slice(&list.body)?;
        for ident in group["identifier"].as_array().into_iter().flatten() {
            if let (Some(system), Some(value)) = (ident["system"].as_str(), ident["value"].as_str())
                && system.ends_with("/contract")
            {
                ids.push(format!("{system}|{value}"));
            }
        }
    }
    Ok(ids)
}

/// Demo data: a few payers, provider organisations and lists in every status, generated once.
async fn seed_demo(store: &atr_store::SqlStore, args: &StoreArgs) -> Result<()> {
    let any_group = SearchQuery {
        rtype: ResourceType::Group,
        clauses: vec![],
        count: 0,
        after_id: None,
        with_total: true,
        access: atr_store::Access::All,
    };
    if store.search(&any_group).await?.total.unwrap_or(0) > 0 {
        eprintln!("atr: demo data already present");
        return Ok(());
    }
    let dir = args.data_dir.join("demo-ndjson");
    // Nine lists over four provider organisations: org-1 holds list-1, list-5 and list-9, one in
    // each status (final, draft, open); the others are other providers' lists.
    let mut config = crate::synth_config(400, 9, 2026, 0.4);
    config.provider_orgs = 4;
    atr_synth::generate(&config, &dir).context("generating demo data")?;
    let loaded = crate::load::load_dir(
        store,
        &dir,
        crate::load::DEFAULT_BATCH,
        atr_store::DeferIndexes::Auto,
    )
    .await?;
    eprintln!("atr: seeded {} demo resources", loaded.resources);
    Ok(())
}
