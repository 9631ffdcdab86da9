//! Attribution lists: one Group per contract between a payer and a provider organisation.
//!
//! A list keeps only compact [`Entry`] records while members are generated; the Group is written
//! at the end as one NDJSON line, its header through serde_json and its `member` array piece by
//! piece, so that a list of millions of entries never exists as a `serde_json::Value`.

use std::io::{self, Write};

use serde_json::{Value, json};

use crate::date::Date;
use crate::fhir::typed_identifier;
use crate::payers::Payer;
use crate::providers::ProviderOrg;
use crate::rng::{Rng, stream};

/// `meta.lastUpdated` of every Group (1..1 in atr-group); fixed, so that output is reproducible.
pub const LAST_UPDATED: &str = "2026-01-05T08:00:00Z";

/// `ext-attributionListStatus` codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListStatus {
    Draft,
    Open,
    Final,
}

impl ListStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ListStatus::Draft => "draft",
            ListStatus::Open => "open",
            ListStatus::Final => "final",
        }
    }
}

/// `ext-changeType` codes (the ones the generator uses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ChangeType {
    New = 0,
    Changed = 1,
    NoChange = 2,
    Dropped = 3,
}

impl ChangeType {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeType::New => "new",
            ChangeType::Changed => "changed",
            ChangeType::NoChange => "nochange",
            ChangeType::Dropped => "dropped",
        }
    }

    fn from_u8(v: u8) -> ChangeType {
        match v {
            1 => ChangeType::Changed,
            2 => ChangeType::NoChange,
            3 => ChangeType::Dropped,
            _ => ChangeType::New,
        }
    }

    /// A change type drawn with the mix of a list in `status`: draft lists are being reworked,
    /// final ones were confirmed (their inactive entries were removed), open ones change
    /// continuously.
    pub fn draw(rng: &mut Rng, status: ListStatus) -> ChangeType {
        // Weights for new, changed, nochange, dropped.
        let weights: &[u32] = match status {
            ListStatus::Draft => &[60, 12, 22, 6],
            ListStatus::Final => &[88, 3, 9, 0],
            ListStatus::Open => &[90, 0, 5, 5],
        };
        ChangeType::from_u8(rng.weighted(weights) as u8)
    }
}

/// What `ext-attributedProvider` points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ProviderKind {
    Practitioner = 0,
    PractitionerRole = 1,
    /// The settlement-entity organisation, when no individual is attributed.
    Organization = 2,
}

/// One member entry of a list, as kept in memory until the Group is written (16 bytes).
#[derive(Debug, Clone, Copy)]
pub struct Entry {
    /// 0-based member index: `Patient/pat-<patient + 1>` and `Coverage/cov-<patient + 1>`.
    pub patient: u32,
    /// 1-based number of the practitioner (for Practitioner and PractitionerRole) or of the
    /// provider organisation.
    pub provider: u32,
    /// Attribution period, in days from the contract start.
    pub start: u16,
    pub end: u16,
    change: u8,
    /// Low bits: [`ProviderKind`]; bit 7: inactive.
    flags: u8,
}

const INACTIVE: u8 = 0x80;

impl Entry {
    pub fn new(
        patient: u32,
        kind: ProviderKind,
        provider: u32,
        start: u16,
        end: u16,
        change: ChangeType,
    ) -> Entry {
        let inactive = if change == ChangeType::Dropped {
            INACTIVE
        } else {
            0
        };
        Entry {
            patient,
            provider,
            start,
            end,
            change: change as u8,
            flags: kind as u8 | inactive,
        }
    }

    pub fn kind(&self) -> ProviderKind {
        match self.flags & 0x7f {
            0 => ProviderKind::Practitioner,
            1 => ProviderKind::PractitionerRole,
            _ => ProviderKind::Organization,
        }
    }

    pub fn inactive(&self) -> bool {
        self.flags & INACTIVE != 0
    }

    pub fn change(&self) -> ChangeType {
        ChangeType::from_u8(self.change)
    }
}

/// A contract between a payer and a provider organisation, and its attribution list.
#[derive(Debug, Clone)]
pub struct ListDef {
    /// 0-based index: the id is `list-<index + 1>`.
    pub index: u32,
    /// 0-based payer index.
    pub payer: u32,
    /// 0-based provider organisation index.
    pub org: u32,
    pub status: ListStatus,
    /// Contract validity period (inclusive).
    pub start: Date,
    pub end: Date,
}

impl ListDef {
    /// List `index` among `payers` payers and `orgs` provider organisations: list `i` belongs to
    /// organisation `i % orgs`, and the payers rotate so that a (payer, organisation) pair repeats
    /// only once every pair has a contract.
    pub fn new(seed: u64, index: u64, payers: u64, orgs: u64) -> ListDef {
        let mut rng = Rng::stream(seed, stream::LIST, index);
        let org = index % orgs;
        let payer = (org + index / orgs) % payers;
        let status = [ListStatus::Final, ListStatus::Draft, ListStatus::Open][(index % 3) as usize];
        // One-year contracts starting in 2025 or 2026 (mostly on 1 January): drafts are for the
        // coming contract year.
        let year = match status {
            ListStatus::Final => 2025 + rng.below(2) as i32,
            ListStatus::Draft | ListStatus::Open => 2026,
        };
        let month = *rng.pick(&[1, 1, 1, 1, 4, 7, 10]);
        let start = Date::ymd(year, month, 1);
        let end = start.add_years(1).add_days(-1);
        ListDef {
            index: index as u32,
            payer: payer as u32,
            org: org as u32,
            status,
            start,
            end,
        }
    }

    pub fn id(&self) -> String {
        format!("list-{}", self.index + 1)
    }

    pub fn contract_id(&self) -> String {
        format!("CTR-{}-{:04}", self.start.year(), self.index + 1)
    }

    /// Days in the contract period minus one (the last valid entry offset).
    pub fn last_offset(&self) -> u16 {
        (self.end.0 - self.start.0) as u16
    }

    /// The Group without its `member` array.
    pub fn header_json(&self, payer: &Payer, org: &ProviderOrg, quantity: u64) -> Value {
        json!({
            "resourceType": "Group",
            "id": self.id(),
            "meta": {
                "lastUpdated": LAST_UPDATED,
                "profile": [atr_model::PROFILE_ATR_GROUP],
            },
            "extension": [
                {
                    "url": atr_model::EXT_CONTRACT_VALIDITY_PERIOD,
                    "valuePeriod": { "start": self.start.to_string(), "end": self.end.to_string() },
                },
                {
                    "url": atr_model::EXT_ATTRIBUTION_LIST_STATUS,
                    "valueCode": self.status.as_str(),
                },
            ],
            "identifier": [
                {
                    "use": "official",
                    "type": { "text": "Contract Identifier" },
                    "system": payer.system("contract"),
                    "value": self.contract_id(),
                },
                {
                    "use": "secondary",
                    "type": { "text": "Settlement Entity" },
                    "system": payer.system("settlement-entity"),
                    "value": format!("SE-{:05}", org.num),
                },
                // Seed 000: settlement entity names and ACO identifiers SHALL be in
                // Group.identifier, so a Consumer can discover the list by either.
                {
                    "use": "secondary",
                    "type": { "text": "Settlement Entity Name" },
                    "system": payer.system("settlement-entity-name"),
                    "value": org.name,
                },
                {
                    "use": "secondary",
                    "type": { "text": "ACO Identifier" },
                    "system": payer.system("aco"),
                    "value": format!("ACO-{:04}", org.num),
                },
                typed_identifier("NPI", atr_model::SYSTEM_NPI, &org.npi),
                typed_identifier("TAX", atr_model::SYSTEM_TIN, &org.tin),
            ],
            "active": true,
            "type": "person",
            "actual": true,
            "name": format!(
                "{} \u{2013} {} Value-Based Care {}",
                payer.name,
                org.name,
                self.start.year()
            ),
            "quantity": quantity,
            "managingEntity": payer.reference(),
        })
    }

    /// Writes the Group as one NDJSON line (with its trailing newline).
    pub fn write_group<W: Write>(
        &self,
        out: &mut W,
        payer: &Payer,
        org: &ProviderOrg,
        entries: &[Entry],
    ) -> io::Result<()> {
        let header = serde_json::to_vec(&self.header_json(payer, org, entries.len() as u64))
            .map_err(io::Error::other)?;
        // The header is an object: drop its closing brace and append the member array.
        let open = &header[..header.len() - 1];
        out.write_all(open)?;
        if !entries.is_empty() {
            let dates: Vec<[u8; 10]> = (0..=i32::from(self.last_offset()))
                .map(|d| self.start.add_days(d).bytes())
                .collect();
            let templates = Templates::new();
            let mut buf = Vec::with_capacity(64 * 1024);
            buf.extend_from_slice(b",\"member\":[");
            for (i, e) in entries.iter().enumerate() {
                if i > 0 {
                    buf.push(b',');
                }
                templates.entry(&mut buf, e, &dates);
                if buf.len() >= 60 * 1024 {
                    out.write_all(&buf)?;
                    buf.clear();
                }
            }
            buf.push(b']');
            out.write_all(&buf)?;
        }
        out.write_all(b"}\n")
    }
}

/// The constant pieces of a member entry's JSON text.
struct Templates {
    change: Vec<u8>,
    coverage: Vec<u8>,
    provider: Vec<u8>,
}

impl Templates {
    fn new() -> Templates {
        Templates {
            change: format!(
                "{{\"extension\":[{{\"url\":\"{}\",\"valueCode\":\"",
                atr_model::EXT_CHANGE_TYPE
            )
            .into_bytes(),
            coverage: format!(
                "\"}},{{\"url\":\"{}\",\"valueReference\":{{\"reference\":\"Coverage/cov-",
                atr_model::EXT_COVERAGE_REFERENCE
            )
            .into_bytes(),
            provider: format!(
                "\"}}}},{{\"url\":\"{}\",\"valueReference\":{{\"reference\":\"",
                atr_model::EXT_ATTRIBUTED_PROVIDER
            )
            .into_bytes(),
        }
    }

    /// Appends the JSON text of one member entry.
    fn entry(&self, buf: &mut Vec<u8>, e: &Entry, dates: &[[u8; 10]]) {
        buf.extend_from_slice(&self.change);
        buf.extend_from_slice(e.change().as_str().as_bytes());
        buf.extend_from_slice(&self.coverage);
        push_u64(buf, u64::from(e.patient) + 1);
        buf.extend_from_slice(&self.provider);
        buf.extend_from_slice(match e.kind() {
            ProviderKind::Practitioner => b"Practitioner/pract-".as_slice(),
            ProviderKind::PractitionerRole => b"PractitionerRole/role-".as_slice(),
            ProviderKind::Organization => b"Organization/org-".as_slice(),
        });
        push_u64(buf, u64::from(e.provider));
        buf.extend_from_slice(b"\"}}],\"entity\":{\"reference\":\"Patient/pat-");
        push_u64(buf, u64::from(e.patient) + 1);
        buf.extend_from_slice(b"\"},\"period\":{\"start\":\"");
        buf.extend_from_slice(&dates[usize::from(e.start)]);
        buf.extend_from_slice(b"\",\"end\":\"");
        buf.extend_from_slice(&dates[usize::from(e.end)]);
        buf.extend_from_slice(if e.inactive() {
            b"\"},\"inactive\":true}".as_slice()
        } else {
            b"\"},\"inactive\":false}".as_slice()
        });
    }
}

/// Appends the decimal digits of `v`.
fn push_u64(buf: &mut Vec<u8>, mut v: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    buf.extend_from_slice(&tmp[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_sixteen_bytes() {
        assert_eq!(std::mem::size_of::<Entry>(), 16);
    }

    #[test]
    fn group_line_parses_with_its_members() {
        let payer = Payer::new(1, 0);
        let org = ProviderOrg::new(1, 0, 1);
        let list = ListDef::new(1, 0, 1, 1);
        let entries = [
            Entry::new(
                0,
                ProviderKind::Practitioner,
                3,
                0,
                list.last_offset(),
                ChangeType::New,
            ),
            Entry::new(
                41,
                ProviderKind::Organization,
                1,
                31,
                59,
                ChangeType::Dropped,
            ),
        ];
        let mut out = Vec::new();
        list.write_group(&mut out, &payer, &org, &entries).unwrap();
        assert_eq!(out.last(), Some(&b'\n'));
        let g: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(g["quantity"], 2);
        let m = &g["member"][1];
        assert_eq!(m["entity"]["reference"], "Patient/pat-42");
        assert_eq!(m["extension"][0]["valueCode"], "dropped");
        assert_eq!(
            m["extension"][1]["valueReference"]["reference"],
            "Coverage/cov-42"
        );
        assert_eq!(
            m["extension"][2]["valueReference"]["reference"],
            "Organization/org-1"
        );
        assert_eq!(m["inactive"], true);
        assert_eq!(g["member"][0]["period"]["end"], list.end.to_string());

        let mut empty = Vec::new();
        list.write_group(&mut empty, &payer, &org, &[]).unwrap();
        let g: Value = serde_json::from_slice(&empty).unwrap();
        assert!(g.get("member").is_none());
        assert_eq!(g["quantity"], 0);
    }

    #[test]
    fn push_u64_writes_digits() {
        let mut b = Vec::new();
        push_u64(&mut b, 0);
        b.push(b' ');
        push_u64(&mut b, 1_234_567);
        assert_eq!(b, b"0 1234567");
    }
}
