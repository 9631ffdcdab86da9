//! Payers: the health plans that own the contracts and the attribution lists.

use serde_json::{Value, json};

use crate::address::street_address;
use crate::fhir::{
    Address, SYSTEM_NAIC, SYSTEM_ORG_TYPE, concept, profile, reference_with_display,
    typed_identifier,
};
use crate::ids;
use crate::names::{CITIES, PAYER_PREFIXES, PAYER_SUFFIXES};
use crate::rng::{Rng, stream};

/// A payer organisation.
#[derive(Debug, Clone)]
pub struct Payer {
    /// 1-based number: the id is `payer-<num>`.
    pub num: u32,
    pub name: String,
    /// The short brand (first words), used in plan names.
    pub brand: &'static str,
    /// DNS-like domain used in the payer's identifier systems.
    pub domain: String,
    pub tin: String,
    pub naic: String,
    pub address: Address,
    pub phone: String,
}

impl Payer {
    /// Payer `index` (0-based) of `seed`.
    pub fn new(seed: u64, index: u64) -> Payer {
        let mut rng = Rng::stream(seed, stream::PAYER, index);
        let np = PAYER_PREFIXES.len() as u64;
        let ns = PAYER_SUFFIXES.len() as u64;
        let combos = np * ns;
        let brand = PAYER_PREFIXES[(index % np) as usize];
        let suffix = PAYER_SUFFIXES[((index % combos) / np + index % np) as usize % ns as usize];
        let round = index / combos;
        let mut name = format!("{brand} {suffix}");
        let mut slug: String = name
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .map(|c| c.to_ascii_lowercase())
            .collect();
        if round > 0 {
            name.push_str(&format!(" {}", round + 1));
            slug.push_str(&format!("{}", round + 1));
        }
        let city = rng.pick(CITIES);
        Payer {
            num: index as u32 + 1,
            name,
            brand,
            domain: format!("{slug}.example.org"),
            tin: ids::tin(seed, index),
            naic: ids::naic(seed, index),
            address: street_address(&mut rng, city, true),
            // Member services: a toll-free number.
            phone: format!("1-800-555-{:04}", rng.below(10_000)),
        }
    }

    pub fn id(&self) -> String {
        format!("payer-{}", self.num)
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
                typed_identifier("TAX", atr_model::SYSTEM_TIN, &self.tin),
                { "use": "official", "system": SYSTEM_NAIC, "value": self.naic },
                { "system": self.system("payer-id"), "value": format!("PAYER-{:03}", self.num) },
            ],
            "active": true,
            "type": [concept(SYSTEM_ORG_TYPE, "pay", "Payer")],
            "name": self.name,
            "telecom": [
                { "system": "phone", "value": self.phone, "use": "work" },
                { "system": "url", "value": format!("https://www.{}", self.domain), "use": "work" },
            ],
            "address": [self.address.to_json("work")],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payers_have_distinct_names_and_domains() {
        let payers: Vec<Payer> = (0..200).map(|i| Payer::new(1, i)).collect();
        let names: std::collections::HashSet<_> = payers.iter().map(|p| &p.name).collect();
        let domains: std::collections::HashSet<_> = payers.iter().map(|p| &p.domain).collect();
        assert_eq!(names.len(), 200);
        assert_eq!(domains.len(), 200);
        assert_eq!(payers[0].name, "Sunrise Health Plan");
    }
}
