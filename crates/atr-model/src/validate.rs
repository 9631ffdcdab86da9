//! Validation on write against the ATR profiles.
//!
//! [`validate_resource`] checks a resource against the constraints of its ATR profile that matter to a
//! Producer (required elements, fixed values, code lists, reference targets, NPI/TIN formats, period
//! order) plus the FHIR JSON rule that no element may be empty. It returns every problem found, each
//! as an [`Issue`] whose `expression` locates the element (`Coverage.subscriberId`,
//! `Group.member[3].entity`, ...). Errors reject the write; warnings are reported and the write goes
//! ahead.
//!
//! A Group is validated in two parts: its header (the Group without `member`) with
//! [`validate_resource`], and each member with [`validate_group_member`]. A Group can hold millions of
//! members, which the stores stream one row at a time, so they are never gathered into one JSON value
//! to be validated at once.
//!
//! This is not a general FHIR validator: it does not interpret StructureDefinitions or expand
//! ValueSets; the rules below are hand-written from the ATR profiles.

use std::fmt::Write as _;

use serde_json::{Map, Value};

use crate::ident::{is_valid_id, is_valid_npi, is_valid_tin};
use crate::reference::parse_reference;
use crate::{
    CHANGE_TYPE_CODES, EXT_ATTRIBUTED_PROVIDER, EXT_ATTRIBUTION_LIST_STATUS, EXT_CHANGE_TYPE,
    EXT_CONTRACT_VALIDITY_PERIOD, EXT_COVERAGE_REFERENCE, Issue, LIST_STATUS_CODES,
    PROFILE_ATR_GROUP, PROFILE_PATIENT_LIST, ResourceType, SYSTEM_NPI, SYSTEM_TIN, SYSTEM_V2_0203,
};

/// Which Group profile a Group header is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupProfile {
    AttributionList,
    PatientList,
}

/// The profile rules to apply to a Group: PatientList when meta.profile names davinci-patient-list
/// and not atr-group; AttributionList otherwise (including no meta.profile).
pub fn group_profile(header: &Value) -> GroupProfile {
    let profiles = header
        .get("meta")
        .and_then(|m| m.get("profile"))
        .and_then(Value::as_array);
    let names = |canonical: &str| {
        profiles.is_some_and(|p| {
            p.iter()
                .filter_map(Value::as_str)
                .any(|s| is_canonical(s, canonical))
        })
    };
    if names(PROFILE_PATIENT_LIST) && !names(PROFILE_ATR_GROUP) {
        GroupProfile::PatientList
    } else {
        GroupProfile::AttributionList
    }
}

/// Validates a resource. For Group, `resource` is the Group WITHOUT its `member` array (members are
/// checked one by one with `validate_group_member`, because a Group can hold millions of them).
///
/// Should a Group still carry `member`, its members are validated here as well.
pub fn validate_resource(rtype: ResourceType, resource: &Value) -> Vec<Issue> {
    let root = rtype.as_str();
    let mut f = Findings::default();
    let Some(obj) = resource.as_object() else {
        f.error("structure", root, format!("A {root} must be a JSON object"));
        return f.issues;
    };

    check_resource_basics(rtype, obj, &mut f);
    let mut path = root.to_string();
    let skip = (rtype == ResourceType::Group).then_some("member");
    check_entries_not_empty(obj, &mut path, skip, &mut f);
    check_extension_urls(obj, root, &mut f);
    check_identifiers(obj, root, rtype == ResourceType::Group, &mut f);

    match rtype {
        ResourceType::Group => check_group(obj, resource, &mut f),
        ResourceType::Patient => check_patient(obj, &mut f),
        ResourceType::Coverage => check_coverage(obj, &mut f),
        ResourceType::Practitioner => check_practitioner(obj, &mut f),
        ResourceType::PractitionerRole => check_practitioner_role(obj, &mut f),
        ResourceType::Organization => check_organization(obj, &mut f),
        ResourceType::Location => {}
        ResourceType::RelatedPerson => check_related_person(obj, &mut f),
    }

    if rtype == ResourceType::Group {
        let profile = group_profile(resource);
        if let Some(members) = obj.get("member") {
            for (i, member) in f.array_items(members, "Group.member").iter().enumerate() {
                f.issues.extend(validate_group_member(profile, member, i));
            }
        }
    }
    f.issues
}

/// Validates one `Group.member` element at position `index`.
pub fn validate_group_member(profile: GroupProfile, member: &Value, index: usize) -> Vec<Issue> {
    let mut f = Findings::default();
    let mut path = format!("Group.member[{index}]");
    let Some(obj) = member.as_object() else {
        f.error("structure", path, "A Group.member must be a JSON object");
        return f.issues;
    };
    check_entries_not_empty(obj, &mut path, None, &mut f);
    check_extension_urls(obj, &path, &mut f);

    // One path, extended and cut back: a roster has a million members.
    let member_len = path.len();
    path.push_str(".entity");
    match obj.get("entity") {
        None => f.error(
            "required",
            path.as_str(),
            "Group.member.entity is required: a reference to the member's Patient",
        ),
        Some(entity) => check_reference(entity, &path, &["Patient"], Needs::Reference, &mut f),
    }
    path.truncate(member_len);

    match obj.get("period") {
        Some(period) => {
            path.push_str(".period");
            check_period(period, &path, &mut f);
            path.truncate(member_len);
        }
        // The IG says the attribution period SHALL be given, but the profile keeps member.period
        // 0..1 and lists are built up over time, so a missing period must not block a write.
        None if profile == GroupProfile::AttributionList => f.warning(
            "required",
            format!("{path}.period"),
            "Group.member.period (the attribution period) is missing; the ATR IG expects every \
             attributed member to have one",
        ),
        None => {}
    }

    if let Some(inactive) = obj.get("inactive")
        && !inactive.is_boolean()
    {
        f.error(
            "structure",
            format!("{path}.inactive"),
            "Group.member.inactive must be a boolean (true or false)",
        );
    }

    if profile == GroupProfile::AttributionList {
        check_member_extensions(member, &path, &mut f);
    }
    f.issues
}

// ---------------------------------------------------------------------------------------------
// Per-resource rules
// ---------------------------------------------------------------------------------------------

/// `resourceType` and `id`. `meta.lastUpdated` and `meta.versionId` are not required: the server
/// sets them.
fn check_resource_basics(rtype: ResourceType, obj: &Map<String, Value>, f: &mut Findings) {
    let root = rtype.as_str();
    match obj.get("resourceType") {
        None => f.error(
            "required",
            format!("{root}.resourceType"),
            format!("resourceType is required and must be '{root}'"),
        ),
        Some(Value::String(t)) if t == root => {}
        Some(Value::String(t)) => f.error(
            "value",
            format!("{root}.resourceType"),
            format!("resourceType is '{t}', but a {root} was expected here"),
        ),
        Some(_) => f.error(
            "structure",
            format!("{root}.resourceType"),
            format!("resourceType must be the string '{root}'"),
        ),
    }
    match obj.get("id") {
        None => {}
        Some(Value::String(id)) if is_valid_id(id) => {}
        Some(Value::String(id)) => f.error(
            "value",
            format!("{root}.id"),
            format!(
                "id '{id}' is not a valid FHIR id (1 to 64 characters among A-Z, a-z, 0-9, '-' and '.')"
            ),
        ),
        Some(_) => f.error(
            "structure",
            format!("{root}.id"),
            "id must be a string",
        ),
    }
    if let Some(meta) = obj.get("meta") {
        let at = format!("{root}.meta");
        if let Some(meta) = f.object(meta, &at)
            && let Some(profiles) = meta.get("profile")
        {
            for (i, p) in f
                .array_items(profiles, &format!("{at}.profile"))
                .iter()
                .enumerate()
            {
                if !p.is_string() {
                    f.error(
                        "structure",
                        format!("{at}.profile[{i}]"),
                        "meta.profile entries must be canonical URL strings",
                    );
                }
            }
        }
    }
}

fn check_group(g: &Map<String, Value>, header: &Value, f: &mut Findings) {
    // davinci-patient-list, which atr-group derives from.
    check_fixed_code(g, "type", "Group", "person", f);
    match g.get("actual") {
        None => f.error(
            "required",
            "Group.actual",
            "Group.actual is required and must be true (fixed by the profile: the list names real patients)",
        ),
        Some(Value::Bool(true)) => {}
        Some(Value::Bool(false)) => f.error(
            "value",
            "Group.actual",
            "Group.actual is false; the profile fixes it to true",
        ),
        Some(_) => f.error("structure", "Group.actual", "Group.actual must be the boolean true"),
    }
    match g.get("managingEntity") {
        None => f.error(
            "required",
            "Group.managingEntity",
            "Group.managingEntity is required: a reference to the Organization that manages the list",
        ),
        Some(entity) => check_reference(
            entity,
            "Group.managingEntity",
            &["Organization"],
            Needs::ReferenceOrIdentifier,
            f,
        ),
    }
    if let Some(characteristics) = g.get("characteristic") {
        for (i, c) in f
            .array_items(characteristics, "Group.characteristic")
            .iter()
            .enumerate()
        {
            check_characteristic(c, &format!("Group.characteristic[{i}]"), f);
        }
    }

    if group_profile(header) == GroupProfile::AttributionList {
        check_list_status(header, f);
        let at = ext_path("Group", EXT_CONTRACT_VALIDITY_PERIOD);
        if let Some(ext) = single_extension(header, EXT_CONTRACT_VALIDITY_PERIOD, &at, f) {
            match ext.get("valuePeriod") {
                None => f.error(
                    "required",
                    format!("{at}.valuePeriod"),
                    "ext-contractValidityPeriod needs a valuePeriod (the contract's start and end)",
                ),
                Some(period) => check_period(period, &format!("{at}.valuePeriod"), f),
            }
        }
    }
}

const CHARACTERISTIC_VALUE_TYPES: [&str; 5] = [
    "valueCodeableConcept",
    "valueBoolean",
    "valueQuantity",
    "valueRange",
    "valueReference",
];

fn check_characteristic(c: &Value, at: &str, f: &mut Findings) {
    let Some(c) = f.object(c, at) else { return };
    if !c.contains_key("code") {
        f.error(
            "required",
            format!("{at}.code"),
            "Group.characteristic.code is required (what the characteristic is about)",
        );
    }
    let value_keys: Vec<&String> = c.keys().filter(|k| k.starts_with("value")).collect();
    for key in &value_keys {
        if !CHARACTERISTIC_VALUE_TYPES.contains(&key.as_str()) {
            f.error(
                "structure",
                format!("{at}.{key}"),
                format!(
                    "{key} is not an allowed type for Group.characteristic.value[x] (allowed: {})",
                    CHARACTERISTIC_VALUE_TYPES.join(", ")
                ),
            );
        }
    }
    match value_keys.len() {
        0 => f.error(
            "required",
            format!("{at}.value[x]"),
            format!(
                "Group.characteristic needs a value: one of {}",
                CHARACTERISTIC_VALUE_TYPES.join(", ")
            ),
        ),
        1 => {}
        n => f.error(
            "structure",
            format!("{at}.value[x]"),
            format!("Group.characteristic has {n} value[x] elements; exactly one is allowed"),
        ),
    }
    // Core R4 makes `exclude` 1..1: without it the characteristic's meaning is undefined.
    match c.get("exclude") {
        None => f.error(
            "required",
            format!("{at}.exclude"),
            "Group.characteristic.exclude is required (true or false)",
        ),
        Some(Value::Bool(_)) => {}
        Some(_) => f.error(
            "structure",
            format!("{at}.exclude"),
            "Group.characteristic.exclude must be a boolean",
        ),
    }
}

fn check_list_status(header: &Value, f: &mut Findings) {
    let at = ext_path("Group", EXT_ATTRIBUTION_LIST_STATUS);
    let exts = extensions(header, EXT_ATTRIBUTION_LIST_STATUS);
    match exts.len() {
        0 => f.error(
            "required",
            &at,
            format!(
                "The atr-group profile requires the ext-attributionListStatus extension exactly once, \
                 with a valueCode among {}",
                LIST_STATUS_CODES.join(", ")
            ),
        ),
        1 => {}
        n => f.error(
            "structure",
            &at,
            format!("ext-attributionListStatus appears {n} times; exactly one is allowed"),
        ),
    }
    for ext in exts {
        match ext.get("valueCode") {
            None => f.error(
                "required",
                format!("{at}.valueCode"),
                format!(
                    "ext-attributionListStatus needs a valueCode among {}",
                    LIST_STATUS_CODES.join(", ")
                ),
            ),
            Some(Value::String(code)) if LIST_STATUS_CODES.contains(&code.as_str()) => {}
            Some(Value::String(code)) => f.error(
                "value",
                format!("{at}.valueCode"),
                format!(
                    "'{code}' is not an attribution list status; allowed codes: {}",
                    LIST_STATUS_CODES.join(", ")
                ),
            ),
            Some(_) => f.error(
                "structure",
                format!("{at}.valueCode"),
                "ext-attributionListStatus.valueCode must be a string code",
            ),
        }
    }
}

/// changeType, coverageReference and attributedProvider, each 0..1 on an atr-group member.
fn check_member_extensions(member: &Value, path: &str, f: &mut Findings) {
    let at = ext_path(path, EXT_CHANGE_TYPE);
    if let Some(ext) = single_extension(member, EXT_CHANGE_TYPE, &at, f) {
        match ext.get("valueCode") {
            None => f.error(
                "required",
                format!("{at}.valueCode"),
                format!(
                    "ext-changeType needs a valueCode ({})",
                    CHANGE_TYPE_CODES.join(", ")
                ),
            ),
            Some(Value::String(code)) if CHANGE_TYPE_CODES.contains(&code.as_str()) => {}
            // The binding is extensible and the IG's own example uses "add", so an unknown code is
            // only worth a warning.
            Some(Value::String(code)) => f.warning(
                "value",
                format!("{at}.valueCode"),
                format!(
                    "'{code}' is not a code of the ATR change types ({}); accepted because the binding is extensible",
                    CHANGE_TYPE_CODES.join(", ")
                ),
            ),
            Some(_) => f.error(
                "structure",
                format!("{at}.valueCode"),
                "ext-changeType.valueCode must be a string code",
            ),
        }
    }
    let reference_extensions: [(&str, &str, &[&str]); 2] = [
        (
            EXT_COVERAGE_REFERENCE,
            "ext-coverageReference",
            &["Coverage"],
        ),
        (
            EXT_ATTRIBUTED_PROVIDER,
            "ext-attributedProvider",
            &["Practitioner", "PractitionerRole", "Organization"],
        ),
    ];
    for (url, name, targets) in reference_extensions {
        let mut at = ext_path(path, url);
        if let Some(ext) = single_extension(member, url, &at, f) {
            at.push_str(".valueReference");
            match ext.get("valueReference") {
                None => f.error(
                    "required",
                    at,
                    format!("{name} needs a valueReference to a {}", Targets(targets)),
                ),
                Some(r) => check_reference(r, &at, targets, Needs::Reference, f),
            }
        }
    }
}

const GENDERS: [&str; 4] = ["male", "female", "other", "unknown"];

fn check_patient(p: &Map<String, Value>, f: &mut Findings) {
    // An empty array is already reported by the empty-value check.
    if !p.contains_key("identifier") {
        f.error(
            "required",
            "Patient.identifier",
            "atr-patient requires at least one identifier (e.g. the member identifier)",
        );
    }
    if !p.contains_key("name") {
        f.error(
            "required",
            "Patient.name",
            "atr-patient requires at least one name",
        );
    }
    match p.get("gender") {
        None => {}
        Some(Value::String(g)) if GENDERS.contains(&g.as_str()) => {}
        Some(Value::String(g)) => f.error(
            "value",
            "Patient.gender",
            format!(
                "gender '{g}' is not an administrative gender; allowed codes: {}",
                GENDERS.join(", ")
            ),
        ),
        Some(_) => f.error(
            "structure",
            "Patient.gender",
            "Patient.gender must be a string code",
        ),
    }
    match p.get("birthDate") {
        None => {}
        Some(Value::String(d)) if is_fhir_date(d) => {}
        Some(Value::String(d)) => f.error(
            "value",
            "Patient.birthDate",
            format!("birthDate '{d}' is not a valid FHIR date (YYYY, YYYY-MM or YYYY-MM-DD)"),
        ),
        Some(_) => f.error(
            "structure",
            "Patient.birthDate",
            "Patient.birthDate must be a date string",
        ),
    }
}

const CODESYSTEM_COVERAGE_CLASS: &str = "http://terminology.hl7.org/CodeSystem/coverage-class";

fn check_coverage(c: &Map<String, Value>, f: &mut Findings) {
    check_fixed_code(c, "status", "Coverage", "active", f);
    match c.get("subscriberId") {
        None => f.error(
            "required",
            "Coverage.subscriberId",
            "atr-coverage requires subscriberId (the subscriber's id assigned by the payer)",
        ),
        Some(Value::String(_)) => {}
        Some(_) => f.error(
            "structure",
            "Coverage.subscriberId",
            "Coverage.subscriberId must be a string",
        ),
    }
    match c.get("beneficiary") {
        None => f.error(
            "required",
            "Coverage.beneficiary",
            "Coverage.beneficiary is required: a reference to the covered Patient",
        ),
        Some(r) => check_reference(r, "Coverage.beneficiary", &["Patient"], Needs::Reference, f),
    }
    match c.get("period") {
        None => f.error(
            "required",
            "Coverage.period",
            "atr-coverage requires period (when the coverage is in force)",
        ),
        Some(period) => check_period(period, "Coverage.period", f),
    }

    const PARTIES: [&str; 3] = ["Patient", "RelatedPerson", "Organization"];
    match c.get("payor") {
        None => f.error(
            "required",
            "Coverage.payor",
            "atr-coverage requires exactly one payor (a reference to the paying Organization)",
        ),
        Some(payors) => {
            let payors = f.array_items(payors, "Coverage.payor");
            if payors.len() > 1 {
                f.error(
                    "structure",
                    "Coverage.payor",
                    format!(
                        "atr-coverage allows exactly one payor; found {}",
                        payors.len()
                    ),
                );
            }
            for (i, payor) in payors.iter().enumerate() {
                let at = format!("Coverage.payor[{i}]");
                check_reference(payor, &at, &PARTIES, Needs::ReferenceOrIdentifier, f);
            }
        }
    }
    if let Some(r) = c.get("policyHolder") {
        check_reference(r, "Coverage.policyHolder", &PARTIES, Needs::Nothing, f);
    }
    if let Some(r) = c.get("subscriber") {
        check_reference(
            r,
            "Coverage.subscriber",
            &["Patient", "RelatedPerson"],
            Needs::Nothing,
            f,
        );
    }

    if let Some(identifiers) = c.get("identifier") {
        for (i, ident) in identifiers.as_array().into_iter().flatten().enumerate() {
            // Identifier values are checked for every identifier by `check_identifiers`.
            if has_coding(ident.get("type"), SYSTEM_V2_0203, "MB") && ident.get("system").is_none()
            {
                f.error(
                    "required",
                    format!("Coverage.identifier[{i}].system"),
                    "The member identifier (type MB) requires a system as well as a value",
                );
            }
        }
    }
    if let Some(classes) = c.get("class") {
        for (i, class) in f.array_items(classes, "Coverage.class").iter().enumerate() {
            let at = format!("Coverage.class[{i}]");
            let Some(class) = f.object(class, &at) else {
                continue;
            };
            if class.contains_key("value") {
                continue;
            }
            let what = if has_coding(class.get("type"), CODESYSTEM_COVERAGE_CLASS, "plan") {
                "The plan class requires a value (the plan identifier)"
            } else {
                "Coverage.class.value is required"
            };
            f.error("required", format!("{at}.value"), what);
        }
    }
}

fn check_practitioner(p: &Map<String, Value>, f: &mut Findings) {
    if !p.contains_key("name") {
        f.error(
            "required",
            "Practitioner.name",
            "atr-practitioner requires at least one name",
        );
    }
}

fn check_practitioner_role(r: &Map<String, Value>, f: &mut Findings) {
    let required_references = [
        ("practitioner", "Practitioner"),
        ("organization", "Organization"),
    ];
    for (key, target) in required_references {
        let at = format!("PractitionerRole.{key}");
        match r.get(key) {
            None => f.error(
                "required",
                &at,
                format!("atr-practitionerrole requires {key}: a reference to the {target}"),
            ),
            Some(v) => check_reference(v, &at, &[target], Needs::ReferenceOrIdentifier, f),
        }
    }
    if let Some(locations) = r.get("location") {
        let locations = f.array_items(locations, "PractitionerRole.location");
        if locations.len() > 1 {
            f.error(
                "structure",
                "PractitionerRole.location",
                format!(
                    "atr-practitionerrole allows at most one location; found {}",
                    locations.len()
                ),
            );
        }
        for (i, location) in locations.iter().enumerate() {
            let at = format!("PractitionerRole.location[{i}]");
            check_reference(location, &at, &["Location"], Needs::Nothing, f);
        }
    }
}

fn check_organization(o: &Map<String, Value>, f: &mut Findings) {
    if !o.contains_key("name") {
        f.warning(
            "required",
            "Organization.name",
            "Organization has no name; US Core expects one so that people can recognise it",
        );
    }
}

fn check_related_person(r: &Map<String, Value>, f: &mut Findings) {
    match r.get("patient") {
        None => f.error(
            "required",
            "RelatedPerson.patient",
            "RelatedPerson.patient is required: a reference to the Patient this person is related to",
        ),
        Some(p) => check_reference(p, "RelatedPerson.patient", &["Patient"], Needs::Reference, f),
    }
}

// ---------------------------------------------------------------------------------------------
// Shared element checks
// ---------------------------------------------------------------------------------------------

/// Reports every null, empty string, empty array and empty object among `obj`'s entries (except
/// `skip`), recursively. FHIR JSON has no empty elements: an absent value is written by leaving the
/// property out. `path` is the location of `obj`; it is restored before returning.
fn check_entries_not_empty(
    obj: &Map<String, Value>,
    path: &mut String,
    skip: Option<&str>,
    f: &mut Findings,
) {
    for (key, value) in obj {
        if skip == Some(key.as_str()) {
            continue;
        }
        let len = path.len();
        path.push('.');
        path.push_str(key);
        match value {
            // A primitive array and its `_name` twin are aligned by position, and null marks a
            // position that has only a value or only an extension.
            Value::Array(items) if !items.is_empty() && has_twin(obj, key) => {
                check_items_not_empty(items, true, path, f)
            }
            _ => check_not_empty(value, path, f),
        }
        path.truncate(len);
    }
}

fn check_not_empty(value: &Value, path: &mut String, f: &mut Findings) {
    let empty = match value {
        Value::Null => "null",
        Value::String(s) if s.is_empty() => "an empty string",
        Value::Array(items) if items.is_empty() => "an empty array",
        Value::Object(map) if map.is_empty() => "an empty object",
        Value::Array(items) => return check_items_not_empty(items, false, path, f),
        Value::Object(map) => return check_entries_not_empty(map, path, None, f),
        _ => return,
    };
    f.error(
        "structure",
        path.as_str(),
        format!(
            "{path} is {empty}; FHIR does not allow empty values: leave the element out instead"
        ),
    );
}

fn check_items_not_empty(
    items: &[Value],
    nulls_allowed: bool,
    path: &mut String,
    f: &mut Findings,
) {
    for (i, item) in items.iter().enumerate() {
        if nulls_allowed && item.is_null() {
            continue;
        }
        let len = path.len();
        let _ = write!(path, "[{i}]");
        check_not_empty(item, path, f);
        path.truncate(len);
    }
}

/// True when `key` has its primitive-extension twin (`given` / `_given`) in `obj`.
fn has_twin(obj: &Map<String, Value>, key: &str) -> bool {
    match key.strip_prefix('_') {
        Some(plain) => obj.contains_key(plain),
        None => obj.contains_key(&format!("_{key}")),
    }
}

/// Every extension needs a `url` saying what it is.
fn check_extension_urls(obj: &Map<String, Value>, path: &str, f: &mut Findings) {
    for key in ["extension", "modifierExtension"] {
        let Some(exts) = obj.get(key) else { continue };
        let at = format!("{path}.{key}");
        for (i, ext) in f.array_items(exts, &at).iter().enumerate() {
            let at = format!("{at}[{i}]");
            let Some(ext) = f.object(ext, &at) else {
                continue;
            };
            match ext.get("url") {
                Some(Value::String(_)) => {}
                Some(_) => f.error(
                    "structure",
                    format!("{at}.url"),
                    "Extension.url must be a string",
                ),
                None => f.error(
                    "required",
                    format!("{at}.url"),
                    "Every extension needs a url identifying it",
                ),
            }
        }
    }
}

/// `identifier[*]`: each needs a `value` (a Group's may have just a `system`); NPIs must have 10
/// digits and TINs 9.
fn check_identifiers(
    obj: &Map<String, Value>,
    root: &str,
    system_suffices: bool,
    f: &mut Findings,
) {
    let Some(identifiers) = obj.get("identifier") else {
        return;
    };
    let at = format!("{root}.identifier");
    for (i, ident) in f.array_items(identifiers, &at).iter().enumerate() {
        let at = format!("{at}[{i}]");
        let Some(ident) = f.object(ident, &at) else {
            continue;
        };
        let system = ident.get("system");
        if system.is_some_and(|s| !s.is_string()) {
            f.error(
                "structure",
                format!("{at}.system"),
                "Identifier.system must be a URI string",
            );
        }
        let value = match ident.get("value") {
            Some(Value::String(v)) => Some(v.as_str()),
            Some(_) => {
                f.error(
                    "structure",
                    format!("{at}.value"),
                    "Identifier.value must be a string",
                );
                continue;
            }
            None => None,
        };
        let value_at = format!("{at}.value");
        match (system.and_then(Value::as_str), value) {
            (Some(SYSTEM_NPI), Some(v)) => check_npi(v, &value_at, f),
            (Some(SYSTEM_TIN), Some(v)) if !is_valid_tin(v) => f.error(
                "value",
                value_at,
                format!("TIN '{v}' must have 9 digits (optionally written NN-NNNNNNN)"),
            ),
            (_, Some(_)) => {}
            (Some(SYSTEM_NPI | SYSTEM_TIN), None) => f.error(
                "required",
                value_at,
                "An NPI or TIN identifier needs a value",
            ),
            (_, None) if !system_suffices => {
                f.error("required", value_at, "Every identifier needs a value")
            }
            (_, None) if system.is_none() => f.error(
                "required",
                &at,
                "A Group identifier needs a value or at least a system",
            ),
            (_, None) => {}
        }
    }
}

fn check_npi(npi: &str, at: &str, f: &mut Findings) {
    if npi.len() != 10 || !npi.bytes().all(|b| b.is_ascii_digit()) {
        f.error(
            "value",
            at,
            format!("NPI '{npi}' must be exactly 10 digits"),
        );
    } else if !is_valid_npi(npi) {
        // The IG's own examples use NPIs such as 9941339108 that fail the check digit, and those
        // must still load.
        f.warning(
            "value",
            at,
            format!("NPI '{npi}' has a wrong check digit (Luhn over 80840 + the first 9 digits)"),
        );
    }
}

/// A code element fixed by the profile to `expected`.
fn check_fixed_code(
    obj: &Map<String, Value>,
    key: &str,
    root: &str,
    expected: &str,
    f: &mut Findings,
) {
    let at = format!("{root}.{key}");
    match obj.get(key) {
        None => f.error(
            "required",
            &at,
            format!("{at} is required and must be '{expected}'"),
        ),
        Some(Value::String(v)) if v == expected => {}
        Some(Value::String(v)) => f.error(
            "value",
            &at,
            format!("{at} is '{v}'; the profile fixes it to '{expected}'"),
        ),
        Some(_) => f.error(
            "structure",
            &at,
            format!("{at} must be the string '{expected}'"),
        ),
    }
}

/// What a Reference must carry besides the optional type check.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Needs {
    Reference,
    ReferenceOrIdentifier,
    Nothing,
}

/// Checks a Reference element found at `at`: that it carries what `needs` says, and that a literal
/// `reference` points to one of `targets`.
fn check_reference(r: &Value, at: &str, targets: &[&str], needs: Needs, f: &mut Findings) {
    let Some(r) = f.object(r, at) else { return };
    // Spelled out only for a message: most references are fine.
    let expected = Targets(targets);
    match r.get("reference") {
        None => match needs {
            Needs::Reference => f.error(
                "required",
                format!("{at}.reference"),
                format!("{at}.reference is required: a reference to a {expected} (e.g. {}/123)", targets[0]),
            ),
            Needs::ReferenceOrIdentifier if !r.contains_key("identifier") => f.error(
                "required",
                at,
                format!("{at} needs a reference to a {expected} or an identifier"),
            ),
            _ => {}
        },
        // Already reported as an empty value.
        Some(Value::String(s)) if s.is_empty() => {}
        Some(Value::String(s)) => match reference_type(s) {
            Some(t) if targets.contains(&t) => {}
            Some(t) => f.error(
                "value",
                at,
                format!("{at} points to a {t} ('{s}'); it must reference a {expected}"),
            ),
            None => f.error(
                "value",
                at,
                format!(
                    "'{s}' is not a literal reference to a {expected}: expected {}/{{id}} or an absolute URL ending in /{}/{{id}}",
                    targets[0], targets[0]
                ),
            ),
        },
        Some(_) => f.error(
            "structure",
            format!("{at}.reference"),
            "Reference.reference must be a string",
        ),
    }
}

/// Reference targets as a message names them: `Practitioner or PractitionerRole`.
struct Targets<'a>(&'a [&'a str]);

impl std::fmt::Display for Targets<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.join(" or "))
    }
}

/// The resource type a literal reference (`Type/id`, or an absolute URL ending in `/Type/id`) points to.
fn reference_type(reference: &str) -> Option<&str> {
    parse_reference(reference).map(|(rtype, _)| rtype)
}

/// A Period: `start` and `end` valid dates or dateTimes, and start not after end.
fn check_period(period: &Value, at: &str, f: &mut Findings) {
    let Some(period) = f.object(period, at) else {
        return;
    };
    let start = period_bound(period, "start", at, f);
    let end = period_bound(period, "end", at, f);
    if let (Some((start, start_date)), Some((end, end_date))) = (start, end) {
        // Dates of different precision compare on their common prefix: "2020" is not after "2020-05".
        let n = start_date.len().min(end_date.len());
        if start_date[..n] > end_date[..n] {
            f.error(
                "invariant",
                at,
                format!(
                    "Period start {start} is after its end {end}; start must not be later than end"
                ),
            );
        }
    }
}

/// A Period's `start` or `end`, with its date part, when present and well-formed.
fn period_bound<'a>(
    period: &'a Map<String, Value>,
    key: &str,
    at: &str,
    f: &mut Findings,
) -> Option<(&'a str, &'a str)> {
    match period.get(key)? {
        Value::String(s) if s.is_empty() => None,
        Value::String(s) => match date_part(s) {
            Some(date) => Some((s.as_str(), date)),
            None => {
                f.error(
                    "value",
                    format!("{at}.{key}"),
                    format!("'{s}' is not a valid FHIR date or dateTime (YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm:ss+zz:zz)"),
                );
                None
            }
        },
        _ => {
            f.error(
                "structure",
                format!("{at}.{key}"),
                format!("Period.{key} must be a date or dateTime string"),
            );
            None
        }
    }
}

/// The date part of a FHIR date or dateTime. The time part is not checked; a dateTime with a time
/// must have a full date.
fn date_part(s: &str) -> Option<&str> {
    match s.split_once('T') {
        Some((date, time)) => {
            (date.len() == 10 && !time.is_empty() && is_fhir_date(date)).then_some(date)
        }
        None => is_fhir_date(s).then_some(s),
    }
}

/// `YYYY`, `YYYY-MM` or `YYYY-MM-DD` with a month and day that exist.
fn is_fhir_date(s: &str) -> bool {
    let b = s.as_bytes();
    let number = |from: usize, to: usize| -> Option<u32> {
        let digits = b.get(from..to)?;
        digits
            .iter()
            .all(u8::is_ascii_digit)
            .then(|| digits.iter().fold(0, |n, d| n * 10 + u32::from(d - b'0')))
    };
    let Some(year) = number(0, 4).filter(|y| *y > 0) else {
        return false;
    };
    match b.len() {
        4 => true,
        7 => b[4] == b'-' && number(5, 7).is_some_and(|m| (1..=12).contains(&m)),
        10 => {
            let (Some(month), Some(day)) = (number(5, 7), number(8, 10)) else {
                return false;
            };
            b[4] == b'-'
                && b[7] == b'-'
                && (1..=12).contains(&month)
                && day >= 1
                && day <= days_in_month(year, month)
        }
        _ => false,
    }
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400)) => {
            29
        }
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// The extensions of `element` with this `url`.
pub fn extensions<'a>(element: &'a Value, url: &str) -> Vec<&'a Value> {
    element
        .get("extension")
        .and_then(Value::as_array)
        .map(|exts| {
            exts.iter()
                .filter(|e| e.get("url").and_then(Value::as_str) == Some(url))
                .collect()
        })
        .unwrap_or_default()
}

/// The extension with `url` on `element`, which may appear at most once (all the ATR extensions are
/// 0..1 where they are used).
fn single_extension<'a>(
    element: &'a Value,
    url: &str,
    at: &str,
    f: &mut Findings,
) -> Option<&'a Value> {
    let exts = extensions(element, url);
    if exts.len() > 1 {
        f.error(
            "structure",
            at,
            format!(
                "This extension appears {} times; at most one is allowed",
                exts.len()
            ),
        );
    }
    exts.first().copied()
}

/// FHIRPath of an extension: `Group.extension('http://...')`.
fn ext_path(path: &str, url: &str) -> String {
    format!("{path}.extension('{url}')")
}

/// True when a CodeableConcept has a coding with this system and code.
fn has_coding(concept: Option<&Value>, system: &str, code: &str) -> bool {
    concept
        .and_then(|c| c.get("coding"))
        .and_then(Value::as_array)
        .is_some_and(|codings| {
            codings.iter().any(|c| {
                c.get("system").and_then(Value::as_str) == Some(system)
                    && c.get("code").and_then(Value::as_str) == Some(code)
            })
        })
}

/// True when `url` is `canonical`, with or without a `|version`.
fn is_canonical(url: &str, canonical: &str) -> bool {
    url.strip_prefix(canonical)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('|'))
}

/// The issues found so far, with small helpers that report shape errors as they go.
#[derive(Default)]
struct Findings {
    issues: Vec<Issue>,
}

impl Findings {
    fn error(&mut self, code: &'static str, at: impl Into<String>, diagnostics: impl Into<String>) {
        self.issues.push(Issue::error(code, diagnostics).at(at));
    }

    fn warning(
        &mut self,
        code: &'static str,
        at: impl Into<String>,
        diagnostics: impl Into<String>,
    ) {
        self.issues.push(Issue::warning(code, diagnostics).at(at));
    }

    /// The entries of an element that must be a JSON array (reported, and treated as empty, if not).
    fn array_items<'a>(&mut self, value: &'a Value, at: &str) -> &'a [Value] {
        match value {
            Value::Array(items) => items,
            // Already reported as an empty value.
            Value::Null => &[],
            _ => {
                self.error("structure", at, format!("{at} must be a JSON array"));
                &[]
            }
        }
    }

    /// The fields of an element that must be a JSON object (reported if not).
    fn object<'a>(&mut self, value: &'a Value, at: &str) -> Option<&'a Map<String, Value>> {
        let obj = value.as_object();
        if obj.is_none() && !value.is_null() {
            self.error("structure", at, format!("{at} must be a JSON object"));
        }
        obj
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::Severity;

    fn errors(issues: &[Issue]) -> Vec<&Issue> {
        issues.iter().filter(|i| i.is_error()).collect()
    }

    /// The issue at `expression`, failing the test with everything found when there is none.
    fn issue_at<'a>(issues: &'a [Issue], expression: &str) -> &'a Issue {
        issues
            .iter()
            .find(|i| i.expression.as_deref() == Some(expression))
            .unwrap_or_else(|| panic!("no issue at {expression}; found {issues:#?}"))
    }

    fn valid_group() -> Value {
        json!({
            "resourceType": "Group",
            "id": "g1",
            "extension": [{"url": EXT_ATTRIBUTION_LIST_STATUS, "valueCode": "draft"}],
            "identifier": [{"system": SYSTEM_NPI, "value": "1234567893"}],
            "type": "person",
            "actual": true,
            "managingEntity": {"reference": "Organization/1"}
        })
    }

    fn valid_coverage() -> Value {
        json!({
            "resourceType": "Coverage",
            "status": "active",
            "subscriberId": "S1",
            "beneficiary": {"reference": "Patient/1"},
            "period": {"start": "2024-01-01"},
            "payor": [{"reference": "Organization/1"}]
        })
    }

    #[test]
    fn every_ig_example_validates_without_errors() {
        let mut checked = 0;
        for (path, mut resource) in atr_testkit::ig::examples() {
            let Some(rtype) = resource["resourceType"]
                .as_str()
                .and_then(|t| t.parse().ok())
            else {
                continue; // the Subscription example
            };
            let mut issues = Vec::new();
            if rtype == ResourceType::Group {
                let members = resource
                    .as_object_mut()
                    .and_then(|g| g.remove("member"))
                    .unwrap_or_default();
                let profile = group_profile(&resource);
                issues.extend(validate_resource(rtype, &resource));
                for (i, m) in members.as_array().into_iter().flatten().enumerate() {
                    issues.extend(validate_group_member(profile, m, i));
                }
            } else {
                issues.extend(validate_resource(rtype, &resource));
            }
            assert!(
                errors(&issues).is_empty(),
                "{}: {issues:#?}",
                path.display()
            );
            checked += 1;
        }
        assert_eq!(checked, 15, "every example of the 8 types was read");
    }

    #[test]
    fn profiles_are_told_apart_by_meta_profile() {
        let mut g = valid_group();
        assert_eq!(group_profile(&g), GroupProfile::AttributionList);
        g["meta"] = json!({"profile": [format!("{PROFILE_PATIENT_LIST}|0.1.0")]});
        assert_eq!(group_profile(&g), GroupProfile::PatientList);
        g["meta"] = json!({"profile": [PROFILE_PATIENT_LIST, PROFILE_ATR_GROUP]});
        assert_eq!(group_profile(&g), GroupProfile::AttributionList);
    }

    #[test]
    fn valid_group_has_no_issues() {
        assert_eq!(
            validate_resource(ResourceType::Group, &valid_group()),
            vec![]
        );
    }

    #[test]
    fn broken_group_reports_every_problem() {
        let header = json!({
            "resourceType": "Group",
            "identifier": [{"system": SYSTEM_NPI, "value": "12345"}],
            "type": "animal",
            "actual": false
        });
        let issues = validate_resource(ResourceType::Group, &header);
        let status = ext_path("Group", EXT_ATTRIBUTION_LIST_STATUS);
        assert_eq!(issue_at(&issues, &status).code, "required");
        assert_eq!(issue_at(&issues, "Group.type").code, "value");
        assert_eq!(issue_at(&issues, "Group.actual").code, "value");
        assert_eq!(issue_at(&issues, "Group.managingEntity").code, "required");
        let npi = issue_at(&issues, "Group.identifier[0].value");
        assert_eq!((npi.code, npi.severity), ("value", Severity::Error));
        assert!(npi.diagnostics.contains("10 digits"), "{}", npi.diagnostics);
        assert_eq!(errors(&issues).len(), 5, "{issues:#?}");

        let mut pending = valid_group();
        pending["extension"][0]["valueCode"] = json!("pending");
        let issues = validate_resource(ResourceType::Group, &pending);
        let bad = issue_at(&issues, &format!("{status}.valueCode"));
        assert_eq!(bad.code, "value");
        assert!(
            bad.diagnostics.contains("draft, open, final"),
            "{}",
            bad.diagnostics
        );

        let member =
            json!({"entity": {"reference": "Practitioner/1"}, "period": {"start": "2024-01-01"}});
        let issues = validate_group_member(GroupProfile::AttributionList, &member, 3);
        let entity = issue_at(&issues, "Group.member[3].entity");
        assert_eq!((entity.code, issues.len()), ("value", 1));
        assert!(
            entity.diagnostics.contains("Patient"),
            "{}",
            entity.diagnostics
        );
    }

    #[test]
    fn group_rules_on_status_repeats_contract_period_and_managing_entity() {
        let mut g = valid_group();
        g["extension"] = json!([
            {"url": EXT_ATTRIBUTION_LIST_STATUS, "valueCode": "open"},
            {"url": EXT_ATTRIBUTION_LIST_STATUS, "valueCode": "final"},
            {"url": EXT_CONTRACT_VALIDITY_PERIOD, "valuePeriod": {"start": "2022-01-01", "end": "2021-12-31"}}
        ]);
        g["managingEntity"] = json!({"reference": "http://x.org/fhir/Practitioner/9"});
        g["characteristic"] = json!([{"code": {"text": "x"}, "exclude": false}]);
        g["identifier"] = json!([{"system": SYSTEM_TIN, "value": "12-34"}, {"use": "official"}]);
        let issues = validate_resource(ResourceType::Group, &g);
        assert_eq!(
            issue_at(&issues, &ext_path("Group", EXT_ATTRIBUTION_LIST_STATUS)).code,
            "structure"
        );
        let period = format!(
            "{}.valuePeriod",
            ext_path("Group", EXT_CONTRACT_VALIDITY_PERIOD)
        );
        assert_eq!(issue_at(&issues, &period).code, "invariant");
        assert_eq!(issue_at(&issues, "Group.managingEntity").code, "value");
        assert_eq!(
            issue_at(&issues, "Group.characteristic[0].value[x]").code,
            "required"
        );
        assert_eq!(issue_at(&issues, "Group.identifier[0].value").code, "value");
        assert_eq!(issue_at(&issues, "Group.identifier[1]").code, "required");
        assert_eq!(errors(&issues).len(), 6, "{issues:#?}");
    }

    #[test]
    fn patient_list_groups_skip_the_atr_group_rules() {
        let g = json!({
            "resourceType": "Group",
            "meta": {"profile": [PROFILE_PATIENT_LIST]},
            "type": "person",
            "actual": true,
            "managingEntity": {"identifier": {"system": SYSTEM_TIN, "value": "789456231"}}
        });
        assert_eq!(validate_resource(ResourceType::Group, &g), vec![]);
        let member = json!({"entity": {"reference": "Patient/1"}});
        assert_eq!(
            validate_group_member(GroupProfile::PatientList, &member, 0),
            vec![]
        );
        // An attribution list expects the attribution period, but only as a warning.
        let issues = validate_group_member(GroupProfile::AttributionList, &member, 0);
        assert_eq!(
            issue_at(&issues, "Group.member[0].period").severity,
            Severity::Warning
        );
        assert!(errors(&issues).is_empty());
    }

    #[test]
    fn member_extensions_and_fields_are_checked() {
        let member = json!({
            "extension": [
                {"url": EXT_CHANGE_TYPE, "valueCode": "add"},
                {"url": EXT_COVERAGE_REFERENCE, "valueReference": {"reference": "Patient/1"}},
                {"url": EXT_ATTRIBUTED_PROVIDER, "valueReference": {"reference": "PractitionerRole/1"}},
                {"url": EXT_ATTRIBUTED_PROVIDER, "valueReference": {"reference": "Organization/1"}}
            ],
            "entity": {"reference": "https://payer.example/fhir/Patient/7"},
            "period": {"start": "2024-06-01", "end": "2024-01-01"},
            "inactive": "no"
        });
        let issues = validate_group_member(GroupProfile::AttributionList, &member, 2);
        let change = format!("{}.valueCode", ext_path("Group.member[2]", EXT_CHANGE_TYPE));
        assert_eq!(issue_at(&issues, &change).severity, Severity::Warning);
        let coverage = format!(
            "{}.valueReference",
            ext_path("Group.member[2]", EXT_COVERAGE_REFERENCE)
        );
        assert_eq!(issue_at(&issues, &coverage).code, "value");
        assert_eq!(
            issue_at(
                &issues,
                &ext_path("Group.member[2]", EXT_ATTRIBUTED_PROVIDER)
            )
            .code,
            "structure"
        );
        assert_eq!(
            issue_at(&issues, "Group.member[2].period").code,
            "invariant"
        );
        assert_eq!(
            issue_at(&issues, "Group.member[2].inactive").code,
            "structure"
        );
        assert_eq!(errors(&issues).len(), 4, "{issues:#?}");

        let no_entity =
            validate_group_member(GroupProfile::PatientList, &json!({"inactive": true}), 0);
        assert_eq!(
            issue_at(&no_entity, "Group.member[0].entity").code,
            "required"
        );
        let no_reference = validate_group_member(
            GroupProfile::PatientList,
            &json!({"entity": {"display": "x"}}),
            0,
        );
        assert_eq!(
            issue_at(&no_reference, "Group.member[0].entity.reference").code,
            "required"
        );
    }

    #[test]
    fn coverage_rules() {
        assert_eq!(
            validate_resource(ResourceType::Coverage, &valid_coverage()),
            vec![]
        );
        let c = json!({
            "resourceType": "Coverage",
            "status": "cancelled",
            "beneficiary": {"reference": "Patient/1"},
            "identifier": [{
                "type": {"coding": [{"system": SYSTEM_V2_0203, "code": "MB"}]},
                "value": "M1"
            }],
            "class": [{"type": {"coding": [{"system": CODESYSTEM_COVERAGE_CLASS, "code": "plan"}]}}]
        });
        let issues = validate_resource(ResourceType::Coverage, &c);
        assert_eq!(issue_at(&issues, "Coverage.status").code, "value");
        assert_eq!(issue_at(&issues, "Coverage.subscriberId").code, "required");
        assert_eq!(issue_at(&issues, "Coverage.period").code, "required");
        assert_eq!(issue_at(&issues, "Coverage.payor").code, "required");
        assert_eq!(
            issue_at(&issues, "Coverage.identifier[0].system").code,
            "required"
        );
        assert_eq!(
            issue_at(&issues, "Coverage.class[0].value").code,
            "required"
        );
        assert_eq!(errors(&issues).len(), 6, "{issues:#?}");

        let mut c = valid_coverage();
        c["payor"] = json!([{"reference": "Organization/1"}, {"display": "nobody"}]);
        c["beneficiary"] = json!({"reference": "RelatedPerson/1"});
        let issues = validate_resource(ResourceType::Coverage, &c);
        assert_eq!(issue_at(&issues, "Coverage.payor").code, "structure");
        assert_eq!(issue_at(&issues, "Coverage.payor[1]").code, "required");
        assert_eq!(issue_at(&issues, "Coverage.beneficiary").code, "value");
    }

    #[test]
    fn patient_rules() {
        let p = json!({"resourceType": "Patient", "name": [{"family": "X"}], "gender": "f", "birthDate": "1990-02-30"});
        let issues = validate_resource(ResourceType::Patient, &p);
        assert_eq!(issue_at(&issues, "Patient.identifier").code, "required");
        assert_eq!(issue_at(&issues, "Patient.gender").code, "value");
        assert_eq!(issue_at(&issues, "Patient.birthDate").code, "value");
        assert_eq!(errors(&issues).len(), 3, "{issues:#?}");

        let p = json!({"resourceType": "Patient", "identifier": [{"system": "http://x"}], "birthDate": "1990-07"});
        let issues = validate_resource(ResourceType::Patient, &p);
        assert_eq!(
            issue_at(&issues, "Patient.identifier[0].value").code,
            "required"
        );
        assert_eq!(issue_at(&issues, "Patient.name").code, "required");
        assert_eq!(errors(&issues).len(), 2, "{issues:#?}");
    }

    #[test]
    fn empty_values_are_reported_with_their_path() {
        let p = json!({
            "resourceType": "Patient",
            "id": "p1",
            "identifier": [{"system": "http://x", "value": ""}],
            "name": [{"family": null, "given": []}],
            "address": [{}],
            // Nulls keep a primitive array aligned with its `_given` twin: allowed.
            "contact": [{"name": {"given": ["A", null], "_given": [null, {"extension": [{"url": "http://x", "valueString": "B"}]}]}}]
        });
        let issues = validate_resource(ResourceType::Patient, &p);
        for at in [
            "Patient.identifier[0].value",
            "Patient.name[0].family",
            "Patient.name[0].given",
            "Patient.address[0]",
        ] {
            assert_eq!(issue_at(&issues, at).code, "structure");
        }
        assert_eq!(errors(&issues).len(), 4, "{issues:#?}");
    }

    #[test]
    fn npi_with_wrong_check_digit_is_only_a_warning() {
        let mut o = json!({"resourceType": "Organization", "name": "Org", "identifier": [{"system": SYSTEM_NPI, "value": "1234567890"}]});
        let issues = validate_resource(ResourceType::Organization, &o);
        assert_eq!(issues.len(), 1, "{issues:#?}");
        assert_eq!(
            issue_at(&issues, "Organization.identifier[0].value").severity,
            Severity::Warning
        );

        o["identifier"][0]["value"] = json!("123456789X");
        let issues = validate_resource(ResourceType::Organization, &o);
        assert!(issue_at(&issues, "Organization.identifier[0].value").is_error());
    }

    #[test]
    fn generic_and_other_resource_rules() {
        let issues = validate_resource(ResourceType::Patient, &json!([1]));
        assert_eq!(issue_at(&issues, "Patient").code, "structure");

        let issues = validate_resource(
            ResourceType::Location,
            &json!({"resourceType": "Patient", "id": "a/b"}),
        );
        assert_eq!(issue_at(&issues, "Location.resourceType").code, "value");
        assert_eq!(issue_at(&issues, "Location.id").code, "value");

        let role = json!({
            "resourceType": "PractitionerRole",
            "practitioner": {"reference": "Organization/1"},
            "location": [{"reference": "Location/1"}, {"reference": "Location/2"}]
        });
        let issues = validate_resource(ResourceType::PractitionerRole, &role);
        assert_eq!(
            issue_at(&issues, "PractitionerRole.practitioner").code,
            "value"
        );
        assert_eq!(
            issue_at(&issues, "PractitionerRole.organization").code,
            "required"
        );
        assert_eq!(
            issue_at(&issues, "PractitionerRole.location").code,
            "structure"
        );
        assert_eq!(errors(&issues).len(), 3, "{issues:#?}");

        let issues = validate_resource(
            ResourceType::Practitioner,
            &json!({"resourceType": "Practitioner"}),
        );
        assert_eq!(issue_at(&issues, "Practitioner.name").code, "required");

        let issues = validate_resource(
            ResourceType::Organization,
            &json!({"resourceType": "Organization"}),
        );
        assert_eq!(
            issue_at(&issues, "Organization.name").severity,
            Severity::Warning
        );

        let rp = json!({"resourceType": "RelatedPerson", "patient": {"reference": "#contained"}});
        let issues = validate_resource(ResourceType::RelatedPerson, &rp);
        assert_eq!(issue_at(&issues, "RelatedPerson.patient").code, "value");
    }

    #[test]
    fn dates_are_checked_cheaply() {
        assert!(is_fhir_date("2024") && is_fhir_date("2024-02") && is_fhir_date("2024-02-29"));
        assert!(
            !is_fhir_date("2023-02-29") && !is_fhir_date("2024-13") && !is_fhir_date("24-01-01")
        );
        assert_eq!(date_part("2024-05-01T10:00:00Z"), Some("2024-05-01"));
        assert_eq!(date_part("2024-05T10:00"), None);
        assert_eq!(
            reference_type("http://x.org/fhir/Coverage/1/_history/2"),
            Some("Coverage")
        );
    }
}
