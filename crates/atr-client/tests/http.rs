//! The Consumer's HTTP rules against a stand-in payer on loopback: the bearer token goes to the
//! Producer's own origin only (a redirect to another host is followed without it), 503 with
//! `Retry-After` is retried, and a Producer's OperationOutcome comes back in its own words.

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
