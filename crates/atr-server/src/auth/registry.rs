//! Registering SMART clients: what `atr clients add`, the demo and the tests share, so every
//! registration is checked the same way.

use atr_auth::{JwkSet, Scope};
use atr_store::{ClientRecord, Store, StoreError};

use super::now_unix;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("client id {0:?} is not usable: 1-128 characters of letters, digits, '-', '_' or '.'")]
    BadClientId(String),
    #[error("a client needs exactly one of an inline JWK set or a JWKS URL")]
    KeysRequired,
    #[error("the JWK set is not usable: {0}")]
    BadJwks(String),
    #[error("the JWK set holds private key material: register the public keys only")]
    PrivateKeys,
    #[error("JWKS URL {0:?} must be https (plain http only on a loopback address)")]
    InsecureJwksUrl(String),
    #[error("scope {0:?} is not a SMART system scope this server supports")]
    BadScope(String),
    #[error("identifier {0:?} must be written system|value")]
    BadIdentifier(String),
    #[error(
        "a Consumer client needs at least one identifier it acts for (or register it with --admin)"
    )]
    NoIdentifiers,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a registration says.
#[derive(Debug, Clone, Default)]
pub struct NewClient {
    pub client_id: String,
    pub name: String,
    pub admin: bool,
    pub jwks: Option<String>,
    pub jwks_url: Option<String>,
    pub scopes: Vec<String>,
    pub identifiers: Vec<String>,
}

pub fn check_jwks(text: &str) -> Result<String, RegistryError> {
    let set = JwkSet::parse(text).map_err(|e| RegistryError::BadJwks(e.to_string()))?;
    if set.has_private_parts() {
        return Err(RegistryError::PrivateKeys);
    }
    Ok(set.to_json())
}

pub fn check_jwks_url(url: &str) -> Result<(), RegistryError> {
    let allowed = url::Url::parse(url).is_ok_and(|u| match u.scheme() {
        "https" => u.host().is_some(),
        "http" => atr_model::loopback::is_loopback(&u),
        _ => false,
    });
    if allowed {
        Ok(())
    } else {
        Err(RegistryError::InsecureJwksUrl(url.to_string()))
    }
}

fn check(c: &NewClient) -> Result<(), RegistryError> {
    let id_ok = !c.client_id.is_empty()
        && c.client_id.len() <= 128
        && c.client_id
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '-' | '_' | '.'));
    if !id_ok {
        return Err(RegistryError::BadClientId(c.client_id.clone()));
    }
    for s in &c.scopes {
        if Scope::parse(s).is_none() {
            return Err(RegistryError::BadScope(s.clone()));
        }
    }
    for i in &c.identifiers {
        if !i
            .split_once('|')
            .is_some_and(|(s, v)| !s.is_empty() && !v.is_empty())
        {
            return Err(RegistryError::BadIdentifier(i.clone()));
        }
    }
    if !c.admin && c.identifiers.is_empty() {
        return Err(RegistryError::NoIdentifiers);
    }
    Ok(())
}

/// Registers a new client (or replaces one with the same id), after checking everything.
pub async fn register(store: &dyn Store, c: NewClient) -> Result<ClientRecord, RegistryError> {
    check(&c)?;
    let jwks = match (&c.jwks, &c.jwks_url) {
        (Some(text), None) => Some(check_jwks(text)?),
        (None, Some(url)) => {
            check_jwks_url(url)?;
            None
        }
        _ => return Err(RegistryError::KeysRequired),
    };
    let now = now_unix();
    let created_at = store
        .client(&c.client_id)
        .await?
        .map_or(now, |old| old.created_at);
    let record = ClientRecord {
        client_id: c.client_id,
        name: c.name,
        enabled: true,
        admin: c.admin,
        jwks,
        jwks_url: c.jwks_url,
        scopes: c.scopes,
        identifiers: c.identifiers,
        created_at,
        updated_at: now,
    };
    store.put_client(&record).await?;
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::check_jwks_url;

    #[test]
    fn jwks_url_is_https_or_http_to_this_machine_by_its_parsed_host() {
        for ok in [
            "https://provider.example/.well-known/jwks.json",
            "http://127.0.0.1:9000/jwks",
            "http://localhost/jwks",
            "http://[::1]/jwks",
        ] {
            assert!(check_jwks_url(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://localhost.evil.example/jwks",
            "http://127.0.0.1@evil.example/jwks",
            "http://provider.example/jwks",
            "ftp://127.0.0.1/jwks",
            "not a url",
        ] {
            assert!(check_jwks_url(bad).is_err(), "{bad}");
        }
    }
}
