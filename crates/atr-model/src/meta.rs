//! What the server writes into a resource's `meta` and what `_summary` leaves out.

use serde_json::{Map, Value, json};

use crate::instant::fhir_instant;

/// Sets `id`, `meta.versionId` and `meta.lastUpdated`, keeping the rest of `meta` (profiles, tags).
pub fn stamp(resource: &mut Value, id: &str, version: i64, last_updated: i64) {
    let Some(obj) = resource.as_object_mut() else {
        return;
    };
    // `id` right after `resourceType`, as FHIR servers write it.
    let mut ordered = Map::new();
    if let Some(rt) = obj.remove("resourceType") {
        ordered.insert("resourceType".into(), rt);
    }
    obj.remove("id");
    ordered.insert("id".into(), Value::from(id));
    ordered.append(obj);
    *obj = ordered;
    let meta = obj
        .entry("meta")
        .or_insert_with(|| Value::Object(Map::new()));
    if !meta.is_object() {
        *meta = Value::Object(Map::new());
    }
    meta["versionId"] = Value::from(version.to_string());
    meta["lastUpdated"] = Value::from(fhir_instant(last_updated));
}

/// `_summary=true`: drops the narrative (and, for Groups, members are never in the header), and marks
/// the resource SUBSETTED as FHIR requires.
pub fn summarize(resource: &mut Value) {
    let Some(obj) = resource.as_object_mut() else {
        return;
    };
    obj.remove("text");
    obj.remove("member");
    mark_subsetted(obj);
}

/// `_summary=data`: drops the narrative only.
pub fn drop_text(resource: &mut Value) {
    if let Some(obj) = resource.as_object_mut()
        && obj.remove("text").is_some()
    {
        mark_subsetted(obj);
    }
}

fn mark_subsetted(obj: &mut Map<String, Value>) {
    let meta = obj
        .entry("meta")
        .or_insert_with(|| Value::Object(Map::new()));
    let tag = json!({"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED"});
    match meta.get_mut("tag").and_then(Value::as_array_mut) {
        Some(tags) => tags.push(tag),
        None => meta["tag"] = json!([tag]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_keeps_profiles() {
        let mut v = json!({"resourceType":"Patient","meta":{"profile":["p"]}});
        stamp(&mut v, "a", 3, 0);
        assert_eq!(v["id"], "a");
        assert_eq!(v["meta"]["versionId"], "3");
        assert_eq!(v["meta"]["profile"][0], "p");
        assert_eq!(v["meta"]["lastUpdated"], "1970-01-01T00:00:00.000000Z");
    }

    #[test]
    fn summary_marks_subsetted() {
        let mut v = json!({"resourceType":"Group","text":{"div":"x"},"member":[]});
        summarize(&mut v);
        assert!(v.get("text").is_none() && v.get("member").is_none());
        assert_eq!(v["meta"]["tag"][0]["code"], "SUBSETTED");
    }
}
