//! Small builders for the FHIR datatypes the generator writes (Coding, Identifier, Reference,
//! Address, ContactPoint, HumanName), and the code systems and profiles they use.

use serde_json::{Value, json};

use crate::json::Json;

pub const SYSTEM_ORG_TYPE: &str = "http://terminology.hl7.org/CodeSystem/organization-type";
pub const SYSTEM_NAIC: &str = "http://www.naic.org/fhir/sid/naic";
pub const SYSTEM_MBI: &str = "http://hl7.org/fhir/sid/us-mbi";
pub const SYSTEM_PRODUCT_TYPE: &str =
    "http://hl7.org/fhir/us/davinci-pdex-plan-net/CodeSystem/InsuranceProductTypeCS";
pub const SYSTEM_SUBSCRIBER_RELATIONSHIP: &str =
    "http://terminology.hl7.org/CodeSystem/subscriber-relationship";
pub const SYSTEM_COVERAGE_CLASS: &str = "http://terminology.hl7.org/CodeSystem/coverage-class";
pub const SYSTEM_ROLE_CODE: &str = "http://terminology.hl7.org/CodeSystem/v3-RoleCode";
pub const SYSTEM_NUCC: &str = "http://nucc.org/provider-taxonomy";
pub const SYSTEM_SNOMED: &str = "http://snomed.info/sct";
pub const SYSTEM_V2_0360: &str = "http://terminology.hl7.org/CodeSystem/v2-0360";

/// Canonical of an ATR profile, e.g. `atr-patient`.
pub fn profile(name: &str) -> String {
    format!("{}/StructureDefinition/{name}", atr_model::ATR_BASE)
}

pub fn coding(system: &str, code: &str, display: &str) -> Value {
    json!({ "system": system, "code": code, "display": display })
}

pub fn concept(system: &str, code: &str, display: &str) -> Value {
    json!({ "coding": [coding(system, code, display)] })
}

/// The display of a v2-0203 identifier type code.
pub fn v2_0203_display(code: &str) -> &'static str {
    match code {
        "MB" => "Member Number",
        "MR" => "Medical record number",
        "MC" => "Patient's Medicare number",
        "MA" => "Patient Medicaid number",
        "NPI" => "National provider identifier",
        "TAX" => "Tax ID number",
        "SN" => "Subscriber Number",
        "PRN" => "Provider number",
        _ => "Identifier",
    }
}

/// An identifier typed with a v2-0203 code.
pub fn typed_identifier(code: &str, system: &str, value: &str) -> Value {
    json!({
        "use": "official",
        "type": concept(atr_model::SYSTEM_V2_0203, code, v2_0203_display(code)),
        "system": system,
        "value": value,
    })
}

pub fn identifier(system: &str, value: &str) -> Value {
    json!({ "system": system, "value": value })
}

pub fn reference(target: &str) -> Value {
    json!({ "reference": target })
}

pub fn reference_with_display(target: &str, display: &str) -> Value {
    json!({ "reference": target, "display": display })
}

pub fn phone(value: &str, use_: &str) -> Value {
    json!({ "system": "phone", "value": value, "use": use_ })
}

/// A US postal address.
#[derive(Debug, Clone)]
pub struct Address {
    pub line: Vec<String>,
    pub city: &'static str,
    pub district: &'static str,
    pub state: &'static str,
    pub postal_code: String,
}

impl Address {
    pub fn to_json(&self, use_: &str) -> Value {
        json!({
            "use": use_,
            "line": self.line,
            "city": self.city,
            "district": self.district,
            "state": self.state,
            "postalCode": self.postal_code,
            "country": "US",
        })
    }
}

/// An official HumanName.
pub fn human_name(
    family: &str,
    given: &[&str],
    prefix: Option<&str>,
    suffix: Option<&str>,
) -> Value {
    let mut name = json!({ "use": "official", "family": family, "given": given });
    if let Some(p) = prefix {
        name["prefix"] = json!([p]);
    }
    if let Some(s) = suffix {
        name["suffix"] = json!([s]);
    }
    name
}

// Writers of the same datatypes as JSON text, for the per-member resources.

/// `{"system":..,"code":..,"display":..}`.
pub fn write_coding(j: &mut Json, system: &str, code: &str, display: &str) {
    j.begin_object()
        .field("system", system)
        .field("code", code)
        .field("display", display)
        .end_object();
}

/// `"key":{"coding":[{...}]}`.
pub fn write_concept_field(j: &mut Json, key: &str, system: &str, code: &str, display: &str) {
    j.object_field(key).array_field("coding");
    write_coding(j, system, code, display);
    j.end_array().end_object();
}

/// An identifier typed with a v2-0203 code (an array element).
pub fn write_typed_identifier(j: &mut Json, code: &str, system: &str, value: &str) {
    j.begin_object().field("use", "official");
    write_concept_field(
        j,
        "type",
        atr_model::SYSTEM_V2_0203,
        code,
        v2_0203_display(code),
    );
    j.field("system", system).field("value", value).end_object();
}

/// `"key":{"reference":target}`.
pub fn write_reference_field(j: &mut Json, key: &str, target: &str) {
    j.object_field(key).field("reference", target).end_object();
}

/// `"meta":{"profile":[canonical]}`.
pub fn write_meta_profile(j: &mut Json, canonical: &str) {
    j.object_field("meta")
        .single_string_array("profile", canonical)
        .end_object();
}

/// `"name":[{"use":"official","family":..,"given":[..]}]`.
pub fn write_name_field(j: &mut Json, family: &str, given: &[&str]) {
    j.array_field("name")
        .begin_object()
        .field("use", "official")
        .field("family", family);
    j.array_field("given");
    for g in given {
        j.string(g);
    }
    j.end_array().end_object().end_array();
}

/// `"telecom":[{"system":"phone","value":..,"use":..}]`.
pub fn write_phone(j: &mut Json, value: &str, use_: &str) {
    j.begin_object()
        .field("system", "phone")
        .field("value", value)
        .field("use", use_)
        .end_object();
}

impl Address {
    /// The address as an object value.
    pub fn write(&self, j: &mut Json, use_: &str) {
        j.begin_object().field("use", use_).array_field("line");
        for l in &self.line {
            j.string(l);
        }
        j.end_array()
            .field("city", self.city)
            .field("district", self.district)
            .field("state", self.state)
            .field("postalCode", &self.postal_code)
            .field("country", "US")
            .end_object();
    }
}
