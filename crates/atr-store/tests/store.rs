//! The store contract, run against every dialect.

mod common;

use atr_model::ResourceType;
use atr_store::{
    Clause, Compare, DeferIndexes, SearchQuery, Store, StoreError, StringMode, TokenMatch,
    WriteMode,
};
use futures::StreamExt;
use serde_json::{Value, json};

use common::{stores, write_of};

const NPI: &str = "http://hl7.org/fhir/sid/us-npi";

fn group(id: &str, name: &str, npi: &str, members: &[(&str, &str)]) -> String {
    let members: Vec<Value> = members
        .iter()
        .map(|(patient, provider)| {
            json!({"extension":[{"url":"http://hl7.org/fhir/us/davinci-atr/StructureDefinition/ext-attributedProvider",
                "valueReference":{"reference":provider}}],
                "entity":{"reference":patient},"period":{"start":"2026-01-01","end":"2026-12-31"}})
        })
        .collect();
    json!({"resourceType":"Group","id":id,"name":name,"type":"person","actual":true,
        "extension":[{"url":"http://hl7.org/fhir/us/davinci-atr/StructureDefinition/ext-attributionListStatus","valueCode":"draft"}],
        "identifier":[{"system":NPI,"value":npi,
            "type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0203","code":"NPI"}]}}],
        "managingEntity":{"reference":"Organization/payer"},"member":members})
    .to_string()
}

async fn members_of(store: &dyn atr_store::Store, id: &str, version: i64) -> Vec<Value> {
    let mut text = b"[".to_vec();
    let mut s = store.stream_members(id, version, true);
    while let Some(chunk) = s.next().await {
        text.extend_from_slice(&chunk.expect("chunk"));
    }
    text.push(b']');
    serde_json::from_slice(&text).expect("members json")
}

fn change_types(members: &[Value]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = members
        .iter()
        .map(|m| {
            let code = m["extension"][0]["valueCode"]
                .as_str()
                .unwrap_or("-")
                .to_string();
            (
                m["entity"]["reference"].as_str().unwrap_or("").to_string(),
                code,
            )
        })
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn resources_are_versioned_read_and_deleted() {
    for (store, _dir) in stores().await {
        let text = r#"{"resourceType":"Patient","id":"p1","identifier":[{"system":"s","value":"m1"}],"name":[{"family":"Ng"}]}"#;
        let first = store
            .write(write_of(text, WriteMode::Create))
            .await
            .expect("create");
        assert_eq!((first.version, first.created), (1, true));
        assert!(matches!(
            store.write(write_of(text, WriteMode::Create)).await,
            Err(StoreError::AlreadyExists { .. })
        ));
        let mut update = write_of(text, WriteMode::Upsert);
        update.expected_version = Some(1);
        assert_eq!(
            store.write(update.clone()).await.expect("update").version,
            2
        );
        // The same If-Match again is stale now.
        assert!(matches!(
            store.write(update).await,
            Err(StoreError::VersionConflict { current: 2, .. })
        ));

        let now = store
            .read(ResourceType::Patient, "p1", None)
            .await
            .expect("read")
            .expect("exists");
        let body: Value = serde_json::from_slice(&now.body).expect("json");
        assert_eq!(body["meta"]["versionId"], "2");
        assert_eq!(body["id"], "p1");
        let v1 = store
            .read(ResourceType::Patient, "p1", Some(1))
            .await
            .expect("vread")
            .expect("v1");
        assert_eq!(v1.version, 1);

        let deleted = store
            .delete(ResourceType::Patient, "p1")
            .await
            .expect("delete")
            .expect("was there");
        assert_eq!(deleted.version, 3);
        assert!(
            store
                .delete(ResourceType::Patient, "p1")
                .await
                .expect("delete again")
                .is_none()
        );
        assert!(
            store
                .read(ResourceType::Patient, "p1", None)
                .await
                .expect("read")
                .expect("tombstone")
                .deleted
        );
        let history = store
            .history(ResourceType::Patient, "p1", None, 10)
            .await
            .expect("history");
        assert_eq!(
            history.iter().map(|h| h.version).collect::<Vec<_>>(),
            vec![3, 2, 1]
        );
        assert!(
            store
                .read(ResourceType::Patient, "nobody", None)
                .await
                .expect("read")
                .is_none()
        );
    }
}

#[tokio::test]
async fn group_versions_keep_their_membership_and_change_types() {
    for (store, _dir) in stores().await {
        let v1 = group(
            "g1",
            "Riverside",
            "1234567893",
            &[
                ("Patient/a", "Practitioner/x"),
                ("Patient/b", "Practitioner/x"),
                ("Patient/c", "Practitioner/y"),
            ],
        )
        // Published: the next versions' changeType is derived against this one.
        .replace("\"valueCode\":\"draft\"", "\"valueCode\":\"final\"");
        let out = store
            .write(write_of(&v1, WriteMode::Create))
            .await
            .expect("v1");
        assert_eq!(out.member_count, Some(3));
        let header: Value = serde_json::from_slice(&out.body).expect("header");
        assert_eq!(header["quantity"], 3);
        assert!(header.get("member").is_none());

        // b changes provider (a new attribution; the old one leaves), c leaves, d joins.
        let v2 = group(
            "g1",
            "Riverside",
            "1234567893",
            &[
                ("Patient/a", "Practitioner/x"),
                ("Patient/b", "Practitioner/y"),
                ("Patient/d", "Practitioner/y"),
            ],
        );
        store
            .write(write_of(&v2, WriteMode::Upsert))
            .await
            .expect("v2");

        let m1 = members_of(store.as_ref(), "g1", 1).await;
        assert_eq!(
            change_types(&m1),
            vec![
                ("Patient/a".into(), "new".into()),
                ("Patient/b".into(), "new".into()),
                ("Patient/c".into(), "new".into()),
            ]
        );
        let m2 = members_of(store.as_ref(), "g1", 2).await;
        assert_eq!(
            change_types(&m2),
            vec![
                ("Patient/a".into(), "nochange".into()),
                ("Patient/b".into(), "new".into()),
                ("Patient/d".into(), "new".into()),
            ]
        );

        // Same key, different period: `changed`, and it keeps its position.
        let mut v3: Value = serde_json::from_str(&v2).expect("json");
        v3["member"][0]["period"]["end"] = json!("2026-06-30");
        v3["member"][2]["inactive"] = json!(true);
        store
            .write(write_of(&v3.to_string(), WriteMode::Upsert))
            .await
            .expect("v3");
        let m3 = members_of(store.as_ref(), "g1", 3).await;
        assert_eq!(m3[0]["entity"]["reference"], "Patient/a");
        assert_eq!(
            change_types(&m3),
            vec![
                ("Patient/a".into(), "changed".into()),
                // b's attribution joined after the published v1: still new.
                ("Patient/b".into(), "new".into()),
                ("Patient/d".into(), "dropped".into()),
            ]
        );
        assert_eq!(m3[2]["inactive"], true);

        store
            .delete(ResourceType::Group, "g1")
            .await
            .expect("delete");
        assert!(members_of(store.as_ref(), "g1", 4).await.is_empty());
        assert_eq!(members_of(store.as_ref(), "g1", 3).await.len(), 3);
    }
}

fn query(rtype: ResourceType, clauses: Vec<Clause>) -> SearchQuery {
    SearchQuery {
        rtype,
        clauses,
        count: 50,
        after_id: None,
        with_total: true,
        access: atr_store::Access::All,
    }
}

async fn ids(store: &dyn atr_store::Store, q: SearchQuery) -> Vec<String> {
    store
        .search(&q)
        .await
        .expect("search")
        .matches
        .into_iter()
        .map(|m| m.id)
        .collect()
}

#[tokio::test]
async fn searches_match_tokens_strings_references_and_members() {
    for (store, _dir) in stores().await {
        let s = store.as_ref();
        store
            .write(write_of(
                &group(
                    "g1",
                    "Riverside Clinic",
                    "1111111112",
                    &[("Patient/a", "Organization/o")],
                ),
                WriteMode::Create,
            ))
            .await
            .expect("g1");
        store
            .write(write_of(
                &group(
                    "g2",
                    "Ångström Health",
                    "2222222224",
                    &[("Patient/b", "Organization/o")],
                ),
                WriteMode::Create,
            ))
            .await
            .expect("g2");
        store
            .write(write_of(
                &group("g3", "River 100% Care", "1111111112", &[]),
                WriteMode::Create,
            ))
            .await
            .expect("g3");

        let token = |system: Option<&str>, code: Option<&str>| Clause::Token {
            param: "identifier",
            any_of: vec![TokenMatch {
                system: system.map(Into::into),
                code: code.map(Into::into),
            }],
        };
        assert_eq!(
            ids(
                s,
                query(
                    ResourceType::Group,
                    vec![token(Some(NPI), Some("1111111112"))]
                )
            )
            .await,
            ["g1", "g3"]
        );
        assert_eq!(
            ids(
                s,
                query(ResourceType::Group, vec![token(None, Some("2222222224"))])
            )
            .await,
            ["g2"]
        );
        assert!(
            ids(
                s,
                query(
                    ResourceType::Group,
                    vec![token(Some(""), Some("2222222224"))]
                )
            )
            .await
            .is_empty()
        );
        assert_eq!(
            ids(s, query(ResourceType::Group, vec![token(Some(NPI), None)]))
                .await
                .len(),
            3
        );
        let of_type = Clause::OfType {
            param: "identifier",
            any_of: vec![(
                "http://terminology.hl7.org/CodeSystem/v2-0203".into(),
                "NPI".into(),
                "2222222224".into(),
            )],
        };
        assert_eq!(
            ids(s, query(ResourceType::Group, vec![of_type])).await,
            ["g2"]
        );

        let name = |mode, v: &str| Clause::String {
            param: "name",
            mode,
            any_of: vec![v.into()],
        };
        assert_eq!(
            ids(
                s,
                query(ResourceType::Group, vec![name(StringMode::Prefix, "river")])
            )
            .await,
            ["g1", "g3"]
        );
        assert_eq!(
            ids(
                s,
                query(
                    ResourceType::Group,
                    vec![name(StringMode::Prefix, "ANGSTROM")]
                )
            )
            .await,
            ["g2"]
        );
        assert!(
            ids(
                s,
                query(
                    ResourceType::Group,
                    vec![name(StringMode::Exact, "riverside clinic")]
                )
            )
            .await
            .is_empty()
        );
        assert_eq!(
            ids(
                s,
                query(
                    ResourceType::Group,
                    vec![name(StringMode::Exact, "Riverside Clinic")]
                )
            )
            .await,
            ["g1"]
        );
        assert_eq!(
            ids(
                s,
                query(
                    ResourceType::Group,
                    vec![name(StringMode::Contains, "100%")]
                )
            )
            .await,
            ["g3"]
        );
        assert!(
            ids(
                s,
                query(ResourceType::Group, vec![name(StringMode::Contains, "_")])
            )
            .await
            .is_empty()
        );

        assert_eq!(
            ids(
                s,
                query(
                    ResourceType::Group,
                    vec![Clause::Member(vec!["Patient/b".into()])]
                )
            )
            .await,
            ["g2"]
        );
        assert_eq!(
            ids(
                s,
                query(
                    ResourceType::Group,
                    vec![Clause::Id(vec!["g3".into(), "zz".into()])]
                )
            )
            .await,
            ["g3"]
        );
        let refs = Clause::Reference {
            param: "managing-entity",
            any_of: vec!["Organization/payer".into()],
        };
        assert_eq!(
            ids(s, query(ResourceType::Group, vec![refs])).await.len(),
            3
        );

        let long_ago = Clause::LastUpdated {
            compare: Compare::Gt,
            start: 0,
            end: 1,
        };
        assert_eq!(
            ids(s, query(ResourceType::Group, vec![long_ago]))
                .await
                .len(),
            3
        );
        let before_epoch = Clause::LastUpdated {
            compare: Compare::Lt,
            start: 0,
            end: 1,
        };
        assert!(
            ids(s, query(ResourceType::Group, vec![before_epoch]))
                .await
                .is_empty()
        );

        // Keyset pages of one.
        let mut q = query(ResourceType::Group, vec![]);
        q.count = 1;
        let page = store.search(&q).await.expect("page 1");
        assert_eq!(
            (page.matches[0].id.as_str(), page.total, page.has_more),
            ("g1", Some(3), true)
        );
        q.after_id = Some("g2".into());
        let page = store.search(&q).await.expect("page 3");
        assert_eq!((page.matches[0].id.as_str(), page.has_more), ("g3", false));

        // Deleted resources leave the indexes.
        store
            .delete(ResourceType::Group, "g2")
            .await
            .expect("delete");
        assert!(
            ids(
                s,
                query(
                    ResourceType::Group,
                    vec![Clause::Member(vec!["Patient/b".into()])]
                )
            )
            .await
            .is_empty()
        );
    }
}

#[tokio::test]
async fn load_batch_writes_many_and_replaces_existing() {
    for (store, _dir) in stores().await {
        let batch: Vec<_> = (0..1200)
            .map(|i| {
                write_of(
                    &format!(r#"{{"resourceType":"Coverage","id":"c{i}","beneficiary":{{"reference":"Patient/p{i}"}},"identifier":[{{"system":"m","value":"v{i}"}}]}}"#),
                    WriteMode::Upsert,
                )
            })
            .collect();
        assert_eq!(store.load_batch(batch.clone()).await.expect("load"), 1200);
        store
            .load_batch(batch[..10].to_vec())
            .await
            .expect("reload");
        let c5 = store
            .read(ResourceType::Coverage, "c5", None)
            .await
            .expect("read")
            .expect("c5");
        assert_eq!(c5.version, 2);
        let q = query(
            ResourceType::Coverage,
            vec![Clause::Reference {
                param: "beneficiary",
                any_of: vec!["Patient/p5".into()],
            }],
        );
        assert_eq!(ids(store.as_ref(), q).await, ["c5"]);
        let mut all = query(ResourceType::Coverage, vec![]);
        all.count = 0;
        assert_eq!(store.search(&all).await.expect("count").total, Some(1200));
    }
}

/// A bulk load with its indexes set aside finds the same resources as one without: replaced
/// resources lose their old index rows, and the indexes are whole again at the end. `Auto` leaves a
/// small load alone.
#[tokio::test]
async fn a_bulk_load_with_indexes_set_aside_searches_like_one_without() {
    for (store, _dir) in stores().await {
        let s = store.as_ref();
        assert!(
            !s.begin_bulk_load(1 << 20, DeferIndexes::Auto)
                .await
                .expect("begin"),
            "a 1 MiB load keeps the indexes"
        );
        assert!(
            s.begin_bulk_load(0, DeferIndexes::Always)
                .await
                .expect("begin"),
            "Always sets them aside"
        );
        let coverage = |i: usize, patient: &str| {
            write_of(
                &format!(
                    r#"{{"resourceType":"Coverage","id":"c{i}","beneficiary":{{"reference":"Patient/{patient}"}},"identifier":[{{"system":"m","value":"v{i}"}}]}}"#
                ),
                WriteMode::Upsert,
            )
        };
        let first: Vec<_> = (0..300).map(|i| coverage(i, &format!("p{i}"))).collect();
        s.load_batch(first).await.expect("load");
        // c7 moves to another patient while the indexes are aside.
        s.load_batch(vec![coverage(7, "moved")])
            .await
            .expect("reload");
        let by_patient = |patient: &str| {
            query(
                ResourceType::Coverage,
                vec![Clause::Reference {
                    param: "beneficiary",
                    any_of: vec![format!("Patient/{patient}")],
                }],
            )
        };
        assert_eq!(ids(s, by_patient("moved")).await, ["c7"]);
        // The loader's word that only Groups follow: the resource indexes come back now, and the
        // Groups written after it are indexed row by row.
        s.bulk_load_groups_next().await.expect("groups next");
        s.load_batch(vec![write_of(
            r#"{"resourceType":"Group","id":"g1","type":"person","actual":true,"identifier":[{"system":"contract","value":"k1"}],"member":[{"entity":{"reference":"Patient/p8"}}]}"#,
            WriteMode::Upsert,
        )])
        .await
        .expect("load group");
        s.finish_bulk_load().await.expect("finish");
        let group_by = |clause: Clause| query(ResourceType::Group, vec![clause]);
        assert_eq!(
            ids(
                s,
                group_by(Clause::Token {
                    param: "identifier",
                    any_of: vec![TokenMatch {
                        system: Some("contract".into()),
                        code: Some("k1".into()),
                    }],
                })
            )
            .await,
            ["g1"]
        );
        assert_eq!(
            ids(s, group_by(Clause::Member(vec!["Patient/p8".into()]))).await,
            ["g1"]
        );
        assert_eq!(ids(s, by_patient("moved")).await, ["c7"]);
        assert!(ids(s, by_patient("p7")).await.is_empty(), "c7's old row");
        assert_eq!(ids(s, by_patient("p8")).await, ["c8"]);
        let by_identifier = query(
            ResourceType::Coverage,
            vec![Clause::Token {
                param: "identifier",
                any_of: vec![TokenMatch {
                    system: Some("m".into()),
                    code: Some("v299".into()),
                }],
            }],
        );
        assert_eq!(ids(s, by_identifier).await, ["c299"]);
    }
}

/// The bulk path (on SQLite, written straight to the file): reloading an id makes its next
/// version and replaces its index rows; a batch naming an id twice is refused whole.
#[tokio::test]
async fn load_batch_reload_makes_new_versions_and_a_repeated_id_writes_nothing() {
    for (store, dir) in stores().await {
        let s = store.as_ref();
        let coverage = |id: &str, member: &str| {
            let mut w = write_of(
                &format!(
                    r#"{{"resourceType":"Coverage","id":"{id}","beneficiary":{{"reference":"Patient/p-{id}"}},"identifier":[{{"system":"m","value":"{member}"}}]}}"#
                ),
                WriteMode::Upsert,
            );
            // As the loader sends them: stamped as a create.
            w.prestamp(1, 1_700_000_000_000_000);
            w
        };
        let by_member = |value: &str| {
            query(
                ResourceType::Coverage,
                vec![Clause::Token {
                    param: "identifier",
                    any_of: vec![TokenMatch {
                        system: Some("m".into()),
                        code: Some(value.into()),
                    }],
                }],
            )
        };
        let first: Vec<_> = ["a", "b", "c"]
            .iter()
            .map(|id| coverage(id, &format!("old-{id}")))
            .collect();
        assert_eq!(s.load_batch(first).await.expect("load"), 3);
        let b1 = s
            .read(ResourceType::Coverage, "b", None)
            .await
            .expect("read")
            .expect("b");
        assert_eq!(b1.version, 1);
        assert_eq!(b1.last_updated, 1_700_000_000_000_000);

        let second = vec![coverage("b", "new-b"), coverage("d", "new-d")];
        assert_eq!(s.load_batch(second).await.expect("reload"), 2);
        let b2 = s
            .read(ResourceType::Coverage, "b", None)
            .await
            .expect("read")
            .expect("b");
        assert_eq!(b2.version, 2);
        let body: Value = serde_json::from_slice(&b2.body).expect("body");
        assert_eq!(body["meta"]["versionId"], "2");
        assert_eq!(body["identifier"][0]["value"], "new-b");
        let old = s
            .read(ResourceType::Coverage, "b", Some(1))
            .await
            .expect("read v1")
            .expect("b v1");
        assert_eq!(old.body, b1.body);
        let d = s
            .read(ResourceType::Coverage, "d", None)
            .await
            .expect("read")
            .expect("d");
        assert_eq!(d.version, 1);
        assert_eq!(ids(s, by_member("new-b")).await, ["b"]);
        assert!(ids(s, by_member("old-b")).await.is_empty());
        assert_eq!(ids(s, by_member("old-a")).await, ["a"]);
        let mut all = query(ResourceType::Coverage, vec![]);
        all.count = 0;
        assert_eq!(s.search(&all).await.expect("count").total, Some(4));
        if s.dialect() == "sqlite" {
            let db = rusqlite::Connection::open(dir.path().join("atr.db")).expect("open");
            let count = |sql: &str| -> i64 { db.query_row(sql, [], |r| r.get(0)).expect(sql) };
            assert_eq!(
                count("SELECT count(*) FROM resource_version WHERE id = 'b'"),
                2
            );
            assert_eq!(
                count("SELECT count(*) FROM resource_version WHERE id = 'b' AND is_current"),
                1
            );
            assert_eq!(count("SELECT count(*) FROM search_token WHERE id = 'b'"), 1);
            assert_eq!(count("SELECT count(*) FROM search_ref WHERE id = 'b'"), 1);
        }

        // A repeated id fails the batch, and none of it is written (not even the reload of a).
        let repeated = vec![
            coverage("e", "e1"),
            coverage("a", "newer-a"),
            coverage("e", "e2"),
        ];
        match s.load_batch(repeated).await {
            Err(StoreError::AlreadyExists { rtype, id }) => {
                assert_eq!((rtype.as_str(), id.as_str()), ("Coverage", "e"));
            }
            other => panic!("expected AlreadyExists, got {other:?}"),
        }
        assert!(
            s.read(ResourceType::Coverage, "e", None)
                .await
                .expect("read")
                .is_none()
        );
        let a = s
            .read(ResourceType::Coverage, "a", None)
            .await
            .expect("read")
            .expect("a");
        assert_eq!(a.version, 1);
        assert!(ids(s, by_member("newer-a")).await.is_empty());
        assert_eq!(s.search(&all).await.expect("count").total, Some(4));
    }
}

/// A list for contract `contract` (an attribution list: it has a status).
fn contract_list(id: &str, contract: &str) -> String {
    json!({"resourceType":"Group","id":id,"type":"person","actual":true,
        "extension":[{"url":"http://hl7.org/fhir/us/davinci-atr/StructureDefinition/ext-attributionListStatus","valueCode":"draft"}],
        "identifier":[{"type":{"text":"Contract Identifier"},"system":"https://payer.example/sid/contract","value":contract}],
        "managingEntity":{"reference":"Organization/payer"},"member":[]})
    .to_string()
}

fn member_coverage(id: &str, member: &str, plan: &str) -> String {
    json!({"resourceType":"Coverage","id":id,"status":"active",
        "identifier":[{"type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0203","code":"MB"}]},
            "system":"https://payer.example/sid/member","value":member}],
        "class":[{"type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/coverage-class","code":"plan"}]},"value":plan}],
        "beneficiary":{"reference":"Patient/p"},"payor":[{"reference":"Organization/payer"}]})
    .to_string()
}

#[tokio::test]
async fn a_contract_or_a_member_plan_has_one_holder_on_every_write_path() {
    for (store, _dir) in stores().await {
        let s = store.as_ref();
        let claimed = |r: Result<_, StoreError>, holder: &str| match r {
            Err(StoreError::Claimed { holder: h, .. }) => assert_eq!(h, holder, "{}", s.dialect()),
            Err(e) => panic!("{}: expected Claimed, got {e}", s.dialect()),
            Ok(_) => panic!("{}: a second holder was written", s.dialect()),
        };
        s.write(write_of(&contract_list("g1", "C1"), WriteMode::Upsert))
            .await
            .expect("first list");
        // One list per contract: by a single write and by a bulk load; nothing written.
        claimed(
            s.write(write_of(&contract_list("g2", "C1"), WriteMode::Upsert))
                .await
                .map(|_| ()),
            "Group/g1",
        );
        claimed(
            s.load_batch(vec![write_of(
                &contract_list("g2", "C1"),
                WriteMode::Upsert,
            )])
            .await
            .map(|_| ()),
            "Group/g1",
        );
        assert!(
            s.read(ResourceType::Group, "g2", None)
                .await
                .expect("read")
                .is_none()
        );
        // The holder itself may be written again.
        s.write(write_of(&contract_list("g1", "C1"), WriteMode::Upsert))
            .await
            .expect("same list again");

        // Member id + payer + plan: twice in one batch, or against the store.
        claimed(
            s.load_batch(vec![
                write_of(&member_coverage("c1", "M1", "GOLD"), WriteMode::Upsert),
                write_of(&member_coverage("c2", "M1", "GOLD"), WriteMode::Upsert),
            ])
            .await
            .map(|_| ()),
            "Coverage/c1",
        );
        assert!(
            s.read(ResourceType::Coverage, "c1", None)
                .await
                .expect("read")
                .is_none()
        );
        s.load_batch(vec![
            write_of(&member_coverage("c1", "M1", "GOLD"), WriteMode::Upsert),
            write_of(&member_coverage("c2", "M1", "SILVER"), WriteMode::Upsert),
        ])
        .await
        .expect("other plans");
        claimed(
            s.write(write_of(
                &member_coverage("c3", "M1", "GOLD"),
                WriteMode::Upsert,
            ))
            .await
            .map(|_| ()),
            "Coverage/c1",
        );
        // A Coverage that changes its plan frees the old one.
        s.write(write_of(
            &member_coverage("c1", "M1", "BRONZE"),
            WriteMode::Upsert,
        ))
        .await
        .expect("c1 moves plan");
        s.write(write_of(
            &member_coverage("c3", "M1", "GOLD"),
            WriteMode::Upsert,
        ))
        .await
        .expect("GOLD is free");

        // Deleting the list frees its contract.
        s.delete(ResourceType::Group, "g1").await.expect("delete");
        s.write(write_of(&contract_list("g2", "C1"), WriteMode::Upsert))
            .await
            .expect("the contract is free");
    }
}

/// Patients and Coverages searched by the parameters migration 8 added (gender, birthdate,
/// status): `(female, born in 1958, active coverage)` ids.
async fn added_parameter_hits(s: &dyn atr_store::Store) -> (Vec<String>, Vec<String>, Vec<String>) {
    let token = |rtype, param, code: &str| SearchQuery {
        rtype,
        clauses: vec![Clause::Token {
            param,
            any_of: vec![TokenMatch {
                system: None,
                code: Some(code.into()),
            }],
        }],
        count: 10,
        after_id: None,
        with_total: false,
        access: Default::default(),
    };
    let born = SearchQuery {
        clauses: vec![Clause::Date {
            param: "birthdate",
            compare: Compare::Eq,
            start: "1958-01-01".into(),
            end: "1959-01-01".into(),
        }],
        ..token(ResourceType::Patient, "birthdate", "")
    };
    (
        ids(s, token(ResourceType::Patient, "gender", "female")).await,
        ids(s, born).await,
        ids(s, token(ResourceType::Coverage, "status", "active")).await,
    )
}

const ADDED_PARAMS: &str = "param IN ('gender', 'birthdate', 'status')";

/// Writes the Patient and Coverage of the migration test and checks they are indexed on write.
async fn write_added_parameter_data(store: atr_store::SqlStore) {
    let patient = r#"{"resourceType":"Patient","id":"p1","gender":"female","birthDate":"1958-07"}"#;
    let coverage = r#"{"resourceType":"Coverage","id":"c1","status":"active","beneficiary":{"reference":"Patient/p1"},"payor":[{"reference":"Organization/o"}]}"#;
    for text in [patient, coverage] {
        store
            .write(write_of(text, WriteMode::Create))
            .await
            .expect("write");
    }
    let one = |id: &str| vec![id.to_string()];
    assert_eq!(
        added_parameter_hits(&store).await,
        (one("p1"), one("p1"), one("c1")),
        "indexed on write"
    );
    store.close().await;
}

#[tokio::test]
async fn search_parameters_added_later_are_filled_in_for_stored_resources() {
    let want = (
        vec!["p1".to_string()],
        vec!["p1".to_string()],
        vec!["c1".to_string()],
    );

    // SQLite: a database written before migration 8 has no such rows; the migration adds them.
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("atr.db");
    write_added_parameter_data(atr_store::SqlStore::open_sqlite(&path).await.expect("open")).await;
    {
        let conn = rusqlite::Connection::open(&path).expect("sqlite");
        conn.execute_batch(&format!(
            "DELETE FROM search_token WHERE {ADDED_PARAMS}; DELETE FROM atr_schema_migration WHERE version = 8"
        ))
        .expect("back to schema 7");
    }
    let reopened = atr_store::SqlStore::open_sqlite(&path)
        .await
        .expect("reopen");
    assert_eq!(
        added_parameter_hits(&reopened).await,
        want,
        "sqlite after migration 8"
    );

    // PostgreSQL, the same in a schema of its own.
    let schema = format!("t_{}", uuid::Uuid::now_v7().simple());
    match atr_store::SqlStore::open_postgres(common::PG_URL, Some(&schema)).await {
        Ok(pg) => {
            write_added_parameter_data(pg).await;
            let pool = sqlx::PgPool::connect(common::PG_URL).await.expect("pg");
            for sql in [
                format!("DELETE FROM {schema}.search_token WHERE {ADDED_PARAMS}"),
                format!("DELETE FROM {schema}.atr_schema_migration WHERE version = 8"),
            ] {
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                    .execute(&pool)
                    .await
                    .expect("back to schema 7");
            }
            let reopened = atr_store::SqlStore::open_postgres(common::PG_URL, Some(&schema))
                .await
                .expect("reopen");
            assert_eq!(
                added_parameter_hits(&reopened).await,
                want,
                "postgres after migration 8"
            );
            reopened.close().await;
            let _ = atr_store::SqlStore::drop_postgres_schema(common::PG_URL, &schema).await;
        }
        Err(e) => atr_testkit::skip::unavailable("PostgreSQL", &e.to_string()),
    }
}
