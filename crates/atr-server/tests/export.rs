//! Bulk export: `$davinci-data-export` and `$export` on a Group, end to end over HTTP with real
//! tokens, on SQLite and PostgreSQL.
//!
//! The synthetic payer of `load_synthetic` has 9 lists over 4 provider organisations; org-1's
//! Consumer sees list-1 (final), list-5 (draft) and list-9 (open).

mod common;
#[path = "common/downloads.rs"]
mod downloads;

use std::collections::{BTreeSet, HashSet};
use std::time::{Duration, Instant};

use atr_auth::SigningAlg;
use common::exports::{
    consumer, consumer_token, download, error_lines, ids_of, kick_off, manifest,
    references_resolve, started,
};
use common::{TestApp, load_synthetic, load_synthetic_members, spawn_apps, spawn_apps_with};
use downloads::check_range_and_gzip;
use serde_json::{Value, json};

fn ext_ref(member: &Value, suffix: &str) -> Option<String> {
    member["extension"]
        .as_array()?
        .iter()
        .find(|e| e["url"].as_str().is_some_and(|u| u.ends_with(suffix)))
        .and_then(|e| e["valueReference"]["reference"].as_str())
        .map(str::to_string)
}

#[tokio::test]
async fn export_holds_exactly_the_groups_members_and_what_they_reference() {
    for app in spawn_apps().await {
        load_synthetic(&app).await;
        let http = consumer(&app, "org-1-exporter").await;
        for path in [
            "Group/list-1/$davinci-data-export",
            "Group/list-1/$export?_type=Group,Patient,Coverage,Practitioner,PractitionerRole,Organization,Location,RelatedPerson",
        ] {
            check_export_contents(&app, &http, "list-1", path).await;
        }
    }
}

/// Lists of every size (a large share of the stored Patients is read by one scan, a few by
/// lookups) hold exactly their own members.
#[tokio::test]
async fn exports_of_small_and_large_lists_hold_exactly_their_members() {
    for app in spawn_apps().await {
        load_synthetic_members(&app, 400).await;
        let mut sizes = Vec::new();
        for n in 1..=9 {
            let list = format!("list-{n}");
            let (_, group) = app.get_json(&format!("Group/{list}")).await;
            sizes.push(group["member"].as_array().map_or(0, Vec::len));
            check_export_contents(
                &app,
                &app.client,
                &list,
                &format!("Group/{list}/$davinci-data-export"),
            )
            .await;
        }
        // The lists really differ in size, so both ways of reading are taken.
        let (min, max) = (sizes.iter().min(), sizes.iter().max());
        eprintln!("{}: list sizes {sizes:?}", app.dialect);
        assert!(max >= Some(&200) && min <= Some(&100), "{sizes:?}");
    }
}

async fn check_export_contents(app: &TestApp, http: &reqwest::Client, list: &str, path: &str) {
    let (_, group) = app.get_json(&format!("Group/{list}")).await;
    let members = group["member"].as_array().expect("members");
    let patients: BTreeSet<String> = members
        .iter()
        .filter_map(|m| m["entity"]["reference"].as_str().map(str::to_string))
        .collect();
    let coverages: BTreeSet<String> = members
        .iter()
        .filter_map(|m| ext_ref(m, "ext-coverageReference"))
        .collect();
    let providers: BTreeSet<String> = members
        .iter()
        .filter_map(|m| ext_ref(m, "ext-attributedProvider"))
        .collect();
    assert!(patients.len() >= 2);

    let location = started(app, http, path).await;
    // Never an instant finish: the first poll is in progress.
    let first = http
        .get(&location)
        .header("Accept", "application/json")
        .send()
        .await
        .expect("poll");
    assert_eq!(first.status(), 202, "{}", app.dialect);
    let m = manifest(http, &location).await;
    assert_eq!(m["requiresAccessToken"], true);
    assert!(m["transactionTime"].is_string());
    assert!(
        m["request"]
            .as_str()
            .expect("request")
            .contains(&format!("Group/{list}/$"))
    );
    assert_eq!(m["error"], json!([]), "{}", app.dialect);
    let lines = download(http, &m).await;

    let exported_patients: Vec<String> = ids_of(&lines, "Patient");
    let as_set: BTreeSet<String> = exported_patients.iter().cloned().collect();
    assert_eq!(as_set.len(), exported_patients.len(), "duplicate Patients");
    assert_eq!(as_set, patients, "{}: {path}", app.dialect);
    let exported_coverages: BTreeSet<String> = ids_of(&lines, "Coverage").into_iter().collect();
    assert_eq!(exported_coverages, coverages, "{}", app.dialect);
    let groups = ids_of(&lines, "Group");
    assert_eq!(groups, vec![format!("Group/{list}")]);
    let (_, g) = lines
        .iter()
        .find(|(t, _)| t == "Group")
        .expect("Group line");
    assert_eq!(g["member"].as_array().map(Vec::len), Some(members.len()));
    // Every reference of every line resolves within the export (the payer, roles'
    // practitioners, organizations and locations, subscribers).
    let all = references_resolve(&lines);
    for p in &providers {
        assert!(all.contains(p), "{p} missing");
    }
    let del = http.delete(&location).send().await.expect("delete");
    assert_eq!(del.status(), 202);
}

/// The status of a GET sent with exactly `headers` (and a fresh admin token).
async fn raw_get_status(app: &TestApp, path: &str, headers: &[&str]) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let admin = app
        .register(
            "raw-admin",
            SigningAlg::Es384,
            &[],
            &["system/*.read"],
            true,
        )
        .await;
    let token = app.token(&admin, "system/*.read").await.expect("token");
    let url = reqwest::Url::parse(&app.url(path)).expect("url");
    let host = format!(
        "{}:{}",
        url.host_str().expect("host"),
        url.port().expect("port")
    );
    let mut stream = tokio::net::TcpStream::connect(&host)
        .await
        .expect("connect");
    let mut request = format!(
        "GET {} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n",
        url.path()
    );
    for h in headers {
        request.push_str(h);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.expect("read");
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status line")
}

#[tokio::test]
async fn kick_off_rejects_bad_requests_with_operation_outcomes() {
    for app in spawn_apps().await {
        load_synthetic(&app).await;
        let http = consumer(&app, "org-1-strict").await;
        let bad = [
            (
                "Group/list-1/$export?_outputFormat=text/html",
                400,
                "_outputFormat",
            ),
            (
                "Group/list-1/$davinci-data-export?exportType=foo",
                400,
                "exportType",
            ),
            (
                "Group/list-1/$davinci-data-export?_type=Group,Patient",
                400,
                "missing: Coverage, Practitioner, Organization",
            ),
            (
                "Group/list-1/$davinci-data-export?exportType=hl7.fhir.us.davinci-atr&_type=Group,Patient,Coverage,Practitioner",
                400,
                "missing: Organization",
            ),
            (
                // Type names are FHIR's, matched exactly.
                "Group/list-1/$davinci-data-export?_type=Group,Patient,Coverage,Practitioner,organization",
                400,
                "organization",
            ),
            (
                "Group/list-1/$export?_since=2999-01-01T00:00:00Z",
                400,
                "future",
            ),
            (
                "Group/list-1/$export?_since=0000-60-01T30:70:80%2B05:00",
                400,
                "_since",
            ),
            ("Group/list-1/$export?_type=MissingType", 400, "MissingType"),
            (
                "Group/list-1/$export?_typeFilter=Patient%3Fstatus%3Dactive",
                400,
                "status",
            ),
            ("Group/list-1/$export?bogus=1", 400, "bogus"),
            (
                "Group/list-1/$export?patient=Patient/x&_until=2020-01-01T00:00:00Z",
                400,
                "_until",
            ),
            ("Group/nope/$export", 404, "nope"),
            ("Group/list-2/$export", 404, "list-2"),
        ];
        for (path, status, says) in bad {
            let (got, location, body) = kick_off(&app, &http, path, "respond-async").await;
            assert_eq!(got, status, "{}: {path}: {body}", app.dialect);
            assert!(location.is_none());
            assert_eq!(body["resourceType"], "OperationOutcome", "{path}");
            assert!(body.to_string().contains(says), "{path}: {body}");
        }
        // Accept and Prefer are required.
        let r = http
            .get(app.url("Group/list-1/$export"))
            .header("Accept", "application/fhir+json")
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), 400);
        // (reqwest always sends an Accept header: this request goes over a bare socket.)
        let status = raw_get_status(&app, "Group/list-1/$export", &["Prefer: respond-async"]).await;
        assert_eq!(status, 400);
        // No token: 401 with an OperationOutcome.
        let r = app
            .anon
            .get(app.url("Group/list-1/$export"))
            .header("Accept", "application/fhir+json")
            .header("Prefer", "respond-async")
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), 401);
        // Under lenient handling the unsupported parts are reported in the error file.
        let (status, location, _) = kick_off(
            &app,
            &http,
            "Group/list-1/$export?bogus=1&_typeFilter=Patient%3Fstatus%3Dactive&includeAssociatedData=LatestProvenanceResources",
            "respond-async, handling=lenient",
        )
        .await;
        assert_eq!(status, 202);
        let m = manifest(&http, &location.expect("location")).await;
        let errors = error_lines(&http, &m)
            .await
            .iter()
            .map(Value::to_string)
            .collect::<Vec<_>>()
            .join("\n");
        for says in ["bogus", "status", "includeAssociatedData"] {
            assert!(errors.contains(says), "{says} not reported: {errors}");
        }
        // The ATR minimum types are a SHALL: lenient handling does not waive them.
        let (status, location, body) = kick_off(
            &app,
            &http,
            "Group/list-1/$davinci-data-export?_type=Group,Patient,Coverage",
            "respond-async, handling=lenient",
        )
        .await;
        assert_eq!(status, 400, "{body}");
        assert!(location.is_none());
        assert!(
            body.to_string()
                .contains("missing: Practitioner, Organization"),
            "{body}"
        );
        // The three _outputFormat spellings and repeated _type parameters are accepted.
        for q in [
            "_outputFormat=application/fhir%2Bndjson",
            "_outputFormat=application/ndjson",
            "_outputFormat=ndjson",
            "_type=Patient&_type=Group",
            "_since=2020-01-01T00:00:00%2B00:00",
        ] {
            let path = format!("Group/list-1/$export?{q}");
            let location = started(&app, &http, &path).await;
            let del = http.delete(&location).send().await.expect("delete");
            assert_eq!(del.status(), 202, "{q}");
        }
    }
}

#[tokio::test]
async fn files_need_the_requesting_clients_token_and_support_range_and_gzip() {
    for app in spawn_apps().await {
        load_synthetic(&app).await;
        let token = consumer_token(&app, "org-1-files").await;
        let http = app.client_with(&token);
        let other = consumer(&app, "org-1-other").await;
        let location = started(&app, &http, "Group/list-1/$export?_type=Patient").await;
        let m = manifest(&http, &location).await;
        let url = m["output"][0]["url"].as_str().expect("url").to_string();
        // Another client does not see the job, nor its files.
        let r = other.get(&location).send().await.expect("poll");
        assert_eq!(r.status(), 404);
        // A file of another client's job answers as its status URL does: not there.
        let r = other.get(&url).send().await.expect("file");
        assert_eq!(r.status(), 404);
        let body: Value = r.json().await.expect("json");
        assert_eq!(body["resourceType"], "OperationOutcome");
        assert_eq!(app.anon.get(&url).send().await.expect("file").status(), 401);

        let whole = http
            .get(&url)
            .send()
            .await
            .expect("file")
            .bytes()
            .await
            .expect("body");
        check_range_and_gzip(&http, &token, &url, &whole).await;

        // A path that is not one of the job's files is 404, whatever it tries.
        let job = location.rsplit('/').next().expect("job id");
        for name in ["..%2Fatr.db", "Patient-9.ndjson", "x"] {
            let r = http
                .get(app.url(&format!("bulkfiles/{job}/{name}")))
                .send()
                .await
                .expect("file");
            assert_eq!(r.status(), 404, "{name}");
        }
    }
}

#[tokio::test]
async fn delete_cancels_the_export_and_removes_its_files() {
    for app in spawn_apps().await {
        load_synthetic(&app).await;
        let http = consumer(&app, "org-1-deleter").await;
        let location = started(&app, &http, "Group/list-1/$davinci-data-export").await;
        let m = manifest(&http, &location).await;
        let url = m["output"][0]["url"].as_str().expect("url").to_string();
        let job = location.rsplit('/').next().expect("job").to_string();
        assert!(app.export_dir.join(&job).exists());
        let r = http.delete(&location).send().await.expect("delete");
        assert_eq!(r.status(), 202);
        let r = http
            .get(&location)
            .header("Accept", "application/json")
            .send()
            .await
            .expect("poll");
        assert_eq!(r.status(), 404);
        let body: Value = r.json().await.expect("OperationOutcome");
        assert_eq!(body["resourceType"], "OperationOutcome");
        assert_eq!(http.get(&url).send().await.expect("file").status(), 404);
        assert!(!app.export_dir.join(&job).exists());
        assert_eq!(
            http.delete(&location).send().await.expect("again").status(),
            404
        );
    }
}

#[tokio::test]
async fn since_exports_changes_and_everything_about_members_who_joined_after_it() {
    for app in spawn_apps().await {
        load_synthetic(&app).await;
        let http = consumer(&app, "org-1-since").await;
        // list-9 is org-1's open list: find a patient with coverage from its payer not on it.
        let (_, g) = app.get_json("Group/list-9").await;
        let on: HashSet<String> = g["member"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m["entity"]["reference"].as_str().map(str::to_string))
            .collect();
        let payer = g["managingEntity"]["reference"]
            .as_str()
            .expect("payer")
            .to_string();
        let provider = g["member"][0]["extension"]
            .as_array()
            .and_then(|exts| {
                exts.iter().find(|e| {
                    e["url"]
                        .as_str()
                        .is_some_and(|u| u.ends_with("ext-attributedProvider"))
                })
            })
            .and_then(|e| e["valueReference"]["reference"].as_str())
            .expect("provider")
            .to_string();
        let (_, coverages) = app
            .get_json(&format!("Coverage?payor={payer}&_count=1000"))
            .await;
        let mut candidates = coverages["entry"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["resource"]["status"] == "active")
            .filter_map(|e| e["resource"]["beneficiary"]["reference"].as_str())
            .filter(|p| !on.contains(*p))
            .map(str::to_string)
            .collect::<BTreeSet<String>>()
            .into_iter();
        let newcomer = candidates.next().expect("a patient to add");
        // On the list at _since, removed after it: on an open list the entry leaves (seed 004).
        let leaver = candidates.next().expect("a second patient to add");
        let add = |patient: &str| {
            json!({"resourceType": "Parameters", "parameter": [
                {"name": "patientReference", "valueReference": {"reference": patient}},
                {"name": "providerReference", "valueReference": {"reference": provider}}
            ]})
        };
        let r = http
            .post(app.url("Group/list-9/$member-add"))
            .header("Content-Type", "application/fhir+json")
            .body(add(&leaver).to_string())
            .send()
            .await
            .expect("member-add");
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
        let changed = on.iter().next().expect("a member").clone();
        // A Coverage a member entry references, deleted after _since.
        let gone = g["member"]
            .as_array()
            .into_iter()
            .flatten()
            .find_map(|m| ext_ref(m, "ext-coverageReference"))
            .expect("a coverage");
        let (_, before) = app.get_json(&changed).await;

        tokio::time::sleep(Duration::from_millis(20)).await;
        let since = atr_model::instant::fhir_instant(atr_model::instant::now_micros());
        tokio::time::sleep(Duration::from_millis(20)).await;
        let params = json!({"resourceType": "Parameters", "parameter": [
            {"name": "patientReference", "valueReference": {"reference": newcomer}},
            {"name": "providerReference", "valueReference": {"reference": provider}}
        ]});
        let r = http
            .post(app.url("Group/list-9/$member-add"))
            .header("Content-Type", "application/fhir+json")
            .body(params.to_string())
            .send()
            .await
            .expect("member-add");
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
        let params = json!({"resourceType": "Parameters", "parameter": [
            {"name": "patientReference", "valueReference": {"reference": leaver}}
        ]});
        let r = http
            .post(app.url("Group/list-9/$member-remove"))
            .header("Content-Type", "application/fhir+json")
            .body(params.to_string())
            .send()
            .await
            .expect("member-remove");
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
        let (_, mut p) = app.get_json(&changed).await;
        p["birthDate"] = json!("1970-01-02");
        assert!(app.put(&changed, &p).await.status().is_success());
        let r = app
            .client
            .delete(app.url(&gone))
            .send()
            .await
            .expect("delete");
        assert!(r.status().is_success());

        let q = since.replace('+', "%2B");
        let location = started(
            &app,
            &http,
            &format!("Group/list-9/$davinci-data-export?_since={q}"),
        )
        .await;
        let m = manifest(&http, &location).await;
        let lines = download(&http, &m).await;
        let patients: BTreeSet<String> = ids_of(&lines, "Patient").into_iter().collect();
        assert_eq!(
            patients,
            BTreeSet::from([newcomer.clone(), changed.clone()]),
            "{}",
            app.dialect
        );
        // The newcomer's Coverage comes along though it did not change.
        let covs = ids_of(&lines, "Coverage");
        assert_eq!(covs.len(), 1, "{covs:?}");
        assert_eq!(ids_of(&lines, "Group").len(), 1);
        // The Coverage deleted after _since, and the member who left the list, are in the
        // deleted file, not in the output.
        let deleted = m["deleted"].as_array().expect("deleted files");
        assert_eq!(deleted.len(), 1, "{m}");
        let text = http
            .get(deleted[0]["url"].as_str().expect("url"))
            .send()
            .await
            .expect("deleted file")
            .text()
            .await
            .expect("text");
        let mut urls = BTreeSet::new();
        for line in text.lines() {
            let bundle: Value = serde_json::from_str(line).expect("a Bundle line");
            assert_eq!(bundle["entry"][0]["request"]["method"], "DELETE");
            urls.insert(
                bundle["entry"][0]["request"]["url"]
                    .as_str()
                    .expect("url")
                    .to_string(),
            );
        }
        assert_eq!(
            urls,
            BTreeSet::from([gone.clone(), leaver.clone()]),
            "{}",
            app.dialect
        );
        assert!(!patients.contains(&leaver));

        // _until moves the snapshot back: the list before the addition, the Patient before its
        // change, nothing updated after it.
        let location = started(
            &app,
            &http,
            &format!("Group/list-9/$davinci-data-export?_until={q}"),
        )
        .await;
        let m = manifest(&http, &location).await;
        assert_eq!(m["transactionTime"].as_str(), Some(since.as_str()));
        let lines = download(&http, &m).await;
        let patients: BTreeSet<String> = ids_of(&lines, "Patient").into_iter().collect();
        let at_since: BTreeSet<String> = on.iter().cloned().chain([leaver.clone()]).collect();
        assert_eq!(patients, at_since, "{}", app.dialect);
        let (_, old) = lines
            .iter()
            .find(|(t, v)| {
                t == "Patient" && format!("Patient/{}", v["id"].as_str().unwrap_or("")) == changed
            })
            .expect("the changed patient");
        assert_eq!(old["birthDate"], before["birthDate"]);
        for (_, v) in &lines {
            let lu = v["meta"]["lastUpdated"].as_str().expect("lastUpdated");
            assert!(lu <= since.as_str(), "{lu} after {since}");
        }
    }
}

#[tokio::test]
async fn patient_parameter_limits_the_export_and_reports_the_rest() {
    for app in spawn_apps().await {
        load_synthetic(&app).await;
        let http = consumer(&app, "org-1-patients").await;
        let (_, g) = app.get_json("Group/list-1").await;
        let member = g["member"][0]["entity"]["reference"]
            .as_str()
            .expect("member")
            .to_string();
        let (_, other) = app.get_json("Group/list-2").await;
        let on_list_1: HashSet<&str> = g["member"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m["entity"]["reference"].as_str())
            .collect();
        let stranger = other["member"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m["entity"]["reference"].as_str())
            .find(|p| !on_list_1.contains(p))
            .expect("a non-member")
            .to_string();
        let params = json!({"resourceType": "Parameters", "parameter": [
            {"name": "patient", "valueReference": {"reference": member}},
            {"name": "patient", "valueReference": {"reference": stranger}},
            {"name": "patient", "valueReference": {"reference": "Coverage/x"}},
            {"name": "_type", "valueString": "Group,Patient,Coverage,Practitioner,Organization"}
        ]});
        let r = http
            .post(app.url("Group/list-1/$davinci-data-export"))
            .header("Accept", "application/fhir+json")
            .header("Prefer", "respond-async")
            .header("Content-Type", "application/fhir+json")
            .body(params.to_string())
            .send()
            .await
            .expect("kick-off");
        assert_eq!(r.status(), 202);
        let location = r.headers()["content-location"]
            .to_str()
            .expect("ascii")
            .to_string();
        let m = manifest(&http, &location).await;
        let lines = download(&http, &m).await;
        assert_eq!(
            ids_of(&lines, "Patient"),
            vec![member.clone()],
            "{}",
            app.dialect
        );
        let (_, group) = lines.iter().find(|(t, _)| t == "Group").expect("Group");
        assert!(
            group["member"]
                .as_array()
                .expect("members")
                .iter()
                .all(|m| m["entity"]["reference"] == member.as_str())
        );
        assert_eq!(
            group["meta"]["tag"],
            json!([{
                "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
                "code": "SUBSETTED"
            }])
        );
        let errors = error_lines(&http, &m).await;
        assert_eq!(errors.len(), 2, "{errors:?}");
        let text = json!(errors).to_string();
        assert!(text.contains(&stranger) && text.contains("Coverage/x"));
    }
}

#[tokio::test]
async fn type_filter_and_elements_narrow_the_lines() {
    for app in spawn_apps().await {
        load_synthetic(&app).await;
        let http = consumer(&app, "org-1-filters").await;
        let (_, g) = app.get_json("Group/list-1").await;
        let member = g["member"][0]["entity"]["reference"]
            .as_str()
            .expect("member")
            .to_string();
        let id = member.trim_start_matches("Patient/");
        let path = format!(
            "Group/list-1/$export?_type=Patient,Coverage&_typeFilter=Patient%3F_id%3D{id}&_elements=birthDate,Coverage.status"
        );
        let location = started(&app, &http, &path).await;
        let m = manifest(&http, &location).await;
        let lines = download(&http, &m).await;
        assert_eq!(ids_of(&lines, "Patient"), vec![member.clone()]);
        for (t, v) in &lines {
            let keys: BTreeSet<&str> = v
                .as_object()
                .expect("object")
                .keys()
                .map(String::as_str)
                .collect();
            let allowed: BTreeSet<&str> = if t == "Patient" {
                ["resourceType", "id", "meta", "birthDate"].into()
            } else {
                [
                    "resourceType",
                    "id",
                    "meta",
                    "status",
                    "beneficiary",
                    "payor",
                ]
                .into()
            };
            assert!(keys.is_subset(&allowed), "{t}: {keys:?}");
            // FHIR's tag exactly: system and code, no display, once.
            let subsetted = json!({
                "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
                "code": "SUBSETTED"
            });
            let tags = v["meta"]["tag"].as_array().expect("tags");
            assert_eq!(
                tags.iter().filter(|t| **t == subsetted).count(),
                1,
                "{t}: {tags:?}"
            );
            assert!(tags.iter().all(|t| t.get("display").is_none()), "{tags:?}");
        }
        assert!(ids_of(&lines, "Coverage").len() > 1);
    }
}

#[tokio::test]
async fn too_many_exports_answer_429_with_retry_after() {
    let apps = spawn_apps_with(|c| {
        c.export.workers = 0;
        c.export.limits.per_client = 1;
        c.export.limits.total = 2;
    })
    .await;
    for app in apps {
        load_synthetic(&app).await;
        let a = consumer(&app, "org-1-a").await;
        let b = consumer(&app, "org-1-b").await;
        let c = consumer(&app, "org-1-c").await;
        started(&app, &a, "Group/list-1/$export").await;
        let (status, _, body) = kick_off(&app, &a, "Group/list-1/$export", "respond-async").await;
        assert_eq!(status, 429, "{body}");
        assert_eq!(body["resourceType"], "OperationOutcome");
        let r = a
            .get(app.url("Group/list-1/$export"))
            .header("Accept", "application/fhir+json")
            .header("Prefer", "respond-async")
            .send()
            .await
            .expect("send");
        assert!(
            r.headers()["retry-after"]
                .to_str()
                .expect("ascii")
                .parse::<u32>()
                .is_ok()
        );
        started(&app, &b, "Group/list-1/$export").await;
        let (status, _, _) = kick_off(&app, &c, "Group/list-1/$export", "respond-async").await;
        assert_eq!(status, 429);
    }
}

#[tokio::test]
async fn a_job_whose_worker_died_is_taken_over_and_completes() {
    // An instance without workers takes the kick-off; a "dead" worker claims the job with a lease
    // that runs out; a second instance takes it over and finishes it.
    for app in spawn_apps_with(|c| c.export.workers = 0).await {
        load_synthetic(&app).await;
        let http = consumer(&app, "org-1-takeover").await;
        let location = started(&app, &http, "Group/list-1/$davinci-data-export").await;
        let job_id = location.rsplit('/').next().expect("job").to_string();
        let now = atr_model::instant::now_micros();
        let claimed = app
            .store
            .claim_export_job("dead-instance", now, now + 500_000)
            .await
            .expect("claim")
            .expect("a job");
        assert_eq!(claimed.id, job_id);
        let other = app.another_instance_with(|c| c.export.workers = 1).await;
        let m = manifest(&http, &location.replace(&app.base, &other)).await;
        let lines = download(&http, &m).await;
        assert!(ids_of(&lines, "Patient").len() >= 2);
        let job = app
            .store
            .export_job(&job_id)
            .await
            .expect("job")
            .expect("row");
        assert_eq!(job.attempts, 2);
    }
}

#[tokio::test]
async fn expired_exports_answer_404() {
    for app in spawn_apps_with(|c| c.export.retention = Duration::ZERO).await {
        load_synthetic(&app).await;
        let http = consumer(&app, "org-1-expiry").await;
        let location = started(&app, &http, "Group/list-1/$export").await;
        let r = http
            .get(&location)
            .header("Accept", "application/json")
            .send()
            .await
            .expect("poll");
        assert_eq!(r.status(), 404);
        // The cleaner removes the expired job's files and row.
        let job = location.rsplit('/').next().expect("job").to_string();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let row = app.store.export_job(&job).await.expect("job");
            if row.is_none() && !app.export_dir.join(&job).exists() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "expired job {job} not cleaned up"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
