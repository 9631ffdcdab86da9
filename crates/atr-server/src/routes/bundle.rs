//! Bundles (searchset, history) written as a stream, so a page holding Groups with many members
//! never sits in memory whole.

use std::sync::Arc;

use atr_model::Issue;
use atr_store::{Store, StoredResource};
use bytes::Bytes;
use futures::StreamExt;
use futures::stream;
use serde_json::{Value, json};

use crate::render::{ByteStream, render};
use crate::search_params::Summary;

struct Entry {
    full_url: Option<String>,
    resource: Option<StoredResource>,
    /// A resource given as JSON (an OperationOutcome).
    inline: Option<Value>,
    summary: Summary,
    /// Further entry elements (`search`, `request`, `response`).
    extra: Value,
}

pub struct BundleWriter {
    store: Arc<dyn Store>,
    head: Value,
    entries: Vec<Entry>,
}

impl BundleWriter {
    pub fn new(
        store: Arc<dyn Store>,
        kind: &str,
        total: Option<i64>,
        links: Vec<(&str, String)>,
    ) -> Self {
        let mut head = json!({
            "resourceType": "Bundle",
            "id": uuid::Uuid::now_v7().to_string(),
            "meta": {"lastUpdated": atr_model::instant::fhir_instant(atr_model::instant::now_micros())},
            "type": kind,
        });
        if let Some(t) = total {
            head["total"] = json!(t);
        }
        head["link"] = links
            .into_iter()
            .map(|(rel, url)| json!({"relation": rel, "url": url}))
            .collect();
        BundleWriter {
            store,
            head,
            entries: Vec::new(),
        }
    }

    pub fn entry(
        &mut self,
        full_url: String,
        resource: Option<StoredResource>,
        summary: Summary,
        extra: Value,
    ) {
        self.entries.push(Entry {
            full_url: Some(full_url),
            resource,
            inline: None,
            summary,
            extra,
        });
    }

    /// An OperationOutcome entry telling the client about ignored parameters.
    pub fn outcome(&mut self, issues: &[Issue]) {
        self.entries.push(Entry {
            full_url: None,
            resource: None,
            inline: Some(atr_model::operation_outcome(issues)),
            summary: Summary::Full,
            extra: json!({"search": {"mode": "outcome"}}),
        });
    }

    pub fn finish(self) -> ByteStream {
        let BundleWriter {
            store,
            head,
            entries,
        } = self;
        let mut head_text = head.to_string();
        head_text.pop(); // reopen the object for `entry`
        head_text.push_str(",\"entry\":[");
        let tail = stream::once(async { Ok(Bytes::from_static(b"]}")) });
        let body = stream::iter(entries.into_iter().enumerate()).flat_map(move |(i, e)| {
            let mut open = String::from(if i == 0 { "{" } else { ",{" });
            if let Some(url) = &e.full_url {
                open.push_str(&format!("\"fullUrl\":{},", Value::from(url.as_str())));
            }
            let extra = e.extra.to_string();
            let extra_fields = extra.get(1..extra.len() - 1).unwrap_or("");
            let resource: ByteStream = match (&e.resource, &e.inline) {
                (Some(r), _) => {
                    open.push_str("\"resource\":");
                    match render(store.as_ref(), r, e.summary) {
                        Ok(rendered) => rendered.into_stream(),
                        Err(err) => stream::once(async move { Err(err) }).boxed(),
                    }
                }
                (None, Some(v)) => {
                    open.push_str("\"resource\":");
                    let b = Bytes::from(v.to_string());
                    stream::once(async move { Ok(b) }).boxed()
                }
                (None, None) => stream::empty().boxed(),
            };
            let had_resource = e.resource.is_some() || e.inline.is_some();
            let close = match (had_resource, extra_fields.is_empty()) {
                (true, false) => format!(",{extra_fields}}}"),
                (true, true) => "}".to_string(),
                (false, _) => format!("{extra_fields}}}"),
            };
            stream::once(async move { Ok(Bytes::from(open)) })
                .chain(resource)
                .chain(stream::once(async move { Ok(Bytes::from(close)) }))
        });
        stream::once(async move { Ok(Bytes::from(head_text)) })
            .chain(body)
            .chain(tail)
            .boxed()
    }
}
