//! Deterministic synthetic payer data for the Da Vinci ATR IG.
//!
//! [`generate`] writes one NDJSON file per resource type (see [`FILES`]):
//!
//! - `Organization`: payers (`payer-N`, type `pay`, TIN and NAIC code) and provider organisations
//!   (`org-N`, type `prov`, NPI and TIN); each provider organisation is also the settlement entity
//!   of its contracts.
//! - `Location` (`loc-N`, one per provider organisation), `Practitioner` (`pract-N`, NPI) and
//!   `PractitionerRole` (`role-N`, linking `pract-N` to its organisation and location).
//! - `Patient` (`pat-N`, member id `MB`, sometimes `MR`, `MC` and `MA`), `Coverage` (`cov-N`, one
//!   per patient, paid by the payer of the member's primary list) and `RelatedPerson` (`rp-N`, the
//!   subscriber of a dependant, only where a Coverage points at it).
//! - `Group` (`list-N`, atr-group): one attribution list per contract between a payer and a
//!   provider organisation, each on one line with its whole `member` array.
//!
//! NPIs carry a valid Luhn check digit; identifiers that must be unique (NPIs, TINs, member ids)
//! are. The same [`SynthConfig`] always gives byte-identical files. Members are streamed to disk
//! as they are generated; only 16 bytes per list entry are kept until the Groups are written at
//! the end, so 5 million members fit in about 100 MB.

mod address;
mod date;
mod fhir;
mod ids;
mod json;
mod lists;
mod members;
mod names;
mod payers;
mod providers;
mod rng;
mod writer;

use std::path::Path;

use lists::{Entry, ListDef};
use members::{MemberBuffers, MemberPlan};
use payers::Payer;
use providers::{Practitioner, ProviderOrg};
use writer::NdjsonFile;

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthConfig {
    pub seed: u64,
    /// Number of Patients (each with a Coverage).
    pub members: u64,
    /// Number of attribution lists (Groups), at least 1.
    pub lists: u64,
    /// Payer organisations, at least 1.
    pub payers: u64,
    /// Provider organisations; 0 (the default) means `max(lists, 3)`.
    pub provider_orgs: u64,
    /// Practitioners (each with one PractitionerRole) per provider organisation, at least 1.
    pub practitioners_per_org: u64,
    /// Fraction of members whose primary list is list 0 (the others spread evenly over the other
    /// lists); 1.0 puts every member on list 0.
    pub largest_list_share: f64,
}

impl Default for SynthConfig {
    fn default() -> Self {
        SynthConfig {
            seed: 42,
            members: 1000,
            lists: 10,
            payers: 2,
            provider_orgs: 0,
            practitioners_per_org: 5,
            largest_list_share: 0.5,
        }
    }
}

impl SynthConfig {
    /// The number of provider organisations, with 0 resolved to `max(lists, 3)`.
    pub fn resolved_provider_orgs(&self) -> u64 {
        if self.provider_orgs == 0 {
            self.lists.max(3)
        } else {
            self.provider_orgs
        }
    }

    fn validate(&self) -> Result<(), SynthError> {
        let invalid = |m: &str| Err(SynthError::InvalidConfig(m.to_string()));
        if self.lists == 0 {
            return invalid("lists must be at least 1");
        }
        if self.payers == 0 {
            return invalid("payers must be at least 1");
        }
        if self.practitioners_per_org == 0 {
            return invalid("practitioners_per_org must be at least 1");
        }
        if !(0.0..=1.0).contains(&self.largest_list_share) {
            return invalid("largest_list_share must be between 0 and 1");
        }
        if self.members >= u64::from(u32::MAX) {
            return invalid("members must be below 2^32 - 1");
        }
        let orgs = self.resolved_provider_orgs();
        if self.lists >= u64::from(u32::MAX) || self.payers >= u64::from(u32::MAX) {
            return invalid("lists and payers must be below 2^32 - 1");
        }
        match orgs.checked_mul(self.practitioners_per_org) {
            Some(n) if n < u64::from(u32::MAX) && n <= 100_000_000 => Ok(()),
            _ => invalid("provider_orgs * practitioners_per_org must be at most 100,000,000"),
        }
    }
}

/// What [`generate`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SynthSummary {
    /// Resources written per resource type, in the order the files are listed in [`FILES`].
    pub counts: Vec<(String, u64)>,
    /// Member entries of the biggest Group.
    pub largest_list_members: u64,
    /// Total bytes written.
    pub bytes: u64,
}

impl SynthSummary {
    /// The count of one resource type (0 when absent).
    pub fn count(&self, resource_type: &str) -> u64 {
        self.counts
            .iter()
            .find(|(t, _)| t == resource_type)
            .map_or(0, |(_, n)| *n)
    }
}

#[derive(thiserror::Error, Debug)]
pub enum SynthError {
    #[error("cannot write synthetic data: {0}")]
    Io(#[from] std::io::Error),
    #[error("invalid synthesis configuration: {0}")]
    InvalidConfig(String),
}

/// The resource types written, one `<type>.ndjson` file each.
pub const FILES: [&str; 8] = [
    "Organization",
    "Practitioner",
    "PractitionerRole",
    "Location",
    "Patient",
    "RelatedPerson",
    "Coverage",
    "Group",
];

/// Writes one NDJSON file per resource type into `out_dir` (created if absent):
/// Organization.ndjson, Practitioner.ndjson, PractitionerRole.ndjson, Location.ndjson,
/// Patient.ndjson, RelatedPerson.ndjson, Coverage.ndjson, Group.ndjson.
pub fn generate(config: &SynthConfig, out_dir: &Path) -> Result<SynthSummary, SynthError> {
    config.validate()?;
    std::fs::create_dir_all(out_dir)?;
    let seed = config.seed;
    let n_orgs = config.resolved_provider_orgs();
    let per_org = config.practitioners_per_org;

    let payers: Vec<Payer> = (0..config.payers).map(|i| Payer::new(seed, i)).collect();
    let orgs: Vec<ProviderOrg> = (0..n_orgs)
        .map(|i| ProviderOrg::new(seed, i, config.payers))
        .collect();
    let lists: Vec<ListDef> = (0..config.lists)
        .map(|i| ListDef::new(seed, i, config.payers, n_orgs))
        .collect();

    let create = |t: &'static str| NdjsonFile::create(out_dir, t);
    let mut organization = create("Organization")?;
    let mut practitioner = create("Practitioner")?;
    let mut role = create("PractitionerRole")?;
    let mut location = create("Location")?;
    let mut patient = create("Patient")?;
    let mut related = create("RelatedPerson")?;
    let mut coverage = create("Coverage")?;
    let mut group = create("Group")?;

    // Directory: payers, provider organisations, their locations and clinicians.
    for p in &payers {
        organization.write(&p.to_json())?;
    }
    for o in &orgs {
        organization.write(&o.to_json())?;
        location.write(&o.location_json())?;
        for k in 0..per_org {
            let pr = Practitioner::new(seed, o, k, per_org);
            practitioner.write(&pr.to_json(o))?;
            role.write(&pr.role_json(o))?;
        }
    }

    // Members, streamed; only their list entries stay in memory.
    let plan = MemberPlan::new(
        seed,
        &payers,
        &orgs,
        &lists,
        per_org,
        config.largest_list_share,
    );
    let mut entries: Vec<Vec<Entry>> = vec![Vec::new(); lists.len()];
    let mut buffers = MemberBuffers::new();
    for m in 0..config.members {
        plan.member(m, &mut buffers, &mut entries);
        patient.write_line(buffers.patient.as_bytes())?;
        if !buffers.related_person.as_bytes().is_empty() {
            related.write_line(buffers.related_person.as_bytes())?;
        }
        coverage.write_line(buffers.coverage.as_bytes())?;
    }

    // Groups, each one line written piece by piece.
    let mut largest = 0u64;
    for (list, list_entries) in lists.iter().zip(entries.iter_mut()) {
        let payer = &payers[list.payer as usize];
        let org = &orgs[list.org as usize];
        group.write_with(|out| list.write_group(out, payer, org, list_entries))?;
        largest = largest.max(list_entries.len() as u64);
        // Free each list once written.
        *list_entries = Vec::new();
    }

    let mut counts = Vec::with_capacity(FILES.len());
    let mut bytes = 0;
    for f in [
        organization,
        practitioner,
        role,
        location,
        patient,
        related,
        coverage,
        group,
    ] {
        let (t, n, b) = f.finish()?;
        counts.push((t.to_string(), n));
        bytes += b;
    }
    Ok(SynthSummary {
        counts,
        largest_list_members: largest,
        bytes,
    })
}
