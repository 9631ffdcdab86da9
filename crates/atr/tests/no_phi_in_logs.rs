//! The server's log holds no PHI and no secrets, even at debug level: `atr serve` runs as a child
//! process with `ATR_LOG=debug`, a provider client goes through a full flow (token, discovery by
//! NPI and member identifier, a Group read, export and download, `$member-remove` by member id,
//! `$attribution-status`, a Subscription with an endpoint secret, refused and forged requests),
//! and the captured stdout and stderr are searched for the synthetic members' names, identifiers,
//! birth dates, phones and addresses, the client's private key, its client assertions and its
//! access token.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{ATR, Server, admin_dataset, atr_ok, run};
use serde_json::{Value, json};

const TIMEOUT: Duration = Duration::from_secs(60);
const PROVIDER: &str = "log-provider";
const NPI: &str = "http://hl7.org/fhir/sid/us-npi";
const ENDPOINT_SECRET: &str = "endpoint-secret-6f1c2a9e";

/// What must never be logged, each with what it is (for the failure message).
fn phi_of(ndjson: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let text = std::fs::read_to_string(ndjson.join("Patient.ndjson")).expect("patients");
    for line in text.lines().filter(|l| !l.is_empty()) {
        let p: Value = serde_json::from_str(line).expect("patient JSON");
        let strings = |v: &Value| -> Vec<String> {
            v.as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        };
        for name in p["name"].as_array().into_iter().flatten() {
            if let Some(f) = name["family"].as_str() {
                out.push(("family name".into(), f.to_string()));
            }
            for g in strings(&name["given"]) {
                out.push(("given name".into(), g));
            }
        }
        for id in p["identifier"].as_array().into_iter().flatten() {
            if let Some(v) = id["value"].as_str() {
                out.push(("member identifier".into(), v.to_string()));
            }
        }
        if let Some(b) = p["birthDate"].as_str() {
            out.push(("birth date".into(), b.to_string()));
        }
        for t in p["telecom"].as_array().into_iter().flatten() {
            if let Some(v) = t["value"].as_str() {
                out.push(("phone".into(), v.to_string()));
            }
        }
        for a in p["address"].as_array().into_iter().flatten() {
            for l in strings(&a["line"]) {
                out.push(("address".into(), l));
            }
        }
    }
    out
}

/// Whether `needle` occurs in `hay` as a whole word (so the name "Long" is not found in
/// "Longest").
fn contains_word(hay: &str, needle: &str) -> bool {
    let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric());
    hay.match_indices(needle).any(|(i, _)| {
        !word(hay[..i].chars().next_back()) && !word(hay[i + needle.len()..].chars().next())
    })
}

/// The NPI on a list that is not final (member operations change it).
fn npi_of_a_changeable_list(ndjson: &Path) -> String {
    let text = std::fs::read_to_string(ndjson.join("Group.ndjson")).expect("groups");
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|g| {
            g["extension"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|e| e["valueCode"] == "draft" || e["valueCode"] == "open")
        })
        .and_then(|g| {
            g["identifier"]
                .as_array()?
                .iter()
                .find(|i| i["system"] == NPI)?["value"]
                .as_str()
                .map(str::to_string)
        })
        .expect("a draft or open list with an NPI")
}

struct Flow {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Flow {
    async fn send(&self, req: reqwest::RequestBuilder) -> (u16, Value) {
        let r = req
            .bearer_auth(&self.token)
            .header("Accept", "application/fhir+json")
            .send()
            .await
            .expect("request");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.send(self.http.get(format!("{}/{path}", self.base)))
            .await
    }

    async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.send(
            self.http
                .post(format!("{}/{path}", self.base))
                .header("Content-Type", "application/fhir+json")
                .body(body.to_string()),
        )
        .await
    }
}

#[tokio::test]
async fn a_full_flow_at_debug_level_logs_no_phi_and_no_secrets() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = admin_dataset(
        dir.path(),
        &["--members", "60", "--lists", "4", "--seed", "7"],
        "log-admin",
        Some("system/*.cruds"),
        TIMEOUT,
    );
    let ndjson = dir.path().join("ndjson");
    let npi = npi_of_a_changeable_list(&ndjson);
    let d = dir.path().to_str().expect("utf-8");
    let (private, public) = (
        format!("{d}/provider.private.jwks.json"),
        format!("{d}/provider.public.jwks.json"),
    );
    atr_ok(
        TIMEOUT,
        &["keygen", "--private", &private, "--public", &public],
    );
    let data_dir = data.data_dir.to_str().expect("utf-8").to_string();
    atr_ok(
        TIMEOUT,
        &[
            "clients",
            "--data-dir",
            &data_dir,
            "add",
            PROVIDER,
            "--jwks",
            &public,
            "--identifier",
            &format!("{NPI}|{npi}"),
            "--scope",
            "system/*.read system/*.write system/Subscription.cruds",
        ],
    );
    let private_jwks: Value =
        serde_json::from_str(&std::fs::read_to_string(&private).expect("keys")).expect("JSON");
    let key: atr_auth::Jwk =
        serde_json::from_value(private_jwks["keys"][0].clone()).expect("private JWK");

    let server = Server::start_logging(
        &["--data-dir".as_ref(), data.data_dir.as_os_str()],
        "debug",
        TIMEOUT,
    );
    let base = server.base.clone();
    let token_url = atr_server::token_url_for(&base);
    let http = reqwest::Client::builder()
        .timeout(TIMEOUT)
        .build()
        .expect("client");

    // Token, with the assertion kept to look for it afterwards; then the same assertion again
    // (a replay, refused) and a garbled one.
    let assertion = atr_auth::sign_client_assertion(
        &key,
        PROVIDER,
        &token_url,
        atr_server::auth::now_unix(),
        300,
        &uuid::Uuid::now_v7().to_string(),
    )
    .expect("sign");
    // A form body by hand: this build of reqwest has no `form` feature.
    let encode = |v: &str| -> String {
        v.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    let form = |a: &str| {
        [
            ("grant_type", "client_credentials"),
            (
                "scope",
                "system/*.read system/*.write system/Subscription.cruds",
            ),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", a),
        ]
        .iter()
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect::<Vec<_>>()
        .join("&")
    };
    let r = http
        .post(&token_url)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(form(&assertion))
        .send()
        .await
        .expect("token");
    assert_eq!(r.status(), 200);
    let token = r.json::<Value>().await.expect("json")["access_token"]
        .as_str()
        .expect("token")
        .to_string();
    for bad in [assertion.clone(), format!("{assertion}x")] {
        let r = http
            .post(&token_url)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(form(&bad))
            .send()
            .await
            .expect("token");
        assert!(r.status().is_client_error());
    }
    let flow = Flow {
        http: http.clone(),
        base: base.clone(),
        token: token.clone(),
    };

    // Discovery, by NPI and by a member's identifier (both in query strings).
    let r = http
        .get(format!("{base}/.well-known/smart-configuration"))
        .send()
        .await
        .expect("discovery");
    assert_eq!(r.status(), 200);
    let (status, lists) = flow
        .get(&format!("Group?identifier={NPI}|{npi}&_summary=true"))
        .await;
    assert_eq!(status, 200, "{lists}");
    let list = lists["entry"]
        .as_array()
        .expect("the provider's lists")
        .iter()
        .map(|e| &e["resource"])
        .find(|g| {
            g["extension"].as_array().into_iter().flatten().any(|e| {
                e["url"]
                    .as_str()
                    .is_some_and(|u| u.ends_with("attributionListStatus"))
                    && e["valueCode"] != "final"
            })
        })
        .and_then(|g| g["id"].as_str())
        .expect("a draft or open list")
        .to_string();
    let (status, group) = flow.get(&format!("Group/{list}")).await;
    assert_eq!(status, 200);
    let patient_ref = group["member"]
        .as_array()
        .expect("members")
        .iter()
        .find(|m| !m["inactive"].as_bool().unwrap_or(false))
        .and_then(|m| m["entity"]["reference"].as_str())
        .expect("a member")
        .to_string();
    let (status, patient) = flow.get(&patient_ref).await;
    assert_eq!(status, 200);
    let member_id = patient["identifier"][0].clone();
    let ident = format!(
        "{}|{}",
        member_id["system"].as_str().expect("system"),
        member_id["value"].as_str().expect("value")
    );
    let (status, found) = flow
        .get(&format!("Patient?identifier={}", ident.replace('|', "%7C")))
        .await;
    assert_eq!(status, 200, "{found}");
    let family = patient["name"][0]["family"].as_str().expect("family");
    let (status, _) = flow.get(&format!("Patient?name={family}")).await;
    assert_eq!(
        status, 400,
        "an unknown search parameter echoing a name is refused"
    );
    let (status, _) = flow
        .get(&format!("Group?member={patient_ref}&_summary=true"))
        .await;
    assert_eq!(status, 200);

    // Export, polled to the end, every file downloaded.
    let r = http
        .get(format!("{base}/Group/{list}/$davinci-data-export"))
        .bearer_auth(&token)
        .header("Accept", "application/fhir+json")
        .header("Prefer", "respond-async")
        .send()
        .await
        .expect("kick-off");
    assert_eq!(r.status(), 202);
    let location = r.headers()["content-location"]
        .to_str()
        .expect("ascii")
        .to_string();
    let deadline = Instant::now() + TIMEOUT;
    let manifest: Value = loop {
        let r = http
            .get(&location)
            .bearer_auth(&token)
            .send()
            .await
            .expect("poll");
        if r.status() == 200 {
            break r.json().await.expect("manifest");
        }
        assert_eq!(r.status(), 202);
        assert!(Instant::now() < deadline, "export did not finish");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let mut exported = 0;
    for f in manifest["output"].as_array().expect("output") {
        let r = http
            .get(f["url"].as_str().expect("url"))
            .bearer_auth(&token)
            .send()
            .await
            .expect("file");
        assert_eq!(r.status(), 200);
        exported += r.bytes().await.expect("body").len();
    }
    assert!(exported > 0);

    // Reconciliation by member identifier (in the body), a refused one, and a status query.
    let by_member = json!({"resourceType": "Parameters", "parameter": [
        {"name": "memberId", "valueIdentifier": member_id}
    ]});
    let (status, body) = flow
        .post(&format!("Group/{list}/$attribution-status"), &by_member)
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = flow
        .post(&format!("Group/{list}/$member-remove"), &by_member)
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = flow
        .post(&format!("Group/{list}/$member-remove"), &by_member)
        .await;
    assert_eq!(status, 422, "no longer on the list");

    // A Subscription whose endpoint gets a secret header (the endpoint is not there).
    let backport = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/";
    let sub = json!({
        "resourceType": "Subscription",
        "status": "active",
        "reason": "log test",
        "criteria": "http://hl7.org/fhir/us/davinci-atr/SubscriptionTopic/atr-list-change",
        "_criteria": {"extension": [{"url": format!("{backport}backport-filter-criteria"),
                                      "valueString": format!("Group/{list}")}]},
        "channel": {
            "type": "rest-hook",
            "endpoint": "http://127.0.0.1:9/atr-hook",
            "payload": "application/fhir+json",
            "_payload": {"extension": [{"url": format!("{backport}backport-payload-content"),
                                         "valueCode": "id-only"}]},
            "header": [format!("Authorization: Bearer {ENDPOINT_SECRET}")],
        },
    });
    let (status, body) = flow.post("Subscription", &sub).await;
    assert_eq!(status, 201, "{body}");
    // A Patient body a Consumer may not write, and a forged bearer token.
    let (status, _) = flow.post("Patient", &patient).await;
    assert_eq!(status, 403);
    let forged = format!("{token}tampered");
    let r = http
        .get(format!("{base}/Group/{list}"))
        .bearer_auth(&forged)
        .send()
        .await
        .expect("forged");
    assert_eq!(r.status(), 401);
    // Let the failed handshakes and retries be logged too.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let log = server.log();
    drop(server);
    assert!(
        log.contains("serving FHIR"),
        "the log was captured: {}",
        &log[..log.len().min(500)]
    );
    assert!(log.lines().count() > 20, "debug logging was on:\n{log}");

    // The same flow in `atr audit`, filtered by client, Group and time.
    let table = atr_ok(
        TIMEOUT,
        &[
            "audit",
            "--data-dir",
            &data_dir,
            "--client",
            PROVIDER,
            "--group",
            &list,
            "--since",
            "2000-01-01",
        ],
    );
    let rows: Vec<&str> = table.lines().skip(1).collect();
    for subtype in [
        "$davinci-data-export",
        "bulk-status",
        "bulk-file",
        "$attribution-status",
        "$member-remove",
        "create",
    ] {
        assert!(
            rows.iter().any(|r| r.contains(&format!(" {subtype} "))),
            "{subtype} missing:\n{table}"
        );
    }
    assert!(
        rows.iter()
            .all(|r| r.contains(PROVIDER) && r.contains(&format!("Group/{list}")))
    );
    assert!(
        rows.iter()
            .any(|r| r.contains("$member-remove") && r.contains(" 422 ")),
        "the refused second remove:\n{table}"
    );
    let none = atr_ok(
        TIMEOUT,
        &["audit", "--data-dir", &data_dir, "--client", "nobody"],
    );
    assert_eq!(none.lines().count(), 1, "a header only:\n{none}");

    let mut secrets: Vec<(String, String)> = phi_of(&ndjson);
    for k in private_jwks["keys"].as_array().expect("keys") {
        for part in ["d", "p", "q", "dp", "dq", "qi"] {
            if let Some(v) = k[part].as_str() {
                secrets.push((format!("private key {part}"), v.to_string()));
            }
        }
    }
    secrets.push(("access token".into(), token.clone()));
    for (what, jwt) in [("access token", &token), ("client assertion", &assertion)] {
        if let Some(sig) = jwt.rsplit('.').next() {
            secrets.push((format!("{what} signature"), sig.to_string()));
        }
    }
    secrets.push(("client assertion".into(), assertion.clone()));
    secrets.push((
        "Subscription endpoint secret".into(),
        ENDPOINT_SECRET.into(),
    ));
    let leaks: Vec<String> = secrets
        .iter()
        .filter(|(what, value)| {
            // Names are short words, found as whole words only ("Long" is not in "Longest");
            // identifiers, dates and secrets anywhere (a member id follows `%7C` in a URL).
            let word_only = what.ends_with("name") || what == "address";
            value.len() >= 3
                && if word_only {
                    contains_word(&log, value)
                } else {
                    log.contains(value.as_str())
                }
        })
        .map(|(what, value)| format!("{what}: {value:?}"))
        .collect();
    assert!(
        leaks.is_empty(),
        "the log holds {} secret or PHI value(s):\n{}\n--- log ---\n{log}",
        leaks.len(),
        leaks.join("\n")
    );
}

#[test]
fn serve_with_an_unusable_certificate_exits_with_a_one_line_reason() {
    let dir = tempfile::tempdir().expect("tmp");
    let garbage = dir.path().join("cert.pem");
    std::fs::write(&garbage, "not a certificate\n").expect("write");
    let missing = dir.path().join("absent-key.pem");
    for (cert, key, names) in [
        (&garbage, &missing, "cert.pem"),
        (&missing, &garbage, "absent-key.pem"),
    ] {
        let out = run(
            TIMEOUT,
            Command::new(ATR)
                .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
                .arg(dir.path().join("data"))
                .arg("--tls-cert")
                .arg(cert)
                .arg("--tls-key")
                .arg(key),
        );
        assert!(!out.status.success(), "{}", out.stderr);
        let stderr = out.stderr.trim();
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        assert!(stderr.contains(names), "{stderr}");
        assert!(!out.stdout.contains("serving FHIR"));
    }
    // --tls-cert without --tls-key is a usage error.
    let out = run(
        TIMEOUT,
        Command::new(ATR)
            .args(["serve", "--tls-cert"])
            .arg(&garbage),
    );
    assert!(!out.status.success());
}
