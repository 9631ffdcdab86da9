//! Members: a Patient, its Coverage, the RelatedPerson subscriber when the member is a dependant,
//! and the member's entries on the attribution lists.
//!
//! There can be millions of members, so their resources are written as JSON text straight into
//! reused buffers ([`Json`]) rather than built as `serde_json::Value`s.

use crate::address::{city_near, phone_number, street_address};
use crate::date::Date;
use crate::fhir::{
    Address, SYSTEM_COVERAGE_CLASS, SYSTEM_MBI, SYSTEM_PRODUCT_TYPE, SYSTEM_ROLE_CODE,
    SYSTEM_SUBSCRIBER_RELATIONSHIP, profile, write_coding, write_concept_field, write_meta_profile,
    write_name_field, write_phone, write_reference_field, write_typed_identifier,
};
use crate::ids;
use crate::json::Json;
use crate::lists::{ChangeType, Entry, ListDef, ProviderKind};
use crate::names::{EMPLOYERS, FAMILY, FEMALE_GIVEN, MALE_GIVEN};
use crate::payers::Payer;
use crate::providers::ProviderOrg;
use crate::rng::{Rng, stream};

/// Ages are as of 1 January of this year.
const AGE_REFERENCE_YEAR: i32 = 2026;
/// Share of members attributed to two practitioners of the same list.
const P_TWO_PROVIDERS: f64 = 0.08;
/// Share of members that also sit on a second list (of the same payer).
const P_SECOND_LIST: f64 = 0.05;

/// A line of business.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Line {
    Commercial,
    Medicare,
    Medicaid,
}

/// An insurance product (Plan-Net `InsuranceProductTypeCS`).
#[derive(Debug, Clone, Copy)]
struct Product {
    code: &'static str,
    display: &'static str,
    /// Short form used in plan ids.
    abbr: &'static str,
    /// Used in plan names.
    label: &'static str,
    line: Line,
}

const fn product(
    code: &'static str,
    display: &'static str,
    abbr: &'static str,
    label: &'static str,
    line: Line,
) -> Product {
    Product {
        code,
        display,
        abbr,
        label,
        line,
    }
}

impl Product {
    /// Plan tiers: (code, name).
    fn tiers(&self) -> &'static [(&'static str, &'static str)] {
        match self.line {
            Line::Commercial => &[
                ("BRZ", "Bronze"),
                ("SLV", "Silver"),
                ("SLV", "Silver"),
                ("GLD", "Gold"),
                ("PLT", "Platinum"),
            ],
            Line::Medicare => &[("VAL", "Value"), ("CHC", "Choice"), ("PRM", "Premier")],
            Line::Medicaid => &[("CMY", "Community"), ("FAM", "Family")],
        }
    }
}

use Line::{Commercial, Medicaid, Medicare};

#[rustfmt::skip]
const COMMERCIAL: [Product; 5] = [
    product("commppo", "Commercial PPO", "PPO", "PPO", Commercial),
    product("commhmo", "Commercial HMO", "HMO", "HMO", Commercial),
    product("commhdhp", "Commercial HDHP", "HDHP", "HDHP", Commercial),
    product("commepo", "Commercial EPO", "EPO", "EPO", Commercial),
    product("commpos", "Commercial POS", "POS", "POS", Commercial),
];
const COMMERCIAL_WEIGHTS: [u32; 5] = [35, 25, 15, 10, 15];
#[rustfmt::skip]
const MEDICARE: [Product; 2] = [
    product("mediadv", "Medicare Advantage", "MAPD", "Medicare Advantage", Medicare),
    product("mediadvhmo", "Medicare Advantage HMO", "MAHMO", "Medicare Advantage HMO", Medicare),
];
const MEDICARE_WEIGHTS: [u32; 2] = [65, 35];
#[rustfmt::skip]
const MEDICAID: [Product; 2] = [
    product("medi", "Medicaid", "MCD", "Medicaid", Medicaid),
    product("medihmo", "Medicaid HMO", "MCDHMO", "Medicaid Managed Care", Medicaid),
];
const MEDICAID_WEIGHTS: [u32; 2] = [40, 60];

/// Who holds the policy a member is covered by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Subscriber {
    Myself,
    Spouse,
    Parent,
}

/// Strings of a payer that every one of its members repeats.
struct PayerStrings {
    member_system: String,
    subscriber_system: String,
    reference: String,
}

/// Everything the members share: the payers, organisations and lists, and how members are spread
/// over the lists.
pub struct MemberPlan<'a> {
    seed: u64,
    payers: &'a [Payer],
    orgs: &'a [ProviderOrg],
    lists: &'a [ListDef],
    practitioners_per_org: u64,
    largest_list_share: f64,
    /// For each payer, its lists.
    payer_lists: Vec<Vec<u32>>,
    payer_strings: Vec<PayerStrings>,
    /// For each provider organisation, its MRN system.
    mrn_systems: Vec<String>,
    profiles: [String; 3],
}

/// The JSON text of one member's resources, reused from member to member.
pub struct MemberBuffers {
    pub patient: Json,
    pub coverage: Json,
    /// Empty when the member is its own subscriber.
    pub related_person: Json,
}

impl MemberBuffers {
    pub fn new() -> MemberBuffers {
        MemberBuffers {
            patient: Json::new(),
            coverage: Json::new(),
            related_person: Json::new(),
        }
    }
}

/// What the generator decided about a member's subscriber, for the RelatedPerson.
struct Household<'s> {
    num: u64,
    who: Subscriber,
    subscriber_id: &'s str,
    family: &'static str,
    female: bool,
    age: u32,
    address: &'s Address,
    phone: &'s str,
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
            payer_strings: payers
                .iter()
                .map(|p| PayerStrings {
                    member_system: p.system("member-id"),
                    subscriber_system: p.system("subscriber-id"),
                    reference: format!("Organization/{}", p.id()),
                })
                .collect(),
            mrn_systems: orgs.iter().map(|o| o.system("mrn")).collect(),
            profiles: [
                profile("atr-patient"),
                profile("atr-coverage"),
                profile("atr-relatedperson"),
            ],
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

    /// Generates member `m` (0-based): writes its resources into `out` and pushes its list
    /// entries onto `entries` (one vector per list).
    pub fn member(&self, m: u64, out: &mut MemberBuffers, entries: &mut [Vec<Entry>]) {
        let mut rng = Rng::stream(self.seed, stream::MEMBER, m);
        let primary = self.primary_list(&mut rng);
        let list = &self.lists[primary];
        let payer = &self.payers[list.payer as usize];
        let strings = &self.payer_strings[list.payer as usize];
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
            MEDICARE[rng.weighted(&MEDICARE_WEIGHTS)]
        } else if rng.chance(if age < 18 { 0.30 } else { 0.14 }) {
            MEDICAID[rng.weighted(&MEDICAID_WEIGHTS)]
        } else {
            COMMERCIAL[rng.weighted(&COMMERCIAL_WEIGHTS)]
        };
        let subscriber = if product.line != Commercial {
            Subscriber::Myself
        } else if age < 18 || (age < 26 && rng.chance(0.6)) {
            Subscriber::Parent
        } else if age >= 26 && rng.chance(0.22) {
            Subscriber::Spouse
        } else {
            Subscriber::Myself
        };
        let medicare = product.line == Medicare;
        // Some Medicare members are dual eligible.
        let medicaid = product.line == Medicaid || (medicare && rng.chance(0.12));
        let (cov_start, cov_end) = coverage_period(&mut rng, birth, medicare);
        let member_id = ids::member_id(self.seed, m);

        // Patient.
        let patient_ref = format!("Patient/pat-{num}");
        let j = &mut out.patient;
        j.clear();
        j.begin_object()
            .field("resourceType", "Patient")
            .field("id", &patient_ref[8..]);
        write_meta_profile(j, &self.profiles[0]);
        j.array_field("identifier");
        write_typed_identifier(j, "MB", &strings.member_system, &member_id);
        if rng.chance(0.4) {
            let mrn = format!("{:08}", rng.below(100_000_000));
            write_typed_identifier(j, "MR", &self.mrn_systems[list.org as usize], &mrn);
        }
        if medicare {
            write_typed_identifier(j, "MC", SYSTEM_MBI, &ids::mbi(&mut rng));
        }
        if medicaid {
            let system = format!(
                "https://medicaid.{}.example.org/fhir/sid/member-id",
                address.state.to_ascii_lowercase()
            );
            let value = format!("{}{:09}", address.state, rng.below(1_000_000_000));
            write_typed_identifier(j, "MA", &system, &value);
        }
        j.end_array().key("active").bool(true);
        write_name_field(j, family, &given);
        j.array_field("telecom");
        write_phone(
            j,
            &home_phone,
            if rng.chance(0.6) { "home" } else { "mobile" },
        );
        if age >= 18 && rng.chance(0.35) {
            let email = format!(
                "{}.{}{}@example.com",
                given[0].to_ascii_lowercase(),
                family.to_ascii_lowercase().replace('\'', ""),
                rng.below(100)
            );
            j.begin_object()
                .field("system", "email")
                .field("value", &email)
                .end_object();
        }
        j.end_array()
            .field("gender", if female { "female" } else { "male" })
            .field("birthDate", &birth.to_string());
        if rng.chance(0.5) {
            j.key("deceasedBoolean").bool(false);
        }
        j.array_field("address");
        address.write(j, "home");
        j.end_array().end_object();

        // Subscriber.
        let (subscriber_ref, subscriber_id) = match subscriber {
            Subscriber::Myself => {
                out.related_person.clear();
                (patient_ref.clone(), member_id.clone())
            }
            who => {
                let sid = ids::subscriber_id(self.seed, m);
                let household = Household {
                    num,
                    who,
                    subscriber_id: &sid,
                    family,
                    female,
                    age,
                    address: &address,
                    phone: &home_phone,
                };
                self.related_person(&mut rng, &mut out.related_person, strings, &household);
                (format!("RelatedPerson/rp-{num}"), sid)
            }
        };
        let (rel_code, rel_display, dependent) = match subscriber {
            Subscriber::Myself => ("self", "Self", "00".to_string()),
            Subscriber::Spouse => ("spouse", "Spouse", "01".to_string()),
            Subscriber::Parent => ("child", "Child", format!("{:02}", rng.range(2, 4))),
        };

        // Coverage.
        let j = &mut out.coverage;
        j.clear();
        j.begin_object()
            .field("resourceType", "Coverage")
            .field("id", &format!("cov-{num}"));
        write_meta_profile(j, &self.profiles[1]);
        j.array_field("extension")
            .begin_object()
            .field("url", atr_model::EXT_INSURANCE_PRODUCT_TYPE);
        write_concept_field(
            j,
            "valueCodeableConcept",
            SYSTEM_PRODUCT_TYPE,
            product.code,
            product.display,
        );
        j.end_object().end_array().array_field("identifier");
        write_typed_identifier(j, "MB", &strings.member_system, &member_id);
        j.end_array().field("status", "active");
        write_reference_field(j, "policyHolder", &subscriber_ref);
        write_reference_field(j, "subscriber", &subscriber_ref);
        j.field("subscriberId", &subscriber_id);
        write_reference_field(j, "beneficiary", &patient_ref);
        j.field("dependent", &dependent);
        write_concept_field(
            j,
            "relationship",
            SYSTEM_SUBSCRIBER_RELATIONSHIP,
            rel_code,
            rel_display,
        );
        j.object_field("period")
            .field("start", &cov_start.to_string())
            .field("end", &cov_end.to_string())
            .end_object();
        j.array_field("payor")
            .begin_object()
            .field("reference", &strings.reference)
            .field("display", &payer.name)
            .end_object()
            .end_array();
        let (tier_code, tier_name) = *rng.pick(product.tiers());
        j.array_field("class")
            .begin_object()
            .object_field("type")
            .array_field("coding");
        write_coding(j, SYSTEM_COVERAGE_CLASS, "plan", "Plan");
        j.end_array()
            .end_object()
            .field(
                "value",
                &format!("PLAN-{}-{}{:02}", product.abbr, tier_code, payer.num),
            )
            .field(
                "name",
                &format!("{} {} {}", payer.brand, product.label, tier_name),
            )
            .end_object();
        if product.line == Commercial && rng.chance(0.75) {
            let e = rng.below(EMPLOYERS.len() as u64);
            j.begin_object().object_field("type").array_field("coding");
            write_coding(j, SYSTEM_COVERAGE_CLASS, "group", "Group");
            j.end_array()
                .end_object()
                .field("value", &format!("GRP-{}{:04}", payer.num, e + 1))
                .field("name", EMPLOYERS[e as usize])
                .end_object();
        }
        j.end_array().end_object();

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
                let li = same_payer[other] as usize;
                self.attribute(&mut rng, m, li, false, cov_start, cov_end, entries);
            }
        }
    }

    /// The subscriber of a dependant: the member's spouse or parent.
    fn related_person(&self, rng: &mut Rng, j: &mut Json, strings: &PayerStrings, h: &Household) {
        let (female, age, family, code, display) = match h.who {
            Subscriber::Spouse => {
                let female = if rng.chance(0.9) { !h.female } else { h.female };
                let age = (i64::from(h.age) + rng.range(-6, 6)).clamp(20, 95) as u32;
                let family = if rng.chance(0.8) {
                    h.family
                } else {
                    *rng.pick(FAMILY)
                };
                (female, age, family, "SPS", "spouse")
            }
            _ => {
                let female = rng.chance(0.55);
                let age = h.age + rng.range(20, 42) as u32;
                let family = if rng.chance(0.85) {
                    h.family
                } else {
                    *rng.pick(FAMILY)
                };
                (female, age, family, "PRN", "parent")
            }
        };
        let given = given_names(rng, female);
        let birth = birth_date(rng, age);
        j.clear();
        j.begin_object()
            .field("resourceType", "RelatedPerson")
            .field("id", &format!("rp-{}", h.num));
        write_meta_profile(j, &self.profiles[2]);
        j.array_field("identifier");
        write_typed_identifier(j, "SN", &strings.subscriber_system, h.subscriber_id);
        j.end_array().key("active").bool(true);
        write_reference_field(j, "patient", &format!("Patient/pat-{}", h.num));
        j.array_field("relationship")
            .begin_object()
            .array_field("coding");
        write_coding(j, SYSTEM_ROLE_CODE, code, display);
        j.end_array().end_object().end_array();
        write_name_field(j, family, &given);
        j.array_field("telecom");
        write_phone(j, h.phone, "home");
        j.end_array()
            .field("gender", if female { "female" } else { "male" })
            .field("birthDate", &birth.to_string())
            .array_field("address");
        h.address.write(j, "home");
        j.end_array().end_object();
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
