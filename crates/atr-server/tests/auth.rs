//! SMART Backend Services: discovery, the token endpoint (every way an assertion can be wrong),
//! bearer enforcement and per-Group access, against the real server with real keys.

mod common;

use atr_auth::{AccessTokenKeys, SigningAlg};
use base64::Engine;
use common::{ASSERTION_TYPE, NPI, TestApp, TestClient, load_synthetic, npi_of, spawn_apps};
use serde_json::{Value, json};

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn claims(app: &TestApp, c: &TestClient, exp_in: i64) -> Value {
    let now = atr_server::auth::now_unix();
    json!({"iss": c.id, "sub": c.id, "aud": app.token_url, "exp": now + exp_in, "iat": now,
           "jti": uuid::Uuid::now_v7().to_string()})
}

fn signed(c: &TestClient, claims: &Value) -> String {
    atr_auth::sign_jwt(&c.key, claims).expect("sign")
}

async fn ask(app: &TestApp, assertion: &str, scope: &str) -> (u16, Value) {
    app.token_request(&[
        ("grant_type", "client_credentials"),
        ("scope", scope),
        ("client_assertion_type", ASSERTION_TYPE),
        ("client_assertion", assertion),
    ])
    .await
}

#[tokio::test]
async fn smart_configuration_is_plain_json_at_the_base_and_the_root() {
    for app in spawn_apps().await {
        let root = app.base.trim_end_matches("/fhir").to_string();
        for url in [
            format!("{}/.well-known/smart-configuration", app.base),
            format!("{root}/.well-known/smart-configuration"),
        ] {
            let r = app
                .anon
                .get(&url)
                .header("Accept", "application/fhir+json")
                .send()
                .await
                .expect("get");
            assert_eq!(r.status(), 200, "{url}");
            assert!(
                r.headers()["content-type"]
                    .to_str()
                    .expect("ct")
                    .starts_with("application/json")
            );
            let doc: Value = r.json().await.expect("json");
            assert_eq!(doc["token_endpoint"], app.token_url);
            assert!(app.token_url.starts_with("http://127.0.0.1:"));
            assert_eq!(doc["grant_types_supported"], json!(["client_credentials"]));
            assert_eq!(
                doc["token_endpoint_auth_methods_supported"],
                json!(["private_key_jwt"])
            );
            assert_eq!(
                doc["token_endpoint_auth_signing_alg_values_supported"],
                json!(["RS384", "ES384"])
            );
            let caps = doc["capabilities"].to_string();
            for cap in [
                "client-confidential-asymmetric",
                "permission-v1",
                "permission-v2",
            ] {
                assert!(caps.contains(cap), "{cap}");
            }
            assert!(
                doc["scopes_supported"]
                    .to_string()
                    .contains("system/*.read")
            );
        }
        // metadata needs no token and names the token endpoint.
        let r = app.anon.get(app.url("metadata")).send().await.expect("get");
        assert_eq!(r.status(), 200);
        let cs: Value = r.json().await.expect("json");
        let security = &cs["rest"][0]["security"];
        assert_eq!(security["service"][0]["coding"][0]["code"], "SMART-on-FHIR");
        assert_eq!(
            security["extension"][0]["extension"][0]["valueUri"],
            app.token_url
        );
    }
}

#[tokio::test]
async fn rs384_and_es384_clients_get_tokens_that_open_the_api() {
    for app in spawn_apps().await {
        for (alg, id) in [
            (SigningAlg::Rs384, "rs-client"),
            (SigningAlg::Es384, "es-client"),
        ] {
            let c = app.register(id, alg, &[], &["system/*.read"], true).await;
            let (status, body) = ask(&app, &app.assertion(&c), "system/*.read").await;
            assert_eq!(status, 200, "{alg}: {body}");
            assert_eq!(body["token_type"], "bearer");
            assert_eq!(body["expires_in"], 300);
            assert_eq!(body["scope"], "system/*.read");
            let token = body["access_token"].as_str().expect("token");
            let r = app
                .client_with(token)
                .get(app.url("Group?_summary=count"))
                .send()
                .await
                .expect("get");
            assert_eq!(r.status(), 200, "{alg}");
        }
        // Real clients send exp 301 s ahead: within the leeway.
        let c = app
            .register("skewed", SigningAlg::Es384, &[], &["system/*.read"], true)
            .await;
        let (status, body) = ask(&app, &signed(&c, &claims(&app, &c, 301)), "system/*.read").await;
        assert_eq!(status, 200, "{body}");
    }
}

#[tokio::test]
async fn scopes_grant_the_supported_subset_and_never_an_unasked_write() {
    for app in spawn_apps().await {
        let c = app
            .register(
                "scoped",
                SigningAlg::Es384,
                &[],
                &["system/*.read", "system/Group.cruds"],
                true,
            )
            .await;
        let (status, body) = ask(
            &app,
            &app.assertion(&c),
            "system/Group.rs patient/*.read system/Observation.read",
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["scope"], "system/Group.rs");
        let (status, body) = ask(&app, &app.assertion(&c), "system/Patient.cruds").await;
        assert_eq!(status, 200, "{body}");
        let granted = body["scope"].as_str().expect("scope");
        assert!(
            !granted.contains('c') || !granted.contains("Patient.c"),
            "{granted}"
        );
        // Nothing grantable.
        let (status, body) = ask(&app, &app.assertion(&c), "user/*.read").await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_scope"))
        );
        // Not allowed for this client.
        let reader = app
            .register("reader", SigningAlg::Es384, &[], &["system/*.read"], true)
            .await;
        let (status, body) = ask(&app, &app.assertion(&reader), "system/*.write").await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_scope"))
        );
    }
}

/// The alg-confusion attack: an HS384 token whose HMAC key is the client's public key.
fn hs384_with_public_key(app: &TestApp, c: &TestClient) -> String {
    use hmac::{Hmac, Mac};
    let header = b64(br#"{"alg":"HS384","typ":"JWT"}"#);
    let payload = b64(claims(app, c, 120).to_string().as_bytes());
    let input = format!("{header}.{payload}");
    let public = serde_json::to_string(&c.key.public()).expect("public jwk");
    let mut mac = Hmac::<sha2::Sha384>::new_from_slice(public.as_bytes()).expect("hmac");
    mac.update(input.as_bytes());
    format!("{input}.{}", b64(&mac.finalize().into_bytes()))
}

#[tokio::test]
async fn every_bad_assertion_gets_its_oauth_error() {
    for app in spawn_apps().await {
        let c = app
            .register("client-a", SigningAlg::Es384, &[], &["system/*.read"], true)
            .await;
        let other = app
            .register("client-b", SigningAlg::Es384, &[], &["system/*.read"], true)
            .await;
        let now = atr_server::auth::now_unix();
        let mut cases: Vec<(&str, String, u16, &str)> = Vec::new();
        let mut wrong_aud = claims(&app, &c, 120);
        wrong_aud["aud"] = json!("https://elsewhere.example.org/token");
        cases.push(("wrong aud", signed(&c, &wrong_aud), 400, "invalid_grant"));
        let mut expired = claims(&app, &c, 0);
        expired["exp"] = json!(now - 120);
        cases.push(("expired", signed(&c, &expired), 400, "invalid_grant"));
        cases.push((
            "exp too far ahead",
            signed(&c, &claims(&app, &c, 600)),
            400,
            "invalid_grant",
        ));
        for claim in ["nbf", "iat"] {
            let mut early = claims(&app, &c, 120);
            early[claim] = json!(now + 600);
            cases.push((claim, signed(&c, &early), 400, "invalid_grant"));
        }
        let mut iss_not_sub = claims(&app, &c, 120);
        iss_not_sub["sub"] = json!("client-b");
        cases.push((
            "iss != sub",
            signed(&c, &iss_not_sub),
            401,
            "invalid_client",
        ));
        let mut unknown_kid_key = c.key.clone();
        unknown_kid_key.kid = Some("no-such-kid".into());
        let unknown_kid = TestClient {
            id: c.id.clone(),
            key: unknown_kid_key,
        };
        cases.push((
            "unknown kid",
            signed(&unknown_kid, &claims(&app, &c, 120)),
            401,
            "invalid_client",
        ));
        // client-b's key, relabelled with client-a's kid.
        let mut wrong_key = other.key.clone();
        wrong_key.kid = c.key.kid.clone();
        let impostor = TestClient {
            id: c.id.clone(),
            key: wrong_key,
        };
        cases.push((
            "right kid, wrong key",
            signed(&impostor, &claims(&app, &c, 120)),
            401,
            "invalid_client",
        ));
        let none = format!(
            "{}.{}.",
            b64(br#"{"alg":"none","typ":"JWT"}"#),
            b64(claims(&app, &c, 120).to_string().as_bytes())
        );
        cases.push(("alg none", none, 401, "invalid_client"));
        cases.push((
            "HS384 signed with the public key",
            hs384_with_public_key(&app, &c),
            401,
            "invalid_client",
        ));
        let stranger = TestClient {
            id: "nobody".into(),
            key: c.key.clone(),
        };
        cases.push((
            "unknown client",
            signed(&stranger, &claims(&app, &stranger, 120)),
            401,
            "invalid_client",
        ));
        for (what, assertion, status, error) in cases {
            let (got, body) = ask(&app, &assertion, "system/*.read").await;
            assert_eq!(
                (got, body["error"].as_str()),
                (status, Some(error)),
                "{}: {what}: {body}",
                app.dialect
            );
            assert!(body["error_description"].is_string(), "{what}");
        }

        // Replay: the same assertion twice.
        let once = app.assertion(&c);
        assert_eq!(ask(&app, &once, "system/*.read").await.0, 200);
        let (status, body) = ask(&app, &once, "system/*.read").await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_grant"))
        );

        // Wrong grant type and assertion type.
        let (status, body) = app
            .token_request(&[
                ("grant_type", "password"),
                ("scope", "system/*.read"),
                ("client_assertion_type", ASSERTION_TYPE),
                ("client_assertion", &app.assertion(&c)),
            ])
            .await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("unsupported_grant_type"))
        );
        let (status, body) = app
            .token_request(&[
                ("grant_type", "client_credentials"),
                ("scope", "system/*.read"),
                (
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:saml2-bearer",
                ),
                ("client_assertion", &app.assertion(&c)),
            ])
            .await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_request"))
        );

        // A disabled client gets nothing.
        let mut record = app
            .store
            .client("client-b")
            .await
            .expect("read")
            .expect("b");
        record.enabled = false;
        app.store.put_client(&record).await.expect("disable");
        let (status, body) = ask(&app, &app.assertion(&other), "system/*.read").await;
        assert_eq!(
            (status, body["error"].as_str()),
            (401, Some("invalid_client"))
        );
    }
}

#[tokio::test]
async fn inline_key_rotation_retires_the_old_key() {
    for app in spawn_apps().await {
        let old = app
            .register("rotating", SigningAlg::Rs384, &[], &["system/*.read"], true)
            .await;
        assert!(app.token(&old, "system/*.read").await.is_ok());
        // `atr clients rotate-keys` does this: same client, new public keys.
        let new = app
            .register("rotating", SigningAlg::Es384, &[], &["system/*.read"], true)
            .await;
        assert!(app.token(&new, "system/*.read").await.is_ok());
        let err = app.token(&old, "system/*.read").await.expect_err("old key");
        assert_eq!(err["error"], "invalid_client");
    }
}

/// Serves a JWK set that the test can swap, on loopback.
async fn jwks_server(initial: String) -> (String, std::sync::Arc<std::sync::Mutex<String>>) {
    use axum::routing::get;
    let served = std::sync::Arc::new(std::sync::Mutex::new(initial));
    let state = served.clone();
    let app = axum::Router::new().route(
        "/jwks.json",
        get(move || {
            let state = state.clone();
            async move {
                let body = state.lock().expect("lock").clone();
                ([("content-type", "application/json")], body)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/jwks.json", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, served)
}

#[tokio::test]
async fn jwks_url_clients_are_fetched_and_follow_key_rotation() {
    for app in spawn_apps().await {
        let first = atr_auth::generate(SigningAlg::Es384).expect("keys");
        let (url, served) = jwks_server(first.public.to_json()).await;
        atr_server::auth::registry::register(
            app.store.as_ref(),
            atr_server::auth::registry::NewClient {
                client_id: "by-url".into(),
                name: "by-url".into(),
                admin: true,
                jwks: None,
                jwks_url: Some(url.clone()),
                scopes: vec!["system/*.read".into()],
                identifiers: vec![],
            },
        )
        .await
        .expect("register");
        let c1 = TestClient {
            id: "by-url".into(),
            key: first.private.keys[0].clone(),
        };
        assert!(app.token(&c1, "system/*.read").await.is_ok());
        // A jku header is accepted only when it is the registered URL.
        let good_jku =
            atr_auth::sign_jwt_with_jku(&c1.key, &claims(&app, &c1, 120), &url).expect("sign");
        assert_eq!(ask(&app, &good_jku, "system/*.read").await.0, 200);
        let bad_jku = atr_auth::sign_jwt_with_jku(
            &c1.key,
            &claims(&app, &c1, 120),
            "http://127.0.0.1:1/evil.json",
        )
        .expect("sign");
        let (status, body) = ask(&app, &bad_jku, "system/*.read").await;
        assert_eq!(
            (status, body["error"].as_str()),
            (401, Some("invalid_client"))
        );

        // The client rotates: the URL now serves a new key; an unknown kid triggers a refetch.
        let second = atr_auth::generate(SigningAlg::Rs384).expect("keys");
        *served.lock().expect("lock") = second.public.to_json();
        let c2 = TestClient {
            id: "by-url".into(),
            key: second.private.keys[0].clone(),
        };
        assert!(app.token(&c2, "system/*.read").await.is_ok(), "new key");
        let err = app.token(&c1, "system/*.read").await.expect_err("old key");
        assert_eq!(err["error"], "invalid_client");
    }
}

#[tokio::test]
async fn bearer_tokens_are_required_checked_and_scoped() {
    for app in spawn_apps().await {
        // No token.
        let r = app.anon.get(app.url("Group")).send().await.expect("get");
        assert_eq!(r.status(), 401);
        assert!(
            r.headers()["www-authenticate"]
                .to_str()
                .expect("challenge")
                .starts_with("Bearer")
        );
        let body: Value = r.json().await.expect("json");
        assert_eq!(body["resourceType"], "OperationOutcome");

        let keys = app.store.token_keys().await.expect("keys");
        let server_keys = AccessTokenKeys::new((&keys[0].kid, &keys[0].secret), &[]).expect("keys");
        let now = atr_server::auth::now_unix();
        // Expired access token.
        let expired = server_keys.issue("test-admin", "system/*.read", now - 900, 300, "x1");
        let r = app
            .client_with(&expired)
            .get(app.url("Group"))
            .send()
            .await
            .expect("get");
        assert_eq!(r.status(), 401);
        assert!(
            r.headers()["www-authenticate"]
                .to_str()
                .expect("challenge")
                .contains("invalid_token")
        );
        // Tampered: the payload claims more scope than was signed.
        let good = server_keys.issue("test-admin", "system/Patient.read", now, 300, "x2");
        let mut parts: Vec<String> = good.split('.').map(str::to_string).collect();
        let forged = json!({"sub": "test-admin", "scope": "system/*.cruds", "iat": now, "exp": now + 300, "jti": "x2"});
        parts[1] = b64(forged.to_string().as_bytes());
        let r = app
            .client_with(&parts.join("."))
            .get(app.url("Group"))
            .send()
            .await
            .expect("get");
        assert_eq!(r.status(), 401);
        // Two Authorization headers: refused, never served on the first.
        let valid = server_keys.issue("test-admin", "system/*.read", now, 300, "x3");
        let mut two = reqwest::header::HeaderMap::new();
        for token in [valid.as_str(), "junk"] {
            two.append(
                reqwest::header::AUTHORIZATION,
                format!("Bearer {token}").parse().expect("header"),
            );
        }
        let r = app
            .anon
            .get(app.url("Group"))
            .headers(two)
            .send()
            .await
            .expect("get");
        assert_eq!(r.status(), 401);
        let body: Value = r.json().await.expect("json");
        assert!(
            body.to_string()
                .contains("more than one Authorization header"),
            "{body}"
        );
        // A read-only token on a write: 403.
        let reader = app
            .register("ro-admin", SigningAlg::Es384, &[], &["system/*.read"], true)
            .await;
        let token = app.token(&reader, "system/*.read").await.expect("token");
        let r = app
            .client_with(&token)
            .put(app.url("Organization/o1"))
            .header("Content-Type", "application/fhir+json")
            .body(json!({"resourceType": "Organization", "id": "o1", "name": "X"}).to_string())
            .send()
            .await
            .expect("put");
        assert_eq!(r.status(), 403);
        let body: Value = r.json().await.expect("json");
        assert_eq!(body["issue"][0]["code"], "forbidden");
        // A disabled client's live token stops working (after the short client cache).
        let mut record = app
            .store
            .client("ro-admin")
            .await
            .expect("read")
            .expect("c");
        record.enabled = false;
        app.store.put_client(&record).await.expect("disable");
        tokio::time::sleep(std::time::Duration::from_secs(
            atr_server::auth::CLIENT_CACHE_SECS + 1,
        ))
        .await;
        let r = app
            .client_with(&token)
            .get(app.url("Group"))
            .send()
            .await
            .expect("get");
        assert_eq!(r.status(), 401);
    }
}

fn ids_in(bundle: &Value) -> Vec<String> {
    let mut ids: Vec<String> = bundle["entry"]
        .as_array()
        .map(|e| {
            e.iter()
                .filter_map(|x| x["resource"]["id"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids
}

#[tokio::test]
async fn a_client_sees_only_its_own_lists_and_what_they_reference() {
    for app in spawn_apps().await {
        load_synthetic(&app).await;
        let npi = npi_of(&app, "org-1").await;
        let c = app
            .register(
                "org-1-client",
                SigningAlg::Es384,
                &[&format!("{NPI}|{npi}")],
                &["system/*.read", "system/*.write"],
                false,
            )
            .await;
        let token = app.token(&c, "system/*.read").await.expect("token");
        let http = app.client_with(&token);
        let get = |path: &str| {
            let req = http
                .get(app.url(path))
                .header("Accept", "application/fhir+json");
            async move {
                let r = req.send().await.expect("get");
                let status = r.status().as_u16();
                (status, r.json::<Value>().await.expect("json"))
            }
        };
        // Searches filter silently.
        let (status, bundle) = get("Group?_summary=true").await;
        assert_eq!(status, 200);
        assert_eq!(
            ids_in(&bundle),
            ["list-1", "list-5", "list-9"],
            "{}",
            app.dialect
        );
        assert_eq!(bundle["total"], 3);
        let (_, bundle) = get(&format!("Group?identifier={NPI}|{npi}&_summary=true")).await;
        assert_eq!(bundle["total"], 3);
        let other_npi = npi_of(&app, "org-2").await;
        let (_, bundle) = get(&format!("Group?identifier={NPI}|{other_npi}")).await;
        assert_eq!(bundle["total"], 0);
        // Reads of another provider's list are 404, as if it did not exist.
        assert_eq!(get("Group/list-1?_summary=true").await.0, 200);
        let (status, body) = get("Group/list-2").await;
        assert_eq!(status, 404);
        assert_eq!(body["resourceType"], "OperationOutcome");
        assert_eq!(get("Group/list-2/_history").await.0, 404);
        assert_eq!(get("Group/list-2/_history/1").await.0, 404);
        // Members and what they reference.
        let (_, own) = app.get_json("Group/list-1").await;
        let member = &own["member"][0];
        let patient = member["entity"]["reference"].as_str().expect("patient");
        assert_eq!(get(patient).await.0, 200, "{patient}");
        let exts = member["extension"].as_array().expect("extensions");
        for ext in exts {
            if let Some(r) = ext["valueReference"]["reference"].as_str() {
                assert_eq!(get(r).await.0, 200, "{r}");
            }
        }
        let (_, theirs) = app.get_json("Group/list-2").await;
        let their_patient = theirs["member"][0]["entity"]["reference"]
            .as_str()
            .expect("patient");
        let on_both = own["member"]
            .as_array()
            .expect("members")
            .iter()
            .any(|m| m["entity"]["reference"] == their_patient);
        if !on_both {
            assert_eq!(get(their_patient).await.0, 404, "{their_patient}");
        }
        // Patient search returns only members of its lists.
        let (_, patients) = get("Patient?_count=1000").await;
        let visible = ids_in(&patients);
        assert!(!visible.is_empty());
        let own_members: std::collections::HashSet<String> = [&own]
            .iter()
            .flat_map(|g| g["member"].as_array().into_iter().flatten())
            .filter_map(|m| m["entity"]["reference"].as_str())
            .map(|r| r.trim_start_matches("Patient/").to_string())
            .collect();
        for id in own_members.iter() {
            assert!(visible.contains(id), "{id} is on list-1");
        }
        // The payer's own Organization (managing entity) is visible; writes are not.
        let payer = own["managingEntity"]["reference"].as_str().expect("payer");
        assert_eq!(get(payer).await.0, 200);
        let write_token = app
            .token(&c, "system/*.read system/*.write")
            .await
            .expect("token");
        let r = app
            .client_with(&write_token)
            .delete(app.url("Group/list-1"))
            .send()
            .await
            .expect("delete");
        assert_eq!(r.status(), 403);
    }
}

#[tokio::test]
async fn tokens_stay_valid_on_another_instance_and_after_a_restart() {
    for app in spawn_apps().await {
        let c = app
            .register("roaming", SigningAlg::Rs384, &[], &["system/*.read"], true)
            .await;
        let token = app.token(&c, "system/*.read").await.expect("token");
        let other = app.another_instance().await;
        let r = app
            .client_with(&token)
            .get(format!("{other}/Group?_summary=count"))
            .send()
            .await
            .expect("get");
        assert_eq!(r.status(), 200, "{}", app.dialect);
    }
}
