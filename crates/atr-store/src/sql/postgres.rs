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

/// The pools of one store: everything but searches, and searches.
pub(crate) struct PgPools {
    pub main: sqlx::PgPool,
    pub searches: sqlx::PgPool,
}

/// Connects; with `schema`, every connection works in that schema (created if absent).
pub(crate) async fn connect(url: &str, schema: Option<&str>) -> Result<PgPools, StoreError> {
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
    // Searches are short statements on one or a few values, run thousands of times a second:
    // planning each anew was over half of PostgreSQL's time in discovery under load (2,800
    // requests/s; 5,400 with plans cached). Their sessions keep PostgreSQL's default, which
    // reuses a generic plan only where it costs no more than planning with the values.
    let searches = PgPoolOptions::new()
        .max_connections(8)
        .acquire_timeout(Duration::from_secs(10))
        .connect_lazy_with(options.clone().options([("plan_cache_mode", "auto")]));
    // Our other statements carry IN-lists of hundreds of ids and keys whose selectivity only the
    // values tell; a generic plan (chosen after five runs of a prepared statement) scanned whole
    // tables for them: 500 resources/s on a 1M-member load. Planning with the values costs
    // microseconds next to those statements.
    options = options.options([("plan_cache_mode", "force_custom_plan")]);
    let main = PgPoolOptions::new()
        .max_connections(16)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options)
        .await?;
    Ok(PgPools { main, searches })
}
