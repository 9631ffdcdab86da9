//! The access audit log over HTTP: a provider client's export, member-remove and Subscription
//! are found as `AuditEvent`s by the payer's administration client (and only by it), with the
//! right client, Group, action and outcome; searches by date, agent and entity, and paging.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{TestApp, load_synthetic, provider_client, spawn_apps};
use serde_json::{Value, json};

const PROVIDER: &str = "audit-provider";

async fn send(req: reqwest::RequestBuilder) -> (u16, Value) {
    let r = req.send().await.expect("request");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// A list of the provider's that is not final (member operations change it).
async fn changeable_list(app: &TestApp, http: &reqwest::Client) -> String {
    let (status, bundle) = send(
        http.get(app.url("Group?_summary=true&_count=100"))
            .header("Accept", "application/fhir+json"),
    )
    .await;
    assert_eq!(status, 200, "{bundle}");
    bundle["entry"]
        .as_array()
        .expect("the provider sees lists")
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
        .to_string()
}

/// Kick-off, polls until the manifest, every output file: the number of files.
async fn export(app: &TestApp, http: &reqwest::Client, list: &str) -> usize {
    let r = http
        .get(app.url(&format!("Group/{list}/$davinci-data-export")))
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
    let deadline = Instant::now() + Duration::from_secs(60);
    let manifest: Value = loop {
        let r = http.get(&location).send().await.expect("poll");
        match r.status().as_u16() {
            202 => {
                assert!(Instant::now() < deadline, "export did not finish");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            200 => break r.json().await.expect("manifest"),
            other => panic!("status {other}"),
        }
    };
    let files = manifest["output"].as_array().expect("output");
    for f in files {
        let r = http
            .get(f["url"].as_str().expect("url"))
            .send()
            .await
            .expect("file");
        assert_eq!(r.status(), 200);
        r.bytes().await.expect("body");
    }
    files.len()
}

async fn first_patient(app: &TestApp, list: &str) -> String {
    let (_, g) = app.get_json(&format!("Group/{list}")).await;
    g["member"]
        .as_array()
        .expect("members")
        .iter()
        .find(|m| !m["inactive"].as_bool().unwrap_or(false))
        .and_then(|m| m["entity"]["reference"].as_str())
        .expect("an active member")
        .to_string()
}

fn subscription(list: &str) -> Value {
    let backport = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/";
    json!({
        "resourceType": "Subscription",
        "status": "active",
        "reason": "audit test",
        "criteria": "http://hl7.org/fhir/us/davinci-atr/SubscriptionTopic/atr-list-change",
        "_criteria": {"extension": [{"url": format!("{backport}backport-filter-criteria"),
                                      "valueString": format!("Group/{list}")}]},
        "channel": {
            "type": "rest-hook",
            // Nothing listens there: the handshake fails, which is no concern of the audit.
            "endpoint": "http://127.0.0.1:9/atr-hook",
            "payload": "application/fhir+json",
            "_payload": {"extension": [{"url": format!("{backport}backport-payload-content"),
                                         "valueCode": "id-only"}]},
        },
    })
}

/// Every entry of a search, following `next` links.
async fn all_pages(app: &TestApp, first: &str) -> Vec<Value> {
    let mut url = app.url(first);
    let mut out = Vec::new();
    for _ in 0..100 {
        let r = app
            .client
            .get(&url)
            .header("Accept", "application/fhir+json")
            .send()
            .await
            .expect("search");
        assert_eq!(r.status(), 200);
        let bundle: Value = r.json().await.expect("bundle");
        assert_eq!(bundle["type"], "searchset");
        out.extend(
            bundle["entry"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|e| e["resource"].clone()),
        );
        match bundle["link"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|l| l["relation"] == "next")
        {
            Some(next) => url = next["url"].as_str().expect("next url").to_string(),
            None => return out,
        }
    }
    panic!("more than 100 pages");
}

fn subtype(event: &Value) -> String {
    event["subtype"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["system"] == "urn:atr:audit-subtype")
        .and_then(|c| c["code"].as_str())
        .unwrap_or("")
        .to_string()
}

fn entity(event: &Value) -> String {
    event["entity"][0]["what"]["reference"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

#[tokio::test]
async fn a_providers_export_member_remove_and_subscription_are_audit_events_for_the_payer_only() {
    for app in spawn_apps().await {
        load_synthetic(&app).await;
        let started = atr_model::instant::now_micros();
        let provider = provider_client(
            &app,
            PROVIDER,
            "org-1",
            "system/*.read system/*.write system/Subscription.cruds",
        )
        .await;
        let list = changeable_list(&app, &provider).await;

        let files = export(&app, &provider, &list).await;
        assert!(
            files >= 3,
            "{}: Group, Patient and Coverage files at least",
            app.dialect
        );
        let patient = first_patient(&app, &list).await;
        let (status, body) = send(
            provider
                .post(app.url(&format!("Group/{list}/$member-remove")))
                .header("Content-Type", "application/fhir+json")
                .body(
                    json!({"resourceType": "Parameters", "parameter": [
                        {"name": "patientReference", "valueReference": {"reference": patient}}
                    ]})
                    .to_string(),
                ),
        )
        .await;
        assert_eq!(status, 200, "{}: {body}", app.dialect);
        let (status, sub) = send(
            provider
                .post(app.url("Subscription"))
                .header("Content-Type", "application/fhir+json")
                .body(subscription(&list).to_string()),
        )
        .await;
        assert_eq!(status, 201, "{}: {sub}", app.dialect);

        // Exactly those, by the provider client, on that Group, all successes.
        let events = all_pages(&app, &format!("AuditEvent?agent={PROVIDER}&_count=2")).await;
        let mut by_subtype: BTreeMap<String, usize> = BTreeMap::new();
        for e in &events {
            *by_subtype.entry(subtype(e)).or_default() += 1;
            assert_eq!(e["resourceType"], "AuditEvent");
            assert_eq!(e["type"]["code"], "rest");
            assert_eq!(e["agent"][0]["who"]["identifier"]["value"], PROVIDER);
            assert_eq!(e["agent"][0]["requestor"], true);
            assert_eq!(entity(e), format!("Group/{list}"), "{e}");
            assert_eq!(e["outcome"], "0", "{e}");
            assert!(e["recorded"].as_str().is_some());
        }
        let expected: BTreeMap<String, usize> = [
            ("$davinci-data-export".to_string(), 1),
            ("bulk-status".to_string(), 1),
            ("bulk-file".to_string(), files),
            ("$member-remove".to_string(), 1),
            ("create".to_string(), 1),
        ]
        .into_iter()
        .collect();
        assert_eq!(by_subtype, expected, "{}", app.dialect);
        let action_of = |s: &str| {
            events
                .iter()
                .find(|e| subtype(e) == s)
                .map(|e| e["action"].as_str().unwrap_or("").to_string())
        };
        assert_eq!(action_of("$member-remove").as_deref(), Some("E"));
        assert_eq!(action_of("bulk-file").as_deref(), Some("R"));
        assert_eq!(action_of("create").as_deref(), Some("C"));
        // Newest first.
        let recorded: Vec<&str> = events
            .iter()
            .filter_map(|e| e["recorded"].as_str())
            .collect();
        let mut sorted = recorded.clone();
        sorted.sort_by(|a, b| b.cmp(a));
        assert_eq!(recorded, sorted);

        // By entity (a reference or a bare Group id) and by date.
        let by_entity =
            all_pages(&app, &format!("AuditEvent?entity=Group/{list}&_count=1000")).await;
        assert_eq!(by_entity.len(), events.len(), "{}", app.dialect);
        let bare = all_pages(&app, &format!("AuditEvent?entity={list}")).await;
        assert_eq!(bare.len(), events.len());
        let since = atr_model::instant::fhir_instant(started);
        let in_window = all_pages(
            &app,
            &format!(
                "AuditEvent?agent={PROVIDER}&date=ge{}&date=le{}",
                since.replace('+', "%2B"),
                atr_model::instant::fhir_instant(atr_model::instant::now_micros())
                    .replace('+', "%2B")
            ),
        )
        .await;
        assert_eq!(in_window.len(), events.len());
        let before = all_pages(
            &app,
            &format!(
                "AuditEvent?agent={PROVIDER}&date=lt{}",
                since.replace('+', "%2B")
            ),
        )
        .await;
        assert!(before.is_empty(), "{before:?}");

        // A read by id.
        let id = events[0]["id"].as_str().expect("id");
        let (status, one) = app.get_json(&format!("AuditEvent/{id}")).await;
        assert_eq!(status, 200);
        assert_eq!(one, events[0]);
        let (status, _) = app.get_json("AuditEvent/no-such-event").await;
        assert_eq!(status, 404);

        // The provider may not read the log.
        for path in ["AuditEvent", &format!("AuditEvent/{id}")] {
            let (status, body) = send(
                provider
                    .get(app.url(path))
                    .header("Accept", "application/fhir+json"),
            )
            .await;
            assert_eq!(status, 403, "{path}");
            assert_eq!(body["resourceType"], "OperationOutcome");
        }

        // A refused change is recorded too, as a failure.
        let (status, _) = send(
            provider
                .delete(app.url(&format!("Group/{list}")))
                .header("Accept", "application/fhir+json"),
        )
        .await;
        assert_eq!(status, 403);
        let events = all_pages(&app, &format!("AuditEvent?agent={PROVIDER}&_count=1")).await;
        let refused: Vec<&Value> = events.iter().filter(|e| e["outcome"] == "4").collect();
        assert_eq!(refused.len(), 1, "{}", app.dialect);
        assert_eq!(subtype(refused[0]), "delete");
        assert_eq!(refused[0]["action"], "D");
        assert_eq!(refused[0]["outcomeDesc"], "HTTP 403");
        assert_eq!(entity(refused[0]), format!("Group/{list}"));
    }
}

#[tokio::test]
async fn unknown_search_parameters_and_bad_dates_are_400_outcomes() {
    for app in spawn_apps().await {
        for q in [
            "AuditEvent?patient=x",
            "AuditEvent?date=yesterday",
            "AuditEvent?_cursor=zzz",
        ] {
            let (status, body) = app.get_json(q).await;
            assert_eq!(status, 400, "{q}");
            assert_eq!(body["resourceType"], "OperationOutcome");
        }
    }
}

#[tokio::test]
async fn the_capability_statement_lists_audit_event_with_its_search_parameters() {
    for app in spawn_apps().await {
        let (_, cs) = app.get_json("metadata").await;
        let entry = cs["rest"][0]["resource"]
            .as_array()
            .expect("resources")
            .iter()
            .find(|r| r["type"] == "AuditEvent")
            .expect("AuditEvent in the CapabilityStatement")
            .clone();
        let params: Vec<&str> = entry["searchParam"]
            .as_array()
            .expect("params")
            .iter()
            .filter_map(|p| p["name"].as_str())
            .collect();
        for p in ["date", "agent", "entity", "_count"] {
            assert!(params.contains(&p), "{p}");
        }
    }
}
