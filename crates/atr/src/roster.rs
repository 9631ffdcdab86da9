//! `atr roster …`: the payer's side of a list, on the server's database: set its status, or
//! replace its roster from the payer's own systems (changeTypes are derived against the previous
//! version).

use std::io::BufRead;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use atr_model::group::{MemberEntry, assign_unique_keys};
use atr_model::validate::{group_profile, validate_group_member};
use atr_model::{EXT_ATTRIBUTED_PROVIDER, EXT_COVERAGE_REFERENCE, LIST_STATUS_CODES, ResourceType};
use atr_store::{MemberChange, ResourceWrite, Store, WriteMode};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::StoreArgs;

#[derive(Args)]
pub struct RosterArgs {
    #[command(flatten)]
    store: StoreArgs,
    #[command(subcommand)]
    command: RosterCommand,
}

#[derive(Subcommand)]
enum RosterCommand {
    /// Set a list's status: draft, open or final (final drops inactive entries).
    Status { group: String, status: String },
    /// Replace a list's roster: NDJSON of Group.member elements, or CSV with the header
    /// `patient,provider,coverage,period_start,period_end[,inactive]` (references as Type/id).
    Reload { group: String, file: PathBuf },
}

pub async fn run(args: RosterArgs) -> Result<()> {
    let store = crate::serve::open_store(&args.store).await?;
    match args.command {
        RosterCommand::Status { group, status } => {
            if !LIST_STATUS_CODES.contains(&status.as_str()) {
                bail!("{status:?} is not a list status: use draft, open or final");
            }
            let out = store
                .change_members(&group, MemberChange::SetStatus(status.clone()), None)
                .await?;
            if out.changed {
                println!("Group/{group} is {} (version {})", out.status, out.version);
            } else {
                println!(
                    "Group/{group} was already {status} (version {})",
                    out.version
                );
            }
        }
        RosterCommand::Reload { group, file } => reload(&store, &group, &file).await?,
    }
    Ok(())
}

fn member_from_csv(line: &str, at: &str) -> Result<Value> {
    let cols: Vec<&str> = line.split(',').map(str::trim).collect();
    let col = |i: usize| cols.get(i).copied().filter(|s| !s.is_empty());
    let patient = col(0).with_context(|| format!("{at}: no patient"))?;
    let mut extension = Vec::new();
    if let Some(c) = col(2) {
        extension.push(json!({"url": EXT_COVERAGE_REFERENCE, "valueReference": {"reference": c}}));
    }
    if let Some(p) = col(1) {
        extension.push(json!({"url": EXT_ATTRIBUTED_PROVIDER, "valueReference": {"reference": p}}));
    }
    let mut m = json!({"extension": extension, "entity": {"reference": patient}});
    if col(3).is_some() || col(4).is_some() {
        let mut period = json!({});
        if let Some(s) = col(3) {
            period["start"] = s.into();
        }
        if let Some(e) = col(4) {
            period["end"] = e.into();
        }
        m["period"] = period;
    }
    m["inactive"] = Value::Bool(matches!(col(5), Some("true" | "1")));
    Ok(m)
}

async fn reload(store: &atr_store::SqlStore, group: &str, file: &PathBuf) -> Result<()> {
    let current = store
        .read(ResourceType::Group, group, None)
        .await?
        .filter(|r| !r.deleted)
        .with_context(|| format!("Group/{group} does not exist"))?;
    let mut header: Value = serde_json::from_slice(&current.body)?;
    if let Some(obj) = header.as_object_mut() {
        obj.remove("meta");
        obj.remove("quantity");
    }
    let profile = group_profile(&header);
    let csv = file.extension().is_some_and(|e| e == "csv");
    let reader = std::io::BufReader::new(
        std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?,
    );
    let mut entries = Vec::new();
    for (n, line) in reader.lines().enumerate() {
        let line = line.with_context(|| format!("reading {}", file.display()))?;
        let at = format!("{}:{}", file.display(), n + 1);
        if line.trim().is_empty() || (csv && n == 0 && line.starts_with("patient")) {
            continue;
        }
        let member: Value = if csv {
            member_from_csv(&line, &at)?
        } else {
            serde_json::from_str(&line).with_context(|| format!("{at}: not JSON"))?
        };
        let issues: Vec<String> = validate_group_member(profile, &member, entries.len())
            .into_iter()
            .filter(atr_model::Issue::is_error)
            .map(|i| i.diagnostics)
            .collect();
        if !issues.is_empty() {
            bail!("{at}: {}", issues.join("; "));
        }
        entries.push(MemberEntry::from_value(&member));
    }
    assign_unique_keys(&mut entries);
    let n = entries.len();
    let out = store
        .write(ResourceWrite {
            rtype: ResourceType::Group,
            id: group.to_string(),
            index: atr_model::index::extract(ResourceType::Group, &header),
            resource: header,
            members: Some(entries),
            mode: WriteMode::Upsert,
            expected_version: Some(current.version),
            prestamped: None,
        })
        .await?;
    println!("Group/{group}: {n} entries, version {}", out.version);
    Ok(())
}
