//! The thin FHIR R4 layer of `atr`: what a resource of the ATR IG looks like and what may be said
//! about it, without any I/O.
//!
//! Resources stay `serde_json::Value`s (unknown elements survive untouched); this crate adds what the
//! server and the stores need on top: the supported resource types, references, instants, identifier
//! checks (NPI Luhn), the search index entries extracted from a resource, the split of a Group into a
//! header and member rows (and back, as bytes), and validation against the ATR profiles.
//!
//! It must not know about HTTP, SQL or files.

pub mod contract;
pub mod group;
pub mod ident;
pub mod index;
pub mod instant;
pub mod json_depth;
pub mod loopback;
pub mod meta;
pub mod outcome;
pub mod reference;
pub mod resource_type;
pub mod validate;

pub use outcome::{Issue, Severity, operation_outcome};
pub use resource_type::ResourceType;

/// Canonical base of the ATR IG.
pub const ATR_BASE: &str = "http://hl7.org/fhir/us/davinci-atr";
pub const EXT_ATTRIBUTION_LIST_STATUS: &str =
    "http://hl7.org/fhir/us/davinci-atr/StructureDefinition/ext-attributionListStatus";
pub const EXT_CONTRACT_VALIDITY_PERIOD: &str =
    "http://hl7.org/fhir/us/davinci-atr/StructureDefinition/ext-contractValidityPeriod";
pub const EXT_CHANGE_TYPE: &str =
    "http://hl7.org/fhir/us/davinci-atr/StructureDefinition/ext-changeType";
pub const EXT_COVERAGE_REFERENCE: &str =
    "http://hl7.org/fhir/us/davinci-atr/StructureDefinition/ext-coverageReference";
pub const EXT_ATTRIBUTED_PROVIDER: &str =
    "http://hl7.org/fhir/us/davinci-atr/StructureDefinition/ext-attributedProvider";
pub const EXT_INTENDED_RECIPIENT: &str = "http://hl7.org/fhir/us/davinci-atr/StructureDefinition/atr-intended-recipient-identifier-extension";
pub const EXT_ANY_RESOURCE: &str =
    "http://hl7.org/fhir/us/davinci-atr/StructureDefinition/atr-any-resource-extension";
pub const EXT_INSURANCE_PRODUCT_TYPE: &str =
    "http://hl7.org/fhir/us/davinci-atr/StructureDefinition/ext-insuranceProductType";

pub const PROFILE_ATR_GROUP: &str =
    "http://hl7.org/fhir/us/davinci-atr/StructureDefinition/atr-group";
pub const PROFILE_PATIENT_LIST: &str =
    "http://hl7.org/fhir/us/davinci-atr/StructureDefinition/davinci-patient-list";

pub const SYSTEM_NPI: &str = "http://hl7.org/fhir/sid/us-npi";
pub const SYSTEM_TIN: &str = "urn:oid:2.16.840.1.113883.4.4";
pub const SYSTEM_V2_0203: &str = "http://terminology.hl7.org/CodeSystem/v2-0203";

/// Codes of `CodeSystem/atr-attribution-list-status`.
pub const LIST_STATUS_CODES: [&str; 3] = ["draft", "open", "final"];
/// Codes of `CodeSystem/atr-changetype`.
pub const CHANGE_TYPE_CODES: [&str; 5] = ["new", "dropped", "changed", "nochange", "cancelled"];
