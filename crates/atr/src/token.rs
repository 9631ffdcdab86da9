//! `atr token`: an access token from a credentials file (the one `serve --demo` writes, or one a
//! payer hands a provider), printed for `curl -H "Authorization: Bearer …"`.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;

#[derive(Args)]
pub struct TokenArgs {
    /// Credentials file: `client_id`, `token_url`, `private_jwks` (as `serve --demo` writes).
    #[arg(long, default_value = "./atr-data/demo-client.json")]
    credentials: PathBuf,
    /// Scopes to ask for.
    #[arg(long, default_value = "system/*.read")]
    scope: String,
}

pub async fn run(args: TokenArgs) -> Result<()> {
    let text = std::fs::read_to_string(&args.credentials)
        .with_context(|| format!("reading {}", args.credentials.display()))?;
    let doc: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not JSON", args.credentials.display()))?;
    let field = |name: &str| {
        doc[name]
            .as_str()
            .map(str::to_string)
            .with_context(|| format!("{} has no {name}", args.credentials.display()))
    };
    let client_id = field("client_id")?;
    let token_url = field("token_url")?;
    let jwks = atr_auth::JwkSet::parse(&doc["private_jwks"].to_string())
        .context("private_jwks is not a usable JWK set")?;
    let key = jwks
        .keys
        .iter()
        .find(|k| k.has_private_parts())
        .context("private_jwks holds no private key")?;
    let assertion = atr_auth::sign_client_assertion(
        key,
        &client_id,
        &token_url,
        atr_server::auth::now_unix(),
        300,
        &uuid::Uuid::now_v7().to_string(),
    )?;
    let form = format!(
        "grant_type=client_credentials&scope={}&client_assertion_type={}&client_assertion={assertion}",
        encode(&args.scope),
        encode("urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
    );
    let resp = reqwest::Client::new()
        .post(&token_url)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .with_context(|| format!("POST {token_url}"))?;
    let status = resp.status();
    let body: serde_json::Value = resp
        .json()
        .await
        .with_context(|| format!("{token_url} answered {status} without JSON"))?;
    match body["access_token"].as_str() {
        Some(token) if status.is_success() => {
            println!("{token}");
            Ok(())
        }
        _ => bail!(
            "token request refused ({status}): {} {}",
            body["error"].as_str().unwrap_or("?"),
            body["error_description"].as_str().unwrap_or("")
        ),
    }
}

/// `application/x-www-form-urlencoded` value encoding.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}
