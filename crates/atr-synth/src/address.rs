//! Street addresses and phone numbers in a given city.

use crate::fhir::Address;
use crate::names::{CITIES, City, STREET_NAMES, STREET_SUFFIXES};
use crate::rng::Rng;

/// A street address in `city`, with a ZIP code near the city's.
pub fn street_address(rng: &mut Rng, city: &City, suite: bool) -> Address {
    let number = rng.range(10, 9899);
    let street = rng.pick(STREET_NAMES);
    let suffix = rng.pick(STREET_SUFFIXES);
    let mut line = vec![format!("{number} {street} {suffix}")];
    if suite {
        line.push(format!("Suite {}", rng.range(100, 450)));
    } else if rng.chance(0.12) {
        line.push(format!("Apt {}", rng.range(1, 40)));
    }
    let zip = city.zip + rng.below(20) as u32;
    Address {
        line,
        city: city.name,
        district: city.county,
        state: city.state,
        postal_code: format!("{zip:05}"),
    }
}

/// A phone number in the city's area code, in the fictional 555-01xx..555-99xx style.
pub fn phone_number(rng: &mut Rng, city: &City) -> String {
    format!("{}-555-{:04}", city.area_code, rng.below(10_000))
}

/// A city: `home` (an index into [`CITIES`]) with probability `p_home`, else any city.
pub fn city_near(rng: &mut Rng, home: usize, p_home: f64) -> &'static City {
    if rng.chance(p_home) {
        &CITIES[home]
    } else {
        rng.pick(CITIES)
    }
}
