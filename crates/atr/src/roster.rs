//! `atr roster …`: the payer's side of a list, on the server's database: set its status, or
//! replace its roster from the payer's own systems (changeTypes are derived against the previous
//! version).

use std::io::BufRead;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use atr_model::contract::DateSpan;
use atr_model::group::{MemberEntry, assign_unique_keys};
use atr_model::validate::{GroupProfile, group_profile, validate_group_member};
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

/// One roster line (NDJSON or CSV) as a `Group.member` element that passed the list profile's
/// member rules; `at` (`file:line`) and the reasons otherwise.
fn roster_member(
    line: &str,
    csv: bool,
    profile: GroupProfile,
    contract: Option<&DateSpan>,
    index: usize,
    at: &str,
) -> Result<Value> {
    let member: Value = if csv {
        member_from_csv(line, at)?
    } else {
        serde_json::from_str(line).with_context(|| format!("{at}: not JSON"))?
    };
    let outside = member.get("period").and_then(|period| {
        atr_model::contract::attribution_period_issue(contract, period, "Group.member.period")
    });
    let issues: Vec<String> = validate_group_member(profile, &member, index)
        .into_iter()
        .filter(atr_model::Issue::is_error)
        .chain(outside)
        .map(|i| i.diagnostics)
        .collect();
    if !issues.is_empty() {
        bail!("{at}: {}", issues.join("; "));
    }
    Ok(member)
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
    let contract = atr_model::contract::contract_period(&header);
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
        let member = roster_member(&line, csv, profile, contract.as_ref(), entries.len(), &at)?;
        entries.push(MemberEntry::from_value(&member));
    }
    assign_unique_keys(&mut entries);
    let n = entries.len();
    let out = store
        .write(ResourceWrite {
            rtype: ResourceType::Group,
            id: group.to_string(),
            claims: atr_model::contract::unique_claims(ResourceType::Group, &header),
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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use proptest::sample::select;

    use super::*;

    const REFERENCES: &[&str] = &[
        "Patient/p1",
        "Patient/p2",
        "Practitioner/pr1",
        "Organization/o1",
        "Coverage/c1",
        "Coverage/c1#2",
        "#c1",
        "",
        "Patient/",
        "not a reference",
        "http://example.org/fhir/Patient/p1",
    ];
    const DATES: &[&str] = &[
        "",
        "2026-01-01",
        "2025-12-31",
        "2026-02-30",
        "20260101",
        "x",
    ];

    /// NDJSON lines: a member element with some of its parts, sometimes cut or with junk.
    fn ndjson_line() -> impl Strategy<Value = String> {
        (
            select(REFERENCES),
            prop::option::of(select(REFERENCES)),
            prop::option::of(select(REFERENCES)),
            prop::option::of((select(DATES), select(DATES))),
            prop::option::of(any::<bool>()),
            any::<prop::sample::Index>(),
            0..3u8,
        )
            .prop_map(|(patient, provider, coverage, period, inactive, cut, damage)| {
                let mut extension = Vec::new();
                if let Some(p) = provider {
                    extension.push(json!({"url": EXT_ATTRIBUTED_PROVIDER, "valueReference": {"reference": p}}));
                }
                if let Some(c) = coverage {
                    extension.push(json!({"url": EXT_COVERAGE_REFERENCE, "valueReference": {"reference": c}}));
                }
                let mut m = json!({"entity": {"reference": patient}, "extension": extension});
                if let Some((s, e)) = period {
                    m["period"] = json!({"start": s, "end": e});
                }
                if let Some(i) = inactive {
                    m["inactive"] = i.into();
                }
                let text = m.to_string();
                match damage {
                    0 => text,
                    1 => text[..cut.index(text.len())].to_string(),
                    _ => format!("[{text}]"),
                }
            })
    }

    fn csv_line() -> impl Strategy<Value = String> {
        prop::collection::vec(
            prop_oneof![
                select(REFERENCES),
                select(DATES),
                select(&["true", "1", "no"][..])
            ],
            0..8,
        )
        .prop_map(|cols| cols.join(","))
    }

    proptest! {
        #[test]
        fn any_line_is_a_member_or_an_error_naming_the_line(
            line in any::<String>(),
            csv in any::<bool>(),
            patient_list in any::<bool>(),
        ) {
            let profile = if patient_list { GroupProfile::PatientList } else { GroupProfile::AttributionList };
            if let Err(e) = roster_member(&line, csv, profile, None, 0, "roster.ndjson:7") {
                let text = format!("{e:#}");
                prop_assert!(text.starts_with("roster.ndjson:7"), "{}", text);
            }
        }

        #[test]
        fn near_valid_rosters_become_rows_with_unique_keys(
            ndjson in prop::collection::vec(ndjson_line(), 0..12),
            csv in prop::collection::vec(csv_line(), 0..12),
        ) {
            let mut entries = Vec::new();
            for (line, is_csv) in ndjson.iter().map(|l| (l, false)).chain(csv.iter().map(|l| (l, true))) {
                match roster_member(line, is_csv, GroupProfile::AttributionList, None, entries.len(), "f:1") {
                    Ok(member) => entries.push(MemberEntry::from_value(&member)),
                    Err(e) => {
                        let text = format!("{e:#}");
                        prop_assert!(text.starts_with("f:1"), "{}", text);
                    }
                }
            }
            assign_unique_keys(&mut entries);
            let mut keys: Vec<&str> = entries.iter().map(|e| e.key.as_str()).collect();
            keys.sort_unstable();
            let n = keys.len();
            keys.dedup();
            prop_assert_eq!(keys.len(), n, "member keys must be unique in a roster");
        }
    }
}
