//! The Consumer against our Producer on loopback, with real tokens: discover → pull →
//! member remove → pull again (incremental) → diff shows exactly those changes → confirm.

#[path = "../../atr-server/tests/common/mod.rs"]
mod common;
mod support;

use atr_client::discover::{Criteria, discover, pick_for_contract};
use atr_client::pull::{PullOptions, pull};
use atr_client::reconcile::{self, MemberSelector};
use atr_client::{ClientError, ConsumerStore, Fhir, Profile};
use common::{load_synthetic_members, npi_of, spawn_apps};

#[tokio::test]
async fn discover_pull_reconcile_pull_again_and_diff_shows_exactly_the_changes() {
    for app in spawn_apps().await {
        load_synthetic_members(&app, 400).await;
        let profile = support::provider_profile(
            &app,
            "org-1-consumer",
            "org-1",
            &["system/*.read", "system/Group.u"],
        )
        .await;
        let fhir = Fhir::connect(&profile).await.expect("connect");
        let npi = npi_of(&app, "org-1").await;

        // Discovery: org-1's three lists (1, 5, 9), no others.
        let lists = discover(
            &fhir,
            &Criteria {
                npi: Some(npi.clone()),
                ..Default::default()
            },
        )
        .await
        .expect("discover");
        let mut ids: Vec<&str> = lists.iter().map(|l| l.id.as_str()).collect();
        ids.sort();
        assert_eq!(ids, ["list-1", "list-5", "list-9"]);
        let list9 = lists.iter().find(|l| l.id == "list-9").expect("list-9");
        assert_eq!(list9.status.as_deref(), Some("open"));
        let contract = list9
            .identifiers
            .iter()
            .find(|i| i.system.ends_with("/contract"))
            .expect("a contract identifier");
        let picked = pick_for_contract(
            &lists,
            &format!("{}|{}", contract.system, contract.value),
            list9.period_start.as_deref().expect("period"),
        )
        .expect("the contract's list");
        assert_eq!(picked.id, "list-9");

        // First pull: everything.
        let dir = tempfile::tempdir().expect("dir");
        let mut store = ConsumerStore::open(dir.path()).expect("store");
        let first = pull(&fhir, &mut store, "list-9", &PullOptions::default())
            .await
            .expect("pull");
        assert!(!first.resumed);
        assert_eq!(first.since, None);
        assert_eq!(first.members as u64, list9.member_count.expect("quantity"));
        let members = store.members(first.pull_id).expect("members");
        assert!(
            members
                .iter()
                .all(|m| m.name.is_some() && m.member_id.is_some())
        );
        assert!(
            members
                .iter()
                .any(|m| m.plan.is_some() && m.provider_name.is_some())
        );

        // Two members leave the list.
        let leaving: Vec<String> = members
            .iter()
            .filter(|m| !m.inactive)
            .map(|m| m.patient.clone())
            .take(2)
            .collect();
        for patient in &leaving {
            let r = reconcile::member_remove(
                &fhir,
                "list-9",
                &MemberSelector {
                    patient: Some(patient.clone()),
                    ..Default::default()
                },
                None,
            )
            .await
            .expect("remove");
            assert_eq!(r.status, 200);
            assert!(r.message.contains(patient.as_str()), "{}", r.message);
        }
        // The Producer's refusal, in its words.
        let refused = reconcile::member_remove(
            &fhir,
            "list-9",
            &MemberSelector {
                patient: Some("Patient/nobody".into()),
                ..Default::default()
            },
            None,
        )
        .await
        .expect_err("an unknown patient");
        assert!(
            matches!(&refused, ClientError::Refused { status: 404, message, .. } if message.contains("Patient/nobody")),
            "{refused}"
        );
        assert_eq!(refused.exit_code(), 4);

        // Second pull: incremental (since the first), names still known.
        let second = pull(&fhir, &mut store, "list-9", &PullOptions::default())
            .await
            .expect("pull again");
        assert_eq!(second.since, first.transaction_time);
        assert_eq!(second.members, first.members - 2);
        assert!(second.resources < first.resources, "only what changed");
        let after = store.members(second.pull_id).expect("members");
        assert!(after.iter().all(|m| m.name.is_some()));
        let changes = atr_client::diff::diff(&members, &after);
        let mut dropped: Vec<&str> = changes.iter().map(|c| c.patient.as_str()).collect();
        dropped.sort();
        let mut expected: Vec<&str> = leaving.iter().map(String::as_str).collect();
        expected.sort();
        assert_eq!(dropped, expected, "{changes:#?}");
        assert!(changes.iter().all(|c| c.change == "dropped"));

        // One of them comes back (by references): the next pull shows it added.
        let back = reconcile::member_add(
            &fhir,
            "list-9",
            &MemberSelector {
                patient: Some(leaving[0].clone()),
                provider: members
                    .iter()
                    .find(|m| m.patient == leaving[0])
                    .and_then(|m| m.provider.clone()),
                ..Default::default()
            },
            None,
        )
        .await
        .expect("add back");
        assert_eq!(back.status, 200, "{}", back.message);
        let third = pull(&fhir, &mut store, "list-9", &PullOptions::default())
            .await
            .expect("third pull");
        let changes =
            atr_client::diff::diff(&after, &store.members(third.pull_id).expect("members"));
        assert_eq!(changes.len(), 1, "{changes:#?}");
        assert_eq!(
            (changes[0].change, changes[0].patient.as_str()),
            ("added", leaving[0].as_str())
        );

        // Confirm: any 2xx; the list is final.
        let confirmed = reconcile::confirm(&fhir, "list-9").await.expect("confirm");
        assert!((200..300).contains(&confirmed.status));
        let lists = discover(
            &fhir,
            &Criteria {
                npi: Some(npi),
                ..Default::default()
            },
        )
        .await
        .expect("discover");
        let list9 = lists.iter().find(|l| l.id == "list-9").expect("list-9");
        assert_eq!(list9.status.as_deref(), Some("final"));

        // Another provider's list is not there for this client.
        let hidden = pull(&fhir, &mut store, "list-2", &PullOptions::default())
            .await
            .expect_err("another provider's list");
        assert!(
            matches!(hidden, ClientError::Refused { status: 404, .. }),
            "{hidden}"
        );
        // Nothing was started, so nothing is left to resume.
        assert!(
            store
                .unfinished(fhir.base(), "list-2")
                .expect("read")
                .is_none()
        );
    }
}

#[tokio::test]
async fn a_bad_profile_is_a_configuration_error_naming_what_is_missing() {
    let err = Profile::resolve(&atr_client::Overrides {
        config: Some("/nonexistent/atr.toml".into()),
        ..Default::default()
    })
    .expect_err("no such file");
    assert_eq!(err.exit_code(), 2);
    assert!(err.to_string().contains("/nonexistent/atr.toml"), "{err}");

    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("config.toml");
    std::fs::write(
        &path,
        "default = \"acme\"\n[profiles.acme]\nfhir_base_url = \"https://fhir.acme.example/r4/\"\nclient_id = \"clinic\"\nprivate_key_file = \"clinic.jwks.json\"\n",
    )
    .expect("write");
    std::fs::write(dir.path().join("clinic.jwks.json"), "{\"keys\":[]}").expect("write");
    let p = Profile::resolve(&atr_client::Overrides {
        config: Some(path.clone()),
        ..Default::default()
    })
    .expect("resolves");
    assert_eq!(p.fhir_base_url, "https://fhir.acme.example/r4");
    assert_eq!(p.client_id, "clinic");
    assert_eq!(p.scopes, atr_client::config::DEFAULT_SCOPES);
    // A flag wins over the profile.
    let p = Profile::resolve(&atr_client::Overrides {
        config: Some(path.clone()),
        client_id: Some("other".into()),
        ..Default::default()
    })
    .expect("resolves");
    assert_eq!(p.client_id, "other");
    let err = Profile::resolve(&atr_client::Overrides {
        config: Some(path),
        profile: Some("nope".into()),
        ..Default::default()
    })
    .expect_err("unknown profile");
    assert!(err.to_string().contains("acme"), "{err}");
}
