//! `spawn_app()`: the real server on 127.0.0.1:0 over a real store, one per dialect.
#![allow(dead_code)] // each test binary uses a different part of the shared helpers

use std::sync::Arc;

use atr_auth::{Jwk, SigningAlg};
use atr_server::ServerConfig;
use atr_server::auth::registry::{NewClient, register};
use atr_store::{SqlStore, Store};

pub const PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

pub struct TestApp {
    pub base: String,
    pub token_url: String,
    /// Carries a payer administration client's token: reads and writes everything.
    pub client: reqwest::Client,
    /// No credentials at all.
    pub anon: reqwest::Client,
    pub store: Arc<dyn Store>,
    pub dialect: &'static str,
    /// Where this app's export jobs write their files.
    pub export_dir: std::path::PathBuf,
    /// Trust anchors of an HTTPS server (its self-signed certificate); empty for plain HTTP.
    pub tls_roots: Vec<reqwest::Certificate>,
    _dir: tempfile::TempDir,
}

/// Server settings for tests: fast export polling and leases, files under `export_dir`.
pub fn test_config(export_dir: &std::path::Path) -> ServerConfig {
    let mut config = ServerConfig::default();
    // Tests rotate JWKS-URL keys back to back; production waits 30 s between kid-driven fetches.
    config.auth.jwks_min_refresh_secs = 0;
    config.export = atr_export::ExportConfig::new(export_dir.to_path_buf());
    config.export.poll = std::time::Duration::from_millis(100);
    config.export.lease = std::time::Duration::from_secs(2);
    config
}

/// A client registered for a test, with its private key.
pub struct TestClient {
    pub id: String,
    pub key: Jwk,
}

pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

async fn spawn(
    store: Arc<dyn Store>,
    dir: tempfile::TempDir,
    edit: &dyn Fn(&mut ServerConfig),
) -> TestApp {
    let export_dir = dir.path().join("exports");
    spawn_configured(store, dir, export_dir, edit, None).await
}

/// One app on SQLite serving HTTPS with `tls`; its clients trust `root` (and nothing else).
pub async fn spawn_sqlite_tls(
    tls: atr_server::tls::TlsSettings,
    root: reqwest::Certificate,
) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let sqlite = SqlStore::open_sqlite(&dir.path().join("atr.db"))
        .await
        .expect("sqlite");
    let export_dir = dir.path().join("exports");
    spawn_configured(
        Arc::new(sqlite),
        dir,
        export_dir,
        &|_| {},
        Some((tls, root)),
    )
    .await
}

async fn spawn_configured(
    store: Arc<dyn Store>,
    dir: tempfile::TempDir,
    export_dir: std::path::PathBuf,
    edit: &dyn Fn(&mut ServerConfig),
    tls: Option<(atr_server::tls::TlsSettings, reqwest::Certificate)>,
) -> TestApp {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let mut config = test_config(&export_dir);
    edit(&mut config);
    let mut tls_roots = Vec::new();
    if let Some((settings, root)) = tls {
        config.tls = Some(settings);
        tls_roots.push(root);
    }
    let state = atr_server::state_for(&listener, store.clone(), &config)
        .await
        .expect("state");
    let base = state.base_url.to_string();
    let token_url = state.auth.token_url.clone();
    let dialect = store.dialect();
    tokio::spawn(atr_server::serve(listener, state, config));
    let mut app = TestApp {
        base,
        token_url,
        client: reqwest::Client::new(),
        anon: reqwest::Client::new(),
        store,
        dialect,
        export_dir,
        tls_roots,
        _dir: dir,
    };
    app.anon = app.http().build().expect("client");
    let admin = app
        .register(
            "test-admin",
            SigningAlg::Es384,
            &[],
            &[
                "system/*.read",
                "system/*.rs",
                "system/*.write",
                "system/*.cruds",
            ],
            true,
        )
        .await;
    let token = app
        .token(&admin, "system/*.cruds")
        .await
        .expect("admin token");
    app.client = app.client_with(&token);
    app
}

/// One app per available dialect: SQLite always, PostgreSQL when it answers (required in CI).
pub async fn spawn_apps() -> Vec<TestApp> {
    spawn_apps_with(|_| {}).await
}

/// As [`spawn_apps`], with server settings edited by `edit`.
pub async fn spawn_apps_with(edit: impl Fn(&mut ServerConfig)) -> Vec<TestApp> {
    let dir = tempfile::tempdir().expect("temp dir");
    let sqlite = SqlStore::open_sqlite(&dir.path().join("atr.db"))
        .await
        .expect("sqlite");
    let mut apps = vec![spawn(Arc::new(sqlite), dir, &edit).await];
    drop_stale_test_schemas().await;
    let schema = format!("t_{}", uuid::Uuid::now_v7().simple());
    match SqlStore::open_postgres(PG_URL, Some(&schema)).await {
        Ok(pg) => {
            apps.push(spawn(Arc::new(pg), tempfile::tempdir().expect("temp dir"), &edit).await)
        }
        Err(e) => atr_testkit::skip::unavailable("PostgreSQL", &e.to_string()),
    }
    apps
}

/// One app on PostgreSQL reached at `url` (a schema of its own), or `None` when PostgreSQL does
/// not answer outside CI.
pub async fn spawn_postgres_at(url: &str) -> Option<TestApp> {
    drop_stale_test_schemas().await;
    let schema = format!("t_{}", uuid::Uuid::now_v7().simple());
    match SqlStore::open_postgres(url, Some(&schema)).await {
        Ok(pg) => Some(
            spawn(
                Arc::new(pg),
                tempfile::tempdir().expect("temp dir"),
                &|_| {},
            )
            .await,
        ),
        Err(e) => {
            atr_testkit::skip::unavailable("PostgreSQL", &e.to_string());
            None
        }
    }
}

/// One app on SQLite whose export files go to `export_dir` (a small file system, say).
pub async fn spawn_sqlite_exporting_to(export_dir: &std::path::Path) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let sqlite = SqlStore::open_sqlite(&dir.path().join("atr.db"))
        .await
        .expect("sqlite");
    spawn_configured(
        Arc::new(sqlite),
        dir,
        export_dir.to_path_buf(),
        &|_| {},
        None,
    )
    .await
}

/// One app on SQLite only, with server settings edited by `edit`: for behaviour the store
/// plays no part in (request limits, rate limits).
pub async fn spawn_sqlite_with(edit: impl Fn(&mut ServerConfig)) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let sqlite = SqlStore::open_sqlite(&dir.path().join("atr.db"))
        .await
        .expect("sqlite");
    spawn(Arc::new(sqlite), dir, &edit).await
}

impl TestApp {
    /// Starts another server over the same store (a restart, or a second instance behind a load
    /// balancer); returns its FHIR base URL.
    pub async fn another_instance(&self) -> String {
        self.another_instance_with(|_| {}).await
    }

    /// As [`TestApp::another_instance`], with server settings edited by `edit`.
    pub async fn another_instance_with(&self, edit: impl Fn(&mut ServerConfig)) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let mut config = test_config(&self.export_dir);
        edit(&mut config);
        let state = atr_server::state_for(&listener, self.store.clone(), &config)
            .await
            .expect("state");
        let base = state.base_url.to_string();
        tokio::spawn(atr_server::serve(listener, state, config));
        base
    }

    /// Registers a client with a fresh key pair.
    pub async fn register(
        &self,
        id: &str,
        alg: SigningAlg,
        identifiers: &[&str],
        scopes: &[&str],
        admin: bool,
    ) -> TestClient {
        let keys = atr_auth::generate(alg).expect("keygen");
        register(
            self.store.as_ref(),
            NewClient {
                client_id: id.into(),
                name: id.into(),
                admin,
                jwks: Some(keys.public.to_json()),
                jwks_url: None,
                scopes: scopes.iter().map(|s| s.to_string()).collect(),
                identifiers: identifiers.iter().map(|s| s.to_string()).collect(),
            },
        )
        .await
        .expect("register");
        TestClient {
            id: id.into(),
            key: keys.private.keys[0].clone(),
        }
    }

    /// A fresh, valid client assertion for this server.
    pub fn assertion(&self, c: &TestClient) -> String {
        atr_auth::sign_client_assertion(
            &c.key,
            &c.id,
            &self.token_url,
            atr_server::auth::now_unix(),
            300,
            &uuid::Uuid::now_v7().to_string(),
        )
        .expect("sign")
    }

    /// Posts a token request form; returns status and JSON body.
    pub async fn token_request(&self, form: &[(&str, &str)]) -> (u16, serde_json::Value) {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let r = self
            .anon
            .post(&self.token_url)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .expect("token request");
        let status = r.status().as_u16();
        (status, r.json().await.expect("token JSON"))
    }

    /// An access token for `c`, or the error body.
    pub async fn token(&self, c: &TestClient, scope: &str) -> Result<String, serde_json::Value> {
        let assertion = self.assertion(c);
        let (status, body) = self
            .token_request(&[
                ("grant_type", "client_credentials"),
                ("scope", scope),
                ("client_assertion_type", ASSERTION_TYPE),
                ("client_assertion", &assertion),
            ])
            .await;
        match (status, body["access_token"].as_str()) {
            (200, Some(t)) => Ok(t.to_string()),
            _ => Err(body),
        }
    }

    /// An HTTP client sending `token` as its bearer.
    pub fn client_with(&self, token: &str) -> reqwest::Client {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::AUTHORIZATION,
            format!("Bearer {token}").parse().expect("header"),
        );
        self.http()
            .default_headers(headers)
            .build()
            .expect("client")
    }

    /// A client builder trusting this app's certificate when it serves HTTPS.
    pub fn http(&self) -> reqwest::ClientBuilder {
        let builder = reqwest::Client::builder();
        if self.tls_roots.is_empty() {
            builder
        } else {
            builder.tls_certs_only(self.tls_roots.clone())
        }
    }

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

pub const NPI: &str = "http://hl7.org/fhir/sid/us-npi";

/// Loads a small synthetic payer (9 lists over 4 provider organisations) through the store.
pub async fn load_synthetic(app: &TestApp) {
    load_synthetic_members(app, 60).await;
}

/// As [`load_synthetic`], with `members` members over the same nine lists.
pub async fn load_synthetic_members(app: &TestApp, members: u64) {
    let dir = tempfile::tempdir().expect("dir");
    let config = atr_synth::SynthConfig {
        seed: 11,
        members,
        lists: 9,
        provider_orgs: 4,
        ..Default::default()
    };
    atr_synth::generate(&config, dir.path()).expect("synth");
    let mut groups = Vec::new();
    for rtype in atr_model::ResourceType::ALL {
        let path = dir.path().join(format!("{rtype}.ndjson"));
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let mut batch = Vec::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let id = atr_server::ingest::body_id(line)
                .expect("JSON")
                .expect("id");
            let w = atr_server::ingest::prepare(rtype, &id, line, atr_store::WriteMode::Upsert)
                .expect("valid");
            if rtype == atr_model::ResourceType::Group {
                groups.push(w);
            } else {
                batch.push(w);
            }
        }
        app.store.load_batch(batch).await.expect("load");
    }
    app.store.load_batch(groups).await.expect("load groups");
}

/// A Consumer client acting for provider organisation `org` (by its NPI), with a token for
/// `scopes` (space-separated).
pub async fn provider_client(app: &TestApp, id: &str, org: &str, scopes: &str) -> reqwest::Client {
    let npi = npi_of(app, org).await;
    let scope_list: Vec<&str> = scopes.split(' ').collect();
    let consumer = app
        .register(
            id,
            atr_auth::SigningAlg::Es384,
            &[&format!("{NPI}|{npi}")],
            &scope_list,
            false,
        )
        .await;
    app.client_with(&app.token(&consumer, scopes).await.expect("token"))
}

pub async fn npi_of(app: &TestApp, org: &str) -> String {
    let (_, body) = app.get_json(&format!("Organization/{org}")).await;
    body["identifier"]
        .as_array()
        .expect("identifiers")
        .iter()
        .find(|i| i["system"] == NPI)
        .and_then(|i| i["value"].as_str())
        .expect("npi")
        .to_string()
}

/// Drops the `t_<uuid v7>` schemas of test runs more than an hour old (each run makes fresh ones).
/// Once per test process.
async fn drop_stale_test_schemas() {
    static DONE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if !DONE.swap(true, std::sync::atomic::Ordering::SeqCst) {
        let hour = std::time::Duration::from_secs(3600);
        let _ = SqlStore::drop_stale_postgres_schemas(PG_URL, "t_", hour).await;
    }
}
pub mod exports;
pub mod link_proxy;
pub mod receiver;
