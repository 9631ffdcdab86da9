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
}

/// Opens the store named by the arguments, creating the data directory for SQLite.
pub async fn open_store(args: &StoreArgs) -> Result<atr_store::SqlStore> {
    match &args.database {
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
    let store = open_store(&args.store).await?;
    if args.demo {
        seed_demo(&store, &args.store).await?;
    }
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let config = ServerConfig {
        base_url: args.base_url.clone(),
        ..Default::default()
    };
    let base = atr_server::state_for(&listener, Arc::new(store.clone()), &config)?.base_url;
    eprintln!("atr: serving FHIR at {base} (try {base}/metadata)");
    atr_server::serve(listener, Arc::new(store), config).await?;
    Ok(())
}

/// Demo data: a few payers, provider organisations and lists in every status, generated once.
async fn seed_demo(store: &atr_store::SqlStore, args: &StoreArgs) -> Result<()> {
    let any_group = SearchQuery {
        rtype: ResourceType::Group,
        clauses: vec![],
        count: 0,
        after_id: None,
        with_total: true,
    };
    if store.search(&any_group).await?.total.unwrap_or(0) > 0 {
        eprintln!("atr: demo data already present");
        return Ok(());
    }
    let dir = args.data_dir.join("demo-ndjson");
    let config = crate::synth_config(400, 6, 2026, 0.4);
    atr_synth::generate(&config, &dir).context("generating demo data")?;
    let loaded = crate::load::load_dir(store, &dir, crate::load::DEFAULT_BATCH).await?;
    eprintln!("atr: seeded {} demo resources", loaded.resources);
    Ok(())
}
