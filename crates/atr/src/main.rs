//! `atr`: the Producer (`serve`) and its data tools (`synth`, `load`, `bench`), and the Consumer
//! (`lists`, `member`).

mod audit;
mod background_priority;
mod bench;
mod bench_exports;
mod bench_notify;
mod clients;
mod consumer;
mod load;
mod roster;
mod serve;
mod token;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};

// glibc's allocator spent half of `atr load`'s time in lock contention and consolidation when one
// thread allocates the parsed resources and another frees them.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "atr",
    version,
    about = "Da Vinci Member Attribution List (ATR): Producer, Consumer and tools",
    after_help = "Producer: atr serve --demo (or atr load DIR, then atr serve).\n\
Consumer, end to end (a profile in ~/.config/atr/config.toml, or --credentials FILE):\n  \
atr lists discover --npi NPI          find the provider's lists\n  \
atr lists pull GROUP                  export it into the consumer store (resumable)\n  \
atr lists show GROUP                  the members\n  \
atr member add|remove GROUP ...       reconcile\n  \
atr lists pull GROUP                  again: incremental\n  \
atr lists diff GROUP                  added, dropped, changed\n  \
atr lists confirm GROUP               the list is final\n  \
atr subscribe GROUP --endpoint URL    then `atr listen`: every change is pulled\n  \
atr unsubscribe GROUP                 when the list is no longer used"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where the Producer keeps its data.
#[derive(Args, Clone, Debug)]
pub struct StoreArgs {
    /// Directory for the SQLite database and export files.
    #[arg(long, env = "ATR_DATA_DIR", default_value = "./atr-data")]
    pub data_dir: PathBuf,
    /// Database URL: `sqlite://PATH` or `postgres://…`. Default: `<data-dir>/atr.db`.
    #[arg(long, env = "ATR_DATABASE_URL")]
    pub database: Option<String>,
    /// PostgreSQL only: work in this schema (created if absent).
    #[arg(long, env = "ATR_DATABASE_SCHEMA")]
    pub schema: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the Producer: a FHIR R4 server for Member Attribution Lists.
    Serve(serve::ServeArgs),
    /// Write a deterministic synthetic payer data set as NDJSON (one file per resource type).
    Synth(SynthArgs),
    /// Load NDJSON files (one resource per line, any of the eight ATR types) into the database.
    Load(load::LoadArgs),
    /// Measure loading, streaming a large Group and Group discovery; prints figures.
    Bench(bench::BenchArgs),
    /// Measure Subscription delivery: many Subscriptions on one Group, one change, then a burst.
    BenchNotify(bench_notify::BenchNotifyArgs),
    /// The access audit log (who exported, changed or subscribed to which list), newest first.
    Audit(audit::AuditArgs),
    /// Manage the SMART Backend Services clients registered with this Producer.
    Clients(clients::ClientsArgs),
    /// Make a key pair for a Consumer (private and public JWK sets).
    Keygen(clients::KeygenArgs),
    /// The payer's side of a list: set its status, replace its roster.
    Roster(roster::RosterArgs),
    /// Get an access token with a credentials file (SMART Backend Services) and print it.
    Token(token::TokenArgs),
    /// Consumer: discover, pull, show, diff and confirm attribution lists.
    Lists(consumer::ListsArgs),
    /// Consumer: reconcile a list's members ($member-add, $member-remove, $attribution-status).
    Member(consumer::MemberArgs),
    /// Consumer: subscribe to a list's changes (atr-list-change, rest-hook, id-only).
    Subscribe(consumer::SubscribeArgs),
    /// Consumer: set this Consumer's Subscriptions on a list to off.
    Unsubscribe(consumer::UnsubscribeArgs),
    /// Consumer: receive notifications and pull each list that changed.
    Listen(consumer::ListenArgs),
}

#[derive(Args)]
struct SynthArgs {
    /// Output directory.
    #[arg(long, default_value = "./synth")]
    out: PathBuf,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Members (Patients, each with a Coverage).
    #[arg(long, default_value_t = 1000)]
    members: u64,
    /// Attribution lists (Groups).
    #[arg(long, default_value_t = 10)]
    lists: u64,
    /// Payer organisations.
    #[arg(long, default_value_t = 2)]
    payers: u64,
    /// Share of members whose main list is the first (largest) list.
    #[arg(long, default_value_t = 0.5)]
    largest_list_share: f64,
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ATR_LOG")
                .unwrap_or_else(|_| "info,sqlx=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let result: Result<()> = match cli.command {
        Command::Serve(args) => serve::run(args).await,
        Command::Synth(args) => synth(args),
        Command::Load(args) => load::run(args).await,
        Command::Bench(args) => bench::run(args).await,
        Command::BenchNotify(args) => bench_notify::run(args).await,
        Command::Clients(args) => clients::run(args).await,
        Command::Audit(args) => audit::run(args).await,
        Command::Keygen(args) => clients::keygen(args),
        Command::Token(args) => token::run(args).await,
        Command::Roster(args) => roster::run(args).await,
        Command::Lists(args) => consumer::lists(args).await,
        Command::Member(args) => consumer::member(args).await,
        Command::Subscribe(args) => consumer::subscribe(args).await,
        Command::Unsubscribe(args) => consumer::unsubscribe(args).await,
        Command::Listen(args) => consumer::listen(args).await,
    };
    if let Err(e) = result {
        eprintln!("atr: {e:#}");
        // Consumer failures say what kind they are (configuration, refused, unreachable, …).
        let code = e
            .downcast_ref::<atr_client::ClientError>()
            .map_or(1, atr_client::ClientError::exit_code);
        std::process::exit(code);
    }
}

pub fn synth_config(members: u64, lists: u64, seed: u64, share: f64) -> atr_synth::SynthConfig {
    atr_synth::SynthConfig {
        seed,
        members,
        lists,
        provider_orgs: lists.max(3),
        largest_list_share: share,
        ..Default::default()
    }
}

fn synth(args: SynthArgs) -> Result<()> {
    let mut config = synth_config(args.members, args.lists, args.seed, args.largest_list_share);
    config.payers = args.payers;
    let started = std::time::Instant::now();
    let summary = atr_synth::generate(&config, &args.out)?;
    for (rtype, n) in &summary.counts {
        println!("{rtype:<18} {n:>10}");
    }
    println!(
        "wrote {} bytes to {} in {:.1?} (largest list: {} entries)",
        summary.bytes,
        args.out.display(),
        started.elapsed(),
        summary.largest_list_members
    );
    Ok(())
}
