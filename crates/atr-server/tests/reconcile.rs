//! Reconciliation: `$member-add`, `$member-remove`, `$confirm-attribution-list` and
//! `$attribution-status` on lists in each status, against the real server with real tokens.
//!
//! The synthetic payer has nine lists over four provider organisations; list `i` has status
//! final, draft, open for `i % 3` = 1, 2, 0 (list-1 final, list-2 draft, list-3 open, ...).

mod common;

use atr_auth::SigningAlg;
use common::{NPI, TestApp, load_synthetic, npi_of, spawn_apps};
use serde_json::{Value, json};

const EXT_CHANGE_TYPE: &str =
    "http://hl7.org/fhir/us/davinci-atr/StructureDefinition/ext-changeType";

async fn op(app: &TestApp, group: &str, name: &str, params: Value) -> (u16, Value, Option<String>) {
    op_with(app, &app.client, group, name, params).await
}

async fn op_with(
    app: &TestApp,
    client: &reqwest::Client,
    group: &str,
    name: &str,
    params: Value,
) -> (u16, Value, Option<String>) {
    let r = client
        .post(app.url(&format!("Group/{group}/{name}")))
        .header("Content-Type", "application/fhir+json")
        .body(json!({"resourceType": "Parameters", "parameter": params}).to_string())
        .send()
        .await
        .expect("operation");
    let status = r.status().as_u16();
    let etag = r
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    (status, r.json().await.expect("json"), etag)
}

fn text(outcome: &Value) -> String {
    outcome["issue"]
        .as_array()
        .map(|i| {
            i.iter()
                .filter_map(|x| x["diagnostics"].as_str())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

fn reference(r: &str) -> Value {
    json!({"reference": r})
}

fn param(name: &str, field: &str, value: Value) -> Value {
    let mut p = json!({"name": name});
    p[field] = value;
    p
}

/// Entries of `patient` on the current version of `group`: (changeType, inactive).
async fn entries(app: &TestApp, group: &str, patient: &str) -> Vec<(String, bool)> {
    let (_, g) = app.get_json(&format!("Group/{group}")).await;
    g["member"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["entity"]["reference"] == patient)
        .map(|m| {
            let ct = m["extension"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|e| e["url"] == EXT_CHANGE_TYPE)
                .and_then(|e| e["valueCode"].as_str())
                .unwrap_or("")
                .to_string();
            (ct, m["inactive"].as_bool().unwrap_or(false))
        })
        .collect()
}

async fn quantity(app: &TestApp, group: &str) -> (i64, String) {
    let (_, g) = app.get_json(&format!("Group/{group}?_summary=true")).await;
    (
        g["quantity"].as_i64().expect("quantity"),
        g["meta"]["versionId"]
            .as_str()
            .expect("version")
            .to_string(),
    )
}

/// A patient the payer of `group` covers who is not on `group`, with their member id.
async fn candidate(app: &TestApp, group: &str) -> (String, Value) {
    let (_, g) = app.get_json(&format!("Group/{group}")).await;
    let payer = g["managingEntity"]["reference"]
        .as_str()
        .expect("payer")
        .to_string();
    let on: std::collections::HashSet<String> = g["member"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["entity"]["reference"].as_str().map(str::to_string))
        .collect();
    let (_, coverages) = app
        .get_json(&format!("Coverage?payor={payer}&_count=1000"))
        .await;
    for e in coverages["entry"].as_array().into_iter().flatten() {
        let c = &e["resource"];
        let patient = c["beneficiary"]["reference"]
            .as_str()
            .unwrap_or("")
            .to_string();
        if c["status"] == "active" && !on.contains(&patient) {
            let (_, p) = app.get_json(&patient).await;
            let member_id = p["identifier"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|i| i["type"]["coding"][0]["code"] == "MB")
                .cloned()
                .expect("member id");
            return (
                patient,
                json!({"system": member_id["system"], "value": member_id["value"]}),
            );
        }
    }
    panic!("no candidate for {group}");
}

async fn practitioner_npi(app: &TestApp, id: &str) -> Value {
    let (_, p) = app.get_json(&format!("Practitioner/{id}")).await;
    json!({"system": NPI, "value": p["identifier"][0]["value"]})
}

async fn first_member(app: &TestApp, group: &str) -> (String, String, String) {
    let (_, g) = app.get_json(&format!("Group/{group}")).await;
    // An active entry, attributed to a Practitioner (they all have NPIs) when there is one.
    let active: Vec<&Value> = g["member"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| !m["inactive"].as_bool().unwrap_or(false))
        .collect();
    let m = active
        .iter()
        .find(|m| m["extension"].to_string().contains("\"Practitioner/"))
        .or(active.first())
        .copied()
        .expect("a member")
        .clone();
    let ext = |suffix: &str| {
        m["extension"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e["url"].as_str().is_some_and(|u| u.ends_with(suffix)))
            .and_then(|e| e["valueReference"]["reference"].as_str())
            .unwrap_or("")
            .to_string()
    };
    (
        m["entity"]["reference"]
            .as_str()
            .expect("patient")
            .to_string(),
        ext("ext-attributedProvider"),
        ext("ext-coverageReference"),
    )
}

#[tokio::test]
async fn member_add_by_member_id_and_npi_makes_one_new_version_and_is_idempotent() {
    for app in spawn_apps().await {
        load_synthetic(&app).await;
        for group in ["list-2", "list-3"] {
            let (patient, member_id) = candidate(&app, group).await;
            let npi = practitioner_npi(&app, "pract-1").await;
            let (before, version) = quantity(&app, group).await;
            let params = json!([
                param("memberId", "valueIdentifier", member_id.clone()),
                param("providerNpi", "valueIdentifier", npi.clone()),
            ]);
            let (status, body, etag) = op(&app, group, "$member-add", params.clone()).await;
            assert_eq!(status, 200, "{}: {body}", app.dialect);
            let next = version.parse::<i64>().expect("v") + 1;
            assert_eq!(etag.as_deref(), Some(format!("W/\"{next}\"").as_str()));
            assert!(text(&body).contains(&patient), "{body}");
            assert_eq!(quantity(&app, group).await, (before + 1, next.to_string()));
            assert_eq!(
                entries(&app, group, &patient).await,
                [("new".to_string(), false)]
            );
            // The same attribution again: nothing changes.
            let (status, body, etag) = op(&app, group, "$member-add", params).await;
            assert_eq!(status, 200);
            assert!(text(&body).contains("already"), "{body}");
            assert_eq!(etag.as_deref(), Some(format!("W/\"{next}\"").as_str()));
            assert_eq!(quantity(&app, group).await.1, next.to_string());
            // The older version still shows the old membership.
            let (_, old) = app
                .get_json(&format!("Group/{group}/_history/{version}"))
                .await;
            assert_eq!(
                old["member"].as_array().map(Vec::len),
                Some(before as usize)
            );
        }
    }
}

#[tokio::test]
async fn member_add_by_references_attaches_the_coverage_with_the_payer() {
    for app in spawn_apps().await {
        load_synthetic(&app).await;
        let (patient, _) = candidate(&app, "list-3").await;
        let (status, body, _) = op(
            &app,
            "list-3",
            "$member-add",
            json!([
                param("patientReference", "valueReference", reference(&patient)),
                param(
                    "providerReference",
                    "valueReference",
                    reference("Practitioner/pract-2")
                ),
                param(
                    "attributionPeriod",
                    "valuePeriod",
                    json!({"start": "2026-03-01", "end": "2026-12-31"})
                ),
            ]),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let (_, g) = app.get_json("Group/list-3").await;
        let m = g["member"]
            .as_array()
            .expect("members")
            .iter()
            .find(|m| m["entity"]["reference"] == patient.as_str())
            .expect("the new entry")
            .clone();
        assert_eq!(m["period"]["start"], "2026-03-01");
        let exts = m["extension"].to_string();
        assert!(
            exts.contains("Practitioner/pract-2") && exts.contains("Coverage/"),
            "{exts}"
        );
        // Unknown patient or provider: 404 naming which.
        let (status, body, _) = op(
            &app,
            "list-3",
            "$member-add",
            json!([
                param(
                    "patientReference",
                    "valueReference",
                    reference("Patient/nobody")
                ),
                param(
                    "providerReference",
                    "valueReference",
                    reference("Practitioner/pract-2")
                ),
            ]),
        )
        .await;
        assert_eq!(status, 404);
        assert!(text(&body).contains("Patient/nobody"), "{body}");
        let (status, body, _) = op(
            &app,
            "list-3",
            "$member-add",
            json!([
                param(
                    "memberId",
                    "valueIdentifier",
                    json!({"system": "urn:x", "value": "nope"})
                ),
                param(
                    "providerNpi",
                    "valueIdentifier",
                    json!({"system": NPI, "value": "1234567893"})
                ),
            ]),
        )
        .await;
        assert_eq!(status, 404);
        assert!(text(&body).contains("member id"), "{body}");
    }
}

#[tokio::test]
async fn member_add_with_a_new_period_updates_the_entry_and_bad_periods_are_refused() {
    for app in spawn_apps().await {
        load_synthetic(&app).await;
        let (patient, _) = candidate(&app, "list-3").await;
        let (_, g) = app.get_json("Group/list-3").await;
        let contract = g["extension"]
            .as_array()
            .expect("extensions")
            .iter()
            .find(|e| e["url"] == "http://hl7.org/fhir/us/davinci-atr/StructureDefinition/ext-contractValidityPeriod")
            .expect("contract period")["valuePeriod"]
            .clone();
        let start = contract["start"].as_str().expect("start").to_string();
        let end = contract["end"].as_str().expect("end").to_string();
        let add = |period: Option<Value>| {
            let mut params = vec![
                param("patientReference", "valueReference", reference(&patient)),
                param(
                    "providerReference",
                    "valueReference",
                    reference("Practitioner/pract-2"),
                ),
            ];
            if let Some(p) = period {
                params.push(param("attributionPeriod", "valuePeriod", p));
            }
            let app = &app;
            async move { op(app, "list-3", "$member-add", Value::Array(params)).await }
        };
        let entry_of = |g: &Value| {
            g["member"]
                .as_array()
                .expect("members")
                .iter()
                .find(|m| m["entity"]["reference"] == patient.as_str())
                .cloned()
                .expect("the entry")
        };
        let (status, body, _) = add(Some(json!({"start": start, "end": end}))).await;
        assert_eq!(status, 200, "{body}");
        let (_, v1) = quantity(&app, "list-3").await;
        // The same period again: nothing changes.
        let (status, body, _) = add(Some(json!({"start": start, "end": end}))).await;
        assert_eq!(status, 200);
        assert!(text(&body).contains("nothing changed"), "{body}");
        // A new period for the same attribution: that entry, a new version, changed.
        let (status, body, _) = add(Some(json!({"start": start, "end": start}))).await;
        assert_eq!(status, 200, "{body}");
        let (_, v2) = quantity(&app, "list-3").await;
        assert_ne!(v1, v2, "a new version");
        let (_, g) = app.get_json("Group/list-3").await;
        let m = entry_of(&g);
        assert_eq!(m["period"], json!({"start": start, "end": start}));
        assert_eq!(m["extension"][0]["valueCode"], "changed", "{m}");
        // No period: the entry keeps the one it has.
        let (status, body, _) = add(None).await;
        assert_eq!(status, 200);
        assert!(text(&body).contains("nothing changed"), "{body}");
        // Inverted, or wholly outside the contract: 422 on attributionPeriod, nothing written.
        for (bad, says) in [
            (json!({"start": end, "end": start}), "after its end"),
            (
                json!({"start": "1990-01-01", "end": "1990-12-31"}),
                "outside the contract validity period",
            ),
        ] {
            let (status, body, _) = add(Some(bad)).await;
            assert_eq!(status, 422, "{body}");
            assert_eq!(body["issue"][0]["expression"][0], "attributionPeriod");
            assert!(text(&body).contains(says), "{says}: {body}");
        }
        assert_eq!(quantity(&app, "list-3").await.1, v2, "nothing written");
    }
}

#[tokio::test]
async fn member_remove_drops_on_draft_removes_on_open_and_final_lists_refuse_changes() {
    for app in spawn_apps().await {
        load_synthetic(&app).await;
        // Draft: the entry stays, inactive, changeType dropped.
        let (patient, provider, coverage) = first_member(&app, "list-2").await;
        let (before, _) = quantity(&app, "list-2").await;
        let (status, body, _) = op(
            &app,
            "list-2",
            "$member-remove",
            json!([
                param("patientReference", "valueReference", reference(&patient)),
                param("providerReference", "valueReference", reference(&provider)),
                param("coverageReference", "valueReference", reference(&coverage)),
            ]),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(quantity(&app, "list-2").await.0, before);
        assert!(
            entries(&app, "list-2", &patient)
                .await
                .contains(&("dropped".to_string(), true))
        );
        // Removing again: not on the list (no active entry).
        let (status, body, _) = op(
            &app,
            "list-2",
            "$member-remove",
            json!([param(
                "patientReference",
                "valueReference",
                reference(&patient)
            )]),
        )
        .await;
        assert_eq!(status, 422, "{body}");
        // Open: the entries leave.
        let (patient, _, _) = first_member(&app, "list-3").await;
        let (before, _) = quantity(&app, "list-3").await;
        let n = entries(&app, "list-3", &patient).await.len() as i64;
        let (status, body, _) = op(
            &app,
            "list-3",
            "$member-remove",
            json!([param(
                "patientReference",
                "valueReference",
                reference(&patient)
            )]),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(quantity(&app, "list-3").await.0, before - n);
        assert!(entries(&app, "list-3", &patient).await.is_empty());
        // Final: 409 for both.
        let (patient, provider, _) = first_member(&app, "list-1").await;
        let (status, body, _) = op(
            &app,
            "list-1",
            "$member-remove",
            json!([param(
                "patientReference",
                "valueReference",
                reference(&patient)
            )]),
        )
        .await;
        assert_eq!(status, 409, "{body}");
        assert!(text(&body).contains("final"), "{body}");
        let (status, _, _) = op(
            &app,
            "list-1",
            "$member-add",
            json!([
                param("patientReference", "valueReference", reference(&patient)),
                param("providerReference", "valueReference", reference(&provider)),
            ]),
        )
        .await;
        assert_eq!(status, 409);
    }
}

#[tokio::test]
async fn remove_then_add_on_an_open_list_is_an_update_and_member_id_forms_work() {
    for app in spawn_apps().await {
        load_synthetic(&app).await;
        let (patient, provider, _) = first_member(&app, "list-3").await;
        let (_, p) = app.get_json(&patient).await;
        let mb = p["identifier"]
            .as_array()
            .expect("ids")
            .iter()
            .find(|i| i["type"]["coding"][0]["code"] == "MB")
            .expect("MB")
            .clone();
        let member_id = json!({"system": mb["system"], "value": mb["value"]});
        let (_, prov) = app.get_json(&provider).await;
        let npi_value = prov["identifier"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|i| i["system"] == NPI)
            .map(|i| i["value"].clone())
            .expect("the provider has an NPI");
        let npi = json!({"system": NPI, "value": npi_value});
        let (_, v0) = quantity(&app, "list-3").await;
        let (status, body, _) = op(
            &app,
            "list-3",
            "$member-remove",
            json!([
                param("memberId", "valueIdentifier", member_id.clone()),
                param("providerNpi", "valueIdentifier", npi.clone()),
            ]),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let (status, body, _) = op(
            &app,
            "list-3",
            "$member-add",
            json!([
                param("memberId", "valueIdentifier", member_id.clone()),
                param("providerNpi", "valueIdentifier", npi),
            ]),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let v2 = quantity(&app, "list-3").await.1;
        assert_eq!(
            v2.parse::<i64>().expect("v"),
            v0.parse::<i64>().expect("v") + 2
        );
        assert!(
            entries(&app, "list-3", &patient)
                .await
                .iter()
                .any(|(_, inactive)| !inactive)
        );
        // memberId alone removes every entry of the member.
        let (status, body, _) = op(
            &app,
            "list-3",
            "$member-remove",
            json!([param("memberId", "valueIdentifier", member_id)]),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert!(entries(&app, "list-3", &patient).await.is_empty());
    }
}

#[tokio::test]
async fn confirm_makes_a_draft_final_and_drops_inactive_entries() {
    for app in spawn_apps().await {
        load_synthetic(&app).await;
        let (patient, _, _) = first_member(&app, "list-2").await;
        let (status, _, _) = op(
            &app,
            "list-2",
            "$member-remove",
            json!([param(
                "patientReference",
                "valueReference",
                reference(&patient)
            )]),
        )
        .await;
        assert_eq!(status, 200);
        let (before, _) = quantity(&app, "list-2").await;
        let (_, g) = app.get_json("Group/list-2").await;
        let dropped = g["member"]
            .as_array()
            .expect("members")
            .iter()
            .filter(|m| m["inactive"].as_bool().unwrap_or(false))
            .count() as i64;
        let (status, body, etag) = op(&app, "list-2", "$confirm-attribution-list", json!([])).await;
        assert_eq!(status, 201, "{body}");
        assert_eq!(body["issue"][0]["severity"], "information");
        assert!(etag.is_some());
        let (_, g) = app.get_json("Group/list-2?_summary=true").await;
        assert!(g["extension"].to_string().contains("\"final\""));
        assert_eq!(g["quantity"].as_i64(), Some(before - dropped));
        assert!(entries(&app, "list-2", &patient).await.is_empty());
        // Again: harmless.
        let (status, body, _) = op(&app, "list-2", "$confirm-attribution-list", json!([])).await;
        assert_eq!(status, 201);
        assert!(text(&body).contains("already final"));
        // Parameters are refused.
        let (status, _, _) = op(
            &app,
            "list-3",
            "$confirm-attribution-list",
            json!([param(
                "patientReference",
                "valueReference",
                reference(&patient)
            )]),
        )
        .await;
        assert_eq!(status, 400);
    }
}

#[tokio::test]
async fn attribution_status_returns_the_members_entries_and_their_resources() {
    for app in spawn_apps().await {
        load_synthetic(&app).await;
        let (patient, provider, coverage) = first_member(&app, "list-3").await;
        let (status, bundle, _) = op(
            &app,
            "list-3",
            "$attribution-status",
            json!([param(
                "patientReference",
                "valueReference",
                reference(&patient)
            )]),
        )
        .await;
        assert_eq!(status, 200, "{bundle}");
        assert_eq!(bundle["type"], "collection");
        let urls: Vec<String> = bundle["entry"]
            .as_array()
            .expect("entries")
            .iter()
            .filter_map(|e| e["fullUrl"].as_str().map(str::to_string))
            .collect();
        for want in [
            "Group/list-3",
            patient.as_str(),
            provider.as_str(),
            coverage.as_str(),
        ] {
            assert!(urls.iter().any(|u| u.ends_with(want)), "{want} in {urls:?}");
        }
        let group = &bundle["entry"][0]["resource"];
        assert!(
            group["member"]
                .as_array()
                .expect("members")
                .iter()
                .all(|m| m["entity"]["reference"] == patient.as_str())
        );
        // Not on the list.
        let (other, _) = candidate(&app, "list-3").await;
        let (status, body, _) = op(
            &app,
            "list-3",
            "$attribution-status",
            json!([param(
                "patientReference",
                "valueReference",
                reference(&other)
            )]),
        )
        .await;
        assert_eq!(status, 422, "{body}");
    }
}

#[tokio::test]
async fn bad_parameters_stale_versions_and_other_providers_lists_are_refused() {
    for app in spawn_apps().await {
        load_synthetic(&app).await;
        let (patient, provider, _) = first_member(&app, "list-3").await;
        // Unknown name, wrong type, missing partner: 400 listing the accepted combinations.
        for params in [
            json!([param("colour", "valueString", json!("red"))]),
            json!([param("patientReference", "valueString", json!(patient))]),
            json!([param(
                "patientReference",
                "valueReference",
                reference(&patient)
            )]),
            json!([]),
        ] {
            let (status, body, _) = op(&app, "list-3", "$member-add", params.clone()).await;
            assert_eq!(status, 400, "{params}: {body}");
            assert_eq!(body["resourceType"], "OperationOutcome");
        }
        let (_, body, _) = op(&app, "list-3", "$member-add", json!([])).await;
        assert!(text(&body).contains("memberId + providerNpi"), "{body}");
        // If-Match on an operation.
        let r = app
            .client
            .post(app.url("Group/list-3/$member-remove"))
            .header("Content-Type", "application/fhir+json")
            .header("If-Match", "W/\"999\"")
            .body(
                json!({"resourceType": "Parameters", "parameter": [
                    param("patientReference", "valueReference", reference(&patient))]})
                .to_string(),
            )
            .send()
            .await
            .expect("post");
        assert_eq!(r.status(), 412);
        // Unknown operation.
        let (status, _, _) = op(&app, "list-3", "$frobnicate", json!([])).await;
        assert_eq!(status, 404);
        // A Consumer for org-1 (lists 1, 5, 9) may not touch list-3, and needs a write scope.
        let npi = npi_of(&app, "org-1").await;
        let consumer = app
            .register(
                "org-1-reconciler",
                SigningAlg::Es384,
                &[&format!("{NPI}|{npi}")],
                &["system/*.read", "system/Group.u"],
                false,
            )
            .await;
        let writer = app.client_with(
            &app.token(&consumer, "system/*.read system/Group.u")
                .await
                .expect("token"),
        );
        let add = json!([
            param("patientReference", "valueReference", reference(&patient)),
            param("providerReference", "valueReference", reference(&provider)),
        ]);
        let (status, _, _) = op_with(&app, &writer, "list-3", "$member-add", add.clone()).await;
        assert_eq!(status, 404, "another provider's list");
        let reader = app.client_with(&app.token(&consumer, "system/*.read").await.expect("token"));
        let (status, _, _) = op_with(&app, &reader, "list-5", "$member-add", add.clone()).await;
        assert_eq!(status, 403, "read-only token");
        let (own_patient, _, _) = first_member(&app, "list-5").await;
        let (status, body, _) = op_with(
            &app,
            &writer,
            "list-5",
            "$attribution-status",
            json!([param(
                "patientReference",
                "valueReference",
                reference(&own_patient)
            )]),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
}

#[tokio::test]
async fn concurrent_adds_and_removes_serialise_without_lost_updates() {
    for app in spawn_apps().await {
        load_synthetic(&app).await;
        let group = "list-3";
        let (_, g) = app.get_json(&format!("Group/{group}")).await;
        let members: Vec<(String, String)> = g["member"]
            .as_array()
            .expect("members")
            .iter()
            .map(|m| {
                let provider = m["extension"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|e| {
                        e["url"]
                            .as_str()
                            .is_some_and(|u| u.ends_with("ext-attributedProvider"))
                    })
                    .and_then(|e| e["valueReference"]["reference"].as_str())
                    .unwrap_or("")
                    .to_string();
                (
                    m["entity"]["reference"].as_str().unwrap_or("").to_string(),
                    provider,
                )
            })
            .collect();
        let (q0, v0) = quantity(&app, group).await;
        // Re-add existing attributions with another provider (new entries) and remove others.
        let n = members.len().min(25);
        let mut tasks = Vec::new();
        for (i, (patient, _)) in members.iter().take(n).enumerate() {
            let client = app.client.clone();
            let url = app.url(&format!("Group/{group}/$member-add"));
            let body = json!({"resourceType": "Parameters", "parameter": [
                param("patientReference", "valueReference", reference(patient)),
                param("providerReference", "valueReference", reference(&format!("Practitioner/pract-{}", 1 + i % 3)))]});
            tasks.push(tokio::spawn(async move {
                let r = client
                    .post(url)
                    .header("Content-Type", "application/fhir+json")
                    .body(body.to_string())
                    .send()
                    .await?;
                let status = r.status().as_u16();
                Ok::<_, reqwest::Error>((status, r.text().await?))
            }));
        }
        let removed: Vec<&(String, String)> = members.iter().skip(n).take(25).collect();
        for (patient, provider) in &removed {
            let client = app.client.clone();
            let url = app.url(&format!("Group/{group}/$member-remove"));
            let body = json!({"resourceType": "Parameters", "parameter": [
                param("patientReference", "valueReference", reference(patient)),
                param("providerReference", "valueReference", reference(provider))]});
            tasks.push(tokio::spawn(async move {
                let r = client
                    .post(url)
                    .header("Content-Type", "application/fhir+json")
                    .body(body.to_string())
                    .send()
                    .await?;
                let status = r.status().as_u16();
                Ok::<_, reqwest::Error>((status, r.text().await?))
            }));
        }
        let mut ok = 0;
        for t in tasks {
            let (status, body) = t.await.expect("task").expect("request");
            assert!(status == 200 || status == 422, "{status}: {body}");
            ok += usize::from(status == 200);
        }
        let (q1, v1) = quantity(&app, group).await;
        let (_, after) = app.get_json(&format!("Group/{group}")).await;
        let count = after["member"].as_array().map_or(0, Vec::len) as i64;
        assert_eq!(q1, count, "{}: quantity matches the entries", app.dialect);
        // Each effective change made exactly one version.
        let versions = v1.parse::<i64>().expect("v") - v0.parse::<i64>().expect("v");
        let adds_effective = q1 - q0 + removed.len() as i64;
        assert!(
            versions as usize <= ok,
            "{versions} versions for {ok} successes"
        );
        assert!(
            versions >= adds_effective.max(0),
            "{versions} versions, {adds_effective} adds"
        );
    }
}

#[tokio::test]
async fn x_provenance_is_stored_with_the_version_it_explains_and_bad_ones_change_nothing() {
    for app in spawn_apps().await {
        load_synthetic(&app).await;
        let (patient, _, _) = first_member(&app, "list-3").await;
        let provenance = json!({"resourceType": "Provenance",
            "agent": [{"who": {"reference": "Organization/org-3"}}],
            "reason": [{"text": "member moved out of the area"}]});
        let remove = |prov: String| {
            app.client
                .post(app.url("Group/list-3/$member-remove"))
                .header("Content-Type", "application/fhir+json")
                .header("X-Provenance", prov)
                .body(
                    json!({"resourceType": "Parameters", "parameter": [
                        param("patientReference", "valueReference", reference(&patient))]})
                    .to_string(),
                )
                .send()
        };
        let (_, v0) = quantity(&app, "list-3").await;
        // Not a Provenance, or without an agent: 400, and the list does not change.
        for bad in [
            "{not json",
            r#"{"resourceType":"Patient"}"#,
            r#"{"resourceType":"Provenance"}"#,
        ] {
            let r = remove(bad.to_string()).await.expect("post");
            assert_eq!(r.status(), 400, "{bad}");
        }
        assert_eq!(quantity(&app, "list-3").await.1, v0);
        let r = remove(provenance.to_string()).await.expect("post");
        assert_eq!(r.status(), 200);
        let (_, v1) = quantity(&app, "list-3").await;
        let (status, bundle) = app.get_json("Provenance?target=Group/list-3").await;
        assert_eq!(status, 200, "{bundle}");
        assert_eq!(bundle["total"], 1);
        let stored = &bundle["entry"][0]["resource"];
        assert_eq!(
            stored["target"][0]["reference"],
            format!("Group/list-3/_history/{v1}")
        );
        assert_eq!(stored["reason"][0]["text"], "member moved out of the area");
        assert!(stored["recorded"].is_string());
        let id = stored["id"].as_str().expect("id");
        let (status, one) = app.get_json(&format!("Provenance/{id}")).await;
        assert_eq!((status, one["id"].as_str()), (200, Some(id)));
        // A client for another provider does not see it.
        let npi = npi_of(&app, "org-1").await;
        let other = app
            .register(
                "org-1-prov",
                SigningAlg::Es384,
                &[&format!("{NPI}|{npi}")],
                &["system/*.read"],
                false,
            )
            .await;
        let http = app.client_with(&app.token(&other, "system/*.read").await.expect("token"));
        let r = http
            .get(app.url(&format!("Provenance/{id}")))
            .send()
            .await
            .expect("get");
        assert_eq!(r.status(), 404);
    }
}
