//! The resource types this server stores and serves.

use std::fmt;
use std::str::FromStr;

/// A resource type of the ATR IG that the Producer stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResourceType {
    Group,
    Patient,
    Coverage,
    Practitioner,
    PractitionerRole,
    Organization,
    Location,
    RelatedPerson,
}

impl ResourceType {
    pub const ALL: [ResourceType; 8] = [
        ResourceType::Group,
        ResourceType::Patient,
        ResourceType::Coverage,
        ResourceType::Practitioner,
        ResourceType::PractitionerRole,
        ResourceType::Organization,
        ResourceType::Location,
        ResourceType::RelatedPerson,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ResourceType::Group => "Group",
            ResourceType::Patient => "Patient",
            ResourceType::Coverage => "Coverage",
            ResourceType::Practitioner => "Practitioner",
            ResourceType::PractitionerRole => "PractitionerRole",
            ResourceType::Organization => "Organization",
            ResourceType::Location => "Location",
            ResourceType::RelatedPerson => "RelatedPerson",
        }
    }

    /// The ATR profile a resource of this type is expected to conform to.
    pub fn atr_profile(self) -> &'static str {
        match self {
            ResourceType::Group => crate::PROFILE_ATR_GROUP,
            ResourceType::Patient => {
                "http://hl7.org/fhir/us/davinci-atr/StructureDefinition/atr-patient"
            }
            ResourceType::Coverage => {
                "http://hl7.org/fhir/us/davinci-atr/StructureDefinition/atr-coverage"
            }
            ResourceType::Practitioner => {
                "http://hl7.org/fhir/us/davinci-atr/StructureDefinition/atr-practitioner"
            }
            ResourceType::PractitionerRole => {
                "http://hl7.org/fhir/us/davinci-atr/StructureDefinition/atr-practitionerrole"
            }
            ResourceType::Organization => {
                "http://hl7.org/fhir/us/davinci-atr/StructureDefinition/atr-organization"
            }
            ResourceType::Location => {
                "http://hl7.org/fhir/us/davinci-atr/StructureDefinition/atr-location"
            }
            ResourceType::RelatedPerson => {
                "http://hl7.org/fhir/us/davinci-atr/StructureDefinition/atr-relatedperson"
            }
        }
    }
}

impl fmt::Display for ResourceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "resource type {0:?} is not served here (supported: Group, Patient, Coverage, Practitioner, PractitionerRole, Organization, Location, RelatedPerson)"
)]
pub struct UnsupportedType(pub String);

impl FromStr for ResourceType {
    type Err = UnsupportedType;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ResourceType::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| UnsupportedType(s.to_string()))
    }
}

impl serde::Serialize for ResourceType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for ResourceType {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}
