//! Hostile input over real HTTP with real tokens: size and nesting limits, query parameter limits,
//! invalid UTF-8, invalid ids, path traversal in export URLs and per-client rate limits. Every
//! refusal is an `OperationOutcome` with the right status. The store plays no part in these, so
//! they run on SQLite only.

mod common;

use std::time::{Duration, Instant};

use atr_server::rate_limit::RateLimit;
use common::{TestApp, load_synthetic, spawn_sqlite_with};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn small_limits(config: &mut atr_server::ServerConfig) {
    config.limits.max_body_bytes = 1 << 20;
}

async fn app() -> TestApp {
    spawn_sqlite_with(small_limits).await
}

/// Asserts an `OperationOutcome` answer with `status` whose diagnostics contain `needle`.
async fn assert_outcome(r: reqwest::Response, status: u16, needle: &str) -> Value {
    let got = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let text = r.text().await.expect("body");
    assert_eq!(got, status, "{text}");
    assert!(ct.starts_with("application/fhir+json"), "content-type {ct}");
    let body: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
    assert_eq!(body["resourceType"], "OperationOutcome", "{body}");
    assert!(
        body.to_string().contains(needle),
        "expected {needle:?} in {body}"
    );
    body
}

fn patient(extra: Value) -> Value {
    json!({"resourceType": "Patient", "id": "p1", "identifier": [{"system": "http://x", "value": "1"}],
           "name": [{"family": "Doe"}], "gender": "female", "extension": extra})
}

async fn put_text(app: &TestApp, path: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
    app.client
        .put(app.url(path))
        .header("Content-Type", "application/fhir+json")
        .body(body)
        .send()
        .await
        .expect("PUT")
}

/// One request written by hand on a fresh connection (reqwest normalises `..` and `%2e%2e`
/// away); returns the status and the body.
async fn raw_get(app: &TestApp, target: &str, token: Option<&str>) -> (u16, String) {
    let addr = app
        .base
        .trim_start_matches("http://")
        .trim_end_matches("/fhir")
        .to_string();
    let mut stream = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "GET {target} HTTP/1.1\r\nHost: {addr}\r\nAccept: application/fhir+json\r\n{auth}Connection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.expect("read");
    let answer = String::from_utf8_lossy(&answer).to_string();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

async fn admin_token(app: &TestApp, id: &str) -> String {
    let c = app
        .register(
            id,
            atr_auth::SigningAlg::Es384,
            &[],
            &["system/*.cruds"],
            true,
        )
        .await;
    app.token(&c, "system/*.cruds").await.expect("token")
}

#[tokio::test]
async fn oversized_body_is_413_operation_outcome() {
    let app = app().await;
    let big = patient(json!([{"url": "http://x", "valueString": "a".repeat(2 << 20)}]));
    let r = put_text(&app, "Patient/p1", big.to_string()).await;
    assert_outcome(r, 413, "1 MiB").await;
    // A form body (no JSON guard on the way) meets axum's own limit: still an OperationOutcome.
    let r = app
        .client
        .post(app.url("Patient/_search"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(format!("name={}", "a".repeat(2 << 20)))
        .send()
        .await
        .expect("POST");
    assert_outcome(r, 413, "--max-body-mb").await;
    // Under the limit, the same kind of body is served.
    let ok = patient(json!([{"url": "http://x", "valueString": "a".repeat(1000)}]));
    assert_eq!(
        put_text(&app, "Patient/p1", ok.to_string()).await.status(),
        201
    );
}

#[tokio::test]
async fn json_nested_deeper_than_64_is_400_operation_outcome() {
    let app = app().await;
    let nest = |n: usize| "[".repeat(n) + &"]".repeat(n);
    // 64 levels in all (the resource's object is one) are parsed; 65 are not.
    let at_limit = format!(r#"{{"resourceType":"Patient","id":"p1","x":{}}}"#, nest(63));
    let r = put_text(&app, "Patient/p1", at_limit).await;
    let text = r.text().await.expect("body");
    assert!(!text.contains("nests"), "{text}");
    let over = format!(r#"{{"resourceType":"Patient","id":"p1","x":{}}}"#, nest(64));
    assert_outcome(put_text(&app, "Patient/p1", over).await, 400, "64 deep").await;
    // Far deeper than any parser's recursion could take: refused just the same, quickly.
    let abyss = format!(
        r#"{{"resourceType":"Patient","x":{}}}"#,
        "[".repeat(500_000)
    );
    assert_outcome(put_text(&app, "Patient/p1", abyss).await, 400, "64 deep").await;
    // Operation bodies too.
    let params = format!(
        r#"{{"resourceType":"Parameters","parameter":[{{"name":"memberId","valueString":{}}}]}}"#,
        nest(100)
    );
    let r = app
        .client
        .post(app.url("Group/g1/$member-add"))
        .header("Content-Type", "application/fhir+json")
        .body(params)
        .send()
        .await
        .expect("POST");
    assert_outcome(r, 400, "64 deep").await;
}

#[tokio::test]
async fn count_above_the_maximum_page_is_served_as_the_maximum() {
    let app = app().await;
    for i in 0..3 {
        let mut p = patient(json!([]));
        p["id"] = format!("p{i}").into();
        p.as_object_mut().map(|o| o.remove("extension"));
        assert_eq!(app.put(&format!("Patient/p{i}"), &p).await.status(), 201);
    }
    let (status, bundle) = app.get_json("Patient?_count=5000").await;
    assert_eq!(status, 200, "{bundle}");
    let self_link = bundle["link"][0]["url"].as_str().expect("self link");
    assert!(self_link.contains("_count=1000"), "{self_link}");
    assert_eq!(bundle["entry"].as_array().map(Vec::len), Some(3));
    let (status, history) = app.get_json("Patient/p1/_history?_count=5000").await;
    assert_eq!(status, 200, "{history}");
    let r = app.get("Patient?_count=-1").await;
    assert_outcome(r, 400, "_count=-1").await;
}

#[tokio::test]
async fn more_than_100_query_parameters_are_400_operation_outcome() {
    let app = app().await;
    let query = |n: usize| vec!["_id=a"; n].join("&");
    let r = app.get(&format!("Patient?{}", query(100))).await;
    assert_eq!(r.status(), 200, "100 parameters are served");
    let r = app.get(&format!("Patient?{}", query(101))).await;
    assert_outcome(r, 400, "more than 100 parameters").await;
    let r = app
        .client
        .post(app.url("Patient/_search"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(query(101))
        .send()
        .await
        .expect("POST");
    assert_outcome(r, 400, "more than 100 parameters").await;
}

#[tokio::test]
async fn over_long_query_strings_and_headers_are_refused_and_the_server_lives_on() {
    let app = app().await;
    let long = format!("Patient?name={}", "a".repeat(40 * 1024));
    assert_outcome(app.get(&long).await, 414, "at most 32768").await;
    // Beyond hyper's own limits the answer is hyper's (no body), never a hang or a crash.
    // (reqwest will not send a target this long: by hand.)
    let longer = format!("/fhir/Patient?name={}", "a".repeat(100 * 1024));
    let (status, _) = raw_get(&app, &longer, None).await;
    assert!(
        status == 414 || status == 431 || status == 400,
        "status {status}"
    );
    // A request head beyond hyper's read buffer is refused by hyper itself (512 KiB still fits).
    let r = app
        .client
        .get(app.url("metadata"))
        .header("X-Big", "b".repeat(2 << 20))
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), 431);
    let mut many = app.client.get(app.url("metadata"));
    for i in 0..150 {
        many = many.header(format!("x-h{i}"), "v");
    }
    assert_eq!(many.send().await.expect("GET").status(), 431);
    assert_eq!(app.get("metadata").await.status(), 200);
}

#[tokio::test]
async fn invalid_utf8_in_query_path_and_body_is_400_operation_outcome() {
    let app = app().await;
    assert_outcome(app.get("Patient?name=%FF%FE").await, 400, "not UTF-8").await;
    assert_outcome(app.get("Patient/p1?_summary=%C3").await, 400, "not UTF-8").await;
    assert_outcome(app.get("Patient/%FF").await, 400, "").await;
    let mut body = br#"{"resourceType":"Patient","id":"p1","name":[{"family":""#.to_vec();
    body.extend_from_slice(&[0xFF, 0xFE]);
    body.extend_from_slice(br#""}]}"#);
    assert_outcome(
        put_text(&app, "Patient/p1", body.clone()).await,
        400,
        "UTF-8",
    )
    .await;
    let r = app
        .client
        .post(app.url("Group/g1/$member-add"))
        .header("Content-Type", "application/fhir+json")
        .body(body)
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), 400);
    assert_outcome(r, 400, "").await;
    let r = app
        .client
        .post(app.url("Patient/_search"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(b"name=%FF".to_vec())
        .send()
        .await
        .expect("POST");
    assert_outcome(r, 400, "not UTF-8").await;
}

#[tokio::test]
async fn axum_and_tower_rejections_are_operation_outcomes() {
    let app = app().await;
    // Method not allowed outside /fhir, an unknown path, a version that is not a number.
    let r = app.anon.get(&app.token_url).send().await.expect("GET");
    assert_outcome(r, 405, "").await;
    assert_outcome(app.get("Nothing/here/at/all/really").await, 404, "").await;
    assert_outcome(app.get("Patient/p1/_history/x").await, 400, "version").await;
    // The token endpoint's OAuth errors stay OAuth JSON.
    let (status, body) = app.token_request(&[("grant_type", "password")]).await;
    assert_eq!(status, 400);
    assert!(body["error"].is_string(), "{body}");
}

#[tokio::test]
async fn ids_outside_the_fhir_id_syntax_are_400_naming_the_id() {
    let app = app().await;
    let long = "a".repeat(65);
    for (id, shown) in [
        ("a_b", "a_b"),
        ("a%20b", "a b"),
        ("%C3%A9t%C3%A9", "été"),
        (long.as_str(), "aaaaaaaa"),
        ("a%2Fb", "a/b"),
    ] {
        for path in [
            format!("Patient/{id}"),
            format!("Patient/{id}/_history"),
            format!("Patient/{id}/_history/1"),
            format!("Group/{id}/$attribution-status"),
            format!("Group/{id}/$davinci-data-export"),
            format!("Subscription/{id}"),
            format!("Subscription/{id}/$status"),
            format!("Provenance/{id}"),
            format!("bulkstatus/{id}"),
        ] {
            let r = if path.contains("$attribution-status") {
                app.client
                    .post(app.url(&path))
                    .header("Content-Type", "application/fhir+json")
                    .body(r#"{"resourceType":"Parameters"}"#)
                    .send()
                    .await
                    .expect("POST")
            } else {
                app.get(&path).await
            };
            let body = assert_outcome(r, 400, "not a valid FHIR id").await;
            assert!(body.to_string().contains(shown), "{path}: {body}");
        }
        let r = app
            .client
            .delete(app.url(&format!("Patient/{id}")))
            .send()
            .await
            .expect("DELETE");
        assert_outcome(r, 400, "not a valid FHIR id").await;
        let r = put_text(&app, &format!("Patient/{id}"), "{}").await;
        assert_outcome(r, 400, "not a valid FHIR id").await;
        let r = app
            .client
            .get(app.url(&format!("bulkfiles/{id}/Patient-1.ndjson")))
            .send()
            .await
            .expect("GET");
        assert_outcome(r, 400, "not a valid FHIR id").await;
    }
}

#[tokio::test]
async fn path_traversal_in_export_urls_never_serves_a_file_outside_the_job() {
    let app = app().await;
    load_synthetic(&app).await;
    let token = admin_token(&app, "traversal-admin").await;
    let http = app.client_with(&token);
    let r = http
        .get(app.url("Group/list-1/$davinci-data-export"))
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
    let job = location.rsplit('/').next().expect("job id").to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = http.get(&location).send().await.expect("poll");
        if r.status() == 200 {
            break;
        }
        assert_eq!(r.status(), 202);
        assert!(Instant::now() < deadline, "export did not finish");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Files a traversal would reach: beside the job's directory and above the export root.
    let secret = "SECRET-LINE";
    std::fs::write(app.export_dir.join("Patient-1.ndjson"), secret).expect("plant");
    std::fs::write(app.export_dir.join("secret.ndjson"), secret).expect("plant");
    if let Some(parent) = app.export_dir.parent() {
        std::fs::write(parent.join("Patient-9.ndjson"), secret).expect("plant");
    }
    let served = raw_get(
        &app,
        &format!("/fhir/bulkfiles/{job}/Patient-1.ndjson"),
        Some(&token),
    )
    .await;
    assert_eq!(served.0, 200, "the real file is served: {}", served.1);
    for name in [
        "..%2FPatient-1.ndjson",
        "..%2F..%2FPatient-9.ndjson",
        "%2e%2e%2Fsecret.ndjson",
        "%2E%2E%2F%2E%2E%2FPatient-9.ndjson",
        "..%5Csecret.ndjson",
        "Patient-1.ndjson%00",
        "Patient-1.ndjson%00.txt",
        "%2Fetc%2Fpasswd",
        "..",
        "%2e%2e",
    ] {
        let (status, body) =
            raw_get(&app, &format!("/fhir/bulkfiles/{job}/{name}"), Some(&token)).await;
        assert!(status == 404 || status == 400, "{name}: {status} {body}");
        assert!(!body.contains(secret), "{name} reached a planted file");
        assert!(body.contains("OperationOutcome"), "{name}: {body}");
    }
    for target in [
        format!("/fhir/bulkfiles/{job}/../{job}/Patient-1.ndjson"),
        format!("/fhir/bulkfiles/..%2F{job}/Patient-1.ndjson"),
        "/fhir/bulkfiles/%2e%2e/secret.ndjson".to_string(),
        "/fhir/bulkfiles/../exports/secret.ndjson".to_string(),
        "/fhir/bulkfiles/..%5C..%5C/Patient-9.ndjson".to_string(),
        "/fhir/bulkfiles/%00/Patient-1.ndjson".to_string(),
        "/fhir/bulkstatus/..%2F..%2Fmetadata".to_string(),
        "/fhir/bulkstatus/%2e%2e".to_string(),
        format!("/fhir/bulkstatus/{job}%00"),
    ] {
        let (status, body) = raw_get(&app, &target, Some(&token)).await;
        assert!(status == 404 || status == 400, "{target}: {status} {body}");
        assert!(!body.contains(secret), "{target} reached a planted file");
        assert!(body.contains("OperationOutcome"), "{target}: {body}");
    }
}

#[tokio::test]
async fn requests_beyond_the_rate_limit_are_429_with_retry_after() {
    fn limited(config: &mut atr_server::ServerConfig) {
        config.rate_limit = Some(RateLimit {
            per_second: 0.2,
            burst: 5,
        });
    }
    let app = spawn_sqlite_with(limited).await;
    // The admin client's token request (keyed by IP) is behind us; its own bucket is full.
    let mut refused = None;
    for n in 0..8 {
        let r = app.get("metadata").await;
        if r.status() == 429 {
            refused = Some((n, r));
            break;
        }
        assert_eq!(r.status(), 200);
    }
    let (n, r) = refused.expect("a 429 within the burst");
    assert_eq!(n, 5, "the burst is 5 requests");
    let retry = r.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse::<u64>()
        .expect("integer Retry-After");
    assert!((1..=5).contains(&retry), "Retry-After {retry}");
    assert_outcome(r, 429, "too many requests").await;
    // Another client has a bucket of its own; requests without a token are counted by address.
    let other = app.client_with(&admin_token(&app, "second-client").await);
    let r = other.get(app.url("metadata")).send().await.expect("GET");
    assert_eq!(r.status(), 200);
    let mut anon_refused = false;
    for _ in 0..8 {
        if app
            .anon
            .get(app.url("metadata"))
            .send()
            .await
            .expect("GET")
            .status()
            == 429
        {
            anon_refused = true;
            break;
        }
    }
    assert!(
        anon_refused,
        "unauthenticated requests are limited by address"
    );
}

#[tokio::test]
async fn without_a_configured_rate_limit_nothing_is_throttled() {
    let app = app().await;
    for _ in 0..50 {
        assert_eq!(app.get("metadata").await.status(), 200);
    }
}
