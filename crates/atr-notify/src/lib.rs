//! `atr-list-change` Subscriptions, as the R4 Subscriptions Backport shapes them.
//!
//! [`subscription`] reads a Subscription resource into a [`ListSubscription`] (or every reason it
//! cannot be accepted, each with its FHIRPath); [`notification`] builds the `history` Bundles a
//! rest-hook endpoint receives; [`delivery`] sends them from the store's outbox, under leases,
//! with retries.
//!
//! This crate knows no HTTP server, no SQL and no access policy: whether a client may see the
//! Group is the server's question (the IG answers 401 at creation; before each delivery the
//! server's [`AccessCheck`] is asked again), and the outbox rows are written by the store in the
//! transaction that makes each Group version.

pub mod delivery;
pub mod notification;
pub mod subscription;

pub use delivery::{AccessCheck, Notifier, NotifyConfig};
pub use notification::{ListChangeEvent, Notification, NotificationKind};
pub use subscription::{
    EndpointPolicy, ListSubscription, PayloadContent, SubscriptionStatus, TOPIC_ATR_LIST_CHANGE,
};
