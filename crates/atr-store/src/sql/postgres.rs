//! PostgreSQL: for several server instances sharing one database.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use super::migrate::Migration;
use crate::StoreError;

pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "resources",
        sql: include_str!("../../migrations/postgres/0001_resources.sql"),
    },
    Migration {
        version: 2,
        name: "auth",
        sql: include_str!("../../migrations/postgres/0002_auth.sql"),
    },
    Migration {
        version: 3,
        name: "provenance",
        sql: include_str!("../../migrations/postgres/0003_provenance.sql"),
    },
    Migration {
        version: 4,
        name: "export",
        sql: include_str!("../../migrations/postgres/0004_export.sql"),
    },
    Migration {
        version: 5,
        name: "subscriptions",
        sql: include_str!("../../migrations/postgres/0005_subscriptions.sql"),
    },
    Migration {
        version: 6,
        name: "audit",
        sql: include_str!("../../migrations/postgres/0006_audit.sql"),
    },
];

/// Connects; with `schema`, every connection works in that schema (created if absent).
pub(crate) async fn connect(url: &str, schema: Option<&str>) -> Result<sqlx::PgPool, StoreError> {
    let mut options = PgConnectOptions::from_str(url)?;
    if let Some(schema) = schema {
        let admin = PgPoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "CREATE SCHEMA IF NOT EXISTS \"{schema}\""
        )))
        .execute(&admin)
        .await?;
        admin.close().await;
        options = options.options([("search_path", schema)]);
    }
    // Our statements carry IN-lists of hundreds of ids and keys whose selectivity only the values
    // tell; a generic plan (chosen after five runs of a prepared statement) scanned whole tables
    // for them: 500 resources/s on a 1M-member load. Planning with the values costs microseconds.
    options = options.options([("plan_cache_mode", "force_custom_plan")]);
    let pool = PgPoolOptions::new()
        .max_connections(16)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options)
        .await?;
    Ok(pool)
}
