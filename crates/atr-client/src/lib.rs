//! The atr Consumer: what a provider organisation runs to get its attribution lists from any
//! conformant payer.
//!
//! [`Profile`] says which payer and with which key; [`Fhir`] talks to it (SMART Backend Services
//! tokens renewed as needed, retries, the token never sent to another host); [`discover`] finds
//! lists; [`pull`] exports one into the [`ConsumerStore`], resumably; [`diff`] compares two pulls;
//! [`reconcile`] sends the member operations; [`subscribe`] and [`listen`] keep a list current as
//! it changes.
//!
//! This crate knows only what the IG and the FHIR specifications say a Producer does: nothing of
//! atr's server, so it works against any payer.

pub mod config;
pub mod diff;
pub mod discover;
pub mod error;
pub mod http;
pub mod listen;
pub mod pull;
pub mod reconcile;
pub mod roster;
pub mod store;
pub mod subscribe;
pub mod token;

pub use config::{Overrides, Profile};
pub use error::{ClientError, outcome_text};
pub use http::Fhir;
pub use store::ConsumerStore;
