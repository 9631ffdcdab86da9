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

/// The body [`stamp`] and serialisation would give, written from the resource's top-level members
/// as they were read (names, distinct and in order, with their values' JSON text) instead of from
/// a parsed tree: the bulk loader spends no time rebuilding and re-serialising the tree.
/// `resourceType` and `id` come first, `meta` keeps its place (or comes last) with `versionId` and
/// `lastUpdated` (an instant as [`fhir_instant`] writes it) set, every other value stays as written.
pub fn stamp_text(
    members: &[(&str, &str)],
    id: &str,
    version: i64,
    last_updated: &str,
) -> Result<Vec<u8>, serde_json::Error> {
    let stamped_meta = |text: Option<&str>| -> Result<Value, serde_json::Error> {
        let mut meta = match text {
            Some(t) => serde_json::from_str(t)?,
            None => Value::Object(Map::new()),
        };
        if !meta.is_object() {
            meta = Value::Object(Map::new());
        }
        meta["versionId"] = Value::from(version.to_string());
        meta["lastUpdated"] = Value::from(last_updated);
        Ok(meta)
    };
    let size = members
        .iter()
        .map(|(n, v)| n.len() + v.len() + 4)
        .sum::<usize>()
        + 96;
    let mut out = Vec::with_capacity(size);
    out.push(b'{');
    let mut first = true;
    let mut member = |out: &mut Vec<u8>, name: &str| -> Result<(), serde_json::Error> {
        if !first {
            out.push(b',');
        }
        first = false;
        serde_json::to_writer(&mut *out, name)?;
        out.push(b':');
        Ok(())
    };
    if let Some((_, rt)) = members.iter().find(|(n, _)| *n == "resourceType") {
        member(&mut out, "resourceType")?;
        out.extend_from_slice(rt.as_bytes());
    }
    member(&mut out, "id")?;
    serde_json::to_writer(&mut out, id)?;
    let mut meta_written = false;
    for (name, value) in members {
        match *name {
            "resourceType" | "id" => {}
            "meta" => {
                member(&mut out, "meta")?;
                serde_json::to_writer(&mut out, &stamped_meta(Some(value))?)?;
                meta_written = true;
            }
            _ => {
                member(&mut out, name)?;
                out.extend_from_slice(value.as_bytes());
            }
        }
    }
    if !meta_written {
        member(&mut out, "meta")?;
        serde_json::to_writer(&mut out, &stamped_meta(None)?)?;
    }
    out.push(b'}');
    Ok(out)
}

/// `_summary=true`: drops the narrative (and, for Groups, members are never in the header), and marks
/// the resource SUBSETTED as FHIR requires.
pub fn summarize(resource: &mut Value) {
    let Some(obj) = resource.as_object_mut() else {
        return;
    };
    obj.remove("text");
    obj.remove("member");
    tag_subsetted(obj);
}

/// `_summary=data`: drops the narrative only.
pub fn drop_text(resource: &mut Value) {
    if let Some(obj) = resource.as_object_mut()
        && obj.remove("text").is_some()
    {
        tag_subsetted(obj);
    }
}

/// The `SUBSETTED` tag FHIR requires on a resource that is not complete: exactly `{system, code}`
/// from the v3 ObservationValue code system, as FHIR's own examples write it. Every place that
/// leaves elements out (`_summary`, `_elements`, a Group reduced to some members) tags through here.
pub fn mark_subsetted(resource: &mut Value) {
    if let Some(obj) = resource.as_object_mut() {
        tag_subsetted(obj);
    }
}

/// The system of the `SUBSETTED` tag.
pub const SUBSETTED_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue";

fn tag_subsetted(obj: &mut Map<String, Value>) {
    let meta = obj
        .entry("meta")
        .or_insert_with(|| Value::Object(Map::new()));
    if !meta.is_object() {
        *meta = Value::Object(Map::new());
    }
    let tag = json!({"system": SUBSETTED_SYSTEM, "code": "SUBSETTED"});
    match meta.get_mut("tag").and_then(Value::as_array_mut) {
        // Subsetting twice (say `_elements` of a Group already reduced to some members) is still
        // one tag.
        Some(tags) => {
            if !tags.contains(&tag) {
                tags.push(tag);
            }
        }
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

    /// The loader's text stamping and the tree stamping give the same resource (`stamp` may move
    /// members: its map removes by swapping), `resourceType` and `id` first.
    #[test]
    fn stamp_text_matches_stamp() {
        let cases = [
            r#"{"resourceType":"Patient","id":"a","meta":{"profile":["p"],"versionId":"9"},"active":true}"#,
            r#"{"active":true,"id":"old","resourceType":"Patient","name":[{"family":"\u00e9\"q"}]}"#,
            r#"{"resourceType":"Patient","meta":[1],"gender":"female"}"#,
            r#"{"resourceType":"Patient","id":"a","a\"b":1}"#,
        ];
        for text in cases {
            let mut tree: Value = serde_json::from_str(text).unwrap();
            stamp(&mut tree, "new-id", 2, 5_000_000);
            let members: Vec<(String, Box<serde_json::value::RawValue>)> =
                serde_json::from_str::<Map<String, Value>>(text)
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.clone(), serde_json::value::to_raw_value(v).unwrap()))
                    .collect();
            let borrowed: Vec<(&str, &str)> =
                members.iter().map(|(k, v)| (k.as_str(), v.get())).collect();
            let text_body = stamp_text(&borrowed, "new-id", 2, &fhir_instant(5_000_000)).unwrap();
            let text_body = String::from_utf8(text_body).unwrap();
            assert_eq!(
                serde_json::from_str::<Value>(&text_body).unwrap(),
                tree,
                "{text}"
            );
            assert!(
                text_body.starts_with(r#"{"resourceType":"Patient","id":"new-id","#),
                "{text_body}"
            );
        }
    }

    #[test]
    fn summary_marks_subsetted() {
        let mut v = json!({"resourceType":"Group","text":{"div":"x"},"member":[]});
        summarize(&mut v);
        assert!(v.get("text").is_none() && v.get("member").is_none());
        assert_eq!(
            v["meta"]["tag"],
            json!([{"system": SUBSETTED_SYSTEM, "code": "SUBSETTED"}])
        );
        // Tagged once, however often it is subsetted.
        mark_subsetted(&mut v);
        assert_eq!(v["meta"]["tag"].as_array().map(Vec::len), Some(1));
    }
}
