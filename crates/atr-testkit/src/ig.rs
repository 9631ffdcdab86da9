//! The HL7 Da Vinci ATR IG's own examples, from `fixtures/atr-ig/` in this repository.
//!
//! The files are the IG's (CC0; source and version in `fixtures/atr-ig/README.md`), copied in so a
//! clone needs nothing beside it. The path is resolved from this crate's manifest, so it is right
//! whichever crate's test asks and from whatever directory cargo runs it.

use std::path::{Path, PathBuf};

use serde_json::Value;

/// `fixtures/atr-ig` at the repository's root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/atr-ig")
}

/// The folder of the IG's examples (JSON as published; the two XML Groups converted to JSON are in
/// its `json-from-xml/`).
pub fn examples_dir() -> PathBuf {
    root().join("examples")
}

/// One example by file name, for example `"patient-1.json"` or
/// `"json-from-xml/Group-fullexample.json"`. Panics with the path when it is missing or not JSON:
/// a test cannot run without its fixture.
pub fn example(name: &str) -> Value {
    let path = examples_dir().join(name);
    read_json(&path)
}

/// Every JSON example of the IG (the published JSON and the converted XML Groups), in file-name
/// order, each with the path it was read from.
pub fn examples() -> Vec<(PathBuf, Value)> {
    let dir = examples_dir();
    let mut paths = Vec::new();
    for d in [dir.clone(), dir.join("json-from-xml")] {
        let entries = std::fs::read_dir(&d)
            .unwrap_or_else(|e| panic!("the IG examples folder {}: {e}", d.display()));
        for entry in entries {
            let path = entry
                .unwrap_or_else(|e| panic!("{}: {e}", d.display()))
                .path();
            if path.extension().is_some_and(|e| e == "json") {
                paths.push(path);
            }
        }
    }
    paths.sort();
    assert!(
        !paths.is_empty(),
        "no IG examples in {}: the fixtures are part of the repository",
        dir.display()
    );
    paths
        .into_iter()
        .map(|p| {
            let v = read_json(&p);
            (p, v)
        })
        .collect()
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("the IG example {}: {e}", path.display()));
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("the IG example {} is not JSON: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_example_is_read_with_its_resource_type() {
        let all = examples();
        assert_eq!(all.len(), 16, "14 JSON examples and 2 converted XML Groups");
        assert!(all.iter().all(|(_, v)| v["resourceType"].is_string()));
        assert_eq!(example("patient-1.json")["resourceType"], "Patient");
    }
}
