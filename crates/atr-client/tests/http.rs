//! The Consumer's HTTP rules against a stand-in payer on loopback: the bearer token goes to the
//! Producer's own origin only (a redirect to another host is followed without it), 503 with
//! `Retry-After` is retried, a Producer's OperationOutcome comes back in its own words, and a
//! Producer without `$davinci-data-export` (STU1) is pulled with `$export`.

use std::sync::{Arc, Mutex};

use atr_client::{ClientError, Fhir, Profile};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

/// A request to the file host: its path and Authorization header.
type FileRequest = (String, Option<String>);

#[derive(Clone, Default)]
struct Seen {
    files: Arc<Mutex<Vec<FileRequest>>>,
    flaky: Arc<Mutex<u32>>,
}

async fn serve(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

#[tokio::test]
async fn the_token_stays_with_the_producer_and_busy_answers_are_retried() {
    let seen = Seen::default();
    // Another host (another origin): it must never see the token.
    let files = serve(
        axum::Router::new()
            .route(
                "/file.ndjson",
                get(|State(s): State<Seen>, h: HeaderMap| async move {
                    let auth = h
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string);
                    s.files
                        .lock()
                        .expect("lock")
                        .push(("/file.ndjson".into(), auth));
                    "{\"resourceType\":\"Patient\",\"id\":\"p\"}\n"
                }),
            )
            .with_state(seen.clone()),
    )
    .await;
    let redirect_to = format!("{files}/file.ndjson");
    let producer = serve(
        axum::Router::new()
            .route(
                "/auth/token",
                post(|| async { axum::Json(serde_json::json!({"access_token": "secret-token", "expires_in": 300})) }),
            )
            .route(
                "/fhir/bulkfiles/f",
                get(move |h: HeaderMap| {
                    let to = redirect_to.clone();
                    async move {
                        assert_eq!(
                            h.get("authorization").and_then(|v| v.to_str().ok()),
                            Some("Bearer secret-token"),
                            "the Producer gets the token"
                        );
                        (StatusCode::FOUND, [("location", to)]).into_response()
                    }
                }),
            )
            .route(
                "/fhir/busy",
                get(|State(s): State<Seen>| async move {
                    let mut n = s.flaky.lock().expect("lock");
                    *n += 1;
                    if *n < 3 {
                        (StatusCode::SERVICE_UNAVAILABLE, [("retry-after", "0")], "busy").into_response()
                    } else {
                        axum::Json(serde_json::json!({"resourceType": "Patient", "id": "ok"})).into_response()
                    }
                }),
            )
            .route(
                "/fhir/refused",
                get(|| async {
                    let outcome = serde_json::json!({"resourceType": "OperationOutcome", "issue": [
                        {"severity": "error", "code": "invalid", "diagnostics": "_since is not an instant", "expression": ["_since"]}]});
                    Response::builder()
                        .status(400)
                        .header("content-type", "application/fhir+json")
                        .body(axum::body::Body::from(outcome.to_string()))
                        .expect("response")
                }),
            )
            .with_state(seen.clone()),
    )
    .await;
    let keys = atr_auth::generate(atr_auth::SigningAlg::Es384).expect("keygen");
    let fhir = Fhir::connect(&Profile {
        name: "stand-in".into(),
        fhir_base_url: format!("{producer}/fhir"),
        client_id: "clinic".into(),
        private_jwks: keys.private.to_json(),
        token_url: Some(format!("{producer}/auth/token")),
        scopes: "system/*.read".into(),
    })
    .await
    .expect("connect");

    let answer = fhir
        .send(reqwest::Method::GET, "bulkfiles/f", &[], None)
        .await
        .expect("download through the redirect");
    assert_eq!(answer.status, 200);
    assert!(
        answer
            .response
            .text()
            .await
            .expect("body")
            .contains("Patient")
    );
    let files_seen = seen.files.lock().expect("lock").clone();
    assert_eq!(
        files_seen,
        vec![("/file.ndjson".to_string(), None)],
        "no token to another host"
    );

    let ok = fhir
        .get_json("busy")
        .await
        .expect("retried until it answered");
    assert_eq!(ok["id"], "ok");
    assert_eq!(*seen.flaky.lock().expect("lock"), 3);

    let refused = fhir.get_json("refused").await.expect_err("a 400");
    match &refused {
        ClientError::Refused {
            status, message, ..
        } => {
            assert_eq!(*status, 400);
            assert_eq!(message, "_since is not an instant (at _since)");
        }
        other => panic!("{other}"),
    }
    assert_eq!(refused.exit_code(), 4);
}

/// An STU1 Producer: no `$davinci-data-export`, `$export` with `Retry-After` as an HTTP date.
#[tokio::test]
async fn a_pull_from_an_stu1_producer_falls_back_to_export() {
    let polls = Arc::new(Mutex::new(0u32));
    let base = Arc::new(Mutex::new(String::new()));
    let (p, b, b2) = (polls.clone(), base.clone(), base.clone());
    let app = axum::Router::new()
        .route(
            "/auth/token",
            post(|| async { axum::Json(serde_json::json!({"access_token": "t", "expires_in": 300})) }),
        )
        .route(
            "/fhir/Group/g1/$davinci-data-export",
            get(|| async {
                let outcome = serde_json::json!({"resourceType": "OperationOutcome", "issue": [
                    {"severity": "error", "code": "not-supported", "diagnostics": "unknown operation"}]});
                (StatusCode::NOT_FOUND, axum::Json(outcome)).into_response()
            }),
        )
        .route(
            "/fhir/Group/g1/$export",
            get(move || {
                let b = b.clone();
                async move {
                    let status = format!("{}/fhir/status/1", b.lock().expect("lock"));
                    (StatusCode::ACCEPTED, [("content-location", status)]).into_response()
                }
            }),
        )
        .route(
            "/fhir/status/1",
            get(move || {
                let (p, b) = (p.clone(), b2.clone());
                async move {
                    let mut n = p.lock().expect("lock");
                    *n += 1;
                    if *n == 1 {
                        let soon = httpdate::fmt_http_date(std::time::SystemTime::now());
                        return (StatusCode::ACCEPTED, [("retry-after", soon), ("x-progress", "half".into())])
                            .into_response();
                    }
                    let base = b.lock().expect("lock").clone();
                    axum::Json(serde_json::json!({
                        "transactionTime": "2026-12-02T10:00:00Z",
                        "request": format!("{base}/fhir/Group/g1/$export"),
                        "requiresAccessToken": true,
                        "output": [
                            {"type": "Patient", "url": format!("{base}/fhir/files/p.ndjson"), "count": 1},
                            {"type": "Group", "url": format!("{base}/fhir/files/g.ndjson"), "count": 1},
                        ],
                        "error": [],
                    }))
                    .into_response()
                }
            }),
        )
        .route(
            "/fhir/files/p.ndjson",
            get(|| async {
                "{\"resourceType\":\"Patient\",\"id\":\"a\",\"name\":[{\"family\":\"Doe\",\"given\":[\"Ann\"]}]}\n"
            }),
        )
        .route(
            "/fhir/files/g.ndjson",
            get(|| async {
                "{\"resourceType\":\"Group\",\"id\":\"g1\",\"meta\":{\"versionId\":\"3\"},\"member\":[{\"entity\":{\"reference\":\"Patient/a\"}}]}\n"
            }),
        );
    let origin = serve(app).await;
    *base.lock().expect("lock") = origin.clone();
    let keys = atr_auth::generate(atr_auth::SigningAlg::Es384).expect("keygen");
    let fhir = Fhir::connect(&Profile {
        name: "stu1".into(),
        fhir_base_url: format!("{origin}/fhir"),
        client_id: "clinic".into(),
        private_jwks: keys.private.to_json(),
        token_url: Some(format!("{origin}/auth/token")),
        scopes: "system/*.read".into(),
    })
    .await
    .expect("connect");
    let dir = tempfile::tempdir().expect("dir");
    let mut store = atr_client::ConsumerStore::open(dir.path()).expect("store");
    let report = atr_client::pull::pull(&fhir, &mut store, "g1", &Default::default())
        .await
        .expect("pull");
    assert_eq!(report.operation, "$export");
    assert_eq!((report.members, report.resources), (1, 2));
    assert_eq!(report.group_version.as_deref(), Some("3"));
    assert_eq!(
        *polls.lock().expect("lock"),
        2,
        "polled again after the Retry-After date"
    );
    let members = store.members(report.pull_id).expect("members");
    assert_eq!(members[0].name.as_deref(), Some("Ann Doe"));
}
