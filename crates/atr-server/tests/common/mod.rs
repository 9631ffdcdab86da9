//! `spawn_app()`: the real server on 127.0.0.1:0 over a real store, one per dialect.

use std::sync::Arc;

use atr_server::ServerConfig;
use atr_store::{SqlStore, Store};

pub const PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub dialect: &'static str,
    _dir: tempfile::TempDir,
}

async fn spawn(store: Arc<dyn Store>, dir: tempfile::TempDir) -> TestApp {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let config = ServerConfig::default();
    let base = atr_server::state_for(&listener, store.clone(), &config)
        .expect("state")
        .base_url
        .to_string();
    let dialect = store.dialect();
    tokio::spawn(atr_server::serve(listener, store, config));
    TestApp {
        base,
        client: reqwest::Client::new(),
        dialect,
        _dir: dir,
    }
}

/// One app per available dialect: SQLite always, PostgreSQL when it answers (required in CI).
pub async fn spawn_apps() -> Vec<TestApp> {
    let dir = tempfile::tempdir().expect("temp dir");
    let sqlite = SqlStore::open_sqlite(&dir.path().join("atr.db"))
        .await
        .expect("sqlite");
    let mut apps = vec![spawn(Arc::new(sqlite), dir).await];
    let schema = format!("t_{}", uuid::Uuid::now_v7().simple());
    match SqlStore::open_postgres(PG_URL, Some(&schema)).await {
        Ok(pg) => apps.push(spawn(Arc::new(pg), tempfile::tempdir().expect("temp dir")).await),
        Err(e) if std::env::var_os("CI").is_some() => panic!("PostgreSQL is required in CI: {e}"),
        Err(e) => eprintln!("skipping PostgreSQL: {PG_URL} unavailable ({e})"),
    }
    apps
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}/{}", self.base, path.trim_start_matches('/'))
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .header("Accept", "application/fhir+json")
            .send()
            .await
            .expect("GET")
    }

    pub async fn get_json(&self, path: &str) -> (u16, serde_json::Value) {
        let r = self.get(path).await;
        let status = r.status().as_u16();
        (status, r.json().await.expect("JSON body"))
    }

    pub async fn put(&self, path: &str, body: &serde_json::Value) -> reqwest::Response {
        self.client
            .put(self.url(path))
            .header("Content-Type", "application/fhir+json")
            .body(body.to_string())
            .send()
            .await
            .expect("PUT")
    }
}
