//! Reading an exported list: the Group line into member rows, and the Patients, Coverages and
//! providers into the directory entries those rows are shown with.

use std::collections::HashMap;

use atr_model::{EXT_ATTRIBUTED_PROVIDER, EXT_CHANGE_TYPE, EXT_COVERAGE_REFERENCE};
use serde::Deserialize;
use serde_json::Value;

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

#[derive(Deserialize)]
struct Member {
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

/// The parts of a Group this client reads: typed, so a 1M-member line is not held as a tree of
/// JSON values.
#[derive(Deserialize)]
pub struct GroupLine {
    #[serde(rename = "resourceType")]
    resource_type: String,
    id: Option<String>,
    meta: Option<Meta>,
    #[serde(default)]
    member: Vec<Member>,
}

impl GroupLine {
    pub fn parse(line: &str) -> Result<GroupLine, String> {
        let g: GroupLine = serde_json::from_str(line).map_err(|e| e.to_string())?;
        if g.resource_type != "Group" {
            return Err(format!("a {} where a Group was expected", g.resource_type));
        }
        Ok(g)
    }

    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    pub fn version(&self) -> Option<&str> {
        self.meta.as_ref().and_then(|m| m.version_id.as_deref())
    }

    /// Each member's Patient reference, in order.
    pub fn patients(&self) -> impl Iterator<Item = Option<&str>> {
        self.member.iter().map(|m| m.entity.reference.as_deref())
    }

    /// Member rows, with names and plans from `lookup` (`Type/id` → entry).
    pub fn rows(&self, lookup: &dyn Fn(&str) -> Option<DirectoryEntry>) -> Vec<MemberRow> {
        self.member
            .iter()
            .map(|m| {
                let ext_ref = |url: &str| {
                    m.extension
                        .iter()
                        .find(|e| e.url == url)
                        .and_then(|e| e.value_reference.as_ref())
                        .and_then(|r| r.reference.clone())
                };
                let patient = m.entity.reference.clone().unwrap_or_default();
                let provider = ext_ref(EXT_ATTRIBUTED_PROVIDER);
                let coverage = ext_ref(EXT_COVERAGE_REFERENCE);
                let person = lookup(&patient);
                MemberRow {
                    member_id: person.as_ref().and_then(|p| p.member_id.clone()),
                    name: person.and_then(|p| p.display),
                    provider_name: provider.as_deref().and_then(lookup).and_then(|p| p.display),
                    plan: coverage.as_deref().and_then(lookup).and_then(|c| c.plan),
                    provider,
                    coverage,
                    period_start: m.period.as_ref().and_then(|p| p.start.clone()),
                    period_end: m.period.as_ref().and_then(|p| p.end.clone()),
                    change_type: m
                        .extension
                        .iter()
                        .find(|e| e.url == EXT_CHANGE_TYPE)
                        .and_then(|e| e.value_code.clone()),
                    inactive: m.inactive.unwrap_or(false),
                    patient,
                }
            })
            .collect()
    }
}

fn human_name(resource: &Value) -> Option<String> {
    let names = resource["name"].as_array()?;
    let n = names
        .iter()
        .find(|n| n["use"] == "official")
        .or(names.first())?;
    if let Some(t) = n["text"].as_str() {
        return Some(t.to_string());
    }
    let given: Vec<&str> = n["given"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let family = n["family"].as_str().unwrap_or("");
    let full = format!("{} {family}", given.join(" ")).trim().to_string();
    (!full.is_empty()).then_some(full)
}

/// The member identifier of a Patient: the one typed `MB`, else the first.
fn member_identifier(resource: &Value) -> Option<String> {
    let ids = resource["identifier"].as_array()?;
    ids.iter()
        .find(|i| {
            i["type"]["coding"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["code"] == "MB")
        })
        .or(ids.first())
        .and_then(|i| i["value"].as_str())
        .map(str::to_string)
}

/// A Coverage's plan: its `class` of type plan (name, else value), else its `type` text.
fn plan_of(coverage: &Value) -> Option<String> {
    let classes = coverage["class"].as_array();
    let plan = classes.into_iter().flatten().find(|c| {
        c["type"]["coding"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|x| x["code"] == "plan")
    });
    plan.and_then(|c| c["name"].as_str().or(c["value"].as_str()))
        .or_else(|| coverage["type"]["text"].as_str())
        .or_else(|| coverage["type"]["coding"][0]["display"].as_str())
        .map(str::to_string)
}

/// The directory entry of a resource this client shows members with (None for other types).
pub fn directory_entry(rtype: &str, resource: &Value) -> Option<DirectoryEntry> {
    let id = resource["id"].as_str()?;
    let reference = format!("{rtype}/{id}");
    let entry = match rtype {
        "Patient" => DirectoryEntry {
            reference,
            display: human_name(resource),
            member_id: member_identifier(resource),
            plan: None,
        },
        "Practitioner" | "RelatedPerson" => DirectoryEntry {
            reference,
            display: human_name(resource),
            ..Default::default()
        },
        "Organization" | "Location" => DirectoryEntry {
            reference,
            display: resource["name"].as_str().map(str::to_string),
            ..Default::default()
        },
        "PractitionerRole" => DirectoryEntry {
            reference,
            display: resource["practitioner"]["display"]
                .as_str()
                .or(resource["practitioner"]["reference"].as_str())
                .map(str::to_string),
            ..Default::default()
        },
        "Coverage" => DirectoryEntry {
            reference,
            plan: plan_of(resource),
            ..Default::default()
        },
        _ => return None,
    };
    Some(entry)
}

/// PractitionerRoles named by their practitioner's name once both are known.
pub fn resolve_roles(entries: &mut HashMap<String, DirectoryEntry>) {
    let names: HashMap<String, Option<String>> = entries
        .iter()
        .filter(|(k, _)| k.starts_with("Practitioner/"))
        .map(|(k, v)| (k.clone(), v.display.clone()))
        .collect();
    for (k, v) in entries.iter_mut() {
        if k.starts_with("PractitionerRole/")
            && let Some(Some(name)) = v.display.as_ref().and_then(|d| names.get(d))
        {
            v.display = Some(name.clone());
        }
    }
}
