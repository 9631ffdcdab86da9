//! End-to-end checks of `atr_synth::generate` on small configurations.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use atr_model::ident::is_valid_npi;
use atr_synth::{FILES, SynthConfig, generate};
use serde_json::Value;

fn small() -> SynthConfig {
    SynthConfig {
        seed: 7,
        members: 300,
        lists: 7,
        ..SynthConfig::default()
    }
}

fn read_lines(dir: &Path, resource_type: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(dir.join(format!("{resource_type}.ndjson"))).unwrap();
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "{resource_type}: no trailing newline"
    );
    text.lines()
        .map(|l| {
            assert!(!l.trim().is_empty(), "{resource_type}: blank line");
            let v: Value = serde_json::from_str(l).unwrap();
            assert_eq!(v["resourceType"], resource_type);
            // Compact and canonical: exactly what serde_json writes for the same content.
            assert_eq!(
                serde_json::to_string(&v).unwrap(),
                l,
                "{resource_type}: not canonical"
            );
            v
        })
        .collect()
}

fn read_all(dir: &Path) -> HashMap<&'static str, Vec<Value>> {
    FILES.iter().map(|t| (*t, read_lines(dir, t))).collect()
}

fn file_bytes(dir: &Path) -> Vec<(String, Vec<u8>)> {
    FILES
        .iter()
        .map(|t| {
            (
                t.to_string(),
                std::fs::read(dir.join(format!("{t}.ndjson"))).unwrap(),
            )
        })
        .collect()
}

fn identifier_values<'a>(resource: &'a Value, system: &str) -> Vec<&'a str> {
    resource["identifier"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|i| i["system"] == system)
        .filter_map(|i| i["value"].as_str())
        .collect()
}

fn ext<'a>(element: &'a Value, url: &str) -> &'a Value {
    element["extension"]
        .as_array()
        .and_then(|a| a.iter().find(|e| e["url"] == url))
        .unwrap_or(&Value::Null)
}

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let c = tempfile::tempdir().unwrap();
    let sa = generate(&small(), a.path()).unwrap();
    let sb = generate(&small(), b.path()).unwrap();
    assert_eq!(sa, sb);
    assert_eq!(file_bytes(a.path()), file_bytes(b.path()));
    let other = SynthConfig { seed: 8, ..small() };
    generate(&other, c.path()).unwrap();
    let (fa, fc) = (file_bytes(a.path()), file_bytes(c.path()));
    for ((t, x), (_, y)) in fa.iter().zip(&fc) {
        assert_ne!(x, y, "{t} did not change with the seed");
    }
}

#[test]
fn files_parse_ids_are_unique_and_references_resolve() {
    let dir = tempfile::tempdir().unwrap();
    let summary = generate(&small(), dir.path()).unwrap();
    check_consistency(dir.path(), &summary, 300);
    assert_eq!(summary.count("Patient"), 300);
    assert_eq!(summary.count("Coverage"), 300);
    assert_eq!(summary.count("Group"), 7);
    assert_eq!(summary.count("Organization"), 2 + 7);
    assert_eq!(summary.count("Practitioner"), 35);
    assert_eq!(summary.count("PractitionerRole"), 35);
    assert_eq!(summary.count("Location"), 7);
    let related = summary.count("RelatedPerson");
    assert!(
        related > 30 && related < 180,
        "{related} subscribers who are not the member"
    );
}

#[test]
fn more_lists_than_organisations_stay_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let config = SynthConfig {
        seed: 11,
        members: 400,
        lists: 12,
        payers: 3,
        provider_orgs: 4,
        practitioners_per_org: 3,
        largest_list_share: 0.2,
    };
    let summary = generate(&config, dir.path()).unwrap();
    check_consistency(dir.path(), &summary, 400);
    assert_eq!(summary.count("Organization"), 3 + 4);
    assert_eq!(summary.count("Group"), 12);
    // Twelve distinct (payer, organisation) contracts.
    let groups = read_lines(dir.path(), "Group");
    let pairs: HashSet<(String, String)> = groups
        .iter()
        .map(|g| {
            (
                g["managingEntity"]["reference"]
                    .as_str()
                    .unwrap()
                    .to_string(),
                identifier_values(g, atr_model::SYSTEM_NPI)[0].to_string(),
            )
        })
        .collect();
    assert_eq!(pairs.len(), 12);
}

/// Parses every file and checks counts, ids, references and the Group rules.
fn check_consistency(dir: &Path, summary: &atr_synth::SynthSummary, members: usize) {
    let all = read_all(dir);

    // Counts and sizes match the files.
    let mut total = 0;
    for t in FILES {
        assert_eq!(summary.count(t), all[t].len() as u64, "{t}");
        total += std::fs::metadata(dir.join(format!("{t}.ndjson")))
            .unwrap()
            .len();
    }
    assert_eq!(summary.bytes, total);

    // Ids are FHIR ids and unique per type.
    let mut present: HashSet<String> = HashSet::new();
    for t in FILES {
        let mut ids = HashSet::new();
        for r in &all[t] {
            let id = r["id"].as_str().unwrap();
            assert!(atr_model::ident::is_valid_id(id), "{id}");
            assert!(ids.insert(id.to_string()), "duplicate {t}/{id}");
            present.insert(format!("{t}/{id}"));
        }
    }
    let resolves = |r: &Value, what: &str| {
        let target = r["reference"]
            .as_str()
            .unwrap_or_else(|| panic!("{what}: no reference"));
        assert!(present.contains(target), "{what}: dangling {target}");
    };

    // Coverages.
    for c in &all["Coverage"] {
        for field in ["beneficiary", "subscriber", "policyHolder"] {
            resolves(&c[field], field);
        }
        let payors = c["payor"].as_array().unwrap();
        assert_eq!(payors.len(), 1);
        resolves(&payors[0], "payor");
        assert!(
            payors[0]["reference"]
                .as_str()
                .unwrap()
                .starts_with("Organization/payer-")
        );
        assert_eq!(c["status"], "active");
        assert!(c["subscriberId"].is_string());
        assert!(c["period"]["start"].is_string());
        assert_eq!(c["class"][0]["type"]["coding"][0]["code"], "plan");
        let product = ext(c, atr_model::EXT_INSURANCE_PRODUCT_TYPE);
        assert!(product["valueCodeableConcept"]["coding"][0]["code"].is_string());
        assert_eq!(c["identifier"][0]["type"]["coding"][0]["code"], "MB");
    }
    // Patients carry the Coverage's member id.
    let member_ids: HashMap<String, String> = all["Coverage"]
        .iter()
        .map(|c| {
            (
                c["beneficiary"]["reference"].as_str().unwrap().to_string(),
                c["identifier"][0]["value"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for p in &all["Patient"] {
        let key = format!("Patient/{}", p["id"].as_str().unwrap());
        let mb = p["identifier"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["type"]["coding"][0]["code"] == "MB")
            .unwrap();
        assert_eq!(
            mb["value"].as_str(),
            member_ids.get(&key).map(String::as_str)
        );
        assert_eq!(p["address"][0]["country"], "US");
    }
    for rp in &all["RelatedPerson"] {
        resolves(&rp["patient"], "RelatedPerson.patient");
    }
    for r in &all["PractitionerRole"] {
        resolves(&r["practitioner"], "practitioner");
        resolves(&r["organization"], "organization");
        resolves(&r["location"][0], "location");
    }
    for l in &all["Location"] {
        resolves(&l["managingOrganization"], "managingOrganization");
    }

    // Groups.
    let coverage_payer: HashMap<String, String> = all["Coverage"]
        .iter()
        .map(|c| {
            (
                format!("Coverage/{}", c["id"].as_str().unwrap()),
                c["payor"][0]["reference"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let mut total_entries = 0;
    for g in &all["Group"] {
        assert_eq!(g["meta"]["profile"][0], atr_model::PROFILE_ATR_GROUP);
        assert!(g["meta"]["lastUpdated"].is_string());
        assert_eq!(g["type"], "person");
        assert_eq!(g["actual"], true);
        resolves(&g["managingEntity"], "managingEntity");
        let contract = &ext(g, atr_model::EXT_CONTRACT_VALIDITY_PERIOD)["valuePeriod"];
        let (cstart, cend) = (
            contract["start"].as_str().unwrap(),
            contract["end"].as_str().unwrap(),
        );
        assert!(cstart >= "2025-01-01" && cend <= "2027-12-31");
        assert_eq!(identifier_values(g, atr_model::SYSTEM_NPI).len(), 1);
        assert_eq!(identifier_values(g, atr_model::SYSTEM_TIN).len(), 1);
        assert!(g["identifier"].as_array().unwrap().iter().any(|i| {
            i["system"]
                .as_str()
                .unwrap()
                .ends_with("/fhir/sid/contract")
                && i["value"].as_str().unwrap().starts_with("CTR-")
        }));
        // Settlement entity name and ACO identifier (seed 000 SHALL), each a non-empty value.
        for (suffix, prefix) in [
            ("/fhir/sid/settlement-entity-name", ""),
            ("/fhir/sid/aco", "ACO-"),
        ] {
            assert!(
                g["identifier"].as_array().unwrap().iter().any(|i| {
                    i["system"].as_str().unwrap().ends_with(suffix)
                        && i["value"]
                            .as_str()
                            .is_some_and(|v| !v.is_empty() && v.starts_with(prefix))
                }),
                "{suffix}"
            );
        }
        let members = g["member"].as_array().map(Vec::as_slice).unwrap_or(&[]);
        assert_eq!(g["quantity"], members.len() as u64);
        total_entries += members.len();
        let payer = g["managingEntity"]["reference"].as_str().unwrap();
        for m in members {
            resolves(&m["entity"], "member.entity");
            let urls: Vec<&str> = m["extension"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["url"].as_str().unwrap())
                .collect();
            assert_eq!(
                urls,
                [
                    atr_model::EXT_CHANGE_TYPE,
                    atr_model::EXT_COVERAGE_REFERENCE,
                    atr_model::EXT_ATTRIBUTED_PROVIDER
                ]
            );
            let cov = &m["extension"][1]["valueReference"];
            resolves(cov, "coverageReference");
            assert_eq!(coverage_payer[cov["reference"].as_str().unwrap()], payer);
            // The coverage and the patient belong together.
            let n = |r: &Value| {
                r["reference"]
                    .as_str()
                    .unwrap()
                    .rsplit('-')
                    .next()
                    .unwrap()
                    .to_string()
            };
            assert_eq!(n(cov), n(&m["entity"]));
            resolves(&m["extension"][2]["valueReference"], "attributedProvider");
            let (start, end) = (
                m["period"]["start"].as_str().unwrap(),
                m["period"]["end"].as_str().unwrap(),
            );
            assert!(
                cstart <= start && start <= end && end <= cend,
                "{start}..{end} outside {cstart}..{cend}"
            );
            let change = m["extension"][0]["valueCode"].as_str().unwrap();
            assert!(atr_model::CHANGE_TYPE_CODES.contains(&change));
            assert_eq!(m["inactive"] == true, change == "dropped");
        }
    }
    assert_eq!(
        summary.largest_list_members,
        all["Group"]
            .iter()
            .map(|g| g["quantity"].as_u64().unwrap())
            .max()
            .unwrap()
    );
    assert!(total_entries >= members);
}

#[test]
fn npis_are_valid_and_tins_have_nine_digits() {
    let dir = tempfile::tempdir().unwrap();
    generate(&small(), dir.path()).unwrap();
    let all = read_all(dir.path());
    let mut npis = HashSet::new();
    let mut tins = 0;
    for t in ["Organization", "Practitioner", "Group"] {
        for r in &all[t] {
            for npi in identifier_values(r, atr_model::SYSTEM_NPI) {
                assert!(is_valid_npi(npi), "{t}: {npi}");
                if t != "Group" {
                    assert!(npis.insert(npi.to_string()), "duplicate NPI {npi}");
                }
            }
            for tin in identifier_values(r, atr_model::SYSTEM_TIN) {
                assert!(
                    tin.len() == 9 && tin.bytes().all(|b| b.is_ascii_digit()),
                    "{tin}"
                );
                tins += 1;
            }
        }
    }
    assert_eq!(npis.len(), 7 + 35);
    assert_eq!(tins, 9 + 7);
}

#[test]
fn statuses_duplicates_and_second_lists_occur() {
    let dir = tempfile::tempdir().unwrap();
    generate(&small(), dir.path()).unwrap();
    let groups = read_lines(dir.path(), "Group");
    let statuses: HashSet<&str> = groups
        .iter()
        .map(|g| {
            ext(g, atr_model::EXT_ATTRIBUTION_LIST_STATUS)["valueCode"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(statuses, HashSet::from(["draft", "open", "final"]));

    let mut twice_with_two_providers = 0;
    let mut lists_of: HashMap<String, HashSet<String>> = HashMap::new();
    let mut kinds = HashSet::new();
    let mut changes = HashSet::new();
    for g in &groups {
        let mut providers: HashMap<&str, Vec<&str>> = HashMap::new();
        for m in g["member"].as_array().into_iter().flatten() {
            let patient = m["entity"]["reference"].as_str().unwrap();
            let provider = m["extension"][2]["valueReference"]["reference"]
                .as_str()
                .unwrap();
            kinds.insert(provider.split('/').next().unwrap().to_string());
            changes.insert(m["extension"][0]["valueCode"].as_str().unwrap().to_string());
            providers.entry(patient).or_default().push(provider);
            lists_of
                .entry(patient.to_string())
                .or_default()
                .insert(g["id"].as_str().unwrap().to_string());
        }
        for p in providers.values().filter(|p| p.len() > 1) {
            assert_eq!(p.len(), 2);
            assert_ne!(p[0], p[1], "a member appears twice with the same provider");
            twice_with_two_providers += 1;
        }
    }
    assert!(twice_with_two_providers >= 5, "{twice_with_two_providers}");
    let on_two = lists_of.values().filter(|l| l.len() >= 2).count();
    assert!(on_two >= 3, "{on_two}");
    assert_eq!(lists_of.len(), 300, "every member is on a list");
    assert_eq!(
        kinds,
        HashSet::from(["Practitioner", "PractitionerRole", "Organization"].map(String::from))
    );
    for c in ["new", "dropped", "nochange", "changed"] {
        assert!(changes.contains(c), "no {c} entry");
    }
}

#[test]
fn full_share_puts_every_member_on_list_zero() {
    let dir = tempfile::tempdir().unwrap();
    let config = SynthConfig {
        largest_list_share: 1.0,
        ..small()
    };
    let summary = generate(&config, dir.path()).unwrap();
    let groups = read_lines(dir.path(), "Group");
    let first = &groups[0];
    assert_eq!(first["id"], "list-1");
    let n = first["member"].as_array().unwrap().len() as u64;
    assert!(n >= 300, "{n}");
    assert_eq!(summary.largest_list_members, n);
    let patients: HashSet<&str> = first["member"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["entity"]["reference"].as_str().unwrap())
        .collect();
    assert_eq!(patients.len(), 300);
}

#[test]
fn one_list_and_no_members_are_fine() {
    let dir = tempfile::tempdir().unwrap();
    let config = SynthConfig {
        members: 50,
        lists: 1,
        payers: 1,
        provider_orgs: 0,
        practitioners_per_org: 1,
        ..small()
    };
    let summary = generate(&config, dir.path()).unwrap();
    assert_eq!(summary.count("Group"), 1);
    assert_eq!(summary.count("Organization"), 1 + 3);
    assert!(summary.largest_list_members >= 50);

    let empty = tempfile::tempdir().unwrap();
    let nested = empty.path().join("a/b");
    let config = SynthConfig {
        members: 0,
        lists: 3,
        ..small()
    };
    let summary = generate(&config, &nested).unwrap();
    assert_eq!(summary.count("Patient"), 0);
    assert_eq!(summary.largest_list_members, 0);
    let groups = read_lines(&nested, "Group");
    assert_eq!(groups.len(), 3);
    assert!(
        groups
            .iter()
            .all(|g| g.get("member").is_none() && g["quantity"] == 0)
    );
}

#[test]
fn invalid_configurations_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    for bad in [
        SynthConfig {
            lists: 0,
            ..small()
        },
        SynthConfig {
            payers: 0,
            ..small()
        },
        SynthConfig {
            practitioners_per_org: 0,
            ..small()
        },
        SynthConfig {
            largest_list_share: 1.5,
            ..small()
        },
        SynthConfig {
            largest_list_share: f64::NAN,
            ..small()
        },
    ] {
        let err = generate(&bad, dir.path()).unwrap_err();
        assert!(
            matches!(err, atr_synth::SynthError::InvalidConfig(_)),
            "{bad:?}"
        );
    }
}

/// Timing at scale: `cargo test --release -p atr-synth --test generate -- --ignored --nocapture`.
#[test]
#[ignore]
fn one_million_members_timing() {
    let dir = tempfile::tempdir().unwrap();
    let config = SynthConfig {
        members: 1_000_000,
        lists: 100,
        ..SynthConfig::default()
    };
    let t = std::time::Instant::now();
    let summary = generate(&config, dir.path()).unwrap();
    let elapsed = t.elapsed();
    println!("{summary:?}");
    println!(
        "1,000,000 members in {:.1}s, {:.0} MiB",
        elapsed.as_secs_f64(),
        summary.bytes as f64 / (1024.0 * 1024.0)
    );
}
