//! `GET /metadata`: a CapabilityStatement that says what this server really does, built from the
//! same tables that drive search, so it cannot drift from the code.

use atr_model::ResourceType;
use atr_model::index::{ParamKind, search_params};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use super::fhir_json;
use crate::state::AppState;

fn param(name: &str, kind: &str, documentation: &str) -> Value {
    json!({"name": name, "type": kind, "documentation": documentation})
}

fn resource_entry(rtype: ResourceType) -> Value {
    let mut params = vec![
        param("_id", "token", "Logical id"),
        param(
            "_lastUpdated",
            "date",
            "When the current version was written (eq, ne, gt, ge, lt, le)",
        ),
    ];
    for sp in search_params(rtype) {
        let (kind, doc) = match (sp.kind, sp.name) {
            (ParamKind::Token, "identifier") => (
                "token",
                "system|value, |value, value or system|; :of-type typeSystem|typeCode|value",
            ),
            (ParamKind::Token, _) => ("token", "system|code, |code, code or system|"),
            (ParamKind::String, _) => (
                "string",
                "Case- and accent-insensitive prefix; :exact and :contains",
            ),
            (ParamKind::Reference, _) => ("reference", "Type/id"),
            (ParamKind::Date, _) => (
                "date",
                "A date to the day, month or year, with eq, ne, gt, ge, lt or le",
            ),
            (ParamKind::Composite, _) => (
                "composite",
                "[system|]code$[system|]value: a characteristic with that value (CodeableConcept or boolean)",
            ),
        };
        let mut p = param(sp.name, kind, doc);
        p["definition"] = json!(format!(
            "http://hl7.org/fhir/SearchParameter/{}-{}",
            rtype.as_str(),
            sp.name
        ));
        params.push(p);
    }
    if rtype == ResourceType::Group {
        params.push(param(
            "member",
            "reference",
            "Groups with a current member entry for this Patient",
        ));
    }
    let interactions: Vec<Value> = [
        "read",
        "vread",
        "history-instance",
        "create",
        "update",
        "delete",
        "search-type",
    ]
    .into_iter()
    .map(|code| json!({"code": code}))
    .collect();
    let operations: Vec<Value> = if rtype == ResourceType::Group {
        [
            "member-add",
            "member-remove",
            "confirm-attribution-list",
            "attribution-status",
        ]
        .iter()
        .map(|op| {
            json!({"name": op, "definition": format!("http://hl7.org/fhir/us/davinci-atr/OperationDefinition/{op}")})
        })
        .chain([
            json!({"name": "davinci-data-export", "definition": "http://hl7.org/fhir/us/davinci-atr/OperationDefinition/davinci-data-export"}),
            // Bulk Data test suites look for `export` by name and the group-export definition.
            json!({"name": "export", "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export"}),
        ])
        .collect()
    } else if rtype == ResourceType::Patient {
        vec![
            json!({"name": "export", "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export"}),
        ]
    } else {
        Vec::new()
    };
    let mut entry = json!({
        "type": rtype.as_str(),
        "supportedProfile": [rtype.atr_profile()],
        "interaction": interactions,
        "versioning": "versioned",
        "readHistory": true,
        "updateCreate": true,
        "conditionalCreate": false,
        "conditionalUpdate": false,
        "conditionalDelete": "not-supported",
        "searchParam": params,
    });
    if !operations.is_empty() {
        entry["operation"] = Value::Array(operations);
    }
    entry
}

/// Subscriptions: the ATR profile on the Backport, rest-hook with id-only (or empty) payloads.
fn subscription_entry() -> Value {
    let interactions: Vec<Value> = ["read", "create", "update", "delete", "search-type"]
        .iter()
        .map(|code| json!({"code": code}))
        .collect();
    json!({
        "type": "Subscription",
        "profile": "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-subscription",
        "supportedProfile": ["http://hl7.org/fhir/us/davinci-atr/StructureDefinition/atr-list-change-subscription"],
        "documentation": "atr-list-change: every new version of the Group named in backport-filter-criteria (Group/{id} or Group?_id={id}) is an event. rest-hook only; payload application/fhir+json with id-only or empty content. A Subscription on a Group the client may not access is refused with 401. The server sets status: requested until the endpoint answers the handshake, then active; error after repeated failed deliveries, and active again when the endpoint answers.",
        "interaction": interactions,
        "versioning": "versioned-update",
        "readHistory": false,
        "updateCreate": false,
        "searchParam": [
            param("_id", "token", "Logical id"),
            param("status", "token", "requested | active | error | off"),
            param("filter-criteria", "string", "The Group: Group/{id}"),
            param("url", "uri", "The channel endpoint"),
        ],
        "operation": [
            {"name": "status", "definition": "http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/backport-subscription-status"},
            {"name": "events", "definition": "http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/backport-subscription-events"},
        ],
    })
}

pub async fn capability_statement(State(state): State<AppState>) -> Response {
    let cs = json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-11-22",
        "publisher": "atr",
        "kind": "instance",
        "instantiates": [
            "http://hl7.org/fhir/us/davinci-atr/CapabilityStatement/atr-producer",
            "http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data"
        ],
        // The IG's canonical, as its ImplementationGuide resource states it (CapabilityStatement
        // SHOULD list the guides it conforms to).
        "implementationGuide": ["http://hl7.org/fhir/us/davinci-atr/ImplementationGuide/davinci-atr"],
        "software": {"name": "atr", "version": env!("CARGO_PKG_VERSION")},
        "implementation": {"description": "atr: Da Vinci Member Attribution List Producer", "url": state.base_url.as_ref()},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        // R4 servers name their topics by canonical (Subscriptions Backport, "Subscription
        // Topics in R4").
        "extension": [{
            "url": "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/capabilitystatement-subscriptiontopic-canonical",
            "valueCanonical": atr_notify::TOPIC_ATR_LIST_CHANGE,
        }],
        "rest": [{
            "mode": "server",
            "security": crate::auth::discovery::security(&state.auth.token_url),
            "documentation": "Groups are Member Attribution Lists; _summary=true on Group omits members but keeps quantity.",
            "resource": ResourceType::ALL
                .iter()
                .map(|t| resource_entry(*t))
                .chain(std::iter::once(json!({
                    "type": "Provenance",
                    "documentation": "Provenance a Consumer sends in X-Provenance with $member-add, $member-remove or $confirm-attribution-list, linked to the Group version the change made",
                    "interaction": [{"code": "read"}, {"code": "search-type"}],
                    "searchParam": [param("target", "reference", "Group/{id}: the Provenance of that list's changes")],
                })))
                .chain(std::iter::once(subscription_entry()))
                .chain(std::iter::once(super::audit_event::capability_entry()))
                .collect::<Vec<_>>(),
            // The system-level export: everything an administration client may read; for a
            // Consumer, what its lists hold.
            "operation": [{"name": "export", "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export"}],
        }],
    });
    fhir_json(StatusCode::OK, &cs)
}
