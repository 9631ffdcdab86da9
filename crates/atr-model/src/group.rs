//! A Group as the stores keep it: a small header (the Group without `member`) and one
//! [`MemberEntry`] row per member, and the bytes that put them back together.
//!
//! A 1M-member Group is a ~500 MB JSON text; parsing it into one `serde_json::Value` costs gigabytes.
//! So a Group text is split at the top level without parsing its members as a whole
//! ([`split_group`]), each member is reduced to an entry on its own, and reads write the header and
//! the entries back out as bytes ([`write_member`]).

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::reference::normalize_reference;
use crate::{
    EXT_ATTRIBUTED_PROVIDER, EXT_ATTRIBUTION_LIST_STATUS, EXT_CHANGE_TYPE, EXT_COVERAGE_REFERENCE,
};

/// A Group text split at the top level: the header as a value, the members still raw.
pub struct SplitGroup<'a> {
    pub header: Value,
    pub members: Vec<&'a RawValue>,
}

/// A JSON object's entries in order, values left unparsed.
struct RawObject<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de> serde::Deserialize<'de> for RawObject<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawObject<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::new();
                while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                    let value: &'de RawValue = map.next_value()?;
                    entries.push((key, value));
                }
                Ok(RawObject(entries))
            }
        }
        d.deserialize_map(V)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GroupTextError {
    #[error("the Group is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("Group.member must be an array")]
    MemberNotArray,
    #[error("the JSON object has the key {0:?} twice")]
    DuplicateKey(String),
}

/// Splits a Group's JSON text into its header and its raw members.
pub fn split_group(text: &str) -> Result<SplitGroup<'_>, GroupTextError> {
    let RawObject(entries) = serde_json::from_str(text)?;
    let mut header = Map::new();
    let mut members = Vec::new();
    for (key, raw) in entries {
        if key == "member" {
            members = serde_json::from_str::<Vec<&RawValue>>(raw.get())
                .map_err(|_| GroupTextError::MemberNotArray)?;
        } else {
            let value: Value = serde_json::from_str(raw.get())?;
            if header.insert(key.to_string(), value).is_some() {
                return Err(GroupTextError::DuplicateKey(key.into_owned()));
            }
        }
    }
    Ok(SplitGroup {
        header: Value::Object(header),
        members,
    })
}

/// True when a Group header is a Member Attribution List (it carries a list status), whose members'
/// `changeType` the server derives between versions when the Producer did not set it.
pub fn is_attribution_list(header: &Value) -> bool {
    list_status(header).is_some()
}

/// The `ext-attributionListStatus` code of a Group header.
pub fn list_status(header: &Value) -> Option<&str> {
    header
        .get("extension")?
        .as_array()?
        .iter()
        .find(|e| e.get("url").and_then(Value::as_str) == Some(EXT_ATTRIBUTION_LIST_STATUS))?
        .get("valueCode")?
        .as_str()
}

/// One `Group.member` as a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberEntry {
    /// Identifies "the same attribution" across versions: patient, attributed provider, coverage
    /// (a member attributed to two providers is two entries), plus `#n` for repeats in one roster.
    pub key: String,
    /// `Patient/id` (or the reference as written, when it is not literal).
    pub patient: String,
    pub coverage: Option<String>,
    pub provider: Option<String>,
    pub period_start: Option<String>,
    pub period_end: Option<String>,
    pub inactive: bool,
    /// `changeType` as the Producer set it; `None` lets the server derive it.
    pub change_type: Option<String>,
    /// The member's other extensions: the inner text of a JSON array, possibly empty.
    pub extensions: String,
    /// The member's other elements: the inner text of a JSON object.
    pub body: String,
    /// FNV-1a of the element without `changeType`, written canonically: equal hashes mean the
    /// attribution did not change, whatever order its keys came in.
    pub content_hash: i64,
}

/// The object's members but `skip`, serialised without the braces, in the order the tree's map
/// leaves them when it removes `skip` (it moves the last member into the gap): the text a member
/// row stores and serves. Building it this way spares copying the element.
fn members_without(obj: &Map<String, Value>, skip: &str) -> String {
    let n = obj.len();
    let gap = obj.keys().position(|k| k == skip);
    let entries: Vec<(&String, &Value)> = obj.iter().collect();
    let order = (0..n).filter_map(|i| match gap {
        Some(g) if i == g && g + 1 < n => Some(n - 1),
        Some(g) if i == g || (i == n - 1 && g + 1 < n) => None,
        _ => Some(i),
    });
    let mut out = Vec::with_capacity(256);
    for (written, i) in order.enumerate() {
        if written > 0 {
            out.push(b',');
        }
        let (k, v) = entries[i];
        // Writing strings and values into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut out, k);
        out.push(b':');
        let _ = serde_json::to_writer(&mut out, v);
    }
    String::from_utf8(out).unwrap_or_default()
}

fn ext_reference(ext: &Value) -> Option<String> {
    let r = ext.get("valueReference")?.get("reference")?.as_str()?;
    Some(normalize_reference(r).unwrap_or_else(|| r.to_string()))
}

impl MemberEntry {
    /// Reduces a member element to a row. Assumes the element passed validation (an object with
    /// an `entity`); anything unexpected is kept in `body` rather than lost.
    pub fn from_value(member: &Value) -> MemberEntry {
        let empty = Map::new();
        let obj = member.as_object().unwrap_or(&empty);
        let mut change_type = None;
        let mut coverage = None;
        let mut provider = None;
        let mut kept = Vec::new();
        for ext in obj
            .get("extension")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[])
        {
            match ext.get("url").and_then(Value::as_str) {
                Some(EXT_CHANGE_TYPE) => {
                    change_type = ext
                        .get("valueCode")
                        .and_then(Value::as_str)
                        .map(str::to_string);
                    continue;
                }
                Some(EXT_COVERAGE_REFERENCE) => coverage = ext_reference(ext),
                Some(EXT_ATTRIBUTED_PROVIDER) => provider = ext_reference(ext),
                _ => {}
            }
            kept.push(ext.to_string());
        }
        let body = members_without(obj, "extension");
        let extensions = kept.join(",");
        let patient = obj
            .get("entity")
            .and_then(|e| e.get("reference"))
            .and_then(Value::as_str)
            .map(|r| normalize_reference(r).unwrap_or_else(|| r.to_string()))
            .unwrap_or_default();
        let period = obj.get("period");
        let period_at = |k: &str| {
            period
                .and_then(|p| p.get(k))
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        let key = format!(
            "{}|{}|{}",
            patient,
            provider.as_deref().unwrap_or(""),
            coverage.as_deref().unwrap_or("")
        );
        let content_hash = content_hash(obj);
        MemberEntry {
            key,
            patient,
            coverage,
            provider,
            period_start: period_at("start"),
            period_end: period_at("end"),
            inactive: obj
                .get("inactive")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            change_type,
            extensions,
            body,
            content_hash,
        }
    }
}

/// Makes entry keys unique within one roster: the second entry with the same key becomes `key#2`.
pub fn assign_unique_keys(entries: &mut [MemberEntry]) {
    let mut seen: std::collections::HashMap<String, u32> = std::collections::HashMap::new();
    for e in entries.iter_mut() {
        let n = seen.entry(e.key.clone()).or_insert(0);
        *n += 1;
        if *n > 1 {
            e.key = format!("{}#{}", e.key, n);
        }
    }
}

/// What "the attribution did not change" compares: the member element without its `changeType`,
/// written canonically (object keys sorted at every depth, no whitespace). A client that reads a
/// list and puts it back with one entry edited sends the other entries with their keys in another
/// order (the server writes `extension` first); their content is the same, and so is this hash.
fn content_hash(member: &Map<String, Value>) -> i64 {
    let mut out = Vec::with_capacity(256);
    out.push(b'{');
    let mut keys: Vec<&String> = member.keys().collect();
    keys.sort();
    let mut first = true;
    for k in keys {
        let v = &member[k.as_str()];
        let kept;
        let v = if k == "extension" {
            let Some(exts) = v.as_array() else {
                continue;
            };
            kept = Value::Array(
                exts.iter()
                    .filter(|e| e.get("url").and_then(Value::as_str) != Some(EXT_CHANGE_TYPE))
                    .cloned()
                    .collect(),
            );
            if kept.as_array().is_some_and(Vec::is_empty) {
                continue;
            }
            &kept
        } else {
            v
        };
        if !first {
            out.push(b',');
        }
        first = false;
        write_canonical(&mut out, &Value::String(k.clone()));
        out.push(b':');
        write_canonical(&mut out, v);
    }
    out.push(b'}');
    fnv1a(&[&out])
}

/// `v` as JSON with every object's keys sorted.
fn write_canonical(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Object(map) => {
            out.push(b'{');
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(out, &Value::String(k.clone()));
                out.push(b':');
                write_canonical(out, &map[k.as_str()]);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(out, item);
            }
            out.push(b']');
        }
        // Writing a scalar into a Vec cannot fail.
        scalar => {
            let _ = serde_json::to_writer(&mut *out, scalar);
        }
    }
}

/// 64-bit FNV-1a, stable across builds and platforms (stored in the database).
pub fn fnv1a(parts: &[&[u8]]) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in *part {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h as i64
}

/// Writes one member element: the `changeType` extension first (when there is one to show), then
/// the member's other extensions and elements as stored.
pub fn write_member(out: &mut Vec<u8>, change_type: Option<&str>, extensions: &str, body: &str) {
    out.push(b'{');
    if change_type.is_some() || !extensions.is_empty() {
        out.extend_from_slice(b"\"extension\":[");
        if let Some(code) = change_type {
            out.extend_from_slice(b"{\"url\":\"");
            out.extend_from_slice(EXT_CHANGE_TYPE.as_bytes());
            out.extend_from_slice(b"\",\"valueCode\":");
            // The code came from JSON or from our own constants; re-quote it safely.
            out.extend_from_slice(Value::from(code).to_string().as_bytes());
            out.push(b'}');
            if !extensions.is_empty() {
                out.push(b',');
            }
        }
        out.extend_from_slice(extensions.as_bytes());
        out.push(b']');
        if !body.is_empty() {
            out.push(b',');
        }
    }
    out.extend_from_slice(body.as_bytes());
    out.push(b'}');
}

/// The `changeType` a member row shows in Group version `version`, derived against the last
/// published list: `baseline` is the newest `final` version before `version` (`None` when the list
/// was never final). Rows whose content changed at this version carry the code computed when they
/// were written (or set by the Producer); rows written since the baseline keep showing that code
/// through the whole reconciliation round (so `new` and `dropped` stay visible in later drafts
/// and in the final list that ends the round); rows unchanged since the baseline are `nochange`,
/// except entries no longer attributed, which stay `dropped`.
pub fn shown_change_type(
    derive: bool,
    row_from_version: i64,
    version: i64,
    baseline: Option<i64>,
    stored: Option<&str>,
    inactive: bool,
) -> Option<&str> {
    if row_from_version == version {
        return stored;
    }
    if !derive {
        return None;
    }
    let carried = if inactive { "dropped" } else { "nochange" };
    match baseline {
        Some(published) if row_from_version <= published => Some(carried),
        _ => stored.or(Some(carried)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The row text is what serialising the element with `extension` removed from the tree gave,
    /// wherever `extension` stands: stored content hashes were made from that text.
    #[test]
    fn content_hash_ignores_key_order_whitespace_and_change_type() {
        let a = MemberEntry::from_value(&json!({
            "entity": {"reference": "Patient/p"},
            "period": {"start": "2026-01-01", "end": "2026-12-31"},
            "extension": [{"url": EXT_COVERAGE_REFERENCE, "valueReference": {"reference": "Coverage/c"}}]
        }));
        let b: Value = serde_json::from_str(&format!(
            r#"{{ "extension": [{{"url": "{EXT_CHANGE_TYPE}", "valueCode": "new"}},
                 {{"valueReference": {{"reference": "Coverage/c"}}, "url": "{EXT_COVERAGE_REFERENCE}"}}],
               "period": {{"end": "2026-12-31", "start": "2026-01-01"}},
               "entity": {{"reference": "Patient/p"}} }}"#
        ))
        .unwrap();
        assert_eq!(a.content_hash, MemberEntry::from_value(&b).content_hash);
        let mut later = b.clone();
        later["period"]["end"] = json!("2026-06-30");
        assert_ne!(a.content_hash, MemberEntry::from_value(&later).content_hash);
    }

    #[test]
    fn member_text_is_the_tree_without_its_extensions() {
        let cases = [
            r#"{"extension":[{"url":"u"}],"entity":{"reference":"Patient/p"},"period":{"start":"2026"},"inactive":false}"#,
            r#"{"entity":{"reference":"Patient/p"},"extension":[{"url":"u"}],"inactive":true}"#,
            r#"{"entity":{"reference":"Patient/p"},"inactive":true,"extension":[]}"#,
            r#"{"entity":{"reference":"Patient/p"},"period":{"end":"2027"}}"#,
            r#"{"extension":[{"url":"u"}]}"#,
        ];
        for text in cases {
            let mut tree: serde_json::Value = serde_json::from_str(text).unwrap();
            let obj = tree.as_object().unwrap().clone();
            tree.as_object_mut().unwrap().remove("extension");
            let whole = tree.to_string();
            assert_eq!(
                members_without(&obj, "extension"),
                whole[1..whole.len() - 1],
                "{text}"
            );
        }
    }

    const MEMBER: &str = r#"{"extension":[{"url":"http://hl7.org/fhir/us/davinci-atr/StructureDefinition/ext-changeType","valueCode":"add"},{"url":"http://hl7.org/fhir/us/davinci-atr/StructureDefinition/ext-coverageReference","valueReference":{"reference":"Coverage/1"}},{"url":"http://hl7.org/fhir/us/davinci-atr/StructureDefinition/ext-attributedProvider","valueReference":{"reference":"Organization/2"}}],"entity":{"reference":"Patient/1"},"period":{"start":"2014-10-08","end":"2020-10-08"},"inactive":false}"#;

    #[test]
    fn member_survives_row_round_trip() {
        let v: Value = serde_json::from_str(MEMBER).unwrap();
        let e = MemberEntry::from_value(&v);
        assert_eq!(e.patient, "Patient/1");
        assert_eq!(e.coverage.as_deref(), Some("Coverage/1"));
        assert_eq!(e.provider.as_deref(), Some("Organization/2"));
        assert_eq!(e.change_type.as_deref(), Some("add"));
        assert_eq!(e.key, "Patient/1|Organization/2|Coverage/1");
        let mut out = Vec::new();
        write_member(&mut out, e.change_type.as_deref(), &e.extensions, &e.body);
        let back: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(back, v);
    }

    #[test]
    fn member_without_extensions_writes_plain() {
        let v = json!({"entity":{"reference":"Patient/2"}});
        let e = MemberEntry::from_value(&v);
        let mut out = Vec::new();
        write_member(&mut out, None, &e.extensions, &e.body);
        assert_eq!(serde_json::from_slice::<Value>(&out).unwrap(), v);
        out.clear();
        write_member(&mut out, Some("new"), &e.extensions, &e.body);
        let back: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(back["extension"][0]["valueCode"], "new");
    }

    #[test]
    fn split_keeps_header_and_members() {
        let text = format!(
            r#"{{"resourceType":"Group","id":"g","member":[{MEMBER},{MEMBER}],"type":"person"}}"#
        );
        let split = split_group(&text).unwrap();
        assert_eq!(split.members.len(), 2);
        assert_eq!(split.header["type"], "person");
        assert!(split.header.get("member").is_none());
        assert!(split_group(r#"{"member":{}}"#).is_err());
        assert!(split_group(r#"{"a":1,"a":2}"#).is_err());
    }

    #[test]
    fn repeated_keys_get_suffixes() {
        let v = json!({"entity":{"reference":"Patient/2"}});
        let mut rows = vec![MemberEntry::from_value(&v), MemberEntry::from_value(&v)];
        assign_unique_keys(&mut rows);
        assert_ne!(rows[0].key, rows[1].key);
    }

    #[test]
    fn change_types_are_derived_against_the_last_final_version() {
        // Written at this version: what it was written as.
        assert_eq!(
            shown_change_type(true, 2, 2, Some(1), Some("new"), false),
            Some("new")
        );
        // Unchanged since the last final version: nochange, or dropped when inactive.
        assert_eq!(
            shown_change_type(true, 1, 3, Some(2), Some("new"), false),
            Some("nochange")
        );
        assert_eq!(
            shown_change_type(true, 1, 3, Some(2), Some("dropped"), true),
            Some("dropped")
        );
        // Written since the last final version (or the list was never final): still its code.
        assert_eq!(
            shown_change_type(true, 3, 5, Some(2), Some("new"), false),
            Some("new")
        );
        assert_eq!(
            shown_change_type(true, 1, 4, None, Some("new"), false),
            Some("new")
        );
        assert_eq!(
            shown_change_type(true, 3, 5, Some(2), None, false),
            Some("nochange")
        );
        assert_eq!(shown_change_type(false, 1, 2, None, None, false), None);
    }
}
