//! What the process-level tests share: running `atr` and other commands with a time limit, and
//! `atr serve` as a child process.

#![allow(dead_code)] // each test binary uses its own part

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

pub mod bulk;

pub const ATR: &str = env!("CARGO_BIN_EXE_atr");

/// No child command, server start or HTTP request of a process-level test may take longer than
/// this.
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// The PostgreSQL the tests use.
pub const PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// Whether PostgreSQL answers; when it does not, the test says so and skips, except in CI where it
/// is required.
pub fn postgres_available() -> bool {
    let ok = std::process::Command::new("pg_isready")
        .args(["-h", "127.0.0.1", "-p", "5432", "-q"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        atr_testkit::skip::unavailable(&format!("PostgreSQL at {PG_URL}"), "pg_isready says no");
    }
    ok
}

/// `atr serve --listen 127.0.0.1:0 ARGS…`, killed on drop. Its log is kept for failure messages.
pub struct Server {
    child: Child,
    pub base: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// Starts the server and waits (at most `timeout`) for the base URL it prints.
    pub fn start(args: &[&std::ffi::OsStr], timeout: Duration) -> Server {
        Self::start_logging(args, "warn", timeout)
    }

    /// As [`Server::start`], logging at `ATR_LOG=filter`; stdout is kept in the log too.
    pub fn start_logging(args: &[&std::ffi::OsStr], filter: &str, timeout: Duration) -> Server {
        let mut child = Command::new(ATR)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(args)
            .env("ATR_LOG", filter)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn atr serve");
        let stderr = child.stderr.take().expect("server stderr");
        let stdout = child.stdout.take().expect("server stdout");
        let log = Arc::new(Mutex::new(Vec::new()));
        let keep = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                keep.lock().unwrap_or_else(|p| p.into_inner()).push(line);
            }
        });
        let (tx, rx) = mpsc::channel();
        // Read the base URL, then keep draining the log so a full pipe never stalls the server.
        let keep = log.clone();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.split("serving FHIR at ").nth(1)
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(rest.split_whitespace().next().unwrap_or("").to_string());
                }
                keep.lock().unwrap_or_else(|p| p.into_inner()).push(line);
            }
        });
        let mut server = Server {
            child,
            base: String::new(),
            log,
        };
        server.base = rx.recv_timeout(timeout).unwrap_or_else(|_| {
            panic!(
                "atr serve did not print `serving FHIR at <url>`:\n{}",
                server.log()
            )
        });
        assert!(server.base.starts_with("http://"), "base: {}", server.base);
        server
    }

    /// SIGKILL (`Child::kill`), then reaped.
    pub fn kill_9(&mut self) {
        self.child.kill().expect("kill -9 atr serve");
        let status = self.child.wait().expect("wait for the killed server");
        assert!(!status.success(), "the server exited on its own: {status}");
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        self.log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .join("\n")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs a command to completion, killing it (and failing the test) after `timeout`.
pub fn run(timeout: Duration, cmd: &mut Command) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("stdout")));
    let stderr = drain(Box::new(child.stderr.take().expect("stderr")));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{cmd:?} still running after {timeout:?}\nstdout:\n{}\nstderr:\n{}",
                stdout.join().unwrap_or_default(),
                stderr.join().unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: stdout.join().expect("stdout"),
        stderr: stderr.join().expect("stderr"),
    }
}

/// `atr ARGS…`, which must succeed within `timeout`; its stdout.
pub fn atr_ok(timeout: Duration, args: &[&str]) -> String {
    let out = run(timeout, Command::new(ATR).args(args));
    assert!(out.status.success(), "atr {args:?}: {}", out.stderr);
    out.stdout
}

/// An access token for `client_id` from `server`'s token endpoint (`atr token` with a
/// credentials file written into `dir`), with `scope` (`atr token`'s default when `None`).
pub fn access_token(
    server: &Server,
    dir: &std::path::Path,
    client_id: &str,
    private_jwks: &serde_json::Value,
    scope: Option<&str>,
) -> String {
    let creds = dir.join(format!("credentials-{client_id}.json"));
    let doc = serde_json::json!({
        "client_id": client_id,
        "token_url": atr_server::token_url_for(&server.base),
        "fhir_base_url": server.base,
        "private_jwks": private_jwks,
    });
    std::fs::write(&creds, doc.to_string()).expect("write credentials");
    let mut token = Command::new(ATR);
    token.arg("token").arg("--credentials").arg(&creds);
    if let Some(scope) = scope {
        token.args(["--scope", scope]);
    }
    let out = run(TIMEOUT, &mut token);
    assert!(out.status.success(), "atr token: {}", out.stderr);
    out.stdout.trim().to_string()
}

/// One FHIR request with a bearer token (and a JSON body when given): status and JSON answer.
pub async fn call(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    token: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let mut r = client
        .request(method, url)
        .bearer_auth(token)
        .header("Accept", "application/fhir+json");
    if let Some(b) = body {
        r = r
            .header("Content-Type", "application/fhir+json")
            .body(b.to_string());
    }
    let resp = r.send().await.unwrap_or_else(|e| panic!("{url}: {e}"));
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(serde_json::Value::Null))
}

/// A synthetic data set loaded into a data directory, with an admin client that sees every Group.
pub struct Dataset {
    pub data_dir: std::path::PathBuf,
    /// What `atr load` printed.
    pub loaded: String,
    /// The admin client's private JWK set.
    pub private_jwks: serde_json::Value,
}

/// `atr synth SYNTH_ARGS… --out <dir>/ndjson`, `atr load` into `<dir>/data`, `atr keygen`, and
/// `atr clients add CLIENT_ID --admin` (with `--scope SCOPE` when given): what the process-level
/// tests start from.
pub fn admin_dataset(
    dir: &std::path::Path,
    synth_args: &[&str],
    client_id: &str,
    scope: Option<&str>,
    timeout: Duration,
) -> Dataset {
    let data = dir.join("data");
    let store = ["--data-dir", data.to_str().expect("utf-8 path")];
    admin_dataset_on(dir, &store, synth_args, client_id, scope, timeout)
}

/// As [`admin_dataset`], into the store that `store` (flags of `atr load`) names; `data_dir` is
/// `DIR/data` all the same (the export files' home).
pub fn admin_dataset_on(
    dir: &std::path::Path,
    store: &[&str],
    synth_args: &[&str],
    client_id: &str,
    scope: Option<&str>,
    timeout: Duration,
) -> Dataset {
    let d = dir.to_str().expect("utf-8 path");
    let ndjson = format!("{d}/ndjson");
    let (private, public) = (
        format!("{d}/private.jwks.json"),
        format!("{d}/public.jwks.json"),
    );
    let mut synth = vec!["synth"];
    synth.extend_from_slice(synth_args);
    synth.extend_from_slice(&["--out", &ndjson]);
    atr_ok(timeout, &synth);
    let mut load = vec!["load", ndjson.as_str()];
    load.extend_from_slice(store);
    let loaded = atr_ok(timeout, &load);
    atr_ok(
        timeout,
        &["keygen", "--private", &private, "--public", &public],
    );
    let mut add = vec!["clients"];
    add.extend_from_slice(store);
    add.extend_from_slice(&["add", client_id, "--admin", "--jwks", &public]);
    if let Some(s) = scope {
        add.extend_from_slice(&["--scope", s]);
    }
    atr_ok(timeout, &add);
    let private_jwks =
        serde_json::from_str(&std::fs::read_to_string(&private).expect("read private keys"))
            .expect("private keys JSON");
    Dataset {
        data_dir: dir.join("data"),
        loaded,
        private_jwks,
    }
}
