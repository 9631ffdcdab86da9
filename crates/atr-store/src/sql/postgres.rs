//! PostgreSQL: for several server instances sharing one database.

use std::str::FromStr;
use std::time::Duration;

use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPoolOptions};

use super::migrate::Migration;
use crate::StoreError;
use crate::error::without_password;

/// How long the first connection may take before `open` gives up and says so.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

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
    Migration {
        version: 7,
        name: "unique claims",
        sql: include_str!("../../migrations/postgres/0007_unique_claims.sql"),
    },
    Migration {
        version: 8,
        name: "more search params",
        sql: include_str!("../../migrations/postgres/0008_more_search_params.sql"),
    },
];

/// The pools of one store: everything but searches, and searches.
pub(crate) struct PgPools {
    pub main: sqlx::PgPool,
    pub searches: sqlx::PgPool,
}

/// Connects; with `schema`, every connection works in that schema (created if absent).
pub(crate) async fn connect(url: &str, schema: Option<&str>) -> Result<PgPools, StoreError> {
    let cannot = |cause: String| StoreError::Connect {
        database: without_password(url),
        cause,
    };
    let mut options = PgConnectOptions::from_str(url).map_err(|e| cannot(e.to_string()))?;
    // One plain connection first: a pool retries a refused connection until its acquire timeout
    // and then reports only "pool timed out", which names neither the database nor the cause.
    let mut first =
        match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&options)).await {
            Ok(Ok(connection)) => connection,
            Ok(Err(e)) => return Err(cannot(connect_cause(&e))),
            Err(_) => {
                return Err(cannot(format!(
                    "no answer within {} s",
                    CONNECT_TIMEOUT.as_secs()
                )));
            }
        };
    if let Some(schema) = schema {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "CREATE SCHEMA IF NOT EXISTS \"{schema}\""
        )))
        .execute(&mut first)
        .await?;
        options = options.options([("search_path", schema)]);
    }
    first.close().await?;
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

/// What a failed connection attempt says, in the server's words where it gave some.
fn connect_cause(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(db) => db.message().to_string(),
        sqlx::Error::Io(io) => io.to_string(),
        other => other.to_string(),
    }
}
