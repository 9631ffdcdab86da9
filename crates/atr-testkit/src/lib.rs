//! What atr's tests share, and nothing else: the IG's published examples and the one rule for a test
//! whose outside dependency (PostgreSQL, `smart-fetch`, `moto_server`, `python3`) is absent.
//!
//! It is a dev-dependency only. It must not know atr's own types: every crate's tests use it, the
//! model's included, so it sits below all of them.

pub mod ig;
pub mod skip;
