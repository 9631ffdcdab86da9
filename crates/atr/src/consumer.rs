//! The Consumer's commands: `atr lists …` (discover, pull, pulls, show, diff, confirm),
//! `atr member …` (add, remove, status), `atr subscribe`, `atr unsubscribe` and `atr listen`.
//! The work is `atr-client`'s; this module reads flags and prints tables, JSON or CSV.

use std::path::PathBuf;

use anyhow::Result;
use atr_client::discover::{Criteria, ListSummary, discover, pick_for_contract};
use atr_client::pull::{PullOptions, pull};
use atr_client::reconcile::{self, MemberSelector, OperationResult};
use atr_client::store::{MemberRow, PullRecord};
use atr_client::{ClientError, ConsumerStore, Fhir, Overrides, Profile};
use clap::{Args, Subcommand};

/// Which payer, with which key; each flag overrides the profile.
#[derive(Args, Clone, Debug)]
pub struct ConnectArgs {
    /// Profiles file (TOML). Default: ~/.config/atr/config.toml when it exists.
    #[arg(long, env = "ATR_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// The payer's profile in that file (default: its `default`, or its only profile).
    #[arg(long, env = "ATR_PROFILE", global = true)]
    profile: Option<String>,
    /// The payer's FHIR base URL.
    #[arg(long, env = "ATR_FHIR_BASE_URL", global = true)]
    base_url: Option<String>,
    #[arg(long, env = "ATR_CLIENT_ID", global = true)]
    client_id: Option<String>,
    /// Private JWK set (from `atr keygen`).
    #[arg(long, env = "ATR_KEY_FILE", global = true)]
    key: Option<PathBuf>,
    /// A credentials JSON (client_id, token_url, fhir_base_url, private_jwks), as `serve --demo` writes.
    #[arg(long, env = "ATR_CREDENTIALS", global = true)]
    credentials: Option<PathBuf>,
    /// Token endpoint (default: from the Producer's .well-known/smart-configuration).
    #[arg(long, env = "ATR_TOKEN_URL", global = true)]
    token_url: Option<String>,
    /// Scopes to ask for (space-separated).
    #[arg(long, env = "ATR_SCOPES", global = true)]
    scopes: Option<String>,
    /// The consumer store: pulls, snapshots and their NDJSON files.
    #[arg(
        long,
        env = "ATR_CONSUMER_STORE",
        default_value = "./atr-consumer",
        global = true
    )]
    store: PathBuf,
    /// Machine-readable output.
    #[arg(long, global = true)]
    json: bool,
}

impl ConnectArgs {
    fn profile(&self) -> Result<Profile, ClientError> {
        Profile::resolve(&Overrides {
            config: self.config.clone(),
            profile: self.profile.clone(),
            fhir_base_url: self.base_url.clone(),
            client_id: self.client_id.clone(),
            private_key_file: self.key.clone(),
            credentials_file: self.credentials.clone(),
            token_url: self.token_url.clone(),
            scopes: self.scopes.clone(),
        })
    }

    async fn fhir(&self) -> Result<Fhir, ClientError> {
        Fhir::connect(&self.profile()?).await
    }

    fn open_store(&self) -> Result<ConsumerStore, ClientError> {
        ConsumerStore::open(&self.store)
    }

    /// The FHIR base this store keys its pulls by, without connecting.
    fn base(&self) -> Result<String, ClientError> {
        Ok(self.profile()?.fhir_base_url)
    }
}

#[derive(Args)]
pub struct ListsArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    #[command(subcommand)]
    command: ListsCommand,
}

#[derive(Subcommand)]
enum ListsCommand {
    /// Find attribution lists (always `_summary=true`: no members).
    Discover {
        #[arg(long)]
        npi: Option<String>,
        #[arg(long)]
        tin: Option<String>,
        /// `system|value`, `|value` or `value`.
        #[arg(long)]
        identifier: Option<String>,
        #[arg(long)]
        name: Option<String>,
        /// Pick the one list for this contract identifier (`system|value`) …
        #[arg(long)]
        contract: Option<String>,
        /// … valid on this date (YYYY-MM-DD; default today).
        #[arg(long, requires = "contract")]
        on: Option<String>,
    },
    /// Export a list into the consumer store (resumes an interrupted pull of it).
    Pull {
        group: String,
        /// `_since` (an instant); default: since the last complete pull of this list.
        #[arg(long, conflicts_with = "full")]
        since: Option<String>,
        /// Everything, whatever was pulled before.
        #[arg(long)]
        full: bool,
        /// Files downloaded at once.
        #[arg(long, default_value_t = 4)]
        parallel: usize,
        /// No progress bars.
        #[arg(long)]
        quiet: bool,
        /// Download uncompressed (faster when the network is not the limit).
        #[arg(long)]
        no_gzip: bool,
    },
    /// The pulls of a list kept in the store.
    Pulls { group: String },
    /// The members of a pull (default: the latest complete one).
    Show {
        group: String,
        #[arg(long)]
        pull: Option<i64>,
        #[arg(long, conflicts_with = "json")]
        csv: bool,
    },
    /// Members added, dropped and changed between two pulls (default: the last two).
    Diff {
        group: String,
        #[arg(long)]
        from: Option<i64>,
        #[arg(long)]
        to: Option<i64>,
        #[arg(long, conflicts_with = "json")]
        csv: bool,
    },
    /// `$confirm-attribution-list`: the list becomes final.
    Confirm { group: String },
}

#[derive(Args)]
pub struct MemberArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    #[command(subcommand)]
    command: MemberCommand,
}

/// Who: `--member-id` [+ `--npi`], or `--patient` [+ `--provider` [+ `--coverage`]].
#[derive(Args, Clone, Debug)]
struct Who {
    /// The payer's member id (`system|value` or `value`).
    #[arg(long)]
    member_id: Option<String>,
    /// The attributed provider's NPI.
    #[arg(long)]
    npi: Option<String>,
    /// `Patient/id`.
    #[arg(long)]
    patient: Option<String>,
    /// `Practitioner/id`, `PractitionerRole/id` or `Organization/id`.
    #[arg(long)]
    provider: Option<String>,
    /// `Coverage/id`.
    #[arg(long)]
    coverage: Option<String>,
    /// Only change the list if it is still at this version (`If-Match`).
    #[arg(long)]
    if_match: Option<String>,
}

impl Who {
    fn selector(&self) -> MemberSelector {
        MemberSelector {
            member_id: self.member_id.clone(),
            provider_npi: self.npi.clone(),
            patient: self.patient.clone(),
            provider: self.provider.clone(),
            coverage: self.coverage.clone(),
            ..Default::default()
        }
    }
}

#[derive(Subcommand)]
enum MemberCommand {
    /// `$member-add`.
    Add {
        group: String,
        #[command(flatten)]
        who: Who,
        /// Attribution period start (YYYY-MM-DD).
        #[arg(long)]
        start: Option<String>,
        #[arg(long)]
        end: Option<String>,
    },
    /// `$member-remove`.
    Remove {
        group: String,
        #[command(flatten)]
        who: Who,
    },
    /// `$attribution-status`: the member's entries on the list.
    Status {
        group: String,
        #[command(flatten)]
        who: Who,
    },
}

/// `println!` that ends the process quietly when stdout is closed (`atr lists show G | head`).
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout().lock(), $($arg)*) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(0);
            }
        }
    }};
}

fn print_json(v: &impl serde::Serialize) -> Result<()> {
    out!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

fn dash(v: &Option<String>) -> &str {
    v.as_deref().unwrap_or("-")
}

/// Rows as aligned columns.
fn table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let parts: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect();
        out!("{}", parts.join("  ").trim_end());
    };
    line(header.iter().map(|h| h.to_string()).collect());
    for r in rows {
        line(r.clone());
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn csv(header: &[&str], rows: &[Vec<String>]) {
    out!("{}", header.join(","));
    for r in rows {
        out!(
            "{}",
            r.iter().map(|c| csv_field(c)).collect::<Vec<_>>().join(",")
        );
    }
}

fn identifiers(l: &ListSummary) -> String {
    l.identifiers
        .iter()
        .map(|i| match &i.kind {
            Some(k) => format!("{k} {}", i.value),
            None => i.value.clone(),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The exit code of a command stopped by Ctrl-C (128 + SIGINT, as shells report it).
const INTERRUPTED: i32 = 130;

pub async fn lists(args: ListsArgs) -> Result<()> {
    let c = &args.connect;
    match args.command {
        ListsCommand::Discover {
            npi,
            tin,
            identifier,
            name,
            contract,
            on,
        } => {
            let fhir = c.fhir().await?;
            // The contract identifier alone is enough to search by.
            let identifier = match (&identifier, &npi, &tin, &name, &contract) {
                (None, None, None, None, Some(contract)) => Some(contract.clone()),
                _ => identifier,
            };
            let found = discover(
                &fhir,
                &Criteria {
                    npi,
                    tin,
                    identifier,
                    name,
                },
            )
            .await?;
            let found = match &contract {
                Some(id) => {
                    let date = on.unwrap_or_else(today);
                    let picked =
                        pick_for_contract(&found, id, &date)
                            .cloned()
                            .ok_or_else(|| {
                                ClientError::NotFound(format!(
                                    "no list for contract {id} valid on {date} among the {} found",
                                    found.len()
                                ))
                            })?;
                    vec![picked]
                }
                None => found,
            };
            if c.json {
                return print_json(&found);
            }
            let rows: Vec<Vec<String>> = found
                .iter()
                .map(|l| {
                    vec![
                        l.id.clone(),
                        dash(&l.name).to_string(),
                        dash(&l.status).to_string(),
                        format!("{}..{}", dash(&l.period_start), dash(&l.period_end)),
                        l.member_count.map_or("-".into(), |n| n.to_string()),
                        identifiers(l),
                    ]
                })
                .collect();
            table(
                &[
                    "ID",
                    "NAME",
                    "STATUS",
                    "CONTRACT PERIOD",
                    "MEMBERS",
                    "IDENTIFIERS",
                ],
                &rows,
            );
            Ok(())
        }
        ListsCommand::Pull {
            group,
            since,
            full,
            parallel,
            quiet,
            no_gzip,
        } => {
            let fhir = c.fhir().await?;
            let mut store = c.open_store()?;
            let options = PullOptions {
                since,
                full,
                parallel,
                progress: !quiet && !c.json && std::io::IsTerminal::is_terminal(&std::io::stderr()),
                gzip: !no_gzip,
                ..Default::default()
            };
            let report = tokio::select! {
                // Listed first so the handler is in place before the pull starts.
                biased;
                _ = tokio::signal::ctrl_c() => {
                    // The pull is dropped here: what it stored stays, as after any interruption.
                    if options.progress {
                        eprintln!();
                    }
                    eprintln!(
                        "atr: pull of Group/{group} interrupted; run the same command again to resume it"
                    );
                    std::process::exit(INTERRUPTED);
                }
                report = pull(&fhir, &mut store, &group, &options) => report?,
            };
            if c.json {
                return print_json(&report);
            }
            out!(
                "pull {}{} of Group/{} ({}{}): {} members, {} resources in {} files ({} bytes); transactionTime {}",
                report.pull_id,
                if report.resumed { " (resumed)" } else { "" },
                report.group_id,
                report.operation,
                report
                    .since
                    .as_deref()
                    .map(|s| format!(", since {s}"))
                    .unwrap_or_default(),
                report.members,
                report.resources,
                report.files,
                report.bytes,
                report.transaction_time.as_deref().unwrap_or("-"),
            );
            out!(
                "export {:.1} s, download {:.1} s, check and store {:.1} s{}",
                report.export_seconds,
                report.download_seconds,
                report.store_seconds,
                peak_rss_mb()
                    .map(|mb| format!("; peak memory {mb:.0} MB"))
                    .unwrap_or_default()
            );
            if report.producer_errors > 0 {
                out!(
                    "the Producer reported {} issues in its error files",
                    report.producer_errors
                );
            }
            Ok(())
        }
        ListsCommand::Pulls { group } => {
            let store = c.open_store()?;
            let pulls = store.pulls(&c.base()?, &group)?;
            if c.json {
                return print_json(&pulls);
            }
            let rows: Vec<Vec<String>> = pulls
                .iter()
                .map(|p| {
                    vec![
                        p.id.to_string(),
                        p.state.clone(),
                        dash(&p.since).to_string(),
                        dash(&p.transaction_time).to_string(),
                        p.member_count.map_or("-".into(), |n| n.to_string()),
                        dash(&p.error).to_string(),
                    ]
                })
                .collect();
            table(
                &[
                    "PULL",
                    "STATE",
                    "SINCE",
                    "TRANSACTION TIME",
                    "MEMBERS",
                    "ERROR",
                ],
                &rows,
            );
            Ok(())
        }
        ListsCommand::Show {
            group,
            pull,
            csv: as_csv,
        } => {
            let store = c.open_store()?;
            let p = chosen_pull(&store, &c.base()?, &group, pull)?;
            let members = store.members(p.id)?;
            if c.json {
                return print_json(&members);
            }
            let header = [
                "NAME",
                "MEMBER ID",
                "PATIENT",
                "PROVIDER",
                "COVERAGE",
                "PLAN",
                "PERIOD",
                "CHANGE",
                "INACTIVE",
            ];
            let rows: Vec<Vec<String>> = members.iter().map(member_cells).collect();
            if as_csv {
                csv(&header, &rows);
            } else {
                table(&header, &rows);
            }
            Ok(())
        }
        ListsCommand::Diff {
            group,
            from,
            to,
            csv: as_csv,
        } => {
            let store = c.open_store()?;
            let base = c.base()?;
            let complete: Vec<PullRecord> = store
                .pulls(&base, &group)?
                .into_iter()
                .filter(|p| p.state == "complete")
                .collect();
            let to = match to {
                Some(id) => chosen_pull(&store, &base, &group, Some(id))?,
                None => complete.last().cloned().ok_or_else(|| {
                    ClientError::NotFound(format!("no complete pull of Group/{group} in the store"))
                })?,
            };
            let from = match from {
                Some(id) => chosen_pull(&store, &base, &group, Some(id))?,
                None => complete
                    .iter()
                    .rev()
                    .find(|p| p.id < to.id)
                    .cloned()
                    .ok_or_else(|| {
                        ClientError::NotFound(format!(
                            "Group/{group} has no complete pull before pull {}: pull it again to compare",
                            to.id
                        ))
                    })?,
            };
            let changes = atr_client::diff::diff(&store.members(from.id)?, &store.members(to.id)?);
            if c.json {
                return print_json(&serde_json::json!({
                    "group": group, "from": from.id, "to": to.id, "changes": changes,
                }));
            }
            let header = ["CHANGE", "NAME", "MEMBER ID", "PATIENT", "WHAT"];
            let rows: Vec<Vec<String>> = changes
                .iter()
                .map(|ch| {
                    vec![
                        ch.change.to_string(),
                        dash(&ch.name).to_string(),
                        dash(&ch.member_id).to_string(),
                        ch.patient.clone(),
                        ch.details.join("; "),
                    ]
                })
                .collect();
            if as_csv {
                csv(&header, &rows);
            } else {
                out!(
                    "Group/{group}: pull {} -> pull {}: {} added, {} dropped, {} changed",
                    from.id,
                    to.id,
                    changes.iter().filter(|c| c.change == "added").count(),
                    changes.iter().filter(|c| c.change == "dropped").count(),
                    changes.iter().filter(|c| c.change == "changed").count(),
                );
                table(&header, &rows);
            }
            Ok(())
        }
        ListsCommand::Confirm { group } => {
            let fhir = c.fhir().await?;
            let r = reconcile::confirm(&fhir, &group).await?;
            report_operation(c.json, &format!("Group/{group} confirmed"), &r)
        }
    }
}

pub async fn member(args: MemberArgs) -> Result<()> {
    let c = &args.connect;
    let fhir = c.fhir().await?;
    match args.command {
        MemberCommand::Add {
            group,
            who,
            start,
            end,
        } => {
            let mut s = who.selector();
            s.period_start = start;
            s.period_end = end;
            let r = reconcile::member_add(&fhir, &group, &s, who.if_match.as_deref()).await?;
            report_operation(c.json, &format!("added to Group/{group}"), &r)
        }
        MemberCommand::Remove { group, who } => {
            let r =
                reconcile::member_remove(&fhir, &group, &who.selector(), who.if_match.as_deref())
                    .await?;
            report_operation(c.json, &format!("removed from Group/{group}"), &r)
        }
        MemberCommand::Status { group, who } => {
            let r = reconcile::attribution_status(&fhir, &group, &who.selector()).await?;
            if c.json {
                return print_json(&r.body);
            }
            let entries = r.body["entry"].as_array().cloned().unwrap_or_default();
            let on_list = entries
                .iter()
                .find(|e| e["resource"]["resourceType"] == "Group")
                .and_then(|e| e["resource"]["member"].as_array().cloned())
                .unwrap_or_default();
            out!("{} entries on Group/{group}:", on_list.len());
            for m in on_list {
                let provider = m["extension"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|e| e["url"] == atr_model::EXT_ATTRIBUTED_PROVIDER)
                    .and_then(|e| e["valueReference"]["reference"].as_str())
                    .unwrap_or("-");
                out!(
                    "  {} provider {provider}, period {}..{}{}",
                    m["entity"]["reference"].as_str().unwrap_or("-"),
                    m["period"]["start"].as_str().unwrap_or("-"),
                    m["period"]["end"].as_str().unwrap_or("-"),
                    if m["inactive"] == true {
                        " (inactive)"
                    } else {
                        ""
                    }
                );
            }
            Ok(())
        }
    }
}

#[derive(Args)]
pub struct SubscribeArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    group: String,
    /// Where the Producer posts notifications (`atr listen` serves it).
    #[arg(long)]
    endpoint: String,
    /// Ask for a heartbeat after this many seconds without a notification.
    #[arg(long)]
    heartbeat: Option<u32>,
}

#[derive(Args)]
pub struct UnsubscribeArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    group: String,
}

#[derive(Args)]
pub struct ListenArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// Address to listen on (the Subscription's endpoint must reach it).
    #[arg(long, default_value = "127.0.0.1:9090")]
    listen: std::net::SocketAddr,
    /// Only record events; do not pull.
    #[arg(long)]
    no_pull: bool,
    /// Do not pull every subscribed list at start.
    #[arg(long)]
    no_catch_up: bool,
}

pub async fn subscribe(args: SubscribeArgs) -> Result<()> {
    let c = &args.connect;
    let fhir = c.fhir().await?;
    let store = c.open_store()?;
    let s = atr_client::subscribe::subscribe(
        &fhir,
        &store,
        &args.group,
        &args.endpoint,
        args.heartbeat,
    )
    .await?;
    if c.json {
        return print_json(&s);
    }
    out!(
        "Subscription/{} on Group/{} to {}: {} (the Producer sends a handshake; `atr listen` answers it)",
        s.id,
        s.group_id,
        s.endpoint,
        s.status
    );
    Ok(())
}

pub async fn unsubscribe(args: UnsubscribeArgs) -> Result<()> {
    let c = &args.connect;
    let fhir = c.fhir().await?;
    let store = c.open_store()?;
    let ids = atr_client::subscribe::unsubscribe(&fhir, &store, &args.group).await?;
    if c.json {
        return print_json(&ids);
    }
    for id in ids {
        out!("Subscription/{id} on Group/{} is off", args.group);
    }
    Ok(())
}

pub async fn listen(args: ListenArgs) -> Result<()> {
    let c = &args.connect;
    let fhir = c.fhir().await?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| ClientError::Config(format!("listening on {}: {e}", args.listen)))?;
    let config = atr_client::listen::ListenConfig {
        store_dir: c.store.clone(),
        pull: !args.no_pull,
        catch_up: !args.no_catch_up,
        pull_options: PullOptions::default(),
    };
    let (addr, mut events) = atr_client::listen::start(listener, fhir, config).await?;
    eprintln!("atr: listening for notifications on http://{addr}/");
    while let Some(e) = events.recv().await {
        if c.json {
            out!("{}", serde_json::to_string(&e)?);
            continue;
        }
        use atr_client::listen::ListenEvent as E;
        match e {
            E::Handshake { subscription } => out!("handshake of Subscription/{subscription}"),
            E::Heartbeat { subscription } => out!("heartbeat of Subscription/{subscription}"),
            E::Events {
                subscription,
                numbers,
                recovered,
            } => {
                let gap = if recovered.is_empty() {
                    String::new()
                } else {
                    format!(" (missed {recovered:?}, fetched with $events)")
                };
                out!("Subscription/{subscription}: events {numbers:?}{gap}")
            }
            E::Duplicate {
                subscription,
                numbers,
            } => out!("Subscription/{subscription}: events {numbers:?} again (already handled)"),
            E::Pulled {
                group,
                pull_id,
                members,
            } => out!("pulled Group/{group}: pull {pull_id}, {members} members"),
            E::PullFailed { group, error } => out!("pulling Group/{group} failed: {error}"),
            E::Rejected { status, reason } => out!("refused a notification ({status}): {reason}"),
        }
    }
    Ok(())
}

fn report_operation(json: bool, done: &str, r: &OperationResult) -> Result<()> {
    if json {
        return print_json(r);
    }
    let version = r
        .group_version
        .as_deref()
        .map(|v| format!(" (list version {v})"))
        .unwrap_or_default();
    if r.message.is_empty() {
        out!("{done}{version}");
    } else {
        out!("{done}{version}: {}", r.message);
    }
    Ok(())
}

fn member_cells(m: &MemberRow) -> Vec<String> {
    vec![
        dash(&m.name).to_string(),
        dash(&m.member_id).to_string(),
        m.patient.clone(),
        match (&m.provider_name, &m.provider) {
            (Some(n), Some(p)) => format!("{n} ({p})"),
            (_, p) => dash(p).to_string(),
        },
        dash(&m.coverage).to_string(),
        dash(&m.plan).to_string(),
        format!("{}..{}", dash(&m.period_start), dash(&m.period_end)),
        dash(&m.change_type).to_string(),
        if m.inactive {
            "yes".into()
        } else {
            String::new()
        },
    ]
}

fn chosen_pull(
    store: &ConsumerStore,
    base: &str,
    group: &str,
    id: Option<i64>,
) -> Result<PullRecord, ClientError> {
    let pulls = store.pulls(base, group)?;
    let found = match id {
        Some(id) => pulls.into_iter().find(|p| p.id == id),
        None => pulls.into_iter().rev().find(|p| p.state == "complete"),
    };
    let p = found.ok_or_else(|| {
        ClientError::NotFound(match id {
            Some(id) => format!("no pull {id} of Group/{group} in the store"),
            None => format!(
                "no complete pull of Group/{group} in the store: run `atr lists pull {group}`"
            ),
        })
    })?;
    if p.state != "complete" {
        return Err(ClientError::NotFound(format!(
            "pull {} of Group/{group} is {}, not complete",
            p.id, p.state
        )));
    }
    Ok(p)
}

/// This process's peak resident memory (Linux), for the pull summary.
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

fn today() -> String {
    let now = atr_model::instant::fhir_instant(atr_model::instant::now_micros());
    now.chars().take(10).collect()
}
