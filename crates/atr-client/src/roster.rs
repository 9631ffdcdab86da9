//! Reading an exported list: the Group line into member rows, and the Patients, Coverages and
//! providers into the directory entries those rows are shown with.

use atr_model::{EXT_ATTRIBUTED_PROVIDER, EXT_CHANGE_TYPE, EXT_COVERAGE_REFERENCE};
use serde::Deserialize;
use serde::Deserializer as _;

use crate::store::{DirectoryEntry, MemberRow};

#[derive(Deserialize)]
struct Reference {
    reference: Option<String>,
}

#[derive(Deserialize)]
struct Period {
    start: Option<String>,
    end: Option<String>,
}

#[derive(Deserialize)]
struct Extension {
    url: String,
    #[serde(rename = "valueReference")]
    value_reference: Option<Reference>,
    #[serde(rename = "valueCode")]
    value_code: Option<String>,
}

/// One `Group.member` element: the parts this client reads.
#[derive(Deserialize)]
pub struct Member {
    entity: Reference,
    period: Option<Period>,
    inactive: Option<bool>,
    #[serde(default)]
    extension: Vec<Extension>,
}

#[derive(Deserialize)]
struct Meta {
    #[serde(rename = "versionId")]
    version_id: Option<String>,
}

/// What a Group line says besides its members.
#[derive(Debug, Default)]
pub struct GroupHead {
    pub resource_type: Option<String>,
    pub id: Option<String>,
    pub version: Option<String>,
}

/// Reads one Group from `reader`, handing each member to `on_member` as it is parsed: a
/// 1M-member Group (one ~500 MB line) is never held whole. Anything after the Group but
/// whitespace is an error.
pub fn stream_group<R: std::io::Read>(
    reader: R,
    on_member: &mut dyn FnMut(&Member) -> Result<(), String>,
) -> Result<GroupHead, String> {
    let mut de = serde_json::Deserializer::from_reader(reader);
    let head = (&mut de)
        .deserialize_map(GroupVisitor { on_member })
        .map_err(|e| e.to_string())?;
    de.end().map_err(|e| format!("after the Group: {e}"))?;
    Ok(head)
}

struct GroupVisitor<'f> {
    on_member: &'f mut dyn FnMut(&Member) -> Result<(), String>,
}

impl<'de> serde::de::Visitor<'de> for GroupVisitor<'_> {
    type Value = GroupHead;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a Group resource")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<GroupHead, A::Error> {
        let mut head = GroupHead::default();
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "resourceType" => head.resource_type = Some(map.next_value()?),
                "id" => head.id = Some(map.next_value()?),
                "meta" => head.version = map.next_value::<Meta>()?.version_id,
                "member" => map.next_value_seed(MemberSeq {
                    on_member: &mut *self.on_member,
                })?,
                _ => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        Ok(head)
    }
}

struct MemberSeq<'f> {
    on_member: &'f mut dyn FnMut(&Member) -> Result<(), String>,
}

impl<'de> serde::de::DeserializeSeed<'de> for MemberSeq<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> serde::de::Visitor<'de> for MemberSeq<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an array of Group members")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(m) = seq.next_element::<Member>()? {
            (self.on_member)(&m).map_err(serde::de::Error::custom)?;
        }
        Ok(())
    }
}

impl Member {
    /// The member's Patient reference.
    pub fn patient(&self) -> Option<&str> {
        self.entity.reference.as_deref()
    }

    /// The member row, with names and plans from `lookup` (`Type/id` → entry).
    pub fn row(&self, lookup: &dyn Fn(&str) -> Option<DirectoryEntry>) -> MemberRow {
        let ext_ref = |url: &str| {
            self.extension
                .iter()
                .find(|e| e.url == url)
                .and_then(|e| e.value_reference.as_ref())
                .and_then(|r| r.reference.clone())
        };
        let patient = self.entity.reference.clone().unwrap_or_default();
        let provider = ext_ref(EXT_ATTRIBUTED_PROVIDER);
        let coverage = ext_ref(EXT_COVERAGE_REFERENCE);
        let person = lookup(&patient);
        // A PractitionerRole's entry names its Practitioner: show that person's name.
        let provider_name = provider
            .as_deref()
            .and_then(lookup)
            .and_then(|p| p.display)
            .map(|d| {
                if d.starts_with("Practitioner/") {
                    lookup(&d).and_then(|p| p.display).unwrap_or(d)
                } else {
                    d
                }
            });
        MemberRow {
            member_id: person.as_ref().and_then(|p| p.member_id.clone()),
            name: person.and_then(|p| p.display),
            provider_name,
            plan: coverage.as_deref().and_then(lookup).and_then(|c| c.plan),
            provider,
            coverage,
            period_start: self.period.as_ref().and_then(|p| p.start.clone()),
            period_end: self.period.as_ref().and_then(|p| p.end.clone()),
            change_type: self
                .extension
                .iter()
                .find(|e| e.url == EXT_CHANGE_TYPE)
                .and_then(|e| e.value_code.clone()),
            inactive: self.inactive.unwrap_or(false),
            patient,
        }
    }
}

#[derive(Deserialize, Default)]
struct Coding {
    code: Option<String>,
}

#[derive(Deserialize, Default)]
struct Concept {
    #[serde(default)]
    coding: Vec<Coding>,
}

impl Concept {
    fn has_code(&self, code: &str) -> bool {
        self.coding.iter().any(|c| c.code.as_deref() == Some(code))
    }
}

#[derive(Deserialize)]
struct HumanName {
    #[serde(rename = "use")]
    name_use: Option<String>,
    text: Option<String>,
    family: Option<String>,
    #[serde(default)]
    given: Vec<String>,
}

/// `name`: a list of HumanNames (people) or a string (organisations, locations).
#[derive(Deserialize)]
#[serde(untagged)]
enum Name {
    Human(Vec<HumanName>),
    Text(String),
}

#[derive(Deserialize)]
struct Identifier {
    #[serde(rename = "type")]
    kind: Option<Concept>,
    value: Option<String>,
}

#[derive(Deserialize)]
struct CoverageClass {
    #[serde(rename = "type")]
    kind: Option<Concept>,
    value: Option<String>,
    name: Option<String>,
}

#[derive(Deserialize)]
struct Referral {
    reference: Option<String>,
    display: Option<String>,
}

/// The few elements of a resource the directory keeps: typed, so the millions of lines of a
/// large list are read without building a JSON tree for each.
#[derive(Deserialize)]
pub struct ResourceView {
    #[serde(rename = "resourceType")]
    pub resource_type: String,
    id: Option<String>,
    name: Option<Name>,
    #[serde(default)]
    identifier: Vec<Identifier>,
    #[serde(default)]
    class: Vec<CoverageClass>,
    /// A Coverage's `type` (an array on some other types: kept as JSON).
    #[serde(rename = "type")]
    kind: Option<serde_json::Value>,
    practitioner: Option<Referral>,
}

impl ResourceView {
    pub fn parse(line: &str) -> Result<ResourceView, String> {
        serde_json::from_str(line).map_err(|e| e.to_string())
    }

    fn human_name(&self) -> Option<String> {
        let Some(Name::Human(names)) = &self.name else {
            return None;
        };
        let n = names
            .iter()
            .find(|n| n.name_use.as_deref() == Some("official"))
            .or(names.first())?;
        if let Some(t) = &n.text {
            return Some(t.clone());
        }
        let full = format!(
            "{} {}",
            n.given.join(" "),
            n.family.as_deref().unwrap_or("")
        )
        .trim()
        .to_string();
        (!full.is_empty()).then_some(full)
    }

    /// A Patient's member identifier: the one typed `MB`, else the first.
    fn member_identifier(&self) -> Option<String> {
        self.identifier
            .iter()
            .find(|i| i.kind.as_ref().is_some_and(|k| k.has_code("MB")))
            .or(self.identifier.first())
            .and_then(|i| i.value.clone())
    }

    /// A Coverage's plan: its `class` of type plan (name, else value), else its `type`'s text.
    fn plan(&self) -> Option<String> {
        self.class
            .iter()
            .find(|c| c.kind.as_ref().is_some_and(|k| k.has_code("plan")))
            .and_then(|c| c.name.clone().or_else(|| c.value.clone()))
            .or_else(|| {
                let t = self.kind.as_ref()?;
                t["text"]
                    .as_str()
                    .or_else(|| t["coding"][0]["display"].as_str())
                    .map(str::to_string)
            })
    }
}

/// The directory entry of a resource this client shows members with (None for other types).
pub fn directory_entry(v: &ResourceView) -> Option<DirectoryEntry> {
    let rtype = v.resource_type.as_str();
    let reference = format!("{rtype}/{}", v.id.as_deref()?);
    let entry = match rtype {
        "Patient" => DirectoryEntry {
            reference,
            display: v.human_name(),
            member_id: v.member_identifier(),
            plan: None,
        },
        "Practitioner" | "RelatedPerson" => DirectoryEntry {
            reference,
            display: v.human_name(),
            ..Default::default()
        },
        "Organization" | "Location" => DirectoryEntry {
            reference,
            display: match &v.name {
                Some(Name::Text(t)) => Some(t.clone()),
                _ => None,
            },
            ..Default::default()
        },
        "PractitionerRole" => DirectoryEntry {
            reference,
            // Resolved to the Practitioner's name when a member is shown.
            display: v
                .practitioner
                .as_ref()
                .and_then(|p| p.reference.clone().or_else(|| p.display.clone())),
            ..Default::default()
        },
        "Coverage" => DirectoryEntry {
            reference,
            plan: v.plan(),
            ..Default::default()
        },
        _ => return None,
    };
    Some(entry)
}

#[cfg(test)]
mod tests {
    use super::stream_group;

    #[test]
    fn members_stream_in_order_whatever_the_key_order() {
        let text = r#"{"member":[{"entity":{"reference":"Patient/a"}},{"entity":{"reference":"Patient/b"},"inactive":true}],
            "resourceType":"Group","meta":{"versionId":"7"},"id":"g","name":"n"}"#;
        let mut seen = Vec::new();
        let head = stream_group(text.as_bytes(), &mut |m| {
            seen.push((m.patient().unwrap_or("").to_string(), m.inactive));
            Ok(())
        })
        .expect("a Group");
        assert_eq!(
            seen,
            [("Patient/a".into(), None), ("Patient/b".into(), Some(true))]
        );
        assert_eq!(
            (
                head.resource_type.as_deref(),
                head.id.as_deref(),
                head.version.as_deref()
            ),
            (Some("Group"), Some("g"), Some("7"))
        );
    }

    #[test]
    fn a_second_resource_or_a_refused_member_stops_the_read() {
        let two =
            "{\"resourceType\":\"Group\",\"id\":\"g\"}\n{\"resourceType\":\"Group\",\"id\":\"h\"}";
        assert!(stream_group(two.as_bytes(), &mut |_| Ok(())).is_err());
        let one = r#"{"resourceType":"Group","member":[{"entity":{"reference":"Patient/x"}}]}"#;
        let err = stream_group(one.as_bytes(), &mut |_| Err("member 1 is unknown".into()))
            .expect_err("refused");
        assert!(err.contains("member 1 is unknown"), "{err}");
        assert!(stream_group("not json".as_bytes(), &mut |_| Ok(())).is_err());
    }

    mod properties {
        use proptest::prelude::*;

        use super::super::{ResourceView, directory_entry, stream_group};

        proptest! {
            /// A Producer's export lines are input like any other: anything is a Group (its
            /// members each seen once) or an error.
            #[test]
            fn any_export_line_streams_as_a_group_or_is_an_error(text in any::<String>()) {
                let mut members = 0usize;
                let _ = stream_group(text.as_bytes(), &mut |m| {
                    members += 1;
                    let _ = m.patient();
                    Ok(())
                });
                prop_assert!(members <= text.len());
                if let Ok(v) = ResourceView::parse(&text) {
                    let _ = directory_entry(&v);
                }
            }

            #[test]
            fn cut_or_spliced_groups_stream_or_are_an_error(
                cut in any::<prop::sample::Index>(),
                junk in "[\\[\\]{}\",:a-z0-9 ]{0,6}",
            ) {
                let text = r#"{"resourceType":"Group","id":"g","meta":{"versionId":"3"},"member":[{"entity":{"reference":"Patient/a"},"period":{"start":"2026-01-01"}},{"entity":{"reference":"Patient/b"},"inactive":true}]}"#;
                let at = cut.index(text.len() + 1);
                let spliced = format!("{}{junk}{}", &text[..at], &text[at..]);
                let _ = stream_group(spliced.as_bytes(), &mut |_| Ok(()));
                let _ = stream_group(&text.as_bytes()[..at], &mut |_| Ok(()));
                if let Ok(v) = ResourceView::parse(&spliced) {
                    let _ = directory_entry(&v);
                }
            }
        }
    }
}
