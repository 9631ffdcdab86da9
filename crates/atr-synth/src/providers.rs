//! Provider organisations (each also its own settlement entity), their Locations, Practitioners and
//! PractitionerRoles.

use serde_json::{Value, json};

use crate::address::{phone_number, street_address};
use crate::date::Date;
use crate::fhir::{
    Address, SYSTEM_NUCC, SYSTEM_ORG_TYPE, SYSTEM_SNOMED, SYSTEM_V2_0360, concept, human_name,
    identifier, phone, profile, reference, reference_with_display, typed_identifier,
};
use crate::ids;
use crate::names::{
    CITIES, FAMILY, FEMALE_GIVEN, MALE_GIVEN, PRACTICE_KINDS, PRACTICE_PLACES, PRACTICE_SUFFIXES,
};
use crate::rng::{Rng, stream};

/// A provider organisation: a practice, clinic group or ACO.
#[derive(Debug, Clone)]
pub struct ProviderOrg {
    /// 1-based number: ids `org-<num>` and `loc-<num>`.
    pub num: u32,
    pub name: String,
    pub domain: String,
    pub npi: String,
    pub tin: String,
    /// Index into [`CITIES`].
    pub city: usize,
    pub address: Address,
    pub phone: String,
    /// Whether the practice sees children (its physicians are then pediatricians).
    pub pediatric: bool,
    /// Whether the practice sees mostly the elderly.
    pub senior: bool,
}

impl ProviderOrg {
    /// Provider organisation `index` (0-based); `payers` is the number of payers (TINs are
    /// numbered payers first).
    pub fn new(seed: u64, index: u64, payers: u64) -> ProviderOrg {
        let mut rng = Rng::stream(seed, stream::PROVIDER_ORG, index);
        let np = PRACTICE_PLACES.len() as u64;
        let nk = PRACTICE_KINDS.len() as u64;
        let nx = PRACTICE_SUFFIXES.len() as u64;
        let combos = np * nk * nx;
        // Index -> (place, kind, suffix) is one-to-one below `combos`, and neighbours differ in
        // every part: kind and suffix are shifted by the earlier parts.
        let i = index % combos;
        let (a, q) = (i % np, i / np);
        let (b, c) = (q % nk, q / nk);
        let place = PRACTICE_PLACES[a as usize];
        let kind = PRACTICE_KINDS[((b + a) % nk) as usize];
        let suffix = PRACTICE_SUFFIXES[((c + a + b) % nx) as usize];
        let city = rng.below(CITIES.len() as u64) as usize;
        let round = index / combos;
        let mut name = if rng.chance(0.25) {
            format!("{} {kind} {suffix}", CITIES[city].name)
        } else {
            format!("{place} {kind} {suffix}")
        };
        if round > 0 {
            name.push_str(&format!(" {}", round + 1));
        }
        let slug: String = name
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .map(|c| c.to_ascii_lowercase())
            .collect();
        let address = street_address(&mut rng, &CITIES[city], true);
        let phone = phone_number(&mut rng, &CITIES[city]);
        ProviderOrg {
            num: index as u32 + 1,
            name,
            domain: format!("{slug}.example.org"),
            npi: ids::organization_npi(seed, index),
            tin: ids::tin(seed, payers + index),
            city,
            address,
            phone,
            pediatric: kind == "Pediatrics",
            senior: kind == "Senior Care",
        }
    }

    pub fn id(&self) -> String {
        format!("org-{}", self.num)
    }

    pub fn location_id(&self) -> String {
        format!("loc-{}", self.num)
    }

    pub fn reference(&self) -> Value {
        reference_with_display(&format!("Organization/{}", self.id()), &self.name)
    }

    /// `https://<domain>/fhir/sid/<what>`.
    pub fn system(&self, what: &str) -> String {
        format!("https://{}/fhir/sid/{what}", self.domain)
    }

    pub fn to_json(&self) -> Value {
        json!({
            "resourceType": "Organization",
            "id": self.id(),
            "meta": { "profile": [profile("atr-organization")] },
            "identifier": [
                typed_identifier("NPI", atr_model::SYSTEM_NPI, &self.npi),
                typed_identifier("TAX", atr_model::SYSTEM_TIN, &self.tin),
            ],
            "active": true,
            "type": [concept(SYSTEM_ORG_TYPE, "prov", "Healthcare Provider")],
            "name": self.name,
            "telecom": [
                phone(&self.phone, "work"),
                { "system": "url", "value": format!("https://www.{}", self.domain), "use": "work" },
            ],
            "address": [self.address.to_json("work")],
        })
    }

    pub fn location_json(&self) -> Value {
        json!({
            "resourceType": "Location",
            "id": self.location_id(),
            "meta": { "profile": [profile("atr-location")] },
            "identifier": [identifier(&self.system("location"), &format!("LOC-{:05}", self.num))],
            "status": "active",
            "name": format!("{} - Main Office", self.name),
            "mode": "instance",
            "telecom": [phone(&self.phone, "work")],
            "address": self.address.to_json("work"),
            "managingOrganization": self.reference(),
        })
    }
}

/// A clinician's credential, with its v2-0360 degree, role and NUCC taxonomy.
#[derive(Debug, Clone, Copy)]
struct Credential {
    degree: &'static str,
    degree_display: &'static str,
    /// SNOMED CT occupation.
    role: (&'static str, &'static str),
    physician: bool,
}

const MD: Credential = Credential {
    degree: "MD",
    degree_display: "Doctor of Medicine",
    role: ("158965000", "Medical practitioner"),
    physician: true,
};
const DO: Credential = Credential {
    degree: "DO",
    degree_display: "Doctor of Osteopathy",
    role: ("158965000", "Medical practitioner"),
    physician: true,
};
const NP: Credential = Credential {
    degree: "NP",
    degree_display: "Nurse Practitioner",
    role: ("224571005", "Nurse practitioner"),
    physician: false,
};
const PA: Credential = Credential {
    degree: "PA",
    degree_display: "Physician Assistant",
    role: ("449161006", "Physician assistant"),
    physician: false,
};

/// A practitioner of a provider organisation, with its one PractitionerRole there.
#[derive(Debug, Clone)]
pub struct Practitioner {
    /// 1-based number: ids `pract-<num>` and `role-<num>`.
    pub num: u32,
    npi: String,
    gender: &'static str,
    given: &'static str,
    middle: Option<char>,
    family: &'static str,
    credential: Credential,
    taxonomy: (&'static str, &'static str),
    birth_date: Date,
    role_start: Date,
}

impl Practitioner {
    /// Practitioner `k` (0-based) of `org`, which has `per_org` of them.
    pub fn new(seed: u64, org: &ProviderOrg, k: u64, per_org: u64) -> Practitioner {
        let index = u64::from(org.num - 1) * per_org + k;
        let mut rng = Rng::stream(seed, stream::PRACTITIONER, index);
        let female = rng.chance(0.5);
        let given = if female {
            *rng.pick(FEMALE_GIVEN)
        } else {
            *rng.pick(MALE_GIVEN)
        };
        let middle = rng
            .chance(0.6)
            .then(|| char::from(b'A' + rng.below(26) as u8));
        let family = *rng.pick(FAMILY);
        let credential = [MD, MD, MD, MD, MD, DO, DO, NP, NP, PA][rng.below(10) as usize];
        let taxonomy = if !credential.physician {
            if credential.degree == "NP" {
                ("363LF0000X", "Family Health Nurse Practitioner")
            } else {
                ("363A00000X", "Physician Assistant")
            }
        } else if org.pediatric {
            ("208000000X", "Pediatrics Physician")
        } else {
            *rng.pick(&[
                ("207Q00000X", "Family Medicine Physician"),
                ("207Q00000X", "Family Medicine Physician"),
                ("207R00000X", "Internal Medicine Physician"),
                ("207R00000X", "Internal Medicine Physician"),
                ("208D00000X", "General Practice Physician"),
                ("208000000X", "Pediatrics Physician"),
            ])
        };
        let birth_date =
            Date::ymd(rng.range(1955, 1994) as i32, 1, 1).add_days(rng.range(0, 364) as i32);
        let role_start = Date::ymd(rng.range(2008, 2024) as i32, rng.range(1, 12) as u32, 1);
        Practitioner {
            num: index as u32 + 1,
            npi: ids::practitioner_npi(seed, index),
            gender: if female { "female" } else { "male" },
            given,
            middle,
            family,
            credential,
            taxonomy,
            birth_date,
            role_start,
        }
    }

    pub fn id(&self) -> String {
        format!("pract-{}", self.num)
    }

    pub fn role_id(&self) -> String {
        format!("role-{}", self.num)
    }

    fn display(&self) -> String {
        if self.credential.physician {
            format!("Dr. {} {}", self.given, self.family)
        } else {
            format!("{} {}, {}", self.given, self.family, self.credential.degree)
        }
    }

    pub fn to_json(&self, org: &ProviderOrg) -> Value {
        let middle = self.middle.map(String::from);
        let mut given = vec![self.given];
        if let Some(m) = middle.as_deref() {
            given.push(m);
        }
        let prefix = self.credential.physician.then_some("Dr.");
        let suffix = match self.credential.degree {
            "PA" => "PA-C",
            d => d,
        };
        let email = format!(
            "{}.{}@{}",
            self.given.to_ascii_lowercase(),
            self.family.to_ascii_lowercase().replace('\'', ""),
            org.domain
        );
        json!({
            "resourceType": "Practitioner",
            "id": self.id(),
            "meta": { "profile": [profile("atr-practitioner")] },
            "identifier": [typed_identifier("NPI", atr_model::SYSTEM_NPI, &self.npi)],
            "active": true,
            "name": [human_name(self.family, &given, prefix, Some(suffix))],
            "telecom": [
                phone(&org.phone, "work"),
                { "system": "email", "value": email, "use": "work" },
            ],
            "address": [org.address.to_json("work")],
            "gender": self.gender,
            "birthDate": self.birth_date.to_string(),
            "qualification": [{
                "identifier": [identifier(
                    &format!("https://{}.medicalboard.example.org/fhir/sid/license", org.address.state.to_ascii_lowercase()),
                    &format!("{}{:06}", self.credential.degree, self.num),
                )],
                "code": concept(SYSTEM_V2_0360, self.credential.degree, self.credential.degree_display),
            }],
        })
    }

    pub fn role_json(&self, org: &ProviderOrg) -> Value {
        json!({
            "resourceType": "PractitionerRole",
            "id": self.role_id(),
            "meta": { "profile": [profile("atr-practitionerrole")] },
            "identifier": [identifier(&org.system("practitioner-role"), &format!("PR-{:06}", self.num))],
            "active": true,
            "period": { "start": self.role_start.to_string() },
            "practitioner": reference_with_display(&format!("Practitioner/{}", self.id()), &self.display()),
            "organization": org.reference(),
            "code": [concept(SYSTEM_SNOMED, self.credential.role.0, self.credential.role.1)],
            "specialty": [concept(SYSTEM_NUCC, self.taxonomy.0, self.taxonomy.1)],
            "location": [reference(&format!("Location/{}", org.location_id()))],
            "telecom": [phone(&org.phone, "work")],
        })
    }
}
