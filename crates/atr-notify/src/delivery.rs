//! The [`Notifier`]: delivers handshakes, event notifications and heartbeats from the outbox to
//! rest-hook endpoints.
//!
//! Work is found in the store, never in memory: an instance leases the Subscriptions that have
//! something due, sends one notification per leased Subscription, records how it went and lets
//! the lease go. So a Subscription's notifications leave one at a time and in order, a process
//! that dies loses nothing (its lease runs out and any instance resends), and several instances
//! share the work. Delivery is at least once: an endpoint that answered but whose answer was lost
//! sees the same event numbers again.
//!
//! A failed delivery is retried with exponential backoff and jitter; after
//! [`NotifyConfig::error_after`] consecutive failures (or a failed handshake) the Subscription is
//! `error`, and it is tried again on the same schedule until the endpoint answers, which makes it
//! `active` again with nothing lost.

use std::sync::Arc;
use std::time::Duration;

use atr_model::instant::now_micros;
use atr_store::{DeliveryResult, Store, StoreError, SubscriptionRecord};
use serde_json::Value;
use tokio::sync::{Notify, Semaphore};

use crate::notification::{ListChangeEvent, Notification, NotificationKind};
use crate::subscription::{EndpointPolicy, ListSubscription, SubscriptionStatus};

/// How often an instance forgets old delivered events.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// How delivery runs.
#[derive(Debug, Clone)]
pub struct NotifyConfig {
    /// Notifications in flight at once (across Subscriptions; one per Subscription).
    pub concurrency: usize,
    /// How often an idle instance looks for work another instance's changes made.
    pub poll: Duration,
    /// Most Subscriptions leased in one claim.
    pub claim_batch: u32,
    /// Consecutive failures after which a Subscription is `error`.
    pub error_after: u32,
    /// The first retry waits about this long; each further failure doubles it.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// A Subscription's `timeout` is cut to this.
    pub max_timeout: Duration,
    /// Most events in one notification (a Subscription's `maxCount` may ask for fewer).
    pub max_events: u32,
    /// Which endpoints Subscriptions may name (checked when they are written).
    pub endpoint_policy: EndpointPolicy,
    /// A shorter `heartbeat-period` is raised to this (a tiny one would flood the endpoint).
    pub min_heartbeat: Duration,
    /// Delivered events older than this are forgotten (`$events` answers for what is kept).
    pub event_retention: Duration,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            concurrency: 256,
            poll: Duration::from_millis(500),
            claim_batch: 256,
            error_after: 5,
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(300),
            max_timeout: Duration::from_secs(120),
            max_events: 100,
            endpoint_policy: EndpointPolicy::HttpsOrLoopback,
            min_heartbeat: Duration::from_secs(10),
            event_retention: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

impl NotifyConfig {
    /// How long a lease lasts: longer than any delivery may take (its timeout), so that only a
    /// dead instance's lease runs out.
    pub fn lease(&self) -> Duration {
        self.max_timeout + Duration::from_secs(5)
    }

    /// The wait before retry number `failures` (1 for the first retry): doubling from
    /// `backoff_base`, capped at `backoff_max`, then drawn from its upper half so that endpoints
    /// that failed together do not all come back at the same instant.
    pub fn backoff(&self, failures: u32, random: u64) -> Duration {
        let doubled = self
            .backoff_base
            .saturating_mul(1u32 << failures.saturating_sub(1).min(20));
        let full = doubled.min(self.backoff_max);
        let half = full / 2;
        let spread = half.as_micros() as u64;
        let jitter = if spread == 0 { 0 } else { random % spread };
        half + Duration::from_micros(jitter)
    }
}

/// Whether client `.0` may still read Group `.1` (the server's access policy, asked before every
/// delivery: a provider whose contract ended hears nothing more about the list).
pub type AccessCheck = Arc<
    dyn Fn(String, String) -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send>>
        + Send
        + Sync,
>;

/// Delivery for one server instance.
pub struct Notifier {
    store: Arc<dyn Store>,
    access: AccessCheck,
    base_url: String,
    config: NotifyConfig,
    http: reqwest::Client,
    /// This instance's name on leases.
    owner: String,
    wake: Notify,
}

impl Notifier {
    pub fn new(
        store: Arc<dyn Store>,
        base_url: &str,
        config: NotifyConfig,
        access: AccessCheck,
    ) -> Self {
        let http = reqwest::Client::builder()
            // A notification goes where the Subscription says and nowhere else.
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .user_agent(concat!("atr/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        Notifier {
            store,
            access,
            base_url: base_url.trim_end_matches('/').to_string(),
            config,
            http,
            owner: format!("notify-{}", uuid::Uuid::new_v4().simple()),
            wake: Notify::new(),
        }
    }

    pub fn config(&self) -> &NotifyConfig {
        &self.config
    }

    /// Runs delivery until the process ends.
    pub fn spawn(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move { me.run().await })
    }

    /// Looks for due work now (this instance just made a Group version or a Subscription).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    async fn run(self: Arc<Self>) {
        let slots = Arc::new(Semaphore::new(self.config.concurrency.max(1)));
        let mut pruned_at: Option<std::time::Instant> = None;
        loop {
            if pruned_at.is_none_or(|t| t.elapsed() > PRUNE_EVERY) {
                pruned_at = Some(std::time::Instant::now());
                let before = now_micros() - self.config.event_retention.as_micros() as i64;
                match self.store.prune_subscription_events(before).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(events = n, "forgot old delivered events"),
                    Err(e) => tracing::warn!(error = %e, "pruning old events failed"),
                }
            }
            let now = now_micros();
            let lease_until = now + self.config.lease().as_micros() as i64;
            let free = slots
                .available_permits()
                .min(self.config.claim_batch as usize);
            let claimed = if free == 0 {
                Ok(Vec::new())
            } else {
                self.store
                    .claim_deliveries(&self.owner, now, lease_until, free as u32)
                    .await
            };
            match claimed {
                Ok(list) if !list.is_empty() => {
                    for record in list {
                        let Ok(permit) = slots.clone().acquire_owned().await else {
                            return;
                        };
                        let me = self.clone();
                        tokio::spawn(async move {
                            me.deliver(record).await;
                            drop(permit);
                            // A finished delivery may leave more due (events beyond maxCount).
                            me.wake.notify_one();
                        });
                    }
                }
                Ok(_) => {
                    let _ = tokio::time::timeout(self.config.poll, self.wake.notified()).await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "claiming notifications failed");
                    tokio::time::sleep(self.config.poll).await;
                }
            }
        }
    }

    /// One attempt for one leased Subscription, its outcome recorded.
    async fn deliver(&self, record: SubscriptionRecord) {
        let result = match self.attempt(&record).await {
            Ok(result) => result,
            Err(reason) => {
                let failures = u32::try_from(record.failures + 1).unwrap_or(u32::MAX);
                let wait = self.config.backoff(failures, random());
                tracing::info!(subscription = %record.id, failures, reason = %reason,
                    retry_in_ms = wait.as_millis() as u64, "notification failed");
                DeliveryResult::Failed {
                    reason,
                    retry_at: now_micros() + wait.as_micros() as i64,
                    error_after: i64::from(self.config.error_after),
                }
            }
        };
        if let Err(e) = self
            .store
            .finish_delivery(&record.id, &self.owner, &result, now_micros())
            .await
        {
            // The lease runs out and the attempt is made again: at least once.
            tracing::warn!(subscription = %record.id, error = %e, "recording a delivery failed");
        }
    }

    /// Sends what is due; `Err` is the reason the endpoint did not take it.
    async fn attempt(&self, record: &SubscriptionRecord) -> Result<DeliveryResult, String> {
        let resource: Value = serde_json::from_str(&record.body)
            .map_err(|e| format!("the stored Subscription is unreadable: {e}"))?;
        // Checked against the server's policy when it was written; read here as it is.
        let sub = ListSubscription::from_resource(&resource, EndpointPolicy::AllowPlainHttp)
            .map_err(|issues| {
                format!(
                    "the stored Subscription is no longer valid: {}",
                    issues
                        .iter()
                        .map(|i| i.diagnostics.as_str())
                        .collect::<Vec<_>>()
                        .join("; ")
                )
            })?;
        if !(self.access)(record.client_id.clone(), record.group_id.clone()).await {
            // Retried on the usual schedule: access may come back (a renewed contract).
            return Err(format!(
                "client {} may no longer access Group/{}",
                record.client_id, record.group_id
            ));
        }
        let status =
            SubscriptionStatus::parse(&record.status).unwrap_or(SubscriptionStatus::Active);
        let since_start = u64::try_from(record.events_since_start).unwrap_or(0);
        let (kind, events, result) = if record.handshake_pending {
            (
                NotificationKind::Handshake,
                Vec::new(),
                DeliveryResult::Handshake,
            )
        } else if record.delivered_through < record.events_since_start {
            let limit = sub
                .max_count
                .map_or(self.config.max_events, |m| m.min(self.config.max_events));
            let events = self
                .store
                .subscription_events(
                    &record.id,
                    record.delivered_through,
                    record.events_since_start,
                    limit.max(1),
                )
                .await
                .map_err(|e| store_failure(&e))?;
            let Some(last) = events.last() else {
                return Err(format!(
                    "events {} to {} are missing from the outbox",
                    record.delivered_through + 1,
                    record.events_since_start
                ));
            };
            let through = last.event_number;
            let events = events.into_iter().map(ListChangeEvent::from).collect();
            (
                NotificationKind::EventNotification,
                events,
                DeliveryResult::Events { through },
            )
        } else {
            (
                NotificationKind::Heartbeat,
                Vec::new(),
                DeliveryResult::Heartbeat,
            )
        };
        let bundle = Notification {
            base_url: &self.base_url,
            subscription_id: &record.id,
            status,
            kind,
            events_since_start: since_start,
            content: sub.content,
            events: &events,
        }
        .to_bundle(&uuid::Uuid::new_v4().to_string(), now_micros());
        let timeout = Duration::from_secs(u64::from(sub.timeout_secs)).min(self.config.max_timeout);
        let mut request = self
            .http
            .post(sub.endpoint.clone())
            .timeout(timeout)
            .header(reqwest::header::CONTENT_TYPE, sub.payload_mime.as_str())
            .body(bundle.to_string());
        for (name, value) in &sub.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let response = request
            .send()
            .await
            .map_err(|e| format!("POST {}: {}", sub.endpoint, error_chain(&e)))?;
        let code = response.status();
        if code.is_success() {
            Ok(result)
        } else {
            Err(format!("POST {} answered {code}", sub.endpoint))
        }
    }
}

fn store_failure(e: &StoreError) -> String {
    format!("reading the outbox failed: {e}")
}

/// The innermost causes too: reqwest's own message is often just "error sending request".
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn random() -> u64 {
    uuid::Uuid::new_v4().as_u64_pair().0
}
