//! Profiles: one per payer, in a TOML file, each overridable by flags and environment (the
//! binary's job). A profile may instead point at a credentials JSON (as `atr serve --demo` writes
//! and as a payer may hand out): client id, token URL, FHIR base and private JWKS in one file.
//!
//! ```toml
//! default = "acme"
//!
//! [profiles.acme]
//! fhir_base_url = "https://fhir.acme-health.example/r4"
//! client_id = "riverside-clinic"
//! private_key_file = "riverside.private.jwks.json"   # from `atr keygen`; relative to this file
//! scopes = "system/*.read system/Group.u system/Subscription.cruds"
//! # token_url = "…"   # default: the Producer's .well-known/smart-configuration
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::ClientError;

/// The scopes asked for when a profile names none: read everything, reconcile, subscribe.
pub const DEFAULT_SCOPES: &str = "system/*.read system/Group.u system/Subscription.cruds";

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileEntry {
    pub fhir_base_url: Option<String>,
    pub client_id: Option<String>,
    pub private_key_file: Option<PathBuf>,
    pub credentials_file: Option<PathBuf>,
    pub token_url: Option<String>,
    pub scopes: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub default: Option<String>,
    #[serde(default)]
    pub profiles: BTreeMap<String, ProfileEntry>,
}

impl ConfigFile {
    /// Reads the file; relative key and credentials paths are taken relative to it.
    pub fn load(path: &Path) -> Result<ConfigFile, ClientError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ClientError::Config(format!("reading {}: {e}", path.display())))?;
        let mut file: ConfigFile = toml::from_str(&text)
            .map_err(|e| ClientError::Config(format!("{}: {}", path.display(), e.message())))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        for p in file.profiles.values_mut() {
            for f in [&mut p.private_key_file, &mut p.credentials_file]
                .into_iter()
                .flatten()
            {
                if f.is_relative() {
                    *f = dir.join(&*f);
                }
            }
        }
        Ok(file)
    }
}

/// What the command line (or the environment) says, over the profile.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub config: Option<PathBuf>,
    pub profile: Option<String>,
    pub fhir_base_url: Option<String>,
    pub client_id: Option<String>,
    pub private_key_file: Option<PathBuf>,
    pub credentials_file: Option<PathBuf>,
    pub token_url: Option<String>,
    pub scopes: Option<String>,
}

/// A payer, ready to talk to.
#[derive(Debug, Clone)]
pub struct Profile {
    /// The profile's name (or `default` when everything came from flags).
    pub name: String,
    /// Without a trailing slash.
    pub fhir_base_url: String,
    pub client_id: String,
    /// The private JWK set (JSON).
    pub private_jwks: String,
    pub token_url: Option<String>,
    pub scopes: String,
}

/// The configuration file when none is named: `$XDG_CONFIG_HOME/atr/config.toml` or
/// `~/.config/atr/config.toml`.
pub fn default_config_path() -> Option<PathBuf> {
    if let Some(x) = std::env::var_os("XDG_CONFIG_HOME") {
        return Some(PathBuf::from(x).join("atr/config.toml"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config/atr/config.toml"))
}

impl Profile {
    /// The profile named (or the file's default), with `overrides` on top. A named config file
    /// must exist; the default one may be absent when flags say everything.
    pub fn resolve(o: &Overrides) -> Result<Profile, ClientError> {
        let file = match &o.config {
            Some(path) => ConfigFile::load(path)?,
            None => match default_config_path().filter(|p| p.exists()) {
                Some(path) => ConfigFile::load(&path)?,
                None => ConfigFile::default(),
            },
        };
        let name = o.profile.clone().or(file.default.clone());
        let entry = match &name {
            Some(n) => file.profiles.get(n).cloned().ok_or_else(|| {
                ClientError::Config(format!(
                    "no profile {n:?} in the configuration (profiles: {})",
                    if file.profiles.is_empty() {
                        "none".to_string()
                    } else {
                        file.profiles.keys().cloned().collect::<Vec<_>>().join(", ")
                    }
                ))
            })?,
            None if file.profiles.len() == 1 => {
                file.profiles.values().next().cloned().unwrap_or_default()
            }
            None => ProfileEntry::default(),
        };
        let credentials_path = o
            .credentials_file
            .clone()
            .or(entry.credentials_file.clone());
        let credentials: Option<serde_json::Value> = match &credentials_path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    ClientError::Config(format!("reading credentials {}: {e}", path.display()))
                })?;
                Some(serde_json::from_str(&text).map_err(|e| {
                    ClientError::Config(format!("credentials {} are not JSON: {e}", path.display()))
                })?)
            }
            None => None,
        };
        let from_credentials = |field: &str| {
            credentials
                .as_ref()
                .and_then(|c| c[field].as_str())
                .map(str::to_string)
        };
        // The flag, else the profile, else the credentials file.
        let required =
            |flag: &Option<String>, profile: &Option<String>, field: &str, what: &str| {
                flag.clone()
                    .or(profile.clone())
                    .or_else(|| from_credentials(field))
                    .ok_or_else(|| {
                        ClientError::Config(format!("no {what}, a profile or a credentials file"))
                    })
            };
        let fhir_base_url = required(
            &o.fhir_base_url,
            &entry.fhir_base_url,
            "fhir_base_url",
            "FHIR base URL: give --base-url",
        )?;
        let client_id = required(
            &o.client_id,
            &entry.client_id,
            "client_id",
            "client id: give --client-id",
        )?;
        let private_jwks = match o
            .private_key_file
            .clone()
            .or(entry.private_key_file.clone())
        {
            Some(path) => std::fs::read_to_string(&path).map_err(|e| {
                ClientError::Config(format!("reading the private key {}: {e}", path.display()))
            })?,
            None => match credentials.as_ref().map(|c| &c["private_jwks"]) {
                Some(v) if v.is_object() => v.to_string(),
                _ => {
                    return Err(ClientError::Config(
                        "no private key: give --key (a JWK set from `atr keygen`), a profile or a credentials file".into(),
                    ));
                }
            },
        };
        Ok(Profile {
            name: name.unwrap_or_else(|| "default".into()),
            fhir_base_url: fhir_base_url.trim_end_matches('/').to_string(),
            client_id,
            private_jwks,
            token_url: o
                .token_url
                .clone()
                .or(entry.token_url.clone())
                .or_else(|| from_credentials("token_url")),
            scopes: o
                .scopes
                .clone()
                .or(entry.scopes.clone())
                .unwrap_or_else(|| DEFAULT_SCOPES.to_string()),
        })
    }
}
