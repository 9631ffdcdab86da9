//! Reading an `atr-list-change-subscription` into what delivery needs.
//!
//! [`ListSubscription::from_resource`] checks everything the profile and the Backport base
//! require and everything delivery depends on, and reports *every* problem at once, each as an
//! [`Issue`] with the FHIRPath of the offending element, so a 422 names them all.

use atr_model::outcome::Issue;
use serde_json::{Map, Value};
use url::Url;

/// The ATR topic canonical, the only `criteria` this server accepts.
pub const TOPIC_ATR_LIST_CHANGE: &str =
    "http://hl7.org/fhir/us/davinci-atr/SubscriptionTopic/atr-list-change";

const BACKPORT: &str = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/";
const EXT_FILTER: &str = "backport-filter-criteria";
const EXT_PAYLOAD: &str = "backport-payload-content";
const EXT_HEARTBEAT: &str = "backport-heartbeat-period";
const EXT_TIMEOUT: &str = "backport-timeout";
const EXT_MAX_COUNT: &str = "backport-max-count";

/// The timeout used when the Subscription names none: long enough for a slow receiver, short
/// enough that one dead endpoint does not hold a delivery worker.
pub const DEFAULT_TIMEOUT_SECS: u32 = 30;

/// R4 `Subscription.status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscriptionStatus {
    Requested,
    Active,
    Error,
    Off,
}

impl SubscriptionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SubscriptionStatus::Requested => "requested",
            SubscriptionStatus::Active => "active",
            SubscriptionStatus::Error => "error",
            SubscriptionStatus::Off => "off",
        }
    }

    pub fn parse(code: &str) -> Option<Self> {
        Some(match code {
            "requested" => SubscriptionStatus::Requested,
            "active" => SubscriptionStatus::Active,
            "error" => SubscriptionStatus::Error,
            "off" => SubscriptionStatus::Off,
            _ => return None,
        })
    }
}

/// How much of the focus a notification carries (`backport-payload-content`). `full-resource`
/// is refused: a Group can be hundreds of megabytes, and the IG asks for `id-only`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadContent {
    Empty,
    IdOnly,
}

impl PayloadContent {
    pub fn as_str(self) -> &'static str {
        match self {
            PayloadContent::Empty => "empty",
            PayloadContent::IdOnly => "id-only",
        }
    }
}

/// Which rest-hook endpoints are acceptable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EndpointPolicy {
    /// `https`, or plain `http` to a loopback address only.
    #[default]
    HttpsOrLoopback,
    /// Any `http` or `https` endpoint: a development server's setting, never production's.
    AllowPlainHttp,
}

/// An accepted Subscription to one attribution list.
#[derive(Debug, Clone, PartialEq)]
pub struct ListSubscription {
    /// The status the client asked for (`requested` or `active` on create; `off` to stop).
    pub requested_status: SubscriptionStatus,
    /// The Group named by the filter criteria.
    pub group_id: String,
    pub endpoint: Url,
    /// `channel.payload` as given (`application/fhir+json`, possibly with parameters).
    pub payload_mime: String,
    pub content: PayloadContent,
    /// `channel.header` entries split into name and value, sent with every POST.
    pub headers: Vec<(String, String)>,
    pub heartbeat_secs: Option<u32>,
    pub timeout_secs: u32,
    /// Most events in one notification Bundle.
    pub max_count: Option<u32>,
}

impl ListSubscription {
    /// Reads and checks a Subscription resource.
    pub fn from_resource(
        resource: &Value,
        policy: EndpointPolicy,
    ) -> Result<ListSubscription, Vec<Issue>> {
        let mut issues = Vec::new();
        let Some(obj) = resource.as_object() else {
            return Err(vec![Issue::error(
                "structure",
                "a Subscription must be a JSON object",
            )]);
        };
        if obj.get("resourceType").and_then(Value::as_str) != Some("Subscription") {
            issues.push(
                Issue::error("invalid", "resourceType must be \"Subscription\"").at("resourceType"),
            );
        }

        let requested_status = match obj.get("status").and_then(Value::as_str) {
            Some(code) => match SubscriptionStatus::parse(code) {
                Some(SubscriptionStatus::Error) => {
                    issues.push(
                        Issue::error("value", "a client cannot set status \"error\"")
                            .at("Subscription.status"),
                    );
                    SubscriptionStatus::Requested
                }
                Some(s) => s,
                None => {
                    issues.push(
                        Issue::error(
                            "code-invalid",
                            format!("status {code:?} is not one of requested, active, error, off"),
                        )
                        .at("Subscription.status"),
                    );
                    SubscriptionStatus::Requested
                }
            },
            None => {
                issues
                    .push(Issue::error("required", "status is required").at("Subscription.status"));
                SubscriptionStatus::Requested
            }
        };

        match obj.get("criteria").and_then(Value::as_str) {
            Some(TOPIC_ATR_LIST_CHANGE) => {}
            Some(other) => issues.push(
                Issue::error(
                    "not-supported",
                    format!(
                        "criteria {other:?} is not a topic of this server; the only one is {TOPIC_ATR_LIST_CHANGE}"
                    ),
                )
                .at("Subscription.criteria"),
            ),
            None => issues.push(
                Issue::error(
                    "required",
                    format!("criteria is required and must be {TOPIC_ATR_LIST_CHANGE}"),
                )
                .at("Subscription.criteria"),
            ),
        }

        let group_id = filter_group(obj, &mut issues);

        let channel = obj
            .get("channel")
            .filter(|c| c.is_object())
            .unwrap_or(&Value::Null);
        if channel.is_null() {
            issues.push(Issue::error("required", "channel is required").at("Subscription.channel"));
        }

        match channel.get("type").and_then(Value::as_str) {
            Some("rest-hook") => {}
            Some(other) => issues.push(
                Issue::error(
                    "not-supported",
                    format!("channel.type {other:?} is not supported; use rest-hook"),
                )
                .at("Subscription.channel.type"),
            ),
            None => issues.push(
                Issue::error("required", "channel.type is required (rest-hook)")
                    .at("Subscription.channel.type"),
            ),
        }

        let endpoint = endpoint(channel, policy, &mut issues);

        let payload_mime = match channel.get("payload").and_then(Value::as_str) {
            Some(mime)
                if mime
                    .split(';')
                    .next()
                    .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/fhir+json")) =>
            {
                mime.to_string()
            }
            Some(other) => {
                issues.push(
                    Issue::error(
                        "not-supported",
                        format!(
                            "channel.payload {other:?} is not supported; use application/fhir+json"
                        ),
                    )
                    .at("Subscription.channel.payload"),
                );
                String::new()
            }
            None => {
                issues.push(
                    Issue::error(
                        "required",
                        "channel.payload is required (application/fhir+json)",
                    )
                    .at("Subscription.channel.payload"),
                );
                String::new()
            }
        };

        let content = payload_content(channel, &mut issues);
        let headers = channel_headers(channel, &mut issues);
        let heartbeat_secs = unsigned_extension(channel, EXT_HEARTBEAT, false, &mut issues);
        let timeout_secs = unsigned_extension(channel, EXT_TIMEOUT, true, &mut issues)
            .unwrap_or(DEFAULT_TIMEOUT_SECS);
        let max_count = unsigned_extension(channel, EXT_MAX_COUNT, true, &mut issues);

        match (issues.is_empty(), group_id, endpoint, content) {
            (true, Some(group_id), Some(endpoint), Some(content)) => Ok(ListSubscription {
                requested_status,
                group_id,
                endpoint,
                payload_mime,
                content,
                headers,
                heartbeat_secs,
                timeout_secs,
                max_count,
            }),
            _ => Err(issues),
        }
    }
}

/// The Backport extensions called `name` on an element, if there is the element.
fn extensions<'a>(element: Option<&'a Value>, name: &str) -> Vec<&'a Value> {
    element
        .map(|e| atr_model::validate::extensions(e, &format!("{BACKPORT}{name}")))
        .unwrap_or_default()
}

/// The Group a filter names: `Group/{id}` (the IG's example), `Group?_id={id}` or `Group?id={id}`
/// (the Backport's search syntax).
pub fn parse_group_filter(filter: &str) -> Option<String> {
    let filter = filter.trim();
    let id = if let Some(id) = filter.strip_prefix("Group/") {
        id
    } else {
        let query = filter.strip_prefix("Group?")?;
        let (name, value) = query.split_once('=')?;
        if !matches!(name, "_id" | "id") {
            return None;
        }
        value.strip_prefix("Group/").unwrap_or(value)
    };
    atr_model::ident::is_valid_id(id).then(|| id.to_string())
}

fn filter_group(obj: &Map<String, Value>, issues: &mut Vec<Issue>) -> Option<String> {
    let filters = extensions(obj.get("_criteria"), EXT_FILTER);
    let at = "Subscription.criteria.extension('backport-filter-criteria')";
    match filters.as_slice() {
        [] => {
            issues.push(
                Issue::error(
                    "required",
                    "the backport-filter-criteria extension naming the Group (Group/{id}) is required",
                )
                .at(at),
            );
            None
        }
        [one] => {
            let value = one.get("valueString").and_then(Value::as_str);
            match value.and_then(parse_group_filter) {
                Some(id) => Some(id),
                None => {
                    issues.push(
                        Issue::error(
                            "value",
                            format!(
                                "filter criteria {:?} must name one Group as Group/{{id}} or Group?_id={{id}}",
                                value.unwrap_or("")
                            ),
                        )
                        .at(at),
                    );
                    None
                }
            }
        }
        _ => {
            issues.push(
                Issue::error(
                    "value",
                    "only one backport-filter-criteria is allowed (one Group per Subscription)",
                )
                .at(at),
            );
            None
        }
    }
}

fn endpoint(channel: &Value, policy: EndpointPolicy, issues: &mut Vec<Issue>) -> Option<Url> {
    let at = "Subscription.channel.endpoint";
    let Some(text) = channel.get("endpoint").and_then(Value::as_str) else {
        issues.push(Issue::error("required", "channel.endpoint is required for rest-hook").at(at));
        return None;
    };
    let url = match Url::parse(text) {
        Ok(u) => u,
        Err(e) => {
            issues.push(
                Issue::error(
                    "value",
                    format!("channel.endpoint {text:?} is not an absolute URL: {e}"),
                )
                .at(at),
            );
            return None;
        }
    };
    let loopback = atr_model::loopback::is_loopback(&url);
    let allowed = match url.scheme() {
        "https" => true,
        "http" => loopback || policy == EndpointPolicy::AllowPlainHttp,
        _ => false,
    };
    if !allowed {
        issues.push(
            Issue::error(
                "value",
                format!(
                    "channel.endpoint {text:?} must be https (plain http only to a loopback address)"
                ),
            )
            .at(at),
        );
        return None;
    }
    if !url.username().is_empty() || url.password().is_some() {
        issues.push(
            Issue::error(
                "value",
                "channel.endpoint must not carry credentials; use channel.header",
            )
            .at(at),
        );
        return None;
    }
    Some(url)
}

fn payload_content(channel: &Value, issues: &mut Vec<Issue>) -> Option<PayloadContent> {
    let at = "Subscription.channel.payload.extension('backport-payload-content')";
    let codes: Vec<_> = extensions(channel.get("_payload"), EXT_PAYLOAD)
        .into_iter()
        .map(|e| e.get("valueCode").and_then(Value::as_str))
        .collect();
    match codes.as_slice() {
        [Some("id-only")] => Some(PayloadContent::IdOnly),
        [Some("empty")] => Some(PayloadContent::Empty),
        [Some("full-resource")] => {
            issues.push(
                Issue::error(
                    "not-supported",
                    "payload content full-resource is not supported; use id-only (or empty)",
                )
                .at(at),
            );
            None
        }
        [] => {
            issues.push(
                Issue::error(
                    "required",
                    "the backport-payload-content extension is required (id-only)",
                )
                .at(at),
            );
            None
        }
        [other] => {
            issues.push(
                Issue::error(
                    "code-invalid",
                    format!(
                        "payload content {:?} is not one of empty, id-only, full-resource",
                        other.unwrap_or("")
                    ),
                )
                .at(at),
            );
            None
        }
        _ => {
            issues.push(Issue::error("value", "only one payload content is allowed").at(at));
            None
        }
    }
}

fn channel_headers(channel: &Value, issues: &mut Vec<Issue>) -> Vec<(String, String)> {
    let mut headers = Vec::new();
    let Some(list) = channel.get("header") else {
        return headers;
    };
    let Some(list) = list.as_array() else {
        issues.push(
            Issue::error("structure", "channel.header must be an array of strings")
                .at("Subscription.channel.header"),
        );
        return headers;
    };
    for (i, h) in list.iter().enumerate() {
        let at = format!("Subscription.channel.header[{i}]");
        let parsed = h
            .as_str()
            .and_then(|s| s.split_once(':'))
            .and_then(|(n, v)| {
                let (n, v) = (n.trim(), v.trim());
                let name_ok = !n.is_empty()
                    && n.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
                let value_ok = v.bytes().all(|b| b == b'\t' || (0x20..0x7f).contains(&b));
                let reserved = [
                    "content-type",
                    "content-length",
                    "host",
                    "transfer-encoding",
                ]
                .iter()
                .any(|r| n.eq_ignore_ascii_case(r));
                (name_ok && value_ok && !reserved).then(|| (n.to_string(), v.to_string()))
            });
        match parsed {
            Some(pair) => headers.push(pair),
            None => issues.push(
                Issue::error(
                    "value",
                    "a channel header must be \"Name: value\" with a token name and printable ASCII value (Content-Type, Content-Length, Host and Transfer-Encoding are the server's)",
                )
                .at(at),
            ),
        }
    }
    headers
}

fn unsigned_extension(
    channel: &Value,
    name: &str,
    positive: bool,
    issues: &mut Vec<Issue>,
) -> Option<u32> {
    let ext = *extensions(Some(channel), name).first()?;
    let at = format!("Subscription.channel.extension('{name}')");
    let value = ext
        .get("valueUnsignedInt")
        .or_else(|| ext.get("valuePositiveInt"))
        .and_then(Value::as_u64)
        .and_then(|v| u32::try_from(v).ok());
    match value {
        Some(0) if positive => {
            issues.push(Issue::error("value", format!("{name} must be at least 1")).at(at));
            None
        }
        Some(v) => Some(v),
        None => {
            issues.push(
                Issue::error(
                    "value",
                    format!("{name} must carry a non-negative integer value"),
                )
                .at(at),
            );
            None
        }
    }
}
