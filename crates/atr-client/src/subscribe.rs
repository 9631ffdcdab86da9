//! Subscribing to a list's changes the way the IG asks a Consumer to: the `atr-list-change`
//! topic, the Group in `backport-filter-criteria`, rest-hook, `application/fhir+json`, `id-only`,
//! status `active`; and `off` (by update) when the list is no longer used.
//!
//! Each Subscription carries a fresh secret in `channel.header` (`Authorization: Bearer …`), so
//! the listener can tell the Producer's notifications from anyone else's POSTs.

use reqwest::Method;
use serde_json::{Value, json};

use crate::store::{ConsumerStore, SubscriptionRecord};
use crate::{ClientError, Fhir};

const TOPIC: &str = "http://hl7.org/fhir/us/davinci-atr/SubscriptionTopic/atr-list-change";
const BACKPORT: &str = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/";

/// The Subscription resource for `group_id` delivered to `endpoint`.
pub fn subscription_resource(
    group_id: &str,
    endpoint: &str,
    secret: &str,
    heartbeat_secs: Option<u32>,
) -> Value {
    let mut channel_ext =
        vec![json!({"url": format!("{BACKPORT}backport-timeout"), "valueUnsignedInt": 30})];
    if let Some(h) = heartbeat_secs {
        channel_ext.push(
            json!({"url": format!("{BACKPORT}backport-heartbeat-period"), "valueUnsignedInt": h}),
        );
    }
    json!({
        "resourceType": "Subscription",
        "meta": {"profile": ["http://hl7.org/fhir/us/davinci-atr/StructureDefinition/atr-list-change-subscription"]},
        "status": "active",
        "reason": format!("Changes of the attribution list Group/{group_id}"),
        "criteria": TOPIC,
        "_criteria": {"extension": [{"url": format!("{BACKPORT}backport-filter-criteria"),
                                      "valueString": format!("Group/{group_id}")}]},
        "channel": {
            "extension": channel_ext,
            "type": "rest-hook",
            "endpoint": endpoint,
            "payload": "application/fhir+json",
            "_payload": {"extension": [{"url": format!("{BACKPORT}backport-payload-content"),
                                         "valueCode": "id-only"}]},
            "header": [format!("Authorization: Bearer {secret}")],
        },
    })
}

/// Creates the Subscription and remembers it (with its secret) in `store`.
pub async fn subscribe(
    fhir: &Fhir,
    store: &ConsumerStore,
    group_id: &str,
    endpoint: &str,
    heartbeat_secs: Option<u32>,
) -> Result<SubscriptionRecord, ClientError> {
    let secret = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let body = subscription_resource(group_id, endpoint, &secret, heartbeat_secs);
    let (_, _, made) = fhir
        .send_json(Method::POST, "Subscription", &body, &[])
        .await?;
    let id = made["id"]
        .as_str()
        .ok_or_else(|| ClientError::Unexpected("the created Subscription has no id".into()))?
        .to_string();
    let record = SubscriptionRecord {
        base_url: fhir.base().to_string(),
        id,
        group_id: group_id.to_string(),
        endpoint: endpoint.to_string(),
        secret,
        last_event: 0,
        status: made["status"].as_str().unwrap_or("requested").to_string(),
    };
    store.put_subscription(&record)?;
    Ok(record)
}

/// Sets this Consumer's Subscriptions on `group_id` to `off` (read, change status, update).
/// Returns the ids turned off.
pub async fn unsubscribe(
    fhir: &Fhir,
    store: &ConsumerStore,
    group_id: &str,
) -> Result<Vec<String>, ClientError> {
    let mine: Vec<SubscriptionRecord> = store
        .subscriptions(Some(fhir.base()))?
        .into_iter()
        .filter(|s| s.group_id == group_id && s.status != "off")
        .collect();
    if mine.is_empty() {
        return Err(ClientError::NotFound(format!(
            "no Subscription of this Consumer on Group/{group_id} at {}",
            fhir.base()
        )));
    }
    let mut done = Vec::new();
    for s in mine {
        let mut current = fhir.get_json(&format!("Subscription/{}", s.id)).await?;
        current["status"] = json!("off");
        fhir.send_json(
            Method::PUT,
            &format!("Subscription/{}", s.id),
            &current,
            &[],
        )
        .await?;
        store.set_subscription_status(&s.base_url, &s.id, "off")?;
        done.push(s.id);
    }
    Ok(done)
}

/// The Producer's view of a Subscription (`$status`): status and events so far.
pub async fn status(fhir: &Fhir, id: &str) -> Result<(String, i64), ClientError> {
    let bundle = fhir.get_json(&format!("Subscription/{id}/$status")).await?;
    let params = bundle["entry"][0]["resource"]["parameter"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let find = |name: &str| params.iter().find(|p| p["name"] == name).cloned();
    let status = find("status")
        .and_then(|p| p["valueCode"].as_str().map(str::to_string))
        .unwrap_or_default();
    let events = find("events-since-subscription-start")
        .and_then(|p| p["valueString"].as_str().and_then(|s| s.parse().ok()))
        .unwrap_or(0);
    Ok((status, events))
}
