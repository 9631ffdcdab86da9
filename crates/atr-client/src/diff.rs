//! What changed between two pulls of a list: members added, dropped and changed, and for a
//! changed member what changed (provider, coverage, period), the report a practice manager
//! reconciles against. Only active entries count; an entry that became inactive is a drop.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::store::MemberRow;

/// One member's difference.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct MemberChange {
    /// `added`, `dropped` or `changed`.
    pub change: &'static str,
    pub patient: String,
    pub member_id: Option<String>,
    pub name: Option<String>,
    /// What changed, e.g. `provider Practitioner/a -> Practitioner/b`.
    pub details: Vec<String>,
}

/// The differences, by patient.
pub fn diff(from: &[MemberRow], to: &[MemberRow]) -> Vec<MemberChange> {
    let by_patient = |rows: &[MemberRow]| {
        let mut m: BTreeMap<String, Vec<MemberRow>> = BTreeMap::new();
        for r in rows.iter().filter(|r| !r.inactive) {
            m.entry(r.patient.clone()).or_default().push(r.clone());
        }
        for v in m.values_mut() {
            v.sort_by(|a, b| (&a.provider, &a.coverage).cmp(&(&b.provider, &b.coverage)));
        }
        m
    };
    let (old, new) = (by_patient(from), by_patient(to));
    let mut out = Vec::new();
    for (patient, rows) in &new {
        let first = &rows[0];
        match old.get(patient) {
            None => out.push(MemberChange {
                change: "added",
                patient: patient.clone(),
                member_id: first.member_id.clone(),
                name: first.name.clone(),
                details: rows.iter().map(describe).collect(),
            }),
            Some(before) => {
                let details = changes(before, rows);
                if !details.is_empty() {
                    out.push(MemberChange {
                        change: "changed",
                        patient: patient.clone(),
                        member_id: first.member_id.clone(),
                        name: first.name.clone(),
                        details,
                    });
                }
            }
        }
    }
    for (patient, rows) in &old {
        if !new.contains_key(patient) {
            out.push(MemberChange {
                change: "dropped",
                patient: patient.clone(),
                member_id: rows[0].member_id.clone(),
                name: rows[0].name.clone(),
                details: rows.iter().map(describe).collect(),
            });
        }
    }
    out.sort_by(|a, b| (a.change, &a.patient).cmp(&(b.change, &b.patient)));
    out
}

fn text(v: &Option<String>) -> &str {
    v.as_deref().unwrap_or("-")
}

fn period(r: &MemberRow) -> String {
    format!("{}..{}", text(&r.period_start), text(&r.period_end))
}

fn describe(r: &MemberRow) -> String {
    format!(
        "provider {}, coverage {}, period {}",
        text(&r.provider),
        text(&r.coverage),
        period(r)
    )
}

/// What differs between a patient's entries before and after.
fn changes(before: &[MemberRow], after: &[MemberRow]) -> Vec<String> {
    let field = |rows: &[MemberRow], f: fn(&MemberRow) -> String| {
        let mut v: Vec<String> = rows.iter().map(f).collect();
        v.sort();
        v.dedup();
        v.join(", ")
    };
    let mut out = Vec::new();
    for (name, f) in [
        (
            "provider",
            (|r: &MemberRow| text(&r.provider).to_string()) as fn(&MemberRow) -> String,
        ),
        ("coverage", |r: &MemberRow| text(&r.coverage).to_string()),
        ("period", period),
    ] {
        let (a, b) = (field(before, f), field(after, f));
        if a != b {
            out.push(format!("{name} {a} -> {b}"));
        }
    }
    out
}
