//! `atr audit`: the access audit log on the server's database, newest first, as a table (the
//! same entries `GET [base]/AuditEvent` serves to administration clients).

use anyhow::{Context, Result};
use atr_store::{AuditQuery, Store};
use clap::Args;

use crate::StoreArgs;

#[derive(Args)]
pub struct AuditArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// Only entries about this Group (its id, or any `Type/id`).
    #[arg(long)]
    group: Option<String>,
    /// Only entries of this client id.
    #[arg(long)]
    client: Option<String>,
    /// Only entries recorded at or after this FHIR date or instant (e.g. 2026-03-01 or
    /// 2026-03-01T09:00:00Z).
    #[arg(long)]
    since: Option<String>,
    /// Most entries to print.
    #[arg(long, default_value_t = 50)]
    limit: u32,
}

pub async fn run(args: AuditArgs) -> Result<()> {
    let since = match &args.since {
        Some(s) => Some(
            atr_model::instant::parse_fhir_range(s)
                .with_context(|| "--since".to_string())?
                .start,
        ),
        None => None,
    };
    let entity = args.group.as_ref().map(|g| {
        if g.contains('/') {
            g.clone()
        } else {
            format!("Group/{g}")
        }
    });
    let store = crate::serve::open_store(&args.store).await?;
    let events = store
        .audit_events(&AuditQuery {
            since,
            client_id: args.client.clone(),
            entity,
            limit: args.limit.clamp(1, 100_000),
            ..Default::default()
        })
        .await?;
    println!(
        "{:<30} {:<24} {:<6} {:<22} {:<24} {:<6} detail",
        "recorded", "client", "action", "subtype", "entity", "status"
    );
    for e in &events {
        println!(
            "{:<30} {:<24} {:<6} {:<22} {:<24} {:<6} {}",
            atr_model::instant::fhir_instant(e.recorded),
            e.client_id,
            e.action,
            e.subtype,
            e.entity.as_deref().unwrap_or("-"),
            e.status,
            e.detail.as_deref().unwrap_or("")
        );
    }
    Ok(())
}
