//! Reading `atr-list-change` Subscriptions: the IG example and every rejection.

use atr_notify::subscription::parse_group_filter;
use atr_notify::{EndpointPolicy, ListSubscription, PayloadContent, SubscriptionStatus};
use serde_json::{Value, json};

fn ig_example() -> Value {
    atr_testkit::ig::example("atr-list-change-subscription-example.json")
}

fn loopback_subscription() -> Value {
    let mut s = ig_example();
    s["channel"]["endpoint"] = json!("http://127.0.0.1:9999/hook");
    s
}

fn expressions(err: Vec<atr_model::outcome::Issue>) -> Vec<String> {
    err.into_iter().filter_map(|i| i.expression).collect()
}

#[test]
fn ig_example_is_accepted_with_its_channel_settings() {
    let s = ListSubscription::from_resource(&ig_example(), EndpointPolicy::default())
        .expect("the IG example is valid");
    assert_eq!(s.group_id, "MyGroup1234");
    assert_eq!(s.requested_status, SubscriptionStatus::Active);
    assert_eq!(s.content, PayloadContent::IdOnly);
    assert_eq!(s.heartbeat_secs, Some(86400));
    assert_eq!(s.timeout_secs, 60);
    assert_eq!(s.max_count, Some(20));
    assert_eq!(s.endpoint.scheme(), "https");
}

#[test]
fn group_filter_accepts_reference_and_search_forms() {
    assert_eq!(
        parse_group_filter("Group/list-1").as_deref(),
        Some("list-1")
    );
    assert_eq!(
        parse_group_filter("Group?_id=list-1").as_deref(),
        Some("list-1")
    );
    assert_eq!(
        parse_group_filter("Group?id=Group/list-1").as_deref(),
        Some("list-1")
    );
    assert_eq!(parse_group_filter("Patient/1"), None);
    assert_eq!(parse_group_filter("Group?name=x"), None);
    assert_eq!(parse_group_filter("Group/../etc"), None);
}

#[test]
fn plain_http_endpoint_is_refused_unless_loopback_or_development() {
    let mut s = ig_example();
    s["channel"]["endpoint"] = json!("http://example.org/hook");
    let err = ListSubscription::from_resource(&s, EndpointPolicy::default()).unwrap_err();
    assert_eq!(expressions(err), ["Subscription.channel.endpoint"]);
    assert!(ListSubscription::from_resource(&s, EndpointPolicy::AllowPlainHttp).is_ok());
    assert!(
        ListSubscription::from_resource(&loopback_subscription(), EndpointPolicy::default())
            .is_ok()
    );
}

#[test]
fn every_problem_is_reported_with_its_expression() {
    let s = json!({
        "resourceType": "Subscription",
        "status": "bogus",
        "criteria": "http://example.org/other-topic",
        "channel": {
            "type": "websocket",
            "endpoint": "ftp://127.0.0.1/x",
            "payload": "application/xml",
            "header": ["Authorization: Bearer x", "no colon"],
            "_payload": {"extension": [{
                "url": "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-payload-content",
                "valueCode": "full-resource"}]},
            "extension": [{
                "url": "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-timeout",
                "valueUnsignedInt": 0}]
        }
    });
    let err = ListSubscription::from_resource(&s, EndpointPolicy::default()).unwrap_err();
    let got = expressions(err);
    for want in [
        "Subscription.status",
        "Subscription.criteria",
        "Subscription.criteria.extension('backport-filter-criteria')",
        "Subscription.channel.type",
        "Subscription.channel.endpoint",
        "Subscription.channel.payload",
        "Subscription.channel.payload.extension('backport-payload-content')",
        "Subscription.channel.header[1]",
        "Subscription.channel.extension('backport-timeout')",
    ] {
        assert!(got.iter().any(|g| g == want), "missing {want} in {got:?}");
    }
    assert!(!got.iter().any(|g| g == "Subscription.channel.header[0]"));
}

#[test]
fn headers_are_split_and_server_headers_refused() {
    let mut s = loopback_subscription();
    s["channel"]["header"] = json!(["Authorization: Bearer abc", "X-Tenant:t1"]);
    let ok = ListSubscription::from_resource(&s, EndpointPolicy::default()).unwrap();
    assert_eq!(
        ok.headers,
        [
            ("Authorization".to_string(), "Bearer abc".to_string()),
            ("X-Tenant".to_string(), "t1".to_string())
        ]
    );
    s["channel"]["header"] = json!(["Content-Type: text/plain"]);
    let err = ListSubscription::from_resource(&s, EndpointPolicy::default()).unwrap_err();
    assert_eq!(expressions(err), ["Subscription.channel.header[0]"]);
}

#[test]
fn client_cannot_set_error_status_and_off_is_kept() {
    let mut s = loopback_subscription();
    s["status"] = json!("error");
    let err = ListSubscription::from_resource(&s, EndpointPolicy::default()).unwrap_err();
    assert_eq!(expressions(err), ["Subscription.status"]);
    s["status"] = json!("off");
    let ok = ListSubscription::from_resource(&s, EndpointPolicy::default()).unwrap();
    assert_eq!(ok.requested_status, SubscriptionStatus::Off);
}

#[test]
fn empty_payload_and_missing_timeout_use_defaults() {
    let mut s = loopback_subscription();
    s["channel"]["_payload"]["extension"][0]["valueCode"] = json!("empty");
    s["channel"]["extension"] = json!([]);
    let ok = ListSubscription::from_resource(&s, EndpointPolicy::default()).unwrap();
    assert_eq!(ok.content, PayloadContent::Empty);
    assert_eq!(
        ok.timeout_secs,
        atr_notify::subscription::DEFAULT_TIMEOUT_SECS
    );
    assert_eq!(ok.heartbeat_secs, None);
}

#[test]
fn non_object_is_a_structure_error() {
    let err = ListSubscription::from_resource(&json!([1]), EndpointPolicy::default()).unwrap_err();
    assert_eq!(err[0].code, "structure");
}
