//! `atr clients …` (the SMART client registry, on the server's database) and `atr keygen` (a
//! Consumer's key pair).

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use atr_auth::SigningAlg;
use atr_server::auth::registry::{NewClient, check_jwks, check_jwks_url, register};
use atr_store::{ClientRecord, Store};
use clap::{Args, Subcommand};

use crate::StoreArgs;

#[derive(Args)]
pub struct ClientsArgs {
    #[command(flatten)]
    store: StoreArgs,
    #[command(subcommand)]
    command: ClientsCommand,
}

#[derive(Subcommand)]
enum ClientsCommand {
    /// Register a client (replaces one with the same id).
    Add(AddArgs),
    /// List registered clients.
    List,
    /// Show one client.
    Show { client_id: String },
    /// Refuse new tokens and live tokens of a client (within seconds).
    Disable { client_id: String },
    /// Accept a disabled client again.
    Enable { client_id: String },
    /// Replace a client's keys (inline JWK set or JWKS URL).
    RotateKeys(KeysArgs),
}

#[derive(Args)]
struct KeysSource {
    /// File with the client's public JWK set.
    #[arg(long, conflicts_with = "jwks_url")]
    jwks: Option<PathBuf>,
    /// URL the server fetches the client's JWK set from (https; http only on loopback).
    #[arg(long)]
    jwks_url: Option<String>,
}

#[derive(Args)]
struct AddArgs {
    client_id: String,
    /// Display name.
    #[arg(long)]
    name: Option<String>,
    #[command(flatten)]
    keys: KeysSource,
    /// Scopes the client may be granted (repeat or space-separate).
    #[arg(long = "scope", default_value = "system/*.read system/*.rs")]
    scopes: Vec<String>,
    /// `system|value` identifiers (NPI, TIN, contract, settlement entity) the client acts for.
    #[arg(long = "identifier")]
    identifiers: Vec<String>,
    /// A payer administration client: reads and writes every resource.
    #[arg(long)]
    admin: bool,
}

#[derive(Args)]
struct KeysArgs {
    client_id: String,
    #[command(flatten)]
    keys: KeysSource,
}

#[derive(Args)]
pub struct KeygenArgs {
    /// Signing algorithm.
    #[arg(long, default_value = "ES384")]
    alg: SigningAlg,
    /// Where to write the private JWK set (keep it secret).
    #[arg(long, default_value = "atr-client-private.jwks.json")]
    private: PathBuf,
    /// Where to write the public JWK set (hand it to the payer).
    #[arg(long, default_value = "atr-client-public.jwks.json")]
    public: PathBuf,
}

fn read_keys(src: &KeysSource) -> Result<(Option<String>, Option<String>)> {
    match (&src.jwks, &src.jwks_url) {
        (Some(path), None) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            Ok((Some(check_jwks(&text)?), None))
        }
        (None, Some(url)) => {
            check_jwks_url(url)?;
            Ok((None, Some(url.clone())))
        }
        _ => bail!("give the client's keys with --jwks FILE or --jwks-url URL"),
    }
}

fn show(c: &ClientRecord) {
    println!("client_id:   {}", c.client_id);
    println!("name:        {}", c.name);
    println!("enabled:     {}", c.enabled);
    println!("admin:       {}", c.admin);
    match (&c.jwks, &c.jwks_url) {
        (_, Some(url)) => println!("keys:        JWKS URL {url}"),
        (Some(jwks), _) => {
            let kids: Vec<String> = atr_auth::JwkSet::parse(jwks)
                .map(|s| s.keys.iter().filter_map(|k| k.kid.clone()).collect())
                .unwrap_or_default();
            println!("keys:        inline JWK set, kid {}", kids.join(", "));
        }
        _ => println!("keys:        none"),
    }
    println!("scopes:      {}", c.scopes.join(" "));
    println!("identifiers: {}", c.identifiers.join(", "));
}

pub async fn run(args: ClientsArgs) -> Result<()> {
    let store = crate::serve::open_store(&args.store).await?;
    let store: &dyn Store = &store;
    match args.command {
        ClientsCommand::Add(a) => {
            let (jwks, jwks_url) = read_keys(&a.keys)?;
            let scopes = a
                .scopes
                .iter()
                .flat_map(|s| s.split_whitespace())
                .map(str::to_string)
                .collect();
            let record = register(
                store,
                NewClient {
                    name: a.name.unwrap_or_else(|| a.client_id.clone()),
                    client_id: a.client_id,
                    admin: a.admin,
                    jwks,
                    jwks_url,
                    scopes,
                    identifiers: a.identifiers,
                },
            )
            .await?;
            show(&record);
        }
        ClientsCommand::List => {
            let clients = store.clients().await?;
            println!("{:<32} {:<8} {:<6} name", "client_id", "enabled", "admin");
            for c in clients {
                println!(
                    "{:<32} {:<8} {:<6} {}",
                    c.client_id, c.enabled, c.admin, c.name
                );
            }
        }
        ClientsCommand::Show { client_id } => show(&existing(store, &client_id).await?),
        ClientsCommand::Disable { client_id } => set_enabled(store, &client_id, false).await?,
        ClientsCommand::Enable { client_id } => set_enabled(store, &client_id, true).await?,
        ClientsCommand::RotateKeys(k) => {
            let mut c = existing(store, &k.client_id).await?;
            (c.jwks, c.jwks_url) = read_keys(&k.keys)?;
            c.updated_at = atr_server::auth::now_unix();
            store.put_client(&c).await?;
            show(&c);
        }
    }
    Ok(())
}

async fn existing(store: &dyn Store, client_id: &str) -> Result<ClientRecord> {
    store
        .client(client_id)
        .await?
        .with_context(|| format!("no client {client_id:?} is registered"))
}

async fn set_enabled(store: &dyn Store, client_id: &str, enabled: bool) -> Result<()> {
    let mut c = existing(store, client_id).await?;
    c.enabled = enabled;
    c.updated_at = atr_server::auth::now_unix();
    store.put_client(&c).await?;
    println!(
        "{client_id} {}",
        if enabled { "enabled" } else { "disabled" }
    );
    Ok(())
}

pub fn keygen(args: KeygenArgs) -> Result<()> {
    let keys = atr_auth::generate(args.alg)?;
    write_new(&args.private, &keys.private.to_json())?;
    write_new(&args.public, &keys.public.to_json())?;
    println!(
        "wrote {} (private: keep it) and {} (public: register it with the payer)",
        args.private.display(),
        args.public.display()
    );
    println!("{}", keys.public.to_json());
    Ok(())
}

/// Writes a file that must not exist yet (a key file is never overwritten by accident).
fn write_new(path: &PathBuf, text: &str) -> Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .with_context(|| format!("creating {} (it must not exist yet)", path.display()))?;
    f.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}
