//! Bulk Data's Patient and system levels (`Patient/$export`, `$export`), `_typeFilter` with the
//! FHIR search parameters of the exported types, and `patient` at `_until`: end to end over HTTP
//! with real tokens, on SQLite and PostgreSQL.
//!
//! The synthetic payer of `load_synthetic` has 9 lists over 4 provider organisations; org-1's
//! Consumer sees list-1 (final), list-5 (draft) and list-9 (open).

mod common;

use std::collections::BTreeSet;

use atr_model::instant::{fhir_instant, now_micros};
use common::exports::{
    consumer, download, error_lines, ids_of, kick_off, manifest, references_resolve, started,
};
use common::{TestApp, load_synthetic, spawn_apps};
use serde_json::{Value, json};

/// `Patient/id` of the members of `lists`.
async fn members_of(app: &TestApp, lists: &[&str]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for list in lists {
        let (_, g) = app.get_json(&format!("Group/{list}")).await;
        out.extend(
            g["member"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|m| m["entity"]["reference"].as_str().map(str::to_string)),
        );
    }
    out
}

/// How many resources of `rtype` the store holds (a search total).
async fn stored(app: &TestApp, rtype: &str) -> usize {
    let (_, b) = app.get_json(&format!("{rtype}?_summary=count")).await;
    b["total"].as_u64().expect("total") as usize
}

/// Runs an export to its lines.
async fn export(
    app: &TestApp,
    http: &reqwest::Client,
    path: &str,
) -> (Value, Vec<(String, Value)>) {
    let location = started(app, http, path).await;
    let m = manifest(http, &location).await;
    let lines = download(http, &m).await;
    (m, lines)
}

#[tokio::test]
async fn patient_and_system_exports_hold_what_the_client_may_see() {
    for app in spawn_apps().await {
        load_synthetic(&app).await;
        let d = app.dialect;
        let http = consumer(&app, "org-1-levels").await;
        let own = members_of(&app, &["list-1", "list-5", "list-9"]).await;
        let everyone = members_of(
            &app,
            &[
                "list-1", "list-2", "list-3", "list-4", "list-5", "list-6", "list-7", "list-8",
                "list-9",
            ],
        )
        .await;
        assert!(own.len() < everyone.len(), "{d}: other lists add members");

        // A Consumer: its lists' members and what they reference, at both levels.
        for path in ["Patient/$export", "$export"] {
            let (m, lines) = export(&app, &http, path).await;
            assert!(
                m["request"].as_str().expect("request").ends_with(path),
                "{d}"
            );
            assert_eq!(m["error"], json!([]), "{d}: {path}");
            let patients: BTreeSet<String> = ids_of(&lines, "Patient").into_iter().collect();
            assert_eq!(patients, own, "{d}: {path}");
            let groups: BTreeSet<String> = ids_of(&lines, "Group").into_iter().collect();
            assert_eq!(
                groups,
                ["Group/list-1", "Group/list-5", "Group/list-9"]
                    .map(String::from)
                    .into(),
                "{d}: {path}"
            );
            references_resolve(&lines);
        }

        // An administration client: everything stored, whether or not on a list.
        let (m, lines) = export(&app, &app.client, "$export").await;
        assert_eq!(m["error"], json!([]), "{d}");
        for rtype in [
            "Patient",
            "Coverage",
            "Organization",
            "Practitioner",
            "Group",
        ] {
            assert_eq!(
                ids_of(&lines, rtype).len(),
                stored(&app, rtype).await,
                "{d}: {rtype}"
            );
        }
        let (_, lines) = export(&app, &app.client, "Patient/$export?_type=Patient").await;
        assert_eq!(
            ids_of(&lines, "Patient").len(),
            stored(&app, "Patient").await
        );

        // `patient` at the Patient level: a member of one of the Consumer's lists is exported
        // (with the lists that hold it), one of another provider's lists is not.
        let member = own.iter().next().expect("a member").clone();
        let stranger = everyone
            .difference(&own)
            .next()
            .expect("a stranger")
            .clone();
        let path = format!("Patient/$export?patient={member},{stranger}");
        let (m, lines) = export(&app, &http, &path).await;
        assert_eq!(ids_of(&lines, "Patient"), vec![member.clone()], "{d}");
        for (_, g) in lines.iter().filter(|(t, _)| t == "Group") {
            let entries = g["member"].as_array().expect("members");
            assert!(!entries.is_empty());
            assert!(
                entries
                    .iter()
                    .all(|e| e["entity"]["reference"] == member.as_str())
            );
        }
        let errors = json!(error_lines(&http, &m).await).to_string();
        assert!(errors.contains(&stranger), "{d}: {errors}");

        // The CapabilityStatement names both operations.
        let (_, cs) = app.get_json("metadata").await;
        let rest = &cs["rest"][0];
        assert!(
            rest["operation"]
                .to_string()
                .contains("OperationDefinition/export")
        );
        let patient = rest["resource"]
            .as_array()
            .expect("resources")
            .iter()
            .find(|r| r["type"] == "Patient")
            .expect("Patient");
        assert!(patient["operation"].to_string().contains("patient-export"));
    }
}

#[tokio::test]
async fn level_exports_refuse_what_the_group_export_refuses() {
    for app in spawn_apps().await {
        load_synthetic(&app).await;
        let http = consumer(&app, "org-1-level-errors").await;
        for (path, prefer, status) in [
            ("$export", "", 400),
            (
                "Patient/$export?_outputFormat=text/csv",
                "respond-async",
                400,
            ),
            ("$export?_since=2999-01-01T00:00:00Z", "respond-async", 400),
            ("Patient/$export?bogus=1", "respond-async", 400),
            (
                "$export?_typeFilter=Group%3Fmember%3DPatient/x",
                "respond-async",
                400,
            ),
        ] {
            let (got, _, body) = kick_off(&app, &http, path, prefer).await;
            assert_eq!(got, status, "{path}");
            assert_eq!(body["resourceType"], "OperationOutcome", "{path}");
        }
        // Without a token: 401, as everywhere.
        let (status, _, body) = kick_off(&app, &app.anon, "$export", "respond-async").await;
        assert_eq!(
            (status, &body["resourceType"]),
            (401, &json!("OperationOutcome"))
        );
    }
}

/// The exported lines of one type whose JSON satisfies `keep`, as ids.
fn ids_where(lines: &[(String, Value)], rtype: &str, keep: impl Fn(&Value) -> bool) -> Vec<String> {
    lines
        .iter()
        .filter(|(t, v)| t == rtype && keep(v))
        .map(|(_, v)| format!("{rtype}/{}", v["id"].as_str().unwrap_or("")))
        .collect()
}

#[tokio::test]
async fn type_filters_take_the_fhir_search_parameters_of_the_exported_types() {
    for app in spawn_apps().await {
        load_synthetic(&app).await;
        let d = app.dialect;
        // Variety the synthetic data lacks: one Patient written later, with another gender. (The
        // ATR Coverage profile fixes status to active: `status` selects all or nothing.)
        let (_, g) = app.get_json("Group/list-1").await;
        let member = g["member"][0]["entity"]["reference"]
            .as_str()
            .expect("member")
            .to_string();
        let (_, found) = app
            .get_json(&format!("Coverage?beneficiary={member}"))
            .await;
        let coverage = &found["entry"][0]["resource"];
        let before_touch = fhir_instant(now_micros());
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let (_, mut patient) = app.get_json(&member).await;
        patient["gender"] = json!("other");
        let r = app.put(&member, &patient).await;
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());

        let base = "Group/list-1/$export?_type=Patient,Coverage";
        let (_, all) = export(&app, &app.client, base).await;
        let filtered = |filter: &str| format!("{base}&_typeFilter={}", urlencode(filter));
        let check = |got: Vec<String>, want: Vec<String>, what: &str| {
            let (got, want): (BTreeSet<_>, BTreeSet<_>) =
                (got.into_iter().collect(), want.into_iter().collect());
            assert!(!want.is_empty(), "{d}: {what} selects nothing in the data");
            assert_eq!(got, want, "{d}: {what}");
        };

        let (_, lines) = export(&app, &app.client, &filtered("Coverage?status=active")).await;
        let active = ids_where(&all, "Coverage", |c| c["status"] == "active");
        check(ids_of(&lines, "Coverage"), active, "Coverage status");
        let (_, lines) = export(&app, &app.client, &filtered("Coverage?status=cancelled")).await;
        assert!(ids_of(&lines, "Coverage").is_empty(), "{d}");
        // The filter narrows its own type only.
        assert_eq!(
            ids_of(&lines, "Patient").len(),
            ids_of(&all, "Patient").len()
        );

        let payer = coverage["payor"][0]["reference"]
            .as_str()
            .expect("payor")
            .to_string();
        let (_, lines) = export(
            &app,
            &app.client,
            &filtered(&format!("Coverage?payor={payer}")),
        )
        .await;
        let by_payer = ids_where(&all, "Coverage", |c| {
            c["payor"][0]["reference"] == payer.as_str()
        });
        check(ids_of(&lines, "Coverage"), by_payer, "Coverage payor");
        let (_, lines) = export(
            &app,
            &app.client,
            &filtered("Coverage?payor=Organization/nobody"),
        )
        .await;
        assert!(ids_of(&lines, "Coverage").is_empty(), "{d}");

        let (_, lines) = export(
            &app,
            &app.client,
            &filtered(&format!("Coverage?beneficiary={member}")),
        )
        .await;
        let theirs = ids_where(&all, "Coverage", |c| {
            c["beneficiary"]["reference"] == member.as_str()
        });
        check(ids_of(&lines, "Coverage"), theirs, "Coverage beneficiary");

        let ident = &patient["identifier"][0];
        let token = format!(
            "{}|{}",
            ident["system"].as_str().expect("system"),
            ident["value"].as_str().expect("value")
        );
        let (_, lines) = export(
            &app,
            &app.client,
            &filtered(&format!("Patient?identifier={token}")),
        )
        .await;
        check(
            ids_of(&lines, "Patient"),
            vec![member.clone()],
            "Patient identifier",
        );

        let (_, lines) = export(&app, &app.client, &filtered("Patient?gender=other")).await;
        check(
            ids_of(&lines, "Patient"),
            vec![member.clone()],
            "Patient gender",
        );
        let (_, lines) = export(
            &app,
            &app.client,
            &filtered("Patient?gender=http://hl7.org/fhir/administrative-gender|female"),
        )
        .await;
        let female = ids_where(&all, "Patient", |p| p["gender"] == "female");
        check(
            ids_of(&lines, "Patient"),
            female,
            "Patient gender with system",
        );

        let mut days: Vec<String> = all
            .iter()
            .filter(|(t, _)| t == "Patient")
            .filter_map(|(_, p)| p["birthDate"].as_str().map(str::to_string))
            .collect();
        days.sort();
        let middle = days[days.len() / 2].clone();
        let (_, lines) = export(
            &app,
            &app.client,
            &filtered(&format!("Patient?birthdate=ge{middle}")),
        )
        .await;
        let older = ids_where(&all, "Patient", |p| {
            p["birthDate"]
                .as_str()
                .is_some_and(|b| b >= middle.as_str())
        });
        check(ids_of(&lines, "Patient"), older, "Patient birthdate ge");
        let year = &middle[..4];
        let (_, lines) = export(
            &app,
            &app.client,
            &filtered(&format!("Patient?birthdate={year}")),
        )
        .await;
        let that_year = ids_where(&all, "Patient", |p| {
            p["birthDate"].as_str().is_some_and(|b| b.starts_with(year))
        });
        check(
            ids_of(&lines, "Patient"),
            that_year,
            "Patient birthdate year",
        );

        let (_, lines) = export(
            &app,
            &app.client,
            &filtered(&format!("Patient?_lastUpdated=gt{before_touch}")),
        )
        .await;
        check(
            ids_of(&lines, "Patient"),
            vec![member.clone()],
            "Patient _lastUpdated",
        );

        // Group identifier, at the system level: only the list carrying it.
        let contract = g["identifier"]
            .as_array()
            .expect("identifiers")
            .iter()
            .find(|i| i["system"].is_string() && i["value"].is_string())
            .expect("an identifier");
        let filter = format!(
            "Group?identifier={}|{}",
            contract["system"].as_str().unwrap_or(""),
            contract["value"].as_str().unwrap_or("")
        );
        let path = format!("$export?_type=Group&_typeFilter={}", urlencode(&filter));
        let (_, lines) = export(&app, &app.client, &path).await;
        check(
            ids_of(&lines, "Group"),
            vec!["Group/list-1".into()],
            "Group identifier",
        );

        // The same parameters in a REST search.
        let (_, b) = app.get_json("Patient?gender=other").await;
        assert_eq!(b["total"], 1, "{d}");
        let (s, b) = app.get_json("Patient?birthdate=ge1970-13").await;
        assert_eq!(
            (s, b["resourceType"].as_str()),
            (400, Some("OperationOutcome"))
        );
        let (_, b) = app.get_json("Coverage?status=cancelled").await;
        assert_eq!(b["total"], 0, "{d}");
        let (_, b) = app.get_json("Coverage?status=active").await;
        assert_eq!(b["total"], stored(&app, "Coverage").await, "{d}");
    }
}

#[tokio::test]
async fn patient_at_until_exports_the_member_as_the_list_was_then() {
    for app in spawn_apps().await {
        load_synthetic(&app).await;
        let d = app.dialect;
        let (_, mut g) = app.get_json("Group/list-9").await;
        let member = g["member"][0]["entity"]["reference"]
            .as_str()
            .expect("member")
            .to_string();
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let until = fhir_instant(now_micros());
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        // The payer takes the member off the list.
        let entries = g["member"].as_array_mut().expect("members");
        entries.retain(|m| m["entity"]["reference"] != member.as_str());
        let left = entries.len();
        g["quantity"] = json!(left);
        assert_eq!(app.put("Group/list-9", &g).await.status(), 200);

        let path =
            format!("Group/list-9/$export?_type=Group,Patient&patient={member}&_until={until}");
        let (m, lines) = export(&app, &app.client, &path).await;
        assert_eq!(ids_of(&lines, "Patient"), vec![member.clone()], "{d}");
        let (_, group) = lines.iter().find(|(t, _)| t == "Group").expect("Group");
        let entries = group["member"].as_array().expect("members");
        assert!(!entries.is_empty(), "{d}");
        assert!(
            entries
                .iter()
                .all(|e| e["entity"]["reference"] == member.as_str())
        );
        assert_eq!(
            error_lines(&app.client, &m).await,
            Vec::<Value>::new(),
            "{d}"
        );

        // Today the member is not on the list: left out, and said so.
        let path = format!("Group/list-9/$export?_type=Group,Patient&patient={member}");
        let (m, lines) = export(&app, &app.client, &path).await;
        assert!(ids_of(&lines, "Patient").is_empty(), "{d}");
        let errors = json!(error_lines(&app.client, &m).await).to_string();
        assert!(errors.contains(&member), "{d}: {errors}");
    }
}

fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
