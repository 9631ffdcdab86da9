//! Members: a Patient, its Coverage, the RelatedPerson subscriber when the member is a dependant,
//! and the member's entries on the attribution lists.

use serde_json::{Value, json};

use crate::address::{city_near, phone_number, street_address};
use crate::date::Date;
use crate::fhir::{
    Address, SYSTEM_COVERAGE_CLASS, SYSTEM_MBI, SYSTEM_PRODUCT_TYPE, SYSTEM_ROLE_CODE,
    SYSTEM_SUBSCRIBER_RELATIONSHIP, concept, human_name, phone, profile, reference,
    typed_identifier,
};
use crate::ids;
use crate::lists::{ChangeType, Entry, ListDef, ProviderKind};
use crate::names::{EMPLOYERS, FAMILY, FEMALE_GIVEN, MALE_GIVEN};
use crate::payers::Payer;
use crate::providers::ProviderOrg;
use crate::rng::{Rng, stream};

/// Ages are as of this date.
const AGE_REFERENCE_YEAR: i32 = 2026;
/// Share of members attributed to two practitioners of the same list.
const P_TWO_PROVIDERS: f64 = 0.08;
/// Share of members that also sit on a second list (of the same payer).
const P_SECOND_LIST: f64 = 0.05;

/// An insurance product (Plan-Net `InsuranceProductTypeCS`).
#[derive(Debug, Clone, Copy)]
struct Product {
    code: &'static str,
    display: &'static str,
    /// Short form used in plan ids.
    abbr: &'static str,
    /// Used in plan names.
    label: &'static str,
    tiers: &'static [(&'static str, &'static str)],
    line: Line,
}

/// A line of business.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Line {
    Commercial,
    Medicare,
    Medicaid,
}

const COMMERCIAL_TIERS: &[(&str, &str)] = &[
    ("BRZ", "Bronze"),
    ("SLV", "Silver"),
    ("SLV", "Silver"),
    ("GLD", "Gold"),
    ("PLT", "Platinum"),
];
const MEDICARE_TIERS: &[(&str, &str)] = &[("VAL", "Value"), ("CHC", "Choice"), ("PRM", "Premier")];
const MEDICAID_TIERS: &[(&str, &str)] = &[("CMY", "Community"), ("FAM", "Family")];

const fn product(
    code: &'static str,
    display: &'static str,
    abbr: &'static str,
    label: &'static str,
    tiers: &'static [(&'static str, &'static str)],
    line: Line,
) -> Product {
    Product {
        code,
        display,
        abbr,
        label,
        tiers,
        line,
    }
}

const COMMERCIAL: &[(Product, u32)] = &[
    (
        product(
            "commppo",
            "Commercial PPO",
            "PPO",
            "PPO",
            COMMERCIAL_TIERS,
            Line::Commercial,
        ),
        35,
    ),
    (
        product(
            "commhmo",
            "Commercial HMO",
            "HMO",
            "HMO",
            COMMERCIAL_TIERS,
            Line::Commercial,
        ),
        25,
    ),
    (
        product(
            "commhdhp",
            "Commercial HDHP",
            "HDHP",
            "HDHP",
            COMMERCIAL_TIERS,
            Line::Commercial,
        ),
        15,
    ),
    (
        product(
            "commepo",
            "Commercial EPO",
            "EPO",
            "EPO",
            COMMERCIAL_TIERS,
            Line::Commercial,
        ),
        10,
    ),
    (
        product(
            "commpos",
            "Commercial POS",
            "POS",
            "POS",
            COMMERCIAL_TIERS,
            Line::Commercial,
        ),
        15,
    ),
];
const MEDICARE: &[(Product, u32)] = &[
    (
        product(
            "mediadv",
            "Medicare Advantage",
            "MAPD",
            "Medicare Advantage",
            MEDICARE_TIERS,
            Line::Medicare,
        ),
        65,
    ),
    (
        product(
            "mediadvhmo",
            "Medicare Advantage HMO",
            "MAHMO",
            "Medicare Advantage HMO",
            MEDICARE_TIERS,
            Line::Medicare,
        ),
        35,
    ),
];
const MEDICAID: &[(Product, u32)] = &[
    (
        product(
            "medi",
            "Medicaid",
            "MCD",
            "Medicaid",
            MEDICAID_TIERS,
            Line::Medicaid,
        ),
        40,
    ),
    (
        product(
            "medihmo",
            "Medicaid HMO",
            "MCDHMO",
            "Medicaid Managed Care",
            MEDICAID_TIERS,
            Line::Medicaid,
        ),
        60,
    ),
];

fn pick_product(rng: &mut Rng, table: &[(Product, u32)]) -> Product {
    let weights: Vec<u32> = table.iter().map(|(_, w)| *w).collect();
    table[rng.weighted(&weights)].0
}

/// Who holds the policy a member is covered by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Subscriber {
    Myself,
    Spouse,
    Parent,
}

/// Everything the members share: the payers, organisations and lists, and how members are spread
/// over the lists.
pub struct MemberPlan<'a> {
    pub seed: u64,
    pub payers: &'a [Payer],
    pub orgs: &'a [ProviderOrg],
    pub lists: &'a [ListDef],
    pub practitioners_per_org: u64,
    pub largest_list_share: f64,
    /// For each payer, its lists.
    payer_lists: Vec<Vec<u32>>,
}

/// One generated member's resources.
pub struct Member {
    pub patient: Value,
    pub related_person: Option<Value>,
    pub coverage: Value,
}

impl<'a> MemberPlan<'a> {
    pub fn new(
        seed: u64,
        payers: &'a [Payer],
        orgs: &'a [ProviderOrg],
        lists: &'a [ListDef],
        practitioners_per_org: u64,
        largest_list_share: f64,
    ) -> MemberPlan<'a> {
        let mut payer_lists = vec![Vec::new(); payers.len()];
        for l in lists {
            payer_lists[l.payer as usize].push(l.index);
        }
        MemberPlan {
            seed,
            payers,
            orgs,
            lists,
            practitioners_per_org,
            largest_list_share,
            payer_lists,
        }
    }

    /// The primary list of a member: list 0 with probability `largest_list_share`, otherwise
    /// any other list.
    fn primary_list(&self, rng: &mut Rng) -> usize {
        let n = self.lists.len() as u64;
        if n == 1 || rng.f64() < self.largest_list_share {
            0
        } else {
            1 + rng.below(n - 1) as usize
        }
    }

    /// Generates member `m` (0-based) and pushes its list entries onto `entries` (one vector per
    /// list).
    pub fn member(&self, m: u64, entries: &mut [Vec<Entry>]) -> Member {
        let mut rng = Rng::stream(self.seed, stream::MEMBER, m);
        let primary = self.primary_list(&mut rng);
        let list = &self.lists[primary];
        let payer = &self.payers[list.payer as usize];
        let org = &self.orgs[list.org as usize];
        let num = m + 1;

        // Demographics.
        let age = draw_age(&mut rng, org.pediatric, org.senior);
        let female = rng.chance(0.51);
        let birth = birth_date(&mut rng, age);
        let given = given_names(&mut rng, female);
        let family = *rng.pick(FAMILY);
        let city = city_near(&mut rng, org.city, 0.7);
        let address = street_address(&mut rng, city, false);
        let home_phone = phone_number(&mut rng, city);

        // Insurance.
        let product = if age >= 65 {
            pick_product(&mut rng, MEDICARE)
        } else if rng.chance(if age < 18 { 0.30 } else { 0.14 }) {
            pick_product(&mut rng, MEDICAID)
        } else {
            pick_product(&mut rng, COMMERCIAL)
        };
        let subscriber = if product.line != Line::Commercial {
            Subscriber::Myself
        } else if age < 18 || (age < 26 && rng.chance(0.6)) {
            Subscriber::Parent
        } else if age >= 26 && rng.chance(0.22) {
            Subscriber::Spouse
        } else {
            Subscriber::Myself
        };
        let medicare = product.line == Line::Medicare;
        // Some Medicare members are dual eligible.
        let medicaid = product.line == Line::Medicaid || (medicare && rng.chance(0.12));
        let (cov_start, cov_end) = coverage_period(&mut rng, birth, medicare);
        let member_id = ids::member_id(self.seed, m);

        // Patient.
        let mut identifiers = vec![typed_identifier(
            "MB",
            &payer.system("member-id"),
            &member_id,
        )];
        if rng.chance(0.4) {
            identifiers.push(typed_identifier(
                "MR",
                &org.system("mrn"),
                &format!("{:08}", rng.below(100_000_000)),
            ));
        }
        if medicare {
            identifiers.push(typed_identifier("MC", SYSTEM_MBI, &ids::mbi(&mut rng)));
        }
        if medicaid {
            identifiers.push(typed_identifier(
                "MA",
                &format!(
                    "https://medicaid.{}.example.org/fhir/sid/member-id",
                    address.state.to_ascii_lowercase()
                ),
                &format!("{}{:09}", address.state, rng.below(1_000_000_000)),
            ));
        }
        let mut telecom = vec![phone(
            &home_phone,
            if rng.chance(0.6) { "home" } else { "mobile" },
        )];
        if age >= 18 && rng.chance(0.35) {
            telecom.push(json!({
                "system": "email",
                "value": format!(
                    "{}.{}{}@example.com",
                    given[0].to_ascii_lowercase(),
                    family.to_ascii_lowercase().replace('\'', ""),
                    rng.below(100)
                ),
            }));
        }
        let mut patient = json!({
            "resourceType": "Patient",
            "id": format!("pat-{num}"),
            "meta": { "profile": [profile("atr-patient")] },
            "identifier": identifiers,
            "active": true,
            "name": [human_name(family, &given, None, None)],
            "telecom": telecom,
            "gender": if female { "female" } else { "male" },
            "birthDate": birth.to_string(),
            "address": [address.to_json("home")],
        });
        if rng.chance(0.5) {
            patient["deceasedBoolean"] = json!(false);
        }

        // Subscriber.
        let patient_ref = format!("Patient/pat-{num}");
        let (subscriber_ref, subscriber_id, related_person) = match subscriber {
            Subscriber::Myself => (patient_ref.clone(), member_id.clone(), None),
            other => {
                let sid = ids::subscriber_id(self.seed, m);
                let rp = self.related_person(
                    &mut rng,
                    num,
                    other,
                    &sid,
                    payer,
                    family,
                    female,
                    age,
                    &address,
                    &home_phone,
                );
                (format!("RelatedPerson/rp-{num}"), sid, Some(rp))
            }
        };
        let (rel_code, rel_display, dependent) = match subscriber {
            Subscriber::Myself => ("self", "Self", "00".to_string()),
            Subscriber::Spouse => ("spouse", "Spouse", "01".to_string()),
            Subscriber::Parent => ("child", "Child", format!("{:02}", rng.range(2, 4))),
        };

        // Coverage.
        let (tier_code, tier_name) = *rng.pick(product.tiers);
        let mut classes = vec![json!({
            "type": concept(SYSTEM_COVERAGE_CLASS, "plan", "Plan"),
            "value": format!("PLAN-{}-{}{:02}", product.abbr, tier_code, payer.num),
            "name": format!("{} {} {}", payer.brand, product.label, tier_name),
        })];
        if product.line == Line::Commercial && rng.chance(0.75) {
            let e = rng.below(EMPLOYERS.len() as u64);
            classes.push(json!({
                "type": concept(SYSTEM_COVERAGE_CLASS, "group", "Group"),
                "value": format!("GRP-{}{:04}", payer.num, e + 1),
                "name": EMPLOYERS[e as usize],
            }));
        }
        let coverage = json!({
            "resourceType": "Coverage",
            "id": format!("cov-{num}"),
            "meta": { "profile": [profile("atr-coverage")] },
            "extension": [{
                "url": atr_model::EXT_INSURANCE_PRODUCT_TYPE,
                "valueCodeableConcept": concept(SYSTEM_PRODUCT_TYPE, product.code, product.display),
            }],
            "identifier": [typed_identifier("MB", &payer.system("member-id"), &member_id)],
            "status": "active",
            "policyHolder": reference(&subscriber_ref),
            "subscriber": reference(&subscriber_ref),
            "subscriberId": subscriber_id,
            "beneficiary": reference(&patient_ref),
            "dependent": dependent,
            "relationship": concept(SYSTEM_SUBSCRIBER_RELATIONSHIP, rel_code, rel_display),
            "period": { "start": cov_start.to_string(), "end": cov_end.to_string() },
            "payor": [payer.reference()],
            "class": classes,
        });

        // Attribution.
        let two = rng.chance(P_TWO_PROVIDERS);
        self.attribute(&mut rng, m, primary, two, cov_start, cov_end, entries);
        if rng.chance(P_SECOND_LIST) {
            let same_payer = &self.payer_lists[list.payer as usize];
            if same_payer.len() > 1 {
                let pos = same_payer
                    .iter()
                    .position(|l| *l as usize == primary)
                    .unwrap_or(0);
                let other =
                    (pos + 1 + rng.below(same_payer.len() as u64 - 1) as usize) % same_payer.len();
                self.attribute(
                    &mut rng,
                    m,
                    same_payer[other] as usize,
                    false,
                    cov_start,
                    cov_end,
                    entries,
                );
            }
        }

        Member {
            patient,
            related_person,
            coverage,
        }
    }

    /// The subscriber of a dependant: the member's spouse or parent.
    #[allow(clippy::too_many_arguments)]
    fn related_person(
        &self,
        rng: &mut Rng,
        num: u64,
        who: Subscriber,
        subscriber_id: &str,
        payer: &Payer,
        member_family: &str,
        member_female: bool,
        member_age: u32,
        address: &Address,
        home_phone: &str,
    ) -> Value {
        let (female, age, family, code, display) = match who {
            Subscriber::Spouse => {
                let female = if rng.chance(0.9) {
                    !member_female
                } else {
                    member_female
                };
                let age = (member_age as i64 + rng.range(-6, 6)).clamp(20, 95) as u32;
                let family = if rng.chance(0.8) {
                    member_family
                } else {
                    *rng.pick(FAMILY)
                };
                (female, age, family, "SPS", "spouse")
            }
            _ => {
                let female = rng.chance(0.55);
                let age = member_age + rng.range(20, 42) as u32;
                let family = if rng.chance(0.85) {
                    member_family
                } else {
                    *rng.pick(FAMILY)
                };
                (female, age, family, "PRN", "parent")
            }
        };
        let given = given_names(rng, female);
        let birth = birth_date(rng, age);
        json!({
            "resourceType": "RelatedPerson",
            "id": format!("rp-{num}"),
            "meta": { "profile": [profile("atr-relatedperson")] },
            "identifier": [typed_identifier("SN", &payer.system("subscriber-id"), subscriber_id)],
            "active": true,
            "patient": reference(&format!("Patient/pat-{num}")),
            "relationship": [concept(SYSTEM_ROLE_CODE, code, display)],
            "name": [human_name(family, &given, None, None)],
            "telecom": [phone(home_phone, "home")],
            "gender": if female { "female" } else { "male" },
            "birthDate": birth.to_string(),
            "address": [address.to_json("home")],
        })
    }

    /// Puts member `m` on list `li` (twice, with two practitioners, when `two`).
    #[allow(clippy::too_many_arguments)]
    fn attribute(
        &self,
        rng: &mut Rng,
        m: u64,
        li: usize,
        two: bool,
        cov_start: Date,
        cov_end: Date,
        entries: &mut [Vec<Entry>],
    ) {
        let list = &self.lists[li];
        let per_org = self.practitioners_per_org;
        let first_pract = u64::from(list.org) * per_org + 1;
        let two = two && per_org >= 2;

        let mut kind = match rng.weighted(&[50, 35, 15]) {
            0 => ProviderKind::Practitioner,
            1 => ProviderKind::PractitionerRole,
            _ => ProviderKind::Organization,
        };
        if two && kind == ProviderKind::Organization {
            kind = ProviderKind::Practitioner;
        }
        // Panels are uneven: the first practitioners of a practice carry more members.
        let k = ((rng.f64().powf(1.5)) * per_org as f64) as u64 % per_org;
        let provider = match kind {
            ProviderKind::Organization => list.org + 1,
            _ => (first_pract + k) as u32,
        };
        let (start, end, change) = attribution_period(rng, list, cov_start, cov_end);
        entries[li].push(Entry::new(m as u32, kind, provider, start, end, change));

        if two {
            let k2 = (k + 1 + rng.below(per_org - 1)) % per_org;
            let kind2 = if rng.chance(0.5) {
                ProviderKind::Practitioner
            } else {
                ProviderKind::PractitionerRole
            };
            let (start, end, change) = attribution_period(rng, list, cov_start, cov_end);
            entries[li].push(Entry::new(
                m as u32,
                kind2,
                (first_pract + k2) as u32,
                start,
                end,
                change,
            ));
        }
    }
}

/// The attribution period of an entry, as offsets from the contract start, and its change type:
/// the contract period cut to the coverage, sometimes starting at a later month (newly
/// attributed), and ending early when the entry was dropped.
fn attribution_period(
    rng: &mut Rng,
    list: &ListDef,
    cov_start: Date,
    cov_end: Date,
) -> (u16, u16, ChangeType) {
    let s0 = list.start.max(cov_start);
    let e0 = list.end.min(cov_end);
    let s0 = s0.min(e0);
    let mut start = s0;
    if e0.0 - s0.0 > 62 && rng.chance(0.12) {
        start = s0
            .add_days(rng.range(0, i64::from(e0.0 - s0.0 - 32)) as i32)
            .next_month_start();
    }
    let change = ChangeType::draw(rng, list.status);
    let mut end = e0;
    if change == ChangeType::Dropped && e0.0 > start.0 {
        end = start
            .add_days(rng.range(0, i64::from(e0.0 - start.0)) as i32)
            .month_end()
            .min(e0);
    }
    (
        (start.0 - list.start.0) as u16,
        (end.0 - list.start.0) as u16,
        change,
    )
}

/// An age in years, following the US age pyramid (mostly children for pediatric practices,
/// mostly the elderly for senior care).
fn draw_age(rng: &mut Rng, pediatric: bool, senior: bool) -> u32 {
    // (lowest age, highest age, weight)
    const BANDS: &[(u32, u32, u32)] = &[
        (0, 4, 6),
        (5, 17, 16),
        (18, 25, 9),
        (26, 34, 12),
        (35, 44, 13),
        (45, 54, 12),
        (55, 64, 13),
        (65, 74, 11),
        (75, 84, 6),
        (85, 95, 2),
    ];
    if pediatric && rng.chance(0.95) {
        return rng.range(0, 17) as u32;
    }
    if senior && rng.chance(0.9) {
        return rng.range(65, 95) as u32;
    }
    let weights: [u32; 10] = std::array::from_fn(|i| BANDS[i].2);
    let (lo, hi, _) = BANDS[rng.weighted(&weights)];
    rng.range(i64::from(lo), i64::from(hi)) as u32
}

/// A birth date giving `age` on 1 January of the reference year (infants born by November).
fn birth_date(rng: &mut Rng, age: u32) -> Date {
    let year = AGE_REFERENCE_YEAR - 1 - age as i32;
    let last = if age == 0 { 333 } else { 364 };
    Date::ymd(year, 1, 1).add_days(rng.range(0, last) as i32)
}

/// One or two given names.
fn given_names(rng: &mut Rng, female: bool) -> Vec<&'static str> {
    let list = if female { FEMALE_GIVEN } else { MALE_GIVEN };
    let first = *rng.pick(list);
    let mut given = vec![first];
    if rng.chance(0.45) {
        let second = *rng.pick(list);
        if second != first {
            given.push(second);
        }
    }
    given
}

/// The coverage period: enrolled years ago (or during 2025), never before birth or, for
/// Medicare, before the month of the 65th birthday; mostly running to the end of 2027.
///
/// Coverage starts no later than 2025-12-01 and ends no earlier than 2026-11-30, so it overlaps
/// every contract (all start between 2025-01-01 and 2026-10-01 and last a year).
fn coverage_period(rng: &mut Rng, birth: Date, medicare: bool) -> (Date, Date) {
    let latest_start = Date::ymd(2025, 12, 1);
    let mut start = if rng.chance(0.85) {
        let month = if rng.chance(0.7) {
            1
        } else {
            rng.range(1, 12) as u32
        };
        Date::ymd(rng.range(2012, 2024) as i32, month, 1)
    } else {
        Date::ymd(2025, rng.range(1, 12) as u32, 1)
    };
    start = start.max(birth);
    if medicare {
        start = start.max(birth.add_years(65).month_start());
    }
    start = start.min(latest_start);
    let end = if rng.chance(0.93) {
        Date::ymd(2027, 12, 31)
    } else {
        Date::ymd(2026, 11, 1)
            .add_days(rng.range(0, 394) as i32)
            .month_end()
    };
    (start, end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coverage_overlaps_every_contract() {
        let mut rng = Rng::new(3);
        for i in 0..20_000 {
            let age = draw_age(&mut rng, i % 7 == 0, i % 5 == 0);
            let birth = birth_date(&mut rng, age);
            let (s, e) = coverage_period(&mut rng, birth, age >= 65);
            assert!(
                s <= Date::ymd(2025, 12, 1) && e >= Date::ymd(2026, 11, 30),
                "{s} {e}"
            );
            assert!(s >= birth || s == Date::ymd(2025, 12, 1));
        }
    }

    #[test]
    fn ages_follow_the_pyramid() {
        let mut rng = Rng::new(4);
        let ages: Vec<u32> = (0..10_000)
            .map(|_| draw_age(&mut rng, false, false))
            .collect();
        assert!(ages.iter().all(|a| *a <= 95));
        let elderly = ages.iter().filter(|a| **a >= 65).count();
        assert!((1500..2300).contains(&elderly), "{elderly}");
    }
}
