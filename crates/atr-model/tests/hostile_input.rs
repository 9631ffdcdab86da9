//! Property tests: whatever JSON a client sends, validation, index extraction and the Group
//! splitter neither panic nor run away, for arbitrary text, arbitrary JSON shaped with FHIR's
//! names, and mutations of the IG's own examples.

use atr_model::group::{MemberEntry, assign_unique_keys, split_group};
use atr_model::validate::{group_profile, validate_group_member, validate_resource};
use atr_model::{ResourceType, index};
use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{Map, Value};

const FHIR_KEYS: &[&str] = &[
    "resourceType",
    "id",
    "meta",
    "profile",
    "extension",
    "url",
    "valueCode",
    "valueReference",
    "valuePeriod",
    "valueIdentifier",
    "valueString",
    "valueBoolean",
    "reference",
    "identifier",
    "system",
    "value",
    "type",
    "coding",
    "code",
    "member",
    "entity",
    "period",
    "start",
    "end",
    "inactive",
    "actual",
    "managingEntity",
    "name",
    "family",
    "given",
    "status",
    "beneficiary",
    "subscriber",
    "subscriberId",
    "policyHolder",
    "payor",
    "class",
    "characteristic",
    "quantity",
    "practitioner",
    "organization",
    "location",
    "patient",
    "relationship",
    "active",
    "birthDate",
    "gender",
    "address",
];

const FHIR_STRINGS: &[&str] = &[
    "",
    " ",
    "Patient/p1",
    "Patient/",
    "/Patient/p1",
    "Patient/p1/_history/2",
    "Coverage/c1",
    "Coverage/c1#2",
    "#c1",
    "Practitioner/pr1",
    "Organization/o1",
    "Group/g1",
    "urn:uuid:0b7d6e4c-7d5a-4ad8-9a67-12a3f4c5d6e7",
    "http://example.org/fhir/Patient/p1",
    "http://hl7.org/fhir/sid/us-npi",
    "urn:oid:2.16.840.1.113883.4.4",
    "http://terminology.hl7.org/CodeSystem/v2-0203",
    atr_model::EXT_ATTRIBUTION_LIST_STATUS,
    atr_model::EXT_CONTRACT_VALIDITY_PERIOD,
    atr_model::EXT_CHANGE_TYPE,
    atr_model::EXT_COVERAGE_REFERENCE,
    atr_model::EXT_ATTRIBUTED_PROVIDER,
    atr_model::EXT_INTENDED_RECIPIENT,
    atr_model::EXT_ANY_RESOURCE,
    atr_model::PROFILE_ATR_GROUP,
    atr_model::PROFILE_PATIENT_LIST,
    "draft",
    "open",
    "final",
    "new",
    "dropped",
    "changed",
    "nochange",
    "person",
    "active",
    "NPI",
    "TAX",
    "1234567893",
    "123456789",
    "2026-01-01",
    "2026-13-45",
    "2026-01-01T00:00:00Z",
    "2026-01-01T25:61:61+99:99",
    "9999-12-31T23:59:59.999999999-14:00",
    "-1",
    "é\u{0301}\u{0000}\u{FFFF}",
];

fn fhir_key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => select(FHIR_KEYS).prop_map(str::to_string),
        1 => "[a-zA-Z_]{1,8}",
    ]
}

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        1 => Just(Value::Null),
        1 => any::<bool>().prop_map(Value::from),
        1 => any::<i64>().prop_map(Value::from),
        1 => any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        4 => select(FHIR_STRINGS).prop_map(Value::from),
        2 => any::<String>().prop_map(Value::from),
    ]
}

/// Arbitrary JSON spelled with FHIR's element names and values, a few levels deep.
fn fhir_json() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(6, 96, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((fhir_key(), inner), 0..8)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// The IG's examples of the types the server stores (the Subscription example is not one).
fn examples() -> Vec<Value> {
    atr_testkit::ig::examples()
        .into_iter()
        .map(|(_, v)| v)
        .filter(|v| {
            v["resourceType"]
                .as_str()
                .is_some_and(|t| t.parse::<ResourceType>().is_ok())
        })
        .collect()
}

/// Every node of `v` as a JSON pointer.
fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                let p = format!("{at}/{}", k.replace('~', "~0").replace('/', "~1"));
                out.push(p.clone());
                pointers(child, p, out);
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                let p = format!("{at}/{i}");
                out.push(p.clone());
                pointers(child, p, out);
            }
        }
        _ => {}
    }
}

#[derive(Debug, Clone)]
enum Mutation {
    Replace(Value),
    Remove,
    Duplicate,
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => fhir_json().prop_map(Mutation::Replace),
        1 => Just(Mutation::Remove),
        1 => Just(Mutation::Duplicate),
    ]
}

/// An IG example with a few of its nodes replaced, removed or doubled.
fn mutated_example() -> impl Strategy<Value = Value> {
    let examples = examples();
    (
        select(examples),
        prop::collection::vec((any::<prop::sample::Index>(), mutation()), 1..4),
    )
        .prop_map(|(mut v, mutations)| {
            for (at, m) in mutations {
                let mut all = Vec::new();
                pointers(&v, String::new(), &mut all);
                if all.is_empty() {
                    break;
                }
                let p = all[at.index(all.len())].clone();
                let (parent, last) = p.rsplit_once('/').unwrap_or(("", ""));
                let last = last.replace("~1", "/").replace("~0", "~");
                let Some(target) = v.pointer_mut(parent) else {
                    continue;
                };
                match (target, m) {
                    (Value::Object(o), Mutation::Replace(new)) => {
                        o.insert(last, new);
                    }
                    (Value::Object(o), Mutation::Remove) => {
                        o.remove(&last);
                    }
                    (Value::Array(a), m) => {
                        if let Ok(i) = last.parse::<usize>()
                            && i < a.len()
                        {
                            match m {
                                Mutation::Replace(new) => a[i] = new,
                                Mutation::Remove => {
                                    a.remove(i);
                                }
                                Mutation::Duplicate => {
                                    let copy = a[i].clone();
                                    a.insert(i, copy);
                                }
                            }
                        }
                    }
                    (Value::Object(o), Mutation::Duplicate) => {
                        if let Some(copy) = o.get(&last).cloned() {
                            o.insert(format!("{last}_"), copy);
                        }
                    }
                    _ => {}
                }
            }
            v
        })
}

fn nodes(v: &Value) -> usize {
    match v {
        Value::Object(m) => 1 + m.values().map(nodes).sum::<usize>(),
        Value::Array(a) => 1 + a.iter().map(nodes).sum::<usize>(),
        _ => 1,
    }
}

/// What the server does with a resource body: split a Group, validate, index; checks the
/// answers stay in proportion to the input.
fn ingest(rtype: ResourceType, resource: &Value) {
    let size = nodes(resource);
    let bound = 8 * size + 16;
    if rtype == ResourceType::Group {
        let text = resource.to_string();
        let Ok(split) = split_group(&text) else {
            return;
        };
        let header_issues = validate_resource(rtype, &split.header);
        assert!(
            header_issues.len() <= bound,
            "{} issues",
            header_issues.len()
        );
        let profile = group_profile(&split.header);
        let mut entries = Vec::new();
        for (i, raw) in split.members.iter().enumerate() {
            let Ok(member) = serde_json::from_str::<Value>(raw.get()) else {
                continue;
            };
            let issues = validate_group_member(profile, &member, i);
            assert!(issues.len() <= bound, "{} issues", issues.len());
            if !issues.iter().any(atr_model::Issue::is_error) {
                entries.push(MemberEntry::from_value(&member));
            }
        }
        assign_unique_keys(&mut entries);
        let mut keys: Vec<&str> = entries.iter().map(|e| e.key.as_str()).collect();
        keys.sort_unstable();
        let before = keys.len();
        keys.dedup();
        assert_eq!(keys.len(), before, "member keys must be unique in a roster");
        let idx = index::extract(rtype, &split.header);
        assert!(idx.tokens.len() + idx.strings.len() + idx.refs.len() <= bound);
    } else {
        let issues = validate_resource(rtype, resource);
        assert!(issues.len() <= bound, "{} issues", issues.len());
        let idx = index::extract(rtype, resource);
        assert!(idx.tokens.len() + idx.strings.len() + idx.refs.len() <= bound);
    }
}

proptest! {
    #[test]
    fn arbitrary_text_never_panics_the_group_splitter(text in any::<String>()) {
        if let Ok(split) = split_group(&text) {
            let _ = validate_resource(ResourceType::Group, &split.header);
        }
    }

    #[test]
    fn near_json_text_never_panics_the_group_splitter(
        v in fhir_json(),
        cut in any::<prop::sample::Index>(),
        junk in "[\\[\\]{}\",:\\\\a-z0-9 ]{0,8}",
    ) {
        let text = v.to_string();
        let at = cut.index(text.len() + 1);
        let at = (0..=at).rev().find(|i| text.is_char_boundary(*i)).unwrap_or(0);
        let broken = format!("{}{junk}{}", &text[..at], &text[at..]);
        if let Ok(split) = split_group(&broken) {
            let _ = validate_resource(ResourceType::Group, &split.header);
            for raw in split.members {
                prop_assert!(serde_json::from_str::<Value>(raw.get()).is_ok());
            }
        }
    }

    #[test]
    fn arbitrary_fhir_shaped_json_validates_and_indexes_as_every_type(
        v in fhir_json(),
        rtype in select(ResourceType::ALL.to_vec()),
    ) {
        let mut v = v;
        if let Some(o) = v.as_object_mut() {
            o.insert("resourceType".into(), Value::from(rtype.as_str()));
        }
        ingest(rtype, &v);
    }

    #[test]
    fn mutated_ig_examples_validate_and_index(v in mutated_example()) {
        let rtype = v["resourceType"].as_str().and_then(|t| t.parse::<ResourceType>().ok());
        for t in ResourceType::ALL.iter() {
            if rtype.is_none() || rtype == Some(*t) {
                ingest(*t, &v);
            }
        }
    }

    #[test]
    fn arbitrary_members_validate_and_reduce_to_rows(
        members in prop::collection::vec(fhir_json(), 0..8),
        patient_list in any::<bool>(),
    ) {
        let profile = if patient_list {
            atr_model::validate::GroupProfile::PatientList
        } else {
            atr_model::validate::GroupProfile::AttributionList
        };
        let mut entries = Vec::new();
        for (i, m) in members.iter().enumerate() {
            let _ = validate_group_member(profile, m, i);
            // Rows are only made of members that passed; made of anything, they still must not panic.
            entries.push(MemberEntry::from_value(m));
        }
        assign_unique_keys(&mut entries);
    }
}
