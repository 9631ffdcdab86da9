//! The SMART client registry, seen assertion ids and the server's token keys.

use super::db::{Arg, Col, Pool, Row};
use crate::{ClientRecord, StoreError, TokenKey};

const CLIENT_COLS: [Col; 10] = [
    Col::Text,
    Col::Text,
    Col::Bool,
    Col::Bool,
    Col::OptText,
    Col::OptText,
    Col::Text,
    Col::Text,
    Col::Int,
    Col::Int,
];

const CLIENT_SELECT: &str = "SELECT client_id, name, enabled, admin, jwks, jwks_url, scopes, identifiers, created_at, updated_at FROM auth_client";

fn list_from(text: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("auth_client list: {e}")))
}

fn client_from(mut r: Row) -> Result<ClientRecord, StoreError> {
    Ok(ClientRecord {
        client_id: r.text(0),
        name: r.text(1),
        enabled: r.bool(2),
        admin: r.bool(3),
        jwks: r.opt_text(4),
        jwks_url: r.opt_text(5),
        scopes: list_from(&r.text(6))?,
        identifiers: list_from(&r.text(7))?,
        created_at: r.int(8),
        updated_at: r.int(9),
    })
}

pub(crate) async fn put_client(pool: &Pool, c: &ClientRecord) -> Result<(), StoreError> {
    let scopes =
        serde_json::to_string(&c.scopes).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let identifiers =
        serde_json::to_string(&c.identifiers).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let mut tx = pool.begin_write().await?;
    tx.execute(
        "INSERT INTO auth_client (client_id, name, enabled, admin, jwks, jwks_url, scopes, identifiers, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
         ON CONFLICT (client_id) DO UPDATE SET name = excluded.name, enabled = excluded.enabled, \
         admin = excluded.admin, jwks = excluded.jwks, jwks_url = excluded.jwks_url, scopes = excluded.scopes, \
         identifiers = excluded.identifiers, updated_at = excluded.updated_at",
        &[
            c.client_id.as_str().into(),
            c.name.as_str().into(),
            c.enabled.into(),
            c.admin.into(),
            c.jwks.clone().into(),
            c.jwks_url.clone().into(),
            scopes.into(),
            identifiers.into(),
            c.created_at.into(),
            c.updated_at.into(),
        ],
    )
    .await?;
    tx.commit().await
}

pub(crate) async fn client(
    pool: &Pool,
    client_id: &str,
) -> Result<Option<ClientRecord>, StoreError> {
    pool.fetch_optional(
        &format!("{CLIENT_SELECT} WHERE client_id = $1"),
        &[client_id.into()],
        &CLIENT_COLS,
    )
    .await?
    .map(client_from)
    .transpose()
}

pub(crate) async fn clients(pool: &Pool) -> Result<Vec<ClientRecord>, StoreError> {
    pool.fetch_all(
        &format!("{CLIENT_SELECT} ORDER BY client_id"),
        &[],
        &CLIENT_COLS,
    )
    .await?
    .into_iter()
    .map(client_from)
    .collect()
}

pub(crate) async fn record_jti(
    pool: &Pool,
    client_id: &str,
    jti: &str,
    expires_at: i64,
    now: i64,
) -> Result<bool, StoreError> {
    let mut tx = pool.begin_write().await?;
    tx.execute("DELETE FROM auth_jti WHERE expires_at < $1", &[now.into()])
        .await?;
    let inserted = tx
        .execute(
            "INSERT INTO auth_jti (client_id, jti, expires_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            &[client_id.into(), jti.into(), expires_at.into()],
        )
        .await?;
    tx.commit().await?;
    Ok(inserted == 1)
}

pub(crate) async fn token_keys(pool: &Pool) -> Result<Vec<TokenKey>, StoreError> {
    Ok(pool
        .fetch_all(
            "SELECT kid, secret, created_at FROM auth_token_key ORDER BY created_at DESC, kid",
            &[],
            &[Col::Text, Col::Bytes, Col::Int],
        )
        .await?
        .into_iter()
        .map(|mut r| TokenKey {
            kid: r.text(0),
            secret: r.bytes(1),
            created_at: r.int(2),
        })
        .collect())
}

pub(crate) async fn add_token_key(pool: &Pool, key: &TokenKey) -> Result<(), StoreError> {
    let mut tx = pool.begin_write().await?;
    tx.execute(
        "INSERT INTO auth_token_key (kid, secret, created_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        &[
            key.kid.as_str().into(),
            Arg::Bytes(key.secret.clone()),
            key.created_at.into(),
        ],
    )
    .await?;
    tx.commit().await
}

pub(crate) async fn retire_token_keys(pool: &Pool, created_before: i64) -> Result<u64, StoreError> {
    let mut tx = pool.begin_write().await?;
    let n = tx
        .execute(
            "DELETE FROM auth_token_key WHERE created_at < $1",
            &[created_before.into()],
        )
        .await?;
    tx.commit().await?;
    Ok(n)
}
